/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * cache-color: the colour arithmetic of a direct-mapped memory-side cache.
 * A direct-mapped cache of size C holds physical address a in its line
 * (a mod C): two addresses congruent mod C evict each other. Colors=N cuts
 * [0, C) into N slices of C/N bytes; colour k is every address with
 * k*C/N <= (a mod C) < (k+1)*C/N. Tenants whose memory lies in disjoint
 * colours never share a cache line. Colours are a placement constraint
 * (extent-map.h), not a second map: which colours an owner holds follows
 * from its allocations' ranges.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dax-backend.h"

#define CACHE_COLORS_MAX 64

typedef uint64_t ColorMask; /* bit k: colour k */

typedef struct CacheColors {
        uint64_t cache_size; /* C; 0: the pool has no colours */
        unsigned n;          /* N */
        uint64_t slice;      /* C / N */
} CacheColors;

/* Checks that N colours of a cache of cache_size bytes are usable with
 * ranges of granule bytes: 2 <= N <= 64, C a multiple of N, and C/N a
 * multiple of granule (a range can start and end on every colour edge).
 * Returns false with *ret_why set (a static string) if not. */
bool cache_colors_init(CacheColors *ret, uint64_t cache_size, unsigned n, uint64_t granule, const char **ret_why);

static inline bool cache_colors_enabled(const CacheColors *c) {
        return c && c->cache_size > 0;
}

static inline ColorMask cache_colors_all(const CacheColors *c) {
        return c->n >= 64 ? ~(ColorMask) 0 : (((ColorMask) 1 << c->n) - 1);
}

unsigned cache_color_of(const CacheColors *c, uint64_t addr);
/* The first address above addr where the colour changes. */
uint64_t cache_color_next_edge(const CacheColors *c, uint64_t addr);
/* The colours [start, start+size) touches. */
ColorMask cache_colors_of_range(const CacheColors *c, uint64_t start, uint64_t size);
ColorMask cache_colors_of_ranges(const CacheColors *c, const DaxRange *r, size_t n);
/* Bytes of [start, start+size) that lie in colours of mask. */
uint64_t cache_colors_bytes_in(const CacheColors *c, uint64_t start, uint64_t size, ColorMask mask);

unsigned color_mask_count(ColorMask m);
/* "0,3,5" (empty string for none); *ret g_malloc()ed. */
char *color_mask_to_string(ColorMask m);
