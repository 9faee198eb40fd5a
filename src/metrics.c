/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <inttypes.h>

#include "metrics.h"

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
                        g_string_append_printf(out, "%s{pool=\"", g->name);
                        append_label_value(out, p->name);
                        g_string_append_printf(out, "\",region=\"%u\",node=\"%d\"} %" PRIu64 "\n", p->region_id,
                                               p->numa_node, g->get(p, &u));
                }
        }
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
