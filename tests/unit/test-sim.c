/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dax-backend.h"
#include "util.h"

/* Two regions: dax0 at 4 GiB (node 1) and dax1 at 8 GiB (node 0), 1 GiB each. */
#define SPEC "0:4G:1G:1,1:0x200000000:1024M:0"

/* The model's memory block: 128 MiB, so dax0 holds blocks 32..39. */
#define BLOCK (128 * MiB)
#define BLOCK_AT(a) ((a) / BLOCK)

static DaxBackend *sim_new(const char *boot, const char *state) {
        DaxBackend *b = NULL;

        g_assert_cmpint(dax_sim_new(SPEC, boot, state, &b), ==, 0);
        g_assert_nonnull(b);
        return b;
}

static DaxDeviceInfo get(DaxBackend *b, const char *name) {
        DaxDeviceInfo info;

        g_assert_cmpint(b->ops->get_device(b, name, &info), ==, 0);
        return info;
}

static uint64_t available(DaxBackend *b, unsigned region) {
        DaxRegionInfo *v = NULL;
        size_t n = 0;
        uint64_t avail = UINT64_MAX;

        g_assert_cmpint(b->ops->list_regions(b, &v, &n), ==, 0);
        for (size_t i = 0; i < n; i++)
                if (v[i].id == region)
                        avail = v[i].available;
        free(v);
        g_assert_cmpuint(avail, !=, UINT64_MAX);
        return avail;
}

/* Creates a device and gives it exactly these ranges. */
static void make_device(DaxBackend *b, unsigned region, const DaxRange *r, size_t n, char name[DAX_NAME_MAX]) {
        g_assert_cmpint(b->ops->create_device(b, region, name), ==, 0);
        for (size_t i = 0; i < n; i++)
                g_assert_cmpint(b->ops->add_mapping(b, name, r[i].start, r[i].size), ==, 0);
}

static DaxBackend *sim_new_options(const DaxSimOptions *o) {
        DaxBackend *b = NULL;

        g_assert_cmpint(dax_sim_new_with_options(SPEC, o, &b), ==, 0);
        g_assert_nonnull(b);
        return b;
}

/* The memory blocks of a kmem device; *ret must be freed. */
static size_t blocks_of(DaxBackend *b, const char *name, DaxMemBlock **ret) {
        size_t n = SIZE_MAX;

        g_assert_cmpint(b->ops->list_memory_blocks(b, name, ret, &n), ==, 0);
        g_assert_cmpuint(n, !=, SIZE_MAX);
        return n;
}

/* The state of one block of a kmem device: -1 not listed, 0 offline, 1
 * online (ZONE_NORMAL), 2 online movable. */
static int block_state(DaxBackend *b, const char *name, uint64_t id) {
        _cleanup_free_ DaxMemBlock *v = NULL;
        size_t n = blocks_of(b, name, &v);

        for (size_t i = 0; i < n; i++)
                if (v[i].id == id) {
                        g_assert_cmpuint(v[i].start, ==, id * BLOCK);
                        g_assert_true(v[i].online || !v[i].movable);
                        return v[i].online ? 1 + v[i].movable : 0;
                }
        return -1;
}

/* Whether the memory at this address holds the model's host data, as a
 * device_dax device that maps it sees it. */
static bool host_data_at(DaxBackend *b, unsigned region, uint64_t phys) {
        DaxRange r = { .start = phys, .size = 2 * MiB };
        char name[DAX_NAME_MAX], buf[32] = {};
        int fd;

        make_device(b, region, &r, 1, name);
        g_assert_cmpint(b->ops->bind_device_dax(b, name), ==, 0);
        fd = b->ops->open_device(b, name);
        g_assert_cmpint(fd, >=, 0);
        g_assert_cmpint(pread(fd, buf, sizeof(buf) - 1, 0), ==, sizeof(buf) - 1);
        close(fd);
        g_assert_cmpint(b->ops->unbind(b, name), ==, 0);
        g_assert_cmpint(b->ops->set_size(b, name, 0), ==, 0);
        g_assert_cmpint(b->ops->delete_device(b, name), ==, 0);
        return g_str_has_prefix(buf, "daxbroker-sim: host data");
}

static void test_spec(void) {
        DaxBackend *b = sim_new(NULL, NULL);
        DaxRegionInfo *v = NULL;
        size_t n = 0;

        g_assert_cmpstr(b->ops->name, ==, "sim");
        g_assert_cmpint(b->ops->list_regions(b, &v, &n), ==, 0);
        g_assert_cmpuint(n, ==, 2);
        g_assert_cmpuint(v[0].id, ==, 0);
        g_assert_cmpuint(v[0].start, ==, 4 * GiB);
        g_assert_cmpuint(v[0].size, ==, 1 * GiB);
        g_assert_cmpuint(v[0].align, ==, 2 * MiB);
        g_assert_cmpuint(v[0].available, ==, 1 * GiB);
        g_assert_cmpint(v[0].numa_node, ==, 1);
        g_assert_cmpuint(v[1].id, ==, 1);
        g_assert_cmpuint(v[1].start, ==, 8 * GiB);
        g_assert_cmpint(v[1].numa_node, ==, 0);
        free(v);
        dax_backend_free(b);

        b = NULL;
        g_assert_cmpint(dax_sim_new("0:4G:1G", NULL, NULL, &b), ==, -EINVAL);
        g_assert_cmpint(dax_sim_new("0:4G:1G:x", NULL, NULL, &b), ==, -EINVAL);
        g_assert_cmpint(dax_sim_new("0:4G:3K:0", NULL, NULL, &b), ==, -EINVAL);
        g_assert_cmpint(dax_sim_new("0:4G:0:0", NULL, NULL, &b), ==, -EINVAL);
        g_assert_cmpint(dax_sim_new("0:4Q:1G:0", NULL, NULL, &b), ==, -EINVAL);
        g_assert_cmpint(dax_sim_new("0:4G:1G:0,0:8G:1G:0", NULL, NULL, &b), ==, -EEXIST);
        g_assert_cmpint(dax_sim_new("0:4G:1G:0,1:4G:1G:0", NULL, NULL, &b), ==, -EEXIST);
        g_assert_cmpint(dax_sim_new("0:99999999999G:1G:0", NULL, NULL, &b), ==, -ERANGE);
        g_assert_cmpint(dax_sim_new(SPEC, "warm", NULL, &b), ==, -EINVAL);
        g_assert_null(b);
}

static void test_boot_modes(void) {
        DaxBackend *b = sim_new("idle", NULL);
        DaxDeviceInfo i = get(b, "dax0.0");
        char name[DAX_NAME_MAX];

        g_assert_cmpstr(i.name, ==, "dax0.0");
        g_assert_cmpuint(i.size, ==, 0);
        g_assert_cmpint(i.driver, ==, DAX_DRIVER_NONE);
        g_assert_cmpuint(i.align, ==, 2 * MiB);
        g_assert_cmpint(i.target_node, ==, 1);
        dax_backend_free(b);

        b = sim_new("devdax", NULL);
        i = get(b, "dax1.0");
        g_assert_cmpuint(i.size, ==, 1 * GiB);
        g_assert_cmpuint(i.n_ranges, ==, 1);
        g_assert_cmpuint(i.ranges[0].start, ==, 8 * GiB);
        g_assert_cmpint(i.driver, ==, DAX_DRIVER_DEVICE_DAX);
        g_assert_cmpuint(i.mem_blocks, ==, 0);
        g_assert_cmpuint(available(b, 1), ==, 0);
        g_assert_cmpint(b->ops->create_device(b, 1, name), ==, -ENOSPC);
        dax_backend_free(b);

        b = sim_new("kmem-offline", NULL);
        i = get(b, "dax0.0");
        g_assert_cmpint(i.driver, ==, DAX_DRIVER_KMEM);
        g_assert_cmpuint(i.mem_blocks, ==, 8);
        g_assert_cmpuint(i.mem_blocks_online, ==, 0);
        dax_backend_free(b);

        b = sim_new("kmem-online", NULL);
        i = get(b, "dax0.0");
        g_assert_cmpint(i.driver, ==, DAX_DRIVER_KMEM);
        g_assert_cmpuint(i.mem_blocks, ==, 8);
        g_assert_cmpuint(i.mem_blocks_online, ==, 8);
        dax_backend_free(b);
}

static void test_lookup(void) {
        DaxBackend *b = sim_new("idle", NULL);
        DaxDeviceInfo info;
        DaxDeviceInfo *v = NULL;
        size_t n = 0;

        g_assert_cmpint(b->ops->get_device(b, "dax0.1", &info), ==, -ENODEV);
        g_assert_cmpint(b->ops->get_device(b, "dax2.0", &info), ==, -ENODEV);
        g_assert_cmpint(b->ops->get_device(b, "dax00.0", &info), ==, -ENODEV);
        g_assert_cmpint(b->ops->get_device(b, "dax0.0 ", &info), ==, -ENODEV);
        g_assert_cmpint(b->ops->get_device(b, "pmem0", &info), ==, -ENODEV);
        g_assert_cmpint(b->ops->list_devices(b, 5, &v, &n), ==, -ENODEV);
        g_assert_cmpint(b->ops->set_size(b, "dax0.7", 0), ==, -ENODEV);
        g_assert_cmpint(b->ops->open_device(b, "dax0.7"), ==, -ENODEV);
        g_assert_cmpint(b->ops->device_in_use(b, "dax0.7"), ==, -ENODEV);

        g_assert_cmpint(b->ops->list_devices(b, 0, &v, &n), ==, 0);
        g_assert_cmpuint(n, ==, 1);
        g_assert_cmpstr(v[0].name, ==, "dax0.0");
        free(v);

        dax_backend_free(b);
}

static void test_create_delete(void) {
        DaxBackend *b = sim_new("idle", NULL);
        char n1[DAX_NAME_MAX], n2[DAX_NAME_MAX], n3[DAX_NAME_MAX];
        DaxDeviceInfo i;

        g_assert_cmpint(b->ops->create_device(b, 0, n1), ==, 0);
        g_assert_cmpstr(n1, ==, "dax0.1");
        g_assert_cmpint(b->ops->create_device(b, 0, n2), ==, 0);
        g_assert_cmpstr(n2, ==, "dax0.2");
        i = get(b, n2);
        g_assert_cmpuint(i.size, ==, 0);
        g_assert_cmpint(i.driver, ==, DAX_DRIVER_NONE);
        g_assert_cmpuint(i.instance, ==, 2);
        g_assert_cmpuint(i.region_id, ==, 0);

        /* The lowest free instance number is reused. */
        g_assert_cmpint(b->ops->delete_device(b, n1), ==, 0);
        g_assert_cmpint(b->ops->create_device(b, 0, n3), ==, 0);
        g_assert_cmpstr(n3, ==, "dax0.1");

        /* delete_store(): daxR.0, sized or bound devices are busy. */
        g_assert_cmpint(b->ops->delete_device(b, "dax0.0"), ==, -EBUSY);
        g_assert_cmpint(b->ops->set_size(b, n2, 2 * MiB), ==, 0);
        g_assert_cmpint(b->ops->delete_device(b, n2), ==, -EBUSY);
        g_assert_cmpint(b->ops->bind_device_dax(b, n2), ==, 0);
        g_assert_cmpint(b->ops->delete_device(b, n2), ==, -EBUSY);
        g_assert_cmpint(b->ops->unbind(b, n2), ==, 0);
        g_assert_cmpint(b->ops->set_size(b, n2, 0), ==, 0);
        g_assert_cmpint(b->ops->delete_device(b, n2), ==, 0);
        g_assert_cmpint(b->ops->get_device(b, n2, &i), ==, -ENODEV);

        /* Not a child of the region: the kernel's ENXIO. */
        g_assert_cmpint(b->ops->delete_device(b, "dax0.9"), ==, -ENXIO);
        g_assert_cmpint(b->ops->delete_device(b, "dax1.0"), ==, -EBUSY);
        g_assert_cmpint(b->ops->delete_device(b, "dax7.1"), ==, -ENODEV);

        /* A full region cannot create. */
        g_assert_cmpint(b->ops->set_size(b, "dax1.0", 1 * GiB), ==, 0);
        g_assert_cmpint(b->ops->create_device(b, 1, n1), ==, -ENOSPC);
        g_assert_cmpint(b->ops->create_device(b, 9, n1), ==, -ENODEV);

        dax_backend_free(b);
}

static void test_size_rules(void) {
        DaxBackend *b = sim_new("idle", NULL);
        char a[DAX_NAME_MAX], c[DAX_NAME_MAX];
        DaxDeviceInfo i;

        g_assert_cmpint(b->ops->create_device(b, 0, a), ==, 0);
        g_assert_cmpint(b->ops->set_size(b, a, 3 * MiB), ==, -EINVAL);
        g_assert_cmpint(b->ops->set_size(b, a, 2 * GiB), ==, -ENOSPC);
        g_assert_cmpint(b->ops->set_size(b, a, 256 * MiB), ==, 0);
        g_assert_cmpuint(available(b, 0), ==, 768 * MiB);

        /* Misaligned beats busy, as in size_store(). */
        g_assert_cmpint(b->ops->bind_device_dax(b, a), ==, 0);
        g_assert_cmpint(b->ops->set_size(b, a, 3 * MiB), ==, -EINVAL);
        g_assert_cmpint(b->ops->set_size(b, a, 512 * MiB), ==, -EBUSY);
        g_assert_cmpint(b->ops->unbind(b, a), ==, 0);

        /* With a 1 GiB align only whole GiBs are sizes. */
        g_assert_cmpint(b->ops->create_device(b, 1, c), ==, 0);
        g_assert_cmpint(b->ops->set_align(b, c, 1 * GiB), ==, 0);
        g_assert_cmpint(b->ops->set_size(b, c, 512 * MiB), ==, -EINVAL);
        g_assert_cmpint(b->ops->set_size(b, c, 1 * GiB), ==, 0);
        i = get(b, c);
        g_assert_cmpuint(i.ranges[0].start, ==, 8 * GiB);

        dax_backend_free(b);
}

static void test_size_first_fit_and_shrink(void) {
        DaxBackend *b = sim_new("idle", NULL);
        DaxRange hole_maker = { .start = 4 * GiB + 512 * MiB, .size = 256 * MiB };
        char a[DAX_NAME_MAX], x[DAX_NAME_MAX], c[DAX_NAME_MAX];
        DaxDeviceInfo i;

        /* a = [4G, 4G+256M), x = [4G+512M, 4G+768M) */
        g_assert_cmpint(b->ops->create_device(b, 0, a), ==, 0);
        g_assert_cmpint(b->ops->set_size(b, a, 256 * MiB), ==, 0);
        make_device(b, 0, &hole_maker, 1, x);

        /* Growing a extends its last range into the gap after it. */
        g_assert_cmpint(b->ops->set_size(b, a, 384 * MiB), ==, 0);
        i = get(b, a);
        g_assert_cmpuint(i.n_ranges, ==, 1);
        g_assert_cmpuint(i.ranges[0].size, ==, 384 * MiB);

        /* c fills the first gap, then continues after x. */
        g_assert_cmpint(b->ops->create_device(b, 0, c), ==, 0);
        g_assert_cmpint(b->ops->set_size(b, c, 256 * MiB), ==, 0);
        i = get(b, c);
        g_assert_cmpuint(i.n_ranges, ==, 2);
        g_assert_cmpuint(i.ranges[0].start, ==, 4 * GiB + 384 * MiB);
        g_assert_cmpuint(i.ranges[0].size, ==, 128 * MiB);
        g_assert_cmpuint(i.ranges[1].start, ==, 4 * GiB + 768 * MiB);
        g_assert_cmpuint(i.ranges[1].size, ==, 128 * MiB);

        /* Shrinking takes from the last range first. */
        g_assert_cmpint(b->ops->set_size(b, c, 64 * MiB), ==, 0);
        i = get(b, c);
        g_assert_cmpuint(i.n_ranges, ==, 1);
        g_assert_cmpuint(i.ranges[0].start, ==, 4 * GiB + 384 * MiB);
        g_assert_cmpuint(i.ranges[0].size, ==, 64 * MiB);
        g_assert_cmpuint(available(b, 0), ==, 1 * GiB - 384 * MiB - 256 * MiB - 64 * MiB);

        /* Free space at the start of the region comes first. */
        g_assert_cmpint(b->ops->set_size(b, a, 0), ==, 0);
        g_assert_cmpint(b->ops->set_size(b, c, 128 * MiB), ==, 0);
        i = get(b, c);
        g_assert_cmpuint(i.n_ranges, ==, 2);
        g_assert_cmpuint(i.ranges[1].start, ==, 4 * GiB);

        dax_backend_free(b);
}

static void test_mapping_rules(void) {
        DaxBackend *b = sim_new("idle", NULL);
        DaxRange r = { .start = 4 * GiB + 256 * MiB, .size = 256 * MiB };
        char a[DAX_NAME_MAX], c[DAX_NAME_MAX];
        DaxDeviceInfo i;

        make_device(b, 0, &r, 1, a);
        g_assert_cmpint(b->ops->create_device(b, 0, c), ==, 0);

        /* Unaligned length: ENXIO; overlap or outside the region: ENOMEM. */
        g_assert_cmpint(b->ops->add_mapping(b, c, 4 * GiB, 3 * MiB), ==, -ENXIO);
        g_assert_cmpint(b->ops->add_mapping(b, c, 4 * GiB + 254 * MiB, 4 * MiB), ==, -ENOMEM);
        g_assert_cmpint(b->ops->add_mapping(b, c, 4 * GiB + 510 * MiB, 2 * MiB), ==, -ENOMEM);
        g_assert_cmpint(b->ops->add_mapping(b, c, 4 * GiB - 2 * MiB, 2 * MiB), ==, -ENOMEM);
        g_assert_cmpint(b->ops->add_mapping(b, c, 5 * GiB - 2 * MiB, 4 * MiB), ==, -ENOMEM);
        g_assert_cmpint(b->ops->add_mapping(b, c, 8 * GiB, 2 * MiB), ==, -ENOMEM);
        g_assert_cmpint(b->ops->add_mapping(b, c, UINT64_MAX - MiB + 1, 2 * MiB), ==, -ENOMEM);

        /* Ranges are appended in the order given, not sorted. */
        g_assert_cmpint(b->ops->add_mapping(b, c, 4 * GiB + 512 * MiB, 2 * MiB), ==, 0);
        g_assert_cmpint(b->ops->add_mapping(b, c, 4 * GiB, 4 * MiB), ==, 0);
        i = get(b, c);
        g_assert_cmpuint(i.n_ranges, ==, 2);
        g_assert_cmpuint(i.ranges[0].start, ==, 4 * GiB + 512 * MiB);
        g_assert_cmpuint(i.ranges[1].start, ==, 4 * GiB);
        g_assert_cmpuint(i.size, ==, 6 * MiB);

        /* A 1 GiB align makes 2 MiB lengths unaligned. */
        g_assert_cmpint(b->ops->create_device(b, 1, c), ==, 0);
        g_assert_cmpint(b->ops->set_align(b, c, 1 * GiB), ==, 0);
        g_assert_cmpint(b->ops->add_mapping(b, c, 8 * GiB, 2 * MiB), ==, -ENXIO);

        /* The kernel would take it; the model refuses a bound device. */
        g_assert_cmpint(b->ops->bind_device_dax(b, a), ==, 0);
        g_assert_cmpint(b->ops->add_mapping(b, a, 4 * GiB + 768 * MiB, 2 * MiB), ==, -EBUSY);

        dax_backend_free(b);
}

static void test_mapping_limit(void) {
        DaxBackend *b = sim_new("idle", NULL);
        char a[DAX_NAME_MAX];

        g_assert_cmpint(b->ops->create_device(b, 0, a), ==, 0);
        for (unsigned k = 0; k < DAX_RANGES_MAX; k++)
                g_assert_cmpint(b->ops->add_mapping(b, a, 4 * GiB + 4 * k * MiB, 2 * MiB), ==, 0);
        g_assert_cmpint(b->ops->add_mapping(b, a, 4 * GiB + 512 * MiB, 2 * MiB), ==, -E2BIG);
        g_assert_cmpuint(get(b, a).n_ranges, ==, DAX_RANGES_MAX);

        dax_backend_free(b);
}

static void test_align_rules(void) {
        DaxBackend *b = sim_new("idle", NULL);
        DaxRange r = { .start = 4 * GiB, .size = 2 * MiB };
        char a[DAX_NAME_MAX];

        make_device(b, 0, &r, 1, a);
        g_assert_cmpint(b->ops->set_align(b, a, 8 * KiB), ==, -EINVAL);
        g_assert_cmpint(b->ops->set_align(b, a, 0), ==, -EINVAL);
        g_assert_cmpint(b->ops->set_align(b, a, 1 * GiB), ==, -EINVAL);
        g_assert_cmpuint(get(b, a).align, ==, 2 * MiB);
        g_assert_cmpint(b->ops->set_align(b, a, 4 * KiB), ==, 0);
        g_assert_cmpuint(get(b, a).align, ==, 4 * KiB);

        g_assert_cmpint(b->ops->bind_device_dax(b, a), ==, 0);
        g_assert_cmpint(b->ops->set_align(b, a, 2 * MiB), ==, -EBUSY);
        g_assert_cmpint(b->ops->unbind(b, a), ==, 0);

        g_assert_cmpint(b->ops->set_size(b, a, 0), ==, 0);
        g_assert_cmpint(b->ops->add_mapping(b, a, 4 * GiB, 1 * GiB), ==, 0);
        g_assert_cmpint(b->ops->set_align(b, a, 1 * GiB), ==, 0);
        g_assert_cmpuint(get(b, a).align, ==, 1 * GiB);

        dax_backend_free(b);
}

static void test_bind_rules(void) {
        DaxBackend *b = sim_new("idle", NULL);
        char a[DAX_NAME_MAX];

        g_assert_cmpint(b->ops->create_device(b, 0, a), ==, 0);
        g_assert_cmpint(b->ops->bind_device_dax(b, a), ==, -ENXIO);
        g_assert_cmpint(b->ops->set_size(b, a, 64 * MiB), ==, 0);
        g_assert_cmpint(b->ops->bind_device_dax(b, a), ==, 0);
        g_assert_cmpint(get(b, a).driver, ==, DAX_DRIVER_DEVICE_DAX);
        g_assert_cmpint(b->ops->bind_device_dax(b, a), ==, 0);
        g_assert_cmpint(b->ops->unbind(b, a), ==, 0);
        g_assert_cmpint(get(b, a).driver, ==, DAX_DRIVER_NONE);
        g_assert_cmpint(b->ops->unbind(b, a), ==, 0);
        dax_backend_free(b);

        /* 1 GiB align needs whole-GiB ranges; then it binds. */
        b = sim_new("idle", NULL);
        g_assert_cmpint(b->ops->set_size(b, "dax0.0", 512 * MiB), ==, 0);
        g_assert_cmpint(b->ops->create_device(b, 0, a), ==, 0);
        g_assert_cmpint(b->ops->add_mapping(b, a, 4 * GiB + 512 * MiB, 512 * MiB), ==, 0);
        g_assert_cmpint(b->ops->set_align(b, a, 1 * GiB), ==, -EINVAL);
        g_assert_cmpint(b->ops->set_size(b, a, 0), ==, 0);
        g_assert_cmpint(b->ops->set_size(b, "dax0.0", 0), ==, 0);
        g_assert_cmpint(b->ops->add_mapping(b, a, 4 * GiB, 1 * GiB), ==, 0);
        g_assert_cmpint(b->ops->set_align(b, a, 1 * GiB), ==, 0);
        g_assert_cmpint(b->ops->bind_device_dax(b, a), ==, 0);
        dax_backend_free(b);

        /* kmem holds the device: device_dax cannot take it. */
        b = sim_new("kmem-offline", NULL);
        g_assert_cmpint(b->ops->bind_device_dax(b, "dax0.0"), ==, -EBUSY);
        dax_backend_free(b);
}

static void test_bind_misaligned_start(void) {
        DaxBackend *b = NULL;
        char a[DAX_NAME_MAX];

        /* Region at 5.5 GiB: a whole-GiB range cannot start on a GiB in
         * its first half, and binding such a device is refused. */
        g_assert_cmpint(dax_sim_new("0:0x160000000:2G:0", "idle", NULL, &b), ==, 0);
        g_assert_cmpint(b->ops->create_device(b, 0, a), ==, 0);
        g_assert_cmpint(b->ops->set_align(b, a, 1 * GiB), ==, 0);
        g_assert_cmpint(b->ops->add_mapping(b, a, 0x160000000, 1 * GiB), ==, 0);
        g_assert_cmpint(b->ops->bind_device_dax(b, a), ==, -EINVAL);
        g_assert_cmpint(get(b, a).driver, ==, DAX_DRIVER_NONE);
        g_assert_cmpint(b->ops->set_size(b, a, 0), ==, 0);
        g_assert_cmpint(b->ops->add_mapping(b, a, 6 * GiB, 1 * GiB), ==, 0);
        g_assert_cmpint(b->ops->bind_device_dax(b, a), ==, 0);
        dax_backend_free(b);
}

static void test_kmem_one_shot(void) {
        DaxBackend *b = sim_new("kmem-online", NULL);
        DaxRange r = { .start = 4 * GiB, .size = 128 * MiB };
        char a[DAX_NAME_MAX];
        char buf[64] = {};
        int fd;

        g_assert_cmpint(b->ops->unbind(b, "dax0.0"), ==, -EBUSY);
        g_assert_cmpint(b->ops->set_size(b, "dax0.0", 0), ==, -EBUSY);
        g_assert_cmpint(b->ops->add_mapping(b, "dax0.0", 4 * GiB, 2 * MiB), ==, -EBUSY);
        g_assert_cmpint(b->ops->open_device(b, "dax0.0"), ==, -ENXIO);

        g_assert_cmpint(dax_sim_set_blocks_online(b, "dax0.0", 9), ==, -ERANGE);
        g_assert_cmpint(dax_sim_set_blocks_online(b, "dax0.0", 1), ==, 0);
        g_assert_cmpuint(get(b, "dax0.0").mem_blocks_online, ==, 1);
        g_assert_cmpint(b->ops->unbind(b, "dax0.0"), ==, -EBUSY);
        g_assert_cmpint(dax_sim_set_blocks_online(b, "dax0.0", 0), ==, 0);
        g_assert_cmpint(b->ops->unbind(b, "dax0.0"), ==, 0);
        g_assert_cmpint(get(b, "dax0.0").driver, ==, DAX_DRIVER_NONE);
        g_assert_cmpuint(get(b, "dax0.0").mem_blocks, ==, 0);
        g_assert_cmpint(dax_sim_set_blocks_online(b, "dax0.0", 0), ==, -ENXIO);

        /* The host left its data behind: a new device over that memory sees it. */
        g_assert_cmpint(b->ops->set_size(b, "dax0.0", 0), ==, 0);
        make_device(b, 0, &r, 1, a);
        g_assert_cmpint(b->ops->bind_device_dax(b, a), ==, 0);
        fd = b->ops->open_device(b, a);
        g_assert_cmpint(fd, >=, 0);
        g_assert_cmpint(pread(fd, buf, sizeof(buf) - 1, 0), ==, sizeof(buf) - 1);
        g_assert_true(g_str_has_prefix(buf, "daxbroker-sim: host data"));
        close(fd);

        dax_backend_free(b);
}

static void test_open_mmap(void) {
        DaxBackend *b = sim_new("idle", NULL);
        DaxRange r[] = {
                { .start = 4 * GiB + 512 * MiB, .size = 2 * MiB },
                { .start = 4 * GiB, .size = 4 * MiB },
        };
        char a[DAX_NAME_MAX], c[DAX_NAME_MAX];
        char buf[16] = {};
        struct stat st;
        char *p;
        int fd, fd2, fd3;

        make_device(b, 0, r, G_N_ELEMENTS(r), a);
        g_assert_cmpint(b->ops->open_device(b, a), ==, -ENXIO);
        g_assert_cmpint(b->ops->bind_device_dax(b, a), ==, 0);

        fd = b->ops->open_device(b, a);
        g_assert_cmpint(fd, >=, 0);
        g_assert_cmpint(fstat(fd, &st), ==, 0);
        g_assert_cmpint(st.st_size, ==, 6 * MiB);

        p = mmap(NULL, 6 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        g_assert_true(p != MAP_FAILED);
        memcpy(p, "first", 5);
        memcpy(p + 2 * MiB, "second", 6);
        g_assert_cmpint(munmap(p, 6 * MiB), ==, 0);

        /* Another open sees the same bytes, with its own file offset. */
        fd2 = b->ops->open_device(b, a);
        g_assert_cmpint(fd2, >=, 0);
        g_assert_cmpint(lseek(fd, 100, SEEK_SET), ==, 100);
        g_assert_cmpint(read(fd2, buf, 5), ==, 5);
        g_assert_cmpstr(buf, ==, "first");
        close(fd2);
        close(fd);

        /* Unbind and rebind keep the bytes, but a descriptor from before
         * the unbind no longer reaches the device (the kernel kills it). */
        fd2 = b->ops->open_device(b, a);
        g_assert_cmpint(b->ops->unbind(b, a), ==, 0);
        g_assert_cmpint(b->ops->bind_device_dax(b, a), ==, 0);
        g_assert_cmpint(pwrite(fd2, "stale", 5, 0), ==, 5);
        close(fd2);
        fd = b->ops->open_device(b, a);
        g_assert_cmpint(pread(fd, buf, 6, 2 * MiB), ==, 6);
        g_assert_cmpstr(buf, ==, "second");
        g_assert_cmpint(pread(fd, buf, 5, 0), ==, 5);
        g_assert_cmpmem(buf, 5, "first", 5);
        close(fd);

        /* The bytes stay at their physical address: a new device that maps
         * the old second range (4 GiB) first sees "second" at offset 0. */
        g_assert_cmpint(b->ops->unbind(b, a), ==, 0);
        g_assert_cmpint(b->ops->set_size(b, a, 0), ==, 0);
        g_assert_cmpint(b->ops->delete_device(b, a), ==, 0);
        make_device(b, 0, &r[1], 1, c);
        g_assert_cmpint(b->ops->bind_device_dax(b, c), ==, 0);
        fd3 = b->ops->open_device(b, c);
        g_assert_cmpint(fd3, >=, 0);
        memset(buf, 0, sizeof(buf));
        g_assert_cmpint(pread(fd3, buf, 6, 0), ==, 6);
        g_assert_cmpstr(buf, ==, "second");
        close(fd3);

        dax_backend_free(b);
}

static void test_in_use_hook(void) {
        static const DaxBackendOps other_ops = { .name = "other" };
        DaxBackend other = { .ops = &other_ops };
        DaxBackend *b = sim_new("devdax", NULL);

        g_assert_cmpint(b->ops->device_in_use(b, "dax0.0"), ==, 0);
        g_assert_cmpint(dax_sim_set_in_use(b, "dax0.0", true), ==, 0);
        g_assert_cmpint(b->ops->device_in_use(b, "dax0.0"), ==, 1);
        g_assert_cmpint(dax_sim_set_in_use(b, "dax0.0", false), ==, 0);
        g_assert_cmpint(b->ops->device_in_use(b, "dax0.0"), ==, 0);
        g_assert_cmpint(dax_sim_set_in_use(b, "dax0.5", true), ==, -ENODEV);

        /* The hooks refuse other backends. */
        g_assert_cmpint(dax_sim_set_in_use(&other, "dax0.0", true), ==, -EOPNOTSUPP);
        g_assert_cmpint(dax_sim_set_blocks_online(&other, "dax0.0", 0), ==, -EOPNOTSUPP);
        g_assert_cmpint(dax_sim_set_block_state(&other, 4 * GiB, true, true), ==, -EOPNOTSUPP);
        g_assert_cmpint(dax_sim_set_block_pin(&other, 4 * GiB, DAX_SIM_BLOCK_BUSY), ==, -EOPNOTSUPP);

        dax_backend_free(b);
}

static void test_kmem_bind_rules(void) {
        DaxBackend *b = sim_new("idle", NULL);
        DaxRange crumbs = { .start = 4 * GiB + 2 * MiB, .size = 200 * MiB };
        DaxRange whole = { .start = 4 * GiB + 256 * MiB, .size = 256 * MiB };
        char a[DAX_NAME_MAX], c[DAX_NAME_MAX], e[DAX_NAME_MAX];
        DaxDeviceInfo i;

        g_assert_cmpuint(b->ops->memory_block_size(b), ==, BLOCK);
        g_assert_cmpint(b->ops->bind_kmem(b, "dax0.9"), ==, -ENODEV);
        g_assert_cmpint(b->ops->bind_kmem(b, "dax0.0 "), ==, -ENODEV);

        /* Nothing to hotplug: no range at all, or no whole block. */
        g_assert_cmpint(b->ops->create_device(b, 0, e), ==, 0);
        g_assert_cmpint(b->ops->bind_kmem(b, e), ==, -ENXIO);
        make_device(b, 0, &crumbs, 1, c);
        g_assert_cmpint(b->ops->bind_kmem(b, c), ==, -EINVAL);
        g_assert_cmpint(get(b, c).driver, ==, DAX_DRIVER_NONE);

        /* Bound elsewhere is busy; kmem again is fine. */
        make_device(b, 0, &whole, 1, a);
        g_assert_cmpint(b->ops->bind_device_dax(b, a), ==, 0);
        g_assert_cmpint(b->ops->bind_kmem(b, a), ==, -EBUSY);
        g_assert_cmpint(b->ops->unbind(b, a), ==, 0);
        g_assert_cmpint(b->ops->bind_kmem(b, a), ==, 0);
        g_assert_cmpint(b->ops->bind_kmem(b, a), ==, 0);
        i = get(b, a);
        g_assert_cmpint(i.driver, ==, DAX_DRIVER_KMEM);
        g_assert_cmpuint(i.mem_blocks, ==, 2);
        g_assert_cmpuint(i.mem_blocks_online, ==, 0);
        g_assert_cmpint(b->ops->bind_device_dax(b, a), ==, -EBUSY);
        g_assert_cmpint(b->ops->open_device(b, a), ==, -ENXIO);
        g_assert_cmpint(b->ops->set_size(b, a, 0), ==, -EBUSY);

        /* Only kmem devices have memory blocks. */
        {
                DaxMemBlock *v = NULL;
                size_t n = 0;

                g_assert_cmpint(b->ops->list_memory_blocks(b, c, &v, &n), ==, -ENXIO);
                g_assert_cmpint(b->ops->list_memory_blocks(b, "dax0.9", &v, &n), ==, -ENODEV);
                g_assert_null(v);
        }

        g_assert_cmpint(b->ops->unbind(b, a), ==, 0);
        g_assert_cmpuint(get(b, a).mem_blocks, ==, 0);
        dax_backend_free(b);

        /* kmem wants to know which node the memory joins. */
        b = NULL;
        g_assert_cmpint(dax_sim_new("0:4G:1G:-1", "idle", NULL, &b), ==, 0);
        make_device(b, 0, &whole, 1, a);
        g_assert_cmpint(b->ops->bind_kmem(b, a), ==, -EINVAL);
        g_assert_cmpint(get(b, a).driver, ==, DAX_DRIVER_NONE);
        g_assert_cmpint(b->ops->bind_device_dax(b, a), ==, 0);
        dax_backend_free(b);
}

static void test_kmem_autoonline(void) {
        static const struct {
                DaxSimAutoOnline policy;
                const char *spelling;
                int state;
        } policies[] = {
                { DAX_SIM_AUTOONLINE_OFFLINE, "offline", 0 },
                { DAX_SIM_AUTOONLINE_ONLINE, "online", 1 },
                { DAX_SIM_AUTOONLINE_ONLINE_MOVABLE, "online_movable", 2 },
        };
        DaxRange r = { .start = 8 * GiB + 128 * MiB, .size = 256 * MiB };

        for (size_t p = 0; p < G_N_ELEMENTS(policies); p++) {
                g_autofree char *str = g_strdup_printf("sim:%s;autoonline=%s", SPEC, policies[p].spelling);
                DaxBackend *b = sim_new_options(&(DaxSimOptions) { .autoonline = policies[p].policy });
                DaxBackend *b2 = NULL;
                char a[DAX_NAME_MAX];

                make_device(b, 1, &r, 1, a);
                g_assert_cmpint(b->ops->bind_kmem(b, a), ==, 0);
                g_assert_cmpint(block_state(b, a, BLOCK_AT(r.start)), ==, policies[p].state);
                g_assert_cmpint(block_state(b, a, BLOCK_AT(r.start) + 1), ==, policies[p].state);
                g_assert_cmpuint(get(b, a).mem_blocks_online, ==, policies[p].state ? 2 : 0);
                g_assert_cmpint(b->ops->unbind(b, a), ==, policies[p].state ? -EBUSY : 0);

                /* The same policy, spelled in the backend string. */
                g_assert_cmpint(dax_backend_new_from_string(str, &b2), ==, 0);
                make_device(b2, 1, &r, 1, a);
                g_assert_cmpint(b2->ops->bind_kmem(b2, a), ==, 0);
                g_assert_cmpint(block_state(b2, a, BLOCK_AT(r.start)), ==, policies[p].state);

                dax_backend_free(b2);
                dax_backend_free(b);
        }

        /* kmem-online at boot is auto_online_blocks too. */
        {
                DaxBackend *b = sim_new("kmem-online", NULL);

                g_assert_cmpint(block_state(b, "dax0.0", BLOCK_AT(4 * GiB)), ==, 1);
                dax_backend_free(b);
                b = sim_new_options(&(DaxSimOptions) { .boot_mode = "kmem-online",
                                                       .autoonline = DAX_SIM_AUTOONLINE_ONLINE_MOVABLE });
                g_assert_cmpint(block_state(b, "dax0.0", BLOCK_AT(4 * GiB)), ==, 2);
                g_assert_cmpint(block_state(b, "dax0.0", BLOCK_AT(5 * GiB) - 1), ==, 2);
                g_assert_cmpuint(get(b, "dax0.0").mem_blocks_online, ==, 8);
                dax_backend_free(b);
        }
}

static void test_kmem_block_list(void) {
        DaxBackend *b = sim_new("idle", NULL);
        /* Given high range first; the second is trimmed to one block
         * (4G+128M..4G+256M) by kmem. */
        DaxRange r[] = {
                { .start = 4 * GiB + 512 * MiB, .size = 256 * MiB },
                { .start = 4 * GiB + 64 * MiB, .size = 192 * MiB },
                { .start = 4 * GiB + 800 * MiB, .size = 100 * MiB },
        };
        _cleanup_free_ DaxMemBlock *v = NULL;
        char a[DAX_NAME_MAX];
        DaxDeviceInfo i;
        size_t n;

        make_device(b, 0, r, G_N_ELEMENTS(r), a);
        g_assert_cmpint(b->ops->bind_kmem(b, a), ==, 0);
        n = blocks_of(b, a, &v);
        g_assert_cmpuint(n, ==, 3);
        g_assert_cmpuint(v[0].id, ==, BLOCK_AT(4 * GiB + 128 * MiB));
        g_assert_cmpuint(v[1].id, ==, BLOCK_AT(4 * GiB + 512 * MiB));
        g_assert_cmpuint(v[2].id, ==, BLOCK_AT(4 * GiB + 640 * MiB));
        for (size_t k = 0; k < n; k++) {
                g_assert_cmpuint(v[k].start, ==, v[k].id * BLOCK);
                g_assert_false(v[k].online);
                g_assert_false(v[k].movable);
        }
        i = get(b, a);
        g_assert_cmpuint(i.mem_blocks, ==, n);
        g_assert_cmpuint(i.mem_blocks_online, ==, 0);

        /* The counts follow the per-block state. */
        g_assert_cmpint(b->ops->set_memory_block(b, v[2].id, true, 0), ==, 0);
        g_assert_cmpint(b->ops->set_memory_block(b, v[0].id, true, 0), ==, 0);
        i = get(b, a);
        g_assert_cmpuint(i.mem_blocks, ==, 3);
        g_assert_cmpuint(i.mem_blocks_online, ==, 2);
        g_assert_cmpint(block_state(b, a, v[1].id), ==, 0);

        /* The trimmed crumbs and space outside the device are no blocks. */
        g_assert_cmpint(b->ops->set_memory_block(b, BLOCK_AT(4 * GiB), true, 0), ==, -ENOENT);
        g_assert_cmpint(b->ops->set_memory_block(b, BLOCK_AT(4 * GiB + 768 * MiB), true, 0), ==, -ENOENT);
        g_assert_cmpint(b->ops->set_memory_block(b, BLOCK_AT(4 * GiB + 256 * MiB), true, 0), ==, -ENOENT);
        g_assert_cmpint(b->ops->set_memory_block(b, 0, true, 0), ==, -ENOENT);
        g_assert_cmpint(b->ops->set_memory_block(b, UINT64_MAX, false, 0), ==, -ENOENT);

        dax_backend_free(b);
}

static void test_kmem_online_offline(void) {
        DaxBackend *b = sim_new("idle", NULL);
        DaxRange r = { .start = 4 * GiB + 256 * MiB, .size = 384 * MiB };
        uint64_t m = BLOCK_AT(r.start);
        char a[DAX_NAME_MAX];

        make_device(b, 0, &r, 1, a);
        g_assert_cmpint(b->ops->bind_kmem(b, a), ==, 0);

        /* Onlining goes to ZONE_MOVABLE; the same state again is no error. */
        g_assert_cmpint(b->ops->set_memory_block(b, m, true, 0), ==, 0);
        g_assert_cmpint(block_state(b, a, m), ==, 2);
        g_assert_cmpint(b->ops->set_memory_block(b, m, true, 0), ==, 0);
        g_assert_cmpint(b->ops->set_memory_block(b, m + 1, false, 1000), ==, 0);
        g_assert_cmpint(block_state(b, a, m + 1), ==, 0);

        /* One online block is enough to refuse the unbind. */
        g_assert_cmpint(b->ops->unbind(b, a), ==, -EBUSY);
        g_assert_cmpint(get(b, a).driver, ==, DAX_DRIVER_KMEM);
        g_assert_cmpint(b->ops->set_memory_block(b, m, false, 1000), ==, 0);
        g_assert_cmpint(block_state(b, a, m), ==, 0);
        g_assert_cmpint(b->ops->set_memory_block(b, m, false, 1000), ==, 0);

        /* An agent onlines a block behind our back, in ZONE_NORMAL. */
        g_assert_cmpint(dax_sim_set_block_state(b, r.start + 200 * MiB, true, false), ==, 0);
        g_assert_cmpint(block_state(b, a, m + 1), ==, 1);
        g_assert_cmpint(b->ops->unbind(b, a), ==, -EBUSY);
        g_assert_cmpint(b->ops->set_memory_block(b, m + 1, false, 1000), ==, 0);
        g_assert_cmpint(dax_sim_set_block_state(b, r.start - 1, true, true), ==, -ENOENT);
        g_assert_cmpint(dax_sim_set_block_state(b, 5 * GiB, true, true), ==, -ENOENT);

        /* The old hook: the first n blocks online, the rest offline. */
        g_assert_cmpint(dax_sim_set_blocks_online(b, a, 4), ==, -ERANGE);
        g_assert_cmpint(dax_sim_set_blocks_online(b, a, 2), ==, 0);
        g_assert_cmpint(block_state(b, a, m), ==, 2);
        g_assert_cmpint(block_state(b, a, m + 1), ==, 2);
        g_assert_cmpint(block_state(b, a, m + 2), ==, 0);
        g_assert_cmpint(dax_sim_set_blocks_online(b, a, 0), ==, 0);

        g_assert_cmpint(b->ops->unbind(b, a), ==, 0);
        /* Unbound, the blocks are gone. */
        g_assert_cmpint(b->ops->set_memory_block(b, m, true, 0), ==, -ENOENT);
        g_assert_cmpint(dax_sim_set_block_state(b, r.start, true, true), ==, -ENOENT);

        dax_backend_free(b);
}

static void test_kmem_pins(void) {
        DaxSimPin pins[] = { { .phys = 4 * GiB + 300 * MiB, .pin = DAX_SIM_BLOCK_HANG } };
        DaxBackend *b = sim_new_options(&(DaxSimOptions) { .pins = pins, .n_pins = G_N_ELEMENTS(pins) });
        DaxRange r = { .start = 4 * GiB, .size = 512 * MiB };
        char a[DAX_NAME_MAX];

        /* Pins belong to memory: set before kmem adds the block. */
        g_assert_cmpint(dax_sim_set_block_pin(b, 4 * GiB + 5, DAX_SIM_BLOCK_BUSY), ==, 0);
        g_assert_cmpint(dax_sim_set_block_pin(b, 6 * GiB, DAX_SIM_BLOCK_BUSY), ==, -ENOENT);
        g_assert_cmpint(dax_sim_set_block_pin(b, 4 * GiB, (DaxSimBlockPin) 7), ==, -EINVAL);

        make_device(b, 0, &r, 1, a);
        g_assert_cmpint(b->ops->bind_kmem(b, a), ==, 0);
        g_assert_cmpint(dax_sim_set_blocks_online(b, a, 4), ==, 0);

        /* Busy: refused at once, the block stays online. */
        g_assert_cmpint(b->ops->set_memory_block(b, 32, false, 1000), ==, -EBUSY);
        g_assert_cmpint(block_state(b, a, 32), ==, 2);
        /* Hang: runs into the timeout, the block stays online. */
        g_assert_cmpint(b->ops->set_memory_block(b, 34, false, 1000), ==, -ETIMEDOUT);
        g_assert_cmpint(b->ops->set_memory_block(b, 34, false, UINT64_MAX), ==, -ETIMEDOUT);
        g_assert_cmpint(block_state(b, a, 34), ==, 2);
        /* Others go. */
        g_assert_cmpint(b->ops->set_memory_block(b, 33, false, 1000), ==, 0);
        g_assert_cmpint(b->ops->set_memory_block(b, 35, false, 1000), ==, 0);
        g_assert_cmpint(b->ops->unbind(b, a), ==, -EBUSY);

        /* Another agent ignores pins; pins only hold offlining. */
        g_assert_cmpint(dax_sim_set_block_state(b, 32 * BLOCK, false, false), ==, 0);
        g_assert_cmpint(block_state(b, a, 32), ==, 0);
        g_assert_cmpint(b->ops->set_memory_block(b, 32, true, 0), ==, 0);
        g_assert_cmpint(b->ops->set_memory_block(b, 32, false, 1000), ==, -EBUSY);

        /* Unpinned, they go. */
        g_assert_cmpint(dax_sim_set_block_pin(b, 32 * BLOCK, DAX_SIM_BLOCK_MOVABLE), ==, 0);
        g_assert_cmpint(dax_sim_set_block_pin(b, 34 * BLOCK, DAX_SIM_BLOCK_MOVABLE), ==, 0);
        g_assert_cmpint(b->ops->set_memory_block(b, 32, false, 1000), ==, 0);
        g_assert_cmpint(b->ops->set_memory_block(b, 34, false, 1000), ==, 0);
        g_assert_cmpint(b->ops->unbind(b, a), ==, 0);
        dax_backend_free(b);

        /* Pins in the backend string. */
        b = NULL;
        g_assert_cmpint(dax_backend_new_from_string("sim:" SPEC ";pin=4G:busy,0x108000000:hang;autoonline=online_movable", &b),
                        ==, 0);
        make_device(b, 0, &r, 1, a);
        g_assert_cmpint(b->ops->bind_kmem(b, a), ==, 0);
        g_assert_cmpint(b->ops->set_memory_block(b, 32, false, 1000), ==, -EBUSY);
        g_assert_cmpint(b->ops->set_memory_block(b, 33, false, 1000), ==, -ETIMEDOUT);
        g_assert_cmpint(b->ops->set_memory_block(b, 34, false, 1000), ==, 0);
        dax_backend_free(b);
}

static void test_backend_string(void) {
        static const char *const bad[] = {
                "sim:",
                "sim:" SPEC ";autoonline=sometimes",
                "sim:" SPEC ";autoonline=",
                "sim:" SPEC ";pin=",
                "sim:" SPEC ";pin=4G",
                "sim:" SPEC ";pin=4G:none",
                "sim:" SPEC ";pin=4G:busy,",
                "sim:" SPEC ";pin=4Q:busy",
                "sim:" SPEC ";pin=3G:busy",
                "sim:" SPEC ";boot=warm",
                "sim:" SPEC ";speed=fast",
                "simulator",
        };
        DaxBackend *b = NULL;

        for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
                g_assert_cmpint(dax_backend_new_from_string(bad[i], &b), ==, -EINVAL);
                g_assert_null(b);
        }
        g_assert_cmpint(dax_backend_new_from_string("sim:" SPEC ";boot=kmem-offline;pin=4G:busy;pin=8G:hang", &b), ==, 0);
        g_assert_cmpint(get(b, "dax1.0").driver, ==, DAX_DRIVER_KMEM);
        dax_backend_free(b);
}

/* The bytes of memory the host had: data appears when a block goes online,
 * and stays after the block is back, for the broker to zero. */
static void test_kmem_host_data(void) {
        DaxBackend *b = sim_new("idle", NULL);
        DaxRange r = { .start = 4 * GiB + 256 * MiB, .size = 256 * MiB };
        char a[DAX_NAME_MAX];

        make_device(b, 0, &r, 1, a);
        g_assert_cmpint(b->ops->bind_kmem(b, a), ==, 0);
        g_assert_cmpint(b->ops->set_memory_block(b, BLOCK_AT(r.start) + 1, true, 0), ==, 0);
        g_assert_cmpint(b->ops->set_memory_block(b, BLOCK_AT(r.start) + 1, false, 1000), ==, 0);
        g_assert_cmpint(b->ops->unbind(b, a), ==, 0);
        g_assert_cmpint(b->ops->set_size(b, a, 0), ==, 0);
        g_assert_cmpint(b->ops->delete_device(b, a), ==, 0);

        g_assert_false(host_data_at(b, 0, r.start));
        g_assert_true(host_data_at(b, 0, r.start + BLOCK));

        /* An agent onlining it writes too. */
        make_device(b, 0, &r, 1, a);
        g_assert_cmpint(b->ops->bind_kmem(b, a), ==, 0);
        g_assert_cmpint(dax_sim_set_block_state(b, r.start, true, false), ==, 0);
        g_assert_cmpint(dax_sim_set_block_state(b, r.start, false, false), ==, 0);
        g_assert_cmpint(b->ops->unbind(b, a), ==, 0);
        g_assert_cmpint(b->ops->set_size(b, a, 0), ==, 0);
        g_assert_true(host_data_at(b, 0, r.start));

        dax_backend_free(b);
}

static void assert_same_devices(DaxBackend *x, DaxBackend *y, unsigned region) {
        DaxDeviceInfo *a = NULL, *c = NULL;
        size_t na = 0, nc = 0;

        g_assert_cmpint(x->ops->list_devices(x, region, &a, &na), ==, 0);
        g_assert_cmpint(y->ops->list_devices(y, region, &c, &nc), ==, 0);
        g_assert_cmpuint(na, ==, nc);
        for (size_t i = 0; i < na; i++) {
                g_assert_cmpstr(a[i].name, ==, c[i].name);
                g_assert_cmpuint(a[i].size, ==, c[i].size);
                g_assert_cmpuint(a[i].align, ==, c[i].align);
                g_assert_cmpint(a[i].driver, ==, c[i].driver);
                g_assert_cmpuint(a[i].mem_blocks_online, ==, c[i].mem_blocks_online);
                g_assert_cmpuint(a[i].n_ranges, ==, c[i].n_ranges);
                g_assert_cmpmem(a[i].ranges, a[i].n_ranges * sizeof(DaxRange), c[i].ranges,
                                c[i].n_ranges * sizeof(DaxRange));
                if (a[i].driver == DAX_DRIVER_KMEM) {
                        _cleanup_free_ DaxMemBlock *ba = NULL, *bc = NULL;
                        size_t nba = blocks_of(x, a[i].name, &ba), nbc = blocks_of(y, c[i].name, &bc);

                        g_assert_cmpmem(ba, nba * sizeof(DaxMemBlock), bc, nbc * sizeof(DaxMemBlock));
                }
        }
        free(a);
        free(c);
}

/* A daemon restart (no reboot) right now must find the same layout,
 * whatever boot mode it asks for. */
static void assert_restart_same(DaxBackend *b, const char *state) {
        DaxBackend *b2 = NULL;
        g_autofree char *id = b->ops->boot_id(b), *id2 = NULL;

        g_assert_cmpint(dax_sim_new(SPEC, "devdax", state, &b2), ==, 0);
        /* A restart of the daemon is not a reboot of the model. */
        id2 = b2->ops->boot_id(b2);
        g_assert_cmpstr(id2, ==, id);
        assert_same_devices(b, b2, 0);
        assert_same_devices(b, b2, 1);
        g_assert_cmpuint(available(b2, 0), ==, available(b, 0));
        g_assert_cmpuint(available(b2, 1), ==, available(b, 1));
        dax_backend_free(b2);
}

/* Removes the files in which the model keeps the memory's bytes. */
static void rm_mem_dir(const char *state) {
        g_autofree char *mem = g_strconcat(state, ".mem", NULL);
        g_autoptr(GDir) d = g_dir_open(mem, 0, NULL);
        const char *e;

        while (d && (e = g_dir_read_name(d))) {
                g_autofree char *path = g_build_filename(mem, e, NULL);

                g_assert_cmpint(g_unlink(path), ==, 0);
        }
        if (d)
                g_assert_cmpint(g_rmdir(mem), ==, 0);
}

static void test_persistence(void) {
        g_autofree char *dir = g_dir_make_tmp("dax-sim-XXXXXX", NULL);
        g_autofree char *state = g_build_filename(dir, "state.json", NULL);
        DaxRange r[] = {
                { .start = 4 * GiB + 1 * GiB - 256 * MiB, .size = 128 * MiB },
                { .start = 4 * GiB, .size = 64 * MiB },
        };
        DaxBackend *b;
        char a[DAX_NAME_MAX], c[DAX_NAME_MAX], d[DAX_NAME_MAX];

        g_assert_nonnull(dir);

        /* A missing file is a fresh boot in the given mode, with a boot id
         * of its own, on record at once. */
        b = sim_new("kmem-online", state);
        g_assert_true(g_file_test(state, G_FILE_TEST_EXISTS));
        g_assert_cmpuint(get(b, "dax1.0").mem_blocks_online, ==, 8);
        {
                g_autofree char *id = b->ops->boot_id(b), *other = NULL;
                g_autofree char *dir2 = g_dir_make_tmp("dax-sim-XXXXXX", NULL);
                g_autofree char *state2 = g_build_filename(dir2, "state.json", NULL);
                DaxBackend *b2 = sim_new("kmem-online", state2);

                g_assert_true(g_uuid_string_is_valid(id));
                other = b2->ops->boot_id(b2);
                g_assert_cmpstr(other, !=, id);
                dax_backend_free(b2);
                g_assert_cmpint(g_unlink(state2), ==, 0);
                rm_mem_dir(state2);
                g_assert_cmpint(g_rmdir(dir2), ==, 0);
        }

        /* Every mutating operation is saved before it returns. */
        g_assert_cmpint(dax_sim_set_blocks_online(b, "dax1.0", 3), ==, 0);
        assert_restart_same(b, state);
        g_assert_cmpint(dax_sim_set_blocks_online(b, "dax0.0", 0), ==, 0);
        assert_restart_same(b, state);
        g_assert_cmpint(b->ops->unbind(b, "dax0.0"), ==, 0);
        assert_restart_same(b, state);
        g_assert_cmpint(b->ops->set_size(b, "dax0.0", 0), ==, 0);
        assert_restart_same(b, state);
        g_assert_cmpint(b->ops->create_device(b, 0, a), ==, 0);
        assert_restart_same(b, state);
        for (size_t i = 0; i < G_N_ELEMENTS(r); i++) {
                g_assert_cmpint(b->ops->add_mapping(b, a, r[i].start, r[i].size), ==, 0);
                assert_restart_same(b, state);
        }
        g_assert_cmpint(b->ops->bind_device_dax(b, a), ==, 0);
        assert_restart_same(b, state);
        g_assert_cmpint(b->ops->create_device(b, 0, c), ==, 0);
        g_assert_cmpint(b->ops->set_align(b, c, 4 * KiB), ==, 0);
        assert_restart_same(b, state);
        g_assert_cmpint(b->ops->create_device(b, 0, d), ==, 0);
        g_assert_cmpint(b->ops->set_size(b, d, 2 * MiB), ==, 0);
        assert_restart_same(b, state);
        g_assert_cmpint(b->ops->delete_device(b, c), ==, 0);
        assert_restart_same(b, state);
        /* Bytes written through a mapping outlive the daemon, as memory
         * outlives it: the backend goes away without an unbind. */
        {
                int fd = b->ops->open_device(b, a);
                char *m;

                g_assert_cmpint(fd, >=, 0);
                m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
                g_assert_true(m != MAP_FAILED);
                memset(m, 0x5c, 4096);
                munmap(m, 4096);
                close(fd);
        }
        dax_backend_free(b);

        /* Restarted: kmem blocks are still online, the freed instance
         * number is still the lowest free one, and the bytes are there. */
        b = sim_new("idle", state);
        g_assert_cmpuint(get(b, "dax1.0").mem_blocks_online, ==, 3);
        g_assert_cmpint(b->ops->unbind(b, "dax1.0"), ==, -EBUSY);
        g_assert_cmpint(get(b, a).driver, ==, DAX_DRIVER_DEVICE_DAX);
        {
                int fd = b->ops->open_device(b, a);
                char page[4096], want[4096];

                memset(want, 0x5c, sizeof(want));
                g_assert_cmpint(fd, >=, 0);
                g_assert_cmpint(pread(fd, page, sizeof(page), 0), ==, (ssize_t) sizeof(page));
                g_assert_cmpmem(page, sizeof(page), want, sizeof(want));
                close(fd);
        }
        g_assert_cmpint(b->ops->create_device(b, 0, c), ==, 0);
        g_assert_cmpstr(c, ==, "dax0.2");
        dax_backend_free(b);

        /* A broken or inconsistent file is an error, not a silent reboot. */
        b = NULL;
        g_assert_true(g_file_set_contents(state, "{\"version\": 1, \"regions\": [", -1, NULL));
        g_assert_cmpint(dax_sim_new(SPEC, "idle", state, &b), ==, -EBADMSG);
        g_assert_true(g_file_set_contents(state, "{\"version\": 1, \"regions\": [{\"id\": 7, \"devices\": []}]}", -1, NULL));
        g_assert_cmpint(dax_sim_new(SPEC, "idle", state, &b), ==, -EBADMSG);
        g_assert_true(g_file_set_contents(state,
                                          "{\"version\": 1, \"regions\": [{\"id\": 0, \"devices\": ["
                                          "{\"instance\": 0, \"driver\": \"none\", \"align\": 2097152, \"blocks_online\": 0,"
                                          " \"ranges\": [{\"start\": 4294967296, \"size\": 4194304}]},"
                                          "{\"instance\": 1, \"driver\": \"none\", \"align\": 2097152, \"blocks_online\": 0,"
                                          " \"ranges\": [{\"start\": 4296015872, \"size\": 4194304}]}]}]}",
                                          -1, NULL));
        g_assert_cmpint(dax_sim_new(SPEC, "idle", state, &b), ==, -EBADMSG);
        g_assert_true(g_file_set_contents(state,
                                          "{\"version\": 1, \"regions\": [{\"id\": 0, \"devices\": ["
                                          "{\"instance\": 0, \"driver\": 3, \"align\": 2097152, \"blocks_online\": 0,"
                                          " \"ranges\": []}]}]}",
                                          -1, NULL));
        g_assert_cmpint(dax_sim_new(SPEC, "idle", state, &b), ==, -EBADMSG);
        g_assert_null(b);

        g_assert_cmpint(g_unlink(state), ==, 0);
        rm_mem_dir(state);
        g_assert_cmpint(g_rmdir(dir), ==, 0);
}

static void test_kmem_persistence(void) {
        g_autofree char *dir = g_dir_make_tmp("dax-sim-XXXXXX", NULL);
        g_autofree char *state = g_build_filename(dir, "state.json", NULL);
        DaxRange r[] = {
                { .start = 4 * GiB + 512 * MiB, .size = 256 * MiB },
                { .start = 4 * GiB + 64 * MiB, .size = 192 * MiB },
        };
        DaxSimOptions o = { .state_path = state };
        DaxBackend *b = sim_new_options(&o), *b2 = NULL;
        char a[DAX_NAME_MAX];

        g_assert_nonnull(dir);

        /* Every change of block state or pin is saved before it returns. */
        make_device(b, 0, r, G_N_ELEMENTS(r), a);
        g_assert_cmpint(b->ops->bind_kmem(b, a), ==, 0);
        assert_restart_same(b, state);
        g_assert_cmpint(b->ops->set_memory_block(b, 36, true, 0), ==, 0);
        assert_restart_same(b, state);
        g_assert_cmpint(dax_sim_set_block_state(b, 33 * BLOCK, true, false), ==, 0);
        assert_restart_same(b, state);
        g_assert_cmpint(dax_sim_set_block_pin(b, 36 * BLOCK, DAX_SIM_BLOCK_BUSY), ==, 0);
        g_assert_cmpint(dax_sim_set_block_pin(b, 39 * BLOCK, DAX_SIM_BLOCK_HANG), ==, 0);
        g_assert_cmpint(dax_sim_set_blocks_online(b, "dax1.0", 0), ==, -ENXIO);
        dax_backend_free(b);

        /* Restarted: states, zones and pins are back, and the host's data
         * is in its blocks again (bytes do not survive, its use does). */
        b = sim_new_options(&o);
        g_assert_cmpint(block_state(b, a, 33), ==, 1);
        g_assert_cmpint(block_state(b, a, 36), ==, 2);
        g_assert_cmpint(block_state(b, a, 37), ==, 0);
        g_assert_cmpuint(get(b, a).mem_blocks_online, ==, 2);
        g_assert_cmpint(b->ops->set_memory_block(b, 36, false, 1000), ==, -EBUSY);
        g_assert_cmpint(b->ops->set_memory_block(b, 33, false, 1000), ==, 0);
        g_assert_cmpint(dax_sim_set_block_pin(b, 36 * BLOCK, DAX_SIM_BLOCK_MOVABLE), ==, 0);
        g_assert_cmpint(b->ops->set_memory_block(b, 36, false, 1000), ==, 0);
        g_assert_cmpint(b->ops->unbind(b, a), ==, 0);
        g_assert_cmpint(b->ops->set_size(b, a, 0), ==, 0);
        g_assert_true(host_data_at(b, 0, 36 * BLOCK));
        g_assert_true(host_data_at(b, 0, 33 * BLOCK));
        g_assert_false(host_data_at(b, 0, 37 * BLOCK));
        dax_backend_free(b);

        /* The pin of a block no device holds survives too; option pins add
         * to the file's. */
        o.pins = &(DaxSimPin) { .phys = 32 * BLOCK, .pin = DAX_SIM_BLOCK_BUSY };
        o.n_pins = 1;
        b = sim_new_options(&o);
        o.pins = NULL;
        o.n_pins = 0;
        dax_backend_free(b);
        b = sim_new_options(&o);
        make_device(b, 0, &(DaxRange) { .start = 4 * GiB, .size = 1 * GiB }, 1, a);
        g_assert_cmpint(b->ops->bind_kmem(b, a), ==, 0);
        g_assert_cmpint(dax_sim_set_blocks_online(b, a, 8), ==, 0);
        g_assert_cmpint(b->ops->set_memory_block(b, 32, false, 1000), ==, -EBUSY);
        g_assert_cmpint(b->ops->set_memory_block(b, 39, false, 1000), ==, -ETIMEDOUT);
        g_assert_cmpint(b->ops->set_memory_block(b, 38, false, 1000), ==, 0);
        dax_backend_free(b);

        /* A version 1 file (a count of online blocks per device, the first
         * ones in range order) migrates. */
        g_assert_true(g_file_set_contents(state,
                                          "{\"version\": 1, \"regions\": [{\"id\": 0, \"devices\": ["
                                          "{\"instance\": 0, \"driver\": \"none\", \"align\": 2097152, \"blocks_online\": 0,"
                                          " \"ranges\": []},"
                                          "{\"instance\": 1, \"driver\": \"kmem\", \"align\": 2097152, \"blocks_online\": 2,"
                                          " \"ranges\": [{\"start\": 4831838208, \"size\": 268435456},"
                                          " {\"start\": 4362076160, \"size\": 201326592}]}]},"
                                          " {\"id\": 1, \"devices\": [{\"instance\": 0, \"driver\": \"none\","
                                          " \"align\": 2097152, \"blocks_online\": 0, \"ranges\": []}]}]}",
                                          -1, NULL));
        b = sim_new_options(&o);
        g_assert_cmpuint(get(b, "dax0.1").mem_blocks, ==, 3);
        g_assert_cmpint(block_state(b, "dax0.1", 36), ==, 2);
        g_assert_cmpint(block_state(b, "dax0.1", 37), ==, 2);
        g_assert_cmpint(block_state(b, "dax0.1", 33), ==, 0);
        assert_restart_same(b, state);
        dax_backend_free(b);

        /* Block states the kernel could not have: online without a kmem
         * device, movable while offline, off a block boundary, twice. */
        {
                static const char *const bad[] = {
                        "{\"start\": 4294967296, \"online\": true, \"movable\": true, \"pin\": \"none\"}",
                        "{\"start\": 4429185024, \"online\": false, \"movable\": true, \"pin\": \"none\"}",
                        "{\"start\": 4429185025, \"online\": false, \"movable\": false, \"pin\": \"busy\"}",
                        "{\"start\": 4429185024, \"online\": false, \"movable\": false, \"pin\": \"stuck\"}",
                        "{\"start\": 4429185024, \"online\": 1, \"movable\": false, \"pin\": \"none\"}",
                        "{\"start\": 8589934592, \"online\": false, \"movable\": false, \"pin\": \"busy\"}",
                        ("{\"start\": 4429185024, \"online\": true, \"movable\": false, \"pin\": \"none\"},"
                         " {\"start\": 4429185024, \"online\": true, \"movable\": false, \"pin\": \"none\"}"),
                };

                for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
                        g_autofree char *json = g_strdup_printf(
                                "{\"version\": 2, \"regions\": [{\"id\": 0, \"devices\": ["
                                "{\"instance\": 0, \"driver\": \"none\", \"align\": 2097152, \"ranges\": []},"
                                "{\"instance\": 1, \"driver\": \"kmem\", \"align\": 2097152,"
                                " \"ranges\": [{\"start\": 4429185024, \"size\": 134217728}]}],"
                                " \"blocks\": [%s]}]}",
                                bad[i]);

                        g_assert_true(g_file_set_contents(state, json, -1, NULL));
                        g_assert_cmpint(dax_sim_new_with_options(SPEC, &o, &b2), ==, -EBADMSG);
                        g_assert_null(b2);
                }
        }
        g_assert_true(g_file_set_contents(state, "{\"version\": 3, \"regions\": []}", -1, NULL));
        g_assert_cmpint(dax_sim_new_with_options(SPEC, &o, &b2), ==, -EBADMSG);

        g_assert_cmpint(g_unlink(state), ==, 0);
        rm_mem_dir(state);
        g_assert_cmpint(g_rmdir(dir), ==, 0);
}

typedef struct Worker {
        DaxBackend *b;
        unsigned region;
} Worker;

static void *churn(void *p) {
        Worker *w = p;

        for (unsigned k = 0; k < 200; k++) {
                char name[DAX_NAME_MAX];

                g_assert_cmpint(w->b->ops->create_device(w->b, w->region, name), ==, 0);
                g_assert_cmpint(w->b->ops->set_size(w->b, name, 2 * MiB * (k % 8 + 1)), ==, 0);
                g_assert_cmpint(w->b->ops->bind_device_dax(w->b, name), ==, 0);
                g_assert_cmpint(w->b->ops->unbind(w->b, name), ==, 0);
                g_assert_cmpint(w->b->ops->set_size(w->b, name, 0), ==, 0);
                g_assert_cmpint(w->b->ops->delete_device(w->b, name), ==, 0);
        }
        return NULL;
}

static void test_threads(void) {
        DaxBackend *b = sim_new("idle", NULL);
        Worker w[2] = { { b, 0 }, { b, 1 } };
        GThread *t[2];

        for (unsigned i = 0; i < 2; i++)
                t[i] = g_thread_new("churn", churn, &w[i]);
        for (unsigned i = 0; i < 2; i++)
                g_thread_join(t[i]);
        g_assert_cmpuint(available(b, 0), ==, 1 * GiB);
        g_assert_cmpuint(available(b, 1), ==, 1 * GiB);

        dax_backend_free(b);
}

int main(int argc, char **argv) {
        g_test_init(&argc, &argv, NULL);

        g_test_add_func("/sim/spec", test_spec);
        g_test_add_func("/sim/boot-modes", test_boot_modes);
        g_test_add_func("/sim/lookup-enodev", test_lookup);
        g_test_add_func("/sim/create-delete", test_create_delete);
        g_test_add_func("/sim/size/rules", test_size_rules);
        g_test_add_func("/sim/size/first-fit-and-shrink", test_size_first_fit_and_shrink);
        g_test_add_func("/sim/mapping/rules", test_mapping_rules);
        g_test_add_func("/sim/mapping/range-limit", test_mapping_limit);
        g_test_add_func("/sim/align/rules", test_align_rules);
        g_test_add_func("/sim/bind/rules", test_bind_rules);
        g_test_add_func("/sim/bind/misaligned-start", test_bind_misaligned_start);
        g_test_add_func("/sim/kmem/one-shot", test_kmem_one_shot);
        g_test_add_func("/sim/open/mmap-read-back", test_open_mmap);
        g_test_add_func("/sim/in-use-hook", test_in_use_hook);
        g_test_add_func("/sim/persistence", test_persistence);
        g_test_add_func("/sim/kmem/bind-rules", test_kmem_bind_rules);
        g_test_add_func("/sim/kmem/autoonline", test_kmem_autoonline);
        g_test_add_func("/sim/kmem/block-list", test_kmem_block_list);
        g_test_add_func("/sim/kmem/online-offline", test_kmem_online_offline);
        g_test_add_func("/sim/kmem/pins", test_kmem_pins);
        g_test_add_func("/sim/kmem/host-data", test_kmem_host_data);
        g_test_add_func("/sim/kmem/persistence", test_kmem_persistence);
        g_test_add_func("/sim/backend-string", test_backend_string);
        g_test_add_func("/sim/threads", test_threads);

        return g_test_run();
}
