/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * daxbrokerctl: the operator's command line over the org.daxbroker.Broker1
 * D-Bus API. Every argument is validated here before anything is sent, so a
 * typo is a usage error (exit 2) rather than a round trip; failures reported
 * by the broker print the short D-Bus error name and its message (exit 1).
 * Tables and their JSON are util-linux's libsmartcols, so -o, --raw and
 * --json behave as in lsblk and findmnt.
 */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib.h>
#include <json-glib/json-glib.h>
#include <libsmartcols.h>
#include <systemd/sd-bus.h>

#include "build-config.h"
#include "config.h"
#include "pool-map.h"
#include "util.h"

#define BUS_NAME "org.daxbroker.Broker1"
#define MANAGER_PATH "/org/daxbroker/Broker1"
#define MANAGER_IFACE "org.daxbroker.Broker1.Manager"
#define POOL_IFACE "org.daxbroker.Broker1.Pool"
#define ALLOCATION_IFACE "org.daxbroker.Broker1.Allocation"
#define ALLOCATION_PATH_PREFIX "/org/daxbroker/Broker1/allocation/"
#define POOL_ROW_SIGNATURE "(osuitttttttttt)"
#define ALLOCATION_ROW_SIGNATURE "ossussttsbta(tt)"

/* Allocate and release wait for kernel work (creating devices, offlining
 * memory handed to the host), which can take far longer than sd-bus's
 * 25 s default. */
#define MUTATING_CALL_TIMEOUT_USEC (UINT64_C(300) * 1000 * 1000)

#define EXIT_USAGE 2

static bool arg_json = false;
static bool arg_json_pretty = true;
static bool arg_legend = true;
static bool arg_no_pager = false;
static bool arg_raw = false;
static const char *arg_output = NULL; /* -o: the table's columns */
static const char *arg_bus_address = NULL;
static bool arg_user = false;
static const char *arg_pool = NULL;
static int arg_numa_node = -1;
static uint64_t arg_align = 0;
static bool arg_contiguous = true;
static const char *arg_label = NULL;
static bool arg_transient = false;
/* Class of memory: 0 = not asked. */
static uint64_t arg_min_read_bandwidth, arg_min_write_bandwidth, arg_max_read_latency, arg_max_write_latency;
static const char *arg_tier = NULL;
static bool arg_cache_isolation = false;
static uint32_t arg_colors[64];
static size_t arg_n_colors;
static int64_t arg_device_uid = -1;
static int64_t arg_device_gid = -1;
/* Verb arguments, validated by the verb's parser. */
static const char *arg_owner = NULL;
static uint64_t arg_size = 0;
static const char *arg_allocation = NULL; /* an id or an object path */
static char **arg_command = NULL;         /* exec and open: the command to run */
static const char *arg_exec_owner = NULL;
/* exec and open exit with the command's status (or 126/127/128+N). */
static int command_exit_status = -1;

static bool streq(const char *a, const char *b) {
        return strcmp(a, b) == 0;
}

static int log_error_errno(int error, const char *format, ...) __attribute__((format(printf, 2, 3)));
static int log_error_errno(int error, const char *format, ...) {
        va_list ap;

        fprintf(stderr, "%s: ", program_invocation_short_name);
        va_start(ap, format);
        vfprintf(stderr, format, ap);
        va_end(ap);
        fprintf(stderr, ": %s\n", strerror(-error));
        return error;
}

static int log_usage(const char *format, ...) __attribute__((format(printf, 1, 2)));
static int log_usage(const char *format, ...) {
        va_list ap;

        fprintf(stderr, "%s: ", program_invocation_short_name);
        va_start(ap, format);
        vfprintf(stderr, format, ap);
        va_end(ap);
        fputc('\n', stderr);
        return -EINVAL;
}

/* "org.daxbroker.Broker1.Error.NoSpace: message" -> "NoSpace: message". */
static int log_bus_error(const sd_bus_error *error, int r) {
        const char *name;

        if (!sd_bus_error_is_set(error))
                return log_error_errno(r, "D-Bus call failed");

        name = strrchr(error->name, '.');
        fprintf(stderr, "%s: %s: %s\n", program_invocation_short_name,
                name ? name + 1 : error->name,
                error->message ? error->message : strerror(-r));
        return r;
}

static char *dash_if_empty(const char *s) {
        return g_strdup(s && *s ? s : "-");
}

static void json_add_string(JsonBuilder *b, const char *name, const char *value) {
        json_builder_set_member_name(b, name);
        json_builder_add_string_value(b, value);
}

/* json-glib integers are int64; sizes and physical addresses stay far
 * below 2^63. */
static void json_add_u64(JsonBuilder *b, const char *name, uint64_t value) {
        json_builder_set_member_name(b, name);
        json_builder_add_int_value(b, (gint64) value);
}


static void json_print(JsonBuilder *b) {
        g_autoptr(JsonNode) root = json_builder_get_root(b);
        g_autoptr(JsonGenerator) generator = json_generator_new();
        g_autofree char *text = NULL;

        json_generator_set_pretty(generator, arg_json_pretty);
        json_generator_set_root(generator, root);
        text = json_generator_to_data(generator, NULL);
        puts(text);
}

/* ---- Tables: libsmartcols prints them, as text, raw or JSON ---- */

typedef struct Column {
        const char *name; /* the header; in lower case the JSON member */
        int flags;        /* SCOLS_FL_* */
        int json_type;    /* SCOLS_JSON_* */
        const char *help;
} Column;

/* The table a verb prints: every column it has, and those shown without
 * -o. */
typedef struct TableKind {
        const char *name; /* the JSON member that holds the rows: "pools" */
        const Column *columns;
        size_t n_columns;
        const int *defaults; /* ends with -1 */
} TableKind;

#define COLUMNS_MAX 64

/* The columns chosen for this run, as indexes into its TableKind. */
static int selected_columns[COLUMNS_MAX];
static size_t n_selected_columns;

static char *column_names(const TableKind *k) {
        GString *s = g_string_new(NULL);

        for (size_t i = 0; i < k->n_columns; i++)
                g_string_append_printf(s, "%s%s", i > 0 ? ", " : "", k->columns[i].name);
        return g_string_free(s, FALSE);
}

/* -o LIST (or "+LIST": the default columns and these), names in any case.
 * Without -o a table shows the verb's defaults and JSON every column. */
static int select_columns(const TableKind *k, const char *verb, const char *list) {
        g_autofree char *all_names = column_names(k);
        g_auto(GStrv) names = NULL;

        n_selected_columns = 0;
        if (!list && arg_json) {
                for (size_t i = 0; i < k->n_columns; i++)
                        selected_columns[n_selected_columns++] = (int) i;
                return 0;
        }
        if (!list || list[0] == '+')
                for (const int *d = k->defaults; *d >= 0; d++)
                        selected_columns[n_selected_columns++] = *d;
        if (!list)
                return 0;
        if (list[0] == '+')
                list++;
        if (!*list)
                return log_usage("-o needs column names; %s has the columns %s", verb, all_names);

        names = g_strsplit(list, ",", -1);
        for (char **n = names; *n; n++) {
                size_t i;

                for (i = 0; i < k->n_columns; i++)
                        if (g_ascii_strcasecmp(*n, k->columns[i].name) == 0)
                                break;
                if (i == k->n_columns) {
                        if (!**n)
                                return log_usage("Empty column name in '-o %s'; %s has the columns %s",
                                                 arg_output, verb, all_names);
                        return log_usage("Unknown column '%s' for %s; its columns are %s", *n, verb, all_names);
                }
                if (n_selected_columns == COLUMNS_MAX)
                        return log_usage("Too many columns in -o: at most %d", COLUMNS_MAX);
                selected_columns[n_selected_columns++] = (int) i;
        }
        return 0;
}

static bool column_selected(int column) {
        for (size_t i = 0; i < n_selected_columns; i++)
                if (selected_columns[i] == column)
                        return true;
        return false;
}

static int log_table_error(int r) {
        return log_error_errno(r < 0 ? r : -ENOMEM, "Failed to build the table");
}

static int table_new(const TableKind *k, struct libscols_table **ret) {
        struct libscols_table *tb = scols_new_table();

        if (!tb || scols_table_set_name(tb, k->name) < 0 || scols_table_enable_json(tb, arg_json) < 0 ||
            scols_table_enable_raw(tb, arg_raw) < 0 || scols_table_enable_noheadings(tb, !arg_legend) < 0)
                goto fail;
        for (size_t i = 0; i < n_selected_columns; i++) {
                const Column *c = &k->columns[selected_columns[i]];
                struct libscols_column *cl = scols_table_new_column(tb, c->name, 0, c->flags);

                if (!cl || scols_column_set_json_type(cl, c->json_type) < 0)
                        goto fail;
                /* A multi-line cell (one range per line) stays one cell. */
                if ((c->flags & SCOLS_FL_WRAP) &&
                    (scols_column_set_safechars(cl, "\n") < 0 ||
                     scols_column_set_wrapfunc(cl, scols_wrapnl_chunksize, scols_wrapnl_nextchunk, NULL) < 0))
                        goto fail;
        }
        *ret = tb;
        return 0;
fail:
        scols_unref_table(tb);
        return log_table_error(-ENOMEM);
}

/* One row: cell() gives each selected column's text, malloc()ed. */
static int table_add_row(struct libscols_table *tb, char *(*cell)(const void *row, int column), const void *row) {
        struct libscols_line *ln = scols_table_new_line(tb, NULL);

        if (!ln)
                return log_table_error(-ENOMEM);
        for (size_t i = 0; i < n_selected_columns; i++) {
                char *data = cell(row, selected_columns[i]);
                int r = scols_line_refer_data(ln, i, data);

                if (r < 0) {
                        free(data);
                        return log_table_error(r);
                }
        }
        return 0;
}

/* A text or raw table; an empty one says so in text mode. */
static int table_print(struct libscols_table *tb, const TableKind *k) {
        int r;

        if (scols_table_is_empty(tb) && !arg_raw) {
                if (arg_legend)
                        printf("No %s.\n", k->name);
                return 0;
        }
        r = scols_print_table(tb);
        if (r < 0)
                return log_error_errno(r, "Failed to print the table");
        return 0;
}

/* The table's rows as a JSON array, as libsmartcols writes them (with
 * the JSON types of the columns). */
static int table_to_json(struct libscols_table *tb, const TableKind *k, JsonArray **ret) {
        g_autoptr(JsonParser) parser = json_parser_new();
        g_autoptr(GError) error = NULL;
        _cleanup_free_ char *text = NULL;
        JsonNode *root;
        int r;

        r = scols_print_table_to_string(tb, &text);
        if (r < 0)
                return log_error_errno(r, "Failed to print the table as JSON");
        if (!json_parser_load_from_data(parser, text, -1, &error)) {
                fprintf(stderr, "%s: libsmartcols wrote JSON that does not parse: %s\n",
                        program_invocation_short_name, error->message);
                return -EIO;
        }
        root = json_parser_get_root(parser);
        if (!root || !JSON_NODE_HOLDS_OBJECT(root) ||
            !json_object_has_member(json_node_get_object(root), k->name)) {
                fprintf(stderr, "%s: libsmartcols wrote JSON without '%s'\n", program_invocation_short_name,
                        k->name);
                return -EIO;
        }
        *ret = json_array_ref(json_object_get_array_member(json_node_get_object(root), k->name));
        return 0;
}

/* { NAME: rows } */
static void json_print_rows(const TableKind *k, JsonArray *rows) {
        g_autoptr(JsonBuilder) json = json_builder_new();

        json_builder_begin_object(json);
        json_builder_set_member_name(json, k->name);
        json_builder_add_value(json, json_node_init_array(json_node_alloc(), rows));
        json_builder_end_object(json);
        json_print(json);
}

static int bus_connect(sd_bus **ret) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        const char *what;
        int r;

        if (arg_bus_address) {
                what = arg_bus_address;
                r = sd_bus_new(&bus);
                if (r >= 0)
                        r = sd_bus_set_address(bus, arg_bus_address);
                if (r >= 0)
                        r = sd_bus_set_bus_client(bus, true);
                if (r >= 0)
                        r = sd_bus_start(bus);
        } else if (arg_user) {
                what = "the user bus";
                r = sd_bus_open_user(&bus);
        } else {
                what = "the system bus";
                r = sd_bus_open_system(&bus);
        }
        if (r < 0)
                return log_error_errno(r, "Failed to connect to %s", what);

        /* Lets a polkit agent ask for a password instead of a flat denial. */
        r = sd_bus_set_allow_interactive_authorization(bus, true);
        if (r < 0)
                return log_error_errno(r, "Failed to allow interactive authorization");

        *ret = g_steal_pointer(&bus);
        return 0;
}

static int bus_new_manager_call(sd_bus *bus, const char *method, sd_bus_message **ret) {
        int r;

        r = sd_bus_message_new_method_call(bus, ret, BUS_NAME, MANAGER_PATH, MANAGER_IFACE, method);
        if (r < 0)
                return log_error_errno(r, "Failed to create %s call", method);
        return 0;
}

static int bus_call(sd_bus *bus, sd_bus_message *m, uint64_t timeout_usec, sd_bus_message **ret_reply) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_call(bus, m, timeout_usec, &error, ret_reply);
        if (r < 0)
                return log_bus_error(&error, r);
        return 0;
}

static int log_parse_error(int r) {
        return log_error_errno(r, "Failed to parse the broker's reply");
}

typedef struct ManagerProperties {
        const char *version;
        uint64_t total_size;
        uint64_t allocated_size;
        uint64_t free_size;
        uint64_t host_size;
} ManagerProperties;

/* Strings in *ret point into *ret_reply. */
static int get_manager_properties(sd_bus *bus, sd_bus_message **ret_reply, ManagerProperties *ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        ManagerProperties p = { .version = "" };
        int r;

        r = sd_bus_message_new_method_call(bus, &m, BUS_NAME, MANAGER_PATH,
                                           "org.freedesktop.DBus.Properties", "GetAll");
        if (r < 0)
                return log_error_errno(r, "Failed to create GetAll call");
        r = sd_bus_message_append(m, "s", MANAGER_IFACE);
        if (r < 0)
                return log_error_errno(r, "Failed to create GetAll call");
        r = bus_call(bus, m, 0, &reply);
        if (r < 0)
                return r;

        r = sd_bus_message_enter_container(reply, 'a', "{sv}");
        if (r < 0)
                return log_parse_error(r);
        while ((r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
                const char *name;

                r = sd_bus_message_read(reply, "s", &name);
                if (r < 0)
                        return log_parse_error(r);

                if (streq(name, "Version"))
                        r = sd_bus_message_read(reply, "v", "s", &p.version);
                else if (streq(name, "TotalSize"))
                        r = sd_bus_message_read(reply, "v", "t", &p.total_size);
                else if (streq(name, "AllocatedSize"))
                        r = sd_bus_message_read(reply, "v", "t", &p.allocated_size);
                else if (streq(name, "FreeSize"))
                        r = sd_bus_message_read(reply, "v", "t", &p.free_size);
                else if (streq(name, "HostSize"))
                        r = sd_bus_message_read(reply, "v", "t", &p.host_size);
                else
                        r = sd_bus_message_skip(reply, "v");
                if (r < 0)
                        return log_parse_error(r);

                r = sd_bus_message_exit_container(reply);
                if (r < 0)
                        return log_parse_error(r);
        }
        if (r < 0)
                return log_parse_error(r);
        r = sd_bus_message_exit_container(reply);
        if (r < 0)
                return log_parse_error(r);

        *ret = p;
        *ret_reply = g_steal_pointer(&reply);
        return 0;
}

typedef struct PoolRow {
        const char *path;
        const char *name;
        uint32_t region_id;
        int32_t numa_node;
        uint64_t start;
        uint64_t size;
        uint64_t align;
        uint64_t boundary;
        uint64_t free;
        uint64_t allocated;
        uint64_t host;
        uint64_t dirty;
        uint64_t foreign;
        uint64_t largest_free_extent;
        /* Pool properties, read only when one of their columns is shown;
         * -1: unknown (the kernel publishes no HMAT for the node). */
        bool have_perf;
        int64_t read_bandwidth, write_bandwidth, read_latency, write_latency;
        int64_t cache_size;
        char cache_indexing[16];
        uint32_t colors;
        char tier[65];
} PoolRow;

static int pool_row_get_perf(sd_bus *bus, PoolRow *p);
static bool perf_columns_selected(void);

/* Calls ListPools; the rows' strings point into *ret_reply. */
static int read_pools(sd_bus *bus, sd_bus_message **ret_reply, GArray **ret_rows) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        g_autoptr(GArray) rows = g_array_new(FALSE, TRUE, sizeof(PoolRow));
        PoolRow p;
        int r;

        r = bus_new_manager_call(bus, "ListPools", &m);
        if (r < 0)
                return r;
        r = bus_call(bus, m, 0, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_enter_container(reply, 'a', POOL_ROW_SIGNATURE);
        if (r < 0)
                return log_parse_error(r);
        while ((r = sd_bus_message_read(reply, POOL_ROW_SIGNATURE, &p.path, &p.name, &p.region_id,
                                        &p.numa_node, &p.start, &p.size, &p.align, &p.boundary, &p.free,
                                        &p.allocated, &p.host, &p.dirty, &p.foreign,
                                        &p.largest_free_extent)) > 0)
                g_array_append_val(rows, p);
        if (r < 0)
                return log_parse_error(r);
        for (guint i = 0; perf_columns_selected() && i < rows->len; i++) {
                r = pool_row_get_perf(bus, &g_array_index(rows, PoolRow, i));
                if (r < 0)
                        return r;
        }

        *ret_reply = g_steal_pointer(&reply);
        *ret_rows = g_steal_pointer(&rows);
        return 0;
}

enum {
        POOL_NAME,
        POOL_PATH,
        POOL_REGION,
        POOL_NODE,
        POOL_START,
        POOL_SIZE,
        POOL_ALIGN,
        POOL_BOUNDARY,
        POOL_FREE,
        POOL_ALLOCATED,
        POOL_HOST,
        POOL_DIRTY,
        POOL_FOREIGN,
        POOL_LARGEST_FREE,
        POOL_TIER,
        POOL_READ_BW,
        POOL_WRITE_BW,
        POOL_READ_LAT,
        POOL_WRITE_LAT,
        POOL_CACHE,
        POOL_COLORS,
};

#define SIZE_COLUMN SCOLS_FL_RIGHT, SCOLS_JSON_NUMBER
static const Column pool_columns[] = {
        [POOL_NAME] = { "NAME", 0, SCOLS_JSON_STRING, "pool name" },
        [POOL_PATH] = { "PATH", 0, SCOLS_JSON_STRING, "D-Bus object path" },
        [POOL_REGION] = { "REGION", SCOLS_FL_RIGHT, SCOLS_JSON_NUMBER, "dax region id R of /dev/daxR.N" },
        [POOL_NODE] = { "NODE", SCOLS_FL_RIGHT, SCOLS_JSON_NUMBER, "NUMA node (JSON: -1 if unknown)" },
        [POOL_START] = { "START", SCOLS_FL_RIGHT, SCOLS_JSON_NUMBER, "physical start address" },
        [POOL_SIZE] = { "SIZE", SIZE_COLUMN, "size" },
        [POOL_ALIGN] = { "ALIGN", SIZE_COLUMN, "default alignment of allocations" },
        [POOL_BOUNDARY] = { "BOUNDARY", SIZE_COLUMN, "placement boundary (JSON: 0 for none)" },
        [POOL_FREE] = { "FREE", SIZE_COLUMN, "memory no device holds" },
        [POOL_ALLOCATED] = { "ALLOCATED", SIZE_COLUMN, "memory held by allocations" },
        [POOL_HOST] = { "HOST", SIZE_COLUMN, "memory lent to the host" },
        [POOL_DIRTY] = { "DIRTY", SIZE_COLUMN, "memory still to be zeroed" },
        [POOL_FOREIGN] = { "FOREIGN", SIZE_COLUMN, "memory of devices daxbroker did not create" },
        [POOL_LARGEST_FREE] = { "LARGEST-FREE", SIZE_COLUMN, "largest free extent" },
        [POOL_TIER] = { "TIER", 0, SCOLS_JSON_STRING, "Tier= of the pool" },
        [POOL_READ_BW] = { "READ-BW", SCOLS_FL_RIGHT, SCOLS_JSON_NUMBER,
                           "read bandwidth, MB/s (HMAT access1, else access0; JSON: -1 if unknown)" },
        [POOL_WRITE_BW] = { "WRITE-BW", SCOLS_FL_RIGHT, SCOLS_JSON_NUMBER, "write bandwidth, MB/s (likewise)" },
        [POOL_READ_LAT] = { "READ-LAT", SCOLS_FL_RIGHT, SCOLS_JSON_NUMBER, "read latency, ns (likewise)" },
        [POOL_WRITE_LAT] = { "WRITE-LAT", SCOLS_FL_RIGHT, SCOLS_JSON_NUMBER, "write latency, ns (likewise)" },
        [POOL_CACHE] = { "CACHE", SCOLS_FL_RIGHT, SCOLS_JSON_NUMBER,
                         "memory-side cache in front of the node, first level (JSON: bytes, -1 if none)" },
        [POOL_COLORS] = { "COLORS", SCOLS_FL_RIGHT, SCOLS_JSON_NUMBER, "cache colours in effect (JSON: 0 for none)" },
};

static const int status_defaults[] = {
        POOL_NAME, POOL_REGION, POOL_NODE, POOL_SIZE, POOL_FREE, POOL_ALLOCATED,
        POOL_HOST, POOL_DIRTY, POOL_FOREIGN, POOL_LARGEST_FREE, -1,
};
static const int pools_defaults[] = {
        POOL_NAME, POOL_REGION, POOL_NODE, POOL_START, POOL_SIZE, POOL_ALIGN, POOL_BOUNDARY,
        POOL_FREE, POOL_ALLOCATED, POOL_HOST, POOL_DIRTY, POOL_FOREIGN, POOL_LARGEST_FREE, -1,
};
static const TableKind status_table = { "pools", pool_columns, G_N_ELEMENTS(pool_columns), status_defaults };
static const TableKind pools_table = { "pools", pool_columns, G_N_ELEMENTS(pool_columns), pools_defaults };

/* JSON and raw output are for programs: sizes in bytes, times in
 * microseconds. */
static bool machine_values(void) {
        return arg_json || arg_raw;
}

/* A size: bytes for programs, "1.5 GiB" in a table. */
static char *size_cell(uint64_t bytes) {
        char buf[FORMAT_SIZE_MAX];

        if (machine_values())
                return g_strdup_printf("%" PRIu64, bytes);
        return g_strdup(format_size(bytes, buf, sizeof(buf)));
}

static char *pool_cell(const void *row, int column) {
        const PoolRow *p = row;

        switch (column) {
        case POOL_NAME:
                return g_strdup(p->name);
        case POOL_PATH:
                return g_strdup(p->path);
        case POOL_REGION:
                return g_strdup_printf("%" PRIu32, p->region_id);
        case POOL_NODE:
                return p->numa_node < 0 && !arg_json ? g_strdup("-") : g_strdup_printf("%" PRIi32, p->numa_node);
        case POOL_START:
                return arg_json ? g_strdup_printf("%" PRIu64, p->start) : g_strdup_printf("0x%" PRIx64, p->start);
        case POOL_SIZE:
                return size_cell(p->size);
        case POOL_ALIGN:
                return size_cell(p->align);
        case POOL_BOUNDARY:
                return p->boundary == 0 && !arg_json ? g_strdup("-") : size_cell(p->boundary);
        case POOL_FREE:
                return size_cell(p->free);
        case POOL_ALLOCATED:
                return size_cell(p->allocated);
        case POOL_HOST:
                return size_cell(p->host);
        case POOL_DIRTY:
                return size_cell(p->dirty);
        case POOL_FOREIGN:
                return size_cell(p->foreign);
        case POOL_LARGEST_FREE:
                return size_cell(p->largest_free_extent);
        case POOL_TIER:
                return g_strdup(p->tier[0] || arg_json ? p->tier : "-");
        case POOL_READ_BW:
        case POOL_WRITE_BW:
        case POOL_READ_LAT:
        case POOL_WRITE_LAT: {
                int64_t v = column == POOL_READ_BW    ? p->read_bandwidth
                            : column == POOL_WRITE_BW ? p->write_bandwidth
                            : column == POOL_READ_LAT ? p->read_latency
                                                      : p->write_latency;
                if (v < 0)
                        return g_strdup(arg_json ? "-1" : "-");
                if (machine_values())
                        return g_strdup_printf("%" PRIi64, v);
                return g_strdup_printf("%" PRIi64 " %s", v,
                                       column == POOL_READ_BW || column == POOL_WRITE_BW ? "MB/s" : "ns");
        }
        case POOL_CACHE:
                if (p->cache_size < 0)
                        return g_strdup(arg_json ? "-1" : "-");
                if (machine_values())
                        return g_strdup_printf("%" PRIi64, p->cache_size);
                {
                        g_autofree char *sz = size_cell((uint64_t) p->cache_size);
                        return g_strdup_printf("%s %s", sz, p->cache_indexing);
                }
        case POOL_COLORS:
                return p->colors == 0 && !arg_json ? g_strdup("-") : g_strdup_printf("%" PRIu32, p->colors);
        default:
                g_assert_not_reached();
        }
}

/* The pool properties behind the performance columns; ListPools keeps
 * its signature, so they are read per pool, and only when shown. */
static int pool_row_get_perf(sd_bus *bus, PoolRow *p) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        uint32_t class, level, best = UINT32_MAX;
        int64_t rb, wb, rl, wl, size, line;
        const char *indexing, *policy;
        char *tier = NULL;
        int r;

        p->read_bandwidth = p->write_bandwidth = p->read_latency = p->write_latency = p->cache_size = -1;
        r = sd_bus_get_property(bus, BUS_NAME, p->path, POOL_IFACE, "Access", &error, &reply, "a(uxxxx)");
        if (r < 0)
                return log_error_errno(r, "Cannot read Access of %s: %s", p->name, error.message ?: strerror(-r));
        r = sd_bus_message_enter_container(reply, 'a', "(uxxxx)");
        while (r >= 0 && (r = sd_bus_message_read(reply, "(uxxxx)", &class, &rb, &wb, &rl, &wl)) > 0)
                /* What placement compares: the CPU initiators when published. */
                if (best == UINT32_MAX || class == 1) {
                        best = class;
                        p->read_bandwidth = rb;
                        p->write_bandwidth = wb;
                        p->read_latency = rl;
                        p->write_latency = wl;
                }
        if (r < 0)
                return log_parse_error(r);
        reply = sd_bus_message_unref(reply);

        r = sd_bus_get_property(bus, BUS_NAME, p->path, POOL_IFACE, "MemorySideCaches", &error, &reply, "a(uxxss)");
        if (r < 0)
                return log_error_errno(r, "Cannot read MemorySideCaches of %s: %s", p->name,
                                       error.message ?: strerror(-r));
        r = sd_bus_message_enter_container(reply, 'a', "(uxxss)");
        while (r >= 0 && (r = sd_bus_message_read(reply, "(uxxss)", &level, &size, &line, &indexing, &policy)) > 0)
                if (p->cache_size < 0 && size >= 0) {
                        p->cache_size = size;
                        g_strlcpy(p->cache_indexing, indexing, sizeof(p->cache_indexing));
                }
        if (r < 0)
                return log_parse_error(r);
        reply = sd_bus_message_unref(reply);

        r = sd_bus_get_property_trivial(bus, BUS_NAME, p->path, POOL_IFACE, "Colors", &error, 'u', &p->colors);
        if (r < 0)
                return log_error_errno(r, "Cannot read Colors of %s: %s", p->name, error.message ?: strerror(-r));
        r = sd_bus_get_property_string(bus, BUS_NAME, p->path, POOL_IFACE, "Tier", &error, &tier);
        if (r < 0)
                return log_error_errno(r, "Cannot read Tier of %s: %s", p->name, error.message ?: strerror(-r));
        g_strlcpy(p->tier, tier, sizeof(p->tier));
        free(tier);
        p->have_perf = true;
        return 0;
}

static bool perf_columns_selected(void) {
        for (int c = POOL_TIER; c <= POOL_COLORS; c++)
                if (column_selected(c))
                        return true;
        return false;
}

/* The pools as the selected columns: printed, or as JSON rows in *ret_json
 * when --json is given. */
static int pools_table_output(const TableKind *k, const GArray *rows, JsonArray **ret_json) {
        struct libscols_table *tb = NULL;
        int r;

        r = table_new(k, &tb);
        if (r < 0)
                return r;
        for (guint i = 0; r >= 0 && i < rows->len; i++)
                r = table_add_row(tb, pool_cell, &g_array_index(rows, PoolRow, i));
        if (r >= 0)
                r = arg_json ? table_to_json(tb, k, ret_json) : table_print(tb, k);
        scols_unref_table(tb);
        return r;
}

/* ---- status: the pools' maps ---- */

typedef struct PoolExtents {
        GArray *extents; /* PoolMapExtent */
        GPtrArray *uses; /* the daemon's name of each extent's use */
} PoolExtents;

static void pool_extents_clear(PoolExtents *e) {
        g_clear_pointer(&e->extents, g_array_unref);
        g_clear_pointer(&e->uses, g_ptr_array_unref);
}

/* The pool's Extents property. */
static int get_pool_extents(sd_bus *bus, const PoolRow *p, PoolExtents *ret) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        PoolMapExtent e;
        const char *use;
        int r;

        r = sd_bus_get_property(bus, BUS_NAME, p->path, POOL_IFACE, "Extents", &error, &reply, "a(tts)");
        if (r < 0)
                return log_bus_error(&error, r);
        r = sd_bus_message_enter_container(reply, 'a', "(tts)");
        if (r < 0)
                return log_parse_error(r);
        ret->extents = g_array_new(FALSE, FALSE, sizeof(PoolMapExtent));
        ret->uses = g_ptr_array_new_with_free_func(g_free);
        while ((r = sd_bus_message_read(reply, "(tts)", &e.offset, &e.size, &use)) > 0) {
                e.use = pool_map_use_from_string(use);
                g_array_append_val(ret->extents, e);
                g_ptr_array_add(ret->uses, g_strdup(use));
        }
        if (r < 0)
                return log_parse_error(r);
        return 0;
}

/* Colours in a terminal unless told not to (NO_COLOR, --no-pager, a dumb
 * terminal); plain ASCII otherwise. */
static bool map_colors(void) {
        const char *no_color = getenv("NO_COLOR"), *term = getenv("TERM");

        return isatty(STDOUT_FILENO) && !arg_no_pager && !(no_color && *no_color) && !(term && streq(term, "dumb"));
}

/* $COLUMNS, else the terminal's width, else 72. */
static size_t output_width(void) {
        const char *columns = getenv("COLUMNS");
        struct winsize ws = {};
        guint64 n;

        if (columns && g_ascii_string_to_unsigned(columns, 10, 1, 4096, &n, NULL))
                return (size_t) n;
        if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) >= 0 && ws.ws_col > 0)
                return ws.ws_col;
        return 72;
}

static const char *const map_sgr[_POOL_MAP_USE_MAX] = {
        [POOL_MAP_ALLOCATED] = "32", [POOL_MAP_FREE] = "", [POOL_MAP_HOST] = "34",
        [POOL_MAP_DIRTY] = "33",     [POOL_MAP_FOREIGN] = "31", [POOL_MAP_WARM] = "36",
        [POOL_MAP_OTHER] = "35",
};

static void put_cells(const PoolMapUse *cells, size_t n, bool colors) {
        for (size_t i = 0; i < n;) {
                size_t j = i;

                while (j < n && cells[j] == cells[i])
                        j++;
                if (colors && *map_sgr[cells[i]])
                        printf("\033[%sm", map_sgr[cells[i]]);
                for (size_t k = i; k < j; k++)
                        putchar(pool_map_use_glyph(cells[k]));
                if (colors && *map_sgr[cells[i]])
                        fputs("\033[0m", stdout);
                i = j;
        }
}

/* One line per pool, "NAME [####....HH]", each bar its whole pool from its
 * lowest address, then the legend. */
static int print_pool_maps(const GArray *rows, const PoolExtents *maps) {
        bool colors = map_colors(), other = false, warm = false;
        size_t name_width = 0, width;
        g_autofree PoolMapUse *cells = NULL;

        for (guint i = 0; i < rows->len; i++)
                name_width = MAX(name_width, strlen(g_array_index(rows, PoolRow, i).name));
        width = output_width();
        width = width > name_width + 3 + 8 ? width - name_width - 3 : 8;
        cells = g_new(PoolMapUse, width);

        for (guint i = 0; i < rows->len; i++) {
                const PoolRow *p = &g_array_index(rows, PoolRow, i);
                int r;

                r = pool_map_cells((const PoolMapExtent *) maps[i].extents->data, maps[i].extents->len, p->size,
                                   width, cells);
                if (r < 0)
                        return log_error_errno(r, "The broker's map of pool %s does not cover the pool", p->name);
                printf("%-*s [", (int) name_width, p->name);
                put_cells(cells, width, colors);
                puts("]");
                for (size_t c = 0; c < width; c++) {
                        other = other || cells[c] == POOL_MAP_OTHER;
                        warm = warm || cells[c] == POOL_MAP_WARM;
                }
        }
        if (!arg_legend || rows->len == 0)
                return 0;

        printf("%*s", (int) name_width + 2, "");
        for (PoolMapUse u = 0; u < _POOL_MAP_USE_MAX; u++) {
                if ((u == POOL_MAP_OTHER && !other) || (u == POOL_MAP_WARM && !warm))
                        continue;
                if (u > 0)
                        fputs("  ", stdout);
                put_cells(&u, 1, colors);
                printf(" %s", pool_map_use_to_string(u));
        }
        putchar('\n');
        return 0;
}

static void json_add_extents(JsonObject *pool, const PoolExtents *e) {
        JsonArray *a = json_array_sized_new(e->extents->len);

        for (guint i = 0; i < e->extents->len; i++) {
                const PoolMapExtent *x = &g_array_index(e->extents, PoolMapExtent, i);
                JsonObject *o = json_object_new();

                json_object_set_int_member(o, "offset", (gint64) x->offset);
                json_object_set_int_member(o, "size", (gint64) x->size);
                json_object_set_string_member(o, "use", e->uses->pdata[i]);
                json_array_add_object_element(a, o);
        }
        json_object_set_array_member(pool, "extents", a);
}

static int verb_status(sd_bus *bus) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *properties_reply = NULL, *pools_reply = NULL;
        g_autoptr(GArray) rows = NULL;
        g_autoptr(JsonArray) json_rows = NULL;
        g_autofree PoolExtents *maps = NULL;
        ManagerProperties p = {};
        int r;

        r = get_manager_properties(bus, &properties_reply, &p);
        if (r < 0)
                return r;
        r = read_pools(bus, &pools_reply, &rows);
        if (r < 0)
                return r;

        maps = g_new0(PoolExtents, rows->len);
        for (guint i = 0; r >= 0 && i < rows->len; i++)
                r = get_pool_extents(bus, &g_array_index(rows, PoolRow, i), &maps[i]);

        if (r >= 0 && arg_json) {
                g_autoptr(JsonBuilder) json = json_builder_new();

                r = pools_table_output(&status_table, rows, &json_rows);
                if (r >= 0) {
                        /* The rows are the pools', in the same order. */
                        for (guint i = 0; i < rows->len; i++)
                                json_add_extents(json_array_get_object_element(json_rows, i), &maps[i]);
                        json_builder_begin_object(json);
                        json_add_string(json, "version", p.version);
                        json_add_u64(json, "total_size", p.total_size);
                        json_add_u64(json, "allocated_size", p.allocated_size);
                        json_add_u64(json, "free_size", p.free_size);
                        json_add_u64(json, "host_size", p.host_size);
                        json_builder_set_member_name(json, "pools");
                        json_builder_add_value(json, json_node_init_array(json_node_alloc(), json_rows));
                        json_builder_end_object(json);
                        json_print(json);
                }
        } else if (r >= 0 && arg_raw)
                /* Raw output is for scripts: the table alone. */
                r = pools_table_output(&status_table, rows, NULL);
        else if (r >= 0) {
                char buf[FORMAT_SIZE_MAX];

                printf("Version:   %s\n", p.version);
                printf("Total:     %s\n", format_size(p.total_size, buf, sizeof(buf)));
                printf("Allocated: %s\n", format_size(p.allocated_size, buf, sizeof(buf)));
                printf("Free:      %s\n", format_size(p.free_size, buf, sizeof(buf)));
                printf("Host:      %s\n\n", format_size(p.host_size, buf, sizeof(buf)));
                r = pools_table_output(&status_table, rows, NULL);
                if (r >= 0 && rows->len > 0) {
                        putchar('\n');
                        r = print_pool_maps(rows, maps);
                }
        }

        for (guint i = 0; i < rows->len; i++)
                pool_extents_clear(&maps[i]);
        return r;
}

static int verb_pools(sd_bus *bus) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        g_autoptr(GArray) rows = NULL;
        g_autoptr(JsonArray) json_rows = NULL;
        int r;

        r = read_pools(bus, &reply, &rows);
        if (r < 0)
                return r;
        r = pools_table_output(&pools_table, rows, &json_rows);
        if (r >= 0 && arg_json)
                json_print_rows(&pools_table, json_rows);
        return r;
}

typedef struct Range {
        uint64_t start;
        uint64_t size;
} Range;

typedef struct AllocationRow {
        const char *path;
        const char *id;
        const char *owner;
        uint32_t owner_uid;
        const char *label;
        const char *pool;
        uint64_t size;
        uint64_t align;
        const char *device;
        int transient;
        uint64_t created_usec;
        GArray *ranges; /* of Range, reused from row to row */
        char *state, *state_message; /* Allocation properties, not in ListAllocations */
} AllocationRow;

static void allocation_row_clear(AllocationRow *row) {
        g_clear_pointer(&row->ranges, g_array_unref);
        g_clear_pointer(&row->state, g_free);
        g_clear_pointer(&row->state_message, g_free);
}

/* State ("active", "restoring", "failed") and StateMessage (why it is not
 * active); an allocation released meanwhile reads as "-". */
static void allocation_row_get_state(sd_bus *bus, AllocationRow *row) {
        static const char *const names[] = { "State", "StateMessage" };
        char **out[] = { &row->state, &row->state_message };

        for (size_t i = 0; i < G_N_ELEMENTS(names); i++) {
                char *s = NULL;

                g_clear_pointer(out[i], g_free);
                if (sd_bus_get_property_string(bus, BUS_NAME, row->path, ALLOCATION_IFACE, names[i], NULL, &s) < 0)
                        *out[i] = g_strdup(i == 0 ? "-" : "");
                else
                        *out[i] = g_strdup(s);
                free(s);
        }
}

/* Calls ListAllocations and leaves the reply positioned inside its array. */
static int list_allocations(sd_bus *bus, sd_bus_message **ret_reply) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        int r;

        r = bus_new_manager_call(bus, "ListAllocations", &m);
        if (r < 0)
                return r;
        r = bus_call(bus, m, 0, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_enter_container(reply, 'a', "(" ALLOCATION_ROW_SIGNATURE ")");
        if (r < 0)
                return log_parse_error(r);

        *ret_reply = g_steal_pointer(&reply);
        return 0;
}

/* Returns 1 with the next row, 0 at the end of the array. */
static int read_allocation_row(sd_bus_message *reply, AllocationRow *row) {
        Range range;
        int r;

        r = sd_bus_message_enter_container(reply, 'r', ALLOCATION_ROW_SIGNATURE);
        if (r <= 0)
                return r < 0 ? log_parse_error(r) : 0;

        r = sd_bus_message_read(reply, "ossussttsbt",
                                &row->path, &row->id, &row->owner, &row->owner_uid,
                                &row->label, &row->pool, &row->size, &row->align,
                                &row->device, &row->transient, &row->created_usec);
        if (r < 0)
                return log_parse_error(r);

        if (!row->ranges)
                row->ranges = g_array_new(FALSE, FALSE, sizeof(Range));
        g_array_set_size(row->ranges, 0);

        r = sd_bus_message_enter_container(reply, 'a', "(tt)");
        if (r < 0)
                return log_parse_error(r);
        while ((r = sd_bus_message_read(reply, "(tt)", &range.start, &range.size)) > 0)
                g_array_append_val(row->ranges, range);
        if (r < 0)
                return log_parse_error(r);
        r = sd_bus_message_exit_container(reply);
        if (r < 0)
                return log_parse_error(r);

        r = sd_bus_message_exit_container(reply);
        if (r < 0)
                return log_parse_error(r);
        return 1;
}

static char *range_to_string(const Range *range) {
        uint64_t last = range->size > 0 ? range->start + range->size - 1 : range->start;

        return g_strdup_printf("0x%" PRIx64 "-0x%" PRIx64, range->start, last);
}

/* "0xSTART-0xLAST,..." (sep between ranges), "-" for none. */
static char *ranges_to_string(const GArray *ranges, const char *sep) {
        GString *s;

        if (ranges->len == 0)
                return g_strdup("-");

        s = g_string_new(NULL);
        for (guint i = 0; i < ranges->len; i++) {
                g_autofree char *range = range_to_string(&g_array_index(ranges, Range, i));

                if (i > 0)
                        g_string_append(s, sep);
                g_string_append(s, range);
        }
        return g_string_free(s, FALSE);
}

enum {
        ALLOC_ID,
        ALLOC_PATH,
        ALLOC_OWNER,
        ALLOC_UID,
        ALLOC_LABEL,
        ALLOC_POOL,
        ALLOC_SIZE,
        ALLOC_ALIGN,
        ALLOC_DEVICE,
        ALLOC_TRANSIENT,
        ALLOC_CREATED,
        ALLOC_STATE,
        ALLOC_STATE_MESSAGE,
        ALLOC_RANGES,
};

static const Column allocation_columns[] = {
        [ALLOC_ID] = { "ID", 0, SCOLS_JSON_STRING, "allocation id" },
        [ALLOC_PATH] = { "PATH", 0, SCOLS_JSON_STRING, "D-Bus object path" },
        [ALLOC_OWNER] = { "OWNER", 0, SCOLS_JSON_STRING, "owner, such as a VM's name" },
        [ALLOC_UID] = { "UID", SCOLS_FL_RIGHT, SCOLS_JSON_NUMBER, "user the owner belongs to" },
        [ALLOC_LABEL] = { "LABEL", 0, SCOLS_JSON_STRING, "name among the owner's allocations" },
        [ALLOC_POOL] = { "POOL", 0, SCOLS_JSON_STRING, "pool name" },
        [ALLOC_SIZE] = { "SIZE", SIZE_COLUMN, "size" },
        [ALLOC_ALIGN] = { "ALIGN", SIZE_COLUMN, "alignment of the device's mappings" },
        [ALLOC_DEVICE] = { "DEVICE", 0, SCOLS_JSON_STRING, "device node (JSON: null while there is none)" },
        [ALLOC_TRANSIENT] = { "TRANSIENT", 0, SCOLS_JSON_BOOLEAN, "released when its client leaves the bus" },
        [ALLOC_CREATED] = { "CREATED", 0, SCOLS_JSON_NUMBER, "creation time (JSON, --raw: microseconds since the epoch)" },
        [ALLOC_STATE] = { "STATE", 0, SCOLS_JSON_STRING,
                           "active, restoring or failed (table: with the reason in parentheses)" },
        [ALLOC_STATE_MESSAGE] = { "STATE-MESSAGE", 0, SCOLS_JSON_STRING, "why the allocation is not active" },
        [ALLOC_RANGES] = { "RANGES", SCOLS_FL_WRAP, SCOLS_JSON_STRING,
                           "physical ranges, one per line (JSON: start and size)" },
};

static const int list_defaults[] = {
        ALLOC_ID, ALLOC_OWNER, ALLOC_LABEL, ALLOC_POOL, ALLOC_SIZE, ALLOC_DEVICE, ALLOC_STATE, ALLOC_RANGES, -1,
};
static const TableKind list_table = { "allocations", allocation_columns, G_N_ELEMENTS(allocation_columns),
                                      list_defaults };

static char *created_to_string(uint64_t usec) {
        g_autoptr(GDateTime) t = NULL;

        if (usec == 0 || usec / G_USEC_PER_SEC > G_MAXINT64)
                return g_strdup("-");
        t = g_date_time_new_from_unix_local((gint64) (usec / G_USEC_PER_SEC));
        return t ? g_date_time_format(t, "%Y-%m-%d %H:%M:%S") : g_strdup("-");
}

/* Text for a table, raw output or libsmartcols' JSON; in JSON an empty
 * string becomes null, and RANGES is filled in later (allocation_ranges_json). */
static char *allocation_cell(const void *row, int column) {
        const AllocationRow *a = row;

        switch (column) {
        case ALLOC_ID:
                return g_strdup(a->id);
        case ALLOC_PATH:
                return g_strdup(a->path);
        case ALLOC_OWNER:
                return g_strdup(a->owner);
        case ALLOC_UID:
                return g_strdup_printf("%" PRIu32, a->owner_uid);
        case ALLOC_LABEL:
                return arg_json ? g_strdup(a->label) : dash_if_empty(a->label);
        case ALLOC_POOL:
                return g_strdup(a->pool);
        case ALLOC_SIZE:
                return size_cell(a->size);
        case ALLOC_ALIGN:
                return size_cell(a->align);
        case ALLOC_DEVICE:
                return arg_json ? g_strdup(a->device) : dash_if_empty(a->device);
        case ALLOC_TRANSIENT:
                return g_strdup(a->transient ? "yes" : "no");
        case ALLOC_CREATED:
                return machine_values() ? g_strdup_printf("%" PRIu64, a->created_usec)
                                        : created_to_string(a->created_usec);
        case ALLOC_STATE:
                if (!machine_values() && a->state_message && a->state_message[0])
                        return g_strdup_printf("%s (%s)", a->state, a->state_message);
                return g_strdup(a->state ? a->state : "-");
        case ALLOC_STATE_MESSAGE:
                return arg_json ? g_strdup(a->state_message ? a->state_message : "")
                                : dash_if_empty(a->state_message ? a->state_message : "");
        case ALLOC_RANGES:
                /* A table shows one range per line, raw output keeps a row
                 * on one line. */
                return arg_json ? g_strdup("") : ranges_to_string(a->ranges, arg_raw ? "," : "\n");
        default:
                g_assert_not_reached();
        }
}

/* [{"start": S, "size": N}, ...]: libsmartcols has no arrays of objects. */
static JsonNode *allocation_ranges_json(const AllocationRow *a) {
        JsonArray *array = json_array_sized_new(a->ranges->len);
        JsonNode *node = json_node_new(JSON_NODE_ARRAY);

        for (guint i = 0; i < a->ranges->len; i++) {
                const Range *range = &g_array_index(a->ranges, Range, i);
                JsonObject *o = json_object_new();

                json_object_set_int_member(o, "start", (gint64) range->start);
                json_object_set_int_member(o, "size", (gint64) range->size);
                json_array_add_object_element(array, o);
        }
        json_node_take_array(node, array);
        return node;
}

/* Rows of allocations, in JSON mode with each row's ranges kept aside
 * for allocations_table_finish(). */
typedef struct AllocationsTable {
        struct libscols_table *tb;
        GPtrArray *ranges; /* JsonNode, one per row */
} AllocationsTable;

static void allocations_table_clear(AllocationsTable *t) {
        g_clear_pointer(&t->tb, scols_unref_table);
        g_clear_pointer(&t->ranges, g_ptr_array_unref);
}

static int allocations_table_add(AllocationsTable *t, const AllocationRow *a) {
        int r;

        if (!t->tb) {
                r = table_new(&list_table, &t->tb);
                if (r < 0)
                        return r;
                t->ranges = g_ptr_array_new_with_free_func((GDestroyNotify) json_node_unref);
        }
        r = table_add_row(t->tb, allocation_cell, a);
        if (r < 0)
                return r;
        if (arg_json)
                g_ptr_array_add(t->ranges, allocation_ranges_json(a));
        return 0;
}

/* Prints the table, or with --json returns its rows in *ret_json. */
static int allocations_table_finish(AllocationsTable *t, JsonArray **ret_json) {
        g_autoptr(JsonArray) rows = NULL;
        int r;

        if (!t->tb) {
                r = table_new(&list_table, &t->tb);
                if (r < 0)
                        return r;
        }
        if (!arg_json)
                return table_print(t->tb, &list_table);

        r = table_to_json(t->tb, &list_table, &rows);
        if (r < 0)
                return r;
        if (column_selected(ALLOC_RANGES))
                for (guint i = 0; t->ranges && i < t->ranges->len && i < json_array_get_length(rows); i++)
                        json_object_set_member(json_array_get_object_element(rows, i), "ranges",
                                               json_node_ref(t->ranges->pdata[i]));
        *ret_json = g_steal_pointer(&rows);
        return 0;
}

static int verb_list(sd_bus *bus) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(allocation_row_clear) AllocationRow a = {};
        _cleanup_(allocations_table_clear) AllocationsTable t = {};
        g_autoptr(JsonArray) rows = NULL;
        int r;

        r = list_allocations(bus, &reply);
        if (r < 0)
                return r;
        while ((r = read_allocation_row(reply, &a)) > 0) {
                /* Two calls per row: only when a state column is shown. */
                if (column_selected(ALLOC_STATE) || column_selected(ALLOC_STATE_MESSAGE))
                        allocation_row_get_state(bus, &a);
                r = allocations_table_add(&t, &a);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        r = allocations_table_finish(&t, &rows);
        if (r >= 0 && rows)
                json_print_rows(&list_table, rows);
        return r;
}

/* One allocation as JSON: an element of list --json with every column. */
static int print_allocation_json(const AllocationRow *a) {
        _cleanup_(allocations_table_clear) AllocationsTable t = {};
        g_autoptr(JsonArray) rows = NULL;
        g_autoptr(JsonGenerator) generator = json_generator_new();
        g_autofree char *text = NULL;
        int r;

        (void) select_columns(&list_table, "", NULL);
        r = allocations_table_add(&t, a);
        if (r >= 0)
                r = allocations_table_finish(&t, &rows);
        if (r < 0)
                return r;
        json_generator_set_pretty(generator, arg_json_pretty);
        json_generator_set_root(generator, json_array_get_element(rows, 0));
        text = json_generator_to_data(generator, NULL);
        puts(text);
        return 0;
}

/* Finds the allocation whose object path or id is key; the row's strings
 * point into *ret_reply. Returns 1 if found, 0 if not. */
static int find_allocation(sd_bus *bus, const char *key, bool by_path,
                           sd_bus_message **ret_reply, AllocationRow *row) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        r = list_allocations(bus, &reply);
        if (r < 0)
                return r;

        while ((r = read_allocation_row(reply, row)) > 0)
                if (streq(by_path ? row->path : row->id, key)) {
                        *ret_reply = g_steal_pointer(&reply);
                        return 1;
                }
        return r;
}

static int append_options(sd_bus_message *m) {
        int r;

        r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        if (arg_pool) {
                r = sd_bus_message_append(m, "{sv}", "pool", "s", arg_pool);
                if (r < 0)
                        return r;
        }
        if (arg_numa_node >= 0) {
                r = sd_bus_message_append(m, "{sv}", "numa-node", "i", (int32_t) arg_numa_node);
                if (r < 0)
                        return r;
        }
        if (arg_align > 0) {
                r = sd_bus_message_append(m, "{sv}", "align", "t", arg_align);
                if (r < 0)
                        return r;
        }
        /* Defaults are the broker's; send only what the user changed. */
        if (!arg_contiguous) {
                r = sd_bus_message_append(m, "{sv}", "contiguous", "b", 0);
                if (r < 0)
                        return r;
        }
        if (arg_label) {
                r = sd_bus_message_append(m, "{sv}", "label", "s", arg_label);
                if (r < 0)
                        return r;
        }
        if (arg_transient) {
                r = sd_bus_message_append(m, "{sv}", "transient", "b", 1);
                if (r < 0)
                        return r;
        }
        {
                const struct {
                        const char *key;
                        uint64_t v;
                } bounds[] = {
                        { "min-read-bandwidth", arg_min_read_bandwidth },
                        { "min-write-bandwidth", arg_min_write_bandwidth },
                        { "max-read-latency", arg_max_read_latency },
                        { "max-write-latency", arg_max_write_latency },
                };
                for (size_t i = 0; i < G_N_ELEMENTS(bounds); i++)
                        if (bounds[i].v) {
                                r = sd_bus_message_append(m, "{sv}", bounds[i].key, "t", bounds[i].v);
                                if (r < 0)
                                        return r;
                        }
        }
        if (arg_tier) {
                r = sd_bus_message_append(m, "{sv}", "tier", "s", arg_tier);
                if (r < 0)
                        return r;
        }
        if (arg_cache_isolation) {
                r = sd_bus_message_append(m, "{sv}", "cache-isolation", "b", 1);
                if (r < 0)
                        return r;
        }
        if (arg_n_colors) {
                if ((r = sd_bus_message_open_container(m, 'e', "sv")) < 0 ||
                    (r = sd_bus_message_append(m, "s", "colors")) < 0 ||
                    (r = sd_bus_message_open_container(m, 'v', "au")) < 0 ||
                    (r = sd_bus_message_append_array(m, 'u', arg_colors, arg_n_colors * sizeof(uint32_t))) < 0 ||
                    (r = sd_bus_message_close_container(m)) < 0 || (r = sd_bus_message_close_container(m)) < 0)
                        return r;
        }
        if (arg_device_uid >= 0) {
                r = sd_bus_message_append(m, "{sv}", "device-uid", "u", (uint32_t) arg_device_uid);
                if (r < 0)
                        return r;
        }
        if (arg_device_gid >= 0) {
                r = sd_bus_message_append(m, "{sv}", "device-gid", "u", (uint32_t) arg_device_gid);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(m);
}

/* Calls Allocate for owner with the command line's size and options. The
 * fd stays owned by *ret_reply. */
static int call_allocate(sd_bus *bus, const char *owner, sd_bus_message **ret_reply, const char **ret_path,
                         int *ret_fd) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        r = bus_new_manager_call(bus, "Allocate", &m);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "st", owner, arg_size);
        if (r >= 0)
                r = append_options(m);
        if (r < 0)
                return log_error_errno(r, "Failed to create Allocate call");
        r = bus_call(bus, m, MUTATING_CALL_TIMEOUT_USEC, ret_reply);
        if (r < 0)
                return r;
        r = sd_bus_message_read(*ret_reply, "oh", ret_path, ret_fd);
        if (r < 0)
                return log_parse_error(r);
        return 0;
}

static int verb_allocate(sd_bus *bus) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL, *list_reply = NULL;
        _cleanup_(allocation_row_clear) AllocationRow a = {};
        char buf[FORMAT_SIZE_MAX];
        const char *path;
        int fd, r;

        /* The fd stays owned by the reply and is closed when we exit; a
         * transient allocation goes away with our bus connection. */
        r = call_allocate(bus, arg_owner, &reply, &path, &fd);
        if (r < 0)
                return r;

        r = find_allocation(bus, path, true, &list_reply, &a);
        if (r < 0)
                return r;
        if (r == 0) {
                fprintf(stderr, "%s: Allocation %s vanished before it could be listed\n",
                        program_invocation_short_name, path);
                return -ENOENT;
        }
        allocation_row_get_state(bus, &a);

        if (arg_json)
                return print_allocation_json(&a);

        printf("Allocation: %s\n", a.path);
        printf("Id:         %s\n", a.id);
        printf("Device:     %s\n", a.device);
        printf("Size:       %s\n", format_size(a.size, buf, sizeof(buf)));
        for (guint i = 0; i < a.ranges->len; i++) {
                const Range *range = &g_array_index(a.ranges, Range, i);
                g_autofree char *s = range_to_string(range);

                printf("%s %s (%s)\n", i == 0 ? "Ranges:    " : "           ",
                       s, format_size(range->size, buf, sizeof(buf)));
        }
        return 0;
}

static void print_allocation(const AllocationRow *a) {
        char buf[FORMAT_SIZE_MAX];

        printf("Allocation: %s\n", a->path);
        printf("Id:         %s\n", a->id);
        printf("Owner:      %s\n", a->owner);
        printf("Label:      %s\n", a->label);
        printf("Pool:       %s\n", a->pool);
        printf("Device:     %s\n", a->device);
        printf("Size:       %s\n", format_size(a->size, buf, sizeof(buf)));
        printf("Transient:  %s\n", a->transient ? "yes" : "no");
        printf("State:      %s\n", a->state);
        if (a->state_message && a->state_message[0])
                printf("Message:    %s\n", a->state_message);
        for (guint i = 0; i < a->ranges->len; i++) {
                const Range *range = &g_array_index(a->ranges, Range, i);
                g_autofree char *s = range_to_string(range);

                printf("%s %s (%s)\n", i == 0 ? "Ranges:    " : "           ",
                       s, format_size(range->size, buf, sizeof(buf)));
        }
}

static int verb_show(sd_bus *bus) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *list_reply = NULL;
        _cleanup_(allocation_row_clear) AllocationRow a = {};
        int r;

        r = find_allocation(bus, arg_allocation, arg_allocation[0] == '/', &list_reply, &a);
        if (r < 0)
                return r;
        if (r == 0) {
                fprintf(stderr, "%s: NoSuchAllocation: no allocation '%s'\n", program_invocation_short_name,
                        arg_allocation);
                return -ENOENT;
        }
        allocation_row_get_state(bus, &a);
        if (arg_json)
                return print_allocation_json(&a);
        print_allocation(&a);
        return 0;
}

static int verb_release(sd_bus *bus) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL, *list_reply = NULL;
        _cleanup_(allocation_row_clear) AllocationRow a = {};
        const char *path = arg_allocation;
        int r;

        /* The broker's path encoding of ids is its own business: look the
         * id up instead of building a path. */
        if (arg_allocation[0] != '/') {
                r = find_allocation(bus, arg_allocation, false, &list_reply, &a);
                if (r < 0)
                        return r;
                if (r == 0) {
                        fprintf(stderr, "%s: NoSuchAllocation: no allocation with id '%s'\n",
                                program_invocation_short_name, arg_allocation);
                        return -ENOENT;
                }
                path = a.path;
        }

        r = bus_new_manager_call(bus, "Release", &m);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "o", path);
        if (r < 0)
                return log_error_errno(r, "Failed to create Release call");
        r = bus_call(bus, m, MUTATING_CALL_TIMEOUT_USEC, &reply);
        if (r < 0)
                return r;

        if (arg_json) {
                g_autoptr(JsonBuilder) json = json_builder_new();

                json_builder_begin_object(json);
                json_add_string(json, "released", path);
                json_builder_end_object(json);
                json_print(json);
        }
        return 0;
}

static int verb_release_owner(sd_bus *bus) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        uint32_t count;
        int r;

        r = bus_new_manager_call(bus, "ReleaseOwner", &m);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "s", arg_owner);
        if (r < 0)
                return log_error_errno(r, "Failed to create ReleaseOwner call");
        r = bus_call(bus, m, MUTATING_CALL_TIMEOUT_USEC, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_read(reply, "u", &count);
        if (r < 0)
                return log_parse_error(r);

        if (arg_json) {
                g_autoptr(JsonBuilder) json = json_builder_new();

                json_builder_begin_object(json);
                json_add_string(json, "owner", arg_owner);
                json_add_u64(json, "released", count);
                json_builder_end_object(json);
                json_print(json);
        } else
                printf("%" PRIu32 "\n", count);
        return 0;
}

/* return-to-host and reclaim-from-host: (s pool, t size) -> t. */
static int verb_host(sd_bus *bus, const char *method, const char *key) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        char buf[FORMAT_SIZE_MAX];
        uint64_t moved;
        int r;

        r = bus_new_manager_call(bus, method, &m);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "st", arg_pool, arg_size);
        if (r < 0)
                return log_error_errno(r, "Failed to create %s call", method);
        r = bus_call(bus, m, MUTATING_CALL_TIMEOUT_USEC, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_read(reply, "t", &moved);
        if (r < 0)
                return log_parse_error(r);

        if (arg_json) {
                g_autoptr(JsonBuilder) json = json_builder_new();

                json_builder_begin_object(json);
                json_add_string(json, "pool", arg_pool);
                json_add_u64(json, key, moved);
                json_builder_end_object(json);
                json_print(json);
        } else
                printf("%s\n", format_size(moved, buf, sizeof(buf)));
        return 0;
}

static int verb_return_to_host(sd_bus *bus) {
        return verb_host(bus, "ReturnToHost", "returned");
}

static int verb_reclaim_from_host(sd_bus *bus) {
        return verb_host(bus, "ReclaimFromHost", "reclaimed");
}

/* The file descriptor a command run by exec or open gets its memory on. */
#define COMMAND_FD 3

/* Runs arg_command with fd as COMMAND_FD and DAXBROKER_FD, DAXBROKER_DEVICE,
 * DAXBROKER_SIZE set, waits for it and records its exit status. Like
 * system(3), we ignore SIGINT and SIGQUIT while it runs (the terminal sends
 * them to the command too) so that we are still there to clean up. */
static int run_command(int fd, const char *device, uint64_t size) {
        struct sigaction ign = { .sa_handler = SIG_IGN }, old_int, old_quit;
        char size_s[32];
        int status;
        pid_t pid;

        (void) fflush(stdout);
        (void) fflush(stderr);
        (void) sigaction(SIGINT, &ign, &old_int);
        (void) sigaction(SIGQUIT, &ign, &old_quit);
        pid = fork();
        if (pid < 0)
                return log_error_errno(-errno, "Failed to fork");
        if (pid == 0) {
                (void) sigaction(SIGINT, &old_int, NULL);
                (void) sigaction(SIGQUIT, &old_quit, NULL);
                /* The fd from the bus is close-on-exec; its copy must not be. */
                if (fd == COMMAND_FD ? fcntl(fd, F_SETFD, 0) < 0 : dup2(fd, COMMAND_FD) < 0) {
                        fprintf(stderr, "%s: Failed to pass the device as fd %d: %m\n",
                                program_invocation_short_name, COMMAND_FD);
                        _exit(126);
                }
                snprintf(size_s, sizeof(size_s), "%" PRIu64, size);
                if (setenv("DAXBROKER_FD", G_STRINGIFY(COMMAND_FD), 1) < 0 ||
                    setenv("DAXBROKER_DEVICE", device, 1) < 0 || setenv("DAXBROKER_SIZE", size_s, 1) < 0)
                        _exit(126);
                execvp(arg_command[0], arg_command);
                fprintf(stderr, "%s: Failed to execute %s: %m\n", program_invocation_short_name, arg_command[0]);
                _exit(errno == ENOENT ? 127 : 126);
        }

        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return log_error_errno(-errno, "Failed to wait for %s", arg_command[0]);
        (void) sigaction(SIGINT, &old_int, NULL);
        (void) sigaction(SIGQUIT, &old_quit, NULL);
        command_exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        return 0;
}

/* The broker names devices by path; a bare name is under /dev. */
static char *device_path_of(const char *device) {
        return device[0] == '/' ? g_strdup(device) : g_strconcat("/dev/", device, NULL);
}

static int release_path(sd_bus *bus, const char *path) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        int r;

        r = bus_new_manager_call(bus, "Release", &m);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "o", path);
        if (r < 0)
                return log_error_errno(r, "Failed to create Release call");
        return bus_call(bus, m, MUTATING_CALL_TIMEOUT_USEC, &reply);
}

/* exec: a transient allocation that lives as long as the command. It is
 * transient so that the broker drops it even if we are killed; released
 * explicitly as soon as the command exits. */
static int verb_exec(sd_bus *bus) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL, *list_reply = NULL;
        _cleanup_(allocation_row_clear) AllocationRow a = {};
        g_autofree char *owner = NULL, *device = NULL;
        const char *path;
        int fd, r, k;

        owner = arg_exec_owner ? g_strdup(arg_exec_owner) : g_strdup_printf("exec-%d", (int) getpid());
        arg_transient = true;
        r = call_allocate(bus, owner, &reply, &path, &fd);
        if (r < 0)
                return r;
        r = find_allocation(bus, path, true, &list_reply, &a);
        if (r <= 0) {
                (void) release_path(bus, path);
                return r < 0 ? r : log_error_errno(-ENOENT, "Allocation %s vanished", path);
        }
        device = device_path_of(a.device);

        r = run_command(fd, device, a.size);
        k = release_path(bus, path);
        return r < 0 ? r : k;
}

/* open: runs the command with a new fd of an existing allocation. */
static int verb_open(sd_bus *bus) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL, *list_reply = NULL;
        _cleanup_(allocation_row_clear) AllocationRow a = {};
        g_autofree char *device = NULL;
        int fd, r;

        r = find_allocation(bus, arg_allocation, arg_allocation[0] == '/', &list_reply, &a);
        if (r < 0)
                return r;
        if (r == 0) {
                fprintf(stderr, "%s: NoSuchAllocation: no allocation '%s'\n", program_invocation_short_name,
                        arg_allocation);
                return -ENOENT;
        }
        r = bus_new_manager_call(bus, "Open", &m);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "o", a.path);
        if (r < 0)
                return log_error_errno(r, "Failed to create Open call");
        r = bus_call(bus, m, MUTATING_CALL_TIMEOUT_USEC, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_read(reply, "h", &fd);
        if (r < 0)
                return log_parse_error(r);
        device = device_path_of(a.device);
        return run_command(fd, device, a.size);
}

static int check_name(const char *what, const char *s) {
        const char *reason = name_invalid_reason(s);

        if (reason)
                return log_usage("Invalid %s '%s': %s", what, s, reason);
        return 0;
}

/* The rule of [Pool NAME] in daxbroker.conf. */
static bool pool_name_valid(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n >= CONFIG_POOL_NAME_MAX)
                return false;
        for (const char *p = s; *p; p++)
                if (!g_ascii_isalnum(*p) && *p != '_' && *p != '-')
                        return false;
        return true;
}

static int parse_allocate_args(char **args) {
        int r;

        r = check_name("owner", args[0]);
        if (r < 0)
                return r;
        arg_owner = args[0];

        r = parse_size(args[1], &arg_size);
        if (r < 0)
                return log_usage("Invalid size '%s': expected bytes with an optional K, M, G or T suffix", args[1]);
        /* Granularity (2 MiB, the alignment, the pool's boundary) is the
         * broker's rule to enforce; it knows the pool. */
        if (arg_size == 0)
                return log_usage("Invalid size '%s': must be greater than zero", args[1]);
        return 0;
}

static int parse_release_args(char **args) {
        const char *s = args[0];

        if (s[0] == '/') {
                if (!sd_bus_object_path_is_valid(s) || !g_str_has_prefix(s, ALLOCATION_PATH_PREFIX) ||
                    !s[strlen(ALLOCATION_PATH_PREFIX)])
                        return log_usage("Invalid allocation path '%s': expected %sID", s, ALLOCATION_PATH_PREFIX);
        } else if (!*s || strlen(s) > NAME_MAX_BYTES)
                return log_usage("Invalid allocation id '%s'", s);

        arg_allocation = s;
        return 0;
}

static int parse_release_owner_args(char **args) {
        int r;

        r = check_name("owner", args[0]);
        if (r < 0)
                return r;
        arg_owner = args[0];
        return 0;
}

static int parse_host_args(char **args) {
        if (!pool_name_valid(args[0]))
                return log_usage("Invalid pool name '%s'", args[0]);
        arg_pool = args[0];
        if (parse_size(args[1], &arg_size) < 0 || arg_size == 0)
                return log_usage("Invalid size '%s': expected bytes greater than zero with an optional K, M, G "
                                 "or T suffix", args[1]);
        return 0;
}

static int parse_exec_args(char **args) {
        if (arg_size == 0)
                return log_usage("exec needs --size SIZE");
        if (arg_exec_owner) {
                int r = check_name("owner", arg_exec_owner);
                if (r < 0)
                        return r;
        }
        arg_command = args;
        return 0;
}

static int parse_open_args(char **args) {
        int r;

        r = parse_release_args(args);
        if (r < 0)
                return r;
        arg_command = args + 1;
        return 0;
}

/* n_args of verbs that take a command: at least this many words. */
#define N_ARGS_COMMAND 0x100

typedef struct Verb {
        const char *name;
        const char *synopsis;
        unsigned n_args;
        bool allocate_options;
        const TableKind *table; /* the verb prints this table: -o, --raw */
        int (*parse)(char **args);
        int (*run)(sd_bus *bus);
} Verb;

static const Verb verbs[] = {
        { "status",        "",           0, false, &status_table, NULL,                verb_status        },
        { "pools",         "",           0, false, &pools_table,  NULL,                verb_pools         },
        { "list",          "",           0, false, &list_table,   NULL,                verb_list          },
        { "allocate",      "OWNER SIZE", 2, true,  NULL, parse_allocate_args,          verb_allocate      },
        { "release",       "ID|PATH",    1, false, NULL, parse_release_args,           verb_release       },
        { "show",          "ID|PATH",    1, false, NULL, parse_release_args,           verb_show          },
        { "release-owner", "OWNER",      1, false, NULL, parse_release_owner_args,     verb_release_owner },
        { "return-to-host", "POOL SIZE", 2, false, NULL, parse_host_args,              verb_return_to_host },
        { "reclaim-from-host", "POOL SIZE", 2, false, NULL, parse_host_args,           verb_reclaim_from_host },
        { "exec",          "--size SIZE [OPTIONS...] -- COMMAND...", N_ARGS_COMMAND | 1, true, NULL, parse_exec_args, verb_exec },
        { "open",          "ID|PATH -- COMMAND...", N_ARGS_COMMAND | 2, false, NULL, parse_open_args, verb_open },
};

static void help_columns(const char *title, const TableKind *k) {
        printf("%s\n", title);
        for (size_t i = 0; i < k->n_columns; i++)
                printf("  %-13s %s\n", k->columns[i].name, k->columns[i].help);
}

static void help(void) {
        printf("%s [OPTIONS...] VERB [ARGS...]\n"
               "\n"
               "Query and drive daxbrokerd, the soft-reserved memory broker.\n"
               "\n"
               "Verbs:\n"
               "  status                   Show totals and per-pool usage\n"
               "  pools                    List pools with their placement settings\n"
               "  list                     List allocations\n"
               "  allocate OWNER SIZE      Carve SIZE bytes (K, M, G, T suffixes) for OWNER\n"
               "  release ID|PATH          Release an allocation by id or object path\n"
               "  show ID|PATH             Show one allocation\n"
               "  release-owner OWNER      Release every allocation of OWNER, print the count\n"
               "  return-to-host POOL SIZE Give SIZE of POOL's free memory to the host now\n"
               "  reclaim-from-host POOL SIZE\n"
               "                           Take at least SIZE of POOL's memory back from the host\n"
               "  exec --size SIZE [OPTIONS...] -- COMMAND...\n"
               "                           Run COMMAND with a transient allocation as fd 3\n"
               "  open ID|PATH -- COMMAND...\n"
               "                           Run COMMAND with the allocation's device as fd 3\n"
               "\n"
               "Options:\n"
               "  -h --help                Show this help\n"
               "     --version             Show the version\n"
               "  -o --output LIST         Columns of status, pools and list (comma-separated;\n"
               "                           +LIST adds to the default ones)\n"
               "     --raw                 Tables without alignment, one row per line\n"
               "     --json[=short|pretty] Print one JSON document, sizes in bytes (default pretty)\n"
               "     --no-legend           Leave out table headers, the map's legend and\n"
               "                           \"No ...\" lines\n"
               "     --no-pager            Never page; the map of status in plain ASCII\n"
               "     --bus-address ADDR    Connect to the bus at ADDR\n"
               "     --user                Connect to the user bus\n"
               "\n"
               "Options for allocate:\n"
               "     --pool NAME           Carve from this pool\n"
               "     --numa-node N         Carve from a pool on NUMA node N\n"
               "     --align A             Device alignment: 4K, 2M or 1G\n"
               "     --no-contiguous       Allow several physical ranges\n"
               "     --label LABEL         Name of the allocation within its owner\n"
               "     --transient           Release when daxbrokerctl exits\n"
               "     --device-uid USER     Owner of the device node (name or number)\n"
               "     --device-gid GROUP    Group of the device node (name or number)\n"
               "     --min-read-bandwidth MBPS   Carve from a pool with at least this read\n"
               "     --min-write-bandwidth MBPS  (write) bandwidth, MB/s (HMAT)\n"
               "     --max-read-latency NS       Carve from a pool with at most this read\n"
               "     --max-write-latency NS      (write) latency, ns (HMAT)\n"
               "     --tier NAME           Carve from a pool with this Tier=\n"
               "     --cache-isolation     Only in cache colours the owner holds alone\n"
               "     --colors LIST         Only in these cache colours (e.g. 0,3)\n"
               "\n"
               "Options for exec (and the options for allocate):\n"
               "     --size SIZE           Size of the allocation (K, M, G, T suffixes)\n"
               "     --owner OWNER         Owner of the allocation (default exec-PID)\n"
               "\n",
               program_invocation_short_name);
        help_columns("Columns of status and pools:", &pools_table);
        putchar('\n');
        help_columns("Columns of list:", &list_table);
        printf("\nSee the daxbrokerctl(1) man page for details.\n");
}

/* Returns 1 to run *ret_verb, 0 to exit successfully, -EINVAL on a usage
 * error (already reported). */
static int parse_argv(int argc, char *argv[], const Verb **ret_verb) {
        enum {
                ARG_VERSION = 0x100,
                ARG_JSON,
                ARG_BUS_ADDRESS,
                ARG_USER,
                ARG_POOL,
                ARG_NUMA_NODE,
                ARG_MIN_READ_BANDWIDTH,
                ARG_MIN_WRITE_BANDWIDTH,
                ARG_MAX_READ_LATENCY,
                ARG_MAX_WRITE_LATENCY,
                ARG_TIER,
                ARG_CACHE_ISOLATION,
                ARG_COLORS,
                ARG_ALIGN,
                ARG_NO_CONTIGUOUS,
                ARG_LABEL,
                ARG_TRANSIENT,
                ARG_SIZE,
                ARG_OWNER,
                ARG_DEVICE_UID,
                ARG_DEVICE_GID,
                ARG_NO_LEGEND,
                ARG_NO_PAGER,
                ARG_RAW,
        };
        static const struct option options[] = {
                { "help",          no_argument,       NULL, 'h'               },
                { "version",       no_argument,       NULL, ARG_VERSION       },
                { "json",          optional_argument, NULL, ARG_JSON          },
                { "no-legend",     no_argument,       NULL, ARG_NO_LEGEND     },
                { "no-pager",      no_argument,       NULL, ARG_NO_PAGER      },
                { "output",        required_argument, NULL, 'o'               },
                { "raw",           no_argument,       NULL, ARG_RAW           },
                { "bus-address",   required_argument, NULL, ARG_BUS_ADDRESS   },
                { "user",          no_argument,       NULL, ARG_USER          },
                { "pool",          required_argument, NULL, ARG_POOL          },
                { "numa-node",     required_argument, NULL, ARG_NUMA_NODE     },
                { "min-read-bandwidth", required_argument, NULL, ARG_MIN_READ_BANDWIDTH },
                { "min-write-bandwidth", required_argument, NULL, ARG_MIN_WRITE_BANDWIDTH },
                { "max-read-latency", required_argument, NULL, ARG_MAX_READ_LATENCY },
                { "max-write-latency", required_argument, NULL, ARG_MAX_WRITE_LATENCY },
                { "tier",          required_argument, NULL, ARG_TIER          },
                { "cache-isolation", no_argument,     NULL, ARG_CACHE_ISOLATION },
                { "colors",        required_argument, NULL, ARG_COLORS        },
                { "align",         required_argument, NULL, ARG_ALIGN         },
                { "no-contiguous", no_argument,       NULL, ARG_NO_CONTIGUOUS },
                { "label",         required_argument, NULL, ARG_LABEL         },
                { "transient",     no_argument,       NULL, ARG_TRANSIENT     },
                { "size",          required_argument, NULL, ARG_SIZE          },
                { "owner",         required_argument, NULL, ARG_OWNER         },
                { "device-uid",    required_argument, NULL, ARG_DEVICE_UID    },
                { "device-gid",    required_argument, NULL, ARG_DEVICE_GID    },
                {}
        };
        /* Allocation options given to another verb are a mistake, not
         * something to ignore silently. */
        const char *allocate_option = NULL, *exec_option = NULL;
        const Verb *verb = NULL;
        int c, r;

        while ((c = getopt_long(argc, argv, "ho:", options, NULL)) >= 0) {
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("daxbrokerctl %s\n", PACKAGE_VERSION);
                        return 0;
                case ARG_JSON:
                        if (optarg && !streq(optarg, "pretty") && !streq(optarg, "short"))
                                return log_usage("Invalid --json mode '%s': expected short or pretty", optarg);
                        arg_json = true;
                        arg_json_pretty = !optarg || streq(optarg, "pretty");
                        break;
                case ARG_NO_LEGEND:
                        arg_legend = false;
                        break;
                case ARG_NO_PAGER:
                        /* Output is never paged; the map of status then
                         * keeps to plain ASCII. */
                        arg_no_pager = true;
                        break;
                case 'o':
                        arg_output = optarg;
                        break;
                case ARG_RAW:
                        arg_raw = true;
                        break;
                case ARG_BUS_ADDRESS:
                        if (!*optarg)
                                return log_usage("--bus-address needs a non-empty address");
                        arg_bus_address = optarg;
                        break;
                case ARG_USER:
                        arg_user = true;
                        break;
                case ARG_POOL:
                        if (!pool_name_valid(optarg))
                                return log_usage("Invalid pool name '%s': expected 1 to %d characters of "
                                                 "A-Z, a-z, 0-9, '_' and '-'", optarg, CONFIG_POOL_NAME_MAX - 1);
                        arg_pool = optarg;
                        allocate_option = "--pool";
                        break;
                case ARG_NUMA_NODE: {
                        char *end;
                        long n;

                        errno = 0;
                        n = strtol(optarg, &end, 10);
                        if (errno != 0 || end == optarg || *end || n < 0 || n > INT32_MAX)
                                return log_usage("Invalid NUMA node '%s': expected a number >= 0", optarg);
                        arg_numa_node = (int) n;
                        allocate_option = "--numa-node";
                        break;
                }
                case ARG_MIN_READ_BANDWIDTH:
                case ARG_MIN_WRITE_BANDWIDTH:
                case ARG_MAX_READ_LATENCY:
                case ARG_MAX_WRITE_LATENCY: {
                        static const char *const names[] = { "--min-read-bandwidth", "--min-write-bandwidth",
                                                             "--max-read-latency", "--max-write-latency" };
                        uint64_t *dest[] = { &arg_min_read_bandwidth, &arg_min_write_bandwidth,
                                             &arg_max_read_latency, &arg_max_write_latency };
                        unsigned i = (unsigned) (c - ARG_MIN_READ_BANDWIDTH);
                        guint64 v;

                        if (!g_ascii_string_to_unsigned(optarg, 10, 1, UINT32_MAX, &v, NULL))
                                return log_usage("Invalid %s '%s': expected a number from 1 to %" PRIu32 " (%s)", names[i],
                                                 optarg, UINT32_MAX, i < 2 ? "MB/s" : "ns");
                        *dest[i] = v;
                        allocate_option = names[i];
                        break;
                }
                case ARG_TIER:
                        if (tier_invalid_reason(optarg))
                                return log_usage("Invalid tier '%s': %s", optarg, tier_invalid_reason(optarg));
                        arg_tier = optarg;
                        allocate_option = "--tier";
                        break;
                case ARG_CACHE_ISOLATION:
                        arg_cache_isolation = true;
                        allocate_option = "--cache-isolation";
                        break;
                case ARG_COLORS: {
                        g_auto(GStrv) items = g_strsplit(optarg, ",", -1);

                        arg_n_colors = 0;
                        for (char **i = items; *i; i++) {
                                guint64 v;

                                if (!g_ascii_string_to_unsigned(*i, 10, 0, 63, &v, NULL) ||
                                    arg_n_colors >= G_N_ELEMENTS(arg_colors))
                                        return log_usage("Invalid --colors '%s': expected colour numbers 0 to 63, "
                                                         "separated by ','", optarg);
                                arg_colors[arg_n_colors++] = (uint32_t) v;
                        }
                        if (arg_n_colors == 0)
                                return log_usage("--colors needs at least one colour");
                        allocate_option = "--colors";
                        break;
                }
                case ARG_ALIGN:
                        r = parse_size(optarg, &arg_align);
                        if (r < 0 || (arg_align != 4 * KiB && arg_align != 2 * MiB && arg_align != GiB))
                                return log_usage("Invalid alignment '%s': expected 4K, 2M or 1G", optarg);
                        allocate_option = "--align";
                        break;
                case ARG_NO_CONTIGUOUS:
                        arg_contiguous = false;
                        allocate_option = "--no-contiguous";
                        break;
                case ARG_LABEL:
                        r = check_name("label", optarg);
                        if (r < 0)
                                return r;
                        arg_label = optarg;
                        allocate_option = "--label";
                        break;
                case ARG_TRANSIENT:
                        arg_transient = true;
                        allocate_option = "--transient";
                        break;
                case ARG_DEVICE_UID:
                case ARG_DEVICE_GID: {
                        bool is_uid = c == ARG_DEVICE_UID;
                        char *end;
                        unsigned long long n;

                        errno = 0;
                        n = strtoull(optarg, &end, 10);
                        if (*optarg && !*end && errno == 0 && optarg[0] != '-' && n < UINT32_MAX) {
                                /* (uid_t) -1 means "unchanged" to chown(2): refused above. */
                        } else if (is_uid && getpwnam(optarg))
                                n = getpwnam(optarg)->pw_uid;
                        else if (!is_uid && getgrnam(optarg))
                                n = getgrnam(optarg)->gr_gid;
                        else
                                return log_usage("Invalid %s '%s': no such %s and not a number below 4294967295",
                                                 is_uid ? "--device-uid" : "--device-gid", optarg,
                                                 is_uid ? "user" : "group");
                        if (is_uid)
                                arg_device_uid = (int64_t) n;
                        else
                                arg_device_gid = (int64_t) n;
                        allocate_option = is_uid ? "--device-uid" : "--device-gid";
                        break;
                }
                case ARG_SIZE:
                        if (parse_size(optarg, &arg_size) < 0 || arg_size == 0)
                                return log_usage("Invalid size '%s': expected bytes greater than zero with an "
                                                 "optional K, M, G or T suffix", optarg);
                        exec_option = "--size";
                        break;
                case ARG_OWNER:
                        arg_exec_owner = optarg;
                        exec_option = "--owner";
                        break;
                case '?':
                        /* getopt_long() already said what is wrong. */
                        return -EINVAL;
                default:
                        g_assert_not_reached();
                }
        }

        if (arg_bus_address && arg_user)
                return log_usage("--bus-address and --user are mutually exclusive");

        if (optind >= argc)
                return log_usage("Missing verb; see --help");

        for (size_t i = 0; i < G_N_ELEMENTS(verbs); i++)
                if (streq(verbs[i].name, argv[optind]))
                        verb = &verbs[i];
        if (!verb)
                return log_usage("Unknown verb '%s'; see --help", argv[optind]);

        if ((verb->n_args & N_ARGS_COMMAND) ? (unsigned) (argc - optind - 1) < (verb->n_args & ~N_ARGS_COMMAND)
                                            : (unsigned) (argc - optind - 1) != verb->n_args)
                return log_usage("Usage: %s [OPTIONS...] %s%s%s", program_invocation_short_name,
                                 verb->name, verb->synopsis[0] ? " " : "", verb->synopsis);

        if (allocate_option && !verb->allocate_options)
                return log_usage("%s only applies to allocate and exec", allocate_option);
        if (exec_option && !streq(verb->name, "exec"))
                return log_usage("%s only applies to exec", exec_option);
        if (arg_transient && streq(verb->name, "exec"))
                return log_usage("--transient does not apply to exec: its allocation always is");
        if ((arg_output || arg_raw) && !verb->table)
                return log_usage("%s only applies to status, pools and list", arg_output ? "-o" : "--raw");
        if (arg_raw && arg_json)
                return log_usage("--raw and --json are mutually exclusive");
        if (verb->table) {
                r = select_columns(verb->table, verb->name, arg_output);
                if (r < 0)
                        return r;
        }

        if (verb->parse) {
                r = verb->parse(argv + optind + 1);
                if (r < 0)
                        return r;
        }

        *ret_verb = verb;
        return 1;
}

int main(int argc, char *argv[]) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        const Verb *verb = NULL;
        int r;

        r = parse_argv(argc, argv, &verb);
        if (r <= 0)
                return r < 0 ? EXIT_USAGE : EXIT_SUCCESS;

        r = bus_connect(&bus);
        if (r >= 0)
                r = verb->run(bus);

        if (r >= 0 && command_exit_status >= 0)
                return command_exit_status;
        if (fflush(stdout) != 0 || ferror(stdout)) {
                log_error_errno(errno > 0 ? -errno : -EIO, "Failed to write output");
                return EXIT_FAILURE;
        }
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
