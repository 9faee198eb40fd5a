/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What reaches the disk when the state is saved: the store's write, fsync,
 * rename and unlink calls are wrapped at link time (-Wl,--wrap), so the
 * test sees the real calls, their order and their bytes without a power
 * cut. It also shows that a save costs the same with 1 and with 500 live
 * allocations: the same calls and the same bytes (a ratio of counts, not a
 * time).
 */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store.h"
#include "util.h"

int __real_fsync(int fd);
int __wrap_fsync(int fd);
int __real_rename(const char *from, const char *to);
int __wrap_rename(const char *from, const char *to);
int __real_unlink(const char *path);
int __wrap_unlink(const char *path);
ssize_t __real_write(int fd, const void *buf, size_t n);
ssize_t __wrap_write(int fd, const void *buf, size_t n);

static unsigned file_fsyncs, dir_fsyncs, renames, unlinks, writes;
static uint64_t bytes;
static bool file_fsynced_before_rename = true;
static unsigned fsyncs_at_rename;

int __wrap_fsync(int fd) {
        struct stat st;

        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
                file_fsyncs++;
        else
                dir_fsyncs++;
        return __real_fsync(fd);
}

int __wrap_rename(const char *from, const char *to) {
        /* Every rename follows an fsync of the file it renames. */
        if (file_fsyncs <= fsyncs_at_rename)
                file_fsynced_before_rename = false;
        fsyncs_at_rename = file_fsyncs;
        renames++;
        return __real_rename(from, to);
}

int __wrap_unlink(const char *path) {
        unlinks++;
        return __real_unlink(path);
}

ssize_t __wrap_write(int fd, const void *buf, size_t n) {
        ssize_t k = __real_write(fd, buf, n);

        writes++;
        if (k > 0)
                bytes += (uint64_t) k;
        return k;
}

static void reset(void) {
        file_fsyncs = dir_fsyncs = renames = unlinks = writes = 0;
        fsyncs_at_rename = 0;
        bytes = 0;
        file_fsynced_before_rename = true;
}

static AllocationRecord *record_new(unsigned n) {
        AllocationRecord *r = allocation_record_new();

        r->id = g_strdup_printf("%016x", n);
        r->owner = g_strdup_printf("vm-%06u", n);
        r->owner_uid = 107;
        r->label = g_strdup(r->id);
        r->pool = g_strdup("fast");
        r->region_id = 0;
        r->align = 2 * MiB;
        r->device = g_strdup_printf("dax0.%u", n + 1);
        r->created_usec = 1;
        r->n_ranges = 1;
        r->ranges[0] = (DaxRange) { 4 * GiB + (uint64_t) n * GiB, GiB };
        return r;
}

typedef struct Fixture {
        char *tmp, *dir;
        GPtrArray *recs;
        GArray *dirty, *host;
        StoreState st;
} Fixture;

static void fixture_init(Fixture *f) {
        f->tmp = g_dir_make_tmp("daxbroker-durable-XXXXXX", NULL);
        f->dir = g_build_filename(f->tmp, "state", NULL);
        f->recs = g_ptr_array_new_with_free_func((GDestroyNotify) allocation_record_free);
        f->dirty = g_array_new(FALSE, FALSE, sizeof(RegionRange));
        f->host = g_array_new(FALSE, FALSE, sizeof(RegionRange));
        f->st = (StoreState) { .allocations = f->recs, .dirty = f->dirty, .host = f->host };
}

static void fixture_clear(Fixture *f) {
        g_autoptr(GDir) d = g_dir_open(f->dir, 0, NULL);
        const char *name;

        while (d && (name = g_dir_read_name(d))) {
                g_autofree char *p = g_build_filename(f->dir, name, NULL);
                __real_unlink(p);
        }
        g_rmdir(f->dir);
        g_rmdir(f->tmp);
        store_forget(f->dir);
        g_ptr_array_unref(f->recs);
        g_array_unref(f->dirty);
        g_array_unref(f->host);
        g_free(f->dir);
        g_free(f->tmp);
}

static void save_ok(Fixture *f, StoreSaveFlags flags) {
        g_autoptr(GError) error = NULL;

        g_assert_cmpint(store_save_state(f->dir, &f->st, flags, &error), ==, 0);
        g_assert_no_error(error);
}

/* A record of work about to start (not durable) that replaces a file
 * still never leaves an empty one: the data is on disk before the rename
 * can be. */
static void test_not_durable_fsyncs_file(void) {
        Fixture f;

        fixture_init(&f);
        g_ptr_array_add(f.recs, record_new(0));
        save_ok(&f, STORE_SAVE_DURABLE);
        ((AllocationRecord *) f.recs->pdata[0])->state = ALLOCATION_RELEASING;
        reset();
        save_ok(&f, 0);
        g_assert_cmpuint(renames, ==, 1);
        g_assert_true(file_fsynced_before_rename);
        g_assert_cmpuint(dir_fsyncs, ==, 0);
        fixture_clear(&f);
}

/* An Allocate's "creating" record replaces no file: it is written without
 * an fsync, since a power cut ends the kernel work it records. Anything
 * else in the same save (dirt taken off the list, a new owner) keeps it. */
static void test_creating_record_not_fsynced(void) {
        g_autoptr(GError) error = NULL;
        g_autofree char *set_aside = NULL, *reason = NULL, *empty = NULL;
        AllocationRecord *r;
        RegionRange d;
        StoreState loaded;
        Fixture f;

        fixture_init(&f);
        g_ptr_array_add(f.recs, record_new(0));
        save_ok(&f, STORE_SAVE_DURABLE);

        r = record_new(1);
        g_free(r->owner);
        r->owner = g_strdup("vm-000000"); /* its owner file is there */
        g_clear_pointer(&r->device, g_free);
        r->state = ALLOCATION_CREATING;
        g_ptr_array_add(f.recs, r);
        reset();
        save_ok(&f, 0);
        g_assert_cmpuint(renames, ==, 1);
        g_assert_cmpuint(file_fsyncs + dir_fsyncs, ==, 0);

        /* Made: durable, the file before its rename, then the directory. */
        r->device = g_strdup("dax0.2");
        r->state = ALLOCATION_ACTIVE;
        reset();
        save_ok(&f, STORE_SAVE_DURABLE);
        g_assert_cmpuint(renames, ==, 1);
        g_assert_true(file_fsynced_before_rename);
        g_assert_cmpuint(dir_fsyncs, ==, 1);

        /* A new record over dirt: the dirt's file is rewritten, so every
         * file is fsync'ed before its rename. */
        d = (RegionRange) { 0, 8 * GiB, 4 * GiB };
        g_array_append_val(f.dirty, d);
        save_ok(&f, STORE_SAVE_DURABLE);
        r = record_new(4);
        g_free(r->owner);
        r->owner = g_strdup("vm-000000");
        g_clear_pointer(&r->device, g_free);
        r->state = ALLOCATION_CREATING;
        g_ptr_array_add(f.recs, r);
        g_array_index(f.dirty, RegionRange, 0) = (RegionRange) { 0, 9 * GiB, 3 * GiB };
        reset();
        save_ok(&f, 0);
        g_assert_cmpuint(renames, >=, 2);
        g_assert_true(file_fsynced_before_rename);

        /* What a power cut may leave of an unsynced record: an empty file.
         * It is set aside; the other records load. */
        empty = g_build_filename(f.dir, "allocation-00000000000000ff.json", NULL);
        g_assert_true(g_file_set_contents(empty, "", 0, NULL));
        store_forget(f.dir);
        g_assert_cmpint(store_load_state_or_set_aside(f.dir, NULL, 0, &loaded, &set_aside, &reason, &error), ==, 1);
        g_assert_no_error(error);
        g_assert_nonnull(strstr(set_aside, "allocation-00000000000000ff.json.corrupt-"));
        g_assert_cmpuint(loaded.allocations->len, ==, 3);
        store_state_clear(&loaded);
        g_assert_false(g_file_test(empty, G_FILE_TEST_EXISTS));
        fixture_clear(&f);
}

static void test_durable_fsyncs_file_and_directory(void) {
        Fixture f;

        fixture_init(&f);
        g_ptr_array_add(f.recs, record_new(0));
        save_ok(&f, STORE_SAVE_DURABLE);
        ((AllocationRecord *) f.recs->pdata[0])->state = ALLOCATION_RELEASING;
        reset();
        save_ok(&f, STORE_SAVE_DURABLE);
        g_assert_cmpuint(renames, ==, 1);
        g_assert_true(file_fsynced_before_rename);
        g_assert_cmpuint(dir_fsyncs, ==, 1);

        /* A durable save after a non-durable one makes the earlier rename
         * durable too, even when it changes nothing itself. */
        ((AllocationRecord *) f.recs->pdata[0])->state = ALLOCATION_ACTIVE;
        save_ok(&f, 0);
        reset();
        save_ok(&f, STORE_SAVE_DURABLE);
        g_assert_cmpuint(renames, ==, 0);
        g_assert_cmpuint(dir_fsyncs, ==, 1);

        /* Nothing changed, nothing to do. */
        reset();
        save_ok(&f, STORE_SAVE_DURABLE);
        g_assert_cmpuint(renames + unlinks + writes + file_fsyncs + dir_fsyncs, ==, 0);
        fixture_clear(&f);
}

/* A host chunk over an allocation is refused when saving, exactly as
 * loading refuses it: a save must never write a state the next start
 * cannot load. The old files stay. */
static void test_save_refuses_what_load_refuses(void) {
        g_autoptr(GError) error = NULL;
        StoreState loaded;
        RegionRange h = { 0, 4 * GiB + GiB / 2, GiB };
        Fixture f;

        fixture_init(&f);
        g_ptr_array_add(f.recs, record_new(0));
        save_ok(&f, STORE_SAVE_DURABLE);

        g_array_append_val(f.host, h);
        reset();
        g_assert_cmpint(store_save_state(f.dir, &f.st, STORE_SAVE_DURABLE, &error), <, 0);
        g_assert_nonnull(error);
        g_assert_nonnull(strstr(error->message, "host 0"));
        g_assert_cmpuint(renames + unlinks + writes, ==, 0);
        g_clear_error(&error);
        store_forget(f.dir);
        g_assert_cmpint(store_load_state(f.dir, &loaded, &error), ==, 0);
        g_assert_cmpuint(loaded.allocations->len, ==, 1);
        g_assert_cmpuint(loaded.host->len, ==, 0);
        store_state_clear(&loaded);
        fixture_clear(&f);
}

typedef struct Cost {
        unsigned calls; /* writes, fsyncs, renames, unlinks */
        uint64_t bytes;
} Cost;

static Cost cost_now(void) {
        return (Cost) { writes + file_fsyncs + dir_fsyncs + renames + unlinks, bytes };
}

/* What the broker saves for one Allocate (record "creating", not durable;
 * then "active", durable) and one Release ("releasing"; then gone, its
 * memory dirty) with live allocations already recorded. */
static Cost operation_cost(unsigned live) {
        AllocationRecord *r;
        RegionRange d;
        Cost c;
        Fixture f;

        fixture_init(&f);
        for (unsigned i = 0; i < live; i++)
                g_ptr_array_add(f.recs, record_new(i));
        save_ok(&f, STORE_SAVE_DURABLE);

        reset();
        r = record_new(live);
        g_free(r->device);
        r->device = NULL;
        r->state = ALLOCATION_CREATING;
        g_ptr_array_add(f.recs, r);
        save_ok(&f, 0);
        r->device = g_strdup_printf("dax0.%u", live + 1);
        r->state = ALLOCATION_ACTIVE;
        save_ok(&f, STORE_SAVE_DURABLE);

        r->state = ALLOCATION_RELEASING;
        save_ok(&f, 0);
        d = (RegionRange) { 0, r->ranges[0].start, r->ranges[0].size };
        g_ptr_array_remove(f.recs, r);
        g_array_append_val(f.dirty, d);
        save_ok(&f, STORE_SAVE_DURABLE);
        c = cost_now();
        g_assert_true(file_fsynced_before_rename);
        fixture_clear(&f);
        return c;
}

static void test_cost_does_not_grow(void) {
        Cost one = operation_cost(1), many = operation_cost(500);
        g_autoptr(GPtrArray) recs = g_ptr_array_new_with_free_func((GDestroyNotify) allocation_record_free);
        g_autofree char *whole = NULL;

        g_test_message("allocate + release: 1 live: %u calls, %" G_GUINT64_FORMAT " bytes; 500 live: %u calls, %"
                       G_GUINT64_FORMAT " bytes", one.calls, one.bytes, many.calls, many.bytes);
        /* For scale: the single file of earlier releases at 500 live. */
        for (unsigned i = 0; i < 500; i++)
                g_ptr_array_add(recs, record_new(i));
        whole = store_to_data((AllocationRecord *const *) recs->pdata, recs->len);
        g_test_message("state.json with 500 allocations was %zu bytes, written twice per operation", strlen(whole));

        g_assert_cmpuint(one.calls, >, 0);
        g_assert_cmpuint(one.bytes, >, 0);
        /* Owner names and devices differ in length by a few bytes at most. */
        g_assert_cmpuint(many.calls, ==, one.calls);
        g_assert_cmpfloat((double) many.bytes / (double) one.bytes, <=, 1.05);
        g_assert_cmpuint(many.bytes, <, strlen(whole));
}

int main(int argc, char **argv) {
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/store-durable/not-durable-fsyncs-file", test_not_durable_fsyncs_file);
        g_test_add_func("/store-durable/creating-record-not-fsynced", test_creating_record_not_fsynced);
        g_test_add_func("/store-durable/durable-fsyncs-file-and-directory", test_durable_fsyncs_file_and_directory);
        g_test_add_func("/store-durable/save-refuses-what-load-refuses", test_save_refuses_what_load_refuses);
        g_test_add_func("/store-durable/cost-does-not-grow", test_cost_does_not_grow);
        return g_test_run();
}
