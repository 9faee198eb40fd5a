/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <unistd.h>

#include "events.h"
#include "log.h"
#include "scrub-sched.h"
#include "util.h"

struct ScrubSched {
        sd_event *event;
        Worker *worker;
        DaxBackend *backend;
        Scrubber *scrubber;
        GPtrArray *pools; /* Pool*, the broker's */
        ScrubFinished finished;
        void *userdata;
        sd_event_source *timer;
        bool stopping;
};

/* Bare dirty memory (after boot, a rolled-back allocation) is zeroed
 * through a short-lived device of its own, one chunk per pool at a time:
 * create (region lane), zero (scrub lane, so allocations in the region do
 * not wait for it), destroy (region lane). */
#define SCRUB_CHUNK_MAX (512 * MiB)

typedef struct ScrubJob {
        ScrubSched *sched;
        Pool *pool;
        DaxRange range;
        KernelResult res;
        int err;
        const char *step;
} ScrubJob;

static void scrub_create_work(void *p) {
        ScrubJob *j = p;

        crash_op_begin("scrub");
        kernel_create(j->sched->backend, j->pool->region_id, 2 * MiB, &j->range, 1, &j->res);
        if (j->res.err >= 0)
                close(j->res.fd);
}

static void scrub_zero_work(void *p) {
        ScrubJob *j = p;

        j->err = kernel_zero(j->sched->backend, j->sched->scrubber, j->res.name, j->range.size, NULL, 0, &j->step);
        if (j->err >= 0)
                crash_point("scrub-zeroed");
}

static void scrub_destroy_work(void *p) {
        ScrubJob *j = p;
        const char *step = NULL;
        int r;

        crash_op_begin("scrub");
        r = kernel_destroy(j->sched->backend, j->res.name, &step);

        if (r < 0 && j->err >= 0) {
                j->err = r;
                j->step = step;
        }
}

static void scrub_finish(ScrubJob *j) {
        ScrubSched *s = j->sched;
        Pool *p = j->pool;
        char sz[FORMAT_SIZE_MAX];
        bool zeroed = true;

        p->scrubs_in_flight--;
        p->bare_scrub_running = false;
        if (j->err < 0 || j->res.err < 0) {
                log_warning("Pool %s: cannot zero %s at %#" G_GINT64_MODIFIER "x while %s: %s; will retry", p->name,
                            format_size(j->range.size, sz, sizeof(sz)), j->range.start,
                            j->res.err < 0 ? j->res.step : j->step, g_strerror(-(j->res.err < 0 ? j->res.err : j->err)));
                extent_map_set(p->map, j->range.start, j->range.size, EXTENT_DIRTY, NULL);
                p->scrub_failures++;
                zeroed = false;
        } else {
                extent_map_set(p->map, j->range.start, j->range.size, EXTENT_FREE, NULL);
                p->scrub_failures = 0;
                events_scrubbed(p, &j->range, j->res.name);
        }
        g_free(j);
        scrub_sched_kick(s);
        s->finished(p, zeroed, s->userdata);
}

static void scrub_destroy_done(void *p) {
        scrub_finish(p);
}

static void scrub_zero_done(void *p) {
        ScrubJob *j = p;

        worker_submit(j->sched->worker, j->pool->region_id, scrub_destroy_work, scrub_destroy_done, j);
}

static void scrub_create_done(void *p) {
        ScrubJob *j = p;

        if (j->res.err < 0) {
                scrub_finish(j);
                return;
        }
        worker_submit(j->sched->worker, SCRUB_LANE(j->pool->region_id), scrub_zero_work, scrub_zero_done, j);
}

static int on_scrub_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        scrub_sched_kick(userdata);
        return 0;
}

/* Released memory is zeroed a moment later rather than at once: releases
 * that come together (a VM with several allocations, an owner's whole set)
 * are zeroed as one, and right after a Release the pool shows the memory
 * as free without a scrub device holding part of it. Allocations can use
 * dirty memory meanwhile; they zero what they take. */
#define SCRUB_DELAY_USEC (1000 * 1000)

void scrub_sched_later(ScrubSched *s) {
        uint64_t now;

        if (!s->event) {
                scrub_sched_kick(s);
                return;
        }
        if (s->timer) {
                int enabled = SD_EVENT_OFF;
                (void) sd_event_source_get_enabled(s->timer, &enabled);
                if (enabled != SD_EVENT_OFF)
                        return;
        }
        (void) sd_event_now(s->event, CLOCK_MONOTONIC, &now);
        if (!s->timer) {
                if (sd_event_add_time(s->event, &s->timer, CLOCK_MONOTONIC, now + SCRUB_DELAY_USEC, 0,
                                      on_scrub_timer, s) < 0) {
                        scrub_sched_kick(s);
                        return;
                }
        } else {
                (void) sd_event_source_set_time(s->timer, now + SCRUB_DELAY_USEC);
        }
        (void) sd_event_source_set_enabled(s->timer, SD_EVENT_ONESHOT);
}

void scrub_sched_kick(ScrubSched *s) {
        if (s->stopping)
                return;
        for (guint i = 0; i < s->pools->len; i++) {
                Pool *p = s->pools->pdata[i];
                ScrubJob *j;
                const Extent *x = NULL;

                /* A pool whose scrubs keep failing is left until something
                 * else changes (a release, an allocation) rather than
                 * retried in a tight loop. */
                if (p->bare_scrub_running || p->scrub_failures > 2)
                        continue;
                for (size_t e = 0; e < extent_map_count(p->map) && !x; e++) {
                        const Extent *c = extent_map_get(p->map, e);
                        if (c->kind == EXTENT_DIRTY && !c->tag)
                                x = c;
                }
                if (!x)
                        continue;

                j = g_new0(ScrubJob, 1);
                j->sched = s;
                j->pool = p;
                j->range = (DaxRange) { x->start, min_u64(x->size, SCRUB_CHUNK_MAX) };
                extent_map_set(p->map, j->range.start, j->range.size, EXTENT_DIRTY, j);
                p->bare_scrub_running = true;
                p->scrubs_in_flight++;
                worker_submit(s->worker, p->region_id, scrub_create_work, scrub_create_done, j);
        }
}

void scrub_sched_stop(ScrubSched *s) {
        s->stopping = true;
}

ScrubSched *scrub_sched_new(sd_event *event, Worker *worker, DaxBackend *backend, Scrubber *scrubber,
                            GPtrArray *pools, ScrubFinished finished, void *userdata) {
        ScrubSched *s = g_new0(ScrubSched, 1);

        *s = (ScrubSched) {
                .event = event,
                .worker = worker,
                .backend = backend,
                .scrubber = scrubber,
                .pools = pools,
                .finished = finished,
                .userdata = userdata,
        };
        return s;
}

void scrub_sched_free(ScrubSched *s) {
        if (!s)
                return;
        sd_event_source_disable_unref(s->timer);
        g_free(s);
}
