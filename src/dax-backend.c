/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "dax-backend.h"

const char *dax_driver_to_string(DaxDriver d) {
        switch (d) {
        case DAX_DRIVER_NONE:
                return "none";
        case DAX_DRIVER_DEVICE_DAX:
                return "device_dax";
        case DAX_DRIVER_KMEM:
                return "kmem";
        case DAX_DRIVER_OTHER:
                return "other";
        }
        return "unknown";
}

uint64_t dax_ranges_size(const DaxRange *r, size_t n) {
        uint64_t total = 0;

        for (size_t i = 0; i < n; i++)
                total += r[i].size;
        return total;
}

/* Decimal or 0x hex, with an optional K, M, G or T suffix. */
int dax_sim_parse_size(const char *s, uint64_t *ret) {
        uint64_t v, mult = 1;
        bool hex;
        char *end;

        if (!s || !g_ascii_isdigit(s[0]))
                return -EINVAL;
        hex = s[0] == '0' && (s[1] == 'x' || s[1] == 'X');

        errno = 0;
        v = g_ascii_strtoull(s, &end, hex ? 16 : 10);
        if (errno != 0 || end == s + (hex ? 2 : 0))
                return -EINVAL;

        switch (*end) {
        case 0:
                break;
        case 'K':
                mult = UINT64_C(1) << 10;
                break;
        case 'M':
                mult = UINT64_C(1) << 20;
                break;
        case 'G':
                mult = UINT64_C(1) << 30;
                break;
        case 'T':
                mult = UINT64_C(1) << 40;
                break;
        default:
                return -EINVAL;
        }
        if (*end != 0 && end[1] != 0)
                return -EINVAL;
        if (v > UINT64_MAX / mult)
                return -ERANGE;

        *ret = v * mult;
        return 0;
}

static const char *const sim_block_pin_table[] = {
        [DAX_SIM_BLOCK_MOVABLE] = "none",
        [DAX_SIM_BLOCK_BUSY] = "busy",
        [DAX_SIM_BLOCK_HANG] = "hang",
};

const char *dax_sim_block_pin_to_string(DaxSimBlockPin pin) {
        return (size_t) pin < G_N_ELEMENTS(sim_block_pin_table) ? sim_block_pin_table[pin] : NULL;
}

int dax_sim_block_pin_from_string(const char *s, DaxSimBlockPin *ret) {
        for (size_t i = 0; i < G_N_ELEMENTS(sim_block_pin_table); i++)
                if (s && strcmp(s, sim_block_pin_table[i]) == 0) {
                        *ret = (DaxSimBlockPin) i;
                        return 0;
                }
        return -EINVAL;
}

static int sim_autoonline_from_string(const char *s, DaxSimAutoOnline *ret) {
        static const char *const table[] = {
                [DAX_SIM_AUTOONLINE_OFFLINE] = "offline",
                [DAX_SIM_AUTOONLINE_ONLINE] = "online",
                [DAX_SIM_AUTOONLINE_ONLINE_MOVABLE] = "online_movable",
        };

        for (size_t i = 0; i < G_N_ELEMENTS(table); i++)
                if (strcmp(s, table[i]) == 0) {
                        *ret = (DaxSimAutoOnline) i;
                        return 0;
                }
        return -EINVAL;
}

/* "PHYS:MODE,...", appended to pins. */
static int sim_pins_parse(const char *s, GArray *pins) {
        g_auto(GStrv) items = g_strsplit(s, ",", -1);
        int k;

        if (!items[0])
                return -EINVAL;
        for (char **i = items; *i; i++) {
                char *mode = strrchr(*i, ':');
                DaxSimPin p;

                if (!mode)
                        return -EINVAL;
                *mode++ = 0;
                k = dax_sim_parse_size(*i, &p.phys);
                if (k < 0)
                        return k;
                k = dax_sim_block_pin_from_string(mode, &p.pin);
                if (k < 0)
                        return k;
                if (p.pin == DAX_SIM_BLOCK_MOVABLE)
                        return -EINVAL; /* "none" pins nothing */
                g_array_append_val(pins, p);
        }
        return 0;
}

int dax_backend_new_from_string(const char *s, DaxBackend **ret) {
        g_autoptr(GArray) pins = NULL, busy = NULL;
        g_autoptr(GPtrArray) access = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(GPtrArray) caches = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(GArray) hotplug = g_array_new(false, false, sizeof(int));
        g_auto(GStrv) parts = NULL;
        DaxSimOptions o = {};
        int k;

        if (!s || strcmp(s, "sysfs") == 0)
                return dax_sysfs_new("/sys", "/dev", ret);

        if (strncmp(s, "sim:", 4) != 0)
                return -EINVAL;

        /* sim:SPEC[;boot=MODE][;state=PATH][;autoonline=POLICY][;pin=PHYS:MODE,...][;busy=PHYS:FILE][;init_on_alloc=1]
         * [;access=...][;cache=...][;hotplug=NODE,...] */
        parts = g_strsplit(s + 4, ";", -1);
        pins = g_array_new(false, false, sizeof(DaxSimPin));
        busy = g_array_new(false, false, sizeof(DaxSimBusy));
        if (!parts[0] || !*parts[0])
                return -EINVAL;
        for (size_t i = 1; parts[i]; i++) {
                if (g_str_has_prefix(parts[i], "boot="))
                        o.boot_mode = parts[i] + strlen("boot=");
                else if (g_str_has_prefix(parts[i], "state="))
                        o.state_path = parts[i] + strlen("state=");
                else if (g_str_has_prefix(parts[i], "autoonline=")) {
                        k = sim_autoonline_from_string(parts[i] + strlen("autoonline="), &o.autoonline);
                        if (k < 0)
                                return k;
                } else if (g_str_has_prefix(parts[i], "pin=")) {
                        k = sim_pins_parse(parts[i] + strlen("pin="), pins);
                        if (k < 0)
                                return k;
                } else if (strcmp(parts[i], "init_on_alloc=1") == 0 || strcmp(parts[i], "init_on_alloc=0") == 0) {
                        o.init_on_alloc = parts[i][strlen("init_on_alloc=")] == '1';
                } else if (g_str_has_prefix(parts[i], "access=") || g_str_has_prefix(parts[i], "cache=")) {
                        bool is_access = parts[i][0] == 'a';
                        g_auto(GStrv) items = g_strsplit(strchr(parts[i], '=') + 1, ",", -1);

                        if (!items[0])
                                return -EINVAL;
                        for (char **it = items; *it; it++)
                                g_ptr_array_add(is_access ? access : caches, g_strdup(*it));
                } else if (g_str_has_prefix(parts[i], "hotplug=")) {
                        g_auto(GStrv) items = g_strsplit(parts[i] + strlen("hotplug="), ",", -1);

                        if (!items[0])
                                return -EINVAL;
                        for (char **it = items; *it; it++) {
                                guint64 node;
                                int n;

                                if (!g_ascii_string_to_unsigned(*it, 10, 0, INT_MAX, &node, NULL))
                                        return -EINVAL;
                                n = (int) node;
                                g_array_append_val(hotplug, n);
                        }
                } else if (g_str_has_prefix(parts[i], "busy=")) {
                        char *file = strchr(parts[i] + strlen("busy="), ':');
                        DaxSimBusy x;

                        if (!file || !file[1])
                                return -EINVAL;
                        *file++ = 0;
                        k = dax_sim_parse_size(parts[i] + strlen("busy="), &x.phys);
                        if (k < 0)
                                return k;
                        x.while_file = file;
                        g_array_append_val(busy, x);
                } else
                        return -EINVAL;
        }
        o.busy = (const DaxSimBusy *) busy->data;
        o.n_busy = busy->len;
        o.pins = (const DaxSimPin *) pins->data;
        o.n_pins = pins->len;
        o.access = (const char *const *) access->pdata;
        o.n_access = access->len;
        o.caches = (const char *const *) caches->pdata;
        o.n_caches = caches->len;
        o.hotplug_nodes = (const int *) hotplug->data;
        o.n_hotplug_nodes = hotplug->len;
        return dax_sim_new_with_options(parts[0], &o, ret);
}
