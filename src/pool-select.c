/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <inttypes.h>
#include <stdlib.h>

#include "pool-select.h"
#include "util.h"

bool pool_select_by_class(const AllocateRequest *req) {
        return req->min_read_bandwidth || req->min_write_bandwidth || req->max_read_latency ||
               req->max_write_latency || req->tier || req->cache_isolation || req->colors;
}

typedef struct Bound {
        const char *what;
        uint64_t want;
        uint64_t have;
        bool at_least; /* bandwidth: have >= want; latency: have <= want */
        const char *unit;
} Bound;

static size_t bounds_of(const Pool *p, const AllocateRequest *req, Bound ret[4]) {
        const NodeAccess *a = node_perf_access(&p->perf);
        size_t n = 0;

#define BOUND(field, name, attr, least, u)                                                                        \
        if (req->field)                                                                                            \
                ret[n++] = (Bound) { name, req->field, a ? a->attr : NODE_PERF_UNKNOWN, least, u };
        BOUND(min_read_bandwidth, "read bandwidth", read_bandwidth, true, "MB/s");
        BOUND(min_write_bandwidth, "write bandwidth", write_bandwidth, true, "MB/s");
        BOUND(max_read_latency, "read latency", read_latency, false, "ns");
        BOUND(max_write_latency, "write latency", write_latency, false, "ns");
#undef BOUND
        return n;
}

bool pool_select_qualifies(const Pool *p, const AllocateRequest *req, char **ret_why) {
        Bound bounds[4];
        size_t n = bounds_of(p, req, bounds);

        for (size_t i = 0; i < n; i++) {
                const Bound *x = &bounds[i];

                if (x->have == NODE_PERF_UNKNOWN) {
                        *ret_why = g_strdup_printf("pool %s: %s of NUMA node %d is unknown (no HMAT)", p->name, x->what,
                                                   p->numa_node);
                        return false;
                }
                if (x->at_least ? x->have < x->want : x->have > x->want) {
                        *ret_why = g_strdup_printf("pool %s: %s %" PRIu64 " %s is %s %" PRIu64, p->name, x->what,
                                                   x->have, x->unit, x->at_least ? "below" : "above", x->want);
                        return false;
                }
        }
        if (req->tier && g_strcmp0(req->tier, p->tier) != 0) {
                *ret_why = p->tier ? g_strdup_printf("pool %s is in tier '%s'", p->name, p->tier)
                                   : g_strdup_printf("pool %s has no Tier=", p->name);
                return false;
        }
        if (req->cache_isolation || req->colors) {
                if (!cache_colors_enabled(&p->colors)) {
                        *ret_why = p->colors_off ? g_strdup_printf("pool %s has no cache colours: %s", p->name, p->colors_off)
                                                 : g_strdup_printf("pool %s has no cache colours (no Colors=)", p->name);
                        return false;
                }
                if (req->colors & ~cache_colors_all(&p->colors)) {
                        *ret_why = g_strdup_printf("pool %s has colours 0 to %u only", p->name, p->colors.n - 1);
                        return false;
                }
        }
        return true;
}

double pool_select_distance(const Pool *p, const AllocateRequest *req) {
        Bound bounds[4];
        size_t n = bounds_of(p, req, bounds);
        double d = 0;

        for (size_t i = 0; i < n; i++)
                d += ((double) bounds[i].have - (double) bounds[i].want) / (double) bounds[i].want *
                     (bounds[i].at_least ? 1 : -1);
        return d;
}

typedef struct Ranked {
        Pool *pool;
        double distance;
        uint64_t free;
        guint index;
} Ranked;

static gint ranked_cmp(gconstpointer x, gconstpointer y) {
        const Ranked *a = x, *b = y;

        if (a->distance != b->distance)
                return a->distance < b->distance ? -1 : 1;
        if (a->free != b->free)
                return a->free > b->free ? -1 : 1;
        return a->index < b->index ? -1 : a->index > b->index;
}

void pool_select_sort(GPtrArray *pools, const AllocateRequest *req) {
        g_autofree Ranked *r = g_new(Ranked, pools->len ?: 1);

        for (guint i = 0; i < pools->len; i++) {
                PoolUsage u;

                pool_usage(pools->pdata[i], &u);
                r[i] = (Ranked) { pools->pdata[i], pool_select_distance(pools->pdata[i], req), u.free, i };
        }
        qsort(r, pools->len, sizeof(Ranked), (int (*)(const void *, const void *)) ranked_cmp);
        for (guint i = 0; i < pools->len; i++)
                pools->pdata[i] = r[i].pool;
}
