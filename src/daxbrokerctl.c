/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * daxbrokerctl: the operator's command line over the org.daxbroker.Broker1
 * D-Bus API. Every argument is validated here before anything is sent, so a
 * typo is a usage error (exit 2) rather than a round trip; failures reported
 * by the broker print the short D-Bus error name and its message (exit 1).
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
#include <sys/wait.h>
#include <unistd.h>

#include <glib.h>
#include <json-glib/json-glib.h>
#include <systemd/sd-bus.h>

#include "build-config.h"
#include "config.h"
#include "util.h"

#define BUS_NAME "org.daxbroker.Broker1"
#define MANAGER_PATH "/org/daxbroker/Broker1"
#define MANAGER_IFACE "org.daxbroker.Broker1.Manager"
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
static const char *arg_bus_address = NULL;
static bool arg_user = false;
static const char *arg_pool = NULL;
static int arg_numa_node = -1;
static uint64_t arg_align = 0;
static bool arg_contiguous = true;
static const char *arg_label = NULL;
static bool arg_transient = false;
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

static char *size_to_string(uint64_t bytes) {
        char buf[FORMAT_SIZE_MAX];

        return g_strdup(format_size(bytes, buf, sizeof(buf)));
}

static char *dash_if_empty(const char *s) {
        return g_strdup(s && *s ? s : "-");
}

/* A column-aligned text table; cells are owned strings, row by row. */
typedef struct Table {
        size_t n_columns;
        GPtrArray *cells;
} Table;

static Table *table_new(size_t n_columns, const char *const *headers) {
        Table *t = g_new0(Table, 1);

        t->n_columns = n_columns;
        t->cells = g_ptr_array_new_with_free_func(g_free);
        for (size_t i = 0; i < n_columns; i++)
                g_ptr_array_add(t->cells, g_strdup(headers[i]));
        return t;
}

static void table_free(Table *t) {
        if (!t)
                return;
        g_ptr_array_unref(t->cells);
        g_free(t);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Table, table_free)

/* Takes ownership of exactly n_columns strings. */
static void table_add_row(Table *t, ...) {
        va_list ap;

        va_start(ap, t);
        for (size_t i = 0; i < t->n_columns; i++)
                g_ptr_array_add(t->cells, va_arg(ap, char *));
        va_end(ap);
}

static void table_print(const Table *t) {
        g_autofree size_t *widths = g_new0(size_t, t->n_columns);

        for (guint i = 0; i < t->cells->len; i++) {
                size_t w = g_utf8_strlen(t->cells->pdata[i], -1);
                size_t c = i % t->n_columns;

                widths[c] = MAX(widths[c], w);
        }

        /* The first row holds the headers. */
        for (guint i = arg_legend ? 0 : t->n_columns; i < t->cells->len; i++) {
                const char *cell = t->cells->pdata[i];
                size_t c = i % t->n_columns;

                if (c + 1 == t->n_columns) {
                        puts(cell);
                        continue;
                }
                fputs(cell, stdout);
                for (size_t pad = g_utf8_strlen(cell, -1); pad < widths[c] + 2; pad++)
                        fputc(' ', stdout);
        }
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

static void json_add_int(JsonBuilder *b, const char *name, int64_t value) {
        json_builder_set_member_name(b, name);
        json_builder_add_int_value(b, value);
}

static void json_add_bool(JsonBuilder *b, const char *name, bool value) {
        json_builder_set_member_name(b, name);
        json_builder_add_boolean_value(b, value);
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
} PoolRow;

/* Calls ListPools and leaves the reply positioned inside its array. */
static int list_pools(sd_bus *bus, sd_bus_message **ret_reply) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
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

        *ret_reply = g_steal_pointer(&reply);
        return 0;
}

/* Returns 1 with the next row, 0 at the end of the array. */
static int read_pool_row(sd_bus_message *reply, PoolRow *ret) {
        int r;

        r = sd_bus_message_read(reply, POOL_ROW_SIGNATURE,
                                &ret->path, &ret->name, &ret->region_id, &ret->numa_node,
                                &ret->start, &ret->size, &ret->align, &ret->boundary,
                                &ret->free, &ret->allocated, &ret->host, &ret->dirty,
                                &ret->foreign, &ret->largest_free_extent);
        if (r < 0)
                return log_parse_error(r);
        return r;
}

static void json_add_pool(JsonBuilder *b, const PoolRow *p) {
        json_builder_begin_object(b);
        json_add_string(b, "path", p->path);
        json_add_string(b, "name", p->name);
        json_add_u64(b, "region", p->region_id);
        json_add_int(b, "numa_node", p->numa_node);
        json_add_u64(b, "start", p->start);
        json_add_u64(b, "size", p->size);
        json_add_u64(b, "align", p->align);
        json_add_u64(b, "boundary", p->boundary);
        json_add_u64(b, "free", p->free);
        json_add_u64(b, "allocated", p->allocated);
        json_add_u64(b, "host", p->host);
        json_add_u64(b, "dirty", p->dirty);
        json_add_u64(b, "foreign", p->foreign);
        json_add_u64(b, "largest_free_extent", p->largest_free_extent);
        json_builder_end_object(b);
}

static char *numa_node_to_string(int32_t node) {
        return node < 0 ? g_strdup("-") : g_strdup_printf("%" PRIi32, node);
}

/* Both status and pools print the pools; pools adds placement columns.
 * JSON always carries every field. */
static int print_pools(sd_bus_message *reply, JsonBuilder *json, bool placement) {
        static const char *const status_headers[] = {
                "POOL", "REGION", "NODE", "SIZE", "FREE", "ALLOCATED",
                "HOST", "DIRTY", "FOREIGN", "LARGEST-FREE",
        };
        static const char *const pools_headers[] = {
                "POOL", "REGION", "NODE", "START", "SIZE", "ALIGN", "BOUNDARY", "FREE",
                "ALLOCATED", "HOST", "DIRTY", "FOREIGN", "LARGEST-FREE",
        };
        g_autoptr(Table) table = NULL;
        size_t n_rows = 0;
        PoolRow p;
        int r;

        if (json) {
                json_builder_set_member_name(json, "pools");
                json_builder_begin_array(json);
        } else if (placement)
                table = table_new(G_N_ELEMENTS(pools_headers), pools_headers);
        else
                table = table_new(G_N_ELEMENTS(status_headers), status_headers);

        while ((r = read_pool_row(reply, &p)) > 0) {
                n_rows++;
                if (json)
                        json_add_pool(json, &p);
                else if (placement)
                        table_add_row(table,
                                      g_strdup(p.name),
                                      g_strdup_printf("%" PRIu32, p.region_id),
                                      numa_node_to_string(p.numa_node),
                                      g_strdup_printf("0x%" PRIx64, p.start),
                                      size_to_string(p.size),
                                      size_to_string(p.align),
                                      p.boundary ? size_to_string(p.boundary) : g_strdup("-"),
                                      size_to_string(p.free),
                                      size_to_string(p.allocated),
                                      size_to_string(p.host),
                                      size_to_string(p.dirty),
                                      size_to_string(p.foreign),
                                      size_to_string(p.largest_free_extent));
                else
                        table_add_row(table,
                                      g_strdup(p.name),
                                      g_strdup_printf("%" PRIu32, p.region_id),
                                      numa_node_to_string(p.numa_node),
                                      size_to_string(p.size),
                                      size_to_string(p.free),
                                      size_to_string(p.allocated),
                                      size_to_string(p.host),
                                      size_to_string(p.dirty),
                                      size_to_string(p.foreign),
                                      size_to_string(p.largest_free_extent));
        }
        if (r < 0)
                return r;

        if (json)
                json_builder_end_array(json);
        else if (n_rows == 0) {
                if (arg_legend)
                        puts("No pools.");
        } else
                table_print(table);
        return 0;
}

static int verb_status(sd_bus *bus) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *properties_reply = NULL, *pools_reply = NULL;
        g_autoptr(JsonBuilder) json = NULL;
        ManagerProperties p = {};
        int r;

        r = get_manager_properties(bus, &properties_reply, &p);
        if (r < 0)
                return r;
        r = list_pools(bus, &pools_reply);
        if (r < 0)
                return r;

        if (arg_json) {
                json = json_builder_new();
                json_builder_begin_object(json);
                json_add_string(json, "version", p.version);
                json_add_u64(json, "total_size", p.total_size);
                json_add_u64(json, "allocated_size", p.allocated_size);
                json_add_u64(json, "free_size", p.free_size);
                json_add_u64(json, "host_size", p.host_size);
        } else {
                char buf[FORMAT_SIZE_MAX];

                printf("Version:   %s\n", p.version);
                printf("Total:     %s\n", format_size(p.total_size, buf, sizeof(buf)));
                printf("Allocated: %s\n", format_size(p.allocated_size, buf, sizeof(buf)));
                printf("Free:      %s\n", format_size(p.free_size, buf, sizeof(buf)));
                printf("Host:      %s\n\n", format_size(p.host_size, buf, sizeof(buf)));
        }

        r = print_pools(pools_reply, json, false);
        if (r < 0)
                return r;

        if (json) {
                json_builder_end_object(json);
                json_print(json);
        }
        return 0;
}

static int verb_pools(sd_bus *bus) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        g_autoptr(JsonBuilder) json = NULL;
        int r;

        r = list_pools(bus, &reply);
        if (r < 0)
                return r;

        if (arg_json) {
                json = json_builder_new();
                json_builder_begin_object(json);
        }
        r = print_pools(reply, json, true);
        if (r < 0)
                return r;
        if (json) {
                json_builder_end_object(json);
                json_print(json);
        }
        return 0;
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
                g_clear_pointer(out[i], g_free);
                if (sd_bus_get_property_string(bus, BUS_NAME, row->path, ALLOCATION_IFACE, names[i], NULL,
                                               out[i]) < 0) {
                        free(*out[i]);
                        *out[i] = g_strdup(i == 0 ? "-" : "");
                } else {
                        char *s = *out[i];

                        *out[i] = g_strdup(s);
                        free(s);
                }
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

static char *ranges_to_string(const GArray *ranges) {
        GString *s;

        if (ranges->len == 0)
                return g_strdup("-");

        s = g_string_new(NULL);

        for (guint i = 0; i < ranges->len; i++) {
                g_autofree char *range = range_to_string(&g_array_index(ranges, Range, i));

                if (i > 0)
                        g_string_append_c(s, ',');
                g_string_append(s, range);
        }
        return g_string_free(s, FALSE);
}

static void json_add_allocation(JsonBuilder *b, const AllocationRow *a) {
        json_builder_begin_object(b);
        json_add_string(b, "path", a->path);
        json_add_string(b, "id", a->id);
        json_add_string(b, "owner", a->owner);
        json_add_u64(b, "owner_uid", a->owner_uid);
        json_add_string(b, "label", a->label);
        json_add_string(b, "pool", a->pool);
        json_add_u64(b, "size", a->size);
        json_add_u64(b, "align", a->align);
        json_add_string(b, "device", a->device);
        json_add_bool(b, "transient", a->transient);
        json_add_u64(b, "created_usec", a->created_usec);
        json_add_string(b, "state", a->state ? a->state : "-");
        json_add_string(b, "state_message", a->state_message ? a->state_message : "");
        json_builder_set_member_name(b, "ranges");
        json_builder_begin_array(b);
        for (guint i = 0; i < a->ranges->len; i++) {
                const Range *range = &g_array_index(a->ranges, Range, i);

                json_builder_begin_object(b);
                json_add_u64(b, "start", range->start);
                json_add_u64(b, "size", range->size);
                json_builder_end_object(b);
        }
        json_builder_end_array(b);
        json_builder_end_object(b);
}

static int verb_list(sd_bus *bus) {
        static const char *const headers[] = {
                "ID", "OWNER", "LABEL", "POOL", "SIZE", "DEVICE", "STATE", "RANGES",
        };
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(allocation_row_clear) AllocationRow a = {};
        g_autoptr(JsonBuilder) json = NULL;
        g_autoptr(Table) table = NULL;
        size_t n_rows = 0;
        int r;

        r = list_allocations(bus, &reply);
        if (r < 0)
                return r;

        if (arg_json) {
                json = json_builder_new();
                json_builder_begin_object(json);
                json_builder_set_member_name(json, "allocations");
                json_builder_begin_array(json);
        } else
                table = table_new(G_N_ELEMENTS(headers), headers);

        while ((r = read_allocation_row(reply, &a)) > 0) {
                n_rows++;
                allocation_row_get_state(bus, &a);
                if (json)
                        json_add_allocation(json, &a);
                else
                        table_add_row(table,
                                      g_strdup(a.id),
                                      g_strdup(a.owner),
                                      dash_if_empty(a.label),
                                      g_strdup(a.pool),
                                      size_to_string(a.size),
                                      dash_if_empty(a.device),
                                      a.state_message[0] ? g_strdup_printf("%s (%s)", a.state, a.state_message)
                                                         : g_strdup(a.state),
                                      ranges_to_string(a.ranges));
        }
        if (r < 0)
                return r;

        if (json) {
                json_builder_end_array(json);
                json_builder_end_object(json);
                json_print(json);
        } else if (n_rows == 0) {
                if (arg_legend)
                        puts("No allocations.");
        }
        else
                table_print(table);
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

        if (arg_json) {
                g_autoptr(JsonBuilder) json = json_builder_new();

                json_add_allocation(json, &a);
                json_print(json);
                return 0;
        }

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
        if (arg_json) {
                g_autoptr(JsonBuilder) json = json_builder_new();

                json_add_allocation(json, &a);
                json_print(json);
        } else
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
        int (*parse)(char **args);
        int (*run)(sd_bus *bus);
} Verb;

static const Verb verbs[] = {
        { "status",        "",           0, false, NULL,                     verb_status        },
        { "pools",         "",           0, false, NULL,                     verb_pools         },
        { "list",          "",           0, false, NULL,                     verb_list          },
        { "allocate",      "OWNER SIZE", 2, true,  parse_allocate_args,      verb_allocate      },
        { "release",       "ID|PATH",    1, false, parse_release_args,       verb_release       },
        { "show",          "ID|PATH",    1, false, parse_release_args,       verb_show          },
        { "release-owner", "OWNER",      1, false, parse_release_owner_args, verb_release_owner },
        { "return-to-host", "POOL SIZE", 2, false, parse_host_args,          verb_return_to_host },
        { "reclaim-from-host", "POOL SIZE", 2, false, parse_host_args,       verb_reclaim_from_host },
        { "exec",          "--size SIZE [OPTIONS...] -- COMMAND...", N_ARGS_COMMAND | 1, true, parse_exec_args, verb_exec },
        { "open",          "ID|PATH -- COMMAND...", N_ARGS_COMMAND | 2, false, parse_open_args, verb_open },
};

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
               "     --json[=short|pretty] Print one JSON document, sizes in bytes (default pretty)\n"
               "     --no-legend           Leave out table headers and \"No ...\" lines\n"
               "     --no-pager            Accepted for compatibility (output is never paged)\n"
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
               "\n"
               "Options for exec (and the options for allocate):\n"
               "     --size SIZE           Size of the allocation (K, M, G, T suffixes)\n"
               "     --owner OWNER         Owner of the allocation (default exec-PID)\n"
               "\n"
               "See the daxbrokerctl(1) man page for details.\n",
               program_invocation_short_name);
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
        };
        static const struct option options[] = {
                { "help",          no_argument,       NULL, 'h'               },
                { "version",       no_argument,       NULL, ARG_VERSION       },
                { "json",          optional_argument, NULL, ARG_JSON          },
                { "no-legend",     no_argument,       NULL, ARG_NO_LEGEND     },
                { "no-pager",      no_argument,       NULL, ARG_NO_PAGER      },
                { "bus-address",   required_argument, NULL, ARG_BUS_ADDRESS   },
                { "user",          no_argument,       NULL, ARG_USER          },
                { "pool",          required_argument, NULL, ARG_POOL          },
                { "numa-node",     required_argument, NULL, ARG_NUMA_NODE     },
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

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
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
                        /* Output is never paged; accepted like systemd's tools. */
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
