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
        sd_event_source *retry_timer; /* the next stuck chunk is due */
        GArray *first;                /* Preferred: dirt to zero before other dirt */
        bool stopping;
};

typedef struct Preferred {
        Pool *pool;
        DaxRange range;
} Preferred;

/* A chunk whose zeroing failed is tried again after 1 s, doubling up to
 * 5 min: a fault that clears (a range another claimant held for a while)
 * is zeroed soon, one that does not costs a try every few minutes. The
 * rest of the pool is zeroed meanwhile. */
#define SCRUB_RETRY_MIN_USEC (1000 * 1000ULL)
#define SCRUB_RETRY_MAX_USEC (300 * 1000 * 1000ULL)

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

static GArray *pool_stuck(Pool *p) {
        if (!p->scrub_stuck)
                p->scrub_stuck = g_array_new(FALSE, TRUE, sizeof(ScrubStuck));
        return p->scrub_stuck;
}

static void stuck_remove(Pool *p, guint i) {
        g_free(g_array_index(p->scrub_stuck, ScrubStuck, i).error);
        g_array_remove_index(p->scrub_stuck, i);
}

static bool overlaps(uint64_t s1, uint64_t n1, uint64_t s2, uint64_t n2) {
        return s1 < s2 + n2 && s2 < s1 + n1;
}

static void format_time(uint64_t realtime_usec, char *buf, size_t n) {
        g_autoptr(GDateTime) t = g_date_time_new_from_unix_utc((gint64) (realtime_usec / 1000000));
        g_autofree char *s = t ? g_date_time_format(t, "%Y-%m-%d %H:%M:%S UTC") : NULL;

        g_strlcpy(buf, s ? s : "?", n);
}

/* The zeroing of j->range failed: it stays dirty, gets (or keeps) its own
 * backoff, and the journal says what is stuck since when. */
static void stuck_failed(Pool *p, const DaxRange *r, const char *step, int err) {
        GArray *a = pool_stuck(p);
        char sz[FORMAT_SIZE_MAX], since[64], delay[FORMAT_SIZE_MAX];
        ScrubStuck *e = NULL;
        uint64_t wait;

        for (guint i = 0; i < a->len && !e; i++) {
                ScrubStuck *x = &g_array_index(a, ScrubStuck, i);
                if (overlaps(x->start, x->size, r->start, r->size))
                        e = x;
        }
        if (!e) {
                ScrubStuck n = { .start = r->start, .size = r->size, .since_usec = (uint64_t) g_get_real_time() };
                g_array_append_val(a, n);
                e = &g_array_index(a, ScrubStuck, a->len - 1);
        }
        e->start = r->start;
        e->size = r->size;
        e->failures++;
        wait = e->failures > 9 ? SCRUB_RETRY_MAX_USEC
                               : MIN(SCRUB_RETRY_MIN_USEC << (e->failures - 1), SCRUB_RETRY_MAX_USEC);
        e->retry_usec = (uint64_t) g_get_monotonic_time() + wait;
        g_free(e->error);
        e->error = g_strdup_printf("the kernel refused while %s: %s", step, g_strerror(-err));
        format_time(e->since_usec, since, sizeof(since));
        g_snprintf(delay, sizeof(delay), "%" G_GUINT64_FORMAT " s", wait / 1000000);
        log_warning("Pool %s: cannot zero %s at %#" G_GINT64_MODIFIER "x while %s: %s; it stays dirty and nobody "
                    "gets it, retrying in %s (failing since %s, %u times in a row); the rest of the pool is zeroed "
                    "meanwhile", p->name, format_size(r->size, sz, sizeof(sz)), r->start, step, g_strerror(-err),
                    delay, since, e->failures);
}

static void stuck_zeroed(Pool *p, const DaxRange *r) {
        char sz[FORMAT_SIZE_MAX], since[64];

        for (guint i = p->scrub_stuck ? p->scrub_stuck->len : 0; i-- > 0;) {
                ScrubStuck *x = &g_array_index(p->scrub_stuck, ScrubStuck, i);

                if (!overlaps(x->start, x->size, r->start, r->size))
                        continue;
                format_time(x->since_usec, since, sizeof(since));
                log_info("Pool %s: zeroed %s at %#" G_GINT64_MODIFIER "x after %u failed attempts (failing since %s)",
                         p->name, format_size(r->size, sz, sizeof(sz)), r->start, x->failures, since);
                stuck_remove(p, i);
        }
}

static void scrub_finish(ScrubJob *j) {
        ScrubSched *s = j->sched;
        Pool *p = j->pool;
        bool zeroed = true;

        p->scrubs_in_flight--;
        p->bare_scrub_running = false;
        if (j->err < 0 || j->res.err < 0) {
                extent_map_set(p->map, j->range.start, j->range.size, EXTENT_DIRTY, NULL);
                stuck_failed(p, &j->range, j->res.err < 0 ? j->res.step : j->step, j->res.err < 0 ? j->res.err : j->err);
                zeroed = false;
        } else {
                extent_map_set(p->map, j->range.start, j->range.size, EXTENT_FREE, NULL);
                stuck_zeroed(p, &j->range);
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

/* Dirt that turns up in the background (memory back from the host, a warm
 * device that could not be made) is zeroed a moment later, so that what
 * comes together is zeroed as one. Released memory does not wait: it is
 * kicked at once. Allocations can use dirty memory meanwhile; they zero
 * what they take. */
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

/* Every byte of the range is dirt no device holds. */
static bool range_bare_dirty(const ExtentMap *m, uint64_t start, uint64_t size) {
        uint64_t covered = 0;

        for (size_t e = 0; e < extent_map_count(m); e++) {
                const Extent *x = extent_map_get(m, e);

                if (!overlaps(x->start, x->size, start, size))
                        continue;
                if (x->kind != EXTENT_DIRTY || x->tag)
                        return false;
                covered += MIN(x->start + x->size, start + size) - MAX(x->start, start);
        }
        return covered == size;
}

/* What to zero next in the pool: a stuck chunk whose retry is due, else
 * the first bare dirt outside every stuck chunk. *ret_retry: the earliest
 * retry still to come (0: none). */
/* The first bare dirt in [lo, hi) outside every stuck chunk. */
static bool first_dirt(Pool *p, uint64_t lo, uint64_t hi, DaxRange *ret) {
        GArray *a = p->scrub_stuck;

        for (size_t e = 0; e < extent_map_count(p->map); e++) {
                const Extent *x = extent_map_get(p->map, e);
                uint64_t start = MAX(x->start, lo), end = MIN(x->start + x->size, hi);

                if (x->kind != EXTENT_DIRTY || x->tag || start >= end)
                        continue;
                while (start < end) {
                        uint64_t stop = end;
                        bool skipped = false;

                        for (guint i = 0; a && i < a->len; i++) {
                                const ScrubStuck *y = &g_array_index(a, ScrubStuck, i);

                                if (!overlaps(y->start, y->size, start, end - start))
                                        continue;
                                if (y->start <= start) {
                                        start = y->start + y->size;
                                        skipped = true;
                                        break;
                                }
                                stop = MIN(stop, y->start);
                        }
                        if (skipped)
                                continue;
                        *ret = (DaxRange) { start, min_u64(stop - start, SCRUB_CHUNK_MAX) };
                        return true;
                }
        }
        return false;
}

static bool scrub_pick(ScrubSched *s, Pool *p, uint64_t now, DaxRange *ret, uint64_t *ret_retry) {
        GArray *a = p->scrub_stuck;

        *ret_retry = 0;
        /* A chunk an allocation took (and zeroed itself) is no longer stuck. */
        for (guint i = a ? a->len : 0; i-- > 0;) {
                const ScrubStuck *x = &g_array_index(a, ScrubStuck, i);
                if (!range_bare_dirty(p->map, x->start, x->size))
                        stuck_remove(p, i);
        }
        for (guint i = 0; a && i < a->len; i++) {
                const ScrubStuck *x = &g_array_index(a, ScrubStuck, i);

                if (x->retry_usec <= now) {
                        *ret = (DaxRange) { x->start, x->size };
                        return true;
                }
                if (!*ret_retry || x->retry_usec < *ret_retry)
                        *ret_retry = x->retry_usec;
        }
        /* Dirt someone waits for (a ReturnToHost) comes first; a window
         * with no bare dirt left is done. */
        for (guint i = s->first ? s->first->len : 0; i-- > 0;) {
                const Preferred *f = &g_array_index(s->first, Preferred, i);
                bool any = false;

                if (f->pool != p)
                        continue;
                for (size_t e = 0; e < extent_map_count(p->map) && !any; e++) {
                        const Extent *x = extent_map_get(p->map, e);
                        any = x->kind == EXTENT_DIRTY && !x->tag &&
                              overlaps(x->start, x->size, f->range.start, f->range.size);
                }
                if (!any) {
                        g_array_remove_index(s->first, i);
                        continue;
                }
        }
        for (guint i = 0; s->first && i < s->first->len; i++) {
                const Preferred *f = &g_array_index(s->first, Preferred, i);

                if (f->pool == p && first_dirt(p, f->range.start, f->range.start + f->range.size, ret))
                        return true;
        }
        return first_dirt(p, 0, UINT64_MAX, ret);
}

static int on_retry_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        scrub_sched_kick(userdata);
        return 0;
}

static void retry_arm(ScrubSched *s, uint64_t when) {
        if (!s->event)
                return;
        if (!when) {
                if (s->retry_timer)
                        (void) sd_event_source_set_enabled(s->retry_timer, SD_EVENT_OFF);
                return;
        }
        if (!s->retry_timer) {
                if (sd_event_add_time(s->event, &s->retry_timer, CLOCK_MONOTONIC, when, 0, on_retry_timer, s) < 0)
                        return;
        } else
                (void) sd_event_source_set_time(s->retry_timer, when);
        (void) sd_event_source_set_enabled(s->retry_timer, SD_EVENT_ONESHOT);
}

void scrub_sched_kick(ScrubSched *s) {
        uint64_t now = (uint64_t) g_get_monotonic_time(), next_retry = 0;

        if (s->stopping)
                return;
        for (guint i = 0; i < s->pools->len; i++) {
                Pool *p = s->pools->pdata[i];
                ScrubJob *j;
                DaxRange r;
                uint64_t retry;
                bool found;

                if (p->bare_scrub_running)
                        continue;
                found = scrub_pick(s, p, now, &r, &retry);
                if (retry && (!next_retry || retry < next_retry))
                        next_retry = retry;
                if (!found)
                        continue;

                j = g_new0(ScrubJob, 1);
                j->sched = s;
                j->pool = p;
                j->range = r;
                extent_map_set(p->map, j->range.start, j->range.size, EXTENT_DIRTY, j);
                p->bare_scrub_running = true;
                p->scrubs_in_flight++;
                worker_submit(s->worker, p->region_id, scrub_create_work, scrub_create_done, j);
        }
        retry_arm(s, next_retry);
}

uint64_t scrub_sched_stuck_bytes(const Pool *p) {
        uint64_t n = 0;

        for (guint i = 0; p->scrub_stuck && i < p->scrub_stuck->len; i++)
                n += g_array_index(p->scrub_stuck, ScrubStuck, i).size;
        return n;
}

void scrub_sched_prefer(ScrubSched *s, Pool *p, const DaxRange *r) {
        Preferred f = { p, *r };

        if (!s->first)
                s->first = g_array_new(FALSE, FALSE, sizeof(Preferred));
        for (guint i = 0; i < s->first->len; i++) {
                const Preferred *x = &g_array_index(s->first, Preferred, i);
                if (x->pool == p && x->range.start == r->start && x->range.size == r->size)
                        return;
        }
        g_array_append_val(s->first, f);
}

void scrub_sched_pool_done(Pool *p) {
        for (guint i = p->scrub_stuck ? p->scrub_stuck->len : 0; i-- > 0;)
                stuck_remove(p, i);
        g_clear_pointer(&p->scrub_stuck, g_array_unref);
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
        sd_event_source_disable_unref(s->retry_timer);
        if (s->first)
                g_array_unref(s->first);
        g_free(s);
}
