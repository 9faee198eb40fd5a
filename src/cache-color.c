/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <glib.h>

#include "cache-color.h"

bool cache_colors_init(CacheColors *ret, uint64_t cache_size, unsigned n, uint64_t granule, const char **ret_why) {
        *ret = (CacheColors) {};
        if (n < 2 || n > CACHE_COLORS_MAX) {
                *ret_why = "Colors= must be between 2 and 64";
                return false;
        }
        if (cache_size == 0 || cache_size % n != 0) {
                *ret_why = "the cache size is not a multiple of Colors=";
                return false;
        }
        if (granule == 0 || (cache_size / n) % granule != 0) {
                *ret_why = "a colour (cache size / Colors=) is not a multiple of the pool's Align=, Boundary= and 2 MiB";
                return false;
        }
        *ret = (CacheColors) { .cache_size = cache_size, .n = n, .slice = cache_size / n };
        return true;
}

unsigned cache_color_of(const CacheColors *c, uint64_t addr) {
        return (unsigned) ((addr % c->cache_size) / c->slice);
}

uint64_t cache_color_next_edge(const CacheColors *c, uint64_t addr) {
        return addr - addr % c->slice + c->slice;
}

ColorMask cache_colors_of_range(const CacheColors *c, uint64_t start, uint64_t size) {
        uint64_t end = start + size;
        ColorMask m = 0;

        /* One period covers every colour; stop once all are seen. */
        for (uint64_t a = start; a < end && m != cache_colors_all(c); a = cache_color_next_edge(c, a))
                m |= (ColorMask) 1 << cache_color_of(c, a);
        return m;
}

ColorMask cache_colors_of_ranges(const CacheColors *c, const DaxRange *r, size_t n) {
        ColorMask m = 0;

        for (size_t i = 0; i < n; i++)
                m |= cache_colors_of_range(c, r[i].start, r[i].size);
        return m;
}

uint64_t cache_colors_bytes_in(const CacheColors *c, uint64_t start, uint64_t size, ColorMask mask) {
        uint64_t end = start + size, sum = 0;

        for (uint64_t a = start; a < end;) {
                uint64_t next = MIN(cache_color_next_edge(c, a), end);

                if (mask & ((ColorMask) 1 << cache_color_of(c, a)))
                        sum += next - a;
                a = next;
        }
        return sum;
}

unsigned color_mask_count(ColorMask m) {
        return (unsigned) __builtin_popcountll(m);
}

char *color_mask_to_string(ColorMask m) {
        GString *s = g_string_new(NULL);

        for (unsigned k = 0; k < CACHE_COLORS_MAX; k++)
                if (m & ((ColorMask) 1 << k))
                        g_string_append_printf(s, "%s%u", s->len ? "," : "", k);
        return g_string_free(s, false);
}
