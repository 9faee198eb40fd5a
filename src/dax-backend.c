/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
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

int dax_backend_new_from_string(const char *s, DaxBackend **ret) {
        if (!s || strcmp(s, "sysfs") == 0)
                return dax_sysfs_new("/sys", "/dev", ret);

        if (strncmp(s, "sim:", 4) != 0)
                return -EINVAL;

        /* sim:SPEC[;boot=MODE][;state=PATH] */
        g_auto(GStrv) parts = g_strsplit(s + 4, ";", -1);
        const char *boot = "idle", *state = NULL;

        if (!parts[0] || !*parts[0])
                return -EINVAL;
        for (size_t i = 1; parts[i]; i++) {
                if (g_str_has_prefix(parts[i], "boot="))
                        boot = parts[i] + 5;
                else if (g_str_has_prefix(parts[i], "state="))
                        state = parts[i] + 6;
                else
                        return -EINVAL;
        }
        return dax_sim_new(parts[0], boot, state, ret);
}
