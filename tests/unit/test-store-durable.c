/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What reaches the disk when state.json is saved: the store's fsync and
 * rename calls are wrapped at link time (-Wl,--wrap), so the test sees the
 * real order of calls without a power cut.
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

static unsigned file_fsyncs, dir_fsyncs;
static bool file_fsynced_before_rename, renamed;

int __wrap_fsync(int fd) {
        struct stat st;

        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
                file_fsyncs++;
        else
                dir_fsyncs++;
        return __real_fsync(fd);
}

int __wrap_rename(const char *from, const char *to) {
        renamed = true;
        file_fsynced_before_rename = file_fsyncs > 0;
        return __real_rename(from, to);
}

static AllocationRecord *record_new(const char *id, uint64_t start, uint64_t size) {
        AllocationRecord *r = allocation_record_new();

        r->id = g_strdup(id);
        r->owner = g_strdup("vm-web1");
        r->label = g_strdup(id);
        r->pool = g_strdup("fast");
        r->region_id = 0;
        r->align = 2 * MiB;
        r->device = g_strdup("dax0.1");
        r->created_usec = 1;
        r->n_ranges = 1;
        r->ranges[0] = (DaxRange) { start, size };
        return r;
}

static void reset(void) {
        file_fsyncs = dir_fsyncs = 0;
        file_fsynced_before_rename = renamed = false;
}

static void save(StoreSaveFlags flags) {
        g_autofree char *dir = g_dir_make_tmp("daxbroker-durable-XXXXXX", NULL);
        g_autofree char *path = g_build_filename(dir, "state.json", NULL);
        g_autoptr(GPtrArray) recs = g_ptr_array_new_with_free_func((GDestroyNotify) allocation_record_free);
        g_autoptr(GArray) dirty = g_array_new(FALSE, FALSE, sizeof(RegionRange));
        g_autoptr(GArray) host = g_array_new(FALSE, FALSE, sizeof(RegionRange));
        g_autoptr(GError) error = NULL;
        StoreState st = { .allocations = recs, .dirty = dirty, .host = host };

        g_ptr_array_add(recs, record_new("0123456789abcdef", 0x100000000, GiB));
        reset();
        g_assert_cmpint(store_save_state(path, &st, flags, &error), ==, 0);
        g_assert_no_error(error);
        g_assert_true(renamed);
        g_unlink(path);
        g_rmdir(dir);
}

/* A record of work about to start (not durable) still never leaves an
 * empty file: the data is on disk before the rename can be. */
static void test_not_durable_fsyncs_file(void) {
        save(0);
        g_assert_true(file_fsynced_before_rename);
        g_assert_cmpuint(dir_fsyncs, ==, 0);
}

static void test_durable_fsyncs_file_and_directory(void) {
        save(STORE_SAVE_DURABLE);
        g_assert_true(file_fsynced_before_rename);
        g_assert_cmpuint(dir_fsyncs, ==, 1);
}

/* A host chunk over an allocation is refused when saving, exactly as
 * loading refuses it: a save must never write a file the next start
 * cannot load. The old file stays. */
static void test_save_refuses_what_load_refuses(void) {
        g_autofree char *dir = g_dir_make_tmp("daxbroker-durable-XXXXXX", NULL);
        g_autofree char *path = g_build_filename(dir, "state.json", NULL);
        g_autoptr(GPtrArray) recs = g_ptr_array_new_with_free_func((GDestroyNotify) allocation_record_free);
        g_autoptr(GArray) dirty = g_array_new(FALSE, FALSE, sizeof(RegionRange));
        g_autoptr(GArray) host = g_array_new(FALSE, FALSE, sizeof(RegionRange));
        g_autoptr(GError) error = NULL;
        g_autofree char *before = NULL, *after = NULL;
        StoreState st = { .allocations = recs, .dirty = dirty, .host = host }, loaded;
        RegionRange h = { 0, 0x100000000 + GiB / 2, GiB };

        g_ptr_array_add(recs, record_new("0123456789abcdef", 0x100000000, GiB));
        g_assert_cmpint(store_save_state(path, &st, STORE_SAVE_DURABLE, &error), ==, 0);
        g_assert_true(g_file_get_contents(path, &before, NULL, NULL));

        g_array_append_val(host, h);
        g_assert_cmpint(store_save_state(path, &st, STORE_SAVE_DURABLE, &error), <, 0);
        g_assert_nonnull(error);
        g_assert_nonnull(strstr(error->message, "host 0"));
        g_assert_true(g_file_get_contents(path, &after, NULL, NULL));
        g_assert_cmpstr(before, ==, after);
        g_clear_error(&error);
        g_assert_cmpint(store_load_state(path, &loaded, &error), ==, 0);
        store_state_clear(&loaded);
        g_unlink(path);
        g_rmdir(dir);
}

int main(int argc, char **argv) {
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/store-durable/not-durable-fsyncs-file", test_not_durable_fsyncs_file);
        g_test_add_func("/store-durable/durable-fsyncs-file-and-directory", test_durable_fsyncs_file_and_directory);
        g_test_add_func("/store-durable/save-refuses-what-load-refuses", test_save_refuses_what_load_refuses);
        return g_test_run();
}
