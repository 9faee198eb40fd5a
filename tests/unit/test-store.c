/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store.h"
#include "store-private.h"
#include "util.h"

/* The step at which the store's test hook kills this process. */
static const char *store_test_step_crash;

static void crash_here(const char *step) {
        if (store_test_step_crash && strcmp(step, store_test_step_crash) == 0)
                raise(SIGKILL);
}

static char *test_dir;

static void rm_rf(const char *path) {
        GDir *dir = g_dir_open(path, 0, NULL);
        const char *name;

        if (!dir) {
                g_assert_cmpint(g_unlink(path), ==, 0);
                return;
        }
        while ((name = g_dir_read_name(dir))) {
                g_autofree char *child = g_build_filename(path, name, NULL);

                rm_rf(child);
        }
        g_dir_close(dir);
        g_assert_cmpint(g_rmdir(path), ==, 0);
}

static char *make_case_dir(void) {
        static unsigned counter;
        char *dir = g_strdup_printf("%s/case%u", test_dir, counter++);

        g_assert_cmpint(g_mkdir(dir, 0700), ==, 0);
        return dir;
}

static gint name_compare(gconstpointer a, gconstpointer b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static GStrv list_dir(const char *path) {
        g_autoptr(GPtrArray) names = g_ptr_array_new();
        GDir *dir = g_dir_open(path, 0, NULL);
        const char *name;

        g_assert_nonnull(dir);
        while ((name = g_dir_read_name(dir)))
                g_ptr_array_add(names, g_strdup(name));
        g_dir_close(dir);
        g_ptr_array_sort(names, name_compare);
        g_ptr_array_add(names, NULL);
        return (GStrv) g_ptr_array_free(g_steal_pointer(&names), false);
}

static AllocationRecord *record_new(const char *id, uint64_t start, uint64_t size) {
        AllocationRecord *r = allocation_record_new();

        r->id = g_strdup(id);
        r->owner = g_strdup("vm-web1");
        r->owner_uid = 107;
        r->pool = g_strdup("fast");
        r->region_id = 0;
        r->align = 2 * MiB;
        r->created_usec = UINT64_C(1700000000123456);
        r->state = ALLOCATION_ACTIVE;
        r->n_ranges = 1;
        r->ranges[0] = (DaxRange) { start, size };
        return r;
}

/* A varied set: every optional field both set and unset, every state,
 * several ranges, addresses above 4 GiB and near the top of int64. */
static GPtrArray *sample_records(void) {
        GPtrArray *a = g_ptr_array_new_with_free_func((GDestroyNotify) allocation_record_free);
        AllocationRecord *r;

        r = record_new("vm1-0", 4 * GiB, 512 * MiB);
        r->label = g_strdup("web tier \xe2\x80\x94 prod");
        r->device = g_strdup("dax0.1");
        g_ptr_array_add(a, r);

        r = record_new("vm2_0", 8 * GiB, GiB);
        g_free(r->owner);
        r->owner = g_strdup("qemu/instance 2");
        r->owner_uid = 0;
        r->align = GiB;
        r->n_ranges = 3;
        r->ranges[1] = (DaxRange) { 16 * GiB, 2 * GiB };
        r->ranges[2] = (DaxRange) { 10 * GiB, GiB };
        r->transient = true;
        r->state = ALLOCATION_CREATING;
        r->created_usec = 0;
        g_ptr_array_add(a, r);

        r = record_new("x", UINT64_C(0x7ff0000000000000), 4 * MiB);
        g_free(r->pool);
        r->pool = g_strdup("region-12");
        r->region_id = 12;
        r->device = g_strdup("dax12.345");
        r->align = 4 * KiB;
        r->owner_uid = 4294967294u;
        r->state = ALLOCATION_RELEASING;
        g_ptr_array_add(a, r);

        r = record_new("max-ranges", 64 * GiB, 2 * MiB);
        r->n_ranges = DAX_RANGES_MAX;
        for (unsigned i = 0; i < DAX_RANGES_MAX; i++)
                r->ranges[i] = (DaxRange) { 64 * GiB + (DAX_RANGES_MAX - i) * 4 * MiB, 2 * MiB };
        g_ptr_array_add(a, r);

        return a;
}

static void assert_records_equal(GPtrArray *a, GPtrArray *b) {
        g_assert_cmpuint(a->len, ==, b->len);
        for (unsigned i = 0; i < a->len; i++) {
                const AllocationRecord *x = a->pdata[i], *y = b->pdata[i];

                g_assert_cmpstr(x->id, ==, y->id);
                g_assert_cmpstr(x->owner, ==, y->owner);
                g_assert_cmpuint(x->owner_uid, ==, y->owner_uid);
                g_assert_cmpstr(x->label, ==, y->label);
                g_assert_cmpstr(x->pool, ==, y->pool);
                g_assert_cmpuint(x->region_id, ==, y->region_id);
                g_assert_cmpuint(x->align, ==, y->align);
                g_assert_cmpstr(x->device, ==, y->device);
                g_assert_cmpuint(x->created_usec, ==, y->created_usec);
                g_assert_cmpint(x->transient, ==, y->transient);
                g_assert_cmpint(x->state, ==, y->state);
                g_assert_cmpuint(x->n_ranges, ==, y->n_ranges);
                for (unsigned k = 0; k < x->n_ranges; k++) {
                        g_assert_cmpuint(x->ranges[k].start, ==, y->ranges[k].start);
                        g_assert_cmpuint(x->ranges[k].size, ==, y->ranges[k].size);
                }
        }
}

static AllocationRecord *const *records_of(GPtrArray *a) {
        return (AllocationRecord *const *) a->pdata;
}

/* One allocation as JSON text: a valid one, with members replaced, added
 * (name not in the base) or removed (value NULL) by name/value pairs. */
G_GNUC_NULL_TERMINATED
static char *allocation_json(const char *first, ...) {
        static const char *const base[][2] = {
                { "id", "\"a\"" },
                { "owner", "\"vm1\"" },
                { "owner_uid", "107" },
                { "label", "\"web\"" },
                { "pool", "\"fast\"" },
                { "region", "0" },
                { "align", "2097152" },
                { "device", "\"dax0.1\"" },
                { "created_usec", "1700000000000000" },
                { "transient", "false" },
                { "state", "\"active\"" },
                { "ranges", "[{\"start\": 4294967296, \"size\": 2097152}]" },
        };
        g_autoptr(GHashTable) overrides = g_hash_table_new(g_str_hash, g_str_equal);
        g_autoptr(GString) s = g_string_new("{");
        bool comma = false;
        GHashTableIter iter;
        gpointer k, v;
        va_list ap;

        va_start(ap, first);
        for (const char *name = first; name; name = va_arg(ap, const char *))
                g_hash_table_insert(overrides, (gpointer) name, va_arg(ap, char *));
        va_end(ap);

        for (size_t i = 0; i < G_N_ELEMENTS(base); i++) {
                const char *value = base[i][1];

                if (g_hash_table_lookup_extended(overrides, base[i][0], NULL, &v)) {
                        g_hash_table_remove(overrides, base[i][0]);
                        value = v;
                }
                if (!value)
                        continue;
                g_string_append_printf(s, "%s\"%s\": %s", comma ? ", " : "", base[i][0], value);
                comma = true;
        }

        g_hash_table_iter_init(&iter, overrides);
        while (g_hash_table_iter_next(&iter, &k, &v))
                g_string_append_printf(s, "%s\"%s\": %s", comma ? ", " : "", (char *) k, (char *) v);

        g_string_append_c(s, '}');
        return g_string_free(g_steal_pointer(&s), false);
}

static char *document(const char *allocations) {
        return g_strdup_printf("{\"version\": 1, \"allocations\": [%s]}", allocations);
}

static void load_fails(const char *text, const char *fragment) {
        g_autoptr(GError) error = NULL;
        GPtrArray *ret = NULL;

        g_assert_cmpint(store_load_data(text, strlen(text), &ret, &error), ==, -EBADMSG);
        g_assert_null(ret);
        g_assert_nonnull(error);
        g_test_message("rejected: %s", error->message);
        if (!strstr(error->message, fragment))
                g_error("message '%s' lacks '%s' (input: %s)", error->message, fragment, text);
}

/* The cache colours of an allocation: optional (records of earlier
 * releases have none), kept through a save, and strictly checked. */
static void test_colors(void) {
        g_autofree char *old_a = allocation_json(NULL, NULL);
        g_autofree char *old = document(old_a);
        g_autofree char *colored_a = allocation_json("colors", "[0, 3]", "cache_isolation", "true", NULL);
        g_autofree char *colored = document(colored_a);
        g_autoptr(GError) error = NULL;
        GPtrArray *ret = NULL;
        g_autofree char *again = NULL;
        static const char *const bad[][3] = {
                { "colors", "[]", "1 to 64 colours" },
                { "colors", "[3, 0]", "distinct and increasing" },
                { "colors", "[1, 1]", "distinct and increasing" },
                { "colors", "[64]", "is not 0 to 63" },
                { "colors", "[-1]", "is not 0 to 63" },
                { "colors", "[\"1\"]", "not an integer" },
                { "colors", "3", "must be an array" },
        };

        g_assert_cmpint(store_load_data(old, strlen(old), &ret, &error), ==, 0);
        g_assert_no_error(error);
        g_assert_cmpuint(((AllocationRecord *) ret->pdata[0])->colors, ==, 0);
        g_assert_false(((AllocationRecord *) ret->pdata[0])->cache_isolation);
        g_ptr_array_unref(ret);

        g_assert_cmpint(store_load_data(colored, strlen(colored), &ret, &error), ==, 0);
        g_assert_no_error(error);
        g_assert_cmpuint(((AllocationRecord *) ret->pdata[0])->colors, ==, 0x9);
        g_assert_true(((AllocationRecord *) ret->pdata[0])->cache_isolation);
        again = store_to_data(records_of(ret), ret->len);
        g_assert_nonnull(strstr(again, "\"colors\":[0,3]"));
        g_assert_nonnull(strstr(again, "\"cache_isolation\":true"));
        g_ptr_array_unref(ret);

        for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
                g_autofree char *a = allocation_json(bad[i][0], bad[i][1], NULL);
                g_autofree char *text = document(a);
                load_fails(text, bad[i][2]);
        }
        {
                g_autofree char *a = allocation_json("cache_isolation", "true", NULL);
                g_autofree char *text = document(a);
                load_fails(text, "only valid with");
        }
        {
                g_autofree char *a = allocation_json("colors", "[1]", "cache_isolation", "1", NULL);
                g_autofree char *text = document(a);
                load_fails(text, "must be true or false");
        }
}

static uid_t owner_uid_of(const StoreState *st, const char *owner) {
        void *v = NULL;

        g_assert_true(g_hash_table_lookup_extended(st->owners, owner, NULL, &v));
        return (uid_t) GPOINTER_TO_UINT(v);
}

/* A version 1 file has no owner table: each owner belongs to the uid of
 * its earliest allocation, whoever else put allocations in it later. */
static void test_owners_upgrade(void) {
        g_autofree char *first = allocation_json("id", "\"a\"", "owner", "\"vm1\"", "owner_uid", "1001",
                                                 "created_usec", "1700000000000001", NULL);
        g_autofree char *squat = allocation_json("id", "\"b\"", "owner", "\"vm1\"", "owner_uid", "1002",
                                                 "created_usec", "1700000000000000", "device", "\"dax0.2\"",
                                                 "ranges", "[{\"start\": 4297064448, \"size\": 2097152}]", NULL);
        g_autofree char *later = allocation_json("id", "\"c\"", "owner", "\"vm1\"", "owner_uid", "1001",
                                                 "created_usec", "1700000000000009", "device", "\"dax0.3\"",
                                                 "ranges", "[{\"start\": 4299161600, \"size\": 2097152}]", NULL);
        g_autofree char *v1 = g_strdup_printf("{\"version\": 1, \"allocations\": [%s, %s, %s]}", later, first, squat);
        g_autoptr(GError) error = NULL;
        g_autofree char *text = NULL;
        StoreState st, again;

        g_assert_cmpint(store_load_state_data(v1, strlen(v1), &st, &error), ==, 0);
        g_assert_no_error(error);
        /* b is the earliest: created_usec, not file order, decides. */
        g_assert_cmpuint(owner_uid_of(&st, "vm1"), ==, 1002);
        g_assert_cmpuint(g_hash_table_size(st.owners), ==, 1);

        /* The table wins over the allocations' uids once written. */
        g_hash_table_insert(st.owners, g_strdup("vm1"), GUINT_TO_POINTER(1001));
        text = store_state_to_data(&st);
        g_assert_nonnull(strstr(text, "\"version\": 2"));
        g_assert_cmpint(store_load_state_data(text, strlen(text), &again, &error), ==, 0);
        g_assert_no_error(error);
        g_assert_cmpuint(owner_uid_of(&again, "vm1"), ==, 1001);
        store_state_clear(&st);
        store_state_clear(&again);
}

static void test_owners_rejected(void) {
        g_autofree char *a = allocation_json(NULL, NULL);
        g_autofree char *missing = g_strdup_printf("{\"version\": 2, \"allocations\": [%s], \"owners\": {}}", a);
        g_autofree char *none = g_strdup_printf("{\"version\": 2, \"allocations\": [%s]}", a);
        g_autofree char *bad_uid = g_strdup_printf(
                "{\"version\": 2, \"allocations\": [%s], \"owners\": {\"vm1\": 4294967295}}", a);
        g_autofree char *neg_uid = g_strdup_printf(
                "{\"version\": 2, \"allocations\": [%s], \"owners\": {\"vm1\": -1}}", a);
        g_autofree char *str_uid = g_strdup_printf(
                "{\"version\": 2, \"allocations\": [%s], \"owners\": {\"vm1\": \"0\"}}", a);
        g_autofree char *bad_name = g_strdup_printf(
                "{\"version\": 2, \"allocations\": [%s], \"owners\": {\"vm1\": 5, \"\": 5}}", a);
        const char *extra = "{\"version\": 2, \"allocations\": [], \"owners\": {\"gone\": 5}}";
        g_autoptr(GError) error = NULL;
        StoreState st;

        load_fails(missing, "owners: owner 'vm1' of allocation a is not listed");
        load_fails(none, "owners: must be an object");
        load_fails(bad_uid, "owners: 'vm1': the uid must be an integer from 0 to 4294967294");
        load_fails(neg_uid, "owners: 'vm1': the uid");
        load_fails(str_uid, "owners: 'vm1': the uid");
        load_fails(bad_name, "owners: '': must not be empty");

        /* An owner that holds nothing is dropped, not an error. */
        g_assert_cmpint(store_load_state_data(extra, strlen(extra), &st, &error), ==, 0);
        g_assert_no_error(error);
        g_assert_cmpuint(g_hash_table_size(st.owners), ==, 0);
        store_state_clear(&st);
}

static void test_state_names(void) {
        g_assert_cmpstr(allocation_state_to_string(ALLOCATION_ACTIVE), ==, "active");
        g_assert_cmpstr(allocation_state_to_string(ALLOCATION_CREATING), ==, "creating");
        g_assert_cmpstr(allocation_state_to_string(ALLOCATION_RELEASING), ==, "releasing");
        g_assert_null(allocation_state_to_string((AllocationState) 3));
}

/* boot_id, dirty ranges and a transient client survive a round trip; bad
 * ones are refused as a whole. */
static void test_state_extras(void) {
        g_autoptr(GPtrArray) records = sample_records();
        g_autoptr(GArray) dirty = g_array_new(FALSE, FALSE, sizeof(RegionRange));
        g_autoptr(GArray) host = g_array_new(FALSE, FALSE, sizeof(RegionRange));
        RegionRange d = { .region_id = 1, .start = 8 * GiB, .size = 4 * MiB };
        RegionRange h = { .region_id = 1, .start = 9 * GiB, .size = 1 * GiB };
        StoreState st = { .allocations = records, .boot_id = (char *) "5e1f-boot", .dirty = dirty, .host = host },
                   back;
        g_autoptr(GError) error = NULL;
        g_autofree char *text = NULL, *again = NULL;

        g_array_append_val(dirty, d);
        g_array_append_val(host, h);
        ((AllocationRecord *) records->pdata[0])->transient = true;
        ((AllocationRecord *) records->pdata[0])->client = g_strdup(":1.42");
        ((AllocationRecord *) records->pdata[1])->device_uid = 64055;
        ((AllocationRecord *) records->pdata[1])->device_gid = 0;
        text = store_state_to_data(&st);
        g_assert_cmpint(store_load_state_data(text, strlen(text), &back, &error), ==, 0);
        g_assert_no_error(error);
        g_assert_cmpstr(back.boot_id, ==, "5e1f-boot");
        g_assert_cmpuint(back.dirty->len, ==, 1);
        g_assert_cmpuint(g_array_index(back.dirty, RegionRange, 0).region_id, ==, 1);
        g_assert_cmpuint(g_array_index(back.dirty, RegionRange, 0).start, ==, 8 * GiB);
        g_assert_cmpuint(g_array_index(back.dirty, RegionRange, 0).size, ==, 4 * MiB);
        g_assert_cmpuint(back.host->len, ==, 1);
        g_assert_cmpuint(g_array_index(back.host, RegionRange, 0).start, ==, 9 * GiB);
        g_assert_cmpuint(g_array_index(back.host, RegionRange, 0).size, ==, 1 * GiB);
        g_assert_cmpstr(((AllocationRecord *) back.allocations->pdata[0])->client, ==, ":1.42");
        g_assert_cmpuint(((AllocationRecord *) back.allocations->pdata[1])->device_uid, ==, 64055);
        g_assert_cmpuint(((AllocationRecord *) back.allocations->pdata[1])->device_gid, ==, 0);
        g_assert_true(((AllocationRecord *) back.allocations->pdata[0])->device_uid == (uid_t) -1);
        again = store_state_to_data(&back);
        g_assert_cmpstr(text, ==, again);
        store_state_clear(&back);

        /* A host chunk over an allocation's memory is refused. */
        {
                g_autofree char *clash = NULL;
                g_autoptr(GError) e = NULL;

                g_array_index(host, RegionRange, 0) = (RegionRange) { .region_id = 0, .start = 4 * GiB, .size = 2 * MiB };
                clash = store_state_to_data(&st);
                g_assert_cmpint(store_load_state_data(clash, strlen(clash), &back, &e), ==, -EBADMSG);
                g_assert_nonnull(strstr(e->message, "host 0: overlaps"));
        }

        static const char *const bad[] = {
                "{\"version\":1,\"allocations\":[],\"dirty\":[{\"region\":0,\"start\":1,\"size\":2097152}]}",
                "{\"version\":1,\"allocations\":[],\"dirty\":[{\"region\":0,\"start\":0,\"size\":0}]}",
                "{\"version\":1,\"allocations\":[],\"dirty\":[{\"region\":0,\"start\":0}]}",
                "{\"version\":1,\"allocations\":[],\"dirty\":{}}",
                "{\"version\":1,\"allocations\":[],\"host\":[{\"region\":0,\"start\":0,\"size\":3}]}",
                /* two host chunks that overlap */
                "{\"version\":1,\"allocations\":[],\"host\":[{\"region\":0,\"start\":0,\"size\":4194304},{\"region\":0,\"start\":2097152,\"size\":2097152}]}",
                "{\"version\":1,\"allocations\":[],\"boot_id\":7}",
                "{\"version\":1,\"allocations\":[],\"boot_id\":\"a/b\"}",
        };
        for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
                g_autoptr(GError) e = NULL;
                StoreState x;

                g_assert_cmpint(store_load_state_data(bad[i], strlen(bad[i]), &x, &e), ==, -EBADMSG);
                g_assert_nonnull(e);
        }
}

static void test_round_trip_data(void) {
        g_autoptr(GPtrArray) records = sample_records();
        g_autoptr(GPtrArray) loaded = NULL;
        g_autoptr(GError) error = NULL;
        g_autofree char *text = store_to_data(records_of(records), records->len);
        g_autofree char *again = NULL;

        g_assert_cmpint(store_load_data(text, strlen(text), &loaded, &error), ==, 0);
        g_assert_no_error(error);
        assert_records_equal(records, loaded);

        /* Stable: what was read serializes to the same text. */
        again = store_to_data(records_of(loaded), loaded->len);
        g_assert_cmpstr(text, ==, again);
}

static void test_format_on_disk(void) {
        g_autoptr(GPtrArray) records = sample_records();
        g_autofree char *text = store_to_data(records_of(records), records->len);
        g_autoptr(JsonParser) parser = json_parser_new();
        JsonObject *top, *a;
        JsonNode *start;

        g_assert_true(g_str_has_suffix(text, "}\n"));
        g_assert_true(json_parser_load_from_data(parser, text, -1, NULL));
        top = json_node_get_object(json_parser_get_root(parser));
        g_assert_cmpint(json_object_get_int_member(top, "version"), ==, 2);
        g_assert_true(json_object_has_member(top, "owners"));
        a = json_array_get_object_element(json_object_get_array_member(top, "allocations"), 2);
        g_assert_cmpstr(json_object_get_string_member(a, "state"), ==, "releasing");
        g_assert_cmpstr(json_object_get_string_member(a, "device"), ==, "dax12.345");
        g_assert_true(json_object_get_null_member(a, "label"));
        /* Addresses are JSON integers, not strings or doubles. */
        start = json_object_get_member(
                json_array_get_object_element(json_object_get_array_member(a, "ranges"), 0), "start");
        g_assert_cmpint(json_node_get_value_type(start), ==, G_TYPE_INT64);
        g_assert_cmpint(json_node_get_int(start), ==, INT64_C(0x7ff0000000000000));
}

static void test_empty(void) {
        g_autoptr(GPtrArray) loaded = NULL;
        g_autoptr(GError) error = NULL;
        g_autofree char *text = store_to_data(NULL, 0);
        const char *minimal = "{\"allocations\":[],\"version\":1}";

        g_assert_cmpint(store_load_data(text, strlen(text), &loaded, &error), ==, 0);
        g_assert_cmpuint(loaded->len, ==, 0);
        g_clear_pointer(&loaded, g_ptr_array_unref);

        g_assert_cmpint(store_load_data(minimal, strlen(minimal), &loaded, &error), ==, 0);
        g_assert_no_error(error);
        g_assert_cmpuint(loaded->len, ==, 0);
}

static gint record_id_compare(gconstpointer x, gconstpointer y) {
        return strcmp((*(AllocationRecord *const *) x)->id, (*(AllocationRecord *const *) y)->id);
}

/* A directory is read in no particular order. */
static void assert_records_same(GPtrArray *a, GPtrArray *b) {
        g_autoptr(GPtrArray) x = g_ptr_array_new();
        g_autoptr(GPtrArray) y = g_ptr_array_new();

        /* Borrowed: a copy would free the records with it. */
        for (guint i = 0; i < a->len; i++)
                g_ptr_array_add(x, a->pdata[i]);
        for (guint i = 0; i < b->len; i++)
                g_ptr_array_add(y, b->pdata[i]);

        g_ptr_array_sort(x, record_id_compare);
        g_ptr_array_sort(y, record_id_compare);
        assert_records_equal(x, y);
}

static char *read_text(const char *dir, const char *name) {
        g_autofree char *path = g_build_filename(dir, name, NULL);
        char *text = NULL;

        g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
        return text;
}

static void write_text(const char *dir, const char *name, const char *text) {
        g_autofree char *path = g_build_filename(dir, name, NULL);

        g_assert_true(g_file_set_contents(path, text, -1, NULL));
}

static void test_load_missing(void) {
        g_autofree char *dir = make_case_dir();
        g_autofree char *path = g_build_filename(dir, "state", NULL);
        g_autoptr(GPtrArray) loaded = NULL;
        g_autoptr(GError) error = NULL;

        g_assert_cmpint(store_load(path, &loaded, &error), ==, 0);
        g_assert_no_error(error);
        g_assert_nonnull(loaded);
        g_assert_cmpuint(loaded->len, ==, 0);
        g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
}

static void test_save_and_load(void) {
        g_autofree char *dir = make_case_dir();
        g_autofree char *path = g_build_filename(dir, "state", NULL);
        g_autoptr(GPtrArray) records = sample_records();
        g_autoptr(GPtrArray) loaded = NULL;
        g_autoptr(GError) error = NULL;
        g_auto(GStrv) names = NULL;
        g_autofree char *sha = g_compute_checksum_for_string(G_CHECKSUM_SHA256, "qemu/instance 2", -1);
        g_autofree char *hashed = g_strdup_printf("owner=%s.json", sha);
        const char *expected[] = {
                "allocation-max-ranges.json", "allocation-vm1-0.json", "allocation-vm2_0.json", "allocation-x.json",
                "meta.json", "owner-vm-web1.json", hashed, NULL,
        };
        g_autofree char *one = NULL;
        struct stat st;
        mode_t old_umask;

        /* Even a permissive umask must not widen the mode. */
        old_umask = umask(0);
        g_assert_cmpint(store_save(path, records_of(records), records->len, &error), ==, 0);
        umask(old_umask);
        g_assert_no_error(error);

        g_assert_cmpint(g_stat(path, &st), ==, 0);
        g_assert_cmpint(st.st_mode & 07777, ==, 0700);
        names = list_dir(path);
        for (size_t i = 0; i < G_N_ELEMENTS(expected) - 1; i++) {
                g_autofree char *p = g_build_filename(path, names[i], NULL);

                g_assert_cmpstr(names[i], ==, expected[i]);
                g_assert_cmpint(g_stat(p, &st), ==, 0);
                g_assert_cmpint(st.st_mode & 07777, ==, 0600);
        }
        g_assert_cmpuint(g_strv_length(names), ==, G_N_ELEMENTS(expected) - 1);

        /* One readable line per file. */
        one = read_text(path, "allocation-vm1-0.json");
        g_assert_true(g_str_has_prefix(one, "{\"id\":\"vm1-0\",\"owner\":\"vm-web1\""));
        g_assert_true(g_str_has_suffix(one, "}\n"));
        g_assert_true(strchr(one, '\n') == one + strlen(one) - 1);

        store_forget(path);
        g_assert_cmpint(store_load(path, &loaded, &error), ==, 0);
        g_assert_no_error(error);
        assert_records_same(records, loaded);

        /* Without STORE_SAVE_DURABLE: the same files, just not fsync'ed;
         * what is no longer in the state is removed. */
        {
                g_autoptr(GPtrArray) again = NULL;
                g_autoptr(GPtrArray) part = g_ptr_array_new();
                StoreState st1 = { .allocations = part };

                g_ptr_array_add(part, records->pdata[0]);
                g_assert_cmpint(store_save_state(path, &st1, 0, &error), ==, 0);
                g_assert_no_error(error);
                g_assert_cmpint(store_load(path, &again, &error), ==, 0);
                g_assert_cmpuint(again->len, ==, 1);
                g_assert_cmpstr(((AllocationRecord *) again->pdata[0])->id, ==,
                                ((AllocationRecord *) records->pdata[0])->id);
                g_strfreev(names);
                names = list_dir(path);
                /* The allocation, its owner, meta.json, and the file of
                 * the owner that holds nothing now. */
                g_assert_cmpuint(g_strv_length(names), ==, 4);
                g_assert_cmpint(store_save(path, records_of(records), records->len, &error), ==, 0);
        }
        g_clear_pointer(&loaded, g_ptr_array_unref);

        /* Replacing: the new content wins, no leftovers. */
        g_ptr_array_remove_index(records, 1);
        ((AllocationRecord *) records->pdata[0])->state = ALLOCATION_RELEASING;
        g_assert_cmpint(store_save(path, records_of(records), records->len, &error), ==, 0);
        store_forget(path);
        g_assert_cmpint(store_load(path, &loaded, &error), ==, 0);
        assert_records_same(records, loaded);
        g_strfreev(names);
        names = list_dir(path);
        g_assert_cmpuint(g_strv_length(names), ==, 6);
}

static char *owner_file_text(const char *dir, const char *owner) {
        g_autofree char *name = g_strdup_printf("owner-%s.json", owner);
        g_autofree char *p = g_build_filename(dir, name, NULL);
        char *text = NULL;

        if (!g_file_get_contents(p, &text, NULL, NULL))
                return NULL;
        return text;
}

/* An owner's file outlives its last allocation (the owner's next Allocate
 * writes one file), binds nothing on load, is rewritten when another uid
 * takes the name, and more than 64 such files are all removed. */
static void test_owner_file_outlives(void) {
        g_autofree char *dir = make_case_dir();
        g_autofree char *path = g_build_filename(dir, "state", NULL);
        g_autoptr(GPtrArray) one = g_ptr_array_new_with_free_func((GDestroyNotify) allocation_record_free);
        g_autoptr(GPtrArray) none = g_ptr_array_new();
        g_autoptr(GPtrArray) many = g_ptr_array_new_with_free_func((GDestroyNotify) allocation_record_free);
        g_autoptr(GError) error = NULL;
        AllocationRecord *r = record_new("a", 4 * GiB, 2 * MiB);
        StoreState empty = { .allocations = none }, st = { .allocations = one }, lots = { .allocations = many };
        StoreState loaded;
        char *text;

        g_free(r->owner);
        r->owner = g_strdup("vm7");
        r->owner_uid = 5;
        g_ptr_array_add(one, r);
        g_assert_cmpint(store_save_state(path, &st, STORE_SAVE_DURABLE, &error), ==, 0);
        g_assert_cmpint(store_save_state(path, &empty, STORE_SAVE_DURABLE, &error), ==, 0);
        g_assert_no_error(error);
        text = owner_file_text(path, "vm7");
        g_assert_cmpstr(text, ==, "{\"owner\": \"vm7\", \"uid\": 5}\n");
        g_free(text);
        store_forget(path);
        g_assert_cmpint(store_load_state(path, &loaded, &error), ==, 0);
        g_assert_no_error(error);
        g_assert_cmpuint(loaded.allocations->len, ==, 0);
        g_assert_cmpuint(g_hash_table_size(loaded.owners), ==, 0);
        store_state_clear(&loaded);

        /* Another uid takes the name: its file says so before any load. */
        r->owner_uid = 9;
        g_assert_cmpint(store_save_state(path, &st, STORE_SAVE_DURABLE, &error), ==, 0);
        text = owner_file_text(path, "vm7");
        g_assert_cmpstr(text, ==, "{\"owner\": \"vm7\", \"uid\": 9}\n");
        g_free(text);
        store_forget(path);
        g_assert_cmpint(store_load_state(path, &loaded, &error), ==, 0);
        g_assert_cmpuint(GPOINTER_TO_UINT(g_hash_table_lookup(loaded.owners, "vm7")), ==, 9);
        store_state_clear(&loaded);

        /* Once more than 64 owners hold nothing, all their files go. */
        for (unsigned i = 0; i < 65; i++) {
                g_autofree char *id = g_strdup_printf("m%u", i);
                AllocationRecord *m = record_new(id, 4 * GiB + i * 2 * MiB, 2 * MiB);

                g_free(m->owner);
                m->owner = g_strdup_printf("o%u", i);
                g_ptr_array_add(many, m);
        }
        g_assert_cmpint(store_save_state(path, &lots, STORE_SAVE_DURABLE, &error), ==, 0);
        /* 63 of them and vm7 hold nothing: 64 files are kept. */
        g_ptr_array_set_size(many, 2);
        g_assert_cmpint(store_save_state(path, &lots, STORE_SAVE_DURABLE, &error), ==, 0);
        text = owner_file_text(path, "o64");
        g_assert_nonnull(text);
        g_free(text);
        g_ptr_array_set_size(many, 0);
        g_assert_cmpint(store_save_state(path, &empty, STORE_SAVE_DURABLE, &error), ==, 0);
        g_assert_no_error(error);
        text = owner_file_text(path, "o0");
        g_assert_null(text);
        text = owner_file_text(path, "vm7");
        g_assert_null(text);
}

static bool file_says(const char *dir, const char *id, const char *fragment) {
        g_autofree char *name = g_strdup_printf("allocation-%s.json", id);
        g_autofree char *text = read_text(dir, name);

        return strstr(text, fragment) != NULL;
}

/* The text json-glib's builder and generator make of a record: what
 * files written before the store wrote records by hand hold. */
static char *json_glib_text(const AllocationRecord *r) {
        g_autoptr(JsonBuilder) b = json_builder_new_immutable();
        g_autoptr(JsonGenerator) gen = json_generator_new();
        g_autoptr(JsonNode) root = NULL;
        const struct { const char *name; const char *value; bool always; } strings[] = {
                { "id", r->id, true }, { "owner", r->owner, true },
        };

        json_builder_begin_object(b);
        for (unsigned i = 0; i < G_N_ELEMENTS(strings); i++) {
                json_builder_set_member_name(b, strings[i].name);
                json_builder_add_string_value(b, strings[i].value);
        }
        json_builder_set_member_name(b, "owner_uid");
        json_builder_add_int_value(b, r->owner_uid);
        json_builder_set_member_name(b, "label");
        r->label ? json_builder_add_string_value(b, r->label) : json_builder_add_null_value(b);
        json_builder_set_member_name(b, "pool");
        json_builder_add_string_value(b, r->pool);
        json_builder_set_member_name(b, "region");
        json_builder_add_int_value(b, r->region_id);
        json_builder_set_member_name(b, "align");
        json_builder_add_int_value(b, (gint64) r->align);
        json_builder_set_member_name(b, "device");
        r->device ? json_builder_add_string_value(b, r->device) : json_builder_add_null_value(b);
        json_builder_set_member_name(b, "created_usec");
        json_builder_add_int_value(b, (gint64) r->created_usec);
        json_builder_set_member_name(b, "transient");
        json_builder_add_boolean_value(b, r->transient);
        json_builder_set_member_name(b, "state");
        json_builder_add_string_value(b, allocation_state_to_string(r->state));
        if (r->client) {
                json_builder_set_member_name(b, "client");
                json_builder_add_string_value(b, r->client);
        }
        if (r->warm) {
                json_builder_set_member_name(b, "warm");
                json_builder_add_boolean_value(b, true);
        }
        if (r->device_uid != (uid_t) -1) {
                json_builder_set_member_name(b, "device_uid");
                json_builder_add_int_value(b, r->device_uid);
        }
        if (r->device_gid != (gid_t) -1) {
                json_builder_set_member_name(b, "device_gid");
                json_builder_add_int_value(b, r->device_gid);
        }
        if (r->colors) {
                json_builder_set_member_name(b, "colors");
                json_builder_begin_array(b);
                for (unsigned k = 0; k < 64; k++)
                        if (r->colors & ((uint64_t) 1 << k))
                                json_builder_add_int_value(b, k);
                json_builder_end_array(b);
                if (r->cache_isolation) {
                        json_builder_set_member_name(b, "cache_isolation");
                        json_builder_add_boolean_value(b, true);
                }
        }
        json_builder_set_member_name(b, "ranges");
        json_builder_begin_array(b);
        for (unsigned k = 0; k < r->n_ranges; k++) {
                json_builder_begin_object(b);
                json_builder_set_member_name(b, "start");
                json_builder_add_int_value(b, (gint64) r->ranges[k].start);
                json_builder_set_member_name(b, "size");
                json_builder_add_int_value(b, (gint64) r->ranges[k].size);
                json_builder_end_object(b);
        }
        json_builder_end_array(b);
        json_builder_end_object(b);
        root = json_builder_get_root(b);
        json_generator_set_root(gen, root);
        return json_generator_to_data(gen, NULL);
}

/* The store writes records by hand, byte for byte as json-glib did, so a
 * directory written before compares equal and is not rewritten; and what
 * it writes parses back to the same record. */
static void test_record_text(void) {
        g_autoptr(GPtrArray) recs = sample_records();
        g_autoptr(GString) every = g_string_new(NULL);
        AllocationRecord *r;

        /* Every ASCII byte but NUL and 0x1f (which json-glib leaves bare,
         * not valid JSON; ours escapes it), and UTF-8 (D-Bus strings are
         * UTF-8). */
        for (unsigned c = 1; c < 128; c++)
                if (c != 0x1f)
                        g_string_append_c(every, (char) c);
        g_string_append(every, "\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
        r = record_new("bytes", 4 * GiB, 2 * MiB);
        r->label = g_strdup(every->str);
        r->client = g_strdup(":1.42");
        r->warm = true;
        r->transient = true;
        r->device_uid = 107;
        r->device_gid = 0;
        r->colors = UINT64_C(0x8000000000000005);
        r->cache_isolation = true;
        g_ptr_array_add(recs, r);
        r = record_new("quotes", 4 * GiB, 2 * MiB);
        g_free(r->owner);
        r->owner = g_strdup("\"o\\w\"n\xc3\xa9r\"");
        r->colors = 2;
        g_ptr_array_add(recs, r);

        for (guint i = 0; i < recs->len; i++) {
                AllocationRecord *x = recs->pdata[i];
                g_autofree char *want = json_glib_text(x);
                g_autoptr(JsonParser) parser = json_parser_new();
                g_autoptr(AllocationRecord) back = NULL;
                g_autoptr(GError) error = NULL;

                g_assert_cmpstr(store_record_text(x), ==, want);
                g_assert_true(json_parser_load_from_data(parser, store_record_text(x), -1, &error));
                (void) store_parse_allocation(json_parser_get_root(parser), i, &back, &error);
                g_assert_no_error(error);
                g_assert_cmpstr(back->label, ==, x->label);
                g_assert_cmpstr(back->owner, ==, x->owner);
                g_assert_cmpuint(back->colors, ==, x->colors);
        }

        /* 0x1f: escaped, so that a strict parser reads it. */
        r = record_new("unit-separator", 4 * GiB, 2 * MiB);
        r->label = g_strdup("a\x1f" "b");
        g_assert_nonnull(strstr(store_record_text(r), "\"label\":\"a\\u001fb\""));
        allocation_record_free(r);
}

/* A partial save writes what it is given and nothing else, removes what
 * is gone, and still refuses memory claimed twice, through the index of
 * records it was not given. */
static void test_partial_save(void) {
        g_autofree char *dir = make_case_dir();
        g_autofree char *path = g_build_filename(dir, "state", NULL);
        g_autoptr(GPtrArray) all = g_ptr_array_new_with_free_func((GDestroyNotify) allocation_record_free);
        g_autoptr(GPtrArray) given = g_ptr_array_new();
        g_autoptr(GPtrArray) gone = g_ptr_array_new();
        g_autoptr(GArray) host = g_array_new(FALSE, FALSE, sizeof(RegionRange));
        g_autoptr(GError) error = NULL;
        StoreState full = { .allocations = all }, part = { .allocations = given, .partial = true, .gone = gone };
        AllocationRecord *r3, *r5, *r8, *twice, *moved;
        StoreState loaded;
        g_auto(GStrv) names = NULL;

        for (unsigned i = 0; i < 10; i++) {
                g_autofree char *id = g_strdup_printf("r%u", i);
                g_ptr_array_add(all, record_new(id, 4 * GiB + i * 64 * MiB, 32 * MiB));
        }
        r3 = all->pdata[3];
        r5 = all->pdata[5];
        r8 = all->pdata[8];

        /* Nothing known of the directory yet: only a whole save will do. */
        g_assert_cmpint(store_save_state(path, &part, STORE_SAVE_DURABLE, &error), ==, -EAGAIN);
        g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
        g_assert_cmpint(store_save_state(path, &full, STORE_SAVE_DURABLE, &error), ==, 0);
        g_assert_no_error(error);

        /* r3 given, r5 changed too but not given: only r3 is written. */
        g_free(r3->label);
        r3->label = g_strdup("new-three");
        g_free(r5->label);
        r5->label = g_strdup("new-five");
        g_ptr_array_add(given, r3);
        g_assert_cmpint(store_save_state(path, &part, STORE_SAVE_DURABLE, &error), ==, 0);
        g_assert_no_error(error);
        g_assert_true(file_says(path, "r3", "new-three"));
        g_assert_false(file_says(path, "r5", "new-five"));
        /* What tests check after each partial save finds r5. */
        g_assert_cmpint(store_save_state(path, &full, STORE_SAVE_CHECK, &error), ==, -EUCLEAN);
        g_assert_nonnull(strstr(error->message, "write allocation-r5.json"));
        g_clear_error(&error);
        g_assert_false(file_says(path, "r5", "new-five"));
        g_assert_cmpint(store_save_state(path, &full, STORE_SAVE_DURABLE, &error), ==, 0);
        g_assert_cmpint(store_save_state(path, &full, STORE_SAVE_CHECK, &error), ==, 0);
        g_assert_no_error(error);
        g_assert_true(file_says(path, "r5", "new-five"));

        /* A new record on r1's memory, r1 not given: refused, nothing written. */
        g_ptr_array_set_size(given, 0);
        twice = record_new("twice", 4 * GiB + 64 * MiB + 16 * MiB, 2 * MiB);
        g_ptr_array_add(given, twice);
        g_assert_cmpint(store_save_state(path, &part, STORE_SAVE_DURABLE, &error), ==, -EINVAL);
        g_assert_nonnull(strstr(error->message, "overlaps allocation 'r1'"));
        g_clear_error(&error);
        /* Reaching into r1 from below, and into r2's start. */
        twice->ranges[0] = (DaxRange) { 4 * GiB + 32 * MiB, 34 * MiB };
        g_assert_cmpint(store_save_state(path, &part, STORE_SAVE_DURABLE, &error), ==, -EINVAL);
        g_assert_nonnull(strstr(error->message, "overlaps allocation 'r1'"));
        g_clear_error(&error);
        twice->ranges[0] = (DaxRange) { 4 * GiB + 96 * MiB, 34 * MiB };
        g_assert_cmpint(store_save_state(path, &part, STORE_SAVE_DURABLE, &error), ==, -EINVAL);
        g_assert_nonnull(strstr(error->message, "overlaps allocation 'r2'"));
        g_clear_error(&error);
        /* In the gap between r1 and r2: fine. */
        twice->ranges[0] = (DaxRange) { 4 * GiB + 96 * MiB, 32 * MiB };
        g_assert_cmpint(store_save_state(path, &part, STORE_SAVE_DURABLE, &error), ==, 0);
        g_assert_no_error(error);
        g_ptr_array_add(all, twice);

        /* r8 goes and a new record takes its memory, in one save. */
        g_ptr_array_set_size(given, 0);
        moved = record_new("moved", r8->ranges[0].start, r8->ranges[0].size);
        g_ptr_array_add(gone, (char *) "r8");
        g_ptr_array_add(given, moved);
        g_assert_cmpint(store_save_state(path, &part, STORE_SAVE_DURABLE, &error), ==, 0);
        g_assert_no_error(error);
        g_ptr_array_remove(all, r8);
        g_ptr_array_add(all, moved);
        g_assert_cmpint(store_save_state(path, &full, STORE_SAVE_CHECK, &error), ==, 0);
        g_assert_no_error(error);
        names = list_dir(path);
        g_assert_false(g_strv_contains((const char *const *) names, "allocation-r8.json"));
        g_assert_true(g_strv_contains((const char *const *) names, "allocation-moved.json"));

        /* A host chunk is checked against every record: not partially. */
        g_ptr_array_set_size(given, 0);
        g_ptr_array_set_size(gone, 0);
        g_array_append_val(host, ((RegionRange) { 0, 6 * GiB, 1 * GiB }));
        part.host = host;
        g_assert_cmpint(store_save_state(path, &part, STORE_SAVE_DURABLE, &error), ==, -EAGAIN);
        g_assert_no_error(error);

        store_forget(path);
        g_assert_cmpint(store_load_state(path, &loaded, &error), ==, 0);
        g_assert_no_error(error);
        g_assert_cmpuint(loaded.allocations->len, ==, all->len);
        g_assert_cmpuint(loaded.host->len, ==, 0);
        store_state_clear(&loaded);
}

static void test_save_failures(void) {
        g_autofree char *dir = make_case_dir();
        g_autofree char *path = g_build_filename(dir, "state", NULL);
        g_autofree char *blocker = g_build_filename(path, "allocation-vm1-0.json", NULL);
        g_autofree char *missing = g_build_filename(dir, "no-such-dir", "state", NULL);
        g_autoptr(GPtrArray) records = sample_records();
        g_autoptr(GError) error = NULL;
        g_auto(GStrv) names = NULL;

        /* rename() over a directory fails after the temp file was written:
         * the temp file must go. */
        g_assert_cmpint(store_save(path, records_of(records), records->len, &error), ==, 0);
        g_assert_cmpint(g_unlink(blocker), ==, 0);
        g_assert_cmpint(g_mkdir(blocker, 0700), ==, 0);
        ((AllocationRecord *) records->pdata[0])->state = ALLOCATION_RELEASING;
        g_assert_cmpint(store_save(path, records_of(records), records->len, &error), ==, -EISDIR);
        g_assert_error(error, G_FILE_ERROR, G_FILE_ERROR_ISDIR);
        g_assert_nonnull(strstr(error->message, "rename"));
        g_clear_error(&error);
        names = list_dir(path);
        for (char **n = names; *n; n++)
                g_assert_false(g_str_has_prefix(*n, ".tmp-"));
        g_assert_cmpint(g_rmdir(blocker), ==, 0);

        g_assert_cmpint(store_save(missing, records_of(records), records->len, &error), ==, -ENOENT);
        g_assert_error(error, G_FILE_ERROR, G_FILE_ERROR_NOENT);
}

static void test_save_refuses_invalid(void) {
        g_autofree char *dir = make_case_dir();
        g_autofree char *path = g_build_filename(dir, "state", NULL);
        g_autoptr(GPtrArray) records = sample_records();
        g_autoptr(GPtrArray) loaded = NULL;
        g_autoptr(GError) error = NULL;
        g_autofree char *before = NULL, *after = NULL;
        AllocationRecord *r;

        g_assert_cmpint(store_save(path, records_of(records), records->len, &error), ==, 0);
        before = read_text(path, "allocation-vm1-0.json");

        /* Never write what could not be read back: the old files stay. */
        r = records->pdata[0];
        g_free(r->label);
        r->label = g_strdup("");
        g_assert_cmpint(store_save(path, records_of(records), records->len, &error), ==, -EINVAL);
        g_assert_nonnull(strstr(error->message, "allocation 0 (id 'vm1-0'): label: must not be empty"));
        g_clear_error(&error);

        g_free(r->label);
        r->label = NULL;
        r->ranges[0].start += 4 * KiB;
        g_assert_cmpint(store_save(path, records_of(records), records->len, &error), ==, -EINVAL);
        g_assert_nonnull(strstr(error->message, "ranges[0].start"));
        g_clear_error(&error);

        r->ranges[0].start -= 4 * KiB;
        r->n_ranges = 0;
        g_assert_cmpint(store_save(path, records_of(records), records->len, &error), ==, -EINVAL);
        g_clear_error(&error);

        r->n_ranges = DAX_RANGES_MAX + 1;
        g_assert_cmpint(store_save(path, records_of(records), records->len, &error), ==, -EINVAL);
        g_clear_error(&error);

        r->n_ranges = 1;
        r->owner_uid = (uid_t) -1;
        g_assert_cmpint(store_save(path, records_of(records), records->len, &error), ==, -EINVAL);
        g_clear_error(&error);

        r->owner_uid = 0;
        r->state = (AllocationState) 7;
        g_assert_cmpint(store_save(path, records_of(records), records->len, &error), ==, -EINVAL);
        g_clear_error(&error);

        r->state = ALLOCATION_ACTIVE;
        r->created_usec = UINT64_MAX;
        g_assert_cmpint(store_save(path, records_of(records), records->len, &error), ==, -EINVAL);
        g_clear_error(&error);

        /* Would come back negative from json-glib's gint64. */
        r->created_usec = 0;
        r->ranges[0].start = UINT64_C(1) << 63;
        g_assert_cmpint(store_save(path, records_of(records), records->len, &error), ==, -EINVAL);
        g_assert_nonnull(strstr(error->message, "ranges[0].start: must be below 2^63"));
        g_clear_error(&error);

        after = read_text(path, "allocation-vm1-0.json");
        g_assert_cmpstr(before, ==, after);
        store_forget(path);
        g_assert_cmpint(store_load(path, &loaded, &error), ==, 0);
        g_assert_cmpuint(loaded->len, ==, records->len);
}

/* Saves the sample, corrupts one thing, loads with the start-up's rules:
 * exactly the named files are set aside, byte for byte, the rest loads. */
static void bad_case(const char *file, const char *text, const char *fragment, const char *const *gone,
                     const char *const *kept_ids) {
        g_autofree char *dir = make_case_dir();
        g_autofree char *path = g_build_filename(dir, "state", NULL);
        g_autoptr(GPtrArray) records = sample_records();
        g_autoptr(GError) error = NULL;
        g_autofree char *aside = NULL, *reason = NULL;
        g_autoptr(GArray) host = g_array_new(FALSE, FALSE, sizeof(RegionRange));
        StoreState st = { .allocations = records, .host = host, .boot_id = (char *) "b007" }, loaded;
        RegionRange h = { 0, 40 * GiB, GiB };
        g_auto(GStrv) names = NULL;
        unsigned n_kept = 0, n_aside = 0;

        g_array_append_val(host, h);
        g_assert_cmpint(store_save_state(path, &st, STORE_SAVE_DURABLE, &error), ==, 0);
        if (text)
                write_text(path, file, text);
        store_forget(path);
        g_assert_cmpint(store_load_state_or_set_aside(path, NULL, 0, &loaded, &aside, &reason, &error), ==, 1);
        g_assert_no_error(error);
        g_test_message("set aside %s: %s", aside, reason);
        g_assert_nonnull(strstr(reason, fragment));
        g_assert_null(loaded.boot_id);
        for (const char *const *g = gone; *g; g++) {
                g_autofree char *p = g_build_filename(path, *g, NULL);
                g_autofree char *prefix = g_strconcat(*g, ".corrupt-", NULL);
                g_assert_false(g_file_test(p, G_FILE_TEST_EXISTS));
                g_assert_nonnull(strstr(aside, prefix));
                g_assert_nonnull(strstr(reason, p));
                n_aside++;
        }
        names = list_dir(path);
        for (char **n = names; *n; n++)
                if (strstr(*n, ".corrupt-")) {
                        n_aside--;
                        if (text && g_str_has_prefix(*n, file)) {
                                g_autofree char *kept = read_text(path, *n);
                                g_assert_cmpstr(kept, ==, text);
                        }
                }
        g_assert_cmpuint(n_aside, ==, 0);
        for (const char *const *k = kept_ids; *k; k++)
                for (guint i = 0; i < loaded.allocations->len; i++)
                        n_kept += strcmp(((AllocationRecord *) loaded.allocations->pdata[i])->id, *k) == 0;
        g_assert_cmpuint(n_kept, ==, g_strv_length((char **) kept_ids));
        g_assert_cmpuint(loaded.allocations->len, ==, n_kept);
        store_state_clear(&loaded);
}

static void test_load_sets_aside_bad_records(void) {
        const char *const vm1[] = { "allocation-vm1-0.json", NULL };
        const char *const others[] = { "vm2_0", "x", "max-ranges", NULL };
        const char *const all[] = { "vm1-0", "vm2_0", "x", "max-ranges", NULL };
        g_autofree char *overlap = allocation_json("id", "\"vm2_0\"", "region", "0", "device", "null", "ranges",
                                                   "[{\"start\": 4294967296, \"size\": 2097152}]", NULL);
        g_autofree char *over_host = allocation_json("id", "\"vm2_0\"", "region", "0", "device", "null", "ranges",
                                                     "[{\"start\": 42949672960, \"size\": 2097152}]", NULL);
        const char *const both[] = { "allocation-vm1-0.json", "allocation-vm2_0.json", NULL };
        const char *const with_host[] = { "allocation-vm2_0.json", "host-0-0xa00000000.json", NULL };
        const char *const meta[] = { "meta.json", NULL };
        const char *const stray[] = { "notes.txt", NULL };
        const char *const not_vm2[] = { "vm1-0", "x", "max-ranges", NULL };
        const char *const neither[] = { "x", "max-ranges", NULL };

        bad_case("allocation-vm1-0.json", "{\"id\":\"vm1-0\",", "Parse error", vm1, others);
        bad_case("allocation-vm1-0.json", "", "top level must be an object", vm1, others);
        bad_case("allocation-vm1-0.json", "{\"id\": \"other\"}", "owner: is missing", vm1, others);
        bad_case("allocation-vm1-0.json", "[1]", "top level must be an object", vm1, others);
        /* A record in the wrong file is not trusted either. */
        {
                g_autofree char *a = allocation_json("id", "\"zz\"", NULL);
                bad_case("allocation-vm1-0.json", a, "holds allocation 'zz', whose file is allocation-zz.json", vm1,
                         others);
        }
        /* Two claims on the same memory: neither is believed. */
        bad_case("allocation-vm2_0.json", overlap, "overlaps the memory of", both, neither);
        bad_case("allocation-vm2_0.json", over_host, "overlaps the memory of", with_host, not_vm2);
        bad_case("meta.json", "{\"version\": 99}", "version: unsupported version 99", meta, all);
        bad_case("host-0-0xa00000000.json", "{\"region\": 0, \"start\": 42949672960, \"size\": 1}",
                 "whole 2 MiB units", (const char *const[]) { "host-0-0xa00000000.json", NULL }, all);
        bad_case("notes.txt", "hello", "not a file of the state directory", stray, all);
}

/* The regions the daemon manages bound every range. */
static void test_load_checks_regions(void) {
        g_autofree char *dir = make_case_dir();
        g_autofree char *path = g_build_filename(dir, "state", NULL);
        g_autoptr(GPtrArray) records = sample_records();
        g_autoptr(GError) error = NULL;
        g_autofree char *aside = NULL, *reason = NULL;
        StoreState loaded;
        const RegionRange regions[] = { { 0, 4 * GiB, 4 * GiB } };

        g_assert_cmpint(store_save(path, records_of(records), records->len, &error), ==, 0);
        store_forget(path);
        g_assert_cmpint(store_load_state_or_set_aside(path, regions, 1, &loaded, &aside, &reason, &error), ==, 1);
        /* vm2_0 and max-ranges reach beyond 8 GiB; region 12 is not managed. */
        g_assert_nonnull(strstr(reason, "allocation-vm2_0.json: ranges[0]: [0x200000000, +0x40000000) lies outside region 0"));
        g_assert_nonnull(strstr(reason, "allocation-max-ranges.json"));
        g_assert_cmpuint(loaded.allocations->len, ==, 2);
        store_state_clear(&loaded);
}

static void write_legacy(const char *dir, GPtrArray *records, const char *boot_id, int version) {
        g_autoptr(GArray) dirty = g_array_new(FALSE, FALSE, sizeof(RegionRange));
        StoreState st = { .allocations = records, .dirty = dirty, .boot_id = (char *) boot_id };
        RegionRange d = { 0, 30 * GiB, 4 * MiB };
        g_autofree char *text = NULL;

        g_array_append_val(dirty, d);
        text = store_state_to_data(&st);
        if (version == 1) {
                /* Version 1 had no owner table. */
                char *owners = strstr(text, ",\n\"owners\"");
                char *end = strstr(owners, "\n}");
                memmove(owners, end + 2, strlen(end + 2) + 1);
                memcpy(strstr(text, "\"version\": 2"), "\"version\": 1", 12);
        }
        write_text(dir, "state.json", text);
}

/* state.json of an earlier release becomes the directory, and a crash at
 * any step of that loses nothing: the child dies there, the parent loads. */
static void upgrade_case(int version, const char *crash_step) {
        g_autofree char *dir = make_case_dir();
        g_autofree char *path = g_build_filename(dir, "state", NULL);
        g_autofree char *legacy = g_build_filename(dir, "state.json", NULL);
        g_autoptr(GPtrArray) records = sample_records();
        g_autoptr(GError) error = NULL;
        g_autofree char *aside = NULL, *reason = NULL;
        StoreState loaded;
        g_auto(GStrv) names = NULL;

        write_legacy(dir, records, "b007", version);
        if (crash_step) {
                pid_t pid = fork();
                int status;

                g_assert_cmpint(pid, >=, 0);
                if (pid == 0) {
                        StoreState st;
                        store_test_step_crash = crash_step;
                        (void) store_load_state_or_set_aside(path, NULL, 0, &st, &aside, &reason, NULL);
                        _exit(3); /* the step was not reached */
                }
                g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
                g_assert_true(WIFSIGNALED(status));
                g_assert_cmpint(WTERMSIG(status), ==, SIGKILL);
        }
        g_assert_cmpint(store_load_state_or_set_aside(path, NULL, 0, &loaded, &aside, &reason, &error), ==, 0);
        g_assert_no_error(error);
        assert_records_same(records, loaded.allocations);
        g_assert_cmpstr(loaded.boot_id, ==, "b007");
        g_assert_cmpuint(loaded.dirty->len, ==, 1);
        g_assert_cmpuint(g_array_index(loaded.dirty, RegionRange, 0).start, ==, 30 * GiB);
        g_assert_cmpuint(owner_uid_of(&loaded, "vm-web1"), ==, 107);
        g_assert_cmpuint(owner_uid_of(&loaded, "qemu/instance 2"), ==, 0);
        g_assert_false(g_file_test(legacy, G_FILE_TEST_EXISTS));
        names = list_dir(dir);
        g_assert_cmpuint(g_strv_length(names), ==, 1);
        g_assert_cmpstr(names[0], ==, "state");
        store_state_clear(&loaded);
}

static void test_upgrade(void) {
        upgrade_case(2, NULL);
        upgrade_case(1, NULL);
        upgrade_case(2, "upgrade-written");
        upgrade_case(2, "upgrade-renamed");
        upgrade_case(1, "upgrade-written");
}

/* A bad state.json is set aside whole, as before, and never upgraded. */
static void test_upgrade_bad_legacy(void) {
        g_autofree char *dir = make_case_dir();
        g_autofree char *path = g_build_filename(dir, "state", NULL);
        g_autoptr(GError) error = NULL;
        g_autofree char *aside = NULL, *reason = NULL;
        g_autofree char *kept = NULL;
        StoreState loaded;

        write_text(dir, "state.json", "{\"version\": 99, \"allocations\": []}");
        g_assert_cmpint(store_load_state_or_set_aside(path, NULL, 0, &loaded, &aside, &reason, &error), ==, 1);
        g_assert_nonnull(strstr(reason, "state.json: version: unsupported version 99"));
        g_assert_true(g_str_has_prefix(aside, dir));
        g_assert_nonnull(strstr(aside, "/state.json.corrupt-"));
        g_assert_true(g_file_get_contents(aside, &kept, NULL, NULL));
        g_assert_cmpstr(kept, ==, "{\"version\": 99, \"allocations\": []}");
        g_assert_cmpuint(loaded.allocations->len, ==, 0);
        g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
        store_state_clear(&loaded);
}

/* A save cut short between its writes and its removals leaves a state
 * that loads whole: the released allocation is still there (its memory
 * also recorded as dirt), nothing is set aside. */
static void test_save_cut_short(void) {
        g_autofree char *dir = make_case_dir();
        g_autofree char *path = g_build_filename(dir, "state", NULL);
        g_autoptr(GPtrArray) records = sample_records();
        g_autoptr(GArray) dirty = g_array_new(FALSE, FALSE, sizeof(RegionRange));
        g_autoptr(GError) error = NULL;
        g_autofree char *aside = NULL, *reason = NULL;
        StoreState st = { .allocations = records, .dirty = dirty, .boot_id = (char *) "b007" }, loaded;
        RegionRange d = { 0, 4 * GiB, 512 * MiB };
        pid_t pid;
        int status;

        g_assert_cmpint(store_save_state(path, &st, STORE_SAVE_DURABLE, &error), ==, 0);
        pid = fork();
        g_assert_cmpint(pid, >=, 0);
        if (pid == 0) {
                /* vm1-0 released: its memory becomes dirt. */
                g_ptr_array_remove_index(records, 0);
                g_array_append_val(dirty, d);
                store_test_step_crash = "save-written";
                (void) store_save_state(path, &st, STORE_SAVE_DURABLE, NULL);
                _exit(3);
        }
        g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
        g_assert_true(WIFSIGNALED(status));
        store_forget(path);
        g_assert_cmpint(store_load_state_or_set_aside(path, NULL, 0, &loaded, &aside, &reason, &error), ==, 0);
        assert_records_same(records, loaded.allocations);
        g_assert_cmpuint(loaded.dirty->len, ==, 1);
        g_assert_cmpstr(loaded.boot_id, ==, "b007");
        store_state_clear(&loaded);
}

static void test_reject_document(void) {
        g_autoptr(GString) deep = g_string_new("{\"version\": 1, \"allocations\": ");
        g_autofree char *a = allocation_json(NULL, NULL);
        g_autofree char *two = g_strdup_printf("{\"version\": 1, \"allocations\": [%s, 5]}", a);
        g_autofree char *extra = g_strdup_printf("{\"version\": 1, \"allocations\": [%s], \"chunks\": []}", a);

        load_fails("", "");
        load_fails("{", "");
        load_fails("not json", "");
        load_fails("[]", "top level must be an object");
        load_fails("{}", "version: must be an integer");
        load_fails("{\"version\": \"1\", \"allocations\": []}", "version: must be an integer");
        load_fails("{\"version\": 1.0, \"allocations\": []}", "version: must be an integer");
        load_fails("{\"version\": 0, \"allocations\": []}", "version: unsupported version 0");
        load_fails("{\"version\": 3, \"allocations\": []}", "version: unsupported version 3");
        load_fails("{\"version\": 1}", "allocations: must be an array");
        load_fails("{\"version\": 1, \"allocations\": {}}", "allocations: must be an array");
        load_fails(extra, "chunks: unknown member");
        load_fails(two, "allocation 1: allocation: must be an object");

        /* Deep nesting is refused before json-glib's recursive parser
         * can run out of stack. */
        for (unsigned i = 0; i < 200000; i++)
                g_string_append_c(deep, '[');
        load_fails(deep->str, "nested deeper than");
}

static void test_reject_allocation_fields(void) {
        g_autofree char *id65 = g_strnfill(65, 'i'), *owner256 = g_strnfill(256, 'o'), *pool64 = g_strnfill(64, 'p');
        g_autofree char *long_id = g_strdup_printf("\"%s\"", id65);
        g_autofree char *long_owner = g_strdup_printf("\"%s\"", owner256);
        g_autofree char *long_pool = g_strdup_printf("\"%s\"", pool64);
        g_autoptr(GString) many = g_string_new("[");
        static const char *const cases[][3] = {
                { "id", NULL, "allocation 0: id: is missing" },
                { "id", "\"\"", "allocation 0: id: must be 1 to 64 characters" },
                { "id", "\"a b\"", "allocation 0: id: must be 1 to 64 characters" },
                { "id", "\"a/b\"", "allocation 0: id: must be 1 to 64 characters" },
                { "id", "7", "allocation 0: id: must be a string" },
                { "id", "null", "allocation 0: id: must be a string" },
                { "owner", NULL, "allocation 0 (id 'a'): owner: is missing" },
                { "owner", "\"\"", "allocation 0 (id 'a'): owner: must not be empty" },
                { "owner", "\"a\\u0001b\"", "allocation 0 (id 'a'): owner: contains control characters" },
                { "owner", "null", "allocation 0 (id 'a'): owner: must be a string" },
                { "owner_uid", "-1", "allocation 0 (id 'a'): owner_uid: must be between 0 and" },
                { "owner_uid", "4294967295", "allocation 0 (id 'a'): owner_uid: must not be" },
                { "owner_uid", "4294967296", "allocation 0 (id 'a'): owner_uid: must be between" },
                { "owner_uid", "\"0\"", "allocation 0 (id 'a'): owner_uid: must be an integer" },
                { "owner_uid", "1.5", "allocation 0 (id 'a'): owner_uid: must be an integer" },
                { "label", "\"\"", "allocation 0 (id 'a'): label: must not be empty" },
                { "label", "\"tab\\there\"", "allocation 0 (id 'a'): label: contains control characters" },
                { "label", "3", "allocation 0 (id 'a'): label: must be a string or null" },
                { "label", NULL, "allocation 0 (id 'a'): label: is missing" },
                { "pool", "\"a.b\"", "allocation 0 (id 'a'): pool: must be 1 to 63 characters" },
                { "pool", "\"\"", "allocation 0 (id 'a'): pool: must be 1 to 63 characters" },
                { "pool", "null", "allocation 0 (id 'a'): pool: must be a string" },
                { "region", "-1", "allocation 0 (id 'a'): region: must be between 0 and 4294967295" },
                { "region", "4294967296", "allocation 0 (id 'a'): region: must be between" },
                { "region", "true", "allocation 0 (id 'a'): region: must be an integer" },
                { "align", "8192", "allocation 0 (id 'a'): align: must be 4096, 2097152 or 1073741824" },
                { "align", "0", "allocation 0 (id 'a'): align: must be 4096" },
                { "align", "-2097152", "allocation 0 (id 'a'): align: must be between" },
                { "device", "\"dax1.0\"", "allocation 0 (id 'a'): device: must be a device name daxR.N of region 0" },
                { "device", "\"foo\"", "allocation 0 (id 'a'): device: must be a device name" },
                { "device", "\"dax0\"", "allocation 0 (id 'a'): device: must be a device name" },
                { "device", "\"dax0.\"", "allocation 0 (id 'a'): device: must be a device name" },
                { "device", "\"dax0.1x\"", "allocation 0 (id 'a'): device: must be a device name" },
                { "device", "\"dax0.1/../../x\"", "allocation 0 (id 'a'): device: must be a device name" },
                { "device", "\"dax0.99999999999999999999\"", "allocation 0 (id 'a'): device: must be a device name" },
                { "device", "\"\"", "allocation 0 (id 'a'): device: must be a device name" },
                { "device", "5", "allocation 0 (id 'a'): device: must be a string or null" },
                { "created_usec", "-5", "allocation 0 (id 'a'): created_usec: must be between" },
                { "created_usec", "\"now\"", "allocation 0 (id 'a'): created_usec: must be an integer" },
                { "transient", "1", "allocation 0 (id 'a'): transient: must be true or false" },
                { "transient", "\"true\"", "allocation 0 (id 'a'): transient: must be true or false" },
                { "transient", NULL, "allocation 0 (id 'a'): transient: is missing" },
                { "state", "\"gone\"", "allocation 0 (id 'a'): state: must be \"active\", \"creating\" or \"releasing\" (value 'gone')" },
                { "state", "\"Active\"", "allocation 0 (id 'a'): state: must be" },
                { "state", "0", "allocation 0 (id 'a'): state: must be a string" },
                { "ranges", NULL, "allocation 0 (id 'a'): ranges: is missing" },
                { "ranges", "{}", "allocation 0 (id 'a'): ranges: must be an array" },
                { "ranges", "[]", "allocation 0 (id 'a'): ranges: must hold 1 to 64 ranges (has 0)" },
                { "ranges", "[5]", "allocation 0 (id 'a'): ranges[0]: must be an object" },
                { "ranges", "[{\"start\": 4294967296}]", "allocation 0 (id 'a'): ranges[0]: must have exactly the members start and size" },
                { "ranges", "[{\"start\": 4294967296, \"size\": 2097152, \"node\": 0}]", "allocation 0 (id 'a'): ranges[0]: must have exactly" },
                { "ranges", "[{\"begin\": 4294967296, \"size\": 2097152}]", "allocation 0 (id 'a'): ranges[0].start: is missing" },
                { "ranges", "[{\"start\": 4294967296, \"size\": 0}]", "allocation 0 (id 'a'): ranges[0].size: must not be 0" },
                { "ranges", "[{\"start\": 4294967296, \"size\": 4096}]", "allocation 0 (id 'a'): ranges[0].size: must be a multiple of 2 MiB" },
                { "ranges", "[{\"start\": 4096, \"size\": 2097152}]", "allocation 0 (id 'a'): ranges[0].start: must be a multiple of 2 MiB" },
                { "ranges", "[{\"start\": -2097152, \"size\": 2097152}]", "allocation 0 (id 'a'): ranges[0].start: must be between" },
                { "ranges", "[{\"start\": \"4G\", \"size\": 2097152}]", "allocation 0 (id 'a'): ranges[0].start: must be an integer" },
                { "ranges", "[{\"start\": 4294967296, \"size\": 2097152}, {\"start\": 4294967296, \"size\": 4194304}]", "allocation 0 (id 'a'): ranges[1]: overlaps ranges[0]" },
                { "ranges", "[{\"start\": 8589934592, \"size\": 4194304}, {\"start\": 8589934592, \"size\": 2097152}]", "allocation 0 (id 'a'): ranges[1]: overlaps ranges[0]" },
                { "extra", "1", "allocation 0: extra: unknown member" },
        };

        for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
                g_autofree char *a = allocation_json(cases[i][0], cases[i][1], NULL);
                g_autofree char *doc = document(a);

                load_fails(doc, cases[i][2]);
        }

        {
                g_autofree char *a = allocation_json("id", long_id, NULL);
                g_autofree char *doc = document(a);

                load_fails(doc, "allocation 0: id: must be 1 to 64 characters");
        }
        {
                g_autofree char *a = allocation_json("owner", long_owner, NULL);
                g_autofree char *doc = document(a);

                load_fails(doc, "allocation 0 (id 'a'): owner: is longer than 255 bytes");
        }
        {
                g_autofree char *a = allocation_json("pool", long_pool, NULL);
                g_autofree char *doc = document(a);

                load_fails(doc, "allocation 0 (id 'a'): pool: must be 1 to 63 characters");
        }
        {
                g_autofree char *a = NULL, *doc = NULL;

                for (unsigned i = 0; i <= DAX_RANGES_MAX; i++)
                        g_string_append_printf(many, "%s{\"start\": %" G_GUINT64_FORMAT ", \"size\": 2097152}",
                                               i ? ", " : "", 4 * GiB + i * 2 * MiB);
                g_string_append_c(many, ']');
                a = allocation_json("ranges", many->str, NULL);
                doc = document(a);
                load_fails(doc, "allocation 0 (id 'a'): ranges: must hold 1 to 64 ranges (has 65)");
        }
        {
                /* A 1 GiB aligned device maps only whole, aligned gigabytes. */
                g_autofree char *a = allocation_json("align", "1073741824", NULL);
                g_autofree char *doc = document(a);

                load_fails(doc, "allocation 0 (id 'a'): ranges[0].size: must be a multiple of 1 GiB");
        }
}

static void test_reject_across_allocations(void) {
        g_autofree char *a = allocation_json("id", "\"a\"", NULL);
        g_autofree char *dup = allocation_json("id", "\"a\"", "ranges", "[{\"start\": 8589934592, \"size\": 2097152}]", NULL);
        g_autofree char *overlap = allocation_json("id", "\"b\"", "ranges",
                                                   "[{\"start\": 8589934592, \"size\": 2097152},"
                                                   " {\"start\": 4292870144, \"size\": 4194304}]", NULL);
        g_autofree char *adjacent = allocation_json("id", "\"b\"", "ranges",
                                                    "[{\"start\": 4297064448, \"size\": 2097152},"
                                                    " {\"start\": 4292870144, \"size\": 2097152}]", NULL);
        g_autofree char *doc_dup = g_strdup_printf("{\"version\": 1, \"allocations\": [%s, %s]}", a, dup);
        g_autofree char *doc_overlap = g_strdup_printf("{\"version\": 1, \"allocations\": [%s, %s]}", a, overlap);
        g_autofree char *doc_adjacent = g_strdup_printf("{\"version\": 1, \"allocations\": [%s, %s]}", a, adjacent);
        g_autoptr(GPtrArray) loaded = NULL;
        g_autoptr(GError) error = NULL;

        load_fails(doc_dup, "allocation 1 (id 'a'): id: duplicates allocation 0");
        load_fails(doc_overlap, "allocation 1 (id 'b'): ranges[1]: overlaps ranges[0] of allocation 0 (id 'a')");

        /* Touching is not overlapping. */
        g_assert_cmpint(store_load_data(doc_adjacent, strlen(doc_adjacent), &loaded, &error), ==, 0);
        g_assert_no_error(error);
        g_assert_cmpuint(loaded->len, ==, 2);
}

static void test_accept_nulls(void) {
        g_autofree char *a = allocation_json("label", "null", "device", "null", "state", "\"creating\"", NULL);
        g_autofree char *doc = document(a);
        g_autoptr(GPtrArray) loaded = NULL;
        g_autoptr(GError) error = NULL;
        const AllocationRecord *r;

        g_assert_cmpint(store_load_data(doc, strlen(doc), &loaded, &error), ==, 0);
        g_assert_no_error(error);
        r = loaded->pdata[0];
        g_assert_null(r->label);
        g_assert_null(r->device);
        g_assert_cmpint(r->state, ==, ALLOCATION_CREATING);
        g_assert_cmpuint(r->ranges[0].start, ==, 4 * GiB);
        g_assert_cmpuint(r->ranges[0].size, ==, 2 * MiB);
}

int main(int argc, char **argv) {
        int r;

        g_test_init(&argc, &argv, NULL);

        store_test_step = crash_here;
        test_dir = g_dir_make_tmp("test-store-XXXXXX", NULL);
        g_assert_nonnull(test_dir);

        g_test_add_func("/store/state-names", test_state_names);
        g_test_add_func("/store/colors", test_colors);
        g_test_add_func("/store/owners-upgrade", test_owners_upgrade);
        g_test_add_func("/store/owners-rejected", test_owners_rejected);
        g_test_add_func("/store/round-trip-data", test_round_trip_data);
        g_test_add_func("/store/state-extras", test_state_extras);
        g_test_add_func("/store/format-on-disk", test_format_on_disk);
        g_test_add_func("/store/empty", test_empty);
        g_test_add_func("/store/load-missing", test_load_missing);
        g_test_add_func("/store/save-and-load", test_save_and_load);
        g_test_add_func("/store/owner-file-outlives", test_owner_file_outlives);
        g_test_add_func("/store/record-text", test_record_text);
        g_test_add_func("/store/partial-save", test_partial_save);
        g_test_add_func("/store/save-failures", test_save_failures);
        g_test_add_func("/store/save-refuses-invalid", test_save_refuses_invalid);
        g_test_add_func("/store/load-sets-aside-bad-records", test_load_sets_aside_bad_records);
        g_test_add_func("/store/load-checks-regions", test_load_checks_regions);
        g_test_add_func("/store/upgrade", test_upgrade);
        g_test_add_func("/store/upgrade-bad-legacy", test_upgrade_bad_legacy);
        g_test_add_func("/store/save-cut-short", test_save_cut_short);
        g_test_add_func("/store/reject-document", test_reject_document);
        g_test_add_func("/store/reject-allocation-fields", test_reject_allocation_fields);
        g_test_add_func("/store/reject-across-allocations", test_reject_across_allocations);
        g_test_add_func("/store/accept-nulls", test_accept_nulls);

        r = g_test_run();

        rm_rf(test_dir);
        g_free(test_dir);
        return r;
}
