/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <glib.h>
#include <string.h>

#include "config.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_config(const Config *c) {
        g_assert_true(c->default_align == 4 * KiB || c->default_align == 2 * MiB || c->default_align == GiB);
        g_assert_cmpuint(c->max_ranges, >=, 1);
        g_assert_cmpuint(c->max_ranges, <=, 64);
        g_assert_cmpuint(c->max_allocations_per_owner, >=, 1);
        g_assert_cmpuint(c->max_allocations_per_owner, <=, 100000);

        for (size_t i = 0; i < c->n_pools; i++) {
                const PoolConfig *p = &c->pools[i];

                g_assert_cmpuint(strlen(p->name), >, 0);
                g_assert_cmpuint(strlen(p->name), <, CONFIG_POOL_NAME_MAX);
                g_assert_true(p->match_region != p->match_start);
                g_assert_true(p->align == 4 * KiB || p->align == 2 * MiB || p->align == GiB);
                g_assert_cmpuint(p->boundary % (2 * MiB), ==, 0);
                g_assert_cmpuint(p->boundary & (p->boundary - 1), ==, 0);

                /* Every pool is found by what it matches on. */
                if (p->match_region)
                        g_assert_true(config_find_pool(c, p->region_id, UINT64_MAX) == p);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        g_autofree char *text = g_strndup((const char *) data, size);
        g_autoptr(GError) error = NULL;
        g_autoptr(Config) c = NULL;
        uint64_t v;
        int r;

        c = config_load_data((const char *) data, size, &error);
        g_assert_true((c == NULL) != (error == NULL));
        if (c)
                check_config(c);

        /* The same bytes as one size string: a value or -EINVAL, nothing else. */
        r = parse_size(text, &v);
        g_assert_true(r == 0 || r == -EINVAL);

        return 0;
}
