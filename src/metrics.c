/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "store.h"

/* One gauge family per PoolUsage field, all in bytes. */
typedef struct Gauge {
        const char *name;
        const char *help;
        uint64_t (*get)(const Pool *p, const PoolUsage *u);
} Gauge;

static uint64_t gauge_size(const Pool *p, const PoolUsage *u) { return p->size; }
static uint64_t gauge_allocated(const Pool *p, const PoolUsage *u) { return u->allocated; }
static uint64_t gauge_free(const Pool *p, const PoolUsage *u) { return u->free; }
static uint64_t gauge_host(const Pool *p, const PoolUsage *u) { return u->host; }
static uint64_t gauge_dirty(const Pool *p, const PoolUsage *u) { return u->dirty; }
static uint64_t gauge_foreign(const Pool *p, const PoolUsage *u) { return u->foreign; }
static uint64_t gauge_largest(const Pool *p, const PoolUsage *u) { return u->largest_free; }

static const Gauge gauges[] = {
        { "daxbroker_pool_size_bytes", "Size of the pool's region.", gauge_size },
        { "daxbroker_pool_allocated_bytes", "Memory held by allocations and operations in progress.", gauge_allocated },
        { "daxbroker_pool_free_bytes", "Memory no device holds (clean, or dirty and zeroed on use).", gauge_free },
        { "daxbroker_pool_host_bytes", "Memory lent to the host page allocator (kmem).", gauge_host },
        { "daxbroker_pool_dirty_bytes", "Memory still to be zeroed before a new owner gets it.", gauge_dirty },
        { "daxbroker_pool_foreign_bytes", "Memory held by devices the broker does not own.", gauge_foreign },
        { "daxbroker_pool_largest_free_extent_bytes", "Largest contiguous free range.", gauge_largest },
};

/* Label values: backslash, double quote and newline are escaped. */
static void append_label_value(GString *out, const char *s) {
        for (; *s; s++) {
                if (*s == '\\' || *s == '"')
                        g_string_append_c(out, '\\');
                if (*s == '\n')
                        g_string_append(out, "\\n");
                else
                        g_string_append_c(out, *s);
        }
}

/* ---- counters and histograms ---- */

typedef struct PoolCounters {
        uint64_t allocations, releases, zeroed, returned, reclaimed;
} PoolCounters;

/* Upper bounds of the latency buckets, in microseconds (+Inf follows):
 * 100 us, the sim's fastest allocation, up to 30 s, past the 25 s D-Bus
 * timeout. */
static const uint64_t bucket_usec[] = {
        100,     250,     500,      1000,     2500,     5000,      10000,     25000,    50000,
        100000,  250000,  500000,   1000000,  2500000,  5000000,   10000000,  30000000,
};

typedef struct Histogram {
        uint64_t buckets[G_N_ELEMENTS(bucket_usec)]; /* not cumulative */
        uint64_t count;
        uint64_t sum_usec;
} Histogram;

static struct {
        GHashTable *pools;    /* pool name -> PoolCounters */
        GHashTable *failures; /* "method\terror" -> count */
        Histogram calls[_METRICS_CALL_MAX];
        void (*changed)(void *userdata);
        void *changed_data;
} counters;

void metrics_set_changed(void (*changed)(void *userdata), void *userdata) {
        counters.changed = changed;
        counters.changed_data = userdata;
}

static void changed(void) {
        if (counters.changed)
                counters.changed(counters.changed_data);
}

/* The pool gauges are counted elsewhere; the file follows them as it
 * follows the counters, so a scrape never sees a stale FreeSize for long. */
void metrics_gauges_changed(void) {
        changed();
}

static PoolCounters *pool_counters(const char *pool) {
        PoolCounters *c;

        if (!counters.pools)
                counters.pools = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
        c = g_hash_table_lookup(counters.pools, pool);
        if (!c) {
                c = g_new0(PoolCounters, 1);
                g_hash_table_insert(counters.pools, g_strdup(pool), c);
        }
        return c;
}

void metrics_count_allocation(const char *pool) {
        pool_counters(pool)->allocations++;
        changed();
}

void metrics_count_release(const char *pool) {
        pool_counters(pool)->releases++;
        changed();
}

void metrics_count_zeroed(const char *pool, uint64_t bytes) {
        pool_counters(pool)->zeroed += bytes;
        changed();
}

void metrics_count_returned(const char *pool, uint64_t bytes) {
        pool_counters(pool)->returned += bytes;
        changed();
}

void metrics_count_reclaimed(const char *pool, uint64_t bytes) {
        pool_counters(pool)->reclaimed += bytes;
        changed();
}

#define OUR_ERROR_PREFIX "org.daxbroker.Broker1.Error."

void metrics_count_failure(const char *method, const char *error_name) {
        const char *e = error_name ? error_name : "unknown";
        char *key;
        void *v;

        if (g_str_has_prefix(e, OUR_ERROR_PREFIX))
                e += strlen(OUR_ERROR_PREFIX);
        if (!counters.failures)
                counters.failures = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        key = g_strdup_printf("%s\t%s", method ? method : "unknown", e);
        v = g_hash_table_lookup(counters.failures, key);
        g_hash_table_replace(counters.failures, key, GUINT_TO_POINTER(GPOINTER_TO_UINT(v) + 1));
        changed();
}

void metrics_observe(MetricsCall call, uint64_t usec) {
        Histogram *h = &counters.calls[call];
        size_t i = 0;

        while (i < G_N_ELEMENTS(bucket_usec) && usec > bucket_usec[i])
                i++;
        if (i < G_N_ELEMENTS(bucket_usec))
                h->buckets[i]++;
        h->count++;
        h->sum_usec += usec;
        changed();
}

void metrics_reset(void) {
        g_clear_pointer(&counters.pools, g_hash_table_destroy);
        g_clear_pointer(&counters.failures, g_hash_table_destroy);
        memset(counters.calls, 0, sizeof(counters.calls));
}

/* ---- rendering ---- */

static void append_pool_labels(GString *out, const Pool *p) {
        g_string_append(out, "{pool=\"");
        append_label_value(out, p->name);
        g_string_append_printf(out, "\",region=\"%u\",node=\"%d\"}", p->region_id, p->numa_node);
}

typedef struct Counter {
        const char *name; /* the family; samples add _total */
        const char *unit; /* NULL: none */
        const char *help;
        size_t offset;    /* in PoolCounters */
} Counter;

static const Counter pool_counter_families[] = {
        { "daxbroker_allocations", NULL, "Allocations made (each got its device).",
          offsetof(PoolCounters, allocations) },
        { "daxbroker_releases", NULL, "Allocations released (their device is gone).",
          offsetof(PoolCounters, releases) },
        { "daxbroker_zeroed_bytes", "bytes", "Memory zeroed between owners (background and on allocation).",
          offsetof(PoolCounters, zeroed) },
        { "daxbroker_returned_bytes", "bytes", "Memory lent to the host (kmem).",
          offsetof(PoolCounters, returned) },
        { "daxbroker_reclaimed_bytes", "bytes", "Memory taken back from the host.",
          offsetof(PoolCounters, reclaimed) },
};

static void render_counters(GPtrArray *pools, GString *out) {
        for (size_t i = 0; i < G_N_ELEMENTS(pool_counter_families); i++) {
                const Counter *c = &pool_counter_families[i];

                g_string_append_printf(out, "# TYPE %s counter\n", c->name);
                if (c->unit)
                        g_string_append_printf(out, "# UNIT %s %s\n", c->name, c->unit);
                g_string_append_printf(out, "# HELP %s %s\n", c->name, c->help);
                for (guint k = 0; k < pools->len; k++) {
                        const Pool *p = g_ptr_array_index(pools, k);
                        const PoolCounters *pc = counters.pools ? g_hash_table_lookup(counters.pools, p->name) : NULL;

                        g_string_append_printf(out, "%s_total", c->name);
                        append_pool_labels(out, p);
                        g_string_append_printf(out, " %" PRIu64 "\n",
                                               pc ? *(const uint64_t *) ((const char *) pc + c->offset) : 0);
                }
        }
}

/* What the state directory costs the disk: a burst of warm hand-overs
 * shares one directory fsync, each file written still has its own. */
static void render_syncs(GString *out) {
        uint64_t files, dirs;

        store_sync_counts(&files, &dirs);
        g_string_append_printf(out,
                               "# TYPE daxbroker_state_directory_syncs counter\n"
                               "# HELP daxbroker_state_directory_syncs Durable saves of the state: fsyncs of the "
                               "state directory.\n"
                               "daxbroker_state_directory_syncs_total %" PRIu64 "\n"
                               "# TYPE daxbroker_state_file_syncs counter\n"
                               "# HELP daxbroker_state_file_syncs Fsyncs of state files written.\n"
                               "daxbroker_state_file_syncs_total %" PRIu64 "\n",
                               dirs, files);
}

static int key_cmp(const void *x, const void *y) {
        return strcmp(*(const char *const *) x, *(const char *const *) y);
}

static void render_failures(GString *out) {
        g_autofree const void **keys = NULL;
        guint n = 0;

        g_string_append(out, "# TYPE daxbroker_failures counter\n"
                             "# HELP daxbroker_failures D-Bus calls refused, by method and error name.\n");
        if (!counters.failures)
                return;
        keys = (const void **) g_hash_table_get_keys_as_array(counters.failures, &n);
        qsort(keys, n, sizeof(*keys), key_cmp);
        for (guint i = 0; i < n; i++) {
                const char *key = keys[i];
                const char *tab = strchr(key, '\t');
                g_autofree char *method = g_strndup(key, tab - key);

                g_string_append(out, "daxbroker_failures_total{method=\"");
                append_label_value(out, method);
                g_string_append(out, "\",error=\"");
                append_label_value(out, tab + 1);
                g_string_append_printf(out, "\"} %u\n", GPOINTER_TO_UINT(g_hash_table_lookup(counters.failures, key)));
        }
}

static void render_histogram(GString *out, const char *name, const char *help, const Histogram *h) {
        uint64_t cumulative = 0;

        g_string_append_printf(out, "# TYPE %s histogram\n# UNIT %s seconds\n# HELP %s %s\n", name, name, name, help);
        for (size_t i = 0; i < G_N_ELEMENTS(bucket_usec); i++) {
                cumulative += h->buckets[i];
                g_string_append_printf(out, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name, bucket_usec[i] / 1e6,
                                       cumulative);
        }
        g_string_append_printf(out, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, h->count);
        g_string_append_printf(out, "%s_count %" PRIu64 "\n", name, h->count);
        g_string_append_printf(out, "%s_sum %" PRIu64 ".%06" PRIu64 "\n", name, h->sum_usec / 1000000,
                               h->sum_usec % 1000000);
}

/* HMAT in the kernel's units; an attribute the kernel does not publish
 * has no sample (absent, not 0). */
static void render_perf(GPtrArray *pools, GString *out) {
        static const struct {
                const char *name, *unit, *help;
                size_t offset;
        } attrs[] = {
                { "daxbroker_pool_read_bandwidth_megabytes_per_second", "megabytes_per_second",
                  "Read bandwidth of the pool's NUMA node (HMAT, MB/s).", offsetof(NodeAccess, read_bandwidth) },
                { "daxbroker_pool_write_bandwidth_megabytes_per_second", "megabytes_per_second",
                  "Write bandwidth of the pool's NUMA node (HMAT, MB/s).", offsetof(NodeAccess, write_bandwidth) },
                { "daxbroker_pool_read_latency_nanoseconds", "nanoseconds",
                  "Read latency of the pool's NUMA node (HMAT, ns).", offsetof(NodeAccess, read_latency) },
                { "daxbroker_pool_write_latency_nanoseconds", "nanoseconds",
                  "Write latency of the pool's NUMA node (HMAT, ns).", offsetof(NodeAccess, write_latency) },
        };

        for (size_t i = 0; i < G_N_ELEMENTS(attrs); i++) {
                g_string_append_printf(out, "# TYPE %s gauge\n# UNIT %s %s\n# HELP %s %s\n", attrs[i].name,
                                       attrs[i].name, attrs[i].unit, attrs[i].name, attrs[i].help);
                for (guint k = 0; k < pools->len; k++) {
                        const Pool *p = g_ptr_array_index(pools, k);

                        for (unsigned c = 0; c < NODE_PERF_ACCESS_CLASSES; c++) {
                                const NodeAccess *a = &p->perf.access[c];
                                uint64_t v = *(const uint64_t *) ((const char *) a + attrs[i].offset);

                                if (!a->present || v == NODE_PERF_UNKNOWN)
                                        continue;
                                g_string_append(out, attrs[i].name);
                                append_pool_labels(out, p);
                                g_string_truncate(out, out->len - 1);
                                g_string_append_printf(out, ",access=\"%u\"} %" PRIu64 "\n", c, v);
                        }
                }
        }
        g_string_append(out, "# TYPE daxbroker_pool_memory_side_cache_bytes gauge\n"
                             "# UNIT daxbroker_pool_memory_side_cache_bytes bytes\n"
                             "# HELP daxbroker_pool_memory_side_cache_bytes Memory-side cache in front of the pool's NUMA node (HMAT).\n");
        for (guint k = 0; k < pools->len; k++) {
                const Pool *p = g_ptr_array_index(pools, k);

                for (unsigned c = 0; c < p->perf.n_caches; c++) {
                        const NodeCache *nc = &p->perf.caches[c];

                        if (nc->size == NODE_PERF_UNKNOWN)
                                continue;
                        g_string_append(out, "daxbroker_pool_memory_side_cache_bytes");
                        append_pool_labels(out, p);
                        g_string_truncate(out, out->len - 1);
                        g_string_append_printf(out, ",level=\"%u\",indexing=\"%s\",write_policy=\"%s\"} %" PRIu64 "\n",
                                               nc->level, node_cache_indexing_to_string(nc->indexing),
                                               node_cache_write_policy_to_string(nc->write_policy), nc->size);
                }
        }
        g_string_append(out, "# TYPE daxbroker_pool_cache_colors gauge\n"
                             "# HELP daxbroker_pool_cache_colors Cache colours in effect (Colors=), 0 if none.\n");
        for (guint k = 0; k < pools->len; k++) {
                const Pool *p = g_ptr_array_index(pools, k);

                g_string_append(out, "daxbroker_pool_cache_colors");
                append_pool_labels(out, p);
                g_string_append_printf(out, " %u\n", p->colors.n);
        }
}

void metrics_render(Broker *b, GString *out) {
        GPtrArray *pools = broker_pools(b);

        for (size_t i = 0; i < G_N_ELEMENTS(gauges); i++) {
                const Gauge *g = &gauges[i];

                g_string_append_printf(out, "# TYPE %s gauge\n# UNIT %s bytes\n# HELP %s %s\n", g->name, g->name,
                                       g->name, g->help);
                for (guint k = 0; k < pools->len; k++) {
                        const Pool *p = g_ptr_array_index(pools, k);
                        PoolUsage u;

                        pool_usage(p, &u);
                        g_string_append(out, g->name);
                        append_pool_labels(out, p);
                        g_string_append_printf(out, " %" PRIu64 "\n", g->get(p, &u));
                }
        }
        render_perf(pools, out);
        render_counters(pools, out);
        render_syncs(out);
        render_failures(out);
        render_histogram(out, "daxbroker_allocate_duration_seconds",
                         "Successful Allocate calls, from authorization to the reply.",
                         &counters.calls[METRICS_CALL_ALLOCATE]);
        render_histogram(out, "daxbroker_release_duration_seconds",
                         "Successful Release calls, from authorization to the reply.",
                         &counters.calls[METRICS_CALL_RELEASE]);
        g_string_append(out, "# EOF\n");
}

int metrics_write(Broker *b, const char *path, GError **error) {
        g_autoptr(GString) out = g_string_new(NULL);

        metrics_render(b, out);
        /* CONSISTENT: a temporary file renamed over path. */
        if (!g_file_set_contents_full(path, out->str, (gssize) out->len, G_FILE_SET_CONTENTS_CONSISTENT, 0644,
                                      error))
                return -EIO;
        return 0;
}
