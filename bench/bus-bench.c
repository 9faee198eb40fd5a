/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * bus-bench: times daxbrokerd as a client sees it. Allocate is timed from
 * sending the call until the reply is read and its fd is in hand, Release
 * from sending the call until its reply. The daemon answers Release before
 * it has zeroed the memory and destroyed the device; "release.complete"
 * times the call until the pool holds no dirty memory again, and every
 * cycle waits for that, so each Allocate finds the pool quiet. With
 * --held K, K allocations of 2 MiB are made first and kept while
 * measuring, then released.
 *
 * A Peer.Ping of the daemon is timed too: the cost of one round trip
 * through the bus, which every method call pays.
 *
 * --reclaim times instead an Allocate that has to take its memory back
 * from the host, ReclaimFromHost alone and a clean Allocate (see
 * measure_reclaim()).
 *
 * --warm-size BYTES: the pool keeps a warm set of that many bytes (its
 * WarmSize); before each Allocate the bench waits until it is refilled and
 * the daemon is quiet, so that Allocates of warm sizes are hand-overs and
 * the others find no refill on the region's lane. --burst N then times N
 * Allocates sent together (VMs starting together), "allocate.burst" being
 * the time from the first call until the last reply, and the daemon's
 * resident memory is printed after the held allocations are made.
 */

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <systemd/sd-bus.h>

#include "bench-util.h"

#define SIZES_MAX 8
#define CALL_TIMEOUT_USEC (600ULL * 1000 * 1000)

#define BROKER_NAME "org.daxbroker.Broker1"
#define BROKER_PATH "/org/daxbroker/Broker1"
#define BROKER_MANAGER "org.daxbroker.Broker1.Manager"
#define BROKER_POOL "org.daxbroker.Broker1.Pool"
#define POOL_PREFIX BROKER_PATH "/pool"

/* Release answers before the memory is reusable: the daemon zeroes it
 * through the device and destroys the device in the background, and the
 * pool counts it as dirty meanwhile. */
#define CLEAN_POLL_MS 1
#define CLEAN_TIMEOUT_US (1800.0 * 1000 * 1000)

typedef struct Options {
        const char *address;
        char *pool_path;
        const char *pool;
        const char *owner;
        unsigned iterations;
        unsigned warmup;
        unsigned held;
        unsigned pause_ms;
        uint64_t sizes[SIZES_MAX];
        size_t n_sizes;
        bool sizes_set;
        bool reclaim;
        uint64_t warm_size;
        unsigned burst;
} Options;

static int allocate(sd_bus *bus, const Options *o, const char *owner, uint64_t size, char **ret_path,
                    double *ret_us) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *m = NULL, *reply = NULL;
        const char *path;
        double t0;
        int fd, r;

        r = sd_bus_message_new_method_call(bus, &m, BROKER_NAME, BROKER_PATH, BROKER_MANAGER, "Allocate");
        if (r >= 0)
                r = sd_bus_message_append(m, "st", owner, size);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r >= 0 && o->pool)
                r = sd_bus_message_append(m, "{sv}", "pool", "s", o->pool);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r < 0) {
                fprintf(stderr, "bus-bench: cannot build Allocate: %s\n", strerror(-r));
                goto finish;
        }

        t0 = bench_now_us();
        r = sd_bus_call(bus, m, CALL_TIMEOUT_USEC, &error, &reply);
        if (r >= 0)
                r = sd_bus_message_read(reply, "oh", &path, &fd);
        *ret_us = bench_now_us() - t0;
        if (r < 0) {
                fprintf(stderr, "bus-bench: Allocate(%s, %" PRIu64 "): %s\n", owner, size,
                        error.message ?: strerror(-r));
                goto finish;
        }
        *ret_path = strdup(path);
        if (!*ret_path)
                r = -ENOMEM;
        /* The fd goes with the reply: closed before Release, as a VM
         * manager would have closed it by then. */
finish:
        sd_bus_message_unref(reply);
        sd_bus_message_unref(m);
        sd_bus_error_free(&error);
        return r;
}

static int release(sd_bus *bus, const char *path, double *ret_us) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *m = NULL, *reply = NULL;
        double t0;
        int r;

        r = sd_bus_message_new_method_call(bus, &m, BROKER_NAME, BROKER_PATH, BROKER_MANAGER, "Release");
        if (r >= 0)
                r = sd_bus_message_append(m, "o", path);
        if (r < 0) {
                fprintf(stderr, "bus-bench: cannot build Release: %s\n", strerror(-r));
                goto finish;
        }
        t0 = bench_now_us();
        r = sd_bus_call(bus, m, CALL_TIMEOUT_USEC, &error, &reply);
        *ret_us = bench_now_us() - t0;
        if (r < 0)
                fprintf(stderr, "bus-bench: Release(%s): %s\n", path, error.message ?: strerror(-r));
finish:
        sd_bus_message_unref(reply);
        sd_bus_message_unref(m);
        sd_bus_error_free(&error);
        return r;
}

/* Waits until the pool has no dirty memory: every released allocation has
 * been zeroed and its device destroyed. */
static int pool_wait_clean(sd_bus *bus, const Options *o) {
        double deadline = bench_now_us() + CLEAN_TIMEOUT_US;

        for (;;) {
                sd_bus_error error = SD_BUS_ERROR_NULL;
                uint64_t dirty;
                int r;

                r = sd_bus_get_property_trivial(bus, BROKER_NAME, o->pool_path, BROKER_POOL, "DirtySize", &error,
                                                't', &dirty);
                if (r < 0) {
                        fprintf(stderr, "bus-bench: reading DirtySize of %s: %s\n", o->pool_path,
                                error.message ?: strerror(-r));
                        sd_bus_error_free(&error);
                        return r;
                }
                if (dirty == 0)
                        return 0;
                if (bench_now_us() > deadline) {
                        fprintf(stderr, "bus-bench: %s still has %" PRIu64 " dirty bytes\n", o->pool_path, dirty);
                        return -ETIMEDOUT;
                }
                bench_pause_ms(CLEAN_POLL_MS);
        }
}

/* --pool NAME, or the only pool there is. */
static int pool_resolve(sd_bus *bus, Options *o) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        const char *path = NULL;
        unsigned n = 0;
        int r;

        if (o->pool)
                return sd_bus_path_encode(POOL_PREFIX, o->pool, &o->pool_path);

        r = sd_bus_call_method(bus, BROKER_NAME, BROKER_PATH, BROKER_MANAGER, "ListPools", &error, &reply, "");
        if (r < 0) {
                fprintf(stderr, "bus-bench: ListPools: %s\n", error.message ?: strerror(-r));
                goto finish;
        }
        r = sd_bus_message_enter_container(reply, 'a', "(osuitttttttttt)");
        while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'r', "osuitttttttttt")) > 0) {
                r = sd_bus_message_read(reply, "o", &path);
                if (r >= 0)
                        r = sd_bus_message_skip(reply, "suitttttttttt");
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
                n++;
                if (n == 1 && path) {
                        o->pool_path = strdup(path);
                        if (!o->pool_path)
                                r = -ENOMEM;
                }
        }
        if (r < 0) {
                fprintf(stderr, "bus-bench: cannot read ListPools: %s\n", strerror(-r));
                goto finish;
        }
        if (n != 1) {
                fprintf(stderr, "bus-bench: the daemon has %u pools; choose one with --pool\n", n);
                r = -EINVAL;
        }
finish:
        sd_bus_message_unref(reply);
        sd_bus_error_free(&error);
        return r < 0 ? r : 0;
}

static int ping(sd_bus *bus, double *ret_us) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        double t0 = bench_now_us();
        int r;

        r = sd_bus_call_method(bus, BROKER_NAME, BROKER_PATH, "org.freedesktop.DBus.Peer", "Ping", &error, NULL,
                               "");
        *ret_us = bench_now_us() - t0;
        if (r < 0)
                fprintf(stderr, "bus-bench: Ping: %s\n", error.message ?: strerror(-r));
        sd_bus_error_free(&error);
        return r;
}

static int pool_get(sd_bus *bus, const Options *o, const char *property, uint64_t *ret) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r = sd_bus_get_property_trivial(bus, BROKER_NAME, o->pool_path, BROKER_POOL, property, &error, 't',
                                            ret);

        sd_bus_error_free(&error);
        return r;
}

/* The warm set is full again, and its last device made: WarmSize counts
 * one being made, so the daemon is given a moment (a bench, not a test). */
static int pool_wait_warm(sd_bus *bus, const Options *o) {
        uint64_t warm = 0;

        if (!o->warm_size)
                return 0;
        for (unsigned i = 0; i < 60000; i++) {
                int r = pool_get(bus, o, "WarmSize", &warm);

                if (r < 0) {
                        fprintf(stderr, "bus-bench: reading WarmSize of %s: %s\n", o->pool_path, strerror(-r));
                        return r;
                }
                if (warm == o->warm_size) {
                        bench_pause_ms(300);
                        return 0;
                }
                bench_pause_ms(1);
        }
        fprintf(stderr, "bus-bench: WarmSize of %s is %" PRIu64 ", not %" PRIu64 "\n", o->pool_path, warm,
                o->warm_size);
        return -ETIMEDOUT;
}

/* The daemon's resident memory, from /proc (the bench runs on its host). */
static void print_daemon_rss(sd_bus *bus, unsigned held) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        char path[64], line[256];
        uint32_t pid = 0;
        FILE *f;

        if (sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                               "GetConnectionUnixProcessID", &error, &reply, "s", BROKER_NAME) < 0 ||
            sd_bus_message_read(reply, "u", &pid) < 0) {
                sd_bus_error_free(&error);
                sd_bus_message_unref(reply);
                return;
        }
        sd_bus_message_unref(reply);
        snprintf(path, sizeof path, "/proc/%u/status", pid);
        f = fopen(path, "re");
        if (!f)
                return;
        while (fgets(line, sizeof line, f))
                if (strncmp(line, "VmRSS:", 6) == 0 || strncmp(line, "RssAnon:", 8) == 0)
                        printf("# daemon %u held: %s", held, line);
        fclose(f);
}

/* N Allocates of size sent together; the time until the last reply. */
static int measure_burst(sd_bus *bus, const Options *o, uint64_t size) {
        BenchSeries burst = {};
        int r = 0;

        for (unsigned i = 0; i < o->warmup + o->iterations && r >= 0; i++) {
                sd_bus_message **replies = calloc(o->burst, sizeof(sd_bus_message *));
                uint64_t *cookies = calloc(o->burst, sizeof(uint64_t));
                unsigned got = 0;
                double t0;

                if (!replies || !cookies) {
                        free(replies);
                        free(cookies);
                        return -ENOMEM;
                }
                r = pool_wait_clean(bus, o);
                if (r >= 0)
                        r = pool_wait_warm(bus, o);
                t0 = bench_now_us();
                for (unsigned k = 0; k < o->burst && r >= 0; k++) {
                        sd_bus_message *m = NULL;

                        r = sd_bus_message_new_method_call(bus, &m, BROKER_NAME, BROKER_PATH, BROKER_MANAGER,
                                                           "Allocate");
                        if (r >= 0)
                                r = sd_bus_message_append(m, "sta{sv}", "bench-burst", size, 1, "pool", "s", o->pool);
                        if (r >= 0)
                                r = sd_bus_send(bus, m, &cookies[k]);
                        sd_bus_message_unref(m);
                }
                /* Replies in any order: read until each cookie has one. */
                while (r >= 0 && got < o->burst) {
                        sd_bus_message *m = NULL;
                        uint64_t c;

                        r = sd_bus_process(bus, &m);
                        if (r < 0)
                                break;
                        if (!m) {
                                r = sd_bus_wait(bus, CALL_TIMEOUT_USEC);
                                continue;
                        }
                        if (sd_bus_message_get_reply_cookie(m, &c) >= 0)
                                for (unsigned k = 0; k < o->burst; k++)
                                        if (cookies[k] == c && !replies[k]) {
                                                replies[k] = m;
                                                m = NULL;
                                                got++;
                                        }
                        sd_bus_message_unref(m);
                }
                if (r >= 0 && i >= o->warmup)
                        bench_series_add(&burst, bench_now_us() - t0);
                for (unsigned k = 0; k < o->burst; k++) {
                        const char *path;
                        double t;

                        if (!replies[k])
                                continue;
                        if (sd_bus_message_is_method_error(replies[k], NULL)) {
                                fprintf(stderr, "bus-bench: burst Allocate: %s\n",
                                        sd_bus_message_get_error(replies[k])->message);
                                r = -EIO;
                        } else if (sd_bus_message_read(replies[k], "o", &path) >= 0)
                                (void) release(bus, path, &t);
                        sd_bus_message_unref(replies[k]);
                }
                free(replies);
                free(cookies);
        }
        if (r >= 0) {
                char op[64];

                snprintf(op, sizeof op, "allocate.burst%u", o->burst);
                bench_print("daemon", size, o->held, op, &burst);
        }
        bench_series_free(&burst);
        return r;
}

/* Nothing in transit: every byte free or allocated (no scrub device,
 * no device being torn down) and nothing dirty. */
/* The pool's size, free, allocated and dirty bytes. */
static int pool_sizes(sd_bus *bus, const Options *o, uint64_t *size, uint64_t *free_, uint64_t *alloc,
                      uint64_t *dirty) {
        int r = pool_get(bus, o, "Size", size);

        if (r >= 0)
                r = pool_get(bus, o, "FreeSize", free_);
        if (r >= 0)
                r = pool_get(bus, o, "AllocatedSize", alloc);
        if (r >= 0)
                r = pool_get(bus, o, "DirtySize", dirty);
        return r;
}

static int pool_wait_settled(sd_bus *bus, const Options *o) {
        uint64_t size = 0, free_ = 0, alloc = 0, dirty = 0;

        for (unsigned i = 0; i < 600000; i++) {
                int r = pool_sizes(bus, o, &size, &free_, &alloc, &dirty);

                if (r < 0)
                        return r;
                if (free_ + alloc == size && dirty == 0)
                        return 0;
                bench_pause_ms(CLEAN_POLL_MS);
        }
        fprintf(stderr, "bus-bench: %s does not settle: size %" PRIu64 ", free %" PRIu64 ", allocated %" PRIu64
                ", dirty %" PRIu64 "\n", o->pool_path, size, free_, alloc, dirty);
        return -ETIMEDOUT;
}

/* Allocating clean memory must not wait for zeroing in progress: times a
 * 2 MiB Allocate while a scrub device is zeroing a released 1 GiB (the
 * pool then counts that chunk as neither free nor allocated). */
static int measure_during_scrub(sd_bus *bus, const Options *o) {
        BenchSeries during = {};
        unsigned missed = 0;
        int r = 0;

        for (unsigned i = 0; i < o->iterations && r >= 0; i++) {
                char *big = NULL, *small = NULL;
                uint64_t size = 0, free_ = 0, alloc = 0, dirty = 0;
                bool caught = false;
                double t;

                /* Zeroed is not enough for this 1 GiB: a scrub device
                 * holds its chunk until it is destroyed, and the warm set
                 * is refilled after a hand-over. */
                r = pool_wait_settled(bus, o);
                if (r >= 0)
                        r = pool_wait_warm(bus, o);
                if (r >= 0)
                        r = allocate(bus, o, "bench-scrub", BENCH_GiB, &big, &t);
                if (r < 0)
                        break;
                r = release(bus, big, &t);
                free(big);
                if (r < 0)
                        break;
                while (r >= 0 && !caught) {
                        r = pool_sizes(bus, o, &size, &free_, &alloc, &dirty);
                        if (r < 0 || dirty == 0)
                                break;
                        caught = free_ + alloc < size;
                }
                if (r < 0)
                        break;
                if (!caught) {
                        missed++;
                        continue;
                }
                r = allocate(bus, o, o->owner, 2 * BENCH_MiB, &small, &t);
                if (r < 0)
                        break;
                bench_series_add(&during, t);
                r = release(bus, small, &t);
                free(small);
        }
        if (missed)
                fprintf(stderr, "bus-bench: %u of %u scrubs finished before they were caught in progress\n", missed,
                        o->iterations);
        if (r >= 0)
                bench_print("daemon", 2 * BENCH_MiB, o->held, "allocate.during-scrub", &during);
        bench_series_free(&during);
        return r;
}

/* Release replies before the device is destroyed: reusable means free
 * again (FreeSize back where it was) and zeroed (DirtySize 0). */
static int pool_wait_reusable(sd_bus *bus, const Options *o, uint64_t free_before) {
        uint64_t free_ = 0;

        for (unsigned i = 0; i < 600000; i++) {
                int r = pool_get(bus, o, "FreeSize", &free_);

                if (r < 0)
                        return r;
                if (free_ >= free_before)
                        return pool_wait_clean(bus, o);
                bench_pause_ms(CLEAN_POLL_MS);
        }
        fprintf(stderr, "bus-bench: FreeSize of %s stays %" PRIu64 ", not %" PRIu64 "\n", o->pool_path, free_,
                free_before);
        return -ETIMEDOUT;
}

static int measure(sd_bus *bus, const Options *o, uint64_t size) {
        BenchSeries alloc = {}, rel = {}, complete = {};
        const char *tool = o->pause_ms > 0 ? "daemon-paused" : "daemon";
        int r = 0;

        for (unsigned i = 0; i < o->warmup + o->iterations; i++) {
                char *path = NULL;
                double a, b, c, t0;
                uint64_t free_before = 0;

                r = pool_wait_warm(bus, o);
                if (r >= 0)
                        r = pool_get(bus, o, "FreeSize", &free_before);
                if (r < 0)
                        break;
                bench_pause_ms(o->pause_ms);
                r = allocate(bus, o, o->owner, size, &path, &a);
                if (r < 0)
                        break;
                bench_pause_ms(o->pause_ms);
                t0 = bench_now_us();
                r = release(bus, path, &b);
                free(path);
                if (r < 0)
                        break;
                r = pool_wait_reusable(bus, o, free_before);
                if (r < 0)
                        break;
                c = bench_now_us() - t0;
                if (i < o->warmup)
                        continue;
                bench_series_add(&alloc, a);
                bench_series_add(&rel, b);
                bench_series_add(&complete, c);
        }
        if (r >= 0) {
                bench_print(tool, size, o->held, "allocate", &alloc);
                bench_print(tool, size, o->held, "release", &rel);
                bench_print(tool, size, o->held, "release.complete", &complete);
        }
        bench_series_free(&alloc);
        bench_series_free(&rel);
        bench_series_free(&complete);
        return r;
}

/* ReturnToHost or ReclaimFromHost of size bytes of the pool; both answer
 * with the bytes moved. */
static int host_call(sd_bus *bus, const Options *o, const char *method, uint64_t size, double *ret_us) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        uint64_t moved = 0;
        double t0;
        int r;

        t0 = bench_now_us();
        r = sd_bus_call_method(bus, BROKER_NAME, BROKER_PATH, BROKER_MANAGER, method, &error, &reply, "st", o->pool,
                               size);
        if (r >= 0)
                r = sd_bus_message_read(reply, "t", &moved);
        *ret_us = bench_now_us() - t0;
        if (r < 0)
                fprintf(stderr, "bus-bench: %s(%s, %" PRIu64 "): %s\n", method, o->pool, size,
                        error.message ?: strerror(-r));
        else if (moved != size) {
                fprintf(stderr, "bus-bench: %s(%s, %" PRIu64 ") moved %" PRIu64 " bytes\n", method, o->pool, size,
                        moved);
                r = -EIO;
        }
        sd_bus_message_unref(reply);
        sd_bus_error_free(&error);
        return r;
}

/* Waits until a size property of the pool reads want. */
static int pool_wait_value(sd_bus *bus, const Options *o, const char *property, uint64_t want) {
        double deadline = bench_now_us() + CLEAN_TIMEOUT_US;
        uint64_t v = 0;
        int r;

        for (;;) {
                r = pool_get(bus, o, property, &v);
                if (r < 0) {
                        fprintf(stderr, "bus-bench: reading %s of %s: %s\n", property, o->pool_path, strerror(-r));
                        return r;
                }
                if (v == want)
                        return 0;
                if (bench_now_us() > deadline) {
                        fprintf(stderr, "bus-bench: %s of %s is %" PRIu64 ", not %" PRIu64 "\n", property,
                                o->pool_path, v, want);
                        return -ETIMEDOUT;
                }
                bench_pause_ms(CLEAN_POLL_MS);
        }
}

/* Lends size bytes to the host and waits until all of it is host memory
 * and nothing in the pool is dirty: the quiet state each measurement
 * starts from. */
static int lend(sd_bus *bus, const Options *o, uint64_t size, double *ret_us) {
        int r = host_call(bus, o, "ReturnToHost", size, ret_us);

        if (r >= 0)
                r = pool_wait_value(bus, o, "HostSize", size);
        if (r >= 0)
                r = pool_wait_clean(bus, o);
        return r;
}

/* --reclaim: a filler allocation takes all of the pool but size bytes, so
 * the pool's free memory is exactly what ReturnToHost lends (the top of the
 * region, where the floor's --reclaim puts its range too). Then, per cycle:
 *   reclaim             Allocate(size) while those bytes are host memory:
 *                       the daemon reclaims the chunk, creates the device
 *                       and zeroes it before the reply with its fd
 *   reclaim-only        ReclaimFromHost(size) alone, until its reply
 *   reclaim-only.clean  the same, until the background scrubber has zeroed
 *                       the reclaimed memory (DirtySize 0)
 *   allocate-clean      then Allocate(size) of that clean memory
 *   return              ReturnToHost(size), until its reply (context)
 * Everything else (Release, waiting for zeroing, lending) is untimed.
 * --pause-ms sleeps before each timed call: a reclaim that comes long after
 * the return starts cold (bench_pause_ms()), whatever the bus timing. */
static int measure_reclaim(sd_bus *bus, const Options *o, uint64_t size) {
        BenchSeries reclaim = {}, only = {}, only_clean = {}, clean = {}, lent = {};
        const char *tool = "daemon-reclaim";
        char *filler = NULL;
        uint64_t pool_size = 0, host = 0;
        unsigned held = 0;
        double t;
        int r;

        r = pool_get(bus, o, "Size", &pool_size);
        if (r < 0) {
                fprintf(stderr, "bus-bench: reading Size of %s: %s\n", o->pool_path, strerror(-r));
                return r;
        }
        if (size > pool_size) {
                fprintf(stderr, "bus-bench: %" PRIu64 " bytes do not fit pool %s\n", size, o->pool);
                return -EINVAL;
        }
        if (pool_size > size) {
                r = allocate(bus, o, "bench-filler", pool_size - size, &filler, &t);
                if (r < 0)
                        return r;
                held = 1;
        }

        /* Allocate that has to reclaim. */
        for (unsigned i = 0; r >= 0 && i < o->warmup + o->iterations; i++) {
                char *path = NULL;
                double a, l, b;

                r = lend(bus, o, size, &l);
                if (r < 0)
                        break;
                bench_pause_ms(o->pause_ms);
                r = allocate(bus, o, o->owner, size, &path, &a);
                if (r < 0)
                        break;
                r = pool_get(bus, o, "HostSize", &host);
                if (r >= 0 && host != 0) {
                        fprintf(stderr, "bus-bench: HostSize is %" PRIu64 " after Allocate: nothing reclaimed?\n",
                                host);
                        r = -EIO;
                }
                if (r >= 0)
                        r = release(bus, path, &b);
                free(path);
                if (r >= 0)
                        r = pool_wait_clean(bus, o);
                if (r < 0 || i < o->warmup)
                        continue;
                bench_series_add(&reclaim, a);
                bench_series_add(&lent, l);
        }

        /* ReclaimFromHost alone, then a clean Allocate of what it brought. */
        for (unsigned i = 0; r >= 0 && i < o->warmup + o->iterations; i++) {
                char *path = NULL;
                double c, a, b, t0;

                r = lend(bus, o, size, &t);
                if (r < 0)
                        break;
                bench_pause_ms(o->pause_ms);
                t0 = bench_now_us();
                r = host_call(bus, o, "ReclaimFromHost", size, &c);
                if (r >= 0)
                        r = pool_wait_clean(bus, o);
                t = bench_now_us() - t0;
                bench_pause_ms(o->pause_ms);
                if (r >= 0)
                        r = allocate(bus, o, o->owner, size, &path, &a);
                if (r < 0)
                        break;
                r = release(bus, path, &b);
                free(path);
                if (r >= 0)
                        r = pool_wait_clean(bus, o);
                if (r < 0 || i < o->warmup)
                        continue;
                bench_series_add(&only, c);
                bench_series_add(&only_clean, t);
                bench_series_add(&clean, a);
        }

        if (r >= 0) {
                bench_print(tool, size, held, "reclaim", &reclaim);
                bench_print(tool, size, held, "reclaim-only", &only);
                bench_print(tool, size, held, "reclaim-only.clean", &only_clean);
                bench_print(tool, size, held, "allocate-clean", &clean);
                bench_print(tool, size, held, "return", &lent);
        }

        /* Leave the pool as found: no host memory, no allocation, clean.
         * After a failure some memory may still be with the host. */
        if (pool_get(bus, o, "HostSize", &host) >= 0 && host > 0) {
                int k = host_call(bus, o, "ReclaimFromHost", host, &t);

                if (k < 0 && r >= 0)
                        r = k;
        }
        if (filler) {
                int k = release(bus, filler, &t);

                if (k < 0 && r >= 0)
                        r = k;
                free(filler);
        }
        if (pool_wait_clean(bus, o) < 0 && r >= 0)
                r = -ETIMEDOUT;
        bench_series_free(&reclaim);
        bench_series_free(&only);
        bench_series_free(&only_clean);
        bench_series_free(&clean);
        bench_series_free(&lent);
        return r;
}

static void help(void) {
        printf("Usage: bus-bench [OPTIONS]\n\n"
               "Times daxbrokerd's Allocate and Release over D-Bus.\n\n"
               "  -h --help              Show this help\n"
               "     --address ADDR      Bus address (default: the system bus)\n"
               "  -p --pool NAME         Allocate from this pool\n"
               "  -o --owner NAME        Owner of the measured allocations (default bench)\n"
               "  -n --iterations N      Measured cycles per size (default 50)\n"
               "  -w --warmup N          Unmeasured cycles first (default 2)\n"
               "  -s --sizes LIST        Sizes, comma-separated (default 2M,1G)\n"
               "  -H --held K            Keep K allocations of 2 MiB while measuring (default 0)\n"
               "  -P --pause-ms MS       Sleep before each Allocate and each Release (default 0)\n"
               "     --warm-size BYTES   Wait for the pool's WarmSize to be this before each Allocate\n"
               "     --burst N           Also time N Allocates of the first size sent together\n"
               "     --reclaim           Time Allocate when the memory is lent to the host, and\n"
               "                         ReclaimFromHost (needs --pool; default size 1G);\n"
               "                         --pause-ms sleeps before each timed call\n");
}

static int parse_args(int argc, char **argv, Options *o) {
        enum { ARG_ADDRESS = 0x100, ARG_RECLAIM, ARG_WARM_SIZE, ARG_BURST };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "address", required_argument, NULL, ARG_ADDRESS },
                { "pool", required_argument, NULL, 'p' },
                { "owner", required_argument, NULL, 'o' },
                { "iterations", required_argument, NULL, 'n' },
                { "warmup", required_argument, NULL, 'w' },
                { "sizes", required_argument, NULL, 's' },
                { "held", required_argument, NULL, 'H' },
                { "pause-ms", required_argument, NULL, 'P' },
                { "reclaim", no_argument, NULL, ARG_RECLAIM },
                { "warm-size", required_argument, NULL, ARG_WARM_SIZE },
                { "burst", required_argument, NULL, ARG_BURST },
                {},
        };
        int c, r = 0;

        while ((c = getopt_long(argc, argv, "hp:o:n:w:s:H:P:", options, NULL)) >= 0) {
                switch (c) {
                case 'h':
                        help();
                        exit(EXIT_SUCCESS);
                case ARG_ADDRESS:
                        o->address = optarg;
                        break;
                case 'p':
                        o->pool = optarg;
                        break;
                case 'o':
                        o->owner = optarg;
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
                case ARG_RECLAIM:
                        o->reclaim = true;
                        break;
                case ARG_WARM_SIZE:
                        r = bench_parse_size(optarg, &o->warm_size);
                        break;
                case ARG_BURST:
                        r = bench_parse_unsigned(optarg, &o->burst);
                        break;
                default:
                        return -EINVAL;
                }
                if (r < 0) {
                        fprintf(stderr, "bus-bench: invalid value '%s'\n", optarg);
                        return r;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "bus-bench: unexpected argument '%s'\n", argv[optind]);
                return -EINVAL;
        }
        if (o->reclaim && (!o->pool || o->held > 0)) {
                fprintf(stderr, "bus-bench: --reclaim needs --pool and does not take --held\n");
                return -EINVAL;
        }
        if (o->reclaim && !o->sizes_set) {
                o->sizes[0] = BENCH_GiB;
                o->n_sizes = 1;
        }
        return 0;
}

static int bus_connect(const Options *o, sd_bus **ret) {
        sd_bus *bus = NULL;
        int r;

        if (!o->address)
                r = sd_bus_open_system(&bus);
        else {
                r = sd_bus_new(&bus);
                if (r >= 0)
                        r = sd_bus_set_address(bus, o->address);
                if (r >= 0)
                        r = sd_bus_set_bus_client(bus, true);
                if (r >= 0)
                        r = sd_bus_start(bus);
        }
        if (r < 0) {
                fprintf(stderr, "bus-bench: cannot connect to the bus: %s\n", strerror(-r));
                sd_bus_unref(bus);
                return r;
        }
        *ret = bus;
        return 0;
}

int main(int argc, char **argv) {
        Options o = {
                .owner = "bench",
                .iterations = 50,
                .warmup = 2,
                .sizes = { 2 * BENCH_MiB, BENCH_GiB },
                .n_sizes = 2,
        };
        BenchSeries pings = {}, fill = {}, drain = {};
        double t0;
        sd_bus *bus = NULL;
        char **held = NULL;
        unsigned n_held = 0;
        int r = 0;

        if (parse_args(argc, argv, &o) < 0)
                return 2;
        if (bus_connect(&o, &bus) < 0)
                return 1;
        r = pool_resolve(bus, &o);
        if (r < 0)
                goto finish;
        /* At its first start after boot the daemon zeroes the whole pool. */
        t0 = bench_now_us();
        r = pool_wait_clean(bus, &o);
        if (r < 0)
                goto finish;
        fprintf(stderr, "bus-bench: pool clean after %.1f s\n", (bench_now_us() - t0) / 1e6);

        if (o.reclaim) {
                for (size_t i = 0; i < o.n_sizes && r >= 0; i++)
                        r = measure_reclaim(bus, &o, o.sizes[i]);
                goto finish;
        }

        for (unsigned i = 0; i < o.warmup + o.iterations; i++) {
                double t;

                r = ping(bus, &t);
                if (r < 0)
                        goto finish;
                if (i >= o.warmup)
                        bench_series_add(&pings, t);
        }
        bench_print("daemon", 0, o.held, "ping", &pings);

        held = calloc(o.held ?: 1, sizeof(char *));
        if (!held) {
                r = -ENOMEM;
                goto finish;
        }
        for (; n_held < o.held; n_held++) {
                double t;

                r = allocate(bus, &o, "bench-held", 2 * BENCH_MiB, &held[n_held], &t);
                if (r < 0)
                        goto finish;
                bench_series_add(&fill, t);
        }
        if (o.held > 0)
                bench_print("daemon", 2 * BENCH_MiB, o.held, "fill", &fill);
        print_daemon_rss(bus, o.held);

        for (size_t i = 0; i < o.n_sizes; i++) {
                r = measure(bus, &o, o.sizes[i]);
                if (r < 0)
                        break;
        }
        if (r >= 0 && o.burst > 0)
                r = measure_burst(bus, &o, o.sizes[0]);
        if (r >= 0 && o.held == 0)
                r = measure_during_scrub(bus, &o);

finish:
        while (n_held > 0) {
                double t;
                int k;

                n_held--;
                k = release(bus, held[n_held], &t);
                if (k < 0 && r >= 0)
                        r = k;
                bench_series_add(&drain, t);
                free(held[n_held]);
        }
        if (o.held > 0) {
                bench_print("daemon", 2 * BENCH_MiB, o.held, "drain", &drain);
                /* Leave the pool as found: nothing left to zero. */
                if (o.pool_path && pool_wait_clean(bus, &o) < 0 && r >= 0)
                        r = -ETIMEDOUT;
        }
        free(held);
        free(o.pool_path);
        bench_series_free(&pings);
        bench_series_free(&fill);
        bench_series_free(&drain);
        sd_bus_flush_close_unref(bus);
        return r < 0 ? 1 : 0;
}
