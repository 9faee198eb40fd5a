/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * pool-map: a pool's map as the daemon publishes it (the Pool property
 * Extents: offset, size, use) drawn as a bar of a fixed number of cells,
 * for daxbrokerctl status. Each cell stands for an equal share of the
 * pool, lowest addresses first. A cell shows "free" only when every byte
 * of it is free, so a run of free cells is memory an allocation can have;
 * otherwise it shows the use that holds most of its other bytes.
 */

#include <stddef.h>
#include <stdint.h>

typedef enum PoolMapUse {
        POOL_MAP_ALLOCATED,
        POOL_MAP_FREE,
        POOL_MAP_HOST,
        POOL_MAP_DIRTY,
        POOL_MAP_FOREIGN,
        POOL_MAP_WARM,
        POOL_MAP_OTHER, /* a use this client does not know */
        _POOL_MAP_USE_MAX,
} PoolMapUse;

typedef struct PoolMapExtent {
        uint64_t offset; /* from the pool's start */
        uint64_t size;
        PoolMapUse use;
} PoolMapExtent;

/* "allocated", "free", "host", "dirty", "foreign", "warm"; anything else is
 * POOL_MAP_OTHER. */
PoolMapUse pool_map_use_from_string(const char *s);
const char *pool_map_use_to_string(PoolMapUse use);
/* The ASCII character of a use in the bar. */
char pool_map_use_glyph(PoolMapUse use);

/* Fills cells[0..width) from extents that must tile [0, pool_size) in
 * order. -EINVAL if they do not (or width or pool_size is 0). */
int pool_map_cells(const PoolMapExtent *extents, size_t n, uint64_t pool_size, size_t width, PoolMapUse *cells);
