/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * test-sysfs-backend: drives every DaxBackendOps call of the sysfs backend
 * against a real kernel's /sys/bus/dax and checks the kernel's answers
 * (placement, errno, memory contents, kmem memory blocks). Destructive: it
 * takes over every dax region, so it runs inside the QEMU rig
 * (tests/vm/run-vm.sh), never on a host (outside the rig it exits 77,
 * skip). Inside the rig, a missing dax bus, root or memory hotplug is a
 * failure. With memory offline at boot (DAXRIG_MEMHP=offline) every region
 * must be taken over and every kmem step must work, so a test that could
 * not run fails rather than ending in a note; with the distribution's
 * default (regions online as host RAM) memory that refuses to go offline is
 * an outcome, noted.
 *
 * Output: one "ok - ..." or "not ok - ..." line per check, "# ..." notes.
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "dax-backend.h"
#include "util.h"

#define SKIP 77

static unsigned n_failed, n_passed;
/* Memory is offline at boot: nothing may be left untested. */
static bool strict;

static void check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(bool ok, const char *fmt, ...) {
        va_list ap;

        printf("%s - ", ok ? "ok" : "not ok");
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        printf("\n");
        fflush(stdout);
        if (ok)
                n_passed++;
        else
                n_failed++;
}

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...) {
        va_list ap;

        printf("# ");
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        printf("\n");
        fflush(stdout);
}

/* A part of the test cannot go on: a failure where memory is offline at
 * boot, else a note. */
static void cannot(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void cannot(const char *fmt, ...) {
        va_list ap;

        printf(strict ? "not ok - " : "# ");
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        printf("\n");
        fflush(stdout);
        if (strict)
                n_failed++;
}

static const char *errname(int r) {
        static char buf[32];

        if (r >= 0) {
                snprintf(buf, sizeof(buf), "%d", r);
                return buf;
        }
        switch (-r) {
        case EBUSY:
                return "-EBUSY";
        case ENXIO:
                return "-ENXIO";
        case ENOSPC:
                return "-ENOSPC";
        case ENOMEM:
                return "-ENOMEM";
        case EINVAL:
                return "-EINVAL";
        case ENODEV:
                return "-ENODEV";
        case ENOENT:
                return "-ENOENT";
        case ETIMEDOUT:
                return "-ETIMEDOUT";
        case EOPNOTSUPP:
                return "-EOPNOTSUPP";
        default:
                snprintf(buf, sizeof(buf), "-%d", -r);
                return buf;
        }
}

#define CHECK_RC(expr, want)                                                                                   \
        ({                                                                                                     \
                int _r = (expr);                                                                               \
                check(_r == (want), "%s = %s (want %s)", #expr, errname(_r), errname(want));                   \
                _r;                                                                                            \
        })

static DaxBackend *be;
static uint64_t block_size;

static int write_memory_block(uint64_t block, const char *state) {
        char path[128];

        snprintf(path, sizeof(path), "/sys/devices/system/memory/memory%" PRIu64 "/state", block);
        return write_attr(path, state);
}

/* A block's state as sysfs has it, into buf; "" if there is no block. */
static const char *memory_block_state(uint64_t block, char *buf, size_t len) {
        _cleanup_free_ char *state = NULL;
        char path[128];

        snprintf(path, sizeof(path), "/sys/devices/system/memory/memory%" PRIu64 "/state", block);
        snprintf(buf, len, "%s", read_attr(path, &state) < 0 ? "" : state);
        return buf;
}

/* MemTotal of /proc/meminfo, in bytes; 0 if unreadable. */
static uint64_t mem_total(void) {
        _cleanup_free_ char *line = NULL;
        unsigned long long kib = 0;
        size_t allocated = 0;
        FILE *f;

        f = fopen("/proc/meminfo", "re");
        if (!f)
                return 0;
        while (getline(&line, &allocated, f) > 0)
                if (sscanf(line, "MemTotal: %llu kB", &kib) == 1)
                        break;
        fclose(f);
        return (uint64_t) kib * 1024;
}

/* Counts blocks that lie wholly in the ranges, independently of the backend. */
static void count_blocks(const DaxDeviceInfo *d, unsigned *ret_blocks, unsigned *ret_online) {
        *ret_blocks = *ret_online = 0;
        for (unsigned i = 0; i < d->n_ranges; i++)
                for (uint64_t m = round_up_u64(d->ranges[i].start, block_size) / block_size;
                     m < (d->ranges[i].start + d->ranges[i].size) / block_size; m++) {
                        char state[32];

                        if (!*memory_block_state(m, state, sizeof(state)))
                                continue;
                        (*ret_blocks)++;
                        if (strcmp(state, "offline") != 0)
                                (*ret_online)++;
                }
}

/* Whether list_memory_blocks() agrees with sysfs and with the device's
 * block counts. */
static bool blocks_match_sysfs(const char *name, const DaxMemBlock *v, size_t n) {
        DaxDeviceInfo d;
        unsigned blocks, online, listed_online = 0;
        char state[32];

        if (be->ops->get_device(be, name, &d) < 0)
                return false;
        count_blocks(&d, &blocks, &online);
        for (size_t i = 0; i < n; i++) {
                memory_block_state(v[i].id, state, sizeof(state));
                if (v[i].start != v[i].id * block_size || v[i].online != (strcmp(state, "offline") != 0) ||
                    (i > 0 && v[i].id <= v[i - 1].id))
                        return false;
                listed_online += v[i].online;
        }
        return n == blocks && listed_online == online && d.mem_blocks == blocks && d.mem_blocks_online == online;
}

/* The first block of a device's ranges that kmem added. */
static uint64_t first_block(const DaxDeviceInfo *d) {
        for (unsigned i = 0; i < d->n_ranges; i++) {
                uint64_t m = round_up_u64(d->ranges[i].start, block_size) / block_size;
                if (m < (d->ranges[i].start + d->ranges[i].size) / block_size)
                        return m;
        }
        return UINT64_MAX;
}

/* Reads new kernel messages and reports whether one contains the text. */
static bool kmsg_contains(int fd, const char *text) {
        char buf[8192];
        bool found = false;

        for (;;) {
                ssize_t n = read(fd, buf, sizeof(buf) - 1);

                if (n < 0) {
                        if (errno == EPIPE)
                                continue; /* overwritten records */
                        break;
                }
                buf[n] = 0;
                if (strstr(buf, text))
                        found = true;
        }
        return found;
}

/* "Soft Reserved" lines of /proc/iomem, for an independent look at where
 * the regions are. */
static bool iomem_soft_reserved(uint64_t start, uint64_t size) {
        _cleanup_free_ char *line = NULL;
        size_t allocated = 0;
        bool found = false;
        FILE *f;

        f = fopen("/proc/iomem", "re");
        if (!f)
                return false;
        while (getline(&line, &allocated, f) > 0) {
                unsigned long long s, e;
                char name[64];

                if (sscanf(line, " %llx-%llx : %63[^\n]", &s, &e, name) == 3 && strcmp(name, "Soft Reserved") == 0 &&
                    s == start && e - s + 1 == size)
                        found = true;
        }
        fclose(f);
        return found;
}

static bool ranges_are(const DaxDeviceInfo *d, const DaxRange *want, unsigned n) {
        if (d->n_ranges != n)
                return false;
        for (unsigned i = 0; i < n; i++)
                if (d->ranges[i].start != want[i].start || d->ranges[i].size != want[i].size)
                        return false;
        return true;
}

static int find_region(unsigned id, DaxRegionInfo *ret) {
        _cleanup_free_ DaxRegionInfo *regions = NULL;
        size_t n = 0;
        int r;

        r = be->ops->list_regions(be, &regions, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++)
                if (regions[i].id == id) {
                        *ret = regions[i];
                        return 0;
                }
        return -ENODEV;
}

static size_t count_devices(unsigned region) {
        _cleanup_free_ DaxDeviceInfo *devs = NULL;
        size_t n = 0;

        if (be->ops->list_devices(be, region, &devs, &n) < 0)
                return SIZE_MAX;
        return n;
}

/* The physical address behind a virtual one, from /proc/self/pagemap
 * (root only); 0 if the page is not present or the kernel hides it. */
static uint64_t phys_of(const void *p) {
        uint64_t entry = 0, page = (uint64_t) sysconf(_SC_PAGESIZE);
        int fd;

        fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return 0;
        if (pread(fd, &entry, sizeof(entry), (off_t) ((uintptr_t) p / page * sizeof(entry))) != sizeof(entry))
                entry = 0;
        close(fd);
        if (!(entry & (UINT64_C(1) << 63)) || (entry & ((UINT64_C(1) << 55) - 1)) == 0)
                return 0;
        return (entry & ((UINT64_C(1) << 55) - 1)) * page + (uintptr_t) p % page;
}

/* Boot state: what hmem made of each region, and the kmem guard on it.
 * Returns whether the region can be taken over. */
static bool test_boot_region(const DaxRegionInfo *reg, int kmsg) {
        char name[DAX_NAME_MAX];
        DaxDeviceInfo d;
        unsigned blocks, online;
        int r;

        snprintf(name, sizeof(name), "dax%u.0", reg->id);
        note("region %u: start %#" PRIx64 " size %#" PRIx64 " align %#" PRIx64 " available %#" PRIx64 " node %d",
             reg->id, reg->start, reg->size, reg->align, reg->available, reg->numa_node);
        check(iomem_soft_reserved(reg->start, reg->size), "region %u matches a Soft Reserved range in /proc/iomem",
              reg->id);
        check(reg->align == 2 * MiB, "region %u align is 2 MiB", reg->id);

        if (CHECK_RC(be->ops->get_device(be, name, &d), 0) < 0)
                return false;
        note("%s: size %#" PRIx64 ", driver %s, %u ranges, target node %d, %u memory blocks (%u online)", name, d.size,
             dax_driver_to_string(d.driver), d.n_ranges, d.target_node, d.mem_blocks, d.mem_blocks_online);
        check(d.target_node == reg->numa_node, "%s target node equals the region's node", name);
        if (d.size == reg->size) {
                DaxRange whole = { reg->start, reg->size };
                check(ranges_are(&d, &whole, 1), "%s covers its region exactly", name);
        }

        if (d.driver != DAX_DRIVER_KMEM)
                return true;

        count_blocks(&d, &blocks, &online);
        check(d.mem_blocks == blocks && blocks == reg->size / block_size,
              "%s: backend counts %u memory blocks, sysfs has %u", name, d.mem_blocks, blocks);
        check(d.mem_blocks_online == online, "%s: backend counts %u online blocks, sysfs has %u", name,
              d.mem_blocks_online, online);

        if (online == 0) {
                /* Put one block online, as an agent might, and see the
                 * guard refuse to strand it. */
                uint64_t m = first_block(&d) + blocks / 2;

                r = write_memory_block(m, "online_movable");
                check(r == 0, "onlining memory block %" PRIu64 ": %s", m, errname(r));
                CHECK_RC(be->ops->get_device(be, name, &d), 0);
                check(d.mem_blocks_online == 1, "%s: one block online after onlining one (%u)", name,
                      d.mem_blocks_online);
                CHECK_RC(be->ops->unbind(be, name), -EBUSY);
                CHECK_RC(be->ops->get_device(be, name, &d), 0);
                check(d.driver == DAX_DRIVER_KMEM, "%s still kmem after the refused unbind", name);
                r = write_memory_block(m, "offline");
                check(r == 0, "offlining memory block %" PRIu64 ": %s", m, errname(r));
        } else {
                CHECK_RC(be->ops->unbind(be, name), -EBUSY);
                /* Try to give the memory back the way the broker's
                 * operator would; some blocks may hold unmovable pages. */
                unsigned refused = 0;
                for (uint64_t m = first_block(&d); m < first_block(&d) + blocks; m++)
                        if (write_memory_block(m, "offline") < 0)
                                refused++;
                if (refused > 0) {
                        cannot("%s: %u of %u blocks refuse to go offline; the region stays host RAM", name, refused,
                               blocks);
                        CHECK_RC(be->ops->unbind(be, name), -EBUSY);
                        return false;
                }
        }

        CHECK_RC(be->ops->unbind(be, name), 0);
        CHECK_RC(be->ops->get_device(be, name, &d), 0);
        check(d.driver == DAX_DRIVER_NONE && d.mem_blocks == 0, "%s unbound from kmem", name);
        check(!kmsg_contains(kmsg, "cannot be hotremoved"), "no memory stranded by the kmem unbind");
        return true;
}

static void test_takeover(const DaxRegionInfo *reg) {
        char name[DAX_NAME_MAX];
        DaxRegionInfo now;

        snprintf(name, sizeof(name), "dax%u.0", reg->id);
        CHECK_RC(be->ops->unbind(be, name), 0);
        CHECK_RC(be->ops->set_size(be, name, 0), 0);
        CHECK_RC(find_region(reg->id, &now), 0);
        check(now.available == now.size, "region %u all available after shrinking %s", reg->id, name);
        check(now.start == reg->start, "region %u start %#" PRIx64 " unchanged with %s empty", reg->id, now.start,
              name);
}

/* The region start with daxR.0 partly used and space free: no zero-size
 * device to ask, so the backend makes one for a moment. */
static void test_start_probe(const DaxRegionInfo *reg) {
        char name[DAX_NAME_MAX];
        DaxRegionInfo now;
        size_t before;

        snprintf(name, sizeof(name), "dax%u.0", reg->id);
        before = count_devices(reg->id);
        CHECK_RC(be->ops->add_mapping(be, name, reg->start + 64 * MiB, 64 * MiB), 0);
        CHECK_RC(find_region(reg->id, &now), 0);
        check(now.start == reg->start, "region start %#" PRIx64 " found with %s partly used", now.start, name);
        check(count_devices(reg->id) == before, "finding the start left no device behind");
        CHECK_RC(be->ops->set_size(be, name, 0), 0);
}

static void test_errno_and_accounting(const DaxRegionInfo *reg) {
        char c[DAX_NAME_MAX], extra[DAX_NAME_MAX];
        DaxRegionInfo now;
        DaxDeviceInfo d;

        CHECK_RC(find_region(reg->id, &now), 0);
        if (CHECK_RC(be->ops->create_device(be, reg->id, c), 0) < 0)
                return;
        CHECK_RC(be->ops->set_size(be, c, now.available + 2 * MiB), -ENOSPC);
        CHECK_RC(be->ops->set_size(be, c, 3 * MiB), -EINVAL);
        CHECK_RC(be->ops->set_size(be, c, now.available), 0);
        CHECK_RC(be->ops->create_device(be, reg->id, extra), -ENOSPC);
        CHECK_RC(find_region(reg->id, &now), 0);
        check(now.available == 0 && now.start == reg->start, "region full: available 0, start still %#" PRIx64,
              now.start);
        CHECK_RC(be->ops->set_size(be, c, 0), 0);
        CHECK_RC(be->ops->delete_device(be, c), 0);
        CHECK_RC(be->ops->get_device(be, c, &d), -ENODEV);
        CHECK_RC(be->ops->delete_device(be, c), -ENXIO);
        CHECK_RC(be->ops->get_device(be, "dax99.1", &d), -ENODEV);
        CHECK_RC(be->ops->get_device(be, "dax0.01", &d), -ENODEV);
        CHECK_RC(be->ops->get_device(be, "../dax0.0", &d), -ENODEV);
        CHECK_RC(be->ops->create_device(be, 99, extra), -ENODEV);
}

/* Writes a pattern through one mapping and reads it through another. */
static bool pattern_roundtrip(const char *name, uint64_t size, uint64_t step) {
        bool ok = true;
        uint64_t *p;
        int fd;

        fd = be->ops->open_device(be, name);
        if (fd < 0)
                return false;
        p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        close(fd);
        if (p == MAP_FAILED)
                return false;
        for (uint64_t off = 0; off < size; off += step)
                p[off / 8] = off ^ UINT64_C(0x5a5a5a5a5a5a5a5a);
        p[size / 8 - 1] = UINT64_C(0xfeedface);
        munmap(p, size);

        fd = be->ops->open_device(be, name);
        if (fd < 0)
                return false;
        p = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
        close(fd);
        if (p == MAP_FAILED)
                return false;
        for (uint64_t off = 0; off < size; off += step)
                if (p[off / 8] != (off ^ UINT64_C(0x5a5a5a5a5a5a5a5a)))
                        ok = false;
        if (p[size / 8 - 1] != UINT64_C(0xfeedface))
                ok = false;
        munmap(p, size);
        return ok;
}

static void test_devices(const DaxRegionInfo *reg) {
        char a[DAX_NAME_MAX], b[DAX_NAME_MAX], seed[DAX_NAME_MAX];
        uint64_t s = reg->start, giant = round_down_u64(reg->start + reg->size - GiB, GiB);
        /* Out of order on purpose: the device must keep the order given. */
        const DaxRange want_b[] = {
                { s + 256 * MiB, 64 * MiB },
                { s, 32 * MiB },
                { s + 514 * MiB, 6 * MiB },
        };
        const DaxRange want_a[] = { { giant, GiB } };
        uint64_t size_b = dax_ranges_size(want_b, 3);
        DaxRegionInfo now;
        DaxDeviceInfo d;
        uint64_t *p;
        int fd;

        snprintf(seed, sizeof(seed), "dax%u.0", reg->id);
        if (giant < reg->start || giant < s + 520 * MiB) {
                check(false, "region %u too small for the device tests", reg->id);
                return;
        }

        /* Device a: one 1 GiB range on a 1 GiB boundary, align 1 GiB. */
        if (CHECK_RC(be->ops->create_device(be, reg->id, a), 0) < 0)
                return;
        CHECK_RC(be->ops->get_device(be, a, &d), 0);
        check(d.instance > 0 && d.region_id == reg->id && d.size == 0 && d.n_ranges == 0 &&
                      d.driver == DAX_DRIVER_NONE,
              "new device %s is empty and unbound", a);
        CHECK_RC(be->ops->bind_device_dax(be, a), -ENXIO);
        CHECK_RC(be->ops->set_align(be, a, GiB), 0);
        CHECK_RC(be->ops->add_mapping(be, a, giant, 2 * MiB), -ENXIO);
        CHECK_RC(be->ops->add_mapping(be, a, giant - 512 * MiB, GiB), -EINVAL);
        CHECK_RC(be->ops->add_mapping(be, a, giant, GiB), 0);
        CHECK_RC(be->ops->get_device(be, a, &d), 0);
        check(d.align == GiB && d.size == GiB && ranges_are(&d, want_a, 1), "%s holds [%#" PRIx64 ", +1G), align 1G",
              a, giant);

        /* Device b: three ranges, 2 MiB align. */
        if (CHECK_RC(be->ops->create_device(be, reg->id, b), 0) < 0)
                return;
        for (unsigned i = 0; i < 3; i++)
                CHECK_RC(be->ops->add_mapping(be, b, want_b[i].start, want_b[i].size), 0);
        CHECK_RC(be->ops->add_mapping(be, b, s + 288 * MiB, 64 * MiB), -ENOMEM);
        CHECK_RC(be->ops->add_mapping(be, b, s + 600 * MiB, 3 * MiB), -ENXIO);
        CHECK_RC(be->ops->add_mapping(be, b, s + 600 * MiB, 0), -EINVAL);
        CHECK_RC(be->ops->add_mapping(be, b, s + 601 * MiB, 2 * MiB), -EINVAL);
        CHECK_RC(be->ops->get_device(be, b, &d), 0);
        check(d.size == size_b, "refused mappings added nothing to %s", b);
        CHECK_RC(be->ops->get_device(be, b, &d), 0);
        check(ranges_are(&d, want_b, 3) && d.size == size_b && d.align == 2 * MiB,
              "%s mappingN are exactly the requested ranges, in order", b);
        CHECK_RC(find_region(reg->id, &now), 0);
        check(now.available == reg->size - GiB - size_b, "available_size %#" PRIx64 " accounts for both devices",
              now.available);

        /* Bound: the kernel checks size and align, we check mapping. */
        CHECK_RC(be->ops->bind_device_dax(be, a), 0);
        CHECK_RC(be->ops->bind_device_dax(be, b), 0);
        CHECK_RC(be->ops->bind_device_dax(be, b), 0);
        CHECK_RC(be->ops->get_device(be, b, &d), 0);
        check(d.driver == DAX_DRIVER_DEVICE_DAX && ranges_are(&d, want_b, 3), "%s bound to device_dax, ranges kept",
              b);
        CHECK_RC(be->ops->add_mapping(be, b, s + 600 * MiB, 2 * MiB), -EBUSY);
        CHECK_RC(be->ops->set_size(be, b, 2 * size_b), -EBUSY);
        CHECK_RC(be->ops->set_align(be, b, 4096), -EBUSY);
        CHECK_RC(be->ops->delete_device(be, b), -EBUSY);
        CHECK_RC(be->ops->delete_device(be, seed), -EBUSY);
        CHECK_RC(be->ops->get_device(be, b, &d), 0);
        check(ranges_are(&d, want_b, 3), "%s unchanged by the refused calls", b);

        /* Memory: MAP_SHARED write and read back through a new open. */
        check(pattern_roundtrip(b, size_b, 2 * MiB), "%s: data written through one mmap reads back through another",
              b);
        check(pattern_roundtrip(a, GiB, 128 * MiB), "%s: 1 GiB device data reads back", a);

        /* Offsets land on the ranges in the given order. */
        fd = be->ops->open_device(be, b);
        check(fd >= 0, "open_device(%s) = %s", b, errname(fd));
        if (fd < 0)
                return;
        CHECK_RC(be->ops->device_in_use(be, b), 1);
        CHECK_RC(be->ops->device_in_use(be, a), 0);
        p = mmap(NULL, size_b, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        check(p != MAP_FAILED, "mmap of %s", b);
        close(fd);
        if (p != MAP_FAILED) {
                uint64_t off = 0;

                CHECK_RC(be->ops->device_in_use(be, b), 1); /* mapped only */
                for (unsigned i = 0; i < 3; i++) {
                        uint64_t phys;

                        p[off / 8] = 1;
                        phys = phys_of((char *) p + off);
                        if (phys == 0)
                                check(false, "pagemap shows no frame for offset %#" PRIx64 " of %s: placement "
                                      "cannot be checked", off, b);
                        else
                                check(phys == want_b[i].start, "%s offset %#" PRIx64 " is physical %#" PRIx64
                                      " (want %#" PRIx64 ")", b, off, phys, want_b[i].start);
                        off += want_b[i].size;
                }
                munmap(p, size_b);
        }
        CHECK_RC(be->ops->device_in_use(be, b), 0);

        /* A mapped file that merely has the device's name is not the
         * device: device_in_use compares device numbers, not names. */
        {
                char dir[] = "/tmp/daxname.XXXXXX", path[PATH_MAX];
                int ffd;

                check(mkdtemp(dir) != NULL, "mkdtemp");
                snprintf(path, sizeof(path), "%s/%s", dir, b);
                ffd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
                check(ffd >= 0 && ftruncate(ffd, 2 * MiB) == 0, "a regular file %s", path);
                p = ffd >= 0 ? mmap(NULL, 2 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, ffd, 0) : MAP_FAILED;
                check(p != MAP_FAILED, "mmap of %s", path);
                if (ffd >= 0)
                        close(ffd);
                CHECK_RC(be->ops->device_in_use(be, b), 0);
                if (p != MAP_FAILED)
                        munmap(p, 2 * MiB);
                unlink(path);
                rmdir(dir);
        }

        /* 1 GiB alignment is honoured by mmap. */
        fd = be->ops->open_device(be, a);
        if (fd >= 0) {
                p = mmap(NULL, GiB, PROT_READ, MAP_SHARED, fd, 0);
                check(p != MAP_FAILED && (uintptr_t) p % GiB == 0, "%s maps at a 1 GiB aligned address", a);
                if (p != MAP_FAILED)
                        munmap(p, GiB);
                close(fd);
        }

        /* Tear down. */
        CHECK_RC(be->ops->unbind(be, b), 0);
        CHECK_RC(be->ops->unbind(be, b), 0);
        CHECK_RC(be->ops->get_device(be, b, &d), 0);
        check(d.driver == DAX_DRIVER_NONE, "%s unbound", b);
        CHECK_RC(be->ops->open_device(be, b), -ENXIO);
        CHECK_RC(be->ops->set_size(be, b, 0), 0);
        CHECK_RC(be->ops->get_device(be, b, &d), 0);
        check(d.size == 0 && d.n_ranges == 0, "%s has no range after size 0", b);
        CHECK_RC(be->ops->delete_device(be, b), 0);
        CHECK_RC(be->ops->get_device(be, b, &d), -ENODEV);
        CHECK_RC(be->ops->open_device(be, b), -ENODEV);
        CHECK_RC(be->ops->device_in_use(be, b), -ENODEV);
        CHECK_RC(be->ops->unbind(be, a), 0);
        CHECK_RC(be->ops->set_size(be, a, 0), 0);
        CHECK_RC(be->ops->delete_device(be, a), 0);
        CHECK_RC(find_region(reg->id, &now), 0);
        check(now.available == reg->size, "region %u all available again", reg->id);
}

/* The backend's whole hotplug cycle on two blocks: bind kmem, online,
 * offline (also with a timeout too short to finish), unbind. Returns
 * whether the region is free again. */
static bool test_kmem_hotplug(const DaxRegionInfo *reg, int kmsg) {
        uint64_t start = round_up_u64(reg->start, block_size), total_before, total_online;
        _cleanup_free_ DaxMemBlock *v = NULL;
        char k[DAX_NAME_MAX], e[DAX_NAME_MAX], state[32];
        DaxDeviceInfo d;
        size_t n = 0;
        int r;

        check(be->ops->memory_block_size(be) == block_size, "memory_block_size() = %" PRIu64 " MiB, as sysfs says",
              be->ops->memory_block_size(be) / MiB);
        if (start + 2 * block_size > reg->start + reg->size) {
                check(false, "region %u has no two whole memory blocks", reg->id);
                return false;
        }

        /* kmem refuses what it cannot hotplug. */
        if (CHECK_RC(be->ops->create_device(be, reg->id, e), 0) < 0)
                return false;
        CHECK_RC(be->ops->bind_kmem(be, e), -ENXIO);
        CHECK_RC(be->ops->get_device(be, e, &d), 0);
        check(d.driver == DAX_DRIVER_NONE, "%s (empty) still unbound", e);
        CHECK_RC(be->ops->list_memory_blocks(be, e, &v, &n), -ENXIO);
        CHECK_RC(be->ops->list_memory_blocks(be, "dax99.1", &v, &n), -ENODEV);

        if (CHECK_RC(be->ops->create_device(be, reg->id, k), 0) < 0)
                return false;
        CHECK_RC(be->ops->add_mapping(be, k, start, 2 * block_size), 0);
        total_before = mem_total();
        CHECK_RC(be->ops->bind_kmem(be, k), 0);
        CHECK_RC(be->ops->bind_kmem(be, k), 0);
        CHECK_RC(be->ops->bind_device_dax(be, k), -EBUSY);
        CHECK_RC(be->ops->get_device(be, k, &d), 0);
        check(d.driver == DAX_DRIVER_KMEM, "%s bound to kmem", k);

        if (CHECK_RC(be->ops->list_memory_blocks(be, k, &v, &n), 0) < 0)
                return false;
        check(n == 2 && v[0].start == start && v[1].id == v[0].id + 1 && blocks_match_sysfs(k, v, n),
              "%s: 2 memory blocks from %#" PRIx64 ", as sysfs has them (%zu listed)", k, start, n);
        if (n != 2)
                return false;
        if (v[0].online || v[1].online)
                note("%s: blocks came up online (auto_online_blocks)", k);

        /* Online both: the host's RAM grows. */
        for (size_t i = 0; i < n; i++) {
                CHECK_RC(be->ops->set_memory_block(be, v[i].id, true, 0), 0);
                CHECK_RC(be->ops->set_memory_block(be, v[i].id, true, 0), 0);
        }
        free(v);
        v = NULL;
        CHECK_RC(be->ops->list_memory_blocks(be, k, &v, &n), 0);
        check(n == 2 && v[0].online && v[1].online && blocks_match_sysfs(k, v, n), "%s: both blocks online", k);
        for (size_t i = 0; i < n; i++)
                note("memory%" PRIu64 ": %s", v[i].id, v[i].movable ? "ZONE_MOVABLE" : "not movable");
        total_online = mem_total();
        check(total_online >= total_before + 2 * block_size - 2 * block_size / 16,
              "MemTotal grew by %" PRIu64 " MiB (2 blocks: %" PRIu64 " MiB)", (total_online - total_before) / MiB,
              2 * block_size / MiB);
        CHECK_RC(be->ops->unbind(be, k), -EBUSY);

        /* A timeout too short for the kernel: it gives up cleanly or was
         * done in time, never leaves the block half way. */
        r = be->ops->set_memory_block(be, v[0].id, false, 1);
        memory_block_state(v[0].id, state, sizeof(state));
        check((r == 0 && strcmp(state, "offline") == 0) || (r == -ETIMEDOUT && strcmp(state, "online") == 0),
              "offlining memory%" PRIu64 " within 1 us: %s, state %s", v[0].id, errname(r), state);

        /* Offline both, with time to spare. */
        for (size_t i = 0; i < n; i++) {
                r = be->ops->set_memory_block(be, v[i].id, false, 60 * 1000 * 1000);
                if (r == -EBUSY || r == -ETIMEDOUT) {
                        cannot("memory%" PRIu64 " will not go offline (%s); %s stays kmem", v[i].id, errname(r), k);
                        return false;
                }
                check(r == 0, "offlining memory%" PRIu64 ": %s", v[i].id, errname(r));
                CHECK_RC(be->ops->set_memory_block(be, v[i].id, false, 60 * 1000 * 1000), 0);
        }
        free(v);
        v = NULL;
        CHECK_RC(be->ops->list_memory_blocks(be, k, &v, &n), 0);
        check(n == 2 && !v[0].online && !v[1].online && blocks_match_sysfs(k, v, n), "%s: both blocks offline", k);
        check(mem_total() == total_before, "MemTotal back to %" PRIu64 " MiB (%" PRIu64 " MiB)", total_before / MiB,
              mem_total() / MiB);

        CHECK_RC(be->ops->unbind(be, k), 0);
        check(!kmsg_contains(kmsg, "cannot be hotremoved"), "no memory stranded by the kmem unbind");
        CHECK_RC(be->ops->set_memory_block(be, v[0].id, true, 0), -ENOENT);
        CHECK_RC(be->ops->set_memory_block(be, UINT64_MAX / block_size, false, 1000), -ENOENT);
        CHECK_RC(be->ops->set_size(be, k, 0), 0);
        CHECK_RC(be->ops->delete_device(be, k), 0);
        CHECK_RC(be->ops->delete_device(be, e), 0);
        return true;
}

/* kmem on a device of several ranges, one not on block boundaries: the
 * block count follows kmem's trimming, and the guard holds per block.
 * Returns whether the region is free again. */
static bool test_kmem_ranges(const DaxRegionInfo *reg, int kmsg) {
        uint64_t s = reg->start;
        const DaxRange want[] = {
                { s + 512 * MiB, 256 * MiB },
                { s + GiB + 64 * MiB, 192 * MiB },
        };
        unsigned expect = 0, blocks, online;
        char k[DAX_NAME_MAX];
        DaxDeviceInfo d;
        uint64_t m;
        int r;

        for (unsigned i = 0; i < 2; i++)
                expect += (round_down_u64(want[i].start + want[i].size, block_size) -
                           round_up_u64(want[i].start, block_size)) / block_size;

        if (CHECK_RC(be->ops->create_device(be, reg->id, k), 0) < 0)
                return false;
        for (unsigned i = 0; i < 2; i++)
                CHECK_RC(be->ops->add_mapping(be, k, want[i].start, want[i].size), 0);
        CHECK_RC(be->ops->bind_kmem(be, k), 0);
        {
                _cleanup_free_ DaxMemBlock *v = NULL;
                size_t nv = 0;

                CHECK_RC(be->ops->list_memory_blocks(be, k, &v, &nv), 0);
                check(nv == expect && blocks_match_sysfs(k, v, nv),
                      "%s: list_memory_blocks gives kmem's %u blocks, in address order, as sysfs has them", k,
                      expect);
        }
        CHECK_RC(be->ops->get_device(be, k, &d), 0);
        count_blocks(&d, &blocks, &online);
        check(d.driver == DAX_DRIVER_KMEM && d.mem_blocks == expect && blocks == expect &&
                      d.mem_blocks_online == online,
              "%s: kmem with %u blocks (%u online), sysfs has %u (%u online), kmem trimming gives %u", k,
              d.mem_blocks, d.mem_blocks_online, blocks, online, expect);
        if (online > 0) {
                /* Auto-onlined (memhp default): take it offline first. */
                CHECK_RC(be->ops->unbind(be, k), -EBUSY);
                for (unsigned i = 0; i < 2; i++)
                        for (m = round_up_u64(want[i].start, block_size) / block_size;
                             m < (want[i].start + want[i].size) / block_size; m++)
                                if (write_memory_block(m, "offline") < 0) {
                                        cannot("block %" PRIu64 " refuses to go offline; %s stays kmem", m, k);
                                        return false;
                                }
        }

        /* A block of the second, trimmed range goes online. */
        m = round_up_u64(want[1].start, block_size) / block_size;
        r = write_memory_block(m, "online_movable");
        check(r == 0, "onlining block %" PRIu64 ": %s", m, errname(r));
        CHECK_RC(be->ops->get_device(be, k, &d), 0);
        check(d.mem_blocks_online == 1, "%s: 1 block online (%u)", k, d.mem_blocks_online);
        CHECK_RC(be->ops->unbind(be, k), -EBUSY);
        r = write_memory_block(m, "offline");
        check(r == 0, "offlining block %" PRIu64 ": %s", m, errname(r));
        CHECK_RC(be->ops->unbind(be, k), 0);
        check(!kmsg_contains(kmsg, "cannot be hotremoved"), "no memory stranded by the kmem unbind");
        CHECK_RC(be->ops->set_size(be, k, 0), 0);
        CHECK_RC(be->ops->delete_device(be, k), 0);

        /* The memory is usable again as device-dax. */
        if (CHECK_RC(be->ops->create_device(be, reg->id, k), 0) < 0)
                return false;
        for (unsigned i = 0; i < 2; i++)
                CHECK_RC(be->ops->add_mapping(be, k, want[i].start, want[i].size), 0);
        CHECK_RC(be->ops->bind_device_dax(be, k), 0);
        check(pattern_roundtrip(k, dax_ranges_size(want, 2), 2 * MiB), "%s: former kmem ranges usable as device-dax",
              k);
        CHECK_RC(be->ops->unbind(be, k), 0);
        CHECK_RC(be->ops->set_size(be, k, 0), 0);
        CHECK_RC(be->ops->delete_device(be, k), 0);
        return true;
}

static uint64_t now_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000 + (uint64_t) ts.tv_nsec;
}

/* Times one step into slot. */
#define STEP(slot, expr)                                                                                       \
        ({                                                                                                     \
                uint64_t _t = now_ns();                                                                        \
                int _r = (expr);                                                                               \
                (slot) = now_ns() - _t;                                                                        \
                _r;                                                                                            \
        })

enum { SPEED_CREATE, SPEED_MAPPING, SPEED_BIND, SPEED_GET, SPEED_OPEN, _SPEED_MAX };

/* The minimal program: create -> mapping -> bind -> open, by hand. */
static int raw_allocate(unsigned region, uint64_t start, uint64_t size, uint64_t t[_SPEED_MAX],
                        char name[DAX_NAME_MAX]) {
        _cleanup_free_ char *youngest = NULL;
        char create[256], path[256], value[64];
        int r;

        snprintf(create, sizeof(create), "/sys/bus/dax/devices/dax%u.0/../dax_region/create", region);
        r = STEP(t[SPEED_CREATE], write_attr(create, "1") ?: read_attr(create, &youngest));
        if (r < 0)
                return r;
        snprintf(name, DAX_NAME_MAX, "%s", youngest);
        snprintf(path, sizeof(path), "/sys/bus/dax/devices/%s/mapping", name);
        snprintf(value, sizeof(value), "%#" PRIx64 "-%#" PRIx64, start, start + size - 1);
        r = STEP(t[SPEED_MAPPING], write_attr(path, value));
        if (r < 0)
                return r;
        r = STEP(t[SPEED_BIND], write_attr("/sys/bus/dax/drivers/device_dax/bind", name) == -ENODEV
                                        ? write_attr("/sys/bus/dax/drivers/device_dax/new_id", name)
                                        : 0);
        if (r < 0)
                return r;
        snprintf(path, sizeof(path), "/dev/%s", name);
        r = STEP(t[SPEED_OPEN], open(path, O_RDWR | O_CLOEXEC));
        return r < 0 ? -errno : r;
}

static int raw_release(unsigned region, const char *name) {
        char path[256];
        int r;

        r = write_attr("/sys/bus/dax/drivers/device_dax/remove_id", name);
        if (r < 0)
                return r;
        r = write_attr("/sys/bus/dax/drivers/device_dax/unbind", name);
        if (r < 0)
                return r;
        snprintf(path, sizeof(path), "/sys/bus/dax/devices/%s/size", name);
        r = write_attr(path, "0");
        if (r < 0)
                return r;
        snprintf(path, sizeof(path), "/sys/bus/dax/devices/dax%u.0/../dax_region/delete", region);
        return write_attr(path, name);
}

static bool raw_cycle(const DaxRegionInfo *reg, uint64_t size, uint64_t t[_SPEED_MAX]) {
        char name[DAX_NAME_MAX];
        int fd, r;

        fd = raw_allocate(reg->id, reg->start, size, t, name);
        if (fd < 0) {
                check(false, "minimal create/mapping/bind/open: %s", errname(fd));
                return false;
        }
        close(fd);
        r = raw_release(reg->id, name);
        if (r < 0) {
                check(false, "minimal release: %s", errname(r));
                return false;
        }
        return true;
}

static bool backend_cycle(const DaxRegionInfo *reg, uint64_t size, uint64_t t[_SPEED_MAX]) {
        char name[DAX_NAME_MAX];
        DaxDeviceInfo d;
        int fd = -1, r;

        r = STEP(t[SPEED_CREATE], be->ops->create_device(be, reg->id, name));
        if (r >= 0)
                r = STEP(t[SPEED_MAPPING], be->ops->add_mapping(be, name, reg->start, size));
        if (r >= 0)
                r = STEP(t[SPEED_BIND], be->ops->bind_device_dax(be, name));
        if (r >= 0)
                r = STEP(t[SPEED_GET], be->ops->get_device(be, name, &d));
        if (r >= 0)
                r = fd = STEP(t[SPEED_OPEN], be->ops->open_device(be, name));
        if (r < 0) {
                check(false, "backend create/mapping/bind/get/open: %s", errname(r));
                return false;
        }
        close(fd);
        if (be->ops->unbind(be, name) < 0 || be->ops->set_size(be, name, 0) < 0 ||
            be->ops->delete_device(be, name) < 0) {
                check(false, "backend release of %s", name);
                return false;
        }
        return true;
}

#define SPEED_ROUNDS 41

static int u64_compare(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

        return x < y ? -1 : x > y;
}

/* Median of one step over all rounds: bind waits for RCU grace periods,
 * which under TCG take anything from 0.3 to 30 ms, so neither a single run
 * nor the fastest one compares two programs fairly. */
static uint64_t step_median(uint64_t t[][_SPEED_MAX], unsigned step) {
        uint64_t v[SPEED_ROUNDS];

        for (unsigned i = 0; i < SPEED_ROUNDS; i++)
                v[i] = t[i][step];
        qsort(v, SPEED_ROUNDS, sizeof(v[0]), u64_compare);
        return v[SPEED_ROUNDS / 2];
}

/* The backend's part of Allocate (create, mapping, bind, read back, open)
 * against the minimal program, taking turns at going first. Returns the
 * ratio backend/minimal, or a negative number if a round failed. */
static double measure_speed(const DaxRegionInfo *reg, uint64_t size) {
        static uint64_t raw[SPEED_ROUNDS][_SPEED_MAX], bk[SPEED_ROUNDS][_SPEED_MAX];
        uint64_t m_raw[_SPEED_MAX], m_be[_SPEED_MAX], total_raw = 0, total_be = 0;

        memset(raw, 0, sizeof(raw)); /* the minimal program has no read back */
        for (unsigned i = 0; i < SPEED_ROUNDS; i++) {
                bool ok;

                if (i % 2 == 0)
                        ok = raw_cycle(reg, size, raw[i]) && backend_cycle(reg, size, bk[i]);
                else
                        ok = backend_cycle(reg, size, bk[i]) && raw_cycle(reg, size, raw[i]);
                if (!ok) {
                        check(false, "%" PRIu64 " MiB speed round %u ran", size / MiB, i);
                        return -1;
                }
        }

        for (unsigned i = 0; i < _SPEED_MAX; i++) {
                m_raw[i] = step_median(raw, i);
                m_be[i] = step_median(bk, i);
                total_raw += m_raw[i];
                total_be += m_be[i];
        }
        note("allocate %" PRIu64 " MiB, median of %u per step, minimal/backend in ms: create %.2f/%.2f, "
             "mapping %.2f/%.2f, bind %.2f/%.2f, read back -/%.2f, open %.2f/%.2f",
             size / MiB, SPEED_ROUNDS, m_raw[SPEED_CREATE] / 1e6, m_be[SPEED_CREATE] / 1e6,
             m_raw[SPEED_MAPPING] / 1e6, m_be[SPEED_MAPPING] / 1e6, m_raw[SPEED_BIND] / 1e6, m_be[SPEED_BIND] / 1e6,
             m_be[SPEED_GET] / 1e6, m_raw[SPEED_OPEN] / 1e6, m_be[SPEED_OPEN] / 1e6);
        note("backend allocate %.2f ms, minimal %.2f ms (%.2fx)", total_be / 1e6, total_raw / 1e6,
             (double) total_be / (double) total_raw);
        return (double) total_be / (double) total_raw;
}

/* A second measurement when the first is over: one burst of load from
 * outside (a shared CI machine) can push a median past the limit, while a
 * backend that really does more work is over in both. */
/* The limit catches a backend that does a whole extra kernel round trip
 * (a second bind, a re-read per range); the 2 MiB cycle on 6.1 measures
 * about 1.31x in the rig today (the read back the minimal program skips),
 * which is the benchmarks' business (bench/), not this check's. */
#define SPEED_LIMIT 1.5

static void test_speed(const DaxRegionInfo *reg, uint64_t size) {
        double ratio = measure_speed(reg, size);

        if (ratio > SPEED_LIMIT)
                ratio = measure_speed(reg, size);
        if (ratio >= 0)
                check(ratio <= SPEED_LIMIT,
                      "%" PRIu64 " MiB: backend allocate within %.1fx of the minimal program (%.2fx)", size / MiB,
                      SPEED_LIMIT, ratio);
}

int main(int argc, char *argv[]) {
        _cleanup_free_ DaxRegionInfo *regions = NULL;
        _cleanup_close_ int kmsg = -EBADF;
        const DaxRegionInfo *usable = NULL;
        bool driver_missing;
        size_t n = 0;
        int r;

        /* It takes over every region: never on a real host. */
        if (!getenv("DAXRIG") || strcmp(getenv("DAXRIG"), "1") != 0) {
                printf("# SKIP: destructive, runs only inside tests/vm/run-vm.sh\n");
                return SKIP;
        }
        /* In the rig, these are the rig's own failures, not reasons to skip. */
        if (geteuid() != 0 || access("/sys/bus/dax/devices", F_OK) < 0) {
                printf("not ok - the rig gives root and a dax bus\n");
                return EXIT_FAILURE;
        }
        setvbuf(stdout, NULL, _IOLBF, 0);
        strict = getenv("DAXRIG_MEMHP") && strcmp(getenv("DAXRIG_MEMHP"), "offline") == 0;
        note("memory %s at boot: %s", strict ? "offline" : "online",
             strict ? "every region must be taken over" : "memory that stays online is noted");

        kmsg = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        if (kmsg >= 0)
                lseek(kmsg, 0, SEEK_END);
        {
                _cleanup_free_ char *bs = NULL;
                if (read_attr("/sys/devices/system/memory/block_size_bytes", &bs) < 0) {
                        printf("not ok - the rig's kernel has memory hotplug\n");
                        return EXIT_FAILURE;
                }
                block_size = strtoull(bs, NULL, 16);
        }
        driver_missing = access("/sys/bus/dax/drivers/device_dax", F_OK) < 0;

        r = dax_sysfs_new("/sys", "/dev", &be);
        if (r < 0) {
                printf("not ok - dax_sysfs_new: %s\n", strerror(-r));
                return EXIT_FAILURE;
        }

        CHECK_RC(be->ops->list_regions(be, &regions, &n), 0);
        check(n == 2, "%zu dax regions, the rig's 2", n);

        for (size_t i = 0; i < n; i++)
                if (test_boot_region(&regions[i], kmsg)) {
                        test_takeover(&regions[i]);
                        if (!usable)
                                usable = &regions[i];
                }

        if (!usable) {
                /* With the regions online as host RAM, the kmem guard
                 * (unbind refused while blocks are online) is what ran. */
                cannot("no region could be taken over (host RAM with unmovable pages)");
        } else {
                note("testing on region %u", usable->id);
                test_start_probe(usable);
                test_errno_and_accounting(usable);
                test_devices(usable);
                if (driver_missing)
                        check(access("/sys/bus/dax/drivers/device_dax", F_OK) == 0,
                              "device_dax was loaded on first bind");
                bool kmem_done = test_kmem_hotplug(usable, kmsg) && test_kmem_ranges(usable, kmsg);

                if (kmem_done) {
                        test_speed(usable, 2 * MiB);
                        test_speed(usable, GiB);
                }
                /* A kmem device that kept memory online stays behind. */
                if (kmem_done || strict)
                        check(count_devices(usable->id) == 1, "only dax%u.0 left", usable->id);
        }

        dax_backend_free(be);
        printf("# %u passed, %u failed\n", n_passed, n_failed);
        return n_failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
