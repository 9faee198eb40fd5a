/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * dax-sysfs: the backend contract on the real kernel, through /sys/bus/dax.
 *
 * Every change (create, delete, size, align, mapping, bind, unbind) is one
 * direct sysfs write, so callers see the kernel's own errno. Nothing about
 * regions or devices is cached: each call reads what the kernel holds now,
 * so daxctl, udev rules or an earlier run of the daemon never leave us with
 * stale objects. The only cached value is the memory block size, fixed at
 * boot. libdaxctl serves one purpose: loading device_dax when it is missing
 * (the only public way to its kmod handling), with a context made for that
 * call and dropped.
 *
 * What this relies on, read in Linux 6.1 and 6.12 drivers/dax/ and checked
 * on both kernels in the QEMU rig:
 *  - /sys/bus/dax/devices/daxR.N links into the region's parent device
 *    (hmem.R); the region's attributes sit in that parent's dax_region/, so
 *    "daxR.0/../dax_region" reaches them without a readlink (the kernel
 *    resolves ".." after following the link). A dynamic region never loses
 *    daxR.0 (delete_store() refuses id 0). Static regions (pmem namespaces)
 *    have no "create" and cannot be carved: they are not listed.
 *  - Region start: no attribute holds it. A device's "resource" shows the
 *    region's start while the device has no range (resource_show() falls
 *    back to dax_region->res.start), so a zero-size device answers; with
 *    available_size 0 the ranges tile the region and the lowest one starts
 *    it; otherwise a zero-size device is created for a moment. /proc/iomem
 *    is no help: hmem.R owns no resource there on 6.1 or 6.12 (only the
 *    Soft Reserved range, which HMAT may split into several regions).
 *  - NUMA node: every device of a region shows the region's target_node
 *    (hidden when negative); the parent platform device's numa_node is the
 *    fallback (the nearest online node, hmem_register_device()).
 *  - Ranges: mappingN/{start,end}, hex, end inclusive, N in range order.
 *  - kmem hotplugs the memory blocks that lie wholly inside each range
 *    (dev_dax_kmem_range() trims to block boundaries); unbinding kmem while
 *    one of them is online loses that range until reboot. Since 6.3 hmem
 *    regions come up bound to kmem (on Debian's 6.12 with every block
 *    online unless memhp_default_state=offline): such a device is reported
 *    as kmem with its block counts, and unbind() refuses it until every
 *    block is offline.
 *  - Binding: 6.1's kmem matches only the names in its id list ("bind"
 *    says ENODEV, "new_id" attaches just that name); 6.3+ matches every
 *    device of an hmem region by type, so "bind" works and "new_id" would
 *    grab every unbound device of the region. Hence "bind" first, for both
 *    drivers.
 *  - Memory blocks: memoryN/state reads "online", "offline" or
 *    "going-offline"; valid_zones names the zone of an online block.
 *    Writing "offline" can retry migration for as long as no signal is
 *    pending (offline_pages()), so set_memory_block() bounds it with a
 *    POSIX timer signalling the writing thread with SIGRTMIN+2. That
 *    signal gets a no-op handler the first time: the process must not use
 *    it for anything else.
 */

#include <ctype.h>
#include <daxctl/libdaxctl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "dax-backend.h"
#include "host-zeroing.h"
#include "util.h"

/* devtmpfs creates the node before device_add() returns; the retry only
 * covers a /dev that some other agent (udev in a container) populates. */
#define OPEN_RETRY_USEC (10 * 1000)
#define OPEN_RETRIES 50

/* memremap_compat_align() on x86-64: the smallest unit of a range. */
#define DAX_SUBSECTION (2 * MiB)

/* Interrupts a memory block's offlining when its timeout is up: the kernel
 * checks for a pending signal between its migration passes. */
#define OFFLINE_SIGNAL (SIGRTMIN + 2)
/* After the timeout the signal comes again this often, so that one that
 * arrived just before the write (and was handled in user space) is no
 * loss. */
#define OFFLINE_RESIGNAL_NSEC (1000 * 1000)

#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif

typedef struct SysfsBackend {
        DaxBackend backend;
        char *sysfs;         /* "/sys" */
        char *dev;           /* "/dev" */
        uint64_t block_size; /* memory block size; 0 without memory hotplug */
        /* Writing "create" and reading back the youngest device must not
         * interleave with another create of ours in the same region. */
        pthread_mutex_t create_lock;
} SysfsBackend;

/* One device name seen on the bus. */
typedef struct DaxId {
        unsigned region;
        unsigned instance;
} DaxId;

static inline void closedirp(DIR **d) {
        if (*d)
                closedir(*d);
}
static inline void fclosep(FILE **f) {
        if (*f)
                fclose(*f);
}
#define _cleanup_closedir_ _cleanup_(closedirp)
#define _cleanup_fclose_ _cleanup_(fclosep)

static int pathf(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int pathf(char *buf, size_t len, const char *fmt, ...) {
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(buf, len, fmt, ap);
        va_end(ap);
        if (n < 0 || (size_t) n >= len)
                return -ENAMETOOLONG;
        return 0;
}

/* Parses "daxR.N" exactly as the kernel prints it (no signs, spaces or
 * leading zeros), which also keeps names from walking out of the sysfs
 * directories they are pasted into. Unknown names are -ENODEV, like a
 * device that does not exist. A name that parses fits DAX_NAME_MAX. */
_Static_assert(sizeof("dax") - 1 + 9 + 1 + 9 < DAX_NAME_MAX, "dax names must fit DAX_NAME_MAX");
static int dax_name_parse(const char *name, unsigned *ret_region, unsigned *ret_instance) {
        unsigned v[2];
        const char *p;

        if (!name || strncmp(name, "dax", 3) != 0)
                return -ENODEV;

        p = name + 3;
        for (int i = 0; i < 2; i++) {
                size_t n = strspn(p, "0123456789");

                if (n == 0 || n > 9 || (n > 1 && p[0] == '0'))
                        return -ENODEV;
                v[i] = (unsigned) strtoul(p, NULL, 10);
                p += n;
                if (*p != (i == 0 ? '.' : '\0'))
                        return -ENODEV;
                p++;
        }

        if (ret_region)
                *ret_region = v[0];
        if (ret_instance)
                *ret_instance = v[1];
        return 0;
}

static int dax_id_compare(const void *a, const void *b) {
        const DaxId *x = a, *y = b;

        if (x->region != y->region)
                return x->region < y->region ? -1 : 1;
        if (x->instance != y->instance)
                return x->instance < y->instance ? -1 : 1;
        return 0;
}

static int unsigned_compare(const void *a, const void *b) {
        unsigned x = *(const unsigned *) a, y = *(const unsigned *) b;

        return x < y ? -1 : x > y;
}

static int device_path(SysfsBackend *s, char *buf, size_t len, const char *name, const char *attr) {
        return pathf(buf, len, "%s/bus/dax/devices/%s/%s", s->sysfs, name, attr);
}

static int region_path(SysfsBackend *s, char *buf, size_t len, const char *device, const char *attr) {
        return pathf(buf, len, "%s/bus/dax/devices/%s/../dax_region/%s", s->sysfs, device, attr);
}

static int driver_path(SysfsBackend *s, char *buf, size_t len, const char *driver, const char *attr) {
        return pathf(buf, len, "%s/bus/dax/drivers/%s/%s", s->sysfs, driver, attr);
}

/* A missing attribute of a device means a missing device. */
static int enoent_to_enodev(int r) {
        return r == -ENOENT ? -ENODEV : r;
}

/* Reads a short attribute (a number, a name) in one read(): sysfs hands
 * over the whole value at once. Relative to dfd (or AT_FDCWD), so the
 * attributes of one device cost one path walk, not one each; this is the
 * hot path of every allocation. */
static int read_small(int dfd, const char *attr, char *buf, size_t len) {
        _cleanup_close_ int fd = -EBADF;
        ssize_t n;

        fd = openat(dfd, attr, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        n = read(fd, buf, len);
        if (n < 0)
                return -errno;
        if ((size_t) n >= len)
                return -EFBIG;
        buf[n] = 0;
        if (n > 0 && buf[n - 1] == '\n')
                buf[n - 1] = 0;
        return 0;
}

/* Decimal, or hex with "0x" (mappingN, resource). */
static int read_u64(int dfd, const char *attr, uint64_t *ret) {
        unsigned long long v;
        char buf[64], *p, *end;
        int base = 10, r;

        r = read_small(dfd, attr, buf, sizeof(buf));
        if (r < 0)
                return r;
        p = buf;
        if (p[0] == '0' && p[1] == 'x') {
                base = 16;
                p += 2;
        }
        /* strtoull() would also take spaces and signs. */
        if (!(base == 16 ? isxdigit((unsigned char) p[0]) : isdigit((unsigned char) p[0])))
                return -EIO;
        errno = 0;
        v = strtoull(p, &end, base);
        if (errno != 0 || *end != 0)
                return -EIO;
        *ret = v;
        return 0;
}

static int read_int(int dfd, const char *attr, int *ret) {
        char buf[32], *end;
        long v;
        int r;

        r = read_small(dfd, attr, buf, sizeof(buf));
        if (r < 0)
                return r;
        errno = 0;
        v = strtol(buf, &end, 10);
        if (errno != 0 || end == buf || *end != 0 || v < INT_MIN || v > INT_MAX)
                return -EIO;
        *ret = (int) v;
        return 0;
}

static int device_write(SysfsBackend *s, const char *name, const char *attr, const char *value) {
        char path[PATH_MAX];
        int r;

        r = device_path(s, path, sizeof(path), name, attr);
        if (r < 0)
                return r;
        return enoent_to_enodev(write_attr(path, value));
}

static int device_exists(SysfsBackend *s, const char *name) {
        char path[PATH_MAX];
        int r;

        r = device_path(s, path, sizeof(path), name, "");
        if (r < 0)
                return r;
        if (access(path, F_OK) < 0)
                return errno == ENOENT ? -ENODEV : -errno;
        return 0;
}

/* The name of the driver a "driver" link points to, or "" without link. */
static int read_driver_link(int dfd, const char *link, char *buf, size_t len) {
        char target[PATH_MAX];
        const char *base;
        ssize_t n;

        n = readlinkat(dfd, link, target, sizeof(target) - 1);
        if (n < 0) {
                if (errno != ENOENT)
                        return -errno;
                buf[0] = 0;
                return 0;
        }
        target[n] = 0;

        base = strrchr(target, '/');
        base = base ? base + 1 : target;
        if (strlen(base) >= len)
                return -ENAMETOOLONG;
        strcpy(buf, base);
        return 0;
}

/* The driver's directory name ("device_dax", "kmem", ...), or "" when the
 * device is unbound or does not exist: callers that must tell those apart
 * ask device_exists(), the others learn it from their next write. */
static int device_driver_name(SysfsBackend *s, const char *name, char *buf, size_t len) {
        char path[PATH_MAX];
        int r;

        r = device_path(s, path, sizeof(path), name, "driver");
        if (r < 0)
                return r;
        return read_driver_link(AT_FDCWD, path, buf, len);
}

static DaxDriver driver_from_name(const char *drv) {
        if (drv[0] == 0)
                return DAX_DRIVER_NONE;
        if (strcmp(drv, "device_dax") == 0)
                return DAX_DRIVER_DEVICE_DAX;
        if (strcmp(drv, "kmem") == 0)
                return DAX_DRIVER_KMEM;
        return DAX_DRIVER_OTHER;
}

static int device_driver(SysfsBackend *s, const char *name, DaxDriver *ret) {
        char drv[NAME_MAX + 1];
        int r;

        r = device_driver_name(s, name, drv, sizeof(drv));
        if (r < 0)
                return r;
        *ret = driver_from_name(drv);
        return 0;
}

/* The kernel refuses size and align changes of a bound device, but not a
 * mapping write, which would corrupt a live device: check all three here. */
static int device_require_unbound(SysfsBackend *s, const char *name) {
        DaxDriver drv;
        int r;

        r = dax_name_parse(name, NULL, NULL);
        if (r < 0)
                return r;
        r = device_driver(s, name, &drv);
        if (r < 0)
                return r;
        return drv == DAX_DRIVER_NONE ? 0 : -EBUSY;
}

/* "mapping7" -> 7; the write-only "mapping" attribute is not a range. */
static bool mapping_id_parse(const char *entry, unsigned *ret) {
        const char *p;
        size_t n;

        if (strncmp(entry, "mapping", strlen("mapping")) != 0)
                return false;
        p = entry + strlen("mapping");
        n = strspn(p, "0123456789");
        if (n == 0 || n > 9 || p[n] != 0)
                return false;
        *ret = (unsigned) strtoul(p, NULL, 10);
        return true;
}

static int device_open_dir(SysfsBackend *s, const char *name, DIR **ret) {
        char path[PATH_MAX];
        DIR *dir;
        int r;

        r = device_path(s, path, sizeof(path), name, "");
        if (r < 0)
                return r;
        dir = opendir(path);
        if (!dir)
                return enoent_to_enodev(-errno);
        *ret = dir;
        return 0;
}

/* The ranges of the device whose directory is open in dir. */
static int dir_read_ranges(DIR *dir, DaxRange *ranges, unsigned *ret_n) {
        unsigned ids[DAX_RANGES_MAX], n = 0;
        struct dirent *de;
        int r;

        while ((de = readdir(dir))) {
                unsigned id;

                if (!mapping_id_parse(de->d_name, &id))
                        continue;
                /* More ranges than a DaxDeviceInfo holds: refuse rather
                 * than report a device smaller than it is. */
                if (n >= DAX_RANGES_MAX)
                        return -E2BIG;
                ids[n++] = id;
        }

        /* The kernel numbers mappings in range order (lowest free id, and
         * ranges only ever leave from the end), which is also the order of
         * their offsets in the device. */
        qsort(ids, n, sizeof(ids[0]), unsigned_compare);

        for (unsigned i = 0; i < n; i++) {
                char attr[32];
                uint64_t start, end;

                snprintf(attr, sizeof(attr), "mapping%u/start", ids[i]);
                r = read_u64(dirfd(dir), attr, &start);
                if (r < 0)
                        return r;
                snprintf(attr, sizeof(attr), "mapping%u/end", ids[i]);
                r = read_u64(dirfd(dir), attr, &end);
                if (r < 0)
                        return r;

                if (end < start)
                        return -EIO;
                ranges[i] = (DaxRange) { .start = start, .size = end - start + 1 };
        }

        *ret_n = n;
        return 0;
}

static int device_read_ranges(SysfsBackend *s, const char *name, DaxRange *ranges, unsigned *ret_n) {
        _cleanup_closedir_ DIR *dir = NULL;
        int r;

        r = device_open_dir(s, name, &dir);
        if (r < 0)
                return r;
        return dir_read_ranges(dir, ranges, ret_n);
}

static int memory_block_path(SysfsBackend *s, char *buf, size_t len, uint64_t block, const char *attr) {
        return pathf(buf, len, "%s/devices/system/memory/memory%" PRIu64 "/%s", s->sysfs, block, attr);
}

/* One memory block; -ENOENT if the kernel has none of that number. Both
 * "online" and "going-offline" are online: neither may be removed. The
 * zone (valid_zones names it for an online block) is read only if asked
 * for. */
static int memory_block_read(SysfsBackend *s, uint64_t block, bool zone, DaxMemBlock *ret) {
        char path[PATH_MAX], state[32], zones[64];
        int r;

        r = memory_block_path(s, path, sizeof(path), block, "state");
        if (r < 0)
                return r;
        r = read_small(AT_FDCWD, path, state, sizeof(state));
        if (r < 0)
                return r;

        *ret = (DaxMemBlock) {
                .id = block,
                .start = block * s->block_size,
                .online = strcmp(state, "offline") != 0,
        };
        if (!zone || strcmp(state, "online") != 0)
                return 0;

        r = memory_block_path(s, path, sizeof(path), block, "valid_zones");
        if (r < 0)
                return r;
        r = read_small(AT_FDCWD, path, zones, sizeof(zones));
        if (r == -ENOENT)
                return 0; /* no memory hot-remove: not movable anyway */
        if (r < 0)
                return r;
        ret->movable = strcmp(zones, "Movable") == 0;
        return 0;
}

static int mem_block_compare(const void *a, const void *b) {
        const DaxMemBlock *x = a, *y = b;

        return x->id < y->id ? -1 : x->id > y->id;
}

/* The memory blocks [*ret_first, *ret_end) kmem adds for a range: those
 * wholly inside it (dev_dax_kmem_range() trims to block boundaries). */
static void range_blocks(const DaxRange *range, uint64_t bs, uint64_t *ret_first, uint64_t *ret_end) {
        *ret_first = round_up_u64(range->start, bs) / bs;
        *ret_end = max_u64(*ret_first, (range->start + range->size) / bs);
}

/* The memory blocks kmem hotplugged for these ranges, in address order.
 * Blocks missing in sysfs are left out: kmem could not add that range, so
 * none of it is RAM. */
static int ranges_memory_blocks(SysfsBackend *s, const DaxRange *ranges, unsigned n_ranges, bool zones,
                                DaxMemBlock **ret, size_t *ret_n) {
        _cleanup_free_ DaxMemBlock *v = NULL;
        uint64_t bs = s->block_size, first, end;
        size_t n = 0, max = 0;

        for (unsigned i = 0; i < n_ranges && bs > 0; i++) {
                range_blocks(&ranges[i], bs, &first, &end);
                max += end - first;
        }

        v = calloc(max ?: 1, sizeof(DaxMemBlock));
        if (!v)
                return -ENOMEM;

        for (unsigned i = 0; i < n_ranges && bs > 0; i++) {
                range_blocks(&ranges[i], bs, &first, &end);
                for (uint64_t m = first; m < end; m++) {
                        int r = memory_block_read(s, m, zones, &v[n]);

                        if (r == -ENOENT)
                                continue;
                        if (r < 0)
                                return r;
                        n++;
                }
        }

        /* Ranges are in device order, which need not be address order. */
        qsort(v, n, sizeof(DaxMemBlock), mem_block_compare);
        *ret = v;
        v = NULL;
        *ret_n = n;
        return 0;
}

/* Counts the memory blocks kmem hotplugged for these ranges and how many
 * are not offline: the same blocks list_memory_blocks() reports. */
static int count_memory_blocks(SysfsBackend *s, const DaxRange *ranges, unsigned n_ranges, unsigned *ret_blocks,
                               unsigned *ret_online) {
        _cleanup_free_ DaxMemBlock *v = NULL;
        unsigned online = 0;
        size_t n;
        int r;

        r = ranges_memory_blocks(s, ranges, n_ranges, false, &v, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++)
                if (v[i].online)
                        online++;

        *ret_blocks = (unsigned) n;
        *ret_online = online;
        return 0;
}

static int device_read(SysfsBackend *s, const char *name, unsigned region, unsigned instance,
                       DaxDeviceInfo *ret) {
        DaxDeviceInfo d = { .region_id = region, .instance = instance, .target_node = -1 };
        _cleanup_closedir_ DIR *dir = NULL;
        char drv[NAME_MAX + 1];
        int r;

        snprintf(d.name, sizeof(d.name), "%s", name);

        r = device_open_dir(s, name, &dir);
        if (r < 0)
                return r;

        r = read_u64(dirfd(dir), "align", &d.align);
        if (r < 0)
                return enoent_to_enodev(r);

        r = read_driver_link(dirfd(dir), "driver", drv, sizeof(drv));
        if (r < 0)
                return r;
        d.driver = driver_from_name(drv);

        r = read_int(dirfd(dir), "target_node", &d.target_node);
        if (r == -ENOENT)
                d.target_node = -1; /* hidden while the region has no target node */
        else if (r < 0)
                return r;

        /* The kernel's size is the sum of the ranges: no need to read it. */
        r = dir_read_ranges(dir, d.ranges, &d.n_ranges);
        if (r < 0)
                return r;
        d.size = dax_ranges_size(d.ranges, d.n_ranges);

        if (d.driver == DAX_DRIVER_KMEM) {
                r = count_memory_blocks(s, d.ranges, d.n_ranges, &d.mem_blocks, &d.mem_blocks_online);
                if (r < 0)
                        return r;
        }

        *ret = d;
        return 0;
}

/* Device names in a directory (the bus, or a region's parent device),
 * sorted by region and instance. only_region < 0 takes every region. */
static int list_dax_ids(const char *dir_path, long only_region, DaxId **ret, size_t *ret_n) {
        _cleanup_closedir_ DIR *dir = NULL;
        _cleanup_free_ DaxId *ids = NULL;
        size_t n = 0, allocated = 0;
        struct dirent *de;

        dir = opendir(dir_path);
        if (!dir)
                return -errno;

        while ((de = readdir(dir))) {
                DaxId id;

                if (dax_name_parse(de->d_name, &id.region, &id.instance) < 0)
                        continue;
                if (only_region >= 0 && id.region != (unsigned long) only_region)
                        continue;
                if (n == allocated) {
                        size_t want = allocated ? allocated * 2 : 16;
                        DaxId *p = reallocarray(ids, want, sizeof(DaxId));

                        if (!p)
                                return -ENOMEM;
                        ids = p;
                        allocated = want;
                }
                ids[n++] = id;
        }

        if (n > 0)
                qsort(ids, n, sizeof(DaxId), dax_id_compare);
        *ret = ids;
        ids = NULL;
        *ret_n = n;
        return 0;
}

static int region_create(SysfsBackend *s, unsigned region_id, char ret_name[DAX_NAME_MAX]) {
        char dev0[DAX_NAME_MAX], path[PATH_MAX], youngest[DAX_NAME_MAX];
        unsigned region;
        int r;

        snprintf(dev0, sizeof(dev0), "dax%u.0", region_id);
        r = region_path(s, path, sizeof(path), dev0, "create");
        if (r < 0)
                return r;

        pthread_mutex_lock(&s->create_lock);
        r = write_attr(path, "1");
        if (r >= 0)
                /* "create" reads back the youngest device of the region. */
                r = read_small(AT_FDCWD, path, youngest, sizeof(youngest));
        pthread_mutex_unlock(&s->create_lock);
        if (r < 0)
                return enoent_to_enodev(r);

        /* Empty or foreign when another agent created or deleted a device
         * at the same moment; we cannot tell which device is ours then. */
        if (dax_name_parse(youngest, &region, NULL) < 0 || region != region_id)
                return -EIO;

        strcpy(ret_name, youngest);
        return 0;
}

static int region_delete(SysfsBackend *s, unsigned region_id, const char *name) {
        char dev0[DAX_NAME_MAX], path[PATH_MAX];
        int r;

        snprintf(dev0, sizeof(dev0), "dax%u.0", region_id);
        r = region_path(s, path, sizeof(path), dev0, "delete");
        if (r < 0)
                return r;
        return enoent_to_enodev(write_attr(path, name));
}

/* See the top of the file for why these three ways, in this order. */
static int region_find_start(SysfsBackend *s, const DaxId *ids, size_t n, uint64_t available, uint64_t *ret) {
        char name[DAX_NAME_MAX], path[PATH_MAX], probe[DAX_NAME_MAX];
        uint64_t lowest = UINT64_MAX;
        int r, k;

        for (size_t i = 0; i < n; i++) {
                uint64_t size;

                snprintf(name, sizeof(name), "dax%u.%u", ids[i].region, ids[i].instance);
                r = device_path(s, path, sizeof(path), name, "size");
                if (r < 0)
                        return r;
                r = read_u64(AT_FDCWD, path, &size);
                if (r == -ENOENT)
                        continue; /* deleted meanwhile */
                if (r < 0)
                        return r;
                if (size > 0)
                        continue;

                r = device_path(s, path, sizeof(path), name, "resource");
                if (r < 0)
                        return r;
                return read_u64(AT_FDCWD, path, ret);
        }

        if (available == 0) {
                for (size_t i = 0; i < n; i++) {
                        DaxRange ranges[DAX_RANGES_MAX];
                        unsigned nr;

                        snprintf(name, sizeof(name), "dax%u.%u", ids[i].region, ids[i].instance);
                        r = device_read_ranges(s, name, ranges, &nr);
                        if (r < 0)
                                return r;
                        for (unsigned j = 0; j < nr; j++)
                                lowest = min_u64(lowest, ranges[j].start);
                }
                if (lowest == UINT64_MAX)
                        return -EIO;
                *ret = lowest;
                return 0;
        }

        r = region_create(s, ids[0].region, probe);
        if (r < 0)
                return r;
        r = device_path(s, path, sizeof(path), probe, "resource");
        if (r >= 0)
                r = read_u64(AT_FDCWD, path, ret);
        k = region_delete(s, ids[0].region, probe);
        return r < 0 ? r : k;
}

static int region_read(SysfsBackend *s, const DaxId *ids, size_t n, DaxRegionInfo *ret) {
        DaxRegionInfo info = { .id = ids[0].region, .numa_node = -1 };
        char first[DAX_NAME_MAX], path[PATH_MAX];
        int r;

        /* Any device of the region leads to the region's attributes; the
         * lowest instance is daxR.0 for every dynamic region. */
        snprintf(first, sizeof(first), "dax%u.%u", ids[0].region, ids[0].instance);

        r = region_path(s, path, sizeof(path), first, "create");
        if (r < 0)
                return r;
        if (access(path, F_OK) < 0)
                return errno == ENOENT ? 0 : -errno; /* static region */

        r = region_path(s, path, sizeof(path), first, "size");
        if (r < 0)
                return r;
        r = read_u64(AT_FDCWD, path, &info.size);
        if (r < 0)
                return r;
        r = region_path(s, path, sizeof(path), first, "align");
        if (r < 0)
                return r;
        r = read_u64(AT_FDCWD, path, &info.align);
        if (r < 0)
                return r;
        r = region_path(s, path, sizeof(path), first, "available_size");
        if (r < 0)
                return r;
        r = read_u64(AT_FDCWD, path, &info.available);
        if (r < 0)
                return r;

        r = device_path(s, path, sizeof(path), first, "target_node");
        if (r < 0)
                return r;
        r = read_int(AT_FDCWD, path, &info.numa_node);
        if (r == -ENOENT) {
                r = device_path(s, path, sizeof(path), first, "../numa_node");
                if (r < 0)
                        return r;
                if (read_int(AT_FDCWD, path, &info.numa_node) < 0)
                        info.numa_node = -1;
        } else if (r < 0)
                return r;

        r = region_find_start(s, ids, n, info.available, &info.start);
        if (r < 0)
                return r;

        *ret = info;
        return 1;
}

static int sysfs_list_regions(DaxBackend *b, DaxRegionInfo **ret, size_t *ret_n) {
        SysfsBackend *s = (SysfsBackend *) b;
        _cleanup_free_ DaxRegionInfo *regions = NULL;
        _cleanup_free_ DaxId *ids = NULL;
        char path[PATH_MAX];
        size_t n_ids = 0, n = 0;
        int r;

        r = pathf(path, sizeof(path), "%s/bus/dax/devices", s->sysfs);
        if (r < 0)
                return r;
        r = list_dax_ids(path, -1, &ids, &n_ids);
        if (r == -ENOENT)
                n_ids = 0; /* no dax bus: no regions */
        else if (r < 0)
                return r;

        /* At most one region per device. */
        regions = calloc(n_ids ?: 1, sizeof(DaxRegionInfo));
        if (!regions)
                return -ENOMEM;

        for (size_t i = 0, j; i < n_ids; i = j) {
                for (j = i + 1; j < n_ids && ids[j].region == ids[i].region; j++)
                        ;
                r = region_read(s, ids + i, j - i, &regions[n]);
                if (r < 0)
                        return r;
                if (r > 0)
                        n++;
        }

        *ret = regions;
        regions = NULL;
        *ret_n = n;
        return 0;
}

static int sysfs_list_devices(DaxBackend *b, unsigned region_id, DaxDeviceInfo **ret, size_t *ret_n) {
        SysfsBackend *s = (SysfsBackend *) b;
        _cleanup_free_ DaxDeviceInfo *devices = NULL;
        _cleanup_free_ DaxId *ids = NULL;
        char path[PATH_MAX];
        size_t n_ids = 0, n = 0;
        int r;

        /* The region's parent device holds exactly its devices: no need to
         * walk the whole bus. */
        r = pathf(path, sizeof(path), "%s/bus/dax/devices/dax%u.0/..", s->sysfs, region_id);
        if (r < 0)
                return r;
        r = list_dax_ids(path, region_id, &ids, &n_ids);
        if (r < 0)
                return enoent_to_enodev(r);

        devices = calloc(n_ids ?: 1, sizeof(DaxDeviceInfo));
        if (!devices)
                return -ENOMEM;

        for (size_t i = 0; i < n_ids; i++) {
                char name[DAX_NAME_MAX];

                snprintf(name, sizeof(name), "dax%u.%u", ids[i].region, ids[i].instance);
                r = device_read(s, name, ids[i].region, ids[i].instance, &devices[n]);
                if (r == -ENODEV)
                        continue; /* deleted since the directory was read */
                if (r < 0)
                        return r;
                n++;
        }

        *ret = devices;
        devices = NULL;
        *ret_n = n;
        return 0;
}

static int sysfs_get_device(DaxBackend *b, const char *name, DaxDeviceInfo *ret) {
        SysfsBackend *s = (SysfsBackend *) b;
        unsigned region, instance;
        int r;

        r = dax_name_parse(name, &region, &instance);
        if (r < 0)
                return r;
        return device_read(s, name, region, instance, ret);
}

static int sysfs_get_ranges(DaxBackend *b, const char *name, DaxRange ranges[DAX_RANGES_MAX], unsigned *ret_n) {
        int r;

        r = dax_name_parse(name, NULL, NULL);
        if (r < 0)
                return r;
        return device_read_ranges((SysfsBackend *) b, name, ranges, ret_n);
}

/* Drops a name from a driver's id list; nothing to do if it is not there
 * or the driver is not loaded. */
static void driver_remove_id(SysfsBackend *s, const char *driver, const char *name) {
        char path[PATH_MAX];

        if (driver_path(s, path, sizeof(path), driver, "remove_id") >= 0)
                (void) write_attr(path, name);
}

static int sysfs_create_device(DaxBackend *b, unsigned region_id, char ret_name[DAX_NAME_MAX]) {
        SysfsBackend *s = (SysfsBackend *) b;
        char name[DAX_NAME_MAX];
        int r;

        r = region_create(s, region_id, name);
        if (r < 0)
                return r;

        /* Names are reused (lowest free instance). A name left in a
         * driver's id list (by a crash, or another agent) would let that
         * driver grab this device on its next driver_attach, halfway
         * through being mapped. */
        driver_remove_id(s, "device_dax", name);
        driver_remove_id(s, "kmem", name);

        strcpy(ret_name, name);
        return 0;
}

static int sysfs_set_align(DaxBackend *b, const char *name, uint64_t align) {
        SysfsBackend *s = (SysfsBackend *) b;
        char value[32];
        int r;

        r = device_require_unbound(s, name);
        if (r < 0)
                return r;
        snprintf(value, sizeof(value), "%" PRIu64, align);
        return device_write(s, name, "align", value);
}

static int sysfs_add_mapping(DaxBackend *b, const char *name, uint64_t start, uint64_t size) {
        SysfsBackend *s = (SysfsBackend *) b;
        char path[PATH_MAX], value[64];
        uint64_t align;
        int r;

        /* An empty range would hit a kernel WARN (alloc_dev_dax_range()). */
        if (size == 0 || start + size - 1 < start)
                return -EINVAL;

        r = device_require_unbound(s, name);
        if (r < 0)
                return r;

        r = device_path(s, path, sizeof(path), name, "align");
        if (r < 0)
                return r;
        r = read_u64(AT_FDCWD, path, &align);
        if (r < 0)
                return enoent_to_enodev(r);
        align = max_u64(align, DAX_SUBSECTION);
        /* Since Linux 6.9 (dax_region_rwsem) mapping_store() answers an
         * unaligned length with success and adds nothing; 6.1 said ENXIO,
         * and so do we, on every kernel. */
        if (size % align != 0)
                return -ENXIO;
        /* The kernel checks only lengths: a range starting off the align
         * binds, then every fault on it fails (or memremap_pages() refuses
         * a start off 2 MiB at bind time). */
        if (start % align != 0)
                return -EINVAL;

        snprintf(value, sizeof(value), "%#" PRIx64 "-%#" PRIx64, start, start + size - 1);
        return device_write(s, name, "mapping", value);
}

static int sysfs_set_size(DaxBackend *b, const char *name, uint64_t size) {
        SysfsBackend *s = (SysfsBackend *) b;
        char value[32];
        int r;

        r = device_require_unbound(s, name);
        if (r < 0)
                return r;
        snprintf(value, sizeof(value), "%" PRIu64, size);
        return device_write(s, name, "size", value);
}

/* Loads device_dax through libdaxctl (kmod, honouring the modprobe
 * blacklist) and lets it enable this device. Only reached when the driver
 * is not loaded: udev loads it as soon as a dax device appears. */
static int device_dax_load(SysfsBackend *s, const char *name) {
        struct daxctl_ctx *ctx = NULL;
        struct daxctl_region *region;
        struct daxctl_dev *dev, *found = NULL;
        int r;

        /* libdaxctl only knows the real /sys. */
        if (strcmp(s->sysfs, "/sys") != 0)
                return -ENOENT;

        r = daxctl_new(&ctx);
        if (r < 0)
                return r;
        daxctl_region_foreach(ctx, region)
                daxctl_dev_foreach(region, dev)
                        if (strcmp(daxctl_dev_get_devname(dev), name) == 0)
                                found = dev;
        r = found ? daxctl_dev_enable_devdax(found) : -ENODEV;
        daxctl_unref(ctx);
        return r;
}

/* Binds an unbound device to a driver ("device_dax", "kmem"); see
 * bind_device_dax in dax-backend.h. */
static int device_bind(SysfsBackend *s, const char *name, const char *driver) {
        DaxDriver want = driver_from_name(driver), drv;
        char bind[PATH_MAX], new_id[PATH_MAX];
        bool added_id = false;
        int r, k;

        r = dax_name_parse(name, NULL, NULL);
        if (r < 0)
                return r;
        r = device_driver(s, name, &drv);
        if (r < 0)
                return r;
        if (drv == want)
                return 0;
        if (drv != DAX_DRIVER_NONE)
                return -EBUSY;

        r = driver_path(s, bind, sizeof(bind), driver, "bind");
        if (r < 0)
                return r;
        r = driver_path(s, new_id, sizeof(new_id), driver, "new_id");
        if (r < 0)
                return r;

        /* "bind" first: it probes only this device. "new_id" makes the
         * kernel re-probe every unbound device the driver matches: on 6.1
         * device_dax matches them all, on 6.3+ kmem matches every device
         * of an hmem region, so it would also bind devices that another
         * worker is still mapping. */
        r = write_attr(bind, name);
        if (r == -ENODEV) {
                /* The driver matches only names in its id list (device_dax
                 * in a region meant for kmem, hmem's default on 6.3+; kmem
                 * on 6.1), so the id is ours alone. new_id may attach the
                 * device by itself; bind if it did not. */
                added_id = true;
                r = write_attr(new_id, name);
                if (r == -EEXIST)
                        r = 0;
                if (r >= 0) {
                        r = device_driver(s, name, &drv);
                        if (r >= 0 && drv == DAX_DRIVER_NONE)
                                r = write_attr(bind, name);
                }
        } else if (r == -ENOENT) {
                /* The driver is not loaded. device_dax is loaded here;
                 * kmem is not: on 6.3+ loading it attaches it to every
                 * unbound device of the hmem regions. */
                if (want != DAX_DRIVER_DEVICE_DAX)
                        return -EOPNOTSUPP;
                added_id = true; /* libdaxctl binds through new_id */
                r = device_dax_load(s, name);
        }

        /* Whatever the writes said (EBUSY may mean someone else bound it
         * in between), the driver link is the truth. */
        k = device_driver(s, name, &drv);
        if (k >= 0 && drv == want)
                return 0;
        if (added_id)
                /* A stale id would capture a later device of this name. */
                driver_remove_id(s, driver, name);
        if (k < 0)
                return k;
        if (drv != DAX_DRIVER_NONE)
                return -EBUSY;
        return r < 0 ? r : -ENXIO;
}

static int sysfs_bind_device_dax(DaxBackend *b, const char *name) {
        return device_bind((SysfsBackend *) b, name, "device_dax");
}

static int sysfs_bind_kmem(DaxBackend *b, const char *name) {
        return device_bind((SysfsBackend *) b, name, "kmem");
}

static int sysfs_unbind(DaxBackend *b, const char *name) {
        SysfsBackend *s = (SysfsBackend *) b;
        char drv[NAME_MAX + 1], path[PATH_MAX];
        int r;

        r = dax_name_parse(name, NULL, NULL);
        if (r < 0)
                return r;
        r = device_driver_name(s, name, drv, sizeof(drv));
        if (r < 0)
                return r;
        if (drv[0] == 0)
                return device_exists(s, name);

        if (driver_from_name(drv) == DAX_DRIVER_KMEM) {
                DaxRange ranges[DAX_RANGES_MAX];
                unsigned n, blocks, online;

                /* kmem's remove cannot refuse: remove_memory() fails on
                 * an online block, the driver lets go anyway and the range
                 * is lost until reboot. So we refuse. (Between this check
                 * and the unbind nothing onlines blocks on its own: udev
                 * rules and auto_online_blocks act when kmem adds them.) */
                r = device_read_ranges(s, name, ranges, &n);
                if (r < 0)
                        return r;
                r = count_memory_blocks(s, ranges, n, &blocks, &online);
                if (r < 0)
                        return r;
                if (online > 0)
                        return -EBUSY;
        }

        /* Drop the id first: once unbound, a device still in the driver's
         * id list would be re-attached by the next driver_attach (another
         * new_id write, a module load). */
        driver_remove_id(s, drv, name);

        r = driver_path(s, path, sizeof(path), drv, "unbind");
        if (r < 0)
                return r;
        r = write_attr(path, name);
        if (r == -ENODEV) {
                /* Not bound to that driver (any more): fine if unbound. */
                r = device_driver_name(s, name, drv, sizeof(drv));
                if (r < 0)
                        return r;
                return drv[0] == 0 ? device_exists(s, name) : -EBUSY;
        }
        return r;
}

static int sysfs_delete_device(DaxBackend *b, const char *name) {
        SysfsBackend *s = (SysfsBackend *) b;
        unsigned region;
        int r;

        r = dax_name_parse(name, &region, NULL);
        if (r < 0)
                return r;
        return region_delete(s, region, name);
}

static int sysfs_open_device(DaxBackend *b, const char *name) {
        SysfsBackend *s = (SysfsBackend *) b;
        char node[PATH_MAX], sys[PATH_MAX];
        int r;

        r = dax_name_parse(name, NULL, NULL);
        if (r < 0)
                return r;
        r = pathf(node, sizeof(node), "%s/%s", s->dev, name);
        if (r < 0)
                return r;
        r = device_path(s, sys, sizeof(sys), name, "");
        if (r < 0)
                return r;

        for (unsigned i = 0;; i++) {
                int fd = open(node, O_RDWR | O_CLOEXEC);

                if (fd >= 0)
                        return fd;
                if (errno != ENOENT)
                        return -errno;
                /* Waiting only helps if the device exists. */
                if (access(sys, F_OK) < 0)
                        return errno == ENOENT ? -ENODEV : -errno;
                if (i >= OPEN_RETRIES)
                        return -ENOENT;
                usleep(OPEN_RETRY_USEC);
        }
}

/* Does some mapping of the process map this character device? Each entry
 * of map_files is a link to the mapped file itself, so stat() gives the
 * device number whatever path it was mapped by: a file that merely has the
 * device's name (/tmp/x/dax0.0) does not count. Reading map_files needs
 * CAP_SYS_ADMIN (CAP_CHECKPOINT_RESTORE on 5.9 and later) and ptrace read
 * access; where it is refused, the mapping's device and inode numbers in
 * maps are compared with those of the device node, never its path. That
 * fallback cannot see a node in another mount namespace (QEMU's private
 * /dev under libvirt), which is why the unit keeps CAP_CHECKPOINT_RESTORE. */
static bool maps_have(int pid_fd, dev_t rdev, const struct stat *node) {
        _cleanup_fclose_ FILE *f = NULL;
        _cleanup_free_ char *line = NULL;
        size_t allocated = 0;
        bool readable = false;
        int fd;

        fd = openat(pid_fd, "map_files", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
                _cleanup_closedir_ DIR *dir = fdopendir(fd);
                struct dirent *de;

                if (!dir) {
                        close(fd);
                        return false;
                }
                while ((de = readdir(dir))) {
                        struct stat st;

                        if (de->d_name[0] == '.')
                                continue;
                        if (fstatat(dirfd(dir), de->d_name, &st, 0) < 0) {
                                if (errno == EPERM || errno == EACCES)
                                        break; /* fall back to maps below */
                                continue;      /* the mapping went away */
                        }
                        readable = true;
                        if (S_ISCHR(st.st_mode) && st.st_rdev == rdev)
                                return true;
                }
                if (readable)
                        return false;
        }
        if (!node)
                return false;

        fd = openat(pid_fd, "maps", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return false;
        f = fdopen(fd, "re");
        if (!f) {
                close(fd);
                return false;
        }
        while (getline(&line, &allocated, f) > 0) {
                unsigned maj, min;
                unsigned long long ino;

                /* start-end perms offset MAJ:MIN inode path */
                if (sscanf(line, "%*s %*s %*s %x:%x %llu", &maj, &min, &ino) == 3 &&
                    makedev(maj, min) == node->st_dev && ino == (unsigned long long) node->st_ino)
                        return true;
        }
        return false;
}

/* Does some fd of the process refer to this character device? */
static bool fds_have(int pid_fd, dev_t rdev) {
        _cleanup_closedir_ DIR *dir = NULL;
        struct dirent *de;
        int fd;

        fd = openat(pid_fd, "fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return false;
        dir = fdopendir(fd);
        if (!dir) {
                close(fd);
                return false;
        }

        while ((de = readdir(dir))) {
                struct stat st;

                if (de->d_name[0] == '.')
                        continue;
                /* Follows the link to the open file itself, whatever path
                 * it was opened by. */
                if (fstatat(dirfd(dir), de->d_name, &st, 0) < 0)
                        continue;
                if (S_ISCHR(st.st_mode) && st.st_rdev == rdev)
                        return true;
        }
        return false;
}

static int sysfs_device_in_use(DaxBackend *b, const char *name) {
        SysfsBackend *s = (SysfsBackend *) b;
        _cleanup_closedir_ DIR *proc = NULL;
        unsigned major_nr, minor_nr;
        char path[PATH_MAX], devnum[32], tail;
        struct dirent *de;
        struct stat node;
        bool have_node;
        dev_t rdev;
        int r;

        r = dax_name_parse(name, NULL, NULL);
        if (r < 0)
                return r;

        /* "dev" is the device number, from its creation on. */
        r = device_path(s, path, sizeof(path), name, "dev");
        if (r < 0)
                return r;
        r = read_small(AT_FDCWD, path, devnum, sizeof(devnum));
        if (r < 0)
                return enoent_to_enodev(r);
        if (sscanf(devnum, "%u:%u%c", &major_nr, &minor_nr, &tail) != 2)
                return -EIO;
        rdev = makedev(major_nr, minor_nr);

        /* The node in /dev, for the fallback of maps_have(). */
        snprintf(path, sizeof(path), "/dev/%s", name);
        have_node = stat(path, &node) == 0 && S_ISCHR(node.st_mode) && node.st_rdev == rdev;

        proc = opendir("/proc");
        if (!proc)
                return -errno;

        while ((de = readdir(proc))) {
                _cleanup_close_ int pid_fd = -EBADF;

                if (strspn(de->d_name, "0123456789") != strlen(de->d_name))
                        continue;
                /* Processes come and go while we look: skip what vanished. */
                pid_fd = openat(dirfd(proc), de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (pid_fd < 0)
                        continue;
                if (fds_have(pid_fd, rdev) || maps_have(pid_fd, rdev, have_node ? &node : NULL))
                        return 1;
        }
        return 0;
}

static char *sysfs_boot_id(DaxBackend *b) {
        char *s = NULL;

        if (read_attr("/proc/sys/kernel/random/boot_id", &s) < 0)
                return NULL;
        s[strcspn(s, " \n")] = 0;
        return s;
}

static bool sysfs_host_zeroes_on_alloc(DaxBackend *b, const char **ret_why) {
        return host_zeroing_detect(ret_why);
}

static uint64_t sysfs_memory_block_size(DaxBackend *b) {
        return ((SysfsBackend *) b)->block_size;
}

static int sysfs_list_memory_blocks(DaxBackend *b, const char *name, DaxMemBlock **ret, size_t *ret_n) {
        SysfsBackend *s = (SysfsBackend *) b;
        DaxRange ranges[DAX_RANGES_MAX];
        DaxDriver drv;
        unsigned n;
        int r;

        r = dax_name_parse(name, NULL, NULL);
        if (r < 0)
                return r;
        r = device_driver(s, name, &drv);
        if (r < 0)
                return r;
        if (drv != DAX_DRIVER_KMEM) {
                r = device_exists(s, name);
                return r < 0 ? r : -ENXIO;
        }

        r = device_read_ranges(s, name, ranges, &n);
        if (r < 0)
                return r;
        return ranges_memory_blocks(s, ranges, n, true, ret, ret_n);
}

static uint64_t monotonic_usec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * UINT64_C(1000000) + (uint64_t) ts.tv_nsec / 1000;
}

static void offline_signal_handler(int sig) {
        /* Nothing to do: being delivered is what interrupts the write. */
}

static int offline_signal_error;

/* Once per process: a handler without SA_RESTART, so the interrupted
 * write returns EINTR instead of starting over. */
static void offline_signal_install(void) {
        struct sigaction sa = { .sa_handler = offline_signal_handler };

        sigemptyset(&sa.sa_mask);
        if (sigaction(OFFLINE_SIGNAL, &sa, NULL) < 0)
                offline_signal_error = -errno;
}

/* write_attr() that gives up after timeout_usec with -ETIMEDOUT: a timer
 * signals this thread, whose write() then fails with EINTR. */
static int write_attr_timeout(const char *path, const char *value, uint64_t timeout_usec) {
        static pthread_once_t once = PTHREAD_ONCE_INIT;
        struct sigevent sev = { .sigev_notify = SIGEV_THREAD_ID };
        struct itimerspec its = { .it_interval.tv_nsec = OFFLINE_RESIGNAL_NSEC };
        sigset_t set, saved;
        uint64_t deadline;
        timer_t timer;
        int r;

        if (timeout_usec == UINT64_MAX)
                return write_attr(path, value);

        pthread_once(&once, offline_signal_install);
        if (offline_signal_error < 0)
                return offline_signal_error;

        sev.sigev_signo = OFFLINE_SIGNAL;
        sev.sigev_notify_thread_id = gettid();
        if (timer_create(CLOCK_MONOTONIC, &sev, &timer) < 0)
                return -errno;

        /* Worker threads run with signals blocked: let ours through for
         * the write only. */
        sigemptyset(&set);
        sigaddset(&set, OFFLINE_SIGNAL);
        pthread_sigmask(SIG_UNBLOCK, &set, &saved);

        deadline = monotonic_usec() + min_u64(timeout_usec, UINT64_MAX / 2);
        its.it_value.tv_sec = (time_t) (timeout_usec / 1000000);
        its.it_value.tv_nsec = (long) (timeout_usec % 1000000 * 1000);
        if (timeout_usec == 0)
                its.it_value.tv_nsec = 1; /* all zero would disarm the timer */
        if (timer_settime(timer, 0, &its, NULL) < 0)
                r = -errno;
        else
                do
                        r = write_attr(path, value);
                while (r == -EINTR && monotonic_usec() < deadline); /* another signal: go on */

        /* A signal the timer raised before it is deleted is delivered, to
         * the no-op handler, on the way back from timer_delete(): none
         * stays pending to interrupt a later write of this thread. */
        timer_delete(timer);
        pthread_sigmask(SIG_SETMASK, &saved, NULL);

        return r == -EINTR ? -ETIMEDOUT : r;
}

static int sysfs_set_memory_block(DaxBackend *b, uint64_t block_id, bool online, uint64_t timeout_usec) {
        SysfsBackend *s = (SysfsBackend *) b;
        const char *want = online ? "online" : "offline";
        char path[PATH_MAX], state[32];
        int r;

        r = memory_block_path(s, path, sizeof(path), block_id, "state");
        if (r < 0)
                return r;
        /* Some kernels answer EINVAL for the state a block already has. */
        r = read_small(AT_FDCWD, path, state, sizeof(state));
        if (r < 0)
                return r;
        if (strcmp(state, want) == 0)
                return 0;

        if (online) {
                /* ZONE_MOVABLE keeps the block removable; where the kernel
                 * cannot put it there (EINVAL), its default zone. */
                r = write_attr(path, "online_movable");
                if (r == -EINVAL)
                        r = write_attr(path, "online");
        } else
                /* The kernel retries migrating the pages until a signal is
                 * pending (offline_pages()); on EINTR it puts the block
                 * back online. */
                r = write_attr_timeout(path, "offline", timeout_usec);

        /* Another agent may have got there meanwhile. */
        if (r < 0 && r != -ETIMEDOUT && read_small(AT_FDCWD, path, state, sizeof(state)) >= 0 &&
            strcmp(state, want) == 0)
                return 0;
        return r;
}

static void sysfs_free(DaxBackend *b) {
        SysfsBackend *s = (SysfsBackend *) b;

        pthread_mutex_destroy(&s->create_lock);
        free(s->sysfs);
        free(s->dev);
        free(s);
}

static int sysfs_node_perf(DaxBackend *b, int node, NodePerf *ret) {
        SysfsBackend *s = (SysfsBackend *) b;

        return node_perf_read_sysfs(s->sysfs, node, ret);
}

static const DaxBackendOps sysfs_ops = {
        .name = "sysfs",
        .free = sysfs_free,
        .list_regions = sysfs_list_regions,
        .list_devices = sysfs_list_devices,
        .get_device = sysfs_get_device,
        .get_ranges = sysfs_get_ranges,
        .create_device = sysfs_create_device,
        .set_align = sysfs_set_align,
        .add_mapping = sysfs_add_mapping,
        .set_size = sysfs_set_size,
        .bind_device_dax = sysfs_bind_device_dax,
        .unbind = sysfs_unbind,
        .delete_device = sysfs_delete_device,
        .open_device = sysfs_open_device,
        .device_in_use = sysfs_device_in_use,
        .memory_block_size = sysfs_memory_block_size,
        .host_zeroes_on_alloc = sysfs_host_zeroes_on_alloc,
        .boot_id = sysfs_boot_id,
        .bind_kmem = sysfs_bind_kmem,
        .list_memory_blocks = sysfs_list_memory_blocks,
        .set_memory_block = sysfs_set_memory_block,
        .node_perf = sysfs_node_perf,
};

/* block_size_bytes is hex without a "0x" prefix. */
static int read_block_size(const char *sysfs, uint64_t *ret) {
        char path[PATH_MAX], s[32], *end;
        unsigned long long v;
        int r;

        r = pathf(path, sizeof(path), "%s/devices/system/memory/block_size_bytes", sysfs);
        if (r < 0)
                return r;
        r = read_small(AT_FDCWD, path, s, sizeof(s));
        if (r == -ENOENT) {
                *ret = 0; /* no memory hotplug: nothing can be kmem */
                return 0;
        }
        if (r < 0)
                return r;

        errno = 0;
        v = strtoull(s, &end, 16);
        if (errno != 0 || end == s || *end != 0 || v == 0)
                return -EIO;
        *ret = v;
        return 0;
}

int dax_sysfs_new(const char *sysfs_root, const char *dev_root, DaxBackend **ret) {
        SysfsBackend *s;
        int r;

        if (!sysfs_root || !dev_root || !ret)
                return -EINVAL;

        s = calloc(1, sizeof(SysfsBackend));
        if (!s)
                return -ENOMEM;
        s->backend.ops = &sysfs_ops;
        pthread_mutex_init(&s->create_lock, NULL);
        s->sysfs = strdup(sysfs_root);
        s->dev = strdup(dev_root);
        if (!s->sysfs || !s->dev) {
                sysfs_free(&s->backend);
                return -ENOMEM;
        }

        r = read_block_size(s->sysfs, &s->block_size);
        if (r < 0) {
                sysfs_free(&s->backend);
                return r;
        }

        *ret = &s->backend;
        return 0;
}
