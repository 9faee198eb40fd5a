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
 * which daxbrokerd does (in the background) before it reuses memory.
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
        uint64_t sizes[SIZES_MAX];
        size_t n_sizes;
        const char *daxctl; /* NULL: raw sysfs */
} Options;

typedef struct Floor {
        Options o;
        char parent[PATH_MAX]; /* the region's parent device: holds daxR.N */
        char region[PATH_MAX]; /* its dax_region/ */
        const char *driver;    /* /sys/bus/dax/drivers/device_dax */
        uint64_t start;
        uint64_t size;
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

static int raw_release(Floor *f, Device *d, double t[_RELEASE_MAX]) {
        char path[PATH_MAX];
        double t0, t1;
        int r;

        /* What daxbrokerd does before it gives memory back: zero it
         * through the device. */
        t0 = bench_now_us();
        if (f->o.zero && d->fd >= 0) {
                void *p = mmap(NULL, d->size, PROT_READ | PROT_WRITE, MAP_SHARED, d->fd, 0);

                if (p == MAP_FAILED)
                        return fail(-errno, "mapping", d->name);
                memset(p, 0, d->size);
                munmap(p, d->size);
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
                (void) raw_release(f, d, t);
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
                 f->o.zero ? "-zero" : "");

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
                        r = raw_release(f, &d, rt);
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
               "  -z --zero              Zero the device through a mapping before each release\n"
               "     --daxctl[=PATH]     Time daxctl create-device / disable-device +\n"
               "                         destroy-device instead of the raw sysfs writes\n");
}

static int parse_args(int argc, char **argv, Options *o) {
        enum { ARG_DAXCTL = 0x100 };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "region", required_argument, NULL, 'r' },
                { "iterations", required_argument, NULL, 'n' },
                { "warmup", required_argument, NULL, 'w' },
                { "sizes", required_argument, NULL, 's' },
                { "held", required_argument, NULL, 'H' },
                { "pause-ms", required_argument, NULL, 'P' },
                { "zero", no_argument, NULL, 'z' },
                { "daxctl", optional_argument, NULL, ARG_DAXCTL },
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
                        break;
                case 'H':
                        r = bench_parse_unsigned(optarg, &o->held);
                        break;
                case 'P':
                        r = bench_parse_unsigned(optarg, &o->pause_ms);
                        break;
                case 'z':
                        o->zero = true;
                        break;
                case ARG_DAXCTL:
                        o->daxctl = optarg ? optarg : "daxctl";
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
                k = raw_release(&f, &held[n_held], t);
                if (k < 0 && r >= 0)
                        r = k;
                bench_series_add(&drain, bench_now_us() - t0);
        }
        if (f.o.held > 0)
                bench_print(tool, 2 * BENCH_MiB, f.o.held, "drain", &drain);
        bench_series_free(&fill);
        bench_series_free(&drain);
        free(held);
        return r < 0 ? 1 : 0;
}
