/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The record format, and state.json of earlier releases (version 2), read
 * once to upgrade it into the state directory (store-dir.c), whose
 * allocation files hold exactly the allocations below:
 *
 * {
 *   "version": 2,
 *   "owners": { "vm1": 107 },       every owner of an allocation below and the
 *                                   uid it belongs to (0..4294967294)
 *   "allocations": [
 *     {
 *       "id": "vm1-0",              1..64 of A-Z a-z 0-9 _ -, unique
 *       "owner": "vm1",             1..255 bytes of UTF-8, no control chars
 *       "owner_uid": 107,           0..4294967294
 *       "label": "web" | null,      like owner; null = no label
 *       "pool": "fast",             1..63 of A-Z a-z 0-9 _ -
 *       "region": 0,                R of daxR.N
 *       "align": 2097152,           4096, 2097152 or 1073741824
 *       "device": "dax0.3" | null,  a device of that region; null while creating
 *       "created_usec": 1700000000000000,   CLOCK_REALTIME
 *       "transient": false,
 *       "state": "active",          "active", "creating" or "releasing"
 *       "client": ":1.42",          optional: bus client of a transient allocation
 *       "device_uid": 64055,        optional: owner given to the device node
 *       "device_gid": 64055,        optional: group given to the device node
 *       "colors": [0, 3],           optional: the pool's cache colours it was
 *                                   placed in (1..64 distinct integers 0..63,
 *                                   increasing); records of earlier releases
 *                                   have none
 *       "cache_isolation": true,    optional, only with "colors": its owner
 *                                   holds those colours alone
 *       "warm": true,               optional: a warm-set device nobody holds yet
 *                                   (transient; owner "daxbroker-warm")
 *       "ranges": [ { "start": 4294967296, "size": 1073741824 } ]
 *     }
 *   ],
 *   "boot_id": "0f3c...",            optional: /proc/sys/kernel/random/boot_id
 *   "dirty": [                      optional: memory to zero before use
 *     { "region": 0, "start": 4294967296, "size": 2097152 }
 *   ],
 *   "host": [                       optional: chunks of ours bound to kmem
 *     { "region": 0, "start": 6442450944, "size": 1073741824 }
 *   ]
 * }
 *
 * Version 1 files (no "owners") are read too: each owner then belongs to the
 * owner_uid of its earliest allocation, and the next save writes version 2.
 * An owner listed without any allocation is dropped on load.
 *
 * Every member not marked optional is required and unknown members are an error: a file this
 * code did not write is not trusted. Numbers are JSON integers; json-glib
 * reads them as gint64, which holds any physical address, and negative
 * values are rejected. "ranges" holds 1..DAX_RANGES_MAX non-empty ranges in
 * device offset order, each start and size a multiple of max(2 MiB, align);
 * no two ranges overlap, within one allocation or across allocations.
 */

#include <fcntl.h>
#include <json-glib/json-glib.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "store.h"
#include "store-private.h"
#include "util.h"

#define STORE_VERSION 2
#define STORE_VERSION_OLDEST 1
#define ID_MAX 64
#define POOL_NAME_MAX 63
/* The format nests five levels; deeper input is not ours, and json-glib
 * parses recursively, so a deep enough file would overflow the stack. */
#define JSON_DEPTH_MAX 16
/* Far above 100k allocations; guards against reading a wrong file whole. */
#define STATE_SIZE_MAX (256 * 1024 * 1024)

static const char *const state_names[] = {
        [ALLOCATION_ACTIVE] = "active",
        [ALLOCATION_CREATING] = "creating",
        [ALLOCATION_RELEASING] = "releasing",
};

static const char *const allocation_members[] = {
        "id", "owner", "owner_uid", "label", "pool", "region", "align",
        "device", "created_usec", "transient", "state", "ranges", "client",
        "device_uid", "device_gid", "colors", "cache_isolation", "warm",
};

AllocationRecord *allocation_record_new(void) {
        AllocationRecord *r = g_new0(AllocationRecord, 1);

        r->device_uid = (uid_t) -1;
        r->device_gid = (gid_t) -1;
        return r;
}

void allocation_record_free(AllocationRecord *r) {
        if (!r)
                return;
        g_free(r->id);
        g_free(r->owner);
        g_free(r->label);
        g_free(r->pool);
        g_free(r->device);
        g_free(r->client);
        g_free(r->cache.text);
        allocation_record_free(r->cache.shadow);
        g_free(r);
}

const char *allocation_state_to_string(AllocationState s) {
        if ((size_t) s >= G_N_ELEMENTS(state_names))
                return NULL;
        return state_names[s];
}

/* Errors about one allocation name it by index, and by id once known. */
G_GNUC_PRINTF(5, 6)
static int store_fail(GError **error, size_t index, const char *id, const char *field,
                      const char *format, ...) {
        g_autofree char *what = NULL;
        va_list ap;

        va_start(ap, format);
        what = g_strdup_vprintf(format, ap);
        va_end(ap);

        if (id)
                g_set_error(error, JSON_PARSER_ERROR, JSON_PARSER_ERROR_INVALID_DATA,
                            "allocation %zu (id '%s'): %s: %s", index, id, field, what);
        else
                g_set_error(error, JSON_PARSER_ERROR, JSON_PARSER_ERROR_INVALID_DATA,
                            "allocation %zu: %s: %s", index, field, what);
        return -EBADMSG;
}

bool store_identifier_valid(const char *s, size_t max) {
        size_t n = strlen(s);

        if (n == 0 || n > max)
                return false;
        for (const char *p = s; *p; p++)
                if (!g_ascii_isalnum(*p) && *p != '_' && *p != '-')
                        return false;
        return true;
}

static bool parse_decimal(const char **p, uint64_t *ret) {
        uint64_t v = 0;
        const char *s = *p;

        if (!g_ascii_isdigit(*s))
                return false;
        for (; g_ascii_isdigit(*s); s++) {
                if (v > (UINT64_MAX - 9) / 10)
                        return false;
                v = v * 10 + (*s - '0');
        }
        *p = s;
        *ret = v;
        return true;
}

/* "daxR.N" with R the allocation's region. */
static bool device_name_valid(const char *s, unsigned region_id) {
        const char *p = s;
        uint64_t r, n;

        if (strlen(s) >= DAX_NAME_MAX || !g_str_has_prefix(s, "dax"))
                return false;
        p += 3;
        if (!parse_decimal(&p, &r) || *p++ != '.' || !parse_decimal(&p, &n) || *p != 0)
                return false;
        return r == region_id && n <= UINT_MAX;
}

static bool align_valid(uint64_t a) {
        return a == 4 * KiB || a == 2 * MiB || a == GiB;
}

/* The rules for one record, shared by load and save so that the daemon
 * never writes a file it would refuse to read. */
int store_record_validate(const AllocationRecord *r, size_t index, GError **error) {
        char granule_text[FORMAT_SIZE_MAX];
        const char *reason;
        uint64_t granule;

        if (!r->id || !store_identifier_valid(r->id, ID_MAX))
                return store_fail(error, index, NULL, "id",
                                  "must be 1 to %d characters of A-Z, a-z, 0-9, '_' and '-' (value '%s')",
                                  ID_MAX, r->id ? r->id : "");

        reason = name_invalid_reason(r->owner);
        if (reason)
                return store_fail(error, index, r->id, "owner", "%s", reason);
        if (r->owner_uid == (uid_t) -1)
                return store_fail(error, index, r->id, "owner_uid", "must not be %u, the invalid uid", (unsigned) -1);

        if (r->label) {
                reason = name_invalid_reason(r->label);
                if (reason)
                        return store_fail(error, index, r->id, "label", "%s", reason);
        }

        if (!r->pool || !store_identifier_valid(r->pool, POOL_NAME_MAX))
                return store_fail(error, index, r->id, "pool",
                                  "must be 1 to %d characters of A-Z, a-z, 0-9, '_' and '-' (value '%s')",
                                  POOL_NAME_MAX, r->pool ? r->pool : "");

        if (!align_valid(r->align))
                return store_fail(error, index, r->id, "align",
                                  "must be 4096, 2097152 or 1073741824 (value %" G_GUINT64_FORMAT ")",
                                  r->align);

        if (r->device && !device_name_valid(r->device, r->region_id))
                return store_fail(error, index, r->id, "device",
                                  "must be a device name daxR.N of region %u (value '%s')",
                                  r->region_id, r->device);

        if (r->created_usec > INT64_MAX)
                return store_fail(error, index, r->id, "created_usec", "is out of range");

        if (!allocation_state_to_string(r->state))
                return store_fail(error, index, r->id, "state", "unknown state %d", (int) r->state);

        if (r->n_ranges < 1 || r->n_ranges > DAX_RANGES_MAX)
                return store_fail(error, index, r->id, "ranges", "must hold 1 to %d ranges (has %u)",
                                  DAX_RANGES_MAX, r->n_ranges);

        /* The kernel maps a device's ranges only in whole units of its
         * alignment, and never below the 2 MiB region granularity. */
        granule = max_u64(2 * MiB, r->align);
        format_size(granule, granule_text, sizeof granule_text);
        for (unsigned i = 0; i < r->n_ranges; i++) {
                const uint64_t values[] = { r->ranges[i].start, r->ranges[i].size };
                const char *const names[] = { "start", "size" };
                char field[32];

                if (r->ranges[i].size == 0) {
                        snprintf(field, sizeof field, "ranges[%u].size", i);
                        return store_fail(error, index, r->id, field, "must not be 0");
                }

                for (size_t k = 0; k < G_N_ELEMENTS(values); k++) {
                        if (values[k] <= INT64_MAX && values[k] % granule == 0)
                                continue;

                        snprintf(field, sizeof field, "ranges[%u].%s", i, names[k]);
                        /* JSON integers are read back as gint64. */
                        if (values[k] > INT64_MAX)
                                return store_fail(error, index, r->id, field,
                                                  "must be below 2^63 (value %" G_GUINT64_FORMAT ")", values[k]);
                        return store_fail(error, index, r->id, field,
                                          "must be a multiple of %s (value %" G_GUINT64_FORMAT ")",
                                          granule_text, values[k]);
                }
        }

        return 0;
}

typedef struct RangeRef {
        uint64_t start, end;
        size_t record;
        unsigned range;
} RangeRef;

static int range_ref_compare(gconstpointer a, gconstpointer b) {
        const RangeRef *x = a, *y = b;

        return x->start < y->start ? -1 : x->start > y->start;
}

/* Rules across records: unique ids, and no memory owned twice. */
int store_records_validate(AllocationRecord *const *records, size_t n, GError **error) {
        g_autoptr(GHashTable) ids = g_hash_table_new(g_str_hash, g_str_equal);
        g_autoptr(GArray) refs = g_array_new(false, false, sizeof(RangeRef));
        int r;

        for (size_t i = 0; i < n; i++) {
                const AllocationRecord *rec = records[i];
                gpointer other;

                r = store_record_validate(rec, i, error);
                if (r < 0)
                        return r;

                if (g_hash_table_lookup_extended(ids, rec->id, NULL, &other))
                        return store_fail(error, i, rec->id, "id", "duplicates allocation %zu",
                                          GPOINTER_TO_SIZE(other));
                g_hash_table_insert(ids, rec->id, GSIZE_TO_POINTER(i));

                for (unsigned k = 0; k < rec->n_ranges; k++) {
                        RangeRef ref = {
                                .start = rec->ranges[k].start,
                                .end = rec->ranges[k].start + rec->ranges[k].size,
                                .record = i,
                                .range = k,
                        };
                        g_array_append_val(refs, ref);
                }
        }

        g_array_sort(refs, range_ref_compare);
        for (size_t i = 1; i < refs->len; i++) {
                const RangeRef *prev = &g_array_index(refs, RangeRef, i - 1);
                const RangeRef *cur = &g_array_index(refs, RangeRef, i);
                /* Name the later of the two in the file. */
                const RangeRef *a = prev->record < cur->record ||
                                (prev->record == cur->record && prev->range < cur->range) ? prev : cur;
                const RangeRef *b = a == prev ? cur : prev;
                char field[32];

                if (cur->start >= prev->end)
                        continue;

                snprintf(field, sizeof field, "ranges[%u]", b->range);
                if (a->record == b->record)
                        return store_fail(error, b->record, records[b->record]->id, field,
                                          "overlaps ranges[%u]", a->range);
                return store_fail(error, b->record, records[b->record]->id, field,
                                  "overlaps ranges[%u] of allocation %zu (id '%s')",
                                  a->range, a->record, records[a->record]->id);
        }

        return 0;
}

static JsonNode *member_get(JsonObject *o, const char *name, size_t index, const char *id,
                            const char *field, GError **error) {
        JsonNode *node = json_object_get_member(o, name);

        if (!node)
                store_fail(error, index, id, field, "is missing");
        return node;
}

static int member_uint(JsonObject *o, const char *name, uint64_t max, uint64_t *ret,
                       size_t index, const char *id, const char *field, GError **error) {
        JsonNode *node = member_get(o, name, index, id, field, error);
        gint64 v;

        if (!node)
                return -EBADMSG;
        if (!JSON_NODE_HOLDS_VALUE(node) || json_node_get_value_type(node) != G_TYPE_INT64)
                return store_fail(error, index, id, field, "must be an integer");
        v = json_node_get_int(node);
        if (v < 0 || (uint64_t) v > max)
                return store_fail(error, index, id, field,
                                  "must be between 0 and %" G_GUINT64_FORMAT " (value %" G_GINT64_FORMAT ")",
                                  max, v);
        *ret = (uint64_t) v;
        return 0;
}

static int parse_colors(JsonObject *o, AllocationRecord *rec, size_t index, GError **error) {
        JsonNode *node = json_object_get_member(o, "colors");
        JsonArray *a;
        gint64 last = -1;

        if (!node) {
                if (json_object_has_member(o, "cache_isolation"))
                        return store_fail(error, index, rec->id, "cache_isolation", "is only valid with \"colors\"");
                return 0;
        }
        if (!JSON_NODE_HOLDS_ARRAY(node))
                return store_fail(error, index, rec->id, "colors", "must be an array of colour numbers");
        a = json_node_get_array(node);
        if (json_array_get_length(a) == 0 || json_array_get_length(a) > 64)
                return store_fail(error, index, rec->id, "colors", "must list 1 to 64 colours");
        for (unsigned i = 0; i < json_array_get_length(a); i++) {
                JsonNode *e = json_array_get_element(a, i);
                gint64 v;

                if (!JSON_NODE_HOLDS_VALUE(e) || json_node_get_value_type(e) != G_TYPE_INT64)
                        return store_fail(error, index, rec->id, "colors", "element %u is not an integer", i);
                v = json_node_get_int(e);
                if (v < 0 || v > 63)
                        return store_fail(error, index, rec->id, "colors", "colour %" G_GINT64_FORMAT " is not 0 to 63",
                                          v);
                if (v <= last)
                        return store_fail(error, index, rec->id, "colors",
                                          "colours must be distinct and increasing (%" G_GINT64_FORMAT " after %" G_GINT64_FORMAT ")",
                                          v, last);
                last = v;
                rec->colors |= (uint64_t) 1 << v;
        }

        node = json_object_get_member(o, "cache_isolation");
        if (node) {
                if (!JSON_NODE_HOLDS_VALUE(node) || json_node_get_value_type(node) != G_TYPE_BOOLEAN)
                        return store_fail(error, index, rec->id, "cache_isolation", "must be true or false");
                rec->cache_isolation = json_node_get_boolean(node);
        }
        return 0;
}

static int member_string(JsonObject *o, const char *name, bool nullable, char **ret,
                         size_t index, const char *id, GError **error) {
        JsonNode *node = member_get(o, name, index, id, name, error);

        if (!node)
                return -EBADMSG;
        if (nullable && JSON_NODE_HOLDS_NULL(node)) {
                *ret = NULL;
                return 0;
        }
        if (!JSON_NODE_HOLDS_VALUE(node) || json_node_get_value_type(node) != G_TYPE_STRING)
                return store_fail(error, index, id, name, nullable ? "must be a string or null" : "must be a string");
        *ret = g_strdup(json_node_get_string(node));
        return 0;
}

static int parse_ranges(JsonObject *o, AllocationRecord *rec, size_t index, GError **error) {
        JsonNode *node = member_get(o, "ranges", index, rec->id, "ranges", error);
        JsonArray *array;
        unsigned n;
        int r;

        if (!node)
                return -EBADMSG;
        if (!JSON_NODE_HOLDS_ARRAY(node))
                return store_fail(error, index, rec->id, "ranges", "must be an array");
        array = json_node_get_array(node);
        n = json_array_get_length(array);
        if (n < 1 || n > DAX_RANGES_MAX)
                return store_fail(error, index, rec->id, "ranges", "must hold 1 to %d ranges (has %u)",
                                  DAX_RANGES_MAX, n);

        for (unsigned i = 0; i < n; i++) {
                JsonNode *element = json_array_get_element(array, i);
                JsonObject *range;
                char field[32];

                snprintf(field, sizeof field, "ranges[%u]", i);
                if (!JSON_NODE_HOLDS_OBJECT(element))
                        return store_fail(error, index, rec->id, field, "must be an object");
                range = json_node_get_object(element);
                if (json_object_get_size(range) != 2)
                        return store_fail(error, index, rec->id, field,
                                          "must have exactly the members start and size");

                snprintf(field, sizeof field, "ranges[%u].start", i);
                r = member_uint(range, "start", INT64_MAX, &rec->ranges[i].start, index, rec->id, field, error);
                if (r < 0)
                        return r;
                snprintf(field, sizeof field, "ranges[%u].size", i);
                r = member_uint(range, "size", INT64_MAX, &rec->ranges[i].size, index, rec->id, field, error);
                if (r < 0)
                        return r;
        }
        rec->n_ranges = n;

        return 0;
}

int store_parse_allocation(JsonNode *node, size_t index, AllocationRecord **ret, GError **error) {
        g_autoptr(AllocationRecord) rec = allocation_record_new();
        g_autofree char *state = NULL;
        g_autoptr(GList) members = NULL;
        JsonObject *o;
        JsonNode *transient;
        uint64_t v;
        size_t s;
        int r;

        if (!JSON_NODE_HOLDS_OBJECT(node))
                return store_fail(error, index, NULL, "allocation", "must be an object");
        o = json_node_get_object(node);

        members = json_object_get_members(o);
        for (GList *l = members; l; l = l->next) {
                bool known = false;

                for (size_t i = 0; i < G_N_ELEMENTS(allocation_members); i++)
                        known = known || strcmp(l->data, allocation_members[i]) == 0;
                if (!known)
                        return store_fail(error, index, NULL, (const char *) l->data, "unknown member");
        }

        /* id first, so that every later message can name the allocation. */
        r = member_string(o, "id", false, &rec->id, index, NULL, error);
        if (r < 0)
                return r;
        if (!store_identifier_valid(rec->id, ID_MAX))
                return store_fail(error, index, NULL, "id",
                                  "must be 1 to %d characters of A-Z, a-z, 0-9, '_' and '-' (value '%s')",
                                  ID_MAX, rec->id);

        r = member_string(o, "owner", false, &rec->owner, index, rec->id, error);
        if (r < 0)
                return r;
        r = member_uint(o, "owner_uid", UINT32_MAX, &v, index, rec->id, "owner_uid", error);
        if (r < 0)
                return r;
        rec->owner_uid = (uid_t) v;
        r = member_string(o, "label", true, &rec->label, index, rec->id, error);
        if (r < 0)
                return r;
        r = member_string(o, "pool", false, &rec->pool, index, rec->id, error);
        if (r < 0)
                return r;
        r = member_uint(o, "region", UINT_MAX, &v, index, rec->id, "region", error);
        if (r < 0)
                return r;
        rec->region_id = (unsigned) v;
        r = member_uint(o, "align", INT64_MAX, &rec->align, index, rec->id, "align", error);
        if (r < 0)
                return r;
        r = member_string(o, "device", true, &rec->device, index, rec->id, error);
        if (r < 0)
                return r;
        r = member_uint(o, "created_usec", INT64_MAX, &rec->created_usec, index, rec->id,
                        "created_usec", error);
        if (r < 0)
                return r;

        transient = member_get(o, "transient", index, rec->id, "transient", error);
        if (!transient)
                return -EBADMSG;
        if (!JSON_NODE_HOLDS_VALUE(transient) || json_node_get_value_type(transient) != G_TYPE_BOOLEAN)
                return store_fail(error, index, rec->id, "transient", "must be true or false");
        rec->transient = json_node_get_boolean(transient);

        r = member_string(o, "state", false, &state, index, rec->id, error);
        if (r < 0)
                return r;
        for (s = 0; s < G_N_ELEMENTS(state_names); s++)
                if (strcmp(state, state_names[s]) == 0)
                        break;
        if (s >= G_N_ELEMENTS(state_names))
                return store_fail(error, index, rec->id, "state",
                                  "must be \"active\", \"creating\" or \"releasing\" (value '%s')",
                                  state);
        rec->state = (AllocationState) s;

        /* Optional: a device node handed to a user or group. */
        if (json_object_has_member(o, "device_uid")) {
                r = member_uint(o, "device_uid", UINT32_MAX - 1, &v, index, rec->id, "device_uid", error);
                if (r < 0)
                        return r;
                rec->device_uid = (uid_t) v;
        }
        if (json_object_has_member(o, "device_gid")) {
                r = member_uint(o, "device_gid", UINT32_MAX - 1, &v, index, rec->id, "device_gid", error);
                if (r < 0)
                        return r;
                rec->device_gid = (gid_t) v;
        }

        /* Optional: a device of the warm set, made ahead of any request. */
        if (json_object_has_member(o, "warm")) {
                JsonNode *warm = json_object_get_member(o, "warm");

                if (!JSON_NODE_HOLDS_VALUE(warm) || json_node_get_value_type(warm) != G_TYPE_BOOLEAN)
                        return store_fail(error, index, rec->id, "warm", "must be true or false");
                rec->warm = json_node_get_boolean(warm);
                if (rec->warm && !rec->transient)
                        return store_fail(error, index, rec->id, "warm", "a warm device's record must be transient");
        }

        if (json_object_has_member(o, "client")) {
                r = member_string(o, "client", true, &rec->client, index, rec->id, error);
                if (r < 0)
                        return r;
                if (rec->client && (strlen(rec->client) > 255 || rec->client[0] != ':'))
                        return store_fail(error, index, rec->id, "client", "must be a unique bus name (value '%s')",
                                          rec->client);
        }

        r = parse_colors(o, rec, index, error);
        if (r < 0)
                return r;

        r = parse_ranges(o, rec, index, error);
        if (r < 0)
                return r;

        *ret = g_steal_pointer(&rec);
        return 0;
}

/* Counts brackets outside strings; enough to bound json-glib's recursion. */
bool store_json_depth_ok(const char *data, gsize len) {
        bool in_string = false;
        unsigned depth = 0;

        for (gsize i = 0; i < len; i++) {
                char c = data[i];

                if (in_string) {
                        if (c == '\\')
                                i++;
                        else if (c == '"')
                                in_string = false;
                } else if (c == '"')
                        in_string = true;
                else if (c == '[' || c == '{') {
                        if (++depth > JSON_DEPTH_MAX)
                                return false;
                } else if ((c == ']' || c == '}') && depth > 0)
                        depth--;
        }
        return true;
}

static int parse_region_ranges(JsonNode *node, const char *what, GArray *ranges, GError **error) {
        JsonArray *array;

        if (!JSON_NODE_HOLDS_ARRAY(node)) {
                g_set_error(error, JSON_PARSER_ERROR, JSON_PARSER_ERROR_INVALID_DATA, "%s: must be an array", what);
                return -EBADMSG;
        }
        array = json_node_get_array(node);
        for (unsigned i = 0; i < json_array_get_length(array); i++) {
                JsonNode *e = json_array_get_element(array, i);
                static const char *const names[] = { "region", "start", "size" };
                uint64_t v[3];
                JsonObject *o;

                if (!JSON_NODE_HOLDS_OBJECT(e) || json_object_get_size(json_node_get_object(e)) != 3) {
                        g_set_error(error, JSON_PARSER_ERROR, JSON_PARSER_ERROR_INVALID_DATA,
                                    "%s %u: must be an object of region, start and size", what, i);
                        return -EBADMSG;
                }
                o = json_node_get_object(e);
                for (size_t k = 0; k < 3; k++) {
                        JsonNode *m = json_object_get_member(o, names[k]);
                        if (!m || !JSON_NODE_HOLDS_VALUE(m) || json_node_get_value_type(m) != G_TYPE_INT64 ||
                            json_node_get_int(m) < 0) {
                                g_set_error(error, JSON_PARSER_ERROR, JSON_PARSER_ERROR_INVALID_DATA,
                                            "%s %u: %s: must be a non-negative integer", what, i, names[k]);
                                return -EBADMSG;
                        }
                        v[k] = (uint64_t) json_node_get_int(m);
                }
                if (v[0] > UINT_MAX || v[2] == 0 || v[1] % (2 * MiB) || v[2] % (2 * MiB) || v[1] + v[2] < v[1]) {
                        g_set_error(error, JSON_PARSER_ERROR, JSON_PARSER_ERROR_INVALID_DATA,
                                    "%s %u: must be a non-empty range of whole 2 MiB units", what, i);
                        return -EBADMSG;
                }
                RegionRange d = { .region_id = (unsigned) v[0], .start = v[1], .size = v[2] };
                g_array_append_val(ranges, d);
        }
        return 0;
}

/* A host chunk overlapping another chunk or an allocation would make
 * start-up hand the same memory to two owners. */
int store_host_validate(const GArray *host, const GPtrArray *records, GError **error) {
        for (guint i = 0; i < host->len; i++) {
                const RegionRange *h = &g_array_index(host, RegionRange, i);

                for (guint k = 0; k < i; k++) {
                        const RegionRange *o = &g_array_index(host, RegionRange, k);
                        if (o->region_id == h->region_id && o->start < h->start + h->size && h->start < o->start + o->size)
                                goto overlap;
                }
                for (guint k = 0; k < records->len; k++) {
                        const AllocationRecord *a = records->pdata[k];
                        for (unsigned q = 0; q < a->n_ranges; q++)
                                if (a->region_id == h->region_id && a->ranges[q].start < h->start + h->size &&
                                    h->start < a->ranges[q].start + a->ranges[q].size)
                                        goto overlap;
                }
                continue;
        overlap:
                g_set_error(error, JSON_PARSER_ERROR, JSON_PARSER_ERROR_INVALID_DATA,
                            "host %u: overlaps another host chunk or an allocation", i);
                return -EBADMSG;
        }
        return 0;
}

static gint record_created_compare(gconstpointer x, gconstpointer y) {
        const AllocationRecord *a = *(AllocationRecord *const *) x, *c = *(AllocationRecord *const *) y;

        if (a->created_usec != c->created_usec)
                return a->created_usec < c->created_usec ? -1 : 1;
        return strcmp(a->id, c->id);
}

/* Version 1 had no owner table: an owner belongs to the uid of its
 * earliest allocation, which is the one that created it. */
void store_owners_from_records(const GPtrArray *records, GHashTable *owners) {
        g_autoptr(GPtrArray) sorted = g_ptr_array_sized_new(records->len);

        for (guint i = 0; i < records->len; i++)
                g_ptr_array_add(sorted, records->pdata[i]);

        g_ptr_array_sort(sorted, record_created_compare);
        for (guint i = 0; i < sorted->len; i++) {
                const AllocationRecord *r = sorted->pdata[i];
                if (!g_hash_table_contains(owners, r->owner))
                        g_hash_table_insert(owners, g_strdup(r->owner), GUINT_TO_POINTER(r->owner_uid));
        }
}

static int parse_owners(JsonNode *node, gint64 version, const GPtrArray *records, GHashTable *owners,
                        GError **error) {
        g_autoptr(GList) members = NULL;
        JsonObject *o;

        if (!node && version < 2) {
                store_owners_from_records(records, owners);
                return 0;
        }
        if (!node || !JSON_NODE_HOLDS_OBJECT(node)) {
                g_set_error(error, JSON_PARSER_ERROR, JSON_PARSER_ERROR_INVALID_DATA,
                            "owners: must be an object of owner names and uids");
                return -EBADMSG;
        }
        o = json_node_get_object(node);
        members = json_object_get_members(o);
        for (GList *l = members; l; l = l->next) {
                const char *name = l->data, *reason = name_invalid_reason(name);
                JsonNode *m = json_object_get_member(o, name);

                if (reason) {
                        g_set_error(error, JSON_PARSER_ERROR, JSON_PARSER_ERROR_INVALID_DATA, "owners: '%s': %s",
                                    name, reason);
                        return -EBADMSG;
                }
                if (!JSON_NODE_HOLDS_VALUE(m) || json_node_get_value_type(m) != G_TYPE_INT64 ||
                    json_node_get_int(m) < 0 || json_node_get_int(m) >= (gint64) UINT32_MAX) {
                        g_set_error(error, JSON_PARSER_ERROR, JSON_PARSER_ERROR_INVALID_DATA,
                                    "owners: '%s': the uid must be an integer from 0 to %u", name,
                                    (unsigned) UINT32_MAX - 1);
                        return -EBADMSG;
                }
        }
        /* Only owners that hold something are kept; every owner of an
         * allocation must be there, or who it belongs to is unknown. */
        for (guint i = 0; i < records->len; i++) {
                const AllocationRecord *r = records->pdata[i];
                JsonNode *m = json_object_get_member(o, r->owner);

                if (!m) {
                        g_set_error(error, JSON_PARSER_ERROR, JSON_PARSER_ERROR_INVALID_DATA,
                                    "owners: owner '%s' of allocation %s is not listed", r->owner, r->id);
                        return -EBADMSG;
                }
                if (!g_hash_table_contains(owners, r->owner))
                        g_hash_table_insert(owners, g_strdup(r->owner),
                                            GUINT_TO_POINTER((uid_t) json_node_get_int(m)));
        }
        return 0;
}

void store_state_init(StoreState *s) {
        *s = (StoreState) {
                .allocations = g_ptr_array_new_with_free_func((GDestroyNotify) allocation_record_free),
                .dirty = g_array_new(FALSE, FALSE, sizeof(RegionRange)),
                .host = g_array_new(FALSE, FALSE, sizeof(RegionRange)),
                .owners = store_owners_new(),
        };
}

GHashTable *store_owners_new(void) {
        return g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
}

void store_state_clear(StoreState *s) {
        if (s->allocations)
                g_ptr_array_unref(s->allocations);
        if (s->dirty)
                g_array_unref(s->dirty);
        if (s->host)
                g_array_unref(s->host);
        if (s->owners)
                g_hash_table_unref(s->owners);
        g_free(s->boot_id);
        *s = (StoreState) {};
}

int store_load_state_data(const char *data, gsize len, StoreState *ret, GError **error) {
        g_autoptr(JsonParser) parser = NULL;
        g_autoptr(GPtrArray) records = NULL;
        g_autoptr(GList) members = NULL;
        JsonNode *root, *node;
        JsonObject *top;
        JsonArray *array;
        gint64 version;
        unsigned n;
        int r;

        if (!store_json_depth_ok(data, len)) {
                g_set_error(error, JSON_PARSER_ERROR, JSON_PARSER_ERROR_INVALID_DATA,
                            "nested deeper than %d levels", JSON_DEPTH_MAX);
                return -EBADMSG;
        }

        parser = json_parser_new_immutable();
        if (!json_parser_load_from_data(parser, data, (gssize) len, error))
                return -EBADMSG;

        root = json_parser_get_root(parser);
        if (!root || !JSON_NODE_HOLDS_OBJECT(root)) {
                g_set_error(error, JSON_PARSER_ERROR, JSON_PARSER_ERROR_INVALID_DATA,
                            "top level must be an object");
                return -EBADMSG;
        }
        top = json_node_get_object(root);

        members = json_object_get_members(top);
        for (GList *l = members; l; l = l->next)
                if (!g_str_equal(l->data, "version") && !g_str_equal(l->data, "allocations") &&
                    !g_str_equal(l->data, "boot_id") && !g_str_equal(l->data, "dirty") &&
                    !g_str_equal(l->data, "host") && !g_str_equal(l->data, "owners")) {
                        g_set_error(error, JSON_PARSER_ERROR, JSON_PARSER_ERROR_INVALID_DATA,
                                    "%s: unknown member", (const char *) l->data);
                        return -EBADMSG;
                }

        node = json_object_get_member(top, "version");
        if (!node || !JSON_NODE_HOLDS_VALUE(node) || json_node_get_value_type(node) != G_TYPE_INT64) {
                g_set_error(error, JSON_PARSER_ERROR, JSON_PARSER_ERROR_INVALID_DATA,
                            "version: must be an integer");
                return -EBADMSG;
        }
        if (json_node_get_int(node) < STORE_VERSION_OLDEST || json_node_get_int(node) > STORE_VERSION) {
                g_set_error(error, JSON_PARSER_ERROR, JSON_PARSER_ERROR_INVALID_DATA,
                            "version: unsupported version %" G_GINT64_FORMAT ", this broker reads versions %d to %d",
                            json_node_get_int(node), STORE_VERSION_OLDEST, STORE_VERSION);
                return -EBADMSG;
        }
        version = json_node_get_int(node);

        node = json_object_get_member(top, "allocations");
        if (!node || !JSON_NODE_HOLDS_ARRAY(node)) {
                g_set_error(error, JSON_PARSER_ERROR, JSON_PARSER_ERROR_INVALID_DATA,
                            "allocations: must be an array");
                return -EBADMSG;
        }
        array = json_node_get_array(node);
        n = json_array_get_length(array);

        records = g_ptr_array_new_full(n, (GDestroyNotify) allocation_record_free);
        for (unsigned i = 0; i < n; i++) {
                AllocationRecord *rec = NULL;

                r = store_parse_allocation(json_array_get_element(array, i), i, &rec, error);
                if (r < 0)
                        return r;
                g_ptr_array_add(records, rec);
        }

        r = store_records_validate((AllocationRecord *const *) records->pdata, records->len, error);
        if (r < 0)
                return r;

        StoreState st;
        store_state_init(&st);
        node = json_object_get_member(top, "boot_id");
        if (node) {
                if (!JSON_NODE_HOLDS_VALUE(node) || json_node_get_value_type(node) != G_TYPE_STRING ||
                    !store_identifier_valid(json_node_get_string(node), ID_MAX)) {
                        store_state_clear(&st);
                        g_set_error(error, JSON_PARSER_ERROR, JSON_PARSER_ERROR_INVALID_DATA,
                                    "boot_id: must be a boot id string");
                        return -EBADMSG;
                }
                st.boot_id = g_strdup(json_node_get_string(node));
        }
        node = json_object_get_member(top, "dirty");
        r = node ? parse_region_ranges(node, "dirty", st.dirty, error) : 0;
        node = json_object_get_member(top, "host");
        if (r >= 0 && node)
                r = parse_region_ranges(node, "host", st.host, error);
        if (r >= 0)
                r = store_host_validate(st.host, records, error);
        if (r >= 0)
                r = parse_owners(json_object_get_member(top, "owners"), version, records, st.owners, error);
        if (r < 0) {
                store_state_clear(&st);
                return r;
        }
        g_ptr_array_unref(st.allocations);
        st.allocations = g_steal_pointer(&records);
        *ret = st;
        return 0;
}

int store_load_data(const char *data, gsize len, GPtrArray **ret, GError **error) {
        StoreState st;
        int r = store_load_state_data(data, len, &st, error);

        if (r < 0)
                return r;
        *ret = g_steal_pointer(&st.allocations);
        store_state_clear(&st);
        return 0;
}

int store_read_file(const char *path, size_t max, char **ret, gsize *ret_len) {
        _cleanup_close_ int fd = -EBADF;
        g_autofree char *buf = NULL;
        gsize size = 0, allocated = 0;
        struct stat st;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
        if ((size_t) st.st_size > max)
                return -EFBIG;

        for (;;) {
                ssize_t k;

                if (allocated - size < 1) {
                        allocated = MAX(MAX(allocated * 2, (gsize) st.st_size + 1), 4096);
                        if (allocated > max + 1)
                                return -EFBIG;
                        buf = g_realloc(buf, allocated);
                }

                k = read(fd, buf + size, allocated - size);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        break;
                size += k;
        }

        *ret = g_steal_pointer(&buf);
        *ret_len = size;
        return 0;
}

int store_legacy_load(const char *path, StoreState *ret, GError **error) {
        g_autofree char *data = NULL;
        gsize len = 0;
        int r;

        r = store_read_file(path, STATE_SIZE_MAX, &data, &len);
        if (r == -ENOENT) {
                store_state_init(ret);
                return 0;
        }
        if (r < 0) {
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(-r),
                            "%s: cannot read state: %s", path, g_strerror(-r));
                return r;
        }

        r = store_load_state_data(data, len, ret, error);
        if (r < 0)
                g_prefix_error(error, "%s: ", path);
        return r;
}

const RegionRange *store_region_find(const RegionRange *regions, size_t n, unsigned id) {
        for (size_t i = 0; i < n; i++)
                if (regions[i].region_id == id)
                        return &regions[i];
        return NULL;
}

bool store_range_inside(const RegionRange *region, uint64_t start, uint64_t size) {
        return start >= region->start && size <= region->size && start - region->start <= region->size - size;
}

static int region_ranges_check(const GArray *ranges, const char *what, const RegionRange *regions,
                               size_t n_regions, GError **error) {
        for (guint i = 0; i < ranges->len; i++) {
                const RegionRange *d = &g_array_index(ranges, RegionRange, i);
                const RegionRange *region = store_region_find(regions, n_regions, d->region_id);

                if (region && !store_range_inside(region, d->start, d->size)) {
                        g_set_error(error, JSON_PARSER_ERROR, JSON_PARSER_ERROR_INVALID_DATA,
                                    "%s %u: [%#" G_GINT64_MODIFIER "x, +%#" G_GINT64_MODIFIER "x) lies outside "
                                    "region %u [%#" G_GINT64_MODIFIER "x, +%#" G_GINT64_MODIFIER "x)",
                                    what, i, d->start, d->size, d->region_id, region->start, region->size);
                        return -EBADMSG;
                }
        }
        return 0;
}

int store_state_check_regions(const StoreState *st, const RegionRange *regions, size_t n_regions,
                              GError **error) {
        int r;

        for (guint i = 0; i < st->allocations->len; i++) {
                const AllocationRecord *rec = st->allocations->pdata[i];
                const RegionRange *region = store_region_find(regions, n_regions, rec->region_id);

                for (unsigned k = 0; region && k < rec->n_ranges; k++) {
                        char field[32];

                        if (store_range_inside(region, rec->ranges[k].start, rec->ranges[k].size))
                                continue;
                        snprintf(field, sizeof field, "ranges[%u]", k);
                        return store_fail(error, i, rec->id, field,
                                          "[%#" G_GINT64_MODIFIER "x, +%#" G_GINT64_MODIFIER "x) lies outside "
                                          "region %u [%#" G_GINT64_MODIFIER "x, +%#" G_GINT64_MODIFIER "x)",
                                          rec->ranges[k].start, rec->ranges[k].size, rec->region_id,
                                          region->start, region->size);
                }
        }
        r = region_ranges_check(st->dirty, "dirty", regions, n_regions, error);
        if (r < 0)
                return r;
        return region_ranges_check(st->host, "host", regions, n_regions, error);
}


/* PATH.corrupt-<UTC time>, never replacing an earlier one: every bad file
 * stays for the operator. */
int store_set_aside(const char *path, char **ret_name) {
        char stamp[32];
        time_t now = time(NULL);
        struct tm tm;
        int r;

        if (!gmtime_r(&now, &tm) || strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm) == 0)
                return -EINVAL;
        for (unsigned n = 0; n < 1000; n++) {
                g_autofree char *name = n ? g_strdup_printf("%s.corrupt-%s-%u", path, stamp, n)
                                          : g_strdup_printf("%s.corrupt-%s", path, stamp);

                r = renameat2(AT_FDCWD, path, AT_FDCWD, name, RENAME_NOREPLACE) < 0 ? -errno : 0;
                if (r == -EINVAL) {
                        /* A file system without RENAME_NOREPLACE. */
                        if (access(name, F_OK) == 0)
                                continue;
                        r = rename(path, name) < 0 ? -errno : 0;
                }
                if (r == -EEXIST)
                        continue;
                if (r < 0)
                        return r;
                /* The state written next must not outlive the rename. */
                r = store_fsync_directory_of(path);
                if (r < 0)
                        return r;
                *ret_name = g_steal_pointer(&name);
                return 0;
        }
        return -EEXIST;
}

int store_legacy_load_or_set_aside(const char *path, const RegionRange *regions, size_t n_regions,
                                  StoreState *ret, char **ret_set_aside, char **ret_reason, GError **error) {
        g_autoptr(GError) bad = NULL;
        g_autofree char *name = NULL;
        StoreState st;
        int r;

        r = store_legacy_load(path, &st, &bad);
        if (r >= 0) {
                r = store_state_check_regions(&st, regions, n_regions, &bad);
                if (r >= 0) {
                        *ret = st;
                        *ret_set_aside = NULL;
                        *ret_reason = NULL;
                        return 0;
                }
                g_prefix_error(&bad, "%s: ", path);
                store_state_clear(&st);
        }
        /* Only content that is wrong is set aside; a file we could not
         * read may be perfectly good. A file too big to be ours is wrong. */
        if (r != -EBADMSG && r != -EFBIG) {
                g_propagate_error(error, g_steal_pointer(&bad));
                return r;
        }

        r = store_set_aside(path, &name);
        if (r < 0) {
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(-r),
                            "%s (and it cannot be set aside: %s)", bad->message, g_strerror(-r));
                return r;
        }
        store_state_init(ret);
        *ret_set_aside = g_steal_pointer(&name);
        *ret_reason = g_strdup(bad->message);
        return 1;
}

int store_load(const char *path, GPtrArray **ret, GError **error) {
        StoreState st;
        int r = store_load_state(path, &st, error);

        if (r < 0)
                return r;
        *ret = g_steal_pointer(&st.allocations);
        store_state_clear(&st);
        return 0;
}

/* A JSON string literal, written as json-glib's generator writes it
 * (UTF-8 as is; quote, backslash and control characters escaped), so
 * that files written by either compare equal. */
void store_append_json_string(GString *out, const char *s) {
        const char *run = s;

        g_string_append_c(out, '"');
        for (const char *p = s; *p; p++) {
                unsigned char c = (unsigned char) *p;
                const char *esc = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\b' ? "\\b" : c == '\f' ? "\\f"
                                : c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t" : NULL;

                if (!esc && c >= 0x20 && c != 0x7f)
                        continue;
                g_string_append_len(out, run, p - run);
                if (esc)
                        g_string_append(out, esc);
                else
                        g_string_append_printf(out, "\\u%04x", c);
                run = p + 1;
        }
        g_string_append(out, run);
        g_string_append_c(out, '"');
}

/* As "%" G_GINT64_FORMAT, without printf's cost. */
static void append_int(GString *out, gint64 v) {
        char buf[24], *p = buf + sizeof(buf);
        guint64 u = v < 0 ? -(guint64) v : (guint64) v;

        do {
                *--p = (char) ('0' + u % 10);
                u /= 10;
        } while (u);
        if (v < 0)
                *--p = '-';
        g_string_append_len(out, p, buf + sizeof(buf) - p);
}

static void append_member_int(GString *out, const char *name, gint64 v) {
        g_string_append_c(out, ',');
        g_string_append_c(out, '"');
        g_string_append(out, name);
        g_string_append(out, "\":");
        append_int(out, v);
}

static void append_member_string(GString *out, const char *name, const char *value) {
        g_string_append_c(out, ',');
        g_string_append_c(out, '"');
        g_string_append(out, name);
        g_string_append(out, "\":");
        if (value)
                store_append_json_string(out, value);
        else
                g_string_append(out, "null");
}

/* One allocation as compact JSON, member by member as the format lists
 * them. Written by hand: json-glib's builder and generator cost a
 * hundred thousand instructions per record, on the path of every call. */
static char *record_to_text(const AllocationRecord *r) {
        GString *out = g_string_sized_new(384);

        g_string_append(out, "{\"id\":");
        store_append_json_string(out, r->id);
        append_member_string(out, "owner", r->owner);
        append_member_int(out, "owner_uid", (gint64) r->owner_uid);
        append_member_string(out, "label", r->label);
        append_member_string(out, "pool", r->pool);
        append_member_int(out, "region", (gint64) r->region_id);
        append_member_int(out, "align", (gint64) r->align);
        append_member_string(out, "device", r->device);
        append_member_int(out, "created_usec", (gint64) r->created_usec);
        g_string_append(out, r->transient ? ",\"transient\":true" : ",\"transient\":false");
        append_member_string(out, "state", allocation_state_to_string(r->state));
        if (r->client)
                append_member_string(out, "client", r->client);
        if (r->warm)
                g_string_append(out, ",\"warm\":true");
        if (r->device_uid != (uid_t) -1)
                append_member_int(out, "device_uid", (gint64) r->device_uid);
        if (r->device_gid != (gid_t) -1)
                append_member_int(out, "device_gid", (gint64) r->device_gid);
        if (r->colors) {
                bool first = true;

                g_string_append(out, ",\"colors\":[");
                for (unsigned k = 0; k < 64; k++)
                        if (r->colors & ((uint64_t) 1 << k)) {
                                if (!first)
                                        g_string_append_c(out, ',');
                                append_int(out, k);
                                first = false;
                        }
                g_string_append_c(out, ']');
                if (r->cache_isolation)
                        g_string_append(out, ",\"cache_isolation\":true");
        }
        g_string_append(out, ",\"ranges\":[");
        for (unsigned k = 0; k < r->n_ranges && k < DAX_RANGES_MAX; k++) {
                g_string_append(out, k ? ",{\"start\":" : "{\"start\":");
                append_int(out, (gint64) r->ranges[k].start);
                g_string_append(out, ",\"size\":");
                append_int(out, (gint64) r->ranges[k].size);
                g_string_append_c(out, '}');
        }
        g_string_append(out, "]}");
        return g_string_free(out, FALSE);
}

AllocationRecord *allocation_record_copy(const AllocationRecord *r) {
        AllocationRecord *c = g_new0(AllocationRecord, 1);

        *c = *r;
        c->id = g_strdup(r->id);
        c->owner = g_strdup(r->owner);
        c->label = g_strdup(r->label);
        c->pool = g_strdup(r->pool);
        c->device = g_strdup(r->device);
        c->client = g_strdup(r->client);
        c->cache.text = NULL;
        c->cache.shadow = NULL;
        return c;
}

static bool record_same(const AllocationRecord *a, const AllocationRecord *b) {
        return g_strcmp0(a->id, b->id) == 0 && g_strcmp0(a->owner, b->owner) == 0 && a->owner_uid == b->owner_uid &&
               g_strcmp0(a->label, b->label) == 0 && g_strcmp0(a->pool, b->pool) == 0 &&
               a->region_id == b->region_id && a->align == b->align && g_strcmp0(a->device, b->device) == 0 &&
               a->created_usec == b->created_usec && a->transient == b->transient &&
               g_strcmp0(a->client, b->client) == 0 && a->device_uid == b->device_uid &&
               a->device_gid == b->device_gid && a->state == b->state && a->colors == b->colors &&
               a->cache_isolation == b->cache_isolation && a->warm == b->warm && a->n_ranges == b->n_ranges &&
               memcmp(a->ranges, b->ranges, MIN(a->n_ranges, (unsigned) DAX_RANGES_MAX) * sizeof(DaxRange)) == 0;
}

/* A record's text is kept between saves, so that a save with many
 * allocations serializes just the ones that changed. */
const char *store_record_text(AllocationRecord *r) {
        if (!r->cache.text || !r->cache.shadow || !record_same(r, r->cache.shadow)) {
                g_free(r->cache.text);
                allocation_record_free(r->cache.shadow);
                r->cache.text = record_to_text(r);
                /* The record as it was when its text was made: every
                 * member is compared, so a change to any of them is
                 * serialized, validated and saved. */
                r->cache.shadow = allocation_record_copy(r);
        }
        return r->cache.text;
}

static void append_ranges(GString *out, const char *what, const GArray *ranges) {
        if (!ranges || ranges->len == 0)
                return;
        g_string_append_printf(out, ",\n\"%s\": [", what);
        for (guint i = 0; i < ranges->len; i++) {
                const RegionRange *d = &g_array_index(ranges, RegionRange, i);
                g_string_append_printf(out, "%s{\"region\": %u, \"start\": %" G_GUINT64_FORMAT
                                            ", \"size\": %" G_GUINT64_FORMAT "}",
                                       i ? ",\n  " : "\n  ", d->region_id, d->start, d->size);
        }
        g_string_append(out, "\n]");
}

/* Writes the owner of every allocation, with its uid from st->owners (an
 * owner missing there belongs to its allocation's owner_uid), once. */
static void append_owners(GString *out, const StoreState *st) {
        g_autoptr(GHashTable) seen = g_hash_table_new(g_str_hash, g_str_equal);
        bool first = true;

        g_string_append(out, ",\n\"owners\": {");
        for (guint i = 0; i < st->allocations->len; i++) {
                const AllocationRecord *r = st->allocations->pdata[i];
                void *v;
                uid_t uid = r->owner_uid;

                if (!g_hash_table_add(seen, r->owner))
                        continue;
                if (st->owners && g_hash_table_lookup_extended(st->owners, r->owner, NULL, &v))
                        uid = (uid_t) GPOINTER_TO_UINT(v);
                g_string_append(out, first ? "\n  " : ",\n  ");
                store_append_json_string(out, r->owner);
                g_string_append_printf(out, ": %u", (unsigned) uid);
                first = false;
        }
        g_string_append(out, first ? "}" : "\n}");
}

/* The file is one allocation per line, so that it stays readable and
 * diffable without a pretty-printer. */
char *store_state_to_data(const StoreState *st) {
        AllocationRecord *const *records = (AllocationRecord *const *) st->allocations->pdata;
        size_t n = st->allocations->len;
        GString *out = g_string_sized_new(256 + n * 400);

        g_string_append_printf(out, "{\n\"version\": %d,\n\"allocations\": [", STORE_VERSION);
        for (size_t i = 0; i < n; i++) {
                g_string_append(out, i ? ",\n  " : "\n  ");
                g_string_append(out, store_record_text(records[i]));
        }
        g_string_append(out, n ? "\n]" : "]");
        append_owners(out, st);
        /* boot_id is validated to plain identifier characters on load and
         * comes from the kernel as a UUID: no escaping needed. */
        if (st->boot_id)
                g_string_append_printf(out, ",\n\"boot_id\": \"%s\"", st->boot_id);
        append_ranges(out, "dirty", st->dirty);
        append_ranges(out, "host", st->host);
        g_string_append(out, "\n}\n");
        return g_string_free(out, FALSE);
}

int store_write_all(int fd, const char *data, size_t len) {
        while (len > 0) {
                ssize_t k = write(fd, data, len);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                data += k;
                len -= k;
        }
        return 0;
}

int store_fsync_directory_of(const char *path) {
        g_autofree char *dir = g_path_get_dirname(path);
        _cleanup_close_ int fd = -EBADF;

        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (fsync(fd) < 0)
                return -errno;
        return 0;
}

char *store_to_data(AllocationRecord *const *records, size_t n) {
        GPtrArray a = { .pdata = (gpointer *) records, .len = n };
        StoreState st = { .allocations = &a };

        return store_state_to_data(&st);
}

int store_save(const char *path, AllocationRecord *const *records, size_t n, GError **error) {
        GPtrArray a = { .pdata = (gpointer *) records, .len = n };
        StoreState st = { .allocations = &a };

        return store_save_state(path, &st, STORE_SAVE_DURABLE, error);
}
