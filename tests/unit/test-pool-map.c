/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <glib.h>
#include <string.h>

#include "pool-map.h"
#include "util.h"

/* The bar as a string of glyphs. */
static char *bar(const PoolMapExtent *e, size_t n, uint64_t pool_size, size_t width) {
        g_autofree PoolMapUse *cells = g_new(PoolMapUse, width);
        char *s = g_malloc0(width + 1);

        g_assert_cmpint(pool_map_cells(e, n, pool_size, width, cells), ==, 0);
        for (size_t i = 0; i < width; i++)
                s[i] = pool_map_use_glyph(cells[i]);
        return s;
}

static void test_uses(void) {
        static const char *const names[] = { "allocated", "free", "host", "dirty", "foreign" };

        for (size_t i = 0; i < G_N_ELEMENTS(names); i++)
                g_assert_cmpstr(pool_map_use_to_string(pool_map_use_from_string(names[i])), ==, names[i]);
        g_assert_cmpint(pool_map_use_from_string("pending"), ==, POOL_MAP_OTHER);
        g_assert_cmpint(pool_map_use_glyph(POOL_MAP_OTHER), ==, '?');
}

static void test_exact_cells(void) {
        /* 2 GiB in 8 cells of 256 MiB: 512 MiB allocated, 256 MiB dirty,
         * 1 GiB free, 256 MiB host. */
        const PoolMapExtent e[] = {
                { 0, 512 * MiB, POOL_MAP_ALLOCATED },
                { 512 * MiB, 256 * MiB, POOL_MAP_DIRTY },
                { 768 * MiB, GiB, POOL_MAP_FREE },
                { 1792 * MiB, 256 * MiB, POOL_MAP_HOST },
        };
        g_autofree char *s = bar(e, G_N_ELEMENTS(e), 2 * GiB, 8);

        g_assert_cmpstr(s, ==, "##~....H");
}

static void test_small_use_is_visible(void) {
        /* 2 MiB allocated in the middle of 1 TiB: its cell is not free. */
        const PoolMapExtent e[] = {
                { 0, 512 * GiB, POOL_MAP_FREE },
                { 512 * GiB, 2 * MiB, POOL_MAP_ALLOCATED },
                { 512 * GiB + 2 * MiB, 512 * GiB - 2 * MiB, POOL_MAP_FREE },
        };
        g_autofree char *s = bar(e, G_N_ELEMENTS(e), 1024 * GiB, 10);

        g_assert_cmpstr(s, ==, ".....#....");
}

static void test_majority_of_used(void) {
        /* One cell of 100 bytes: 10 free, 50 foreign, 40 allocated. */
        const PoolMapExtent e[] = {
                { 0, 10, POOL_MAP_FREE },
                { 10, 40, POOL_MAP_ALLOCATED },
                { 50, 50, POOL_MAP_FOREIGN },
        };
        g_autofree char *s = bar(e, G_N_ELEMENTS(e), 100, 1);

        g_assert_cmpstr(s, ==, "X");
}

static void test_uneven_cells(void) {
        /* 3 bytes over 7 cells: every cell shows the byte it starts in. */
        const PoolMapExtent e[] = {
                { 0, 1, POOL_MAP_ALLOCATED },
                { 1, 1, POOL_MAP_FREE },
                { 2, 1, POOL_MAP_HOST },
        };
        g_autofree char *s = bar(e, G_N_ELEMENTS(e), 3, 7);

        g_assert_cmpstr(s, ==, "###..HH");
}

static void test_huge_pool(void) {
        /* 2^60 bytes over a wide bar: no overflow in the cell bounds. */
        const uint64_t size = UINT64_C(1) << 60;
        const PoolMapExtent e[] = {
                { 0, size / 2, POOL_MAP_FREE },
                { size / 2, size / 2, POOL_MAP_ALLOCATED },
        };
        g_autofree char *s = bar(e, G_N_ELEMENTS(e), size, 4);

        g_assert_cmpstr(s, ==, "..##");
}

static void test_malformed(void) {
        PoolMapUse cells[4];
        const PoolMapExtent gap[] = { { 0, 10, POOL_MAP_FREE }, { 20, 80, POOL_MAP_FREE } };
        const PoolMapExtent overlap[] = { { 0, 60, POOL_MAP_FREE }, { 50, 50, POOL_MAP_FREE } };
        const PoolMapExtent short_[] = { { 0, 90, POOL_MAP_FREE } };
        const PoolMapExtent beyond[] = { { 0, 100, POOL_MAP_FREE }, { 100, 10, POOL_MAP_FREE } };
        const PoolMapExtent empty_extent[] = { { 0, 0, POOL_MAP_FREE }, { 0, 100, POOL_MAP_FREE } };
        const PoolMapExtent whole[] = { { 0, 100, POOL_MAP_FREE } };

        g_assert_cmpint(pool_map_cells(gap, 2, 100, 4, cells), ==, -EINVAL);
        g_assert_cmpint(pool_map_cells(overlap, 2, 100, 4, cells), ==, -EINVAL);
        g_assert_cmpint(pool_map_cells(short_, 1, 100, 4, cells), ==, -EINVAL);
        g_assert_cmpint(pool_map_cells(beyond, 2, 100, 4, cells), ==, -EINVAL);
        g_assert_cmpint(pool_map_cells(empty_extent, 2, 100, 4, cells), ==, -EINVAL);
        g_assert_cmpint(pool_map_cells(whole, 0, 100, 4, cells), ==, -EINVAL);
        g_assert_cmpint(pool_map_cells(whole, 1, 100, 0, cells), ==, -EINVAL);
        g_assert_cmpint(pool_map_cells(whole, 1, 100, 4, cells), ==, 0);
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/pool-map/uses", test_uses);
        g_test_add_func("/pool-map/exact-cells", test_exact_cells);
        g_test_add_func("/pool-map/small-use-is-visible", test_small_use_is_visible);
        g_test_add_func("/pool-map/majority-of-used", test_majority_of_used);
        g_test_add_func("/pool-map/uneven-cells", test_uneven_cells);
        g_test_add_func("/pool-map/huge-pool", test_huge_pool);
        g_test_add_func("/pool-map/malformed", test_malformed);
        return g_test_run();
}
