/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <glib.h>
#include <limits.h>
#include <string.h>

#include "config.h"
#include "node-perf.h"
#include "util.h"

void node_perf_init(NodePerf *p) {
        *p = (NodePerf) {};
        for (unsigned i = 0; i < NODE_PERF_ACCESS_CLASSES; i++)
                p->access[i] = (NodeAccess) {
                        .read_bandwidth = NODE_PERF_UNKNOWN,
                        .write_bandwidth = NODE_PERF_UNKNOWN,
                        .read_latency = NODE_PERF_UNKNOWN,
                        .write_latency = NODE_PERF_UNKNOWN,
                };
}

/* Missing stays unknown; present but unreadable is an error, so that a
 * broken file is not silently taken for "no HMAT". */
static int read_optional(const char *dir, const char *attr, uint64_t *ret) {
        g_autofree char *path = g_build_filename(dir, attr, NULL);
        uint64_t v;
        int r;

        r = read_attr_u64(path, &v);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r == -EINVAL ? -EBADMSG : r;
        *ret = v;
        return 0;
}

int node_perf_add_cache(NodePerf *p, const NodeCache *c) {
        unsigned i;

        for (i = 0; i < p->n_caches; i++)
                if (p->caches[i].level == c->level) {
                        p->caches[i] = *c;
                        return 0;
                }
        if (p->n_caches >= NODE_PERF_CACHES_MAX)
                return -E2BIG;
        for (i = p->n_caches; i > 0 && p->caches[i - 1].level > c->level; i--)
                p->caches[i] = p->caches[i - 1];
        p->caches[i] = *c;
        p->n_caches++;
        return 0;
}

int node_perf_read_sysfs(const char *sysfs_root, int node, NodePerf *ret) {
        g_autofree char *base = NULL, *caches = NULL;
        g_autoptr(GDir) dir = NULL;
        const char *e;
        NodePerf p;
        int r;

        node_perf_init(&p);
        if (node < 0) {
                *ret = p;
                return 0;
        }
        base = g_strdup_printf("%s/devices/system/node/node%d", sysfs_root, node);

        for (unsigned k = 0; k < NODE_PERF_ACCESS_CLASSES; k++) {
                g_autofree char *name = g_strdup_printf("access%u/initiators", k);
                g_autofree char *d = g_build_filename(base, name, NULL);
                NodeAccess *a = &p.access[k];

                if (!g_file_test(d, G_FILE_TEST_IS_DIR))
                        continue;
                a->present = true;
                if ((r = read_optional(d, "read_bandwidth", &a->read_bandwidth)) < 0 ||
                    (r = read_optional(d, "write_bandwidth", &a->write_bandwidth)) < 0 ||
                    (r = read_optional(d, "read_latency", &a->read_latency)) < 0 ||
                    (r = read_optional(d, "write_latency", &a->write_latency)) < 0)
                        return r;
        }

        caches = g_build_filename(base, "memory_side_cache", NULL);
        dir = g_dir_open(caches, 0, NULL);
        while (dir && (e = g_dir_read_name(dir))) {
                g_autofree char *d = g_build_filename(caches, e, NULL);
                NodeCache c = {
                        .size = NODE_PERF_UNKNOWN,
                        .line_size = NODE_PERF_UNKNOWN,
                        .indexing = NODE_CACHE_INDEXING_UNKNOWN,
                        .write_policy = NODE_CACHE_WRITE_POLICY_UNKNOWN,
                };
                uint64_t level, v;

                if (!g_str_has_prefix(e, "index") ||
                    !g_ascii_string_to_unsigned(e + strlen("index"), 10, 0, UINT_MAX, &level, NULL))
                        continue;
                c.level = (unsigned) level;
                if ((r = read_optional(d, "size", &c.size)) < 0 || (r = read_optional(d, "line_size", &c.line_size)) < 0)
                        return r;
                v = NODE_PERF_UNKNOWN;
                if ((r = read_optional(d, "indexing", &v)) < 0)
                        return r;
                if (v != NODE_PERF_UNKNOWN)
                        c.indexing = v <= NODE_CACHE_INDEXING_OTHER ? (NodeCacheIndexing) v : NODE_CACHE_INDEXING_OTHER;
                v = NODE_PERF_UNKNOWN;
                if ((r = read_optional(d, "write_policy", &v)) < 0)
                        return r;
                if (v != NODE_PERF_UNKNOWN)
                        c.write_policy = v <= NODE_CACHE_WRITE_POLICY_OTHER ? (NodeCacheWritePolicy) v
                                                                            : NODE_CACHE_WRITE_POLICY_OTHER;
                r = node_perf_add_cache(&p, &c);
                if (r < 0)
                        return r;
        }
        *ret = p;
        return 0;
}

const NodeAccess *node_perf_access(const NodePerf *p) {
        if (p->access[1].present)
                return &p->access[1];
        if (p->access[0].present)
                return &p->access[0];
        return NULL;
}

const NodeCache *node_perf_direct_mapped_cache(const NodePerf *p) {
        for (unsigned i = 0; i < p->n_caches; i++)
                if (p->caches[i].indexing == NODE_CACHE_DIRECT_MAPPED && p->caches[i].size != NODE_PERF_UNKNOWN &&
                    p->caches[i].size > 0)
                        return &p->caches[i];
        return NULL;
}

const char *node_cache_indexing_to_string(NodeCacheIndexing i) {
        switch (i) {
        case NODE_CACHE_DIRECT_MAPPED:
                return "direct-mapped";
        case NODE_CACHE_INDEXED:
                return "indexed";
        case NODE_CACHE_INDEXING_OTHER:
                return "other";
        default:
                return "unknown";
        }
}

const char *node_cache_write_policy_to_string(NodeCacheWritePolicy w) {
        switch (w) {
        case NODE_CACHE_WRITE_BACK:
                return "write-back";
        case NODE_CACHE_WRITE_THROUGH:
                return "write-through";
        case NODE_CACHE_WRITE_POLICY_OTHER:
                return "other";
        default:
                return "unknown";
        }
}

static int parse_field(const char *s, uint64_t max, uint64_t *ret) {
        if (strcmp(s, "-") == 0) {
                *ret = NODE_PERF_UNKNOWN;
                return 0;
        }
        return g_ascii_string_to_unsigned(s, 10, 0, max, ret, NULL) ? 0 : -EINVAL;
}

int node_perf_parse_access(const char *s, int *ret_node, unsigned *ret_class, NodeAccess *ret) {
        g_auto(GStrv) f = g_strsplit(s, ":", -1);
        uint64_t node, class;
        NodeAccess a = { .present = true };

        if (g_strv_length(f) != 6 || !g_ascii_string_to_unsigned(f[0], 10, 0, INT_MAX, &node, NULL) ||
            !g_ascii_string_to_unsigned(f[1], 10, 0, NODE_PERF_ACCESS_CLASSES - 1, &class, NULL) ||
            parse_field(f[2], UINT32_MAX, &a.read_bandwidth) < 0 || parse_field(f[3], UINT32_MAX, &a.write_bandwidth) < 0 ||
            parse_field(f[4], UINT32_MAX, &a.read_latency) < 0 || parse_field(f[5], UINT32_MAX, &a.write_latency) < 0)
                return -EINVAL;
        *ret_node = (int) node;
        *ret_class = (unsigned) class;
        *ret = a;
        return 0;
}

int node_perf_parse_cache(const char *s, int *ret_node, NodeCache *ret) {
        g_auto(GStrv) f = g_strsplit(s, ":", -1);
        uint64_t node, level, indexing, policy;
        NodeCache c;

        if (g_strv_length(f) != 6 || !g_ascii_string_to_unsigned(f[0], 10, 0, INT_MAX, &node, NULL) ||
            !g_ascii_string_to_unsigned(f[1], 10, 1, 3, &level, NULL))
                return -EINVAL;
        c.level = (unsigned) level;
        if (strcmp(f[2], "-") == 0)
                c.size = NODE_PERF_UNKNOWN;
        else if (parse_size(f[2], &c.size) < 0)
                return -EINVAL;
        if (strcmp(f[3], "-") == 0)
                c.line_size = NODE_PERF_UNKNOWN;
        else if (parse_size(f[3], &c.line_size) < 0)
                return -EINVAL;
        if (parse_field(f[4], NODE_CACHE_INDEXING_OTHER, &indexing) < 0 ||
            parse_field(f[5], NODE_CACHE_WRITE_POLICY_OTHER, &policy) < 0)
                return -EINVAL;
        c.indexing = indexing == NODE_PERF_UNKNOWN ? NODE_CACHE_INDEXING_UNKNOWN : (NodeCacheIndexing) indexing;
        c.write_policy = policy == NODE_PERF_UNKNOWN ? NODE_CACHE_WRITE_POLICY_UNKNOWN : (NodeCacheWritePolicy) policy;
        *ret_node = (int) node;
        *ret = c;
        return 0;
}
