/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <glib.h>

#include "extent-map.h"
#include "util.h"

static const int tag_a, tag_b;

/* Tiling, order and "no equal neighbours" must hold after every change. */
static void assert_invariants(const ExtentMap *m) {
        uint64_t pos = extent_map_start(m);
        size_t n = extent_map_count(m);

        g_assert_cmpuint(n, >, 0);
        for (size_t i = 0; i < n; i++) {
                const Extent *e = extent_map_get(m, i);

                g_assert_nonnull(e);
                g_assert_cmpuint(e->start, ==, pos);
                g_assert_cmpuint(e->size, >, 0);
                if (i > 0) {
                        const Extent *p = extent_map_get(m, i - 1);

                        g_assert_true(p->kind != e->kind || p->tag != e->tag);
                }
                pos += e->size;
        }
        g_assert_cmpuint(pos, ==, extent_map_start(m) + extent_map_size(m));
        g_assert_null(extent_map_get(m, n));
}

static void test_set_split_merge(void) {
        ExtentMap *m = extent_map_new(4 * GiB, 4 * GiB);

        g_assert_nonnull(m);
        g_assert_cmpuint(extent_map_count(m), ==, 1);
        assert_invariants(m);

        /* Splitting the middle of a free extent gives three. */
        g_assert_cmpint(extent_map_set(m, 5 * GiB, 1 * GiB, EXTENT_ALLOCATED, &tag_a), ==, 0);
        g_assert_cmpuint(extent_map_count(m), ==, 3);
        assert_invariants(m);

        /* Same kind and tag next to it merges; another tag does not. */
        g_assert_cmpint(extent_map_set(m, 6 * GiB, 512 * MiB, EXTENT_ALLOCATED, &tag_a), ==, 0);
        g_assert_cmpuint(extent_map_count(m), ==, 3);
        g_assert_cmpuint(extent_map_get(m, 1)->size, ==, 1536 * MiB);
        g_assert_cmpint(extent_map_set(m, 4 * GiB + 512 * MiB, 512 * MiB, EXTENT_ALLOCATED, &tag_b), ==, 0);
        g_assert_cmpuint(extent_map_count(m), ==, 4);
        assert_invariants(m);

        /* One set spanning several extents replaces them all. */
        g_assert_cmpint(extent_map_set(m, 4 * GiB + 256 * MiB, 2 * GiB, EXTENT_PENDING, NULL), ==, 0);
        assert_invariants(m);
        g_assert_true(extent_map_is(m, 4 * GiB + 256 * MiB, 2 * GiB, EXTENT_PENDING, NULL));
        g_assert_true(extent_map_is(m, 6 * GiB + 256 * MiB, 256 * MiB, EXTENT_ALLOCATED, &tag_a));
        g_assert_false(extent_map_is(m, 6 * GiB + 256 * MiB, 256 * MiB, EXTENT_ALLOCATED, &tag_b));
        g_assert_false(extent_map_is(m, 6 * GiB, 512 * MiB, EXTENT_ALLOCATED, NULL));

        /* Freeing everything merges back into one extent. */
        g_assert_cmpint(extent_map_set(m, 4 * GiB, 4 * GiB, EXTENT_FREE, NULL), ==, 0);
        g_assert_cmpuint(extent_map_count(m), ==, 1);
        assert_invariants(m);

        extent_map_free(m);
}

static void test_set_bounds(void) {
        ExtentMap *m = extent_map_new(4 * GiB, 1 * GiB);

        g_assert_cmpint(extent_map_set(m, 4 * GiB - 2 * MiB, 4 * MiB, EXTENT_HOST, NULL), ==, -ERANGE);
        g_assert_cmpint(extent_map_set(m, 5 * GiB - 2 * MiB, 4 * MiB, EXTENT_HOST, NULL), ==, -ERANGE);
        g_assert_cmpint(extent_map_set(m, 4 * GiB + 2 * MiB, UINT64_MAX, EXTENT_HOST, NULL), ==, -ERANGE);
        g_assert_cmpint(extent_map_set(m, UINT64_MAX - MiB, 2 * MiB, EXTENT_HOST, NULL), ==, -ERANGE);
        g_assert_cmpint(extent_map_set(m, 4 * GiB, 2 * MiB, _EXTENT_KIND_MAX, NULL), ==, -EINVAL);
        g_assert_cmpint(extent_map_set(m, 5 * GiB - 2 * MiB, 2 * MiB, EXTENT_HOST, NULL), ==, 0);
        g_assert_cmpuint(extent_map_count(m), ==, 2);
        g_assert_false(extent_map_is(m, 5 * GiB - 2 * MiB, 4 * MiB, EXTENT_HOST, NULL));

        g_assert_null(extent_map_new(0, 0));
        g_assert_null(extent_map_new(UINT64_MAX - GiB, 2 * GiB));

        extent_map_free(m);
}

static void test_set_ranges_and_totals(void) {
        ExtentMap *m = extent_map_new(0, 1 * GiB);
        DaxRange r[] = {
                { .start = 0, .size = 64 * MiB },
                { .start = 512 * MiB, .size = 128 * MiB },
        };
        DaxRange bad[] = {
                { .start = 0, .size = 2 * MiB },
                { .start = 1 * GiB, .size = 2 * MiB },
        };

        g_assert_cmpint(extent_map_set_ranges(m, r, G_N_ELEMENTS(r), EXTENT_DIRTY, NULL), ==, 0);
        g_assert_cmpuint(extent_map_total(m, EXTENT_DIRTY), ==, 192 * MiB);
        g_assert_cmpuint(extent_map_total(m, EXTENT_FREE), ==, 1 * GiB - 192 * MiB);

        /* A list with one bad range changes nothing. */
        g_assert_cmpint(extent_map_set_ranges(m, bad, G_N_ELEMENTS(bad), EXTENT_HOST, NULL), ==, -ERANGE);
        g_assert_cmpuint(extent_map_total(m, EXTENT_HOST), ==, 0);
        assert_invariants(m);

        extent_map_free(m);
}

static int place(const ExtentMap *m, uint64_t size, uint64_t align, uint64_t boundary, bool contiguous,
                 unsigned max_ranges, DaxRange *ret, size_t ret_max) {
        PlacementRequest req = {
                .size = size,
                .align = align,
                .boundary = boundary,
                .contiguous = contiguous,
                .max_ranges = max_ranges,
        };

        return extent_map_place(m, &req, ret, ret_max);
}

/* Pool [0, 4 GiB) with free holes of the given sizes (in MiB) at the given
 * offsets (in MiB), everything else allocated. */
static ExtentMap *map_with_holes(const unsigned *offsets, const unsigned *sizes, size_t n) {
        ExtentMap *m = extent_map_new(0, 4 * GiB);

        g_assert_cmpint(extent_map_set(m, 0, 4 * GiB, EXTENT_ALLOCATED, &tag_a), ==, 0);
        for (size_t i = 0; i < n; i++)
                g_assert_cmpint(extent_map_set(m, offsets[i] * MiB, sizes[i] * MiB, EXTENT_FREE, NULL), ==, 0);
        assert_invariants(m);
        return m;
}

static void test_place_best_fit(void) {
        static const unsigned offsets[] = { 0, 1536, 2048, 3072 };
        static const unsigned sizes[] = { 1024, 256, 512, 256 };
        ExtentMap *m = map_with_holes(offsets, sizes, G_N_ELEMENTS(offsets));
        DaxRange r[4];

        /* The smallest hole that fits, the lower one on a tie. */
        g_assert_cmpint(place(m, 256 * MiB, 2 * MiB, 0, true, 0, r, 4), ==, 1);
        g_assert_cmpuint(r[0].start, ==, 1536 * MiB);
        g_assert_cmpuint(r[0].size, ==, 256 * MiB);

        g_assert_cmpint(place(m, 258 * MiB, 2 * MiB, 0, true, 0, r, 4), ==, 1);
        g_assert_cmpuint(r[0].start, ==, 2048 * MiB);

        g_assert_cmpint(place(m, 1 * GiB, 2 * MiB, 0, true, 0, r, 4), ==, 1);
        g_assert_cmpuint(r[0].start, ==, 0);

        /* Split placement still prefers one range when one fits. */
        g_assert_cmpint(place(m, 200 * MiB, 2 * MiB, 0, false, 4, r, 4), ==, 1);
        g_assert_cmpuint(r[0].start, ==, 1536 * MiB);

        /* Placement does not modify the map. */
        g_assert_cmpuint(extent_map_total(m, EXTENT_FREE), ==, 2 * GiB);

        extent_map_free(m);
}

static void test_place_free_tags_join(void) {
        ExtentMap *m = extent_map_new(0, 1 * GiB);
        DaxRange r[1];

        /* Adjacent free extents with different tags are one run of free bytes. */
        g_assert_cmpint(extent_map_set(m, 0, 512 * MiB, EXTENT_FREE, &tag_b), ==, 0);
        g_assert_cmpuint(extent_map_count(m), ==, 2);
        g_assert_cmpint(place(m, 1 * GiB, 2 * MiB, 0, true, 0, r, 1), ==, 1);
        g_assert_cmpuint(extent_map_largest_free(m, 2 * MiB, 0), ==, 1 * GiB);

        extent_map_free(m);
}

static void test_place_boundary(void) {
        /* A pool that starts 2 MiB past 4 GiB: boundaries count from the pool. */
        uint64_t base = 4 * GiB + 2 * MiB;
        ExtentMap *m = extent_map_new(base, 4 * GiB);
        DaxRange r[4];

        g_assert_cmpint(extent_map_set(m, base, 100 * MiB, EXTENT_ALLOCATED, &tag_a), ==, 0);

        g_assert_cmpint(place(m, 512 * MiB, 2 * MiB, 512 * MiB, true, 0, r, 4), ==, 1);
        g_assert_cmpuint(r[0].start, ==, base + 512 * MiB);
        g_assert_cmpuint(r[0].size, ==, 512 * MiB);

        /* Without a boundary it goes right after the allocation. */
        g_assert_cmpint(place(m, 512 * MiB, 2 * MiB, 0, true, 0, r, 4), ==, 1);
        g_assert_cmpuint(r[0].start, ==, base + 100 * MiB);

        /* Sizes are whole boundaries. */
        g_assert_cmpint(place(m, 256 * MiB, 2 * MiB, 512 * MiB, true, 0, r, 4), ==, -EINVAL);

        /* The partly used first boundary does not count. */
        g_assert_cmpuint(extent_map_largest_free(m, 2 * MiB, 512 * MiB), ==, 3584 * MiB);
        g_assert_cmpint(place(m, 3584 * MiB, 2 * MiB, 512 * MiB, true, 0, r, 4), ==, 1);
        g_assert_cmpint(place(m, 4 * GiB, 2 * MiB, 512 * MiB, false, 4, r, 4), ==, -ENOSPC);

        extent_map_free(m);
}

static void test_place_align_physical(void) {
        /* Pool [4.5 GiB, 8.5 GiB): 1 GiB ranges start on 1 GiB physical addresses. */
        uint64_t base = 4 * GiB + 512 * MiB;
        ExtentMap *m = extent_map_new(base, 4 * GiB);
        DaxRange r[4];

        g_assert_cmpint(place(m, 1 * GiB, 1 * GiB, 0, true, 0, r, 4), ==, 1);
        g_assert_cmpuint(r[0].start, ==, 5 * GiB);
        g_assert_cmpuint(extent_map_largest_free(m, 1 * GiB, 0), ==, 3 * GiB);
        g_assert_cmpint(place(m, 4 * GiB, 1 * GiB, 0, false, 8, r, 4), ==, -ENOSPC);
        g_assert_cmpint(place(m, 3 * GiB, 1 * GiB, 0, true, 0, r, 4), ==, 1);
        g_assert_cmpuint(r[0].start, ==, 5 * GiB);

        /* A 512 MiB boundary from the pool start agrees with 1 GiB physical
         * alignment here... */
        g_assert_cmpint(place(m, 1 * GiB, 1 * GiB, 512 * MiB, true, 0, r, 4), ==, 1);
        g_assert_cmpuint(r[0].start, ==, 5 * GiB);
        extent_map_free(m);

        /* ...but not when the pool starts off a 512 MiB multiple. */
        m = extent_map_new(4 * GiB + 2 * MiB, 4 * GiB);
        g_assert_cmpint(place(m, 1 * GiB, 1 * GiB, 512 * MiB, true, 0, r, 4), ==, -ENOSPC);
        g_assert_cmpuint(extent_map_largest_free(m, 1 * GiB, 512 * MiB), ==, 0);
        extent_map_free(m);
}

static void test_place_split(void) {
        static const unsigned offsets[] = { 0, 1024, 2560, 3584 };
        static const unsigned sizes[] = { 512, 1024, 256, 256 };
        ExtentMap *m = map_with_holes(offsets, sizes, G_N_ELEMENTS(offsets));
        DaxRange r[8];

        /* 1.75 GiB: the 1 GiB hole, the 512 MiB one, then the lower 256 MiB
         * one; returned in address order. */
        g_assert_cmpint(place(m, 1792 * MiB, 2 * MiB, 0, false, 4, r, 8), ==, 3);
        g_assert_cmpuint(r[0].start, ==, 0);
        g_assert_cmpuint(r[0].size, ==, 512 * MiB);
        g_assert_cmpuint(r[1].start, ==, 1024 * MiB);
        g_assert_cmpuint(r[1].size, ==, 1024 * MiB);
        g_assert_cmpuint(r[2].start, ==, 2560 * MiB);
        g_assert_cmpuint(r[2].size, ==, 256 * MiB);

        /* The last piece is trimmed to what is left. */
        g_assert_cmpint(place(m, 1280 * MiB, 2 * MiB, 0, false, 2, r, 8), ==, 2);
        g_assert_cmpuint(r[0].start, ==, 0);
        g_assert_cmpuint(r[0].size, ==, 256 * MiB);
        g_assert_cmpuint(r[1].start, ==, 1024 * MiB);
        g_assert_cmpuint(r[1].size, ==, 1024 * MiB);

        /* Too few ranges allowed, by max_ranges or by the output array. */
        g_assert_cmpint(place(m, 1792 * MiB, 2 * MiB, 0, false, 2, r, 8), ==, -ENOSPC);
        g_assert_cmpint(place(m, 1792 * MiB, 2 * MiB, 0, false, 8, r, 2), ==, -ENOSPC);
        g_assert_cmpint(place(m, 2 * GiB, 2 * MiB, 0, false, 8, r, 8), ==, 4);
        g_assert_cmpint(place(m, 2 * GiB + 2 * MiB, 2 * MiB, 0, false, 8, r, 8), ==, -ENOSPC);

        /* Contiguous never splits. */
        g_assert_cmpint(place(m, 1536 * MiB, 2 * MiB, 0, true, 0, r, 8), ==, -ENOSPC);

        /* With 1 GiB alignment only the 1 GiB hole is usable. */
        g_assert_cmpint(place(m, 2 * GiB, 1 * GiB, 0, false, 8, r, 8), ==, -ENOSPC);
        g_assert_cmpuint(extent_map_largest_free(m, 1 * GiB, 0), ==, 1 * GiB);

        extent_map_free(m);
}

static void test_place_invalid(void) {
        ExtentMap *m = extent_map_new(0, 1 * GiB);
        PlacementRequest req = { .size = 2 * MiB, .align = 2 * MiB, .contiguous = true };
        DaxRange r[2];

        g_assert_cmpint(place(m, 0, 2 * MiB, 0, true, 0, r, 2), ==, -EINVAL);
        g_assert_cmpint(place(m, 3 * MiB, 4 * KiB, 0, true, 0, r, 2), ==, -EINVAL);
        g_assert_cmpint(place(m, 2 * MiB, 1 * GiB, 0, true, 0, r, 2), ==, -EINVAL);
        g_assert_cmpint(place(m, 6 * MiB, 3 * MiB, 0, true, 0, r, 2), ==, -EINVAL);
        g_assert_cmpint(place(m, 6 * MiB, 2 * MiB, 6 * MiB, true, 0, r, 2), ==, -EINVAL);
        g_assert_cmpint(place(m, 4 * MiB, 2 * MiB, 0, false, 0, r, 2), ==, -EINVAL);
        g_assert_cmpint(extent_map_place(m, NULL, r, 2), ==, -EINVAL);
        g_assert_cmpint(extent_map_place(m, &req, r, 0), ==, -EINVAL);

        /* 4 KiB alignment still means 2 MiB granules. */
        g_assert_cmpint(place(m, 2 * MiB, 4 * KiB, 0, true, 0, r, 2), ==, 1);
        g_assert_cmpint(place(m, 2 * GiB, 2 * MiB, 0, true, 0, r, 2), ==, -ENOSPC);

        g_assert_cmpint(extent_map_set(m, 0, 1 * GiB, EXTENT_HOST, NULL), ==, 0);
        g_assert_cmpint(place(m, 2 * MiB, 2 * MiB, 0, false, 2, r, 2), ==, -ENOSPC);
        g_assert_cmpuint(extent_map_largest_free(m, 2 * MiB, 0), ==, 0);

        extent_map_free(m);
}

/* Random sets against a per-2-MiB reference; thousands of extents. */
static void test_random_against_reference(void) {
        enum { UNITS = 8192 };
        static const int tags[3];
        static ExtentKind ref_kind[UNITS];
        static const void *ref_tag[UNITS];
        uint64_t base = 16 * GiB;
        ExtentMap *m = extent_map_new(base, UNITS * 2 * MiB);
        GRand *rand = g_rand_new_with_seed(42);
        size_t most = 0;

        for (unsigned i = 0; i < UNITS; i++) {
                ref_kind[i] = EXTENT_FREE;
                ref_tag[i] = NULL;
        }

        for (unsigned iter = 0; iter < 40000; iter++) {
                unsigned a = g_rand_int_range(rand, 0, UNITS);
                unsigned len = g_rand_int_range(rand, 1, iter % 2000 == 0 ? UNITS / 4 : 8);
                ExtentKind kind = g_rand_int_range(rand, 0, _EXTENT_KIND_MAX);
                const void *tag = kind == EXTENT_FREE ? NULL : &tags[g_rand_int_range(rand, 0, 3)];
                DaxRange r[16];
                uint64_t best = 0;
                int k;

                len = MIN(len, UNITS - a);
                g_assert_cmpint(extent_map_set(m, base + a * 2 * MiB, len * 2 * MiB, kind, tag), ==, 0);
                for (unsigned i = a; i < a + len; i++) {
                        ref_kind[i] = kind;
                        ref_tag[i] = tag;
                }

                most = MAX(most, extent_map_count(m));
                if (iter % 500 != 0)
                        continue;

                assert_invariants(m);
                for (unsigned i = 0, run = 0; i < UNITS; i++) {
                        run = ref_kind[i] == EXTENT_FREE ? run + 1 : 0;
                        best = MAX(best, run * 2 * MiB);
                }
                for (size_t i = 0; i < extent_map_count(m); i++) {
                        const Extent *e = extent_map_get(m, i);

                        for (uint64_t u = (e->start - base) / (2 * MiB); u < (e->start + e->size - base) / (2 * MiB); u++) {
                                g_assert_cmpint(ref_kind[u], ==, e->kind);
                                g_assert_true(ref_tag[u] == e->tag);
                        }
                }
                g_assert_cmpuint(extent_map_largest_free(m, 2 * MiB, 0), ==, best);

                /* Whatever placement returns must be free and within rules. */
                k = place(m, 64 * MiB, 2 * MiB, 0, false, 16, r, 16);
                if (k == -ENOSPC)
                        continue;
                g_assert_cmpint(k, >=, 1);
                for (int i = 0; i < k; i++) {
                        g_assert_true(extent_map_is(m, r[i].start, r[i].size, EXTENT_FREE, NULL));
                        if (i > 0)
                                g_assert_cmpuint(r[i - 1].start + r[i - 1].size, <=, r[i].start);
                }
        }

        /* The point is a big map: make sure it was one. */
        g_assert_cmpuint(most, >, 2500);
        g_rand_free(rand);
        extent_map_free(m);
}

static void test_kind_to_string(void) {
        g_assert_cmpstr(extent_kind_to_string(EXTENT_FREE), ==, "free");
        g_assert_cmpstr(extent_kind_to_string(EXTENT_FOREIGN), ==, "foreign");
        for (int k = 0; k < _EXTENT_KIND_MAX; k++)
                g_assert_nonnull(extent_kind_to_string(k));
        g_assert_null(extent_kind_to_string(_EXTENT_KIND_MAX));
}

/* Bare dirty memory is placed only when asked for; dirt a device holds
 * (tagged) never is. */
static void test_place_include_dirty(void) {
        ExtentMap *m = extent_map_new(4 * GiB, 1 * GiB);
        static const int holder;
        PlacementRequest req = { .size = 512 * MiB, .align = 2 * MiB, .contiguous = true };
        DaxRange r[4];

        g_assert_cmpint(extent_map_set(m, 4 * GiB, 512 * MiB, EXTENT_DIRTY, NULL), ==, 0);
        g_assert_cmpint(extent_map_set(m, 4 * GiB + 512 * MiB, 512 * MiB, EXTENT_DIRTY, &holder), ==, 0);
        g_assert_cmpint(extent_map_place(m, &req, r, 4), ==, -ENOSPC);
        g_assert_cmpuint(extent_map_largest_usable(m, 2 * MiB, 0, false), ==, 0);
        g_assert_cmpuint(extent_map_largest_usable(m, 2 * MiB, 0, true), ==, 512 * MiB);
        g_assert_cmpuint(extent_map_total_bare_dirty(m), ==, 512 * MiB);
        req.include_dirty = true;
        g_assert_cmpint(extent_map_place(m, &req, r, 4), ==, 1);
        g_assert_cmpuint(r[0].start, ==, 4 * GiB);
        req.size = 1 * GiB;
        req.contiguous = false;
        req.max_ranges = 4;
        g_assert_cmpint(extent_map_place(m, &req, r, 4), ==, -ENOSPC);
        extent_map_free(m);
}

/* Replacing a chunk's use leaves an allocation inside its ranges alone. */
static void test_replace(void) {
        ExtentMap *m = extent_map_new(0, 4 * GiB);
        DaxRange all = { 0, 4 * GiB };

        g_assert_cmpint(extent_map_set(m, 0, 4 * GiB, EXTENT_HOST, &tag_b), ==, 0);
        g_assert_cmpint(extent_map_set(m, GiB, GiB, EXTENT_ALLOCATED, &tag_a), ==, 0);
        g_assert_cmpint(extent_map_replace(m, &all, 1, EXTENT_HOST, &tag_b, EXTENT_DIRTY, NULL), ==, 0);
        g_assert_true(extent_map_is(m, 0, GiB, EXTENT_DIRTY, NULL));
        g_assert_true(extent_map_is(m, GiB, GiB, EXTENT_ALLOCATED, &tag_a));
        g_assert_true(extent_map_is(m, 2 * GiB, 2 * GiB, EXTENT_DIRTY, NULL));
        assert_invariants(m);
        all.size = 8 * GiB;
        g_assert_cmpint(extent_map_replace(m, &all, 1, EXTENT_DIRTY, NULL, EXTENT_FREE, NULL), ==, -ERANGE);
        extent_map_free(m);
}

int main(int argc, char **argv) {
        g_test_init(&argc, &argv, NULL);

        g_test_add_func("/extent-map/set/split-merge", test_set_split_merge);
        g_test_add_func("/extent-map/set/bounds", test_set_bounds);
        g_test_add_func("/extent-map/set/ranges-totals", test_set_ranges_and_totals);
        g_test_add_func("/extent-map/set/random-vs-reference", test_random_against_reference);
        g_test_add_func("/extent-map/place/best-fit", test_place_best_fit);
        g_test_add_func("/extent-map/place/free-tags-join", test_place_free_tags_join);
        g_test_add_func("/extent-map/place/boundary-512m", test_place_boundary);
        g_test_add_func("/extent-map/place/align-1g-physical", test_place_align_physical);
        g_test_add_func("/extent-map/place/split-fragmented", test_place_split);
        g_test_add_func("/extent-map/place/invalid-enospc", test_place_invalid);
        g_test_add_func("/extent-map/place/include-dirty", test_place_include_dirty);
        g_test_add_func("/extent-map/replace", test_replace);
        g_test_add_func("/extent-map/kind-to-string", test_kind_to_string);

        return g_test_run();
}
