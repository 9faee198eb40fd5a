/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <glib.h>
#include <glib/gstdio.h>

#include "cache-color.h"
#include "dax-backend.h"
#include "extent-map.h"
#include "node-perf.h"
#include "util.h"

/* A 512 MiB direct-mapped cache in 4 colours of 128 MiB. */
static void test_arithmetic(void) {
        CacheColors c;
        const char *why = NULL;

        g_assert_true(cache_colors_init(&c, 512 * MiB, 4, 2 * MiB, &why));
        g_assert_cmpuint(c.slice, ==, 128 * MiB);
        g_assert_cmpuint(cache_color_of(&c, 8 * GiB), ==, 0);
        g_assert_cmpuint(cache_color_of(&c, 8 * GiB + 128 * MiB), ==, 1);
        g_assert_cmpuint(cache_color_of(&c, 8 * GiB + 511 * MiB), ==, 3);
        g_assert_cmpuint(cache_color_of(&c, 8 * GiB + 512 * MiB), ==, 0);
        g_assert_cmpuint(cache_color_next_edge(&c, 8 * GiB + 1), ==, 8 * GiB + 128 * MiB);
        g_assert_cmpuint(cache_colors_of_range(&c, 8 * GiB + 100 * MiB, 50 * MiB), ==, 0x3);
        g_assert_cmpuint(cache_colors_of_range(&c, 8 * GiB, 4 * GiB), ==, 0xf);
        g_assert_cmpuint(cache_colors_bytes_in(&c, 8 * GiB, GiB, 0x1), ==, 256 * MiB);
        g_assert_cmpuint(color_mask_count(0x5), ==, 2);
        {
                g_autofree char *s = color_mask_to_string(0x9);
                g_assert_cmpstr(s, ==, "0,3");
        }

        g_assert_false(cache_colors_init(&c, 512 * MiB, 1, 2 * MiB, &why));
        g_assert_false(cache_colors_init(&c, 512 * MiB, 65, 2 * MiB, &why));
        g_assert_false(cache_colors_init(&c, 512 * MiB, 3, 2 * MiB, &why));
        g_assert_nonnull(strstr(why, "multiple of Colors="));
        /* 64 MiB slices cannot hold 1 GiB-aligned ranges edge to edge. */
        g_assert_false(cache_colors_init(&c, 512 * MiB, 8, GiB, &why));
        g_assert_nonnull(strstr(why, "Align="));
        g_assert_false(cache_colors_enabled(&c));
}

/* Placement in allowed colours only: ranges never touch another colour,
 * split at colour edges; an impossible request is -ENOSPC. */
static void test_place_colors(void) {
        ExtentMap *m = extent_map_new(8 * GiB, 2 * GiB);
        CacheColors c;
        const char *why;
        DaxRange r[DAX_RANGES_MAX];
        PlacementRequest pr = {
                .size = 768 * MiB, .align = 2 * MiB, .contiguous = false, .max_ranges = 64, .colors = &c,
                .color_mask = 0x1,
        };
        int n;

        g_assert_true(cache_colors_init(&c, 512 * MiB, 4, 2 * MiB, &why));
        /* Colour 0 is 4 x 128 MiB = 512 MiB of this pool: 768 MiB does not fit. */
        g_assert_cmpint(extent_map_place(m, &pr, r, DAX_RANGES_MAX), ==, -ENOSPC);
        pr.color_mask = 0x5;
        n = extent_map_place(m, &pr, r, DAX_RANGES_MAX);
        g_assert_cmpint(n, >, 0);
        g_assert_cmpuint(dax_ranges_size(r, n), ==, 768 * MiB);
        g_assert_cmpuint(cache_colors_of_ranges(&c, r, n) & ~(ColorMask) 0x5, ==, 0);
        /* Adjacent allowed colours make one contiguous piece. */
        pr.color_mask = 0x3;
        pr.size = 256 * MiB;
        pr.contiguous = true;
        n = extent_map_place(m, &pr, r, DAX_RANGES_MAX);
        g_assert_cmpint(n, ==, 1);
        g_assert_cmpuint(cache_colors_of_ranges(&c, r, n), ==, 0x3);
        /* Taken memory is not offered again. */
        extent_map_set(m, r[0].start, r[0].size, EXTENT_ALLOCATED, &c);
        pr.contiguous = false;
        pr.size = 768 * MiB;
        n = extent_map_place(m, &pr, r, DAX_RANGES_MAX);
        g_assert_cmpint(n, >, 0);
        for (int i = 0; i < n; i++)
                g_assert_true(extent_map_is(m, r[i].start, r[i].size, EXTENT_FREE, NULL));
        g_assert_cmpuint(cache_colors_of_ranges(&c, r, n) & ~(ColorMask) 0x3, ==, 0);
        /* Without colours the whole pool is used. */
        pr.colors = NULL;
        pr.size = GiB + 768 * MiB;
        g_assert_cmpint(extent_map_place(m, &pr, r, DAX_RANGES_MAX), >, 0);
        extent_map_free(m);
}

static void write_file(const char *dir, const char *rel, const char *text) {
        g_autofree char *path = g_build_filename(dir, rel, NULL);
        g_autofree char *parent = g_path_get_dirname(path);

        g_assert_cmpint(g_mkdir_with_parents(parent, 0755), ==, 0);
        g_assert_true(g_file_set_contents(path, text, -1, NULL));
}

/* What is missing stays unknown; a node without HMAT is all unknown. */
static void test_sysfs(void) {
        g_autofree char *root = g_dir_make_tmp("daxbroker-node-perf-XXXXXX", NULL);
        NodePerf p;

        g_assert_nonnull(root);
        write_file(root, "devices/system/node/node1/access0/initiators/read_bandwidth", "5120\n");
        write_file(root, "devices/system/node/node1/access0/initiators/read_latency", "80\n");
        write_file(root, "devices/system/node/node1/access1/initiators/write_latency", "100\n");
        write_file(root, "devices/system/node/node1/memory_side_cache/index1/size", "536870912\n");
        write_file(root, "devices/system/node/node1/memory_side_cache/index1/line_size", "64\n");
        write_file(root, "devices/system/node/node1/memory_side_cache/index1/indexing", "0\n");
        write_file(root, "devices/system/node/node1/memory_side_cache/index1/write_policy", "0\n");
        write_file(root, "devices/system/node/node0/cpulist", "0-1\n");

        g_assert_cmpint(node_perf_read_sysfs(root, 1, &p), ==, 0);
        g_assert_true(p.access[0].present);
        g_assert_cmpuint(p.access[0].read_bandwidth, ==, 5120);
        g_assert_cmpuint(p.access[0].read_latency, ==, 80);
        g_assert_cmpuint(p.access[0].write_bandwidth, ==, NODE_PERF_UNKNOWN);
        g_assert_true(p.access[1].present);
        g_assert_cmpuint(p.access[1].write_latency, ==, 100);
        g_assert_cmpuint(p.access[1].read_latency, ==, NODE_PERF_UNKNOWN);
        g_assert_true(node_perf_access(&p) == &p.access[1]);
        g_assert_cmpuint(p.n_caches, ==, 1);
        g_assert_cmpuint(p.caches[0].size, ==, 512 * MiB);
        g_assert_cmpuint(p.caches[0].line_size, ==, 64);
        g_assert_cmpint(p.caches[0].indexing, ==, NODE_CACHE_DIRECT_MAPPED);
        g_assert_cmpstr(node_cache_write_policy_to_string(p.caches[0].write_policy), ==, "write-back");
        g_assert_true(node_perf_direct_mapped_cache(&p) == &p.caches[0]);

        g_assert_cmpint(node_perf_read_sysfs(root, 0, &p), ==, 0);
        g_assert_false(p.access[0].present || p.access[1].present);
        g_assert_null(node_perf_access(&p));
        g_assert_cmpuint(p.n_caches, ==, 0);
        g_assert_cmpint(node_perf_read_sysfs(root, 7, &p), ==, 0);
        g_assert_null(node_perf_access(&p));

        /* The kernel never writes junk: junk is an error, not "unknown". */
        write_file(root, "devices/system/node/node1/access0/initiators/write_bandwidth", "fast\n");
        g_assert_cmpint(node_perf_read_sysfs(root, 1, &p), ==, -EBADMSG);
        {
                g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", root);
                g_assert_cmpint(system(cmd), ==, 0);
        }
}

/* The sim's spelling; bad input is refused whole. */
static void test_sim_spec(void) {
        DaxBackend *b = NULL;
        NodePerf p;

        g_assert_cmpint(dax_backend_new_from_string("sim:0:4G:2G:0,1:8G:2G:1;access=1:1:5000:4000:400:-;"
                                                    "cache=1:1:512M:64:0:-",
                                                    &b),
                        ==, 0);
        g_assert_cmpint(b->ops->node_perf(b, 1, &p), ==, 0);
        g_assert_cmpuint(p.access[1].read_bandwidth, ==, 5000);
        g_assert_cmpuint(p.access[1].write_latency, ==, NODE_PERF_UNKNOWN);
        g_assert_false(p.access[0].present);
        g_assert_cmpuint(p.caches[0].size, ==, 512 * MiB);
        g_assert_cmpint(p.caches[0].write_policy, ==, NODE_CACHE_WRITE_POLICY_UNKNOWN);
        g_assert_cmpint(b->ops->node_perf(b, 0, &p), ==, 0);
        g_assert_null(node_perf_access(&p));
        dax_backend_free(b);

        static const char *const bad[] = {
                "sim:0:4G:2G:0;access=1:2:1:1:1:1", "sim:0:4G:2G:0;access=1:0:1:1:1",
                "sim:0:4G:2G:0;access=x:0:1:1:1:1", "sim:0:4G:2G:0;cache=1:0:512M:64:0:0",
                "sim:0:4G:2G:0;cache=1:1:512M:64:3:0", "sim:0:4G:2G:0;access=",
        };
        for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
                b = NULL;
                g_assert_cmpint(dax_backend_new_from_string(bad[i], &b), <, 0);
                g_assert_null(b);
        }
}

int main(int argc, char **argv) {
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/colors/arithmetic", test_arithmetic);
        g_test_add_func("/colors/place", test_place_colors);
        g_test_add_func("/node-perf/sysfs", test_sysfs);
        g_test_add_func("/node-perf/sim-spec", test_sim_spec);
        return g_test_run();
}
