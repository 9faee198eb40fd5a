/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * extent-map: what every byte of one pool is used for, and where a new
 * allocation goes. The map covers [start, start+size) of a region as a
 * sorted list of non-overlapping extents that always tile the whole pool.
 * Placement decides exact physical ranges (later programmed through the
 * device's `mapping` attribute); the kernel's first-fit growth is never used.
 *
 * Placement rules: every range starts and ends on a multiple of `boundary`
 * counted from the pool start, starts on a multiple of `align` counted
 * physically (a 1 GiB-aligned allocation starts on a 1 GiB physical address),
 * and has a length that is a multiple of max(align, boundary, 2 MiB).
 * Contiguous placement takes the smallest free extent that fits (best fit,
 * keeping large extents whole); split placement takes the fewest ranges,
 * largest free extents first, up to max_ranges.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache-color.h"
#include "dax-backend.h"

typedef enum ExtentKind {
        EXTENT_FREE = 0,   /* clean, unused, may be handed out */
        EXTENT_ALLOCATED,  /* belongs to an allocation (tag = allocation) */
        EXTENT_PENDING,    /* reserved for an operation in progress */
        EXTENT_HOST,       /* bound to kmem: host RAM */
        EXTENT_DIRTY,      /* unused but holds old data; must be zeroed */
        EXTENT_FOREIGN,    /* a device the broker did not create */
        _EXTENT_KIND_MAX,
} ExtentKind;

typedef struct Extent {
        uint64_t start;
        uint64_t size;
        ExtentKind kind;
        const void *tag; /* opaque owner, compared by pointer */
} Extent;

typedef struct ExtentMap ExtentMap;

ExtentMap *extent_map_new(uint64_t start, uint64_t size);
void extent_map_free(ExtentMap *m);

uint64_t extent_map_start(const ExtentMap *m);
uint64_t extent_map_size(const ExtentMap *m);

/* Marks [start, start+size) as kind/tag, splitting and merging neighbours
 * with the same kind and tag. -ERANGE if outside the pool. */
int extent_map_set(ExtentMap *m, uint64_t start, uint64_t size, ExtentKind kind, const void *tag);

/* Sets every range of the list. */
int extent_map_set_ranges(ExtentMap *m, const DaxRange *r, size_t n, ExtentKind kind, const void *tag);

/* Sets only the bytes of the ranges that are old_kind with old_tag (other
 * owners' bytes inside the ranges keep their use). */
int extent_map_replace(ExtentMap *m, const DaxRange *r, size_t n, ExtentKind old_kind, const void *old_tag,
                       ExtentKind kind, const void *tag);

ExtentMap *extent_map_copy(const ExtentMap *m);

/* True if every byte of the range currently has the given kind (and tag,
 * unless tag is NULL). */
bool extent_map_is(const ExtentMap *m, uint64_t start, uint64_t size, ExtentKind kind, const void *tag);

/* Bytes of a kind. */
uint64_t extent_map_total(const ExtentMap *m, ExtentKind kind);

/* Largest run of FREE bytes usable under the given align/boundary rules. */
uint64_t extent_map_largest_free(const ExtentMap *m, uint64_t align, uint64_t boundary);
/* The same, counting bare DIRTY extents (tag NULL) as usable if asked. */
uint64_t extent_map_largest_usable(const ExtentMap *m, uint64_t align, uint64_t boundary, bool include_dirty);
/* Bytes of DIRTY extents that no device holds (tag NULL). */
uint64_t extent_map_total_bare_dirty(const ExtentMap *m);

typedef struct PlacementRequest {
        uint64_t size;
        uint64_t align;    /* physical alignment of each range start */
        uint64_t boundary; /* every range edge on a multiple of this from pool start; 0 = none */
        bool contiguous;
        unsigned max_ranges; /* when !contiguous */
        bool include_dirty;  /* may use DIRTY extents no device holds (tag NULL) */
        /* When the pool has colours: ranges lie only in colours of
         * color_mask (split at colour edges, which are granule-aligned). */
        const CacheColors *colors;
        ColorMask color_mask;
} PlacementRequest;

/* Chooses ranges from FREE space (and bare DIRTY space if asked). Does not
 * modify the map.
 * Returns the number of ranges (>= 1), -ENOSPC if it cannot fit, -EINVAL if
 * the request is malformed (size not a multiple of the granule). */
int extent_map_place(const ExtentMap *m, const PlacementRequest *req, DaxRange *ret, size_t ret_max);

/* Iteration, for status and tests. */
size_t extent_map_count(const ExtentMap *m);
const Extent *extent_map_get(const ExtentMap *m, size_t i);

const char *extent_kind_to_string(ExtentKind k);
