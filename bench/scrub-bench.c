/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * scrub-bench: zeroing throughput of the scrubber (src/scrub.c), with each
 * method, against a single-thread memset and a memset on as many threads as
 * the scrubber has, all over the same mapping in the same run.
 *
 * The mapping is a 1 GiB MAP_SHARED|MAP_ANONYMOUS one by default, or a file
 * or device-dax node (/dev/daxR.N) given as the argument, mapped MAP_SHARED
 * with a length that is a multiple of 2 MiB. ITS CONTENTS ARE DESTROYED.
 *
 * Every page is faulted in before anything is timed, and the whole mapping is
 * written with a pattern before each timed run, so every run starts from the
 * same dirty memory, as a released allocation does. Repetitions go round the
 * variants in turn so that drift (other guests, frequency) spreads over all of
 * them. Nothing here is a test: the numbers depend on the machine.
 */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "bench-util.h"
#include "scrub.h"

#define PATTERN 0xa5
#define PAGE 4096U
#define MAP_ALIGN (2 * BENCH_MiB)

static const char *const method_names[] = { "avx2-nt", "sse2-nt", "rep-stosb", "memset" };

typedef struct Options {
        const char *path;
        uint64_t size; /* 0: the whole file or device, or 1 GiB anonymous */
        unsigned threads;
        unsigned reps;
        unsigned warmup;
} Options;

typedef struct Variant {
        char name[32];
        Scrubber *scrubber; /* NULL: plain memset on `threads` threads */
        unsigned threads;
        bool is_default;
        BenchSeries us;
} Variant;

#define VARIANTS_MAX (2 + sizeof(method_names) / sizeof(method_names[0]))

typedef struct Slice {
        uint8_t *p;
        size_t len;
        int c;
} Slice;

static void *slice_memset(void *p) {
        Slice *s = p;

        memset(s->p, s->c, s->len);
        return NULL;
}

/* memset split in n contiguous slices, one thread each. The threads are
 * created for every call: tens of microseconds against the tens of
 * milliseconds a gigabyte takes. */
static int memset_threads(uint8_t *p, size_t len, int c, unsigned n) {
        pthread_t t[SCRUB_THREADS_MAX];
        Slice s[SCRUB_THREADS_MAX];
        size_t step = len / n / PAGE * PAGE;
        unsigned started;
        int r = 0;

        if (n == 1) {
                memset(p, c, len);
                return 0;
        }
        for (started = 0; started < n; started++) {
                s[started] = (Slice) {
                        .p = p + started * step,
                        .len = started == n - 1 ? len - started * step : step,
                        .c = c,
                };
                r = -pthread_create(&t[started], NULL, slice_memset, &s[started]);
                if (r < 0)
                        break;
        }
        for (unsigned i = 0; i < started; i++)
                pthread_join(t[i], NULL);
        return r;
}

/* The size of a device-dax node, from its sysfs device directory. */
static int chardev_size(dev_t dev, uint64_t *ret) {
        char path[64];
        unsigned long long v;
        FILE *f;
        int r;

        snprintf(path, sizeof(path), "/sys/dev/char/%u:%u/size", major(dev), minor(dev));
        f = fopen(path, "re");
        if (!f)
                return -errno;
        r = fscanf(f, "%llu", &v) == 1 ? 0 : -EIO;
        fclose(f);
        if (r == 0)
                *ret = v;
        return r;
}

/* Maps the target and says why not. */
static int map_target(const Options *o, uint8_t **ret, uint64_t *ret_len) {
        uint64_t avail = 0, len;
        struct stat st;
        void *p;
        int fd, r;

        if (!o->path) {
                len = o->size ? o->size : BENCH_GiB;
                p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
                if (p == MAP_FAILED) {
                        r = -errno;
                        fprintf(stderr, "scrub-bench: mmap of anonymous memory: %m\n");
                        return r;
                }
                *ret = p;
                *ret_len = len;
                return 0;
        }

        fd = open(o->path, O_RDWR | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0) {
                r = -errno;
                fprintf(stderr, "scrub-bench: %s: %m\n", o->path);
                goto out;
        }
        if (S_ISCHR(st.st_mode))
                r = chardev_size(st.st_rdev, &avail);
        else if (S_ISREG(st.st_mode)) {
                avail = (uint64_t) st.st_size;
                r = 0;
        } else
                r = -ENODEV;
        if (r < 0) {
                fprintf(stderr, "scrub-bench: %s is neither a regular file nor a device-dax node\n", o->path);
                goto out;
        }
        /* device-dax only maps whole 2 MiB pages (more if its align is
         * larger, then mmap() says EINVAL). */
        if (o->size % MAP_ALIGN != 0 || o->size > avail) {
                fprintf(stderr, "scrub-bench: --size must be a multiple of 2 MiB and fit %s (%" PRIu64 " bytes)\n",
                        o->path, avail);
                r = -EINVAL;
                goto out;
        }
        len = o->size ? o->size : avail / MAP_ALIGN * MAP_ALIGN;
        if (len == 0) {
                fprintf(stderr, "scrub-bench: %s is smaller than 2 MiB\n", o->path);
                r = -EINVAL;
                goto out;
        }
        p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
                r = -errno;
                fprintf(stderr, "scrub-bench: mmap of %s: %m\n", o->path);
                goto out;
        }
        *ret = p;
        *ret_len = len;
        r = 0;
out:
        if (fd >= 0)
                close(fd);
        return r;
}

/* One byte per page: catches a method that skipped work, cheaply. */
static bool looks_zero(const uint8_t *p, size_t len) {
        for (size_t i = 0; i < len; i += PAGE)
                if (p[i] != 0 || p[i + PAGE - 1] != 0)
                        return false;
        return true;
}

static double gib_per_s(uint64_t len, double us) {
        return us > 0 ? (double) len / BENCH_GiB / (us / 1e6) : 0;
}

static double series_min(const BenchSeries *s) {
        double m = s->v[0];

        for (size_t i = 1; i < s->n; i++)
                m = s->v[i] < m ? s->v[i] : m;
        return m;
}

static void help(void) {
        printf("Usage: scrub-bench [OPTIONS] [PATH]\n\n"
               "Zeroing throughput of the scrubber against memset. PATH is a file or a\n"
               "device-dax node (/dev/daxR.N); its contents are destroyed. Without PATH, a\n"
               "MAP_SHARED|MAP_ANONYMOUS mapping is used.\n\n"
               "  -h --help              Show this help\n"
               "  -s --size SIZE         Bytes to map, a multiple of 2 MiB for PATH\n"
               "                         (default: all of PATH, or 1G anonymous)\n"
               "  -t --threads N         Scrubber and multi-thread memset threads\n"
               "                         (default 0: the scrubber's default)\n"
               "  -n --reps N            Measured runs per variant (default 7)\n"
               "  -w --warmup N          Unmeasured runs per variant first (default 1)\n");
}

static int parse_args(int argc, char **argv, Options *o) {
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "size", required_argument, NULL, 's' },
                { "threads", required_argument, NULL, 't' },
                { "reps", required_argument, NULL, 'n' },
                { "warmup", required_argument, NULL, 'w' },
                {},
        };
        int c, r = 0;

        while ((c = getopt_long(argc, argv, "hs:t:n:w:", options, NULL)) >= 0) {
                switch (c) {
                case 'h':
                        help();
                        exit(EXIT_SUCCESS);
                case 's':
                        r = bench_parse_size(optarg, &o->size);
                        if (r == 0 && o->size % PAGE != 0)
                                r = -EINVAL;
                        break;
                case 't':
                        r = bench_parse_unsigned(optarg, &o->threads);
                        if (r == 0 && o->threads > SCRUB_THREADS_MAX)
                                r = -EINVAL;
                        break;
                case 'n':
                        r = bench_parse_unsigned(optarg, &o->reps);
                        if (r == 0 && o->reps == 0)
                                r = -EINVAL;
                        break;
                case 'w':
                        r = bench_parse_unsigned(optarg, &o->warmup);
                        break;
                default:
                        return -EINVAL;
                }
                if (r < 0) {
                        fprintf(stderr, "scrub-bench: invalid value '%s'\n", optarg);
                        return r;
                }
        }
        if (optind + 1 < argc) {
                fprintf(stderr, "scrub-bench: unexpected argument '%s'\n", argv[optind + 1]);
                return -EINVAL;
        }
        o->path = argv[optind];
        return 0;
}

/* Adds a variant for every other method this CPU has, with as many
 * threads as the default scrubber. */
static int add_other_methods(const Scrubber *def, Variant *v, size_t *n) {
        const char *saved = getenv("DAXBROKER_SCRUB_METHOD");
        int r = 0;

        for (size_t i = 0; i < sizeof(method_names) / sizeof(method_names[0]); i++) {
                Scrubber *s;

                if (strcmp(method_names[i], scrubber_method(def)) == 0)
                        continue;
                setenv("DAXBROKER_SCRUB_METHOD", method_names[i], 1);
                r = scrubber_new(scrubber_threads(def), &s);
                if (r == -EOPNOTSUPP) {
                        r = 0;
                        continue;
                }
                if (r < 0) {
                        fprintf(stderr, "scrub-bench: scrubber_new(%s): %s\n", method_names[i], strerror(-r));
                        break;
                }
                v[*n] = (Variant) { .scrubber = s, .threads = scrubber_threads(s) };
                snprintf(v[*n].name, sizeof(v[*n].name), "scrub-%s", method_names[i]);
                (*n)++;
        }
        if (saved)
                setenv("DAXBROKER_SCRUB_METHOD", saved, 1);
        else
                unsetenv("DAXBROKER_SCRUB_METHOD");
        return r;
}

int main(int argc, char **argv) {
        Options o = { .reps = 7, .warmup = 1 };
        Variant v[VARIANTS_MAX] = {};
        double best_memset = 0, median_memset = 0;
        size_t n = 0, n_memset;
        uint64_t len = 0;
        uint8_t *p = NULL;
        unsigned threads;
        Scrubber *def;
        char sz[32];
        int r;

        if (parse_args(argc, argv, &o) < 0)
                return 2;

        if (map_target(&o, &p, &len) < 0)
                return 1;

        /* $DAXBROKER_SCRUB_METHOD, if set, names the default. */
        r = scrubber_new(o.threads, &def);
        if (r < 0) {
                fprintf(stderr, "scrub-bench: scrubber_new: %s\n", strerror(-r));
                return 1;
        }
        threads = scrubber_threads(def);

        v[n++] = (Variant) { .name = "memset-1t", .threads = 1 };
        if (threads > 1) {
                v[n] = (Variant) { .threads = threads };
                snprintf(v[n].name, sizeof(v[n].name), "memset-%ut", threads);
                n++;
        }
        n_memset = n;
        v[n] = (Variant) { .scrubber = def, .threads = threads, .is_default = true };
        snprintf(v[n].name, sizeof(v[n].name), "scrub-%s", scrubber_method(def));
        n++;
        if (add_other_methods(def, v, &n) < 0)
                return 1;

        printf("scrub-bench: %s of %s, %u thread%s, %u runs each after %u warm-up, default method %s\n",
               bench_size_str(len, sz, sizeof(sz)), o.path ?: "MAP_SHARED|MAP_ANONYMOUS memory", threads,
               threads == 1 ? "" : "s", o.reps, o.warmup, scrubber_method(def));
        fflush(stdout);

        /* Page faults (and, for shmem, the allocation of every page) are
         * not what is measured. */
        if (memset_threads(p, len, PATTERN, threads) < 0)
                return 1;

        for (unsigned rep = 0; rep < o.warmup + o.reps; rep++)
                for (size_t i = 0; i < n; i++) {
                        double t;

                        if (memset_threads(p, len, PATTERN, threads) < 0)
                                return 1;
                        t = bench_now_us();
                        if (v[i].scrubber)
                                r = scrubber_zero(v[i].scrubber, p, len);
                        else
                                r = memset_threads(p, len, 0, v[i].threads);
                        t = bench_now_us() - t;
                        if (r < 0) {
                                fprintf(stderr, "scrub-bench: %s: %s\n", v[i].name, strerror(-r));
                                return 1;
                        }
                        if (!looks_zero(p, len)) {
                                fprintf(stderr, "scrub-bench: %s left non-zero bytes\n", v[i].name);
                                return 1;
                        }
                        if (rep >= o.warmup)
                                bench_series_add(&v[i].us, t);
                }

        for (size_t i = 0; i < n; i++)
                bench_print("scrub-bench", len, 0, v[i].name, &v[i].us);

        printf("\n%-20s %7s %12s %12s\n", "variant", "threads", "best GiB/s", "median GiB/s");
        for (size_t i = 0; i < n; i++) {
                double best = gib_per_s(len, series_min(&v[i].us));
                double median = gib_per_s(len, bench_series_median(&v[i].us));

                printf("%-20s %7u %12.2f %12.2f%s\n", v[i].name, v[i].threads, best, median,
                       v[i].is_default ? "  (default)" : "");
                if (i < n_memset) {
                        best_memset = best > best_memset ? best : best_memset;
                        median_memset = median > median_memset ? median : median_memset;
                }
        }

        /* The faster memset is taken per statistic, so the ratio is never
         * flattered by comparing against the slower one. */
        printf("\nratio scrubber / faster memset (target >= 0.90):\n");
        for (size_t i = n_memset; i < n; i++)
                printf("%-20s best %.2f  median %.2f%s\n", v[i].name,
                       gib_per_s(len, series_min(&v[i].us)) / best_memset,
                       gib_per_s(len, bench_series_median(&v[i].us)) / median_memset,
                       v[i].is_default ? "  (default)" : "");

        for (size_t i = 0; i < n; i++) {
                scrubber_free(v[i].scrubber);
                bench_series_free(&v[i].us);
        }
        munmap(p, len);
        return 0;
}
