/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * floor: the least work the kernel ABI allows for one allocation and one
 * release of a device-dax device, timed per step. daxbrokerd's Allocate and
 * Release are compared against these numbers (bench/run-bench.sh).
 *
 * Allocate: region "create" (write 1, read the new name back), "mapping" of
 * an exact free range, the name to device_dax/new_id ("bind" if that did not
 * attach it), open /dev/daxR.N. Release: close, device_dax/unbind,
 * device_dax/remove_id, "size" 0, region "delete". Ranges are placed first
 * fit from the region start, as the daemon places them, so both programs
 * ask the kernel for the same physical memory.
 *
 * With --daxctl the same cycle is timed through the daxctl tool instead
 * (create-device; disable-device + destroy-device), as a reference.
 * --pause-ms sleeps before each allocate and each release, so that every
 * step pays the RCU grace period of mem_hotplug_begin() (bench-util.h);
 * --zero zeroes the device through a shared mapping before each release,
 * which daxbrokerd does (in the background) before it reuses memory; with
 * --zero=scrub through daxbrokerd's own zeroing engine instead of memset.
 *
 * --reclaim times the other direction of host return: 1 GiB lent to the
 * host (bound to kmem, every memory block online) is taken back into a new
 * open device_dax device: offline each block, kmem unbind + remove_id, size
 * 0, delete, then create, mapping, bind, open (and zero with --zero). With
 * --daxctl: offline-memory, reconfigure-device --mode=devdax,
 * destroy-device --force, create-device. See measure_reclaim().
 *
 * The region must be empty (available_size equal to its size, so daxR.0 has
 * size 0): run it before daxbrokerd takes the region, or after it released
 * everything.
 */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench-util.h"
#include "scrub.h"

#define SIZES_MAX 8
#define NAME_LEN 32

extern char **environ;

enum {
        ALLOC_CREATE,
        ALLOC_MAPPING,
        ALLOC_BIND,
        ALLOC_OPEN,
        _ALLOC_MAX,
};
static const char *const alloc_phase[_ALLOC_MAX] = { "create", "mapping", "bind", "open" };

enum {
        RELEASE_ZERO,
        RELEASE_CLOSE,
        RELEASE_UNBIND,
        RELEASE_REMOVE_ID,
        RELEASE_SIZE0,
        RELEASE_DELETE,
        _RELEASE_MAX,
};
static const char *const release_phase[_RELEASE_MAX] = { "zero", "close", "unbind", "remove_id", "size0",
                                                              "delete" };

/* daxctl mode has its own steps. */
enum {
        DAXCTL_DISABLE,
        DAXCTL_DESTROY,
        _DAXCTL_RELEASE_MAX,
};
static const char *const daxctl_release_phase[_DAXCTL_RELEASE_MAX] = { "disable", "destroy" };

typedef struct Options {
        unsigned region;
        unsigned iterations;
        unsigned warmup;
        unsigned held;
        unsigned pause_ms;
        bool zero;
        bool zero_scrub;
        bool reclaim;
        uint64_t at; /* --reclaim: physical start, 0: the top of the region */
        uint64_t sizes[SIZES_MAX];
        size_t n_sizes;
        bool sizes_set;
        const char *daxctl; /* NULL: raw sysfs */
} Options;

typedef struct Floor {
        Options o;
        char parent[PATH_MAX]; /* the region's parent device: holds daxR.N */
        char region[PATH_MAX]; /* its dax_region/ */
        const char *driver;    /* /sys/bus/dax/drivers/device_dax */
        uint64_t start;
        uint64_t size;
        Scrubber *scrubber;    /* --zero=scrub */
} Floor;

typedef struct Device {
        char name[NAME_LEN];
        int fd;
        uint64_t size;
} Device;

/* Formats a sysfs path into a PATH_MAX buffer; these paths are short, so
 * running out of room means something is badly wrong. */
static const char *pathf(char *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static const char *pathf(char *buf, const char *fmt, ...) {
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(buf, PATH_MAX, fmt, ap);
        va_end(ap);
        if (n < 0 || n >= PATH_MAX) {
                fprintf(stderr, "floor: path too long\n");
                exit(EXIT_FAILURE);
        }
        return buf;
}

static int write_attr(const char *path, const char *value) {
        ssize_t n;
        int fd, r = 0;

        fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        n = write(fd, value, strlen(value));
        if (n < 0)
                r = -errno;
        else if ((size_t) n != strlen(value))
                r = -EIO;
        close(fd);
        return r;
}

static int read_attr(const char *path, char *buf, size_t len) {
        ssize_t n;
        int fd;

        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        n = read(fd, buf, len - 1);
        close(fd);
        if (n < 0)
                return -errno;
        buf[n] = 0;
        buf[strcspn(buf, "\n")] = 0;
        return 0;
}

static int read_attr_u64(const char *path, uint64_t *ret) {
        char buf[64], *end;
        int r;

        r = read_attr(path, buf, sizeof(buf));
        if (r < 0)
                return r;
        errno = 0;
        *ret = strtoull(buf, &end, 0);
        if (errno != 0 || end == buf || *end != 0)
                return -EINVAL;
        return 0;
}

static int fail(int r, const char *what, const char *detail) {
        fprintf(stderr, "floor: %s%s%s: %s\n", what, detail ? " " : "", detail ? detail : "", strerror(-r));
        return r;
}

/* ---- the raw cycle ---- */

static int raw_allocate(Floor *f, uint64_t start, uint64_t size, Device *d, double t[_ALLOC_MAX]) {
        char path[PATH_MAX], value[64];
        double t0, t1;
        int r;

        d->fd = -1;
        d->size = size;
        t0 = bench_now_us();
        pathf(path, "%s/create", f->region);
        r = write_attr(path, "1");
        if (r < 0)
                return fail(r, "writing", path);
        r = read_attr(path, d->name, sizeof(d->name));
        if (r < 0)
                return fail(r, "reading", path);
        if (strncmp(d->name, "dax", 3) != 0)
                return fail(-EIO, "unexpected device name from", path);
        t1 = bench_now_us();
        t[ALLOC_CREATE] = t1 - t0;

        t0 = t1;
        pathf(path, "%s/%s/mapping", f->parent, d->name);
        snprintf(value, sizeof(value), "%#" PRIx64 "-%#" PRIx64, start, start + size - 1);
        r = write_attr(path, value);
        if (r < 0)
                return fail(r, "writing", path);
        t1 = bench_now_us();
        t[ALLOC_MAPPING] = t1 - t0;

        t0 = t1;
        pathf(path, "%s/new_id", f->driver);
        r = write_attr(path, d->name);
        if (r < 0 && r != -EEXIST)
                return fail(r, "writing", path);
        pathf(path, "%s/%s/driver", f->parent, d->name);
        if (access(path, F_OK) < 0) {
                pathf(path, "%s/bind", f->driver);
                r = write_attr(path, d->name);
                if (r < 0)
                        return fail(r, "writing", path);
        }
        t1 = bench_now_us();
        t[ALLOC_BIND] = t1 - t0;

        t0 = t1;
        pathf(path, "/dev/%s", d->name);
        d->fd = open(path, O_RDWR | O_CLOEXEC);
        if (d->fd < 0)
                return fail(-errno, "opening", path);
        t1 = bench_now_us();
        t[ALLOC_OPEN] = t1 - t0;
        return 0;
}

/* Zeroes the whole device through a shared mapping: memset on this
 * thread, or with --zero=scrub the daemon's own engine (src/scrub.c, its
 * default method and thread count). */
static int zero_device(Floor *f, Device *d) {
        void *p;
        int r = 0;

        p = mmap(NULL, d->size, PROT_READ | PROT_WRITE, MAP_SHARED, d->fd, 0);
        if (p == MAP_FAILED)
                return fail(-errno, "mapping", d->name);
        if (f->scrubber) {
                r = scrubber_zero(f->scrubber, p, d->size);
                if (r < 0)
                        (void) fail(r, "zeroing", d->name);
        } else
                memset(p, 0, d->size);
        munmap(p, d->size);
        return r;
}

static int raw_release(Floor *f, Device *d, bool zero, double t[_RELEASE_MAX]) {
        char path[PATH_MAX];
        double t0, t1;
        int r;

        /* What daxbrokerd does before it gives memory back: zero it
         * through the device. */
        t0 = bench_now_us();
        if (zero && d->fd >= 0) {
                r = zero_device(f, d);
                if (r < 0)
                        return r;
        }
        t1 = bench_now_us();
        t[RELEASE_ZERO] = t1 - t0;

        t0 = t1;
        if (d->fd >= 0)
                close(d->fd);
        d->fd = -1;
        t1 = bench_now_us();
        t[RELEASE_CLOSE] = t1 - t0;

        t0 = t1;
        pathf(path, "%s/unbind", f->driver);
        r = write_attr(path, d->name);
        if (r < 0)
                return fail(r, "writing", path);
        t1 = bench_now_us();
        t[RELEASE_UNBIND] = t1 - t0;

        t0 = t1;
        pathf(path, "%s/remove_id", f->driver);
        r = write_attr(path, d->name);
        if (r < 0)
                return fail(r, "writing", path);
        t1 = bench_now_us();
        t[RELEASE_REMOVE_ID] = t1 - t0;

        t0 = t1;
        pathf(path, "%s/%s/size", f->parent, d->name);
        r = write_attr(path, "0");
        if (r < 0)
                return fail(r, "writing", path);
        t1 = bench_now_us();
        t[RELEASE_SIZE0] = t1 - t0;

        t0 = t1;
        pathf(path, "%s/delete", f->region);
        r = write_attr(path, d->name);
        if (r < 0)
                return fail(r, "writing", path);
        t1 = bench_now_us();
        t[RELEASE_DELETE] = t1 - t0;
        return 0;
}

/* ---- the daxctl cycle ---- */

/* Runs daxctl with these arguments; its stdout (up to len - 1 bytes) into
 * out when out is not NULL. Returns 0 or a negative errno / -EPROTO when
 * daxctl failed. */
static int run_daxctl(Floor *f, char *const args[], char *out, size_t len) {
        posix_spawn_file_actions_t fa;
        const char *argv[8];
        int pipefd[2] = { -1, -1 }, status, r;
        size_t n = 0, got = 0;
        pid_t pid;

        argv[n++] = f->o.daxctl;
        for (size_t i = 0; args[i] && n < sizeof(argv) / sizeof(argv[0]) - 1; i++)
                argv[n++] = args[i];
        argv[n] = NULL;

        posix_spawn_file_actions_init(&fa);
        if (out) {
                if (pipe2(pipefd, O_CLOEXEC) < 0) {
                        r = -errno;
                        posix_spawn_file_actions_destroy(&fa);
                        return r;
                }
                posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDOUT_FILENO);
        } else
                posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
        /* "created 1 device" and the like. */
        posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);

        r = posix_spawnp(&pid, f->o.daxctl, &fa, NULL, (char *const *) argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        if (out)
                close(pipefd[1]);
        if (r != 0) {
                if (out)
                        close(pipefd[0]);
                return -r;
        }
        if (out) {
                for (;;) {
                        ssize_t k = read(pipefd[0], out + got, len - 1 - got);
                        if (k <= 0 || got + (size_t) k >= len - 1) {
                                if (k > 0)
                                        got += (size_t) k;
                                break;
                        }
                        got += (size_t) k;
                }
                out[got] = 0;
                close(pipefd[0]);
        }
        if (waitpid(pid, &status, 0) < 0)
                return -errno;
        return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EPROTO;
}

static int daxctl_allocate(Floor *f, uint64_t size, Device *d, double *ret_us) {
        char region[16], sz[32], out[4096];
        const char *p;
        double t0;
        size_t n;
        int r;

        snprintf(region, sizeof(region), "%u", f->o.region);
        snprintf(sz, sizeof(sz), "%" PRIu64, size);
        char *const args[] = { (char *) "create-device", (char *) "-r", region, (char *) "-s", sz, NULL };

        d->fd = -1;
        t0 = bench_now_us();
        r = run_daxctl(f, args, out, sizeof(out));
        *ret_us = bench_now_us() - t0;
        if (r < 0)
                return fail(r, "daxctl create-device -r", region);

        /* [{ "chardev":"dax1.1", ... }] */
        p = strstr(out, "\"chardev\":\"");
        if (!p)
                return fail(-EIO, "no chardev in daxctl create-device output:", out);
        p += strlen("\"chardev\":\"");
        n = strcspn(p, "\"");
        if (n == 0 || n >= sizeof(d->name))
                return fail(-EIO, "bad chardev in daxctl create-device output:", out);
        memcpy(d->name, p, n);
        d->name[n] = 0;
        return 0;
}

static int daxctl_release(Floor *f, Device *d, double t[_DAXCTL_RELEASE_MAX]) {
        char *const disable[] = { (char *) "disable-device", d->name, NULL };
        char *const destroy[] = { (char *) "destroy-device", d->name, NULL };
        double t0;
        int r;

        t0 = bench_now_us();
        r = run_daxctl(f, disable, NULL, 0);
        t[DAXCTL_DISABLE] = bench_now_us() - t0;
        if (r < 0)
                return fail(r, "daxctl disable-device", d->name);

        t0 = bench_now_us();
        r = run_daxctl(f, destroy, NULL, 0);
        t[DAXCTL_DESTROY] = bench_now_us() - t0;
        if (r < 0)
                return fail(r, "daxctl destroy-device", d->name);
        return 0;
}

/* ---- set-up and the measurement loops ---- */

static int floor_open(Floor *f) {
        char path[PATH_MAX], seed[PATH_MAX];
        uint64_t available;
        int r;

        pathf(path, "/sys/bus/dax/devices/dax%u.0/..", f->o.region);
        if (!realpath(path, f->parent))
                return fail(-errno, "no dax region", path);
        pathf(f->region, "%s/dax_region", f->parent);
        f->driver = "/sys/bus/dax/drivers/device_dax";

        pathf(path, "%s/size", f->region);
        r = read_attr_u64(path, &f->size);
        if (r < 0)
                return fail(r, "reading", path);
        pathf(path, "%s/available_size", f->region);
        r = read_attr_u64(path, &available);
        if (r < 0)
                return fail(r, "reading", path);
        if (available != f->size) {
                fprintf(stderr,
                        "floor: region %u is not empty (available %" PRIu64 " of %" PRIu64 " bytes); "
                        "unbind dax%u.0 and set its size to 0 first\n",
                        f->o.region, available, f->size, f->o.region);
                return -EBUSY;
        }
        /* A device without ranges shows the region start as its resource. */
        pathf(seed, "%s/dax%u.0/resource", f->parent, f->o.region);
        r = read_attr_u64(seed, &f->start);
        if (r < 0)
                return fail(r, "reading", seed);
        return 0;
}

static void release_quietly(Floor *f, Device *d) {
        double t[_RELEASE_MAX];

        if (d->name[0])
                (void) raw_release(f, d, false, t);
        d->name[0] = 0;
}

static int measure(Floor *f, uint64_t size, const char *tool) {
        BenchSeries alloc = {}, release = {}, aphase[_ALLOC_MAX] = {}, rphase[_RELEASE_MAX] = {};
        uint64_t start = f->start + (uint64_t) f->o.held * 2 * BENCH_MiB;
        unsigned total = f->o.warmup + f->o.iterations;
        char tool_name[64];
        int r = 0;

        /* Paused and zeroing series are kept apart: see bench_pause_ms(). */
        snprintf(tool_name, sizeof(tool_name), "%s%s%s", tool, f->o.pause_ms > 0 ? "-paused" : "",
                 !f->o.zero ? "" : f->o.zero_scrub ? "-scrub" : "-zero");

        for (unsigned i = 0; i < total; i++) {
                double at[_ALLOC_MAX] = {}, rt[_RELEASE_MAX] = {}, a = 0, b = 0, t0;
                Device d = { .fd = -1 };
                size_t nr;

                bench_pause_ms(f->o.pause_ms);
                if (f->o.daxctl) {
                        r = daxctl_allocate(f, size, &d, &a);
                        if (r < 0) {
                                /* daxctl leaves its seed behind on failure. */
                                break;
                        }
                        bench_pause_ms(f->o.pause_ms);
                        r = daxctl_release(f, &d, rt);
                        if (r < 0) {
                                release_quietly(f, &d);
                                break;
                        }
                        nr = _DAXCTL_RELEASE_MAX;
                } else {
                        t0 = bench_now_us();
                        r = raw_allocate(f, start, size, &d, at);
                        a = bench_now_us() - t0;
                        if (r < 0) {
                                release_quietly(f, &d);
                                break;
                        }
                        bench_pause_ms(f->o.pause_ms);
                        t0 = bench_now_us();
                        r = raw_release(f, &d, f->o.zero, rt);
                        b = bench_now_us() - t0;
                        if (r < 0)
                                break;
                        nr = _RELEASE_MAX;
                }
                if (i < f->o.warmup)
                        continue;

                if (f->o.daxctl)
                        b = rt[DAXCTL_DISABLE] + rt[DAXCTL_DESTROY];
                bench_series_add(&alloc, a);
                bench_series_add(&release, b);
                for (size_t k = 0; !f->o.daxctl && k < _ALLOC_MAX; k++)
                        bench_series_add(&aphase[k], at[k]);
                for (size_t k = 0; k < nr; k++)
                        if (f->o.daxctl || k != RELEASE_ZERO || f->o.zero)
                                bench_series_add(&rphase[k], rt[k]);
        }

        if (r == 0) {
                char op[64];

                bench_print(tool_name, size, f->o.held, "allocate", &alloc);
                for (size_t k = 0; !f->o.daxctl && k < _ALLOC_MAX; k++) {
                        snprintf(op, sizeof(op), "allocate.%s", alloc_phase[k]);
                        bench_print(tool_name, size, f->o.held, op, &aphase[k]);
                }
                bench_print(tool_name, size, f->o.held, "release", &release);
                for (size_t k = 0; k < (f->o.daxctl ? _DAXCTL_RELEASE_MAX : _RELEASE_MAX); k++) {
                        snprintf(op, sizeof(op), "release.%s",
                                 f->o.daxctl ? daxctl_release_phase[k] : release_phase[k]);
                        bench_print(tool_name, size, f->o.held, op, &rphase[k]);
                }
        }

        bench_series_free(&alloc);
        bench_series_free(&release);
        for (size_t k = 0; k < _ALLOC_MAX; k++)
                bench_series_free(&aphase[k]);
        for (size_t k = 0; k < _RELEASE_MAX; k++)
                bench_series_free(&rphase[k]);
        return r;
}

/* ---- reclaiming a host chunk (--reclaim) ---- */

/* The device of --reclaim sits at a fixed, block-aligned address: by
 * default the top of the region, where daxbrokerd puts its host chunks.
 * A filler device bound to device_dax takes everything below it, as the
 * daemon's benchmark fills its pool, so that daxctl create-device (first
 * fit) lands on the same range. Untimed, each cycle first lends the range
 * to the host: bound to kmem, every memory block online (movable). The
 * timed part takes it back into a new device_dax device and opens it. */

enum {
        RECLAIM_OFFLINE,
        RECLAIM_UNBIND,
        RECLAIM_REMOVE_ID,
        RECLAIM_SIZE0,
        RECLAIM_DELETE,
        RECLAIM_CREATE,
        RECLAIM_MAPPING,
        RECLAIM_BIND,
        RECLAIM_OPEN,
        RECLAIM_ZERO,
        _RECLAIM_MAX,
};
static const char *const reclaim_phase[_RECLAIM_MAX] = { "offline", "unbind", "remove_id", "size0", "delete",
                                                          "create", "mapping", "bind", "open", "zero" };
/* Steps up to here give the memory back to the region: what
 * ReclaimFromHost does on its own. */
#define RECLAIM_HOST_END RECLAIM_DELETE

enum {
        DAXCTL_RECLAIM_OFFLINE,
        DAXCTL_RECLAIM_DEVDAX,
        DAXCTL_RECLAIM_DESTROY,
        DAXCTL_RECLAIM_CREATE,
        DAXCTL_RECLAIM_OPEN,
        _DAXCTL_RECLAIM_MAX,
};
static const char *const daxctl_reclaim_phase[_DAXCTL_RECLAIM_MAX] = { "offline-memory", "reconfigure-devdax",
                                                                        "destroy", "create", "open" };
#define DAXCTL_RECLAIM_HOST_END DAXCTL_RECLAIM_DESTROY

#define MEMORY_SYSFS "/sys/devices/system/memory"
#define KMEM_DRIVER "/sys/bus/dax/drivers/kmem"

static int memory_block_size(uint64_t *ret) {
        char buf[64], *end;
        int r;

        /* Hex without "0x". */
        r = read_attr(MEMORY_SYSFS "/block_size_bytes", buf, sizeof(buf));
        if (r < 0)
                return fail(r, "reading", MEMORY_SYSFS "/block_size_bytes");
        errno = 0;
        *ret = strtoull(buf, &end, 16);
        if (errno != 0 || end == buf || *end != 0 || *ret == 0)
                return fail(-EINVAL, "bad", MEMORY_SYSFS "/block_size_bytes");
        return 0;
}

/* Onlines (movable where the kernel allows) or offlines every memory block
 * of the range. The timed offlining writes each state blindly; lenient
 * skips blocks already offline (clean-up after a failure). */
static int set_blocks(uint64_t start, uint64_t size, uint64_t block_size, bool online, bool lenient) {
        char path[PATH_MAX], value[32];

        for (uint64_t m = start / block_size; m < (start + size) / block_size; m++) {
                int r;

                pathf(path, MEMORY_SYSFS "/memory%" PRIu64 "/state", m);
                if (!online) {
                        if (lenient && read_attr(path, value, sizeof(value)) >= 0 && strcmp(value, "offline") == 0)
                                continue;
                        r = write_attr(path, "offline");
                        if (r < 0)
                                return fail(r, "offlining", path);
                        continue;
                }
                /* A block kmem's hotplug left online already refuses a
                 * second online with EINVAL. */
                if (read_attr(path, value, sizeof(value)) >= 0 && strcmp(value, "online") == 0)
                        continue;
                r = write_attr(path, "online_movable");
                if (r == -EINVAL)
                        r = write_attr(path, "online");
                if (r < 0)
                        return fail(r, "onlining", path);
        }
        return 0;
}

/* The driver the device is bound to ("" when none). */
static void device_driver(Floor *f, const char *name, char *buf, size_t len) {
        char path[PATH_MAX], target[PATH_MAX];
        const char *base;
        ssize_t n;

        buf[0] = 0;
        pathf(path, "%s/%s/driver", f->parent, name);
        n = readlink(path, target, sizeof(target) - 1);
        if (n < 0)
                return;
        target[n] = 0;
        base = strrchr(target, '/');
        base = base ? base + 1 : target;
        if (strlen(base) < len)
                memcpy(buf, base, strlen(base) + 1);
}

/* Binds kmem as daxbrokerd does: "bind" probes only this device; on 6.1
 * kmem matches only names in its id list (ENODEV), so new_id then. */
static int bind_kmem(Floor *f, const char *name) {
        char drv[NAME_MAX + 1];
        int r;

        r = write_attr(KMEM_DRIVER "/bind", name);
        if (r == -ENODEV) {
                r = write_attr(KMEM_DRIVER "/new_id", name);
                if (r == -EEXIST)
                        r = 0;
                device_driver(f, name, drv, sizeof(drv));
                if (r >= 0 && drv[0] == 0)
                        r = write_attr(KMEM_DRIVER "/bind", name);
        }
        device_driver(f, name, drv, sizeof(drv));
        if (strcmp(drv, "kmem") == 0)
                return 0;
        return fail(r < 0 ? r : -EIO, "binding kmem to", name);
}

/* Untimed: a device_dax device (as the timed part leaves it) becomes host
 * memory: closed, unbound, kmem bound, every block online. */
static int raw_lend(Floor *f, Device *d, uint64_t start, uint64_t block_size) {
        char path[PATH_MAX];
        int r;

        if (d->fd >= 0)
                close(d->fd);
        d->fd = -1;
        pathf(path, "%s/unbind", f->driver);
        r = write_attr(path, d->name);
        if (r < 0)
                return fail(r, "writing", path);
        pathf(path, "%s/remove_id", f->driver);
        r = write_attr(path, d->name);
        if (r < 0)
                return fail(r, "writing", path);
        r = bind_kmem(f, d->name);
        if (r < 0)
                return r;
        return set_blocks(start, d->size, block_size, true, false);
}

/* Timed: offline every block, kmem unbind + remove_id, size 0, delete;
 * then the floor's allocate over the same range (create, mapping, bind
 * device_dax, open), and with --zero the zeroing of the whole device.
 * Right after the untimed onlining, the first offlining skips the RCU grace
 * period of mem_hotplug_begin() (bench-util.h); a reclaim that comes long
 * after the return pays it. --pause-ms sleeps (untimed) before the
 * offlining to time that cold start. */
static int raw_reclaim(Floor *f, Device *d, uint64_t start, uint64_t block_size, double t[_RECLAIM_MAX]) {
        char path[PATH_MAX];
        double t0, t1, at[_ALLOC_MAX];
        uint64_t size = d->size;
        int r;

        bench_pause_ms(f->o.pause_ms);
        t0 = bench_now_us();
        r = set_blocks(start, size, block_size, false, false);
        if (r < 0)
                return r;
        t1 = bench_now_us();
        t[RECLAIM_OFFLINE] = t1 - t0;

        t0 = t1;
        r = write_attr(KMEM_DRIVER "/unbind", d->name);
        if (r < 0)
                return fail(r, "writing", KMEM_DRIVER "/unbind");
        t1 = bench_now_us();
        t[RECLAIM_UNBIND] = t1 - t0;

        t0 = t1;
        r = write_attr(KMEM_DRIVER "/remove_id", d->name);
        if (r < 0)
                return fail(r, "writing", KMEM_DRIVER "/remove_id");
        t1 = bench_now_us();
        t[RECLAIM_REMOVE_ID] = t1 - t0;

        t0 = t1;
        pathf(path, "%s/%s/size", f->parent, d->name);
        r = write_attr(path, "0");
        if (r < 0)
                return fail(r, "writing", path);
        t1 = bench_now_us();
        t[RECLAIM_SIZE0] = t1 - t0;

        t0 = t1;
        pathf(path, "%s/delete", f->region);
        r = write_attr(path, d->name);
        if (r < 0)
                return fail(r, "writing", path);
        t1 = bench_now_us();
        t[RECLAIM_DELETE] = t1 - t0;
        d->name[0] = 0;

        r = raw_allocate(f, start, size, d, at);
        t[RECLAIM_CREATE] = at[ALLOC_CREATE];
        t[RECLAIM_MAPPING] = at[ALLOC_MAPPING];
        t[RECLAIM_BIND] = at[ALLOC_BIND];
        t[RECLAIM_OPEN] = at[ALLOC_OPEN];
        if (r < 0)
                return r;

        t0 = bench_now_us();
        if (f->o.zero) {
                r = zero_device(f, d);
                if (r < 0)
                        return r;
        }
        t[RECLAIM_ZERO] = bench_now_us() - t0;
        return 0;
}

static int device_start(Floor *f, const char *name, uint64_t *ret) {
        char path[PATH_MAX];
        int r;

        pathf(path, "%s/%s/mapping0/start", f->parent, name);
        r = read_attr_u64(path, ret);
        return r < 0 ? fail(r, "reading", path) : 0;
}

static int daxctl_dev(Floor *f, const char *cmd, const char *opt, const char *name) {
        char *const args[] = { (char *) cmd, (char *) (opt ? opt : name), opt ? (char *) name : NULL, NULL };
        int r = run_daxctl(f, args, NULL, 0);

        if (r < 0) {
                char what[64];

                snprintf(what, sizeof(what), "daxctl %s%s%s", cmd, opt ? " " : "", opt ? opt : "");
                return fail(r, what, name);
        }
        return 0;
}

/* daxctl create-device; the device must land at start (the filler makes
 * that the only room). */
static int daxctl_create_at(Floor *f, uint64_t start, uint64_t size, Device *d, double *ret_us) {
        uint64_t got;
        int r;

        r = daxctl_allocate(f, size, d, ret_us);
        if (r < 0)
                return r;
        d->size = size;
        r = device_start(f, d->name, &got);
        if (r < 0)
                return r;
        if (got != start) {
                fprintf(stderr, "floor: daxctl put %s at %#" PRIx64 ", not %#" PRIx64 "\n", d->name, got, start);
                return -EIO;
        }
        return 0;
}

/* Timed: offline-memory, reconfigure-device -m devdax (kmem unbound,
 * device_dax bound), destroy-device --force (v76 refuses to destroy an
 * enabled device without it; --force disables it first, one process fewer
 * than disable-device), create-device, open. */
static int daxctl_reclaim(Floor *f, Device *d, uint64_t start, double t[_DAXCTL_RECLAIM_MAX]) {
        char path[PATH_MAX];
        uint64_t size = d->size;
        double t0;
        int r;

        t0 = bench_now_us();
        r = daxctl_dev(f, "offline-memory", NULL, d->name);
        t[DAXCTL_RECLAIM_OFFLINE] = bench_now_us() - t0;
        if (r < 0)
                return r;
        t0 = bench_now_us();
        r = daxctl_dev(f, "reconfigure-device", "--mode=devdax", d->name);
        t[DAXCTL_RECLAIM_DEVDAX] = bench_now_us() - t0;
        if (r < 0)
                return r;
        t0 = bench_now_us();
        r = daxctl_dev(f, "destroy-device", "--force", d->name);
        t[DAXCTL_RECLAIM_DESTROY] = bench_now_us() - t0;
        if (r < 0)
                return r;
        d->name[0] = 0;
        r = daxctl_create_at(f, start, size, d, &t[DAXCTL_RECLAIM_CREATE]);
        if (r < 0)
                return r;
        t0 = bench_now_us();
        pathf(path, "/dev/%s", d->name);
        d->fd = open(path, O_RDWR | O_CLOEXEC);
        t[DAXCTL_RECLAIM_OPEN] = bench_now_us() - t0;
        if (d->fd < 0)
                return fail(-errno, "opening", path);
        return 0;
}

/* Untimed, daxctl: the device goes to the host (reconfigure-device
 * --mode=system-ram onlines every block movable). */
static int daxctl_lend(Floor *f, Device *d) {
        if (d->fd >= 0)
                close(d->fd);
        d->fd = -1;
        return daxctl_dev(f, "reconfigure-device", "--mode=system-ram", d->name);
}

/* Best effort, after a failure or at the end: whatever state the device is
 * in, back to nothing, blocks offline first so kmem never strands one. */
static void reclaim_cleanup(Floor *f, Device *d, uint64_t start, uint64_t block_size) {
        char drv[NAME_MAX + 1], path[PATH_MAX];

        if (d->fd >= 0)
                close(d->fd);
        d->fd = -1;
        if (!d->name[0])
                return;
        device_driver(f, d->name, drv, sizeof(drv));
        if (strcmp(drv, "kmem") == 0 && set_blocks(start, d->size, block_size, false, true) < 0) {
                fprintf(stderr, "floor: leaving %s bound to kmem: a block would not go offline\n", d->name);
                return;
        }
        if (drv[0]) {
                pathf(path, "/sys/bus/dax/drivers/%s/unbind", drv);
                (void) write_attr(path, d->name);
                pathf(path, "/sys/bus/dax/drivers/%s/remove_id", drv);
                (void) write_attr(path, d->name);
        }
        pathf(path, "%s/%s/size", f->parent, d->name);
        (void) write_attr(path, "0");
        pathf(path, "%s/delete", f->region);
        (void) write_attr(path, d->name);
        d->name[0] = 0;
}

static int measure_reclaim(Floor *f, uint64_t size, uint64_t block_size) {
        BenchSeries total = {}, host = {}, device = {}, phase[_RECLAIM_MAX] = {};
        const bool daxctl = f->o.daxctl != NULL;
        const size_t n_phase = daxctl ? _DAXCTL_RECLAIM_MAX : _RECLAIM_MAX;
        const size_t host_end = daxctl ? DAXCTL_RECLAIM_HOST_END : RECLAIM_HOST_END;
        uint64_t start = f->o.at ? f->o.at : f->start + f->size - size;
        unsigned held = start > f->start ? 1 : 0;
        Device filler = { .fd = -1 }, d = { .fd = -1, .size = size };
        double ft[_ALLOC_MAX], unused;
        char tool[64];
        int r = 0;

        snprintf(tool, sizeof(tool), "%s-reclaim%s%s", daxctl ? "daxctl" : "floor",
                 !f->o.zero ? "" : f->o.zero_scrub ? "-scrub" : "-zero", f->o.pause_ms > 0 ? "-paused" : "");
        if (start % block_size != 0 || size % block_size != 0 || start < f->start ||
            start + size > f->start + f->size) {
                fprintf(stderr, "floor: %#" PRIx64 "+%#" PRIx64 " is not block-aligned (%#" PRIx64 ") inside region %u\n",
                        start, size, block_size, f->o.region);
                return -EINVAL;
        }

        if (held) {
                r = raw_allocate(f, f->start, start - f->start, &filler, ft);
                if (r < 0)
                        goto finish;
        }

        /* The first loan. */
        if (daxctl)
                r = daxctl_create_at(f, start, size, &d, &unused);
        else
                r = raw_allocate(f, start, size, &d, ft);
        if (r < 0)
                goto finish;

        for (unsigned i = 0; i < f->o.warmup + f->o.iterations; i++) {
                double t[_RECLAIM_MAX] = {}, sum = 0, host_sum = 0, device_sum = 0;

                r = daxctl ? daxctl_lend(f, &d) : raw_lend(f, &d, start, block_size);
                if (r < 0)
                        break;
                r = daxctl ? daxctl_reclaim(f, &d, start, t) : raw_reclaim(f, &d, start, block_size, t);
                if (r < 0)
                        break;
                if (i < f->o.warmup)
                        continue;
                for (size_t k = 0; k < n_phase; k++) {
                        sum += t[k];
                        if (k <= host_end)
                                host_sum += t[k];
                        else if (daxctl || k != RECLAIM_ZERO)
                                device_sum += t[k];
                        bench_series_add(&phase[k], t[k]);
                }
                bench_series_add(&total, sum);
                bench_series_add(&host, host_sum);
                bench_series_add(&device, device_sum);
        }

        if (r == 0) {
                char op[64];

                bench_print(tool, size, held, "reclaim", &total);
                bench_print(tool, size, held, "reclaim.host", &host);
                bench_print(tool, size, held, "reclaim.device", &device);
                for (size_t k = 0; k < n_phase; k++) {
                        if (!daxctl && k == RECLAIM_ZERO && !f->o.zero)
                                continue;
                        snprintf(op, sizeof(op), "reclaim.%s", daxctl ? daxctl_reclaim_phase[k] : reclaim_phase[k]);
                        bench_print(tool, size, held, op, &phase[k]);
                }
        }

finish:
        reclaim_cleanup(f, &d, start, block_size);
        reclaim_cleanup(f, &filler, f->start, block_size);
        bench_series_free(&total);
        bench_series_free(&host);
        bench_series_free(&device);
        for (size_t k = 0; k < _RECLAIM_MAX; k++)
                bench_series_free(&phase[k]);
        return r;
}

static void help(void) {
        printf("Usage: floor [OPTIONS]\n\n"
               "Times the raw sysfs work of one device-dax allocation and release.\n\n"
               "  -h --help              Show this help\n"
               "  -r --region R          Region id (default 1); must be empty\n"
               "  -n --iterations N      Measured cycles per size (default 50)\n"
               "  -w --warmup N          Unmeasured cycles first (default 2)\n"
               "  -s --sizes LIST        Sizes, comma-separated (default 2M,1G)\n"
               "  -H --held K            Keep K devices of 2 MiB alive while measuring (default 0)\n"
               "  -P --pause-ms MS       Sleep before each allocate and each release (default 0)\n"
               "  -z --zero[=HOW]        Zero the device through a mapping before each release;\n"
               "                         HOW: memset (default, 1 thread) or scrub (daxbrokerd's\n"
               "                         zeroing engine, its default method and threads)\n"
               "     --daxctl[=PATH]     Time daxctl create-device / disable-device +\n"
               "                         destroy-device instead of the raw sysfs writes\n"
               "     --reclaim           Time taking a range back from the host (kmem, blocks\n"
               "                         online) into a new open device_dax device (default\n"
               "                         size 1G); with --zero also zero it; --pause-ms sleeps\n"
               "                         before the offlining (a cold start); with\n"
               "                         --daxctl through daxctl offline-memory,\n"
               "                         reconfigure-device, destroy-device --force,\n"
               "                         create-device\n"
               "     --at ADDR           --reclaim: physical start (default: the region's top)\n");
}

static int parse_args(int argc, char **argv, Options *o) {
        enum { ARG_DAXCTL = 0x100, ARG_RECLAIM, ARG_AT };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "region", required_argument, NULL, 'r' },
                { "iterations", required_argument, NULL, 'n' },
                { "warmup", required_argument, NULL, 'w' },
                { "sizes", required_argument, NULL, 's' },
                { "held", required_argument, NULL, 'H' },
                { "pause-ms", required_argument, NULL, 'P' },
                { "zero", optional_argument, NULL, 'z' },
                { "daxctl", optional_argument, NULL, ARG_DAXCTL },
                { "reclaim", no_argument, NULL, ARG_RECLAIM },
                { "at", required_argument, NULL, ARG_AT },
                {},
        };
        int c, r = 0;

        while ((c = getopt_long(argc, argv, "hr:n:w:s:H:P:z", options, NULL)) >= 0) {
                switch (c) {
                case 'h':
                        help();
                        exit(EXIT_SUCCESS);
                case 'r':
                        r = bench_parse_unsigned(optarg, &o->region);
                        break;
                case 'n':
                        r = bench_parse_unsigned(optarg, &o->iterations);
                        if (r == 0 && o->iterations == 0)
                                r = -EINVAL;
                        break;
                case 'w':
                        r = bench_parse_unsigned(optarg, &o->warmup);
                        break;
                case 's':
                        r = bench_parse_sizes(optarg, o->sizes, SIZES_MAX, &o->n_sizes);
                        o->sizes_set = true;
                        break;
                case 'H':
                        r = bench_parse_unsigned(optarg, &o->held);
                        break;
                case 'P':
                        r = bench_parse_unsigned(optarg, &o->pause_ms);
                        break;
                case 'z':
                        o->zero = true;
                        if (optarg && strcmp(optarg, "scrub") == 0)
                                o->zero_scrub = true;
                        else if (optarg && strcmp(optarg, "memset") != 0)
                                r = -EINVAL;
                        break;
                case ARG_DAXCTL:
                        o->daxctl = optarg ? optarg : "daxctl";
                        break;
                case ARG_RECLAIM:
                        o->reclaim = true;
                        break;
                case ARG_AT:
                        r = bench_parse_size(optarg, &o->at);
                        break;
                default:
                        return -EINVAL;
                }
                if (r < 0) {
                        fprintf(stderr, "floor: invalid value '%s'\n", optarg);
                        return r;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "floor: unexpected argument '%s'\n", argv[optind]);
                return -EINVAL;
        }
        if (o->reclaim && o->held > 0) {
                fprintf(stderr, "floor: --reclaim does not take --held\n");
                return -EINVAL;
        }
        if (o->reclaim && o->daxctl && (o->zero || o->pause_ms > 0)) {
                fprintf(stderr, "floor: --reclaim --daxctl takes neither --zero nor --pause-ms\n");
                return -EINVAL;
        }
        if (o->at && !o->reclaim) {
                fprintf(stderr, "floor: --at goes with --reclaim\n");
                return -EINVAL;
        }
        if (o->reclaim && !o->sizes_set) {
                o->sizes[0] = BENCH_GiB;
                o->n_sizes = 1;
        }
        return 0;
}

int main(int argc, char **argv) {
        Floor f = {
                .o = {
                        .region = 1,
                        .iterations = 50,
                        .warmup = 2,
                        .sizes = { 2 * BENCH_MiB, BENCH_GiB },
                        .n_sizes = 2,
                },
        };
        const char *tool;
        Device *held = NULL;
        BenchSeries fill = {}, drain = {};
        unsigned n_held = 0;
        int r = 0;

        if (parse_args(argc, argv, &f.o) < 0)
                return 2;
        tool = f.o.daxctl ? "daxctl" : "floor";
        if (floor_open(&f) < 0)
                return 1;
        if (f.o.zero_scrub) {
                r = scrubber_new(0, &f.scrubber);
                if (r < 0) {
                        fprintf(stderr, "floor: scrubber_new: %s\n", strerror(-r));
                        return 1;
                }
                fprintf(stderr, "floor: zeroing with %s on %u threads\n", scrubber_method(f.scrubber),
                        scrubber_threads(f.scrubber));
        }

        if (f.o.reclaim) {
                uint64_t block_size = 0;

                r = memory_block_size(&block_size);
                for (size_t i = 0; r >= 0 && i < f.o.n_sizes; i++)
                        r = measure_reclaim(&f, f.o.sizes[i], block_size);
                if (f.scrubber)
                        scrubber_free(f.scrubber);
                return r < 0 ? 1 : 0;
        }

        for (size_t i = 0; i < f.o.n_sizes; i++) {
                char a[32], b[32];

                if (f.o.sizes[i] % (2 * BENCH_MiB) != 0 ||
                    (uint64_t) f.o.held * 2 * BENCH_MiB + f.o.sizes[i] > f.size) {
                        fprintf(stderr, "floor: %s with %u held devices of 2 MiB does not fit region %u (%s)\n",
                                bench_size_str(f.o.sizes[i], a, sizeof(a)), f.o.held, f.o.region,
                                bench_size_str(f.size, b, sizeof(b)));
                        return 2;
                }
        }

        held = calloc(f.o.held ?: 1, sizeof(Device));
        if (!held)
                return 1;

        /* The held devices take the start of the region; the measured one
         * goes right after them (first fit, as the daemon places it). */
        for (; n_held < f.o.held; n_held++) {
                double t[_ALLOC_MAX], t0 = bench_now_us();

                r = raw_allocate(&f, f.start + (uint64_t) n_held * 2 * BENCH_MiB, 2 * BENCH_MiB, &held[n_held], t);
                if (r < 0) {
                        release_quietly(&f, &held[n_held]);
                        goto finish;
                }
                bench_series_add(&fill, bench_now_us() - t0);
        }
        if (f.o.held > 0)
                bench_print(tool, 2 * BENCH_MiB, f.o.held, "fill", &fill);

        for (size_t i = 0; i < f.o.n_sizes; i++) {
                r = measure(&f, f.o.sizes[i], tool);
                if (r < 0)
                        break;
        }

finish:
        while (n_held > 0) {
                double t[_RELEASE_MAX], t0 = bench_now_us();
                int k;

                n_held--;
                k = raw_release(&f, &held[n_held], false, t);
                if (k < 0 && r >= 0)
                        r = k;
                bench_series_add(&drain, bench_now_us() - t0);
        }
        if (f.o.held > 0)
                bench_print(tool, 2 * BENCH_MiB, f.o.held, "drain", &drain);
        bench_series_free(&fill);
        bench_series_free(&drain);
        free(held);
        if (f.scrubber)
                scrubber_free(f.scrubber);
        return r < 0 ? 1 : 0;
}
