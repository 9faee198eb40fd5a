/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The scenario suite: what daxbroker must do, spoken over D-Bus exactly as
 * a VM manager would. The same binary runs against the daemon on the sim
 * backend (private bus) and on the real kernel inside the QEMU rig (system
 * bus, --sysfs: then every claim is also checked against /sys/bus/dax).
 *
 *   scenarios [--bus-address ADDR] [--sysfs] run
 *   scenarios [...] setup-persist FILE   three allocations, recorded in FILE
 *   scenarios [...] check-persist FILE [--after-reboot|--from-host [POOL]]
 *                                        the same three, same ranges, after a
 *                                        daemon crash (the bytes stay), a host
 *                                        reboot (they need not) or a reboot
 *                                        into host-held memory (they read zero)
 *   scenarios [...] setup-dirty FILE     fill, release: a crash may follow
 *   scenarios [...] check-dirty FILE     that memory reads zero when reused
 *   scenarios [...] cleanup              releases everything of owner "scn-*"
 *
 * Output is TAP; exit status 0 only if every check passed.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <glob.h>
#include <signal.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <systemd/sd-bus.h>

/* OPTS() gives defaults that callers override by design. */
#pragma GCC diagnostic ignored "-Woverride-init"

#define MiB (UINT64_C(1) << 20)
#define GiB (UINT64_C(1) << 30)
#define MAX_RANGES 64

static uint64_t max_u64(uint64_t a, uint64_t b) {
        return a > b ? a : b;
}

static sd_bus *bus;
static bool use_sysfs;
static const char *runtime_dir = "/run/daxbroker";
static unsigned n_test, n_fail;

#define DEST "org.daxbroker.Broker1"
#define PATH "/org/daxbroker/Broker1"
#define MGR "org.daxbroker.Broker1.Manager"

static void check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(bool ok, const char *fmt, ...) {
        va_list ap;

        n_test++;
        if (!ok)
                n_fail++;
        printf("%s %u - ", ok ? "ok" : "not ok", n_test);
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        printf("\n");
        fflush(stdout);
}

static void diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void diag(const char *fmt, ...) {
        va_list ap;

        printf("# ");
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        printf("\n");
}

typedef struct Range {
        uint64_t start, size;
} Range;

typedef struct PoolInfo {
        char path[256], name[64];
        uint32_t region;
        int32_t node;
        uint64_t start, size, align, boundary, free, allocated, host, dirty, foreign, largest;
        uint64_t warm; /* WarmSize: warm devices, part of free */
} PoolInfo;

typedef struct AllocInfo {
        char path[256], id[80], owner[300], label[300], device[64];
        uint64_t size;
        unsigned n_ranges;
        Range ranges[MAX_RANGES];
} AllocInfo;

static int list_pools(PoolInfo *pools, unsigned max) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        unsigned n = 0;
        int r;

        r = sd_bus_call_method(bus, DEST, PATH, MGR, "ListPools", &error, &reply, NULL);
        if (r < 0) {
                diag("ListPools failed: %s", error.message);
                sd_bus_error_free(&error);
                return r;
        }
        sd_bus_message_enter_container(reply, 'a', "(osuitttttttttt)");
        for (;;) {
                const char *path, *name;
                PoolInfo p = {};

                r = sd_bus_message_read(reply, "(osuitttttttttt)", &path, &name, &p.region, &p.node, &p.start,
                                        &p.size, &p.align, &p.boundary, &p.free, &p.allocated, &p.host, &p.dirty,
                                        &p.foreign, &p.largest);
                if (r <= 0)
                        break;
                snprintf(p.path, sizeof(p.path), "%s", path);
                snprintf(p.name, sizeof(p.name), "%s", name);
                (void) sd_bus_get_property_trivial(bus, DEST, path, "org.daxbroker.Broker1.Pool", "WarmSize", NULL, 't',
                                                   &p.warm);
                if (n < max)
                        pools[n++] = p;
        }
        sd_bus_message_unref(reply);
        return r < 0 ? r : (int) n;
}

static int list_allocations(AllocInfo *out, unsigned max) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        unsigned n = 0;
        int r;

        r = sd_bus_call_method(bus, DEST, PATH, MGR, "ListAllocations", &error, &reply, NULL);
        if (r < 0) {
                diag("ListAllocations failed: %s", error.message);
                sd_bus_error_free(&error);
                return r;
        }
        sd_bus_message_enter_container(reply, 'a', "(ossussttsbta(tt))");
        while ((r = sd_bus_message_enter_container(reply, 'r', "ossussttsbta(tt)")) > 0) {
                const char *path, *id, *owner, *label, *pool, *device;
                uint32_t uid;
                uint64_t size, align, created;
                int transient;
                AllocInfo a = {};

                sd_bus_message_read(reply, "ossussttsbt", &path, &id, &owner, &uid, &label, &pool, &size, &align,
                                    &device, &transient, &created);
                snprintf(a.path, sizeof(a.path), "%s", path);
                snprintf(a.id, sizeof(a.id), "%s", id);
                snprintf(a.owner, sizeof(a.owner), "%s", owner);
                snprintf(a.label, sizeof(a.label), "%s", label);
                snprintf(a.device, sizeof(a.device), "%s", device);
                a.size = size;
                sd_bus_message_enter_container(reply, 'a', "(tt)");
                uint64_t s, l;
                while (sd_bus_message_read(reply, "(tt)", &s, &l) > 0)
                        if (a.n_ranges < MAX_RANGES)
                                a.ranges[a.n_ranges++] = (Range) { s, l };
                sd_bus_message_exit_container(reply);
                sd_bus_message_exit_container(reply);
                if (n < max)
                        out[n++] = a;
        }
        sd_bus_message_unref(reply);
        return r < 0 ? r : (int) n;
}

static bool find_allocation(const char *path, AllocInfo *ret) {
        static AllocInfo all[1024];
        int n = list_allocations(all, 1024);

        for (int i = 0; i < n; i++)
                if (strcmp(all[i].path, path) == 0) {
                        *ret = all[i];
                        return true;
                }
        return false;
}

typedef struct AllocOpts {
        const char *pool;
        int numa_node; /* -1: not given */
        uint64_t align;
        int contiguous; /* -1: not given */
        const char *label;
        int64_t device_owner; /* -1: not given; else uid and gid */
        uint64_t timeout_usec; /* 0: not given */
        bool bad_key, bad_type;
} AllocOpts;

#define OPTS(...) ((AllocOpts) { .numa_node = -1, .contiguous = -1, .device_owner = -1, __VA_ARGS__ })

/* Returns 0 with path and fd, or the D-Bus error name in ret_error_name. */
static int allocate(const char *owner, uint64_t size, AllocOpts o, char *ret_path, int *ret_fd,
                    char *ret_error_name, size_t errlen) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *m = NULL, *reply = NULL;
        const char *path;
        int fd, r;

        sd_bus_message_new_method_call(bus, &m, DEST, PATH, MGR, "Allocate");
        sd_bus_message_append(m, "st", owner, size);
        sd_bus_message_open_container(m, 'a', "{sv}");
        if (o.pool)
                sd_bus_message_append(m, "{sv}", "pool", "s", o.pool);
        if (o.numa_node >= 0)
                sd_bus_message_append(m, "{sv}", "numa-node", "i", o.numa_node);
        if (o.align)
                sd_bus_message_append(m, "{sv}", "align", "t", o.align);
        if (o.contiguous >= 0)
                sd_bus_message_append(m, "{sv}", "contiguous", "b", o.contiguous);
        if (o.label)
                sd_bus_message_append(m, "{sv}", "label", "s", o.label);
        if (o.device_owner >= 0) {
                sd_bus_message_append(m, "{sv}", "device-uid", "u", (uint32_t) o.device_owner);
                sd_bus_message_append(m, "{sv}", "device-gid", "u", (uint32_t) o.device_owner);
        }
        if (o.timeout_usec)
                sd_bus_message_append(m, "{sv}", "timeout-usec", "t", o.timeout_usec);
        if (o.bad_key)
                sd_bus_message_append(m, "{sv}", "colour", "s", "blue");
        if (o.bad_type)
                sd_bus_message_append(m, "{sv}", "align", "s", "2M");
        sd_bus_message_close_container(m);

        r = sd_bus_call(bus, m, 0, &error, &reply);
        sd_bus_message_unref(m);
        if (ret_error_name)
                ret_error_name[0] = 0;
        if (r < 0) {
                if (ret_error_name)
                        snprintf(ret_error_name, errlen, "%s", error.name ? error.name : "?");
                diag("Allocate(%s, %" PRIu64 ") -> %s: %s", owner, size, error.name, error.message);
                sd_bus_error_free(&error);
                return r;
        }
        sd_bus_message_read(reply, "oh", &path, &fd);
        snprintf(ret_path, 256, "%s", path);
        *ret_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        sd_bus_message_unref(reply);
        return 0;
}

static int release(const char *path, char *ret_error_name, size_t errlen) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r = sd_bus_call_method(bus, DEST, PATH, MGR, "Release", &error, NULL, "o", path);

        if (ret_error_name)
                snprintf(ret_error_name, errlen, "%s", r < 0 && error.name ? error.name : "");
        if (r < 0)
                diag("Release(%s) -> %s: %s", path, error.name, error.message);
        sd_bus_error_free(&error);
        return r;
}

/* ---- kernel-side checks (only with --sysfs) ---- */

static int sysfs_read_u64(const char *path, uint64_t *ret) {
        char buf[64] = {};
        FILE *f = fopen(path, "re");

        if (!f)
                return -errno;
        if (!fgets(buf, sizeof(buf), f)) {
                fclose(f);
                return -EIO;
        }
        fclose(f);
        *ret = strtoull(buf, NULL, 0);
        return 0;
}

/* Ranges of /sys/bus/dax/devices/NAME/mappingN, sorted by start. */
static int sysfs_ranges(const char *dev, Range *out, unsigned max) {
        char pattern[256];
        glob_t g;
        unsigned n = 0;

        snprintf(pattern, sizeof(pattern), "/sys/bus/dax/devices/%s/mapping[0-9]*", dev);
        if (glob(pattern, 0, NULL, &g) != 0)
                return 0;
        for (size_t i = 0; i < g.gl_pathc && n < max; i++) {
                char p[512];
                uint64_t s, e;

                snprintf(p, sizeof(p), "%s/start", g.gl_pathv[i]);
                if (sysfs_read_u64(p, &s) < 0)
                        continue;
                snprintf(p, sizeof(p), "%s/end", g.gl_pathv[i]);
                if (sysfs_read_u64(p, &e) < 0)
                        continue;
                out[n++] = (Range) { s, e - s + 1 };
        }
        globfree(&g);
        for (unsigned i = 1; i < n; i++)
                for (unsigned k = i; k > 0 && out[k - 1].start > out[k].start; k--) {
                        Range t = out[k];
                        out[k] = out[k - 1];
                        out[k - 1] = t;
                }
        return n;
}

static bool sysfs_device_exists(const char *dev) {
        char p[256];

        snprintf(p, sizeof(p), "/sys/bus/dax/devices/%s", dev);
        return access(p, F_OK) == 0;
}

static int sysfs_region_available(uint32_t region, uint64_t *ret) {
        char p[256];

        snprintf(p, sizeof(p), "/sys/bus/dax/devices/dax%u.0/../dax_region/available_size", region);
        return sysfs_read_u64(p, ret);
}

/* Everything the kernel shows of dax devices, for "nothing changed". */
static char *sysfs_snapshot(void) {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        glob_t g;

        if (use_sysfs && glob("/sys/bus/dax/devices/dax*", 0, NULL, &g) == 0) {
                for (size_t i = 0; i < g.gl_pathc; i++) {
                        const char *dev = strrchr(g.gl_pathv[i], '/') + 1;
                        Range r[MAX_RANGES];
                        int n = sysfs_ranges(dev, r, MAX_RANGES);

                        fprintf(f, "%s:", dev);
                        for (int k = 0; k < n; k++)
                                fprintf(f, " %" PRIx64 "+%" PRIx64, r[k].start, r[k].size);
                        fprintf(f, "\n");
                }
                globfree(&g);
        }
        fclose(f);
        return buf;
}

static char *state_snapshot(void) {
        static AllocInfo all[1024];
        PoolInfo pools[16];
        char *buf = NULL, *sys;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        int n = list_allocations(all, 1024), np = list_pools(pools, 16);

        for (int i = 0; i < n; i++) {
                fprintf(f, "%s %s %s %" PRIu64, all[i].id, all[i].owner, all[i].device, all[i].size);
                for (unsigned k = 0; k < all[i].n_ranges; k++)
                        fprintf(f, " %" PRIx64 "+%" PRIx64, all[i].ranges[k].start, all[i].ranges[k].size);
                fprintf(f, "\n");
        }
        for (int i = 0; i < np; i++)
                fprintf(f, "%s free=%" PRIu64 " alloc=%" PRIu64 " host=%" PRIu64 "\n", pools[i].name, pools[i].free,
                        pools[i].allocated, pools[i].host);
        sys = sysfs_snapshot();
        fputs(sys, f);
        free(sys);
        fclose(f);
        return buf;
}

static bool ranges_match_kernel(const AllocInfo *a) {
        Range k[MAX_RANGES];
        const char *dev = strrchr(a->device, '/') ? strrchr(a->device, '/') + 1 : a->device;
        int n = sysfs_ranges(dev, k, MAX_RANGES);

        if (n != (int) a->n_ranges)
                return false;
        for (int i = 0; i < n; i++)
                if (k[i].start != a->ranges[i].start || k[i].size != a->ranges[i].size)
                        return false;
        return true;
}

static const char *devname(const AllocInfo *a) {
        return strrchr(a->device, '/') ? strrchr(a->device, '/') + 1 : a->device;
}

/* Released memory is zeroed in the background before it is free again;
 * waits (bounded, as a liveness guard, not a speed check) until no pool has
 * dirty memory left. */
static bool wait_clean(void) {
        for (int i = 0; i < 6000; i++) {
                PoolInfo pools[16];
                int n = list_pools(pools, 16);
                uint64_t dirty = 0;

                for (int k = 0; k < n; k++)
                        dirty += pools[k].dirty;
                if (n >= 0 && dirty == 0)
                        return true;
                usleep(50 * 1000);
        }
        diag("memory is still dirty after 300 s");
        return false;
}

/* A pool with room for the scenario, preferring the one with a boundary or
 * without, as asked. */
/* The daemon makes warm devices in the background after any operation:
 * a snapshot taken while it is quiet (two in a row agree; bounded, as a
 * liveness guard). */
/* No released device still being destroyed: Release replies first, and
 * its memory stays in AllocatedSize, unlisted, until the device is gone. */
static bool releases_settled(void) {
        static AllocInfo all[1024];
        PoolInfo pools[16];
        int n = list_allocations(all, 1024), np = list_pools(pools, 16);
        uint64_t listed = 0, allocated = 0;

        for (int i = 0; i < n; i++)
                listed += all[i].size;
        for (int i = 0; i < np; i++)
                allocated += pools[i].allocated;
        return listed == allocated;
}

static char *quiet_snapshot(void) {
        char *a = state_snapshot(), *b = NULL;

        for (int i = 0; i < 100; i++) {
                usleep(300 * 1000);
                b = state_snapshot();
                if (strcmp(a, b) == 0 && releases_settled())
                        break;
                free(a);
                a = b;
                b = NULL;
        }
        free(a);
        return b ? b : state_snapshot();
}

static bool find_pool(const char *name, PoolInfo *ret);

/* Release replies before the device is destroyed: waits (bounded, as a
 * liveness guard) until the pool's FreeSize is want again. */
static bool wait_free(const char *pool, uint64_t want) {
        PoolInfo p;

        for (int i = 0; i < 3000; i++) {
                if (find_pool(pool, &p) && p.free == want)
                        return true;
                usleep(10 * 1000);
        }
        return false;
}

static bool pick_pool(bool want_boundary, uint64_t need, PoolInfo *ret) {
        PoolInfo pools[16];
        int n = list_pools(pools, 16);

        for (int i = 0; i < n; i++)
                if ((pools[i].boundary > 0) == want_boundary && pools[i].largest >= need) {
                        *ret = pools[i];
                        return true;
                }
        return false;
}

/* ---- scenarios ---- */

static void scenario_allocate_1g(void) {
        char path[256], err[256];
        PoolInfo p;
        AllocInfo a;
        int fd;

        diag("Allocate 1 GiB, map it, write and read back, release");
        if (!pick_pool(false, GiB, &p)) {
                check(false, "a pool without Boundary= has a free 1 GiB extent");
                return;
        }
        /* A temporary link left by a crash between its symlink() and its
         * rename() must not stop the stable path. */
        char stale[PATH_MAX];
        (void) mkdir(runtime_dir, 0755);
        snprintf(stale, sizeof(stale), "%s/owners", runtime_dir);
        (void) mkdir(stale, 0755);
        snprintf(stale, sizeof(stale), "%s/owners/scn-vm1", runtime_dir);
        (void) mkdir(stale, 0755);
        snprintf(stale, sizeof(stale), "%s/owners/scn-vm1/.link.tmp", runtime_dir);
        (void) unlink(stale);
        check(symlink("/dev/null", stale) == 0, "a stale %s is left behind", stale);
        if (allocate("scn-vm1", GiB, OPTS(.pool = p.name, .label = "mem0"), path, &fd, err, sizeof(err)) < 0) {
                check(false, "Allocate 1 GiB in %s", p.name);
                return;
        }
        check(true, "Allocate 1 GiB in %s -> %s", p.name, path);

        void *mem = mmap(NULL, GiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        check(mem != MAP_FAILED, "the returned fd mmaps 1 GiB MAP_SHARED");
        if (mem != MAP_FAILED) {
                bool ok = true;
                for (uint64_t off = 0; off < GiB; off += 2 * MiB)
                        ((volatile uint64_t *) mem)[off / 8] = off ^ 0x5a5a5a5a;
                for (uint64_t off = 0; off < GiB; off += 2 * MiB)
                        ok = ok && ((volatile uint64_t *) mem)[off / 8] == (off ^ 0x5a5a5a5a);
                check(ok, "what was written through the mapping reads back");
                munmap(mem, GiB);
        }
        close(fd);

        check(find_allocation(path, &a), "ListAllocations shows the allocation");
        check(a.size == GiB && a.n_ranges == 1, "it is one range of 1 GiB");

        /* A path-based consumer's view. */
        char link[PATH_MAX], target[PATH_MAX] = {};
        snprintf(link, sizeof(link), "%s/owners/scn-vm1/mem0", runtime_dir);
        ssize_t l = readlink(link, target, sizeof(target) - 1);
        check(l > 0 && strcmp(target, a.device) == 0, "stable path %s points at %s (is '%s')", link, a.device,
              target);
        check(access(stale, F_OK) < 0 && errno == ENOENT, "the stale temporary link is gone");

        if (use_sysfs) {
                PoolInfo after;
                uint64_t avail = 0;

                check(ranges_match_kernel(&a), "sysfs mappingN of %s equal the reported ranges", a.device);
                pick_pool(false, 0, &after);
                list_pools(&after, 1);
                PoolInfo pools[16];
                int n = list_pools(pools, 16);
                for (int i = 0; i < n; i++)
                        if (strcmp(pools[i].name, p.name) == 0)
                                after = pools[i];
                sysfs_region_available(p.region, &avail);
                check(after.free == avail + after.warm,
                      "pool free size %" PRIu64 " equals region available_size %" PRIu64 " + WarmSize %" PRIu64,
                      after.free, avail, after.warm);
        }

        check(release(path, err, sizeof(err)) >= 0, "Release");
        check(!find_allocation(path, &a), "the allocation is gone from ListAllocations");
        /* Release replies first; the device is destroyed right after, in
         * the background, and then the memory can be allocated again
         * (zeroing follows in the background). */
        check(wait_free(p.name, p.free), "the pool's free size comes back once the device is destroyed");
        if (use_sysfs)
                check(!sysfs_device_exists(devname(&a)), "%s is gone from sysfs", devname(&a));
        PoolInfo pools[16];
        int n = list_pools(pools, 16);
        for (int i = 0; i < n; i++)
                if (strcmp(pools[i].name, p.name) == 0) {
                        uint64_t avail = 0;

                        check(pools[i].free == p.free, "the pool's free size is back to %" PRIu64, p.free);
                        if (use_sysfs && sysfs_region_available(p.region, &avail) >= 0)
                                check(pools[i].free == avail + pools[i].warm,
                                      "and equals available_size %" PRIu64 " + WarmSize %" PRIu64, avail,
                                      pools[i].warm);
                }
        check(wait_clean(), "the released memory is zeroed");
        check(access(link, F_OK) < 0, "the stable path is gone");
}

static void scenario_boundary(void) {
        char path[3][256], err[256];
        PoolInfo p;
        int fd;

        diag("Boundary=: every range of every allocation starts and ends on the boundary");
        if (!pick_pool(true, 0, &p)) {
                check(false, "a pool with Boundary= is configured");
                return;
        }
        uint64_t sizes[3] = { p.boundary, 2 * p.boundary, p.boundary };
        for (int i = 0; i < 3; i++) {
                int r = allocate("scn-bound", sizes[i], OPTS(.pool = p.name, .contiguous = i == 1 ? 0 : 1), path[i],
                                 &fd, err, sizeof(err));
                check(r >= 0, "allocate %" PRIu64 " MiB in %s", sizes[i] / MiB, p.name);
                if (r >= 0)
                        close(fd);
                else
                        path[i][0] = 0;
        }
        uint64_t odd = p.boundary / 2;
        int r = allocate("scn-bound", odd, OPTS(.pool = p.name), path[0] + 0, &fd, err, sizeof(err));
        if (r >= 0)
                close(fd);
        check(r < 0 && strstr(err, "InvalidArgument"), "a size that is not a multiple of the boundary is refused (%s)", err);

        static AllocInfo all[1024];
        int n = list_allocations(all, 1024);
        bool ok = true;
        unsigned seen = 0;
        for (int i = 0; i < n; i++) {
                if (strcmp(all[i].owner, "scn-bound") != 0)
                        continue;
                for (unsigned k = 0; k < all[i].n_ranges; k++) {
                        uint64_t s = all[i].ranges[k].start - p.start, e = s + all[i].ranges[k].size;
                        seen++;
                        if (s % p.boundary || e % p.boundary)
                                ok = false;
                }
                if (use_sysfs)
                        check(ranges_match_kernel(&all[i]), "kernel ranges of %s equal reported ranges", all[i].device);
        }
        check(ok && seen >= 3, "all %u ranges start and end on %" PRIu64 " MiB boundaries", seen, p.boundary / MiB);
        sd_bus_call_method(bus, DEST, PATH, MGR, "ReleaseOwner", NULL, NULL, "s", "scn-bound");
}

static void scenario_fragmentation(void) {
        char a[256], b[256], c[256], d[256], err[256];
        PoolInfo p;
        AllocInfo info;
        int fd;

        diag("Fragmentation: contiguous fails with NoSpace naming the largest extent; split succeeds");
        wait_clean();
        if (!pick_pool(false, 0, &p) || p.free != p.size) {
                check(false, "an empty pool without Boundary= exists");
                return;
        }
        uint64_t unit = p.size / 4 / (2 * MiB) * (2 * MiB);
        bool ok = allocate("scn-frag", unit, OPTS(.pool = p.name), a, &fd, err, sizeof(err)) >= 0;
        if (ok)
                close(fd);
        ok = ok && allocate("scn-frag", unit, OPTS(.pool = p.name), b, &fd, err, sizeof(err)) >= 0;
        if (ok)
                close(fd);
        ok = ok && allocate("scn-frag", unit, OPTS(.pool = p.name), c, &fd, err, sizeof(err)) >= 0;
        if (ok)
                close(fd);
        check(ok, "allocate A, B, C of %" PRIu64 " MiB", unit / MiB);
        check(release(b, err, sizeof(err)) >= 0, "release B");
        check(wait_free(p.name, p.size - 2 * unit), "B's device is destroyed");
        wait_clean();

        /* Holes now: B's and the tail; more than either, less than both. */
        uint64_t want = unit + unit / 2 / (2 * MiB) * (2 * MiB);
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *m = NULL, *reply = NULL;
        sd_bus_message_new_method_call(bus, &m, DEST, PATH, MGR, "Allocate");
        sd_bus_message_append(m, "sta{sv}", "scn-frag", want, 2, "pool", "s", p.name, "contiguous", "b", 1);
        int r = sd_bus_call(bus, m, 0, &error, &reply);
        sd_bus_message_unref(m);
        char largest[64];
        snprintf(largest, sizeof(largest), "%" PRIu64 " MiB", unit / MiB);
        check(r < 0 && sd_bus_error_has_name(&error, "org.daxbroker.Broker1.Error.NoSpace") && error.message &&
                      strstr(error.message, largest),
              "contiguous %" PRIu64 " MiB fails with NoSpace naming the largest free extent (%s: %s)", want / MiB,
              error.name, error.message);
        sd_bus_error_free(&error);
        sd_bus_message_unref(reply);

        r = allocate("scn-frag", want, OPTS(.pool = p.name, .contiguous = 0), d, &fd, err, sizeof(err));
        if (r >= 0)
                close(fd);
        bool found = r >= 0 && find_allocation(d, &info);
        check(found && info.n_ranges > 1 && info.size == want, "contiguous=false succeeds with %u ranges",
              found ? info.n_ranges : 0);
        if (r >= 0 && use_sysfs)
                check(ranges_match_kernel(&info), "kernel ranges equal the reported ranges");
        if (r >= 0) {
                int mfd = -1;
                sd_bus_message *om = NULL;
                if (sd_bus_call_method(bus, DEST, PATH, MGR, "Open", NULL, &om, "o", d) >= 0)
                        sd_bus_message_read(om, "h", &mfd);
                void *mem = mfd >= 0 ? mmap(NULL, want, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0) : MAP_FAILED;
                check(mem != MAP_FAILED, "Open returns an fd that maps the whole split allocation");
                if (mem != MAP_FAILED) {
                        memset(mem, 0xab, 4096);
                        ((char *) mem)[want - 1] = 1;
                        munmap(mem, want);
                }
                sd_bus_message_unref(om);
        }
        sd_bus_call_method(bus, DEST, PATH, MGR, "ReleaseOwner", NULL, NULL, "s", "scn-frag");
}

static void expect_error(const char *what, const char *want, const char *got) {
        check(strcmp(want, got) == 0, "%s: %s (got %s)", what, want, got[0] ? got : "success");
}

static void scenario_bad_input(void) {
        char path[256], err[256], owner_long[300], owner_ctl[] = "vm\x01x";
        PoolInfo pools[16];
        int np = list_pools(pools, 16), fd;
        uint64_t biggest = 0;
        char *before, *after;

        diag("Bad input gets a named error and changes nothing");
        wait_clean();
        for (int i = 0; i < np; i++)
                if (pools[i].size > biggest)
                        biggest = pools[i].size;
        memset(owner_long, 'o', 256);
        owner_long[256] = 0;

        before = quiet_snapshot();

#define TRY(what, name, owner, size, opts)                                                       \
        do {                                                                                     \
                if (allocate(owner, size, opts, path, &fd, err, sizeof(err)) >= 0) {             \
                        close(fd);                                                               \
                        release(path, NULL, 0);                                                  \
                }                                                                                \
                expect_error(what, "org.daxbroker.Broker1.Error." name, err);                    \
        } while (0)

        TRY("size 0", "InvalidArgument", "scn-bad", 0, OPTS());
        TRY("size not a multiple of 2 MiB", "InvalidArgument", "scn-bad", 3 * MiB, OPTS());
        TRY("larger than any pool", "NoSpace", "scn-bad", biggest + 2 * MiB * 512, OPTS());
        TRY("unknown pool", "NoSuchPool", "scn-bad", 2 * MiB, OPTS(.pool = "no-such-pool"));
        TRY("align 3 MiB", "InvalidArgument", "scn-bad", 6 * MiB, OPTS(.align = 3 * MiB));
        TRY("unknown option key", "InvalidArgument", "scn-bad", 2 * MiB, OPTS(.bad_key = true));
        TRY("wrong option type", "InvalidArgument", "scn-bad", 2 * MiB, OPTS(.bad_type = true));
        TRY("empty owner", "InvalidArgument", "", 2 * MiB, OPTS());
        TRY("owner over 255 bytes", "InvalidArgument", owner_long, 2 * MiB, OPTS());
        TRY("owner with control characters", "InvalidArgument", owner_ctl, 2 * MiB, OPTS());
        TRY("unknown NUMA node", "NoSuchPool", "scn-bad", 2 * MiB, OPTS(.numa_node = 77));
#undef TRY

        release("/org/daxbroker/Broker1/allocation/0000000000000000", err, sizeof(err));
        expect_error("unknown allocation path", "org.daxbroker.Broker1.Error.NoSuchAllocation", err);
        release("/org/daxbroker/Broker1/pool", err, sizeof(err));
        expect_error("malformed allocation path", "org.daxbroker.Broker1.Error.InvalidArgument", err);
        release("/", err, sizeof(err));
        expect_error("malformed allocation path /", "org.daxbroker.Broker1.Error.InvalidArgument", err);

        after = state_snapshot();
        check(strcmp(before, after) == 0, "state and sysfs are identical before and after");
        if (strcmp(before, after) != 0)
                diag("before:\n%s\nafter:\n%s", before, after);
        free(before);
        free(after);
}

static void scenario_numa(void) {
        PoolInfo pools[16];
        int np = list_pools(pools, 16);
        char path[256], err[256];
        AllocInfo a;
        int fd;

        diag("numa-node picks among pools");
        for (int i = 0; i < np; i++) {
                if (pools[i].largest < max_u64(pools[i].boundary, 2 * MiB) || pools[i].node < 0)
                        continue;
                uint64_t sz = pools[i].boundary ? pools[i].boundary : 2 * MiB;
                int r = allocate("scn-numa", sz, OPTS(.numa_node = pools[i].node), path, &fd, err, sizeof(err));
                if (r >= 0)
                        close(fd);
                bool in_pool = r >= 0 && find_allocation(path, &a) && a.ranges[0].start >= pools[i].start &&
                               a.ranges[0].start < pools[i].start + pools[i].size;
                check(in_pool, "numa-node %d lands in a pool on node %d", pools[i].node, pools[i].node);
                if (r >= 0)
                        release(path, NULL, 0);
        }
}

static void scenario_align_1g(void) {
        PoolInfo p;
        char path[256], err[256];
        AllocInfo a;
        int fd;

        diag("align 1 GiB places ranges on 1 GiB physical boundaries");
        if (!pick_pool(false, GiB, &p)) {
                check(false, "a pool has a free 1 GiB extent");
                return;
        }
        int r = allocate("scn-align", GiB, OPTS(.pool = p.name, .align = GiB), path, &fd, err, sizeof(err));
        check(r >= 0, "allocate 1 GiB with align 1 GiB");
        if (r < 0)
                return;
        close(fd);
        bool ok = find_allocation(path, &a);
        for (unsigned k = 0; ok && k < a.n_ranges; k++)
                ok = a.ranges[k].start % GiB == 0 && a.ranges[k].size % GiB == 0;
        check(ok, "every range starts on a 1 GiB physical boundary");
        if (use_sysfs) {
                uint64_t align = 0;
                char p2[256];
                snprintf(p2, sizeof(p2), "/sys/bus/dax/devices/%s/align", devname(&a));
                sysfs_read_u64(p2, &align);
                check(align == GiB, "the device's align is 1 GiB (%" PRIu64 ")", align);
                check(ranges_match_kernel(&a), "kernel ranges equal the reported ranges");
        }
        release(path, NULL, 0);
}

static void scenario_transient(void) {
        sd_bus *saved = bus, *client = NULL;
        char path[256], err[256];
        PoolInfo p;
        AllocInfo a;
        int fd, r;

        diag("A transient allocation goes away with its client's bus connection");
        if (!pick_pool(false, 2 * MiB, &p)) {
                check(false, "a pool without Boundary= has room");
                return;
        }
        /* A second connection plays the client that dies. */
        r = sd_bus_new(&client);
        if (r >= 0) {
                const char *address = NULL;
                sd_bus_get_address(saved, &address);
                r = sd_bus_set_address(client, address);
        }
        if (r >= 0)
                r = sd_bus_set_bus_client(client, 1);
        if (r >= 0)
                r = sd_bus_start(client);
        if (r < 0) {
                check(false, "second bus connection: %s", strerror(-r));
                return;
        }
        bus = client;
        sd_bus_message *m = NULL, *reply = NULL;
        sd_bus_message_new_method_call(bus, &m, DEST, PATH, MGR, "Allocate");
        sd_bus_message_append(m, "sta{sv}", "scn-transient", 2 * MiB, 2, "pool", "s", p.name, "transient", "b", 1);
        r = sd_bus_call(bus, m, 0, NULL, &reply);
        sd_bus_message_unref(m);
        bus = saved;
        check(r >= 0, "Allocate with transient=true");
        if (r < 0) {
                sd_bus_flush_close_unref(client);
                return;
        }
        const char *op;
        sd_bus_message_read(reply, "oh", &op, &fd);
        snprintf(path, sizeof(path), "%s", op);
        sd_bus_message_unref(reply);
        check(find_allocation(path, &a), "it exists while the client is connected");
        sd_bus_flush_close_unref(client);

        bool gone = false;
        for (int i = 0; i < 100 && !gone; i++) {
                gone = !find_allocation(path, &a);
                if (!gone)
                        usleep(50 * 1000);
        }
        check(gone, "it is released once the client has left the bus");
        check(wait_clean(), "its memory is zeroed");
        (void) err;
}

/* ---- isolation: nobody sees another owner's data ---- */

static bool all_zero(const char *mem, uint64_t size) {
        static const char zero[4096];

        for (uint64_t off = 0; off < size; off += sizeof(zero))
                if (memcmp(mem + off, zero, sizeof(zero)) != 0) {
                        diag("non-zero page at offset %#" PRIx64, off);
                        return false;
                }
        return true;
}

/* Allocates size in pool and fills every page with a pattern; returns the
 * allocation info. */
static bool fill_allocation(const char *owner, const char *pool, uint64_t size, AllocInfo *ret) {
        char path[256], err[256];
        int fd;

        if (allocate(owner, size, OPTS(.pool = pool), path, &fd, err, sizeof(err)) < 0)
                return false;
        char *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        close(fd);
        if (mem == MAP_FAILED)
                return false;
        for (uint64_t off = 0; off < size; off += 4096)
                memset(mem + off, 0xa5, 4096);
        munmap(mem, size);
        return find_allocation(path, ret);
}

/* Allocates size in pool and checks that it has exactly the expected
 * ranges and reads zero everywhere. */
static void check_reuse_is_zero(const char *owner, const char *pool, uint64_t size, const AllocInfo *before) {
        char path[256], err[256];
        AllocInfo b;
        int fd;

        if (allocate(owner, size, OPTS(.pool = pool), path, &fd, err, sizeof(err)) < 0) {
                check(false, "owner %s allocates %" PRIu64 " MiB", owner, size / MiB);
                return;
        }
        bool same = find_allocation(path, &b) && b.n_ranges == before->n_ranges;
        for (unsigned k = 0; same && k < b.n_ranges; k++)
                same = b.ranges[k].start == before->ranges[k].start && b.ranges[k].size == before->ranges[k].size;
        check(same, "owner %s got the same physical ranges the previous owner had", owner);
        char *mem = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
        close(fd);
        check(mem != MAP_FAILED && all_zero(mem, size), "every page of %s's allocation reads zero", owner);
        if (mem != MAP_FAILED)
                munmap(mem, size);
        release(path, NULL, 0);
}

static void scenario_isolation(void) {
        PoolInfo p;
        AllocInfo a;
        char err[256];
        uint64_t size = 512 * MiB;

        diag("Owner A's data never reaches owner B");
        wait_clean();
        if (!pick_pool(false, 0, &p) || p.free != p.size) {
                check(false, "an empty pool without Boundary= exists");
                return;
        }
        bool ok = fill_allocation("scn-tenant-a", p.name, size, &a);
        check(ok, "owner A fills %" PRIu64 " MiB with a pattern", size / MiB);
        if (!ok)
                return;
        check(release(a.path, err, sizeof(err)) >= 0, "owner A releases it");
        check(wait_free(p.name, p.free), "its device is destroyed");
        check(wait_clean(), "the released memory is zeroed");
        check_reuse_is_zero("scn-tenant-b", p.name, size, &a);
        wait_clean();
}

/* Release, then a crash before zeroing can finish: the memory must still
 * be zeroed before anyone gets it. */
static int setup_dirty(const char *file) {
        PoolInfo p;
        AllocInfo a;
        char err[256];
        FILE *f;

        wait_clean();
        if (!pick_pool(false, 0, &p) || p.free != p.size) {
                check(false, "an empty pool without Boundary= exists");
                return 1;
        }
        bool ok = fill_allocation("scn-tenant-a", p.name, 512 * MiB, &a);
        check(ok, "owner A fills 512 MiB with a pattern");
        if (!ok)
                return 1;
        check(release(a.path, err, sizeof(err)) >= 0, "owner A releases it");
        /* The daemon kills itself half-way through zeroing it
         * (DAXBROKER_TEST_CRASH_AT=scrub-half); the caller checks that. */
        f = fopen(file, "we");
        if (!f)
                return 1;
        fprintf(f, "%s %u", p.name, a.n_ranges);
        for (unsigned k = 0; k < a.n_ranges; k++)
                fprintf(f, " %" PRIu64 " %" PRIu64, a.ranges[k].start, a.ranges[k].size);
        fprintf(f, "\n");
        fclose(f);
        return n_fail ? 1 : 0;
}

static bool find_pool(const char *name, PoolInfo *ret);

/* Some pool has memory waiting to be zeroed. */
static bool some_pool_dirty(void) {
        PoolInfo pools[16];
        int n = list_pools(pools, 16);
        bool dirty = false;

        for (int k = 0; k < n; k++) {
                diag("pool %s: DirtySize %" PRIu64 " MiB", pools[k].name, pools[k].dirty / MiB);
                dirty = dirty || pools[k].dirty > 0;
        }
        return dirty;
}

/* Right after a restart that follows a crash in the middle of zeroing, the
 * pool still reports the memory dirty (the daemon holds its zeroing at the
 * crash point while hold exists); with hold removed, it is zeroed before
 * anyone gets it. */
static int check_dirty(const char *file, const char *hold) {
        FILE *f = fopen(file, "re");
        char pool[64];
        AllocInfo a = {};
        PoolInfo p = {};

        if (!f || fscanf(f, "%63s %u", pool, &a.n_ranges) != 2 || a.n_ranges > MAX_RANGES) {
                check(false, "cannot read %s", file);
                return 1;
        }
        for (unsigned k = 0; k < a.n_ranges; k++)
                if (fscanf(f, " %" SCNu64 " %" SCNu64, &a.ranges[k].start, &a.ranges[k].size) != 2)
                        a.n_ranges = 0;
        fclose(f);
        bool found = find_pool(pool, &p);

        /* With HOLD the restarted daemon is held in the middle of zeroing
         * (DAXBROKER_TEST_HOLD_WHILE): the dirt must be there to see. Without
         * it (a plain release, the libvirt test) zeroing may be done already. */
        if (hold) {
                check(found && p.dirty > 0, "right after the restart pool %s has DirtySize %" PRIu64 " MiB > 0",
                      pool, p.dirty / MiB);
                if (unlink(hold) < 0)
                        check(false, "remove %s: %s", hold, strerror(errno));
        } else
                check(found, "pool %s is listed", pool);
        check(wait_clean(), "after the restart the dirty memory is zeroed");
        check_reuse_is_zero("scn-tenant-b", pool, 512 * MiB, &a);
        return n_fail ? 1 : 0;
}

/* ---- persistence ---- */

static int setup_persist(const char *file) {
        PoolInfo pools[16];
        int np = list_pools(pools, 16);
        FILE *f = fopen(file, "we");
        char path[256], err[256];
        const char *labels[3] = { "disk-a", "disk-b", "disk-c" };
        int fd;

        if (!f) {
                check(false, "cannot write %s", file);
                return 1;
        }
        for (int i = 0; i < 3; i++) {
                PoolInfo *p = &pools[i % np];
                uint64_t sz = p->boundary ? p->boundary : 256 * MiB;
                /* The second one's node belongs to a VM manager's user. */
                int r = allocate("scn-persist", sz,
                                 OPTS(.pool = p->name, .label = labels[i], .device_owner = i == 1 ? 65534 : -1), path,
                                 &fd, err, sizeof(err));
                check(r >= 0, "persistent allocation %d in %s", i, p->name);
                if (r < 0)
                        continue;
                /* A pattern that must survive a daemon crash (same device):
                 * the first and the last page. */
                char *mem = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
                check(mem != MAP_FAILED, "allocation %d maps", i);
                if (mem != MAP_FAILED) {
                        memset(mem, 0x40 + i, 4096);
                        memset(mem + sz - 4096, 0x40 + i, 4096);
                        munmap(mem, sz);
                }
                close(fd);
                AllocInfo a;
                find_allocation(path, &a);
                fprintf(f, "%s %s %s %u", a.path, a.label, a.device, a.n_ranges);
                for (unsigned k = 0; k < a.n_ranges; k++)
                        fprintf(f, " %" PRIu64 " %" PRIu64, a.ranges[k].start, a.ranges[k].size);
                fprintf(f, "\n");
        }
        fclose(f);
        return n_fail ? 1 : 0;
}

/* Opens the allocation and checks that its first and last page hold the
 * pattern setup_persist wrote (want == 0x40 + i), or zeros (want == 0). */
static bool pages_hold(const AllocInfo *a, unsigned char want) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        bool ok = false;
        char *mem;
        int fd;

        if (sd_bus_call_method(bus, DEST, PATH, MGR, "Open", &error, &reply, "o", a->path) < 0 ||
            sd_bus_message_read(reply, "h", &fd) < 0) {
                diag("Open(%s): %s", a->path, error.message ? error.message : "bad reply");
                goto out;
        }
        mem = mmap(NULL, a->size, PROT_READ, MAP_SHARED, fd, 0);
        if (mem == MAP_FAILED) {
                diag("mmap %s: %s", a->path, strerror(errno));
                goto out;
        }
        ok = true;
        for (uint64_t off = 0; off < 4096; off++)
                if ((unsigned char) mem[off] != want || (unsigned char) mem[a->size - 4096 + off] != want) {
                        diag("%s: byte %#" PRIx64 " of the first or last page is %#x, not %#x", a->path, off,
                             (unsigned char) ((unsigned char) mem[off] != want ? mem[off] : mem[a->size - 4096 + off]),
                             want);
                        ok = false;
                        break;
                }
        munmap(mem, a->size);
out:
        sd_bus_error_free(&error);
        sd_bus_message_unref(reply);
        return ok;
}

typedef enum {
        PERSIST_BYTES,     /* a daemon restart: the bytes stay */
        PERSIST_REBOOT,    /* memory does not keep its bytes across a reboot, only the allocations do */
        PERSIST_FROM_HOST, /* the host used the memory meanwhile: none of its data reaches the owner */
} PersistCheck;

/* host_pool: with PERSIST_FROM_HOST, only the allocations in this pool had
 * host-held memory (NULL: all of them); the others may hold anything. */
static int check_persist(const char *file, PersistCheck what, const char *host_pool) {
        FILE *f = fopen(file, "re");
        char line[4096];
        unsigned count = 0;
        PoolInfo pools[16], *hp = NULL;
        int np = list_pools(pools, 16);

        for (int i = 0; host_pool && i < np; i++)
                if (strcmp(pools[i].name, host_pool) == 0)
                        hp = &pools[i];
        if (host_pool && !hp) {
                check(false, "no pool %s", host_pool);
                return 1;
        }

        if (!f) {
                check(false, "cannot read %s", file);
                return 1;
        }
        while (fgets(line, sizeof(line), f)) {
                char path[256], label[256], dev[64];
                unsigned n;
                int off = 0;
                AllocInfo a;

                if (sscanf(line, "%255s %255s %63s %u%n", path, label, dev, &n, &off) != 4)
                        continue;
                count++;
                bool found = find_allocation(path, &a);
                check(found, "%s is still there", path);
                if (!found)
                        continue;
                bool same = a.n_ranges == n;
                char *p = line + off;
                for (unsigned k = 0; same && k < n; k++) {
                        uint64_t s, l;
                        int used;
                        if (sscanf(p, " %" SCNu64 " %" SCNu64 "%n", &s, &l, &used) != 2)
                                same = false;
                        else {
                                same = a.ranges[k].start == s && a.ranges[k].size == l;
                                p += used;
                        }
                }
                check(same, "%s has identical ranges", a.id);
                if (what == PERSIST_BYTES && strncmp(label, "disk-", 5) == 0)
                        check(pages_hold(&a, 0x40 + (label[5] - 'a')), "%s opens and still holds the pattern "
                              "written before the restart", a.id);
                else if (what == PERSIST_FROM_HOST &&
                         (!hp || (a.ranges[0].start >= hp->start && a.ranges[0].start < hp->start + hp->size)))
                        check(pages_hold(&a, 0), "%s opens and reads zero: neither the host's data nor the "
                              "pattern from before the reboot is left", a.id);
                if (use_sysfs) {
                        check(sysfs_device_exists(devname(&a)), "%s exists", a.device);
                        check(ranges_match_kernel(&a), "kernel ranges of %s equal the recorded ranges", a.device);
                }
                char link[PATH_MAX], target[PATH_MAX] = {};
                snprintf(link, sizeof(link), "%s/owners/scn-persist/%s", runtime_dir, label);
                ssize_t l = readlink(link, target, sizeof(target) - 1);
                check(l > 0 && strcmp(target, a.device) == 0, "stable path %s points at %s", link, a.device);
                if (use_sysfs) {
                        struct stat st;
                        uid_t want = strcmp(label, "disk-b") == 0 ? 65534 : 0;

                        check(stat(a.device, &st) == 0 && st.st_uid == want && st.st_gid == want,
                              "%s belongs to %u:%u", a.device, (unsigned) want, (unsigned) want);
                }
        }
        fclose(f);
        check(count == 3, "three allocations were recorded");

        static AllocInfo all[1024];
        int n = list_allocations(all, 1024);
        check(n == 3, "exactly three allocations exist (%d)", n);

        if (use_sysfs) {
                /* No orphans: every non-zero device is an allocation's, or
                 * daxR.0; no zero-size device besides daxR.0. Zeroing in
                 * the background uses short-lived devices of its own. */
                check(wait_clean(), "memory of unknown contents is zeroed");
                glob_t g;
                bool clean = true;
                if (glob("/sys/bus/dax/devices/dax*", 0, NULL, &g) == 0) {
                        for (size_t i = 0; i < g.gl_pathc; i++) {
                                const char *dev = strrchr(g.gl_pathv[i], '/') + 1;
                                char sp[512];
                                uint64_t size = 0;
                                bool ours = false;
                                snprintf(sp, sizeof(sp), "%s/size", g.gl_pathv[i]);
                                sysfs_read_u64(sp, &size);
                                for (int k = 0; k < n; k++)
                                        ours = ours || strcmp(devname(&all[k]), dev) == 0;
                                bool zero_idx = strstr(dev, ".0") && strlen(strstr(dev, ".0")) == 2;
                                if (!ours && !zero_idx) {
                                        diag("orphan device %s (size %" PRIu64 ")", dev, size);
                                        clean = false;
                                }
                        }
                        globfree(&g);
                }
                check(clean, "no orphan or zero-size devices");
        }
        return n_fail ? 1 : 0;
}

/* After a reboot into host-held memory that cannot all be taken back:
 * every recorded allocation is still listed with its identical ranges;
 * one without a device says why (State, StateMessage), and nobody else is
 * handed any byte of its ranges. */
static int check_restoring(const char *file) {
        FILE *f = fopen(file, "re");
        char line[4096];
        Range want[64];
        unsigned n_want = 0, count = 0, waiting = 0;

        if (!f) {
                check(false, "cannot read %s", file);
                return 1;
        }
        while (fgets(line, sizeof(line), f)) {
                char path[256], label[256], dev[64];
                unsigned n;
                int off = 0;
                AllocInfo a;
                char *state = NULL, *msg = NULL;
                sd_bus_error error = SD_BUS_ERROR_NULL;

                if (sscanf(line, "%255s %255s %63s %u%n", path, label, dev, &n, &off) != 4)
                        continue;
                count++;
                bool found = find_allocation(path, &a);
                check(found, "%s is still listed", path);
                if (!found)
                        continue;
                bool same = a.n_ranges == n;
                char *p = line + off;
                for (unsigned k = 0; same && k < n; k++) {
                        uint64_t st, l;
                        int used;
                        if (sscanf(p, " %" SCNu64 " %" SCNu64 "%n", &st, &l, &used) != 2)
                                same = false;
                        else {
                                same = a.ranges[k].start == st && a.ranges[k].size == l;
                                p += used;
                                if (n_want < 64)
                                        want[n_want++] = (Range) { st, l };
                        }
                }
                check(same, "%s has identical ranges", a.id);
                (void) sd_bus_get_property_string(bus, DEST, path, "org.daxbroker.Broker1.Allocation", "State", &error,
                                                  &state);
                sd_bus_error_free(&error);
                (void) sd_bus_get_property_string(bus, DEST, path, "org.daxbroker.Broker1.Allocation", "StateMessage",
                                                  &error, &msg);
                sd_bus_error_free(&error);
                if (state && strcmp(state, "active") == 0)
                        check(a.device[0] != 0, "%s is active with device %s", a.id, a.device);
                else {
                        waiting++;
                        check(state && (strcmp(state, "restoring") == 0 || strcmp(state, "failed") == 0) && msg &&
                                      msg[0],
                              "%s is %s without a device, saying why: %s", a.id, state ? state : "(none)",
                              msg ? msg : "(none)");
                        /* Open must refuse, with a reason. */
                        sd_bus_message *reply = NULL;
                        int r = sd_bus_call_method(bus, DEST, PATH, MGR, "Open", &error, &reply, "o", path);
                        check(r < 0 && sd_bus_error_has_name(&error, "org.daxbroker.Broker1.Error.Busy"),
                              "Open of %s is refused with Busy (%s)", a.id, error.message ? error.message : "succeeded");
                        sd_bus_error_free(&error);
                        sd_bus_message_unref(reply);
                }
                free(state);
                free(msg);
        }
        fclose(f);
        check(count == 3, "three allocations were recorded");
        check(waiting > 0, "at least one allocation is waiting for its memory (%u)", waiting);

        /* Take everything that can be taken: none of it may overlap. */
        static char paths[256][256];
        unsigned taken = 0;
        bool overlap = false;
        for (int round = 0; round < 256; round++) {
                PoolInfo pools[16];
                int np = list_pools(pools, 16);
                bool got = false;
                for (int i = 0; i < np && taken < 256; i++) {
                        uint64_t sz = pools[i].largest, g = pools[i].boundary ? pools[i].boundary : 2 * MiB;
                        sz -= sz % g;
                        if (sz == 0)
                                continue;
                        char err[256];
                        int fd;
                        if (allocate("scn-grab", sz, OPTS(.pool = pools[i].name, .label = NULL), paths[taken], &fd, err,
                                     sizeof(err)) < 0)
                                continue;
                        close(fd);
                        AllocInfo a;
                        if (find_allocation(paths[taken], &a))
                                for (unsigned k = 0; k < a.n_ranges; k++)
                                        for (unsigned q = 0; q < n_want; q++)
                                                if (a.ranges[k].start < want[q].start + want[q].size &&
                                                    want[q].start < a.ranges[k].start + a.ranges[k].size)
                                                        overlap = true;
                        taken++;
                        got = true;
                }
                if (!got)
                        break;
        }
        check(taken > 0 && !overlap, "%u allocations of all remaining memory never overlap a recorded allocation",
              taken);
        for (unsigned i = 0; i < taken; i++)
                release(paths[i], NULL, 0);
        return n_fail ? 1 : 0;
}

/* ---- host return: idle memory goes to the host and comes back ---- */

static bool find_pool(const char *name, PoolInfo *ret) {
        PoolInfo pools[16];
        int n = list_pools(pools, 16);

        for (int i = 0; i < n; i++)
                if (strcmp(pools[i].name, name) == 0) {
                        *ret = pools[i];
                        return true;
                }
        diag("no pool named %s", name);
        return false;
}

/* ReturnToHost / ReclaimFromHost; 0 with the bytes moved, or < 0 with the
 * error name. */
static int host_call(const char *method, const char *pool, uint64_t size, uint64_t *ret, char *err, size_t errlen,
                     char *msg, size_t msglen) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        int r = sd_bus_call_method(bus, DEST, PATH, MGR, method, &error, &reply, "st", pool, size);

        if (err)
                snprintf(err, errlen, "%s", r < 0 && error.name ? error.name : "");
        if (msg)
                snprintf(msg, msglen, "%s", r < 0 && error.message ? error.message : "");
        if (r < 0)
                diag("%s(%s, %" PRIu64 ") -> %s: %s", method, pool, size, error.name, error.message);
        else
                sd_bus_message_read(reply, "t", ret);
        sd_bus_error_free(&error);
        sd_bus_message_unref(reply);
        return r;
}

static uint64_t meminfo_total(void) {
        char line[256];
        uint64_t kb = 0;
        FILE *f = fopen("/proc/meminfo", "re");

        if (!f)
                return 0;
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "MemTotal: %" SCNu64 " kB", &kb) == 1)
                        break;
        fclose(f);
        return kb * 1024;
}

/* What the kernel says the region's memory is doing: kmem devices are
 * host, other devices are allocated or foreign, available_size is free. */
typedef struct KernelUse {
        uint64_t host, devices, available;
} KernelUse;

static bool kernel_use(uint32_t region, KernelUse *ret) {
        char pattern[128];
        glob_t g;

        *ret = (KernelUse) {};
        if (sysfs_region_available(region, &ret->available) < 0)
                return false;
        snprintf(pattern, sizeof(pattern), "/sys/bus/dax/devices/dax%u.*", region);
        if (glob(pattern, 0, NULL, &g) != 0)
                return false;
        for (size_t i = 0; i < g.gl_pathc; i++) {
                char p[512], link[512] = "";
                uint64_t size = 0;
                ssize_t k;

                snprintf(p, sizeof(p), "%s/size", g.gl_pathv[i]);
                if (sysfs_read_u64(p, &size) < 0)
                        continue;
                snprintf(p, sizeof(p), "%s/driver", g.gl_pathv[i]);
                k = readlink(p, link, sizeof(link) - 1);
                if (k > 0 && strstr(link, "/kmem"))
                        ret->host += size;
                else
                        ret->devices += size;
        }
        globfree(&g);
        return true;
}

#define HOST_ANY UINT64_MAX
#define HOST_SOME (UINT64_MAX - 1)

/* Waits (a liveness guard, not a speed check) until the pool is settled:
 * no dirt, and HostSize equal to want (HOST_ANY: any value, HOST_SOME: not
 * zero). */
static bool wait_host(const char *pool, uint64_t want, PoolInfo *ret) {
        for (int i = 0; i < 6000; i++) {
                if (find_pool(pool, ret) && ret->dirty == 0 &&
                    (want == HOST_ANY || (want == HOST_SOME ? ret->host > 0 : ret->host == want)))
                        return true;
                usleep(50 * 1000);
        }
        diag("pool %s: HostSize is %" PRIu64 " MiB, dirty %" PRIu64 " MiB after 300 s; wanted %" PRIu64 " MiB", pool,
             ret->host / MiB, ret->dirty / MiB, want / MiB);
        return false;
}

/* allocated + free + host + foreign = size, from the broker and, with
 * --sysfs, from the kernel itself. */
static void check_invariant(const char *what, const PoolInfo *p) {
        KernelUse k;

        check(p->allocated + p->free + p->host + p->foreign == p->size,
              "%s: allocated %" PRIu64 " + free %" PRIu64 " + host %" PRIu64 " + foreign %" PRIu64
              " MiB = pool size %" PRIu64 " MiB", what, p->allocated / MiB, p->free / MiB, p->host / MiB,
              p->foreign / MiB, p->size / MiB);
        if (!use_sysfs)
                return;
        check(kernel_use(p->region, &k), "%s: region %u is readable in sysfs", what, p->region);
        check(k.host == p->host, "%s: kmem devices in sysfs hold %" PRIu64 " MiB = HostSize %" PRIu64 " MiB", what,
              k.host / MiB, p->host / MiB);
        check(k.available + p->warm == p->free,
              "%s: available_size %" PRIu64 " MiB + WarmSize %" PRIu64 " MiB = FreeSize %" PRIu64 " MiB", what,
              k.available / MiB, p->warm / MiB, p->free / MiB);
        check(k.host + k.devices + k.available == p->size,
              "%s: kernel: kmem %" PRIu64 " + other devices %" PRIu64 " + available %" PRIu64 " MiB = region %" PRIu64
              " MiB", what, k.host / MiB, k.devices / MiB, k.available / MiB, p->size / MiB);
}

/* MemTotal moves by exactly what HostSize moves. */
static void check_memtotal(const char *what, uint64_t base_mem, uint64_t base_host, const PoolInfo *p) {
        int64_t want, got;

        if (!use_sysfs)
                return;
        want = (int64_t) p->host - (int64_t) base_host;
        got = (int64_t) meminfo_total() - (int64_t) base_mem;
        check(got == want, "%s: MemTotal changed by %" PRId64 " MiB, HostSize by %" PRId64 " MiB", what, got / (int64_t) MiB,
              want / (int64_t) MiB);
}

static bool check_host_nonzero(const PoolInfo *p) {
        check(p->host > 0, "pool %s has host memory (%" PRIu64 " MiB)", p->name, p->host / MiB);
        return p->host > 0;
}

/* Fills the free memory of a NUMA node with a pattern and frees it again,
 * so that host chunks on that node hold host data that a VM must never
 * see. Returns the bytes written. */
static uint64_t fill_node_free_memory(int node) {
        char path[128], line[256];
        uint64_t free_kb = 0, size, mask = UINT64_C(1) << node;
        FILE *f;
        char *mem;

        snprintf(path, sizeof(path), "/sys/devices/system/node/node%d/meminfo", node);
        f = fopen(path, "re");
        if (!f)
                return 0;
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "Node %*d MemFree: %" SCNu64 " kB", &free_kb) == 1)
                        break;
        fclose(f);
        if (free_kb * 1024 <= 256 * MiB)
                return 0;
        size = (free_kb * 1024 - 192 * MiB) & ~(2 * MiB - 1);
        mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (mem == MAP_FAILED)
                return 0;
        /* MPOL_BIND (2): only this node, so the chunks there get used. */
        if (syscall(SYS_mbind, mem, size, 2, &mask, 64, 0) < 0) {
                munmap(mem, size);
                return 0;
        }
        memset(mem, 0xa5, size);
        munmap(mem, size);
        return size;
}

static bool map_reads_zero(int fd, uint64_t size) {
        char *mem = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
        bool ok;

        if (mem == MAP_FAILED) {
                diag("mmap: %s", strerror(errno));
                return false;
        }
        ok = all_zero(mem, size);
        munmap(mem, size);
        return ok;
}

/* The issue's walk: idle memory goes to the host after the delay, an
 * allocation takes it back, zeroed, and every step adds up in sysfs. */
static int scenario_host(const char *pool, uint64_t chunk, uint64_t reserve) {
        char path[256], err[256], msg[512];
        uint64_t moved = 0, base_mem, base_host, want;
        PoolInfo p;
        int fd;

        if (!find_pool(pool, &p))
                return 1;
        want = (p.size - reserve) / chunk * chunk;
        check(wait_host(pool, want, &p), "idle pool %s: after the delay HostSize is %" PRIu64 " MiB", pool, want / MiB);
        check_invariant("idle", &p);
        base_mem = meminfo_total();
        base_host = p.host;

        /* Releasing capacity for real moves MemTotal with HostSize. */
        check(host_call("ReclaimFromHost", pool, chunk, &moved, err, sizeof(err), NULL, 0) >= 0 && moved == chunk,
              "ReclaimFromHost(%s, %" PRIu64 " MiB) reclaims that much", pool, chunk / MiB);
        check(wait_host(pool, base_host - chunk, &p), "HostSize dropped by one chunk, and what the host left "
              "there is zeroed");
        check_invariant("after ReclaimFromHost", &p);
        check_memtotal("after ReclaimFromHost", base_mem, base_host, &p);
        check(host_call("ReturnToHost", pool, chunk, &moved, err, sizeof(err), NULL, 0) >= 0 && moved == chunk,
              "ReturnToHost(%s, %" PRIu64 " MiB) returns that much", pool, chunk / MiB);
        check(wait_host(pool, base_host, &p), "HostSize is back to %" PRIu64 " MiB", base_host / MiB);
        check_invariant("after ReturnToHost", &p);
        check_memtotal("after ReturnToHost", base_mem, base_host, &p);

        /* The host uses the chunks: its data must not reach the VM below.
         * (On the sim, host chunks get host data when they go online.) */
        if (use_sysfs) {
                uint64_t wrote = fill_node_free_memory(p.node);

                check(wrote >= chunk, "wrote a pattern over %" PRIu64 " MiB of node %d's free memory, at least "
                      "one host chunk (%" PRIu64 " MiB)", wrote / MiB, p.node, chunk / MiB);
        }

        /* An allocation bigger than the free space takes chunks back. */
        uint64_t size = p.free + chunk <= p.size ? p.free + chunk / 2 : p.free;
        if (allocate("scn-host", size, OPTS(.pool = pool, .contiguous = 0), path, &fd, err, sizeof(err)) < 0) {
                check(false, "Allocate %" PRIu64 " MiB (more than the %" PRIu64 " MiB free) reclaims from the host",
                      size / MiB, p.free / MiB);
                return 1;
        }
        check(true, "Allocate %" PRIu64 " MiB (more than the %" PRIu64 " MiB free) reclaims from the host", size / MiB,
              p.free / MiB);
        check(map_reads_zero(fd, size), "every page of the allocation reads zero (host data never reaches a VM)");
        close(fd);
        bool settled = wait_host(pool, HOST_ANY, &p);
        check(settled && p.host < base_host, "HostSize dropped to %" PRIu64 " MiB", p.host / MiB);
        check_invariant("after the allocation", &p);
        check_memtotal("after the allocation", base_mem, base_host, &p);

        /* Bad input: a clear error, nothing changes. */
        {
                char *before = quiet_snapshot(), *after;
                static const struct {
                        const char *method, *pool;
                        uint64_t size;
                        const char *error;
                } bad[] = {
                        { "ReturnToHost", "no-such-pool", GiB, "org.daxbroker.Broker1.Error.NoSuchPool" },
                        { "ReturnToHost", NULL, 0, "org.daxbroker.Broker1.Error.InvalidArgument" },
                        { "ReturnToHost", NULL, 3 * MiB, "org.daxbroker.Broker1.Error.InvalidArgument" },
                        { "ReclaimFromHost", "no-such-pool", GiB, "org.daxbroker.Broker1.Error.NoSuchPool" },
                        { "ReclaimFromHost", NULL, 0, "org.daxbroker.Broker1.Error.InvalidArgument" },
                        { "ReclaimFromHost", NULL, 3 * MiB, "org.daxbroker.Broker1.Error.InvalidArgument" },
                        { "ReclaimFromHost", NULL, 64 * GiB, "org.daxbroker.Broker1.Error.NoSpace" },
                };
                for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                        int r = host_call(bad[i].method, bad[i].pool ? bad[i].pool : pool, bad[i].size, &moved, err,
                                          sizeof(err), msg, sizeof(msg));
                        check(r < 0 && strcmp(err, bad[i].error) == 0 && msg[0],
                              "%s(%s, %" PRIu64 ") fails with %s: %s", bad[i].method, bad[i].pool ? bad[i].pool : pool,
                              bad[i].size, bad[i].error, msg);
                }
                /* 64 GiB is a multiple of every chunk size up to 64 GiB but
                 * not clean free memory the pool has. */
                int r = host_call("ReturnToHost", pool, 64 * chunk, &moved, err, sizeof(err), msg, sizeof(msg));
                check(r < 0 && (strcmp(err, "org.daxbroker.Broker1.Error.NoSpace") == 0), "ReturnToHost of more than "
                      "the pool has fails with NoSpace: %s", msg);
                after = state_snapshot();
                check(strcmp(before, after) == 0, "bad host calls changed nothing");
                free(before);
                free(after);
        }

        /* Released, the pool goes back to the host after the delay. */
        check(release(path, NULL, 0) >= 0, "release the allocation");
        check(wait_host(pool, want, &p), "after release and the delay HostSize is %" PRIu64 " MiB again", want / MiB);
        check_invariant("idle again", &p);
        check_memtotal("idle again", base_mem, base_host, &p);
        return n_fail ? 1 : 0;
}

/* A chunk that will not offline: the allocation fails cleanly (or
 * succeeds if the kernel managed after all), nothing is stranded. */
static int scenario_host_pinned(const char *pool, bool must_fail) {
        char path[256], err[256];
        PoolInfo p, q;
        int fd;

        if (!wait_host(pool, HOST_SOME, &p) || !check_host_nonzero(&p))
                return 1;
        check_invariant("before", &p);
        uint64_t size = p.free + p.host <= p.size ? p.free + p.host : p.size;
        if (allocate("scn-pinned", size, OPTS(.pool = pool, .contiguous = 0), path, &fd, err, sizeof(err)) < 0) {
                check(strcmp(err, "org.daxbroker.Broker1.Error.NoSpace") == 0,
                      "Allocate %" PRIu64 " MiB that needs the pinned host memory fails with NoSpace", size / MiB);
                check(wait_host(pool, p.host, &q), "HostSize is unchanged: the chunk went back online whole");
                check_invariant("after the refused reclaim", &q);
        } else {
                check(!must_fail, "the kernel offlined the memory after all: Allocate %" PRIu64 " MiB succeeded",
                      size / MiB);
                check(map_reads_zero(fd, size), "every page reads zero");
                close(fd);
                check(wait_host(pool, HOST_ANY, &q), "pool settles");
                check_invariant("after the reclaim", &q);
                check(release(path, NULL, 0) >= 0, "release");
        }
        return n_fail ? 1 : 0;
}

/* A request that waits for host memory longer than its deadline fails
 * with TimedOut, and nothing is left of it: no allocation appears later,
 * even after the reclaim it waited for has ended. */
static int scenario_deadline(const char *pool) {
        char path[256], err[256];
        PoolInfo p, q;
        int fd;

        if (!wait_host(pool, HOST_SOME, &p) || !check_host_nonzero(&p))
                return 1;
        check(allocate("scn-deadline", 2 * MiB, OPTS(.pool = pool, .timeout_usec = 999), path, &fd, err,
                       sizeof(err)) < 0 &&
                      strcmp(err, "org.daxbroker.Broker1.Error.InvalidArgument") == 0,
              "timeout-usec below 1 ms is InvalidArgument");
        uint64_t size = p.free + p.host <= p.size ? p.free + p.host : p.size;
        int r = allocate("scn-deadline", size, OPTS(.pool = pool, .contiguous = 0, .timeout_usec = 1000000), path, &fd,
                         err, sizeof(err));
        check(r < 0 && strcmp(err, "org.daxbroker.Broker1.Error.TimedOut") == 0,
              "Allocate that waits for a slow reclaim fails with TimedOut after 1 s (%s)", r < 0 ? err : "succeeded");
        if (r >= 0) {
                close(fd);
                release(path, NULL, 0);
        }
        /* Wait for the reclaim to end (it fails at the offline timeout). */
        check(wait_host(pool, p.host, &q), "the reclaim ends and HostSize is back to %" PRIu64 " MiB", p.host / MiB);
        check_invariant("after the timed-out request", &q);
        static AllocInfo all[1024];
        int n = list_allocations(all, 1024), mine = 0;
        for (int k = 0; k < n; k++)
                mine += strcmp(all[k].owner, "scn-deadline") == 0;
        check(mine == 0, "nothing is left of the timed-out request (%d allocations)", mine);
        return n_fail ? 1 : 0;
}

/* Starts an allocation that needs the host's memory; the daemon may die
 * on the way (fault injection), so the answer does not matter. */
static int host_trigger(const char *pool) {
        char path[256], err[256];
        PoolInfo p;
        int fd;

        if (!wait_host(pool, HOST_SOME, &p)) {
                diag("pool %s has no host memory to reclaim", pool);
                return 1;
        }
        if (allocate("scn-crash", p.free + p.host, OPTS(.pool = pool, .contiguous = 0), path, &fd, err, sizeof(err)) >= 0)
                close(fd);
        return 0;
}

/* Waits while the daemon answers until the pool has no dirt (a bounded
 * liveness guard); the daemon dying on the way ends the wait. */
static void crash_settle(const char *pool) {
        PoolInfo p;

        for (int i = 0; i < 6000 && find_pool(pool, &p) && p.dirty > 0; i++)
                usleep(50 * 1000);
}

/* The workload of the crash-point suites, in which the daemon may die at any
 * step (DAXBROKER_TEST_CRASH_AT), so no answer is checked: an allocation of
 * an eighth of the pool with a device owner, written all over (its memory
 * is not zero when it comes back dirty), its release and zeroing, the same
 * again handed over from the warm set, a return
 * of a quarter of the pool to the host and a reclaim of all the pool's host
 * memory by an allocation that needs it. */
static void crash_use_once(const char *pool, uint64_t size) {
        char path[256];
        int fd;

        if (allocate("scn-crash", size, OPTS(.pool = pool, .device_owner = 65534), path, &fd, NULL, 0) >= 0) {
                char *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

                if (mem != MAP_FAILED) {
                        for (uint64_t off = 0; off < size; off += 4096)
                                memset(mem + off, 0xa5, 4096);
                        munmap(mem, size);
                }
                close(fd);
                release(path, NULL, 0);
        }
}

static int warm_extents(const char *pool_path, Range *out, int max);

/* WarmSize counts a warm device from the moment it is being made; one that
 * can be handed over is bound to device_dax (sysfs) in a warm extent. */
static bool warm_device_ready(const PoolInfo *p) {
        char pattern[64];
        Range w[64];
        glob_t g;
        bool ready = false;
        int nw = warm_extents(p->path, w, 64);

        if (!use_sysfs)
                return p->warm > 0;
        snprintf(pattern, sizeof(pattern), "/sys/bus/dax/devices/dax%u.*", p->region);
        if (nw <= 0 || glob(pattern, 0, NULL, &g) != 0)
                return false;
        for (size_t i = 0; i < g.gl_pathc && !ready; i++) {
                char link[512], target[512] = "";
                const char *dev = strrchr(g.gl_pathv[i], '/') + 1;
                Range r[4];
                ssize_t k;

                snprintf(link, sizeof(link), "%s/driver", g.gl_pathv[i]);
                k = readlink(link, target, sizeof(target) - 1);
                if (k <= 0 || strcmp(strrchr(target, '/') ? strrchr(target, '/') + 1 : target, "device_dax") != 0 ||
                    sysfs_ranges(dev, r, 4) != 1)
                        continue;
                for (int e = 0; e < nw && !ready; e++)
                        ready = r[0].start >= p->start + w[e].start &&
                                r[0].start + r[0].size <= p->start + w[e].start + w[e].size;
        }
        globfree(&g);
        return ready;
}

static int crash_workload(const char *pool) {
        char path[256];
        uint64_t moved, size;
        PoolInfo p;
        int fd;

        if (!find_pool(pool, &p))
                return 1;
        size = p.size / 8 / (2 * MiB) * (2 * MiB);
        /* Cold the first time; the pool learns the size and makes a warm
         * device of it, which the second one is handed. */
        crash_use_once(pool, size);
        crash_settle(pool);
        for (int i = 0; i < 3000 && find_pool(pool, &p) && (p.dirty > 0 || !warm_device_ready(&p)); i++)
                usleep(50 * 1000);
        crash_use_once(pool, size);
        crash_settle(pool);
        host_call("ReturnToHost", pool, p.size / 4, &moved, NULL, 0, NULL, 0);
        crash_settle(pool);
        if (find_pool(pool, &p) && p.host > 0 &&
            allocate("scn-crash", p.free + p.host, OPTS(.pool = pool, .contiguous = 0), path, &fd, NULL, 0) >= 0)
                close(fd);
        return 0;
}

/* After a crash at any step: the sums hold against the kernel, and every
 * byte of the pool can be taken back and handed out, reading zero. */
static int host_check(const char *pool) {
        static AllocInfo all[1024];
        char path[256], err[256];
        uint64_t moved = 0;
        PoolInfo p;
        int fd, n;

        /* An allocation that survived the crash is released first. */
        n = list_allocations(all, 1024);
        for (int i = 0; i < n; i++)
                if (strcmp(all[i].owner, "scn-crash") == 0)
                        check(release(all[i].path, NULL, 0) >= 0, "release %s left from before the crash", all[i].id);
        /* Releases reply before their devices are destroyed. */
        for (int i = 0; i < 3000 && find_pool(pool, &p) && p.allocated > 0; i++)
                usleep(10 * 1000);
        if (!wait_host(pool, HOST_ANY, &p))
                return 1;
        check_invariant("after restart", &p);
        if (p.host > 0)
                check(host_call("ReclaimFromHost", pool, p.host, &moved, err, sizeof(err), NULL, 0) >= 0 &&
                              moved >= p.host,
                      "every host chunk can be reclaimed (%" PRIu64 " MiB)", p.host / MiB);
        check(wait_host(pool, 0, &p), "pool settles with no host memory");
        /* Releases reply before their devices are destroyed. */
        for (int i = 0; i < 3000 && find_pool(pool, &p) && p.allocated > 0; i++)
                usleep(10 * 1000);
        check_invariant("after reclaiming everything", &p);
        check(p.free + p.allocated == p.size && p.allocated == 0, "the whole pool is free: nothing was lost");
        if (allocate("scn-crash", p.size, OPTS(.pool = pool, .contiguous = 0), path, &fd, err, sizeof(err)) < 0) {
                check(false, "the whole pool (%" PRIu64 " MiB) can be allocated", p.size / MiB);
                return 1;
        }
        check(true, "the whole pool (%" PRIu64 " MiB) can be allocated", p.size / MiB);
        check(map_reads_zero(fd, p.size), "every page of it reads zero");
        close(fd);
        check(release(path, NULL, 0) >= 0, "release it");
        return n_fail ? 1 : 0;
}

/* ---- the warm set (sim) ---- */

/* Waits (bounded, as a liveness guard) until the pool's WarmSize is want. */
static bool wait_warm(const char *pool, uint64_t want, PoolInfo *ret) {
        for (int i = 0; i < 3000; i++) {
                if (find_pool(pool, ret) && ret->warm == want && ret->dirty == 0)
                        return true;
                usleep(20 * 1000);
        }
        return false;
}

/* The pool's warm extents from its Extents property, as offsets. */
static int warm_extents(const char *pool_path, Range *out, int max) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        uint64_t off, size;
        const char *use;
        int n = 0, r;

        r = sd_bus_get_property(bus, DEST, pool_path, "org.daxbroker.Broker1.Pool", "Extents", &error, &reply, "a(tts)");
        if (r < 0) {
                sd_bus_error_free(&error);
                return r;
        }
        sd_bus_message_enter_container(reply, 'a', "(tts)");
        while (sd_bus_message_read(reply, "(tts)", &off, &size, &use) > 0)
                if (strcmp(use, "warm") == 0 && n < max)
                        out[n++] = (Range) { off, size };
        sd_bus_message_unref(reply);
        return n;
}

/* Takes one device of size from the pool's warm set, with a device owner:
 * warm-take POOL SIZE OUT. Writes "DEVICE START SIZE" of the allocation to
 * OUT for the harness, which compares with the kernel before the call. */
static int warm_take(const char *pool, uint64_t size, const char *out) {
        char path[256];
        Range w[64];
        AllocInfo a;
        PoolInfo p = {};
        struct stat st;
        bool inside = false;
        int fd, nw;
        FILE *f;

        check(wait_warm(pool, 2 * size, &p), "pool %s holds two warm devices of %" PRIu64 " MiB (WarmSize %" PRIu64
              " MiB)", pool, size / MiB, p.warm / MiB);
        check(p.free == p.size - p.allocated - p.host - p.foreign && p.free >= p.warm,
              "warm devices count as free: FreeSize %" PRIu64 " MiB of %" PRIu64 " MiB, WarmSize %" PRIu64 " MiB",
              p.free / MiB, p.size / MiB, p.warm / MiB);
        nw = warm_extents(p.path, w, 64);
        check(nw >= 1 && w[nw - 1].start + w[nw - 1].size == p.size,
              "Extents shows the warm devices at the top of the pool (%d warm extents)", nw);
        if (allocate("scn-warm", size, OPTS(.pool = pool, .device_owner = 65534), path, &fd, NULL, 0) < 0) {
                check(false, "Allocate of a warm size");
                return 1;
        }
        check(find_allocation(path, &a) && a.n_ranges == 1, "the allocation is listed with one range");
        for (int i = 0; i < nw; i++)
                inside = inside || (a.ranges[0].start >= p.start + w[i].start &&
                                    a.ranges[0].start + a.ranges[0].size <= p.start + w[i].start + w[i].size);
        check(inside, "its range %#" PRIx64 "+%" PRIu64 " MiB was a warm extent before the call", a.ranges[0].start,
              a.ranges[0].size / MiB);
        check(fstat(fd, &st) == 0 && st.st_uid == 65534 && st.st_gid == 65534,
              "device-uid and device-gid are applied to the device (%u:%u)", (unsigned) st.st_uid, (unsigned) st.st_gid);
        char *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        check(mem != MAP_FAILED && all_zero(mem, size), "the fd maps the device and it reads zero");
        if (mem != MAP_FAILED) {
                memset(mem, 0x5a, size);
                check(mem[size - 1] == 0x5a, "the fd maps it writable");
                munmap(mem, size);
        }
        close(fd);
        f = fopen(out, "we");
        if (f) {
                fprintf(f, "%s %" PRIu64 " %" PRIu64 "\n", strncmp(a.device, "/dev/", 5) == 0 ? a.device + 5 : a.device,
                        a.ranges[0].start, a.ranges[0].size);
                fclose(f);
        }
        check(release(path, NULL, 0) >= 0, "release it");
        return n_fail ? 1 : 0;
}

/* A burst of Allocates that warm devices fit, all sent before any is
 * read: warm-burst POOL SIZE N PID OUT [crash]. The daemon (PID) is held
 * with SIGSTOP while they are sent, and a round trip to the bus daemon
 * behind them makes sure they wait in its socket when it goes on: it
 * reads them in one pass. One more with a label of the burst must be
 * refused (hand-overs not yet committed still own their labels). Writes
 * "PATH DEVICE" of each Allocate that succeeded to OUT. Without "crash"
 * every one of the N must succeed, each with its own device of the warm
 * set, owned by uid 65534; with "crash" the daemon dies half-way and the
 * harness checks what survives; with "release" a ReleaseOwner of the
 * burst's owner follows it in the same pass; with "vanish" they are
 * transient and the client leaves the bus before any reply. */
typedef struct BurstCall {
        bool done, ok;
        char path[256], error[256];
        int fd;
} BurstCall;

/* Replies of the burst so far, in the order they came. */
static unsigned burst_order;

static int on_burst_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        BurstCall *c = userdata;
        const char *path;
        int fd;

        c->done = true;
        c->fd = -1;
        burst_order++;
        if (sd_bus_message_is_method_error(m, NULL)) {
                const sd_bus_error *e = sd_bus_message_get_error(m);
                snprintf(c->error, sizeof(c->error), "%s: %s", e->name, e->message);
                return 0;
        }
        if (sd_bus_message_read(m, "oh", &path, &fd) < 0)
                return 0;
        snprintf(c->path, sizeof(c->path), "%s", path);
        c->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        c->ok = c->fd >= 0;
        return 0;
}

static int on_release_owner_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        BurstCall *c = userdata;
        uint32_t count = 0;

        c->done = true;
        c->fd = -1;
        if (sd_bus_message_is_method_error(m, NULL))
                snprintf(c->error, sizeof(c->error), "%s", sd_bus_message_get_error(m)->message);
        else if (sd_bus_message_read(m, "u", &count) > 0) {
                c->ok = true;
                snprintf(c->path, sizeof(c->path), "%u %u", count, burst_order);
        }
        return 0;
}

static int warm_burst(const char *pool, uint64_t size, unsigned n, pid_t pid, const char *out, const char *mode) {
        bool crash = strcmp(mode, "crash") == 0, release_too = strcmp(mode, "release") == 0;
        bool vanish = strcmp(mode, "vanish") == 0;
        BurstCall *calls = calloc(n + 2, sizeof(BurstCall));
        unsigned ok = 0, left = n + 1 + release_too;
        Range w[64];
        PoolInfo p = {};
        FILE *f;
        bool full;
        int nw;

        full = wait_warm(pool, n * size, &p);
        check(full, "pool %s holds %u warm devices of %" PRIu64 " MiB (WarmSize %" PRIu64 " MiB)", pool, n,
              size / MiB, p.warm / MiB);
        nw = warm_extents(p.path, w, 64);
        check(kill(pid, SIGSTOP) == 0, "the daemon is stopped while the burst is sent");
        for (unsigned i = 0; i <= n; i++) {
                sd_bus_message *m = NULL;
                char label[32];
                int r;

                /* The last one repeats the first one's label. */
                snprintf(label, sizeof(label), "burst-%u", i < n ? i : 0);
                sd_bus_message_new_method_call(bus, &m, DEST, PATH, MGR, "Allocate");
                sd_bus_message_append(m, "sta{sv}", "scn-burst", size, 5, "pool", "s", pool, "label", "s", label,
                                      "device-uid", "u", 65534, "device-gid", "u", 65534, "transient", "b", vanish);
                r = sd_bus_call_async(bus, NULL, m, on_burst_reply, &calls[i], 0);
                sd_bus_message_unref(m);
                if (r < 0) {
                        check(false, "send Allocate %u: %s", i, strerror(-r));
                        calls[i].done = true;
                        left--;
                }
        }
        /* Read in the same pass as the burst, after it: it releases what
         * the burst got, and answers after it. */
        if (release_too && sd_bus_call_method_async(bus, NULL, DEST, PATH, MGR, "ReleaseOwner", on_release_owner_reply,
                                                    &calls[n + 1], "s", "scn-burst") < 0) {
                check(false, "send ReleaseOwner");
                calls[n + 1].done = true;
                left--;
        }
        /* The bus daemon answers in order: once it has answered this, it
         * has passed the burst on. */
        check(sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                                 "GetId", NULL, NULL, "") >= 0, "a round trip to the bus daemon behind the burst");
        check(kill(pid, SIGCONT) == 0, "the daemon goes on");
        if (vanish) {
                /* Gone before any reply: the harness looks at what is left. */
                free(calls);
                return n_fail ? 1 : 0;
        }
        while (left > 0) {
                int r = sd_bus_process(bus, NULL);

                if (r < 0) {
                        check(false, "bus: %s", strerror(-r));
                        break;
                }
                left = 0;
                for (unsigned i = 0; i <= n + release_too; i++)
                        left += !calls[i].done;
                if (left > 0 && r == 0 && sd_bus_wait(bus, UINT64_MAX) < 0)
                        break;
        }
        f = fopen(out, "we");
        for (unsigned i = 0; i < n; i++) {
                AllocInfo a;
                struct stat st;
                bool inside = false, distinct = true;

                if (!calls[i].ok) {
                        if (!crash)
                                check(false, "Allocate %u of the burst: %s", i, calls[i].error);
                        continue;
                }
                ok++;
                if (f)
                        fprintf(f, "%s\n", calls[i].path);
                if (crash)
                        continue;
                /* A release gives the node back to root. */
                check(fstat(calls[i].fd, &st) == 0 && (release_too || st.st_uid == 65534),
                      "Allocate %u: its device is uid 65534's", i);
                for (unsigned k = 0; k < i; k++) {
                        struct stat o;

                        /* The sim's devices are files: compare the inode. */
                        if (calls[k].ok && fstat(calls[k].fd, &o) == 0 && o.st_rdev == st.st_rdev &&
                            o.st_dev == st.st_dev && o.st_ino == st.st_ino)
                                distinct = false;
                }
                check(distinct, "Allocate %u: its device is no other's of the burst", i);
                if (find_allocation(calls[i].path, &a) && a.n_ranges == 1)
                        for (int k = 0; k < nw; k++)
                                inside = inside || (a.ranges[0].start >= p.start + w[k].start &&
                                                    a.ranges[0].start + a.ranges[0].size <=
                                                            p.start + w[k].start + w[k].size);
                check(inside || release_too, "Allocate %u: listed, its range was a warm extent before the burst", i);
        }
        if (f)
                fclose(f);
        if (!crash) {
                check(ok == n, "all %u Allocates of the burst succeeded (%u did)", n, ok);
                check(!calls[n].ok && strstr(calls[n].error, "InvalidArgument"),
                      "one more with a label of the burst is refused: %s", calls[n].ok ? "it succeeded" : calls[n].error);
        } else
                diag("%u of %u Allocates got their device before the daemon died", ok, n);
        if (release_too) {
                unsigned count = 0, order = 0;
                AllocInfo all[64];
                int na = list_allocations(all, 64), mine = 0;

                if (calls[n + 1].ok)
                        sscanf(calls[n + 1].path, "%u %u", &count, &order);
                check(calls[n + 1].ok && count == n, "a ReleaseOwner sent right behind the burst released all %u (%s)",
                      n, calls[n + 1].ok ? calls[n + 1].path : calls[n + 1].error);
                check(order == n + 1, "it was answered after every Allocate of the burst (%u replies before it)", order);
                for (int i = 0; i < na; i++)
                        mine += strcmp(all[i].owner, "scn-burst") == 0;
                check(mine == 0, "the owner has no allocation left (%d)", mine);
        }
        for (unsigned i = 0; i <= n + 1; i++)
                if (calls[i].fd > 0)
                        close(calls[i].fd);
        free(calls);
        return n_fail ? 1 : 0;
}

/* Requests a warm device does not match get a cold one, and the warm
 * devices stay: warm-miss POOL SIZE OTHER_POOL NODE. */
static int warm_miss(const char *pool, uint64_t size, const char *other, int node) {
        static const struct {
                const char *what;
                int kind;
        } cases[] = {
                { "another size", 0 }, { "another pool", 1 }, { "another NUMA node", 2 }, { "another alignment", 3 },
        };
        PoolInfo p = {}, q = {};

        check(wait_warm(pool, 2 * size, &p), "pool %s is refilled to two warm devices", pool);
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                AllocOpts o = OPTS(.pool = pool);
                uint64_t s = size;
                char path[256];
                AllocInfo a;
                Range w[64];
                int fd, nw = warm_extents(p.path, w, 64);
                bool outside = true;

                /* The other pool has a 512 MiB boundary. */
                if (cases[i].kind == 0)
                        s = size / 2;
                else if (cases[i].kind == 1) {
                        o.pool = other;
                        s = max_u64(size, 512 * MiB);
                } else if (cases[i].kind == 2) {
                        o = OPTS(.numa_node = node, .pool = NULL);
                        s = max_u64(size, 512 * MiB);
                }
                else
                        o.align = 4096;
                if (allocate("scn-warm-miss", s, o, path, &fd, NULL, 0) < 0) {
                        check(false, "Allocate with %s", cases[i].what);
                        continue;
                }
                close(fd);
                check(find_allocation(path, &a), "the allocation with %s is listed", cases[i].what);
                for (unsigned r = 0; r < a.n_ranges; r++)
                        for (int k = 0; k < nw; k++)
                                if (a.ranges[r].start < p.start + w[k].start + w[k].size &&
                                    p.start + w[k].start < a.ranges[r].start + a.ranges[r].size)
                                        outside = false;
                check(outside, "a request with %s is not given a warm device", cases[i].what);
                check(find_pool(pool, &q) && q.warm == 2 * size, "the warm devices are still there (WarmSize %" PRIu64
                      " MiB)", q.warm / MiB);
                release(path, NULL, 0);
                wait_warm(pool, 2 * size, &p);
        }
        return n_fail ? 1 : 0;
}

/* A request that only fits when the warm devices go gets them given
 * back: warm-larger POOL. */
static int warm_larger(const char *pool) {
        char path[256];
        PoolInfo p = {};
        int fd;

        check(find_pool(pool, &p) && p.warm > 0, "pool %s has warm devices (%" PRIu64 " MiB)", pool, p.warm / MiB);
        if (allocate("scn-warm-big", p.free, OPTS(.pool = pool, .contiguous = 0), path, &fd, NULL, 0) < 0) {
                check(false, "an Allocate of the whole FreeSize (%" PRIu64 " MiB) succeeds", p.free / MiB);
                return 1;
        }
        check(true, "an Allocate of the whole FreeSize (%" PRIu64 " MiB), warm devices included, succeeds",
              p.free / MiB);
        check(map_reads_zero(fd, p.free), "every page of it reads zero");
        close(fd);
        check(find_pool(pool, &p) && p.warm == 0 && p.free == 0, "no warm device is left and nothing is free");
        check(release(path, NULL, 0) >= 0, "release it");
        return n_fail ? 1 : 0;
}

/* ReturnToHost of the whole pool gets the warm devices given back:
 * warm-host POOL. */
static int warm_host(const char *pool, uint64_t warm) {
        uint64_t moved = 0;
        char err[256] = "";
        PoolInfo p = {};

        check(wait_warm(pool, warm, &p), "pool %s holds %" PRIu64 " MiB of warm devices", pool, warm / MiB);
        check(host_call("ReturnToHost", pool, p.size, &moved, err, sizeof(err), NULL, 0) >= 0 && moved == p.size,
              "ReturnToHost of the whole pool (%" PRIu64 " MiB) returns it all (%" PRIu64 " MiB): %s", p.size / MiB,
              moved / MiB, err);
        check(find_pool(pool, &p) && p.warm == 0, "the warm devices were given back (WarmSize %" PRIu64 " MiB)",
              p.warm / MiB);
        return n_fail ? 1 : 0;
}

/* ---- Release replies before the device is gone ---- */

/* release-held POOL OUT: the daemon holds the kernel work of releases
 * (DAXBROKER_TEST_HOLD_WHILE at release-unbound). Release replies anyway;
 * the allocation is off the bus, the node is root's again, its memory is
 * not free. Writes "DEVICE START SIZE" to OUT for the harness. */
static int release_held(const char *pool, const char *out) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t size = 256 * MiB;
        char path[256], err[256];
        PoolInfo before = {}, after = {};
        struct stat st;
        AllocInfo a;
        int fd, r;
        FILE *f;

        check(wait_clean(), "no memory is left to zero");
        if (allocate("scn-release", size, OPTS(.pool = pool, .device_owner = 65534), path, &fd, NULL, 0) < 0) {
                check(false, "Allocate 256 MiB");
                return 1;
        }
        check(find_allocation(path, &a) && a.n_ranges == 1, "the allocation is listed");
        char *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (mem != MAP_FAILED) {
                memset(mem, 0xa5, size);
                munmap(mem, size);
        }
        find_pool(pool, &before);
        check(release(path, err, sizeof(err)) >= 0, "Release replies while the device's removal is held");
        check(!find_allocation(path, &(AllocInfo) {}), "the allocation is no longer listed");
        r = sd_bus_call_method(bus, DEST, PATH, MGR, "Open", &error, NULL, "o", path);
        check(r < 0 && error.name && strstr(error.name, "NoSuchAllocation"), "Open of it fails with NoSuchAllocation (%s)",
              error.name ? error.name : "succeeded");
        sd_bus_error_free(&error);
        check(fstat(fd, &st) == 0 && st.st_uid == 0 && st.st_gid == 0 && (st.st_mode & 07777) == 0600,
              "the device node is root's again, mode 0600 (%u:%u %o)", (unsigned) st.st_uid, (unsigned) st.st_gid,
              (unsigned) (st.st_mode & 07777));
        close(fd);
        find_pool(pool, &after);
        check(after.free == before.free && after.allocated == before.allocated,
              "its memory does not count as free while the device exists (FreeSize %" PRIu64 " MiB, was %" PRIu64
              " MiB)", after.free / MiB, before.free / MiB);
        f = fopen(out, "we");
        if (f) {
                fprintf(f, "%s %" PRIu64 " %" PRIu64 "\n", strncmp(a.device, "/dev/", 5) == 0 ? a.device + 5 : a.device,
                        a.ranges[0].start, a.ranges[0].size);
                fclose(f);
        }
        return n_fail ? 1 : 0;
}

/* whole-zero POOL: once zeroing is done, the whole free memory of the
 * pool can be allocated and reads zero. */
static int whole_zero(const char *pool) {
        char path[256];
        PoolInfo p;
        int fd;

        check(wait_clean(), "no memory is left to zero");
        if (!find_pool(pool, &p) ||
            allocate("scn-zero", p.free, OPTS(.pool = pool, .contiguous = 0), path, &fd, NULL, 0) < 0) {
                check(false, "Allocate all the free memory of %s", pool);
                return 1;
        }
        check(map_reads_zero(fd, p.free), "all the free memory of %s (%" PRIu64 " MiB) reads zero", pool, p.free / MiB);
        close(fd);
        check(release(path, NULL, 0) >= 0, "release it");
        return n_fail ? 1 : 0;
}

static int cleanup(void) {
        static AllocInfo all[1024];
        int n = list_allocations(all, 1024);

        for (int i = 0; i < n; i++)
                if (strncmp(all[i].owner, "scn-", 4) == 0)
                        check(release(all[i].path, NULL, 0) >= 0, "release %s", all[i].id);
        return n_fail ? 1 : 0;
}

int main(int argc, char **argv) {
        static const struct option options[] = {
                { "bus-address", required_argument, NULL, 'b' },
                { "sysfs", no_argument, NULL, 's' },
                { "runtime-dir", required_argument, NULL, 'r' },
                {},
        };
        const char *address = NULL;
        int c, r;

        while ((c = getopt_long(argc, argv, "+", options, NULL)) >= 0) {
                if (c == 'b')
                        address = optarg;
                else if (c == 's')
                        use_sysfs = true;
                else if (c == 'r')
                        runtime_dir = optarg;
                else
                        return 2;
        }
        if (optind >= argc) {
                fprintf(stderr, "usage: scenarios [--bus-address A] [--sysfs] [--runtime-dir D] run|setup-persist F|"
                                "check-persist F [--after-reboot|--from-host [POOL]]|check-restoring F|setup-dirty F|check-dirty F [HOLD]|"
                                "wait-clean|zeroing|cleanup|"
                                "host POOL CHUNK RESERVE|host-pinned POOL [--must-fail]|host-trigger POOL|host-check POOL|"
                                "crash-workload POOL|warm-take POOL SIZE OUT|warm-burst POOL SIZE N PID OUT [crash|release|vanish]|warm-miss POOL SIZE OTHER NODE|"
                                "warm-larger POOL|warm-host POOL WARM|release-held POOL OUT|whole-zero POOL\n");
                return 2;
        }
        if (address) {
                r = sd_bus_new(&bus);
                if (r >= 0)
                        r = sd_bus_set_address(bus, address);
                if (r >= 0)
                        r = sd_bus_set_bus_client(bus, 1);
                if (r >= 0)
                        r = sd_bus_start(bus);
        } else
                r = sd_bus_open_system(&bus);
        if (r < 0) {
                fprintf(stderr, "cannot connect to the bus: %s\n", strerror(-r));
                return 1;
        }

        const char *cmd = argv[optind];
        if (strcmp(cmd, "run") == 0) {
                check(wait_clean(), "memory of unknown contents is zeroed after start-up");
                scenario_allocate_1g();
                scenario_align_1g();
                scenario_boundary();
                scenario_fragmentation();
                scenario_numa();
                scenario_transient();
                scenario_isolation();
                scenario_bad_input();
                r = n_fail ? 1 : 0;
        } else if (strcmp(cmd, "setup-persist") == 0 && optind + 1 < argc)
                r = setup_persist(argv[optind + 1]);
        else if (strcmp(cmd, "check-persist") == 0 && optind + 1 < argc) {
                const char *how = optind + 2 < argc ? argv[optind + 2] : "";
                r = check_persist(argv[optind + 1], strcmp(how, "--after-reboot") == 0 ? PERSIST_REBOOT
                                                    : strcmp(how, "--from-host") == 0  ? PERSIST_FROM_HOST
                                                                                       : PERSIST_BYTES,
                                  optind + 3 < argc ? argv[optind + 3] : NULL);
        } else if (strcmp(cmd, "check-restoring") == 0 && optind + 1 < argc)
                r = check_restoring(argv[optind + 1]);
        else if (strcmp(cmd, "setup-dirty") == 0 && optind + 1 < argc)
                r = setup_dirty(argv[optind + 1]);
        else if (strcmp(cmd, "check-dirty") == 0 && optind + 1 < argc)
                r = check_dirty(argv[optind + 1], optind + 2 < argc ? argv[optind + 2] : NULL);
        else if (strcmp(cmd, "wait-clean") == 0) {
                check(wait_clean(), "no pool has memory left to zero");
                r = n_fail ? 1 : 0;
        } else if (strcmp(cmd, "zeroing") == 0) {
                check(some_pool_dirty(), "memory is being zeroed (a pool has DirtySize > 0)");
                r = n_fail ? 1 : 0;
        }
        else if (strcmp(cmd, "cleanup") == 0)
                r = cleanup();
        else if (strcmp(cmd, "host") == 0 && optind + 3 < argc) {
                uint64_t chunk = strtoull(argv[optind + 2], NULL, 0), reserve = strtoull(argv[optind + 3], NULL, 0);
                r = scenario_host(argv[optind + 1], chunk, reserve);
        } else if (strcmp(cmd, "host-pinned") == 0 && optind + 1 < argc)
                r = scenario_host_pinned(argv[optind + 1],
                                         optind + 2 < argc && strcmp(argv[optind + 2], "--must-fail") == 0);
        else if (strcmp(cmd, "deadline") == 0 && optind + 1 < argc)
                r = scenario_deadline(argv[optind + 1]);
        else if (strcmp(cmd, "host-trigger") == 0 && optind + 1 < argc)
                r = host_trigger(argv[optind + 1]);
        else if (strcmp(cmd, "host-check") == 0 && optind + 1 < argc)
                r = host_check(argv[optind + 1]);
        else if (strcmp(cmd, "crash-workload") == 0 && optind + 1 < argc)
                r = crash_workload(argv[optind + 1]);
        else if (strcmp(cmd, "warm-take") == 0 && optind + 3 < argc)
                r = warm_take(argv[optind + 1], strtoull(argv[optind + 2], NULL, 0), argv[optind + 3]);
        else if (strcmp(cmd, "warm-burst") == 0 && optind + 5 < argc)
                r = warm_burst(argv[optind + 1], strtoull(argv[optind + 2], NULL, 0), atoi(argv[optind + 3]),
                               atoi(argv[optind + 4]), argv[optind + 5], optind + 6 < argc ? argv[optind + 6] : "");
        else if (strcmp(cmd, "warm-miss") == 0 && optind + 4 < argc)
                r = warm_miss(argv[optind + 1], strtoull(argv[optind + 2], NULL, 0), argv[optind + 3],
                              atoi(argv[optind + 4]));
        else if (strcmp(cmd, "release-held") == 0 && optind + 2 < argc)
                r = release_held(argv[optind + 1], argv[optind + 2]);
        else if (strcmp(cmd, "whole-zero") == 0 && optind + 1 < argc)
                r = whole_zero(argv[optind + 1]);
        else if (strcmp(cmd, "warm-larger") == 0 && optind + 1 < argc)
                r = warm_larger(argv[optind + 1]);
        else if (strcmp(cmd, "warm-host") == 0 && optind + 2 < argc)
                r = warm_host(argv[optind + 1], strtoull(argv[optind + 2], NULL, 0));
        else {
                fprintf(stderr, "unknown command '%s'\n", cmd);
                return 2;
        }
        printf("1..%u\n", n_test);
        sd_bus_flush_close_unref(bus);
        return r;
}
