/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <string.h>

#include "pool-map.h"

static const struct {
        const char *name;
        char glyph;
} uses[_POOL_MAP_USE_MAX] = {
        [POOL_MAP_ALLOCATED] = { "allocated", '#' },
        [POOL_MAP_FREE] = { "free", '.' },
        [POOL_MAP_HOST] = { "host", 'H' },
        [POOL_MAP_DIRTY] = { "dirty", '~' },
        [POOL_MAP_FOREIGN] = { "foreign", 'X' },
        [POOL_MAP_WARM] = { "warm", 'w' },
        [POOL_MAP_OTHER] = { "other", '?' },
};

PoolMapUse pool_map_use_from_string(const char *s) {
        for (PoolMapUse u = 0; u < POOL_MAP_OTHER; u++)
                if (strcmp(s, uses[u].name) == 0)
                        return u;
        return POOL_MAP_OTHER;
}

const char *pool_map_use_to_string(PoolMapUse use) {
        return use < _POOL_MAP_USE_MAX ? uses[use].name : uses[POOL_MAP_OTHER].name;
}

char pool_map_use_glyph(PoolMapUse use) {
        return use < _POOL_MAP_USE_MAX ? uses[use].glyph : uses[POOL_MAP_OTHER].glyph;
}

/* Start of cell i of width: floor(pool_size * i / width) without
 * overflowing 64 bits. */
static uint64_t cell_start(uint64_t pool_size, size_t width, size_t i) {
        return pool_size / width * i + pool_size % width * i / width;
}

int pool_map_cells(const PoolMapExtent *extents, size_t n, uint64_t pool_size, size_t width, PoolMapUse *cells) {
        uint64_t end = 0;
        size_t j = 0;

        if (width == 0 || pool_size == 0 || n == 0)
                return -EINVAL;
        for (size_t k = 0; k < n; k++) {
                if (extents[k].offset != end || extents[k].size == 0 || extents[k].size > pool_size - end ||
                    extents[k].use >= _POOL_MAP_USE_MAX)
                        return -EINVAL;
                end += extents[k].size;
        }
        if (end != pool_size)
                return -EINVAL;

        for (size_t i = 0; i < width; i++) {
                uint64_t a = cell_start(pool_size, width, i), b = cell_start(pool_size, width, i + 1);
                uint64_t bytes[_POOL_MAP_USE_MAX] = {};
                PoolMapUse best = POOL_MAP_FREE;

                /* A pool of fewer bytes than cells: a cell of no bytes
                 * shows what is at its start. */
                if (b == a)
                        b = a + 1;
                while (j < n && extents[j].offset + extents[j].size <= a)
                        j++;
                for (size_t k = j; k < n && extents[k].offset < b; k++) {
                        uint64_t lo = extents[k].offset > a ? extents[k].offset : a;
                        uint64_t hi = extents[k].offset + extents[k].size < b ? extents[k].offset + extents[k].size : b;

                        bytes[extents[k].use] += hi - lo;
                }
                for (PoolMapUse u = 0; u < _POOL_MAP_USE_MAX; u++)
                        if (u != POOL_MAP_FREE && bytes[u] > 0 && (best == POOL_MAP_FREE || bytes[u] > bytes[best]))
                                best = u;
                cells[i] = best;
        }
        return 0;
}
