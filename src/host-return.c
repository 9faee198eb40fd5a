/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Host return: idle pool memory goes to the host page allocator as kmem
 * "chunks" (one dax device each, blocks onlined movable) and comes back
 * when an allocation needs it. kmem removal is one shot, so a chunk is only
 * unbound once every one of its blocks is verifiably offline; a chunk that
 * will not offline is put back online and another one is tried. Memory
 * that was host RAM is dirty: nobody gets it before it is zeroed.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "events.h"
#include "host-return.h"
#include "kernel-ops.h"
#include "log.h"
#include "scrub-sched.h"
#include "warm.h"
#include "util.h"

typedef struct HostChunk {
        Pool *pool;
        unsigned n_ranges;
        DaxRange ranges[DAX_RANGES_MAX];
        char device[DAX_NAME_MAX]; /* "" while being created */
        /* Found bound to kmem at start-up, not created by us: never split,
         * reclaimed last, and on record in state.json only while a
         * reclaim of it is under way (so that start-up can finish or undo
         * it after a crash). */
        bool adopted;
        bool recorded;             /* in state.json */
        bool busy;                 /* a return or reclaim is running */
        bool lent_dirty;           /* lent with old data in it (the host zeroes on allocation) */
        uint64_t failed_usec;      /* last reclaim that failed */
} HostChunk;

/* A block that would not offline is usually pinned for a while: leave its
 * chunk alone for this long before trying it again. */
#define RECLAIM_RETRY_USEC (60 * 1000 * 1000ULL)

/* Many callers wait for a set of chunk jobs (a D-Bus call, an allocation). */
typedef struct HostRequest {
        unsigned outstanding;
        uint64_t bytes;   /* returned or reclaimed so far */
        uint64_t wanted;
        bool reclaim;
        char *error;      /* first failure */
        BrokerSizeDone done;
        void *userdata;
} HostRequest;

typedef struct HostJob {
        HostCtx *host;
        HostChunk *chunk;
        HostRequest *request; /* may be NULL */
        int err;
        const char *step;
        uint64_t block;       /* the block that failed, if err */
        bool host_wrote;      /* some block was online: contents are host data */
        bool gone;            /* the device no longer exists */
} HostJob;

static uint64_t chunk_size(const HostChunk *c) {
        return dax_ranges_size(c->ranges, c->n_ranges);
}

/* A chunk being returned is PENDING (counted as in use) until every block
 * is online; HostSize counts only what the host really has. */
static HostChunk *chunk_new(Pool *p, const DaxRange *r, size_t n, const char *device, bool recorded,
                            ExtentKind kind) {
        HostChunk *c = g_new0(HostChunk, 1);

        c->pool = p;
        c->n_ranges = (unsigned) n;
        memcpy(c->ranges, r, n * sizeof(DaxRange));
        g_strlcpy(c->device, device ? device : "", sizeof(c->device));
        c->recorded = recorded;
        g_ptr_array_add(p->chunks, c);
        extent_map_set_ranges(p->map, c->ranges, c->n_ranges, kind, c);
        return c;
}

/* The bytes the chunk holds in the map (all of its ranges, less any that
 * an allocation being restored claims). */
static void chunk_held(const HostChunk *c, GArray *out) {
        const ExtentMap *m = c->pool->map;

        for (size_t e = 0; e < extent_map_count(m); e++) {
                const Extent *x = extent_map_get(m, e);
                DaxRange r = { x->start, x->size };

                if (x->tag == c)
                        g_array_append_val(out, r);
        }
}

/* The chunk's memory leaves the host: it is dirty until zeroed. Bytes an
 * allocation being restored holds inside it stay that allocation's. */
static void chunk_drop(HostChunk *c, ExtentKind now) {
        Pool *p = c->pool;
        g_autoptr(GArray) held = g_array_new(FALSE, FALSE, sizeof(DaxRange));

        chunk_held(c, held);
        if (extent_map_set_ranges(p->map, (DaxRange *) held->data, held->len, now, NULL) < 0)
                log_error("Pool %s: cannot mark the ranges of host chunk %s", p->name, c->device);
        g_ptr_array_remove(p->chunks, c);
        g_free(c);
}

void host_lend_dirty_configure(HostCtx *h, const Config *config) {
        const char *why = "HostZeroesOnAlloc= says so";

        h->return_timeout_usec = config->allocate_timeout_usec;
        if (config->host_zeroes_on_alloc >= 0)
                h->lend_dirty = config->host_zeroes_on_alloc > 0;
        else
                h->lend_dirty = h->backend->ops->host_zeroes_on_alloc &&
                                h->backend->ops->host_zeroes_on_alloc(h->backend, &why);
        if (h->lend_dirty)
                log_info("Memory lent to the host is not zeroed first: the host kernel zeroes pages before handing "
                         "them out (%s)", why);
        else
                log_info("Memory lent to the host is zeroed first (%s)", config->host_zeroes_on_alloc == 0 ? why
                         : h->backend->ops->host_zeroes_on_alloc ? why : "the backend cannot tell");
}

void host_pool_init(HostCtx *h, Pool *p, const PoolConfig *pc) {
        p->chunks = g_ptr_array_new();
        p->block_size = h->backend->ops->memory_block_size(h->backend);
        host_pool_configure(p, pc);
}

void host_pool_configure(Pool *p, const PoolConfig *pc) {
        char sz[FORMAT_SIZE_MAX], sz2[FORMAT_SIZE_MAX];

        p->host_return = pc && pc->host_return;
        p->reserve = pc ? pc->reserve : 0;
        p->host_delay_usec = pc ? pc->host_delay_usec : DEFAULT_HOST_DELAY_USEC;
        p->host_chunk = pc && pc->host_chunk ? pc->host_chunk : max_u64(GiB, p->block_size);
        p->host_failures = 0;
        if (p->block_size == 0) {
                if (p->host_return)
                        log_warning("Pool %s: HostReturn=yes, but the kernel has no memory hotplug; "
                                    "nothing is returned", p->name);
                p->host_return = false;
                return;
        }
        if (p->host_chunk % p->block_size != 0) {
                log_error("Pool %s: HostChunk=%s is not a multiple of the memory block size %s; "
                          "nothing is returned to the host", p->name, format_size(p->host_chunk, sz, sizeof(sz)),
                          format_size(p->block_size, sz2, sizeof(sz2)));
                p->host_return = false;
                p->host_chunk = 0;
        }
}

void host_pool_done(Pool *p) {
        if (!p->chunks)
                return;
        for (guint i = 0; i < p->chunks->len; i++)
                g_free(p->chunks->pdata[i]);
        g_ptr_array_free(p->chunks, TRUE);
        sd_event_source_disable_unref(p->host_timer);
        sd_event_source_disable_unref(p->returns_timer);
        if (p->returns_waiting)
                g_queue_free_full(p->returns_waiting, g_free);
        g_free(p->host_error);
}

const char *host_last_error(const Pool *p) {
        return p->host_error;
}

void host_collect(HostCtx *h, GArray *host) {
        for (guint i = 0; i < h->pools->len; i++) {
                Pool *p = h->pools->pdata[i];

                for (guint k = 0; k < p->chunks->len; k++) {
                        const HostChunk *c = p->chunks->pdata[k];
                        g_autoptr(GArray) held = NULL;

                        if (!c->recorded)
                                continue;
                        /* The bytes the chunk holds: an allocation being
                         * restored owns the rest of an adopted device. */
                        held = g_array_new(FALSE, FALSE, sizeof(DaxRange));
                        chunk_held(c, held);
                        for (guint q = 0; q < held->len; q++) {
                                const DaxRange *d = &g_array_index(held, DaxRange, q);
                                RegionRange r = { p->region_id, d->start, d->size };
                                g_array_append_val(host, r);
                        }
                }
        }
}

/* ---- kernel work (worker lanes) ---- */

/* Puts back online what a failed job took offline (or onlined for the
 * first time); the chunk stays whole host memory. */
static void blocks_restore(DaxBackend *be, const uint64_t *ids, size_t n, bool online, uint64_t timeout) {
        for (size_t i = 0; i < n; i++) {
                int r = be->ops->set_memory_block(be, ids[i], online, timeout);
                if (r < 0)
                        log_error("Cannot put memory block %" G_GUINT64_FORMAT " back %s: %s", ids[i],
                                  online ? "online" : "offline", g_strerror(-r));
        }
}

/* create -> map -> bind kmem -> online every block. On failure nothing of
 * ours is left half-done: either the chunk is whole host memory, or the
 * device is gone again. */
static void return_work(void *userdata) {
        HostJob *j = userdata;
        HostCtx *h = j->host;
        DaxBackend *be = h->backend;
        HostChunk *c = j->chunk;
        _cleanup_free_ DaxMemBlock *blocks = NULL;
        g_autofree uint64_t *onlined = NULL;
        size_t n = 0, k = 0;
        char name[DAX_NAME_MAX];
        const char *ignored;
        int r;

        crash_op_begin("return");
        r = be->ops->create_device(be, c->pool->region_id, name);
        if (r < 0) {
                j->step = "creating a device";
                j->gone = true;
                goto fail;
        }
        crash_point("return-created");
        g_strlcpy(c->device, name, sizeof(c->device));
        r = be->ops->add_mapping(be, name, c->ranges[0].start, c->ranges[0].size);
        if (r < 0) {
                j->step = "mapping the chunk into the device";
                goto destroy;
        }
        crash_point("return-mapped");
        r = be->ops->bind_kmem(be, name);
        if (r < 0) {
                j->step = "binding the device to kmem";
                goto destroy;
        }
        crash_point("return-bound");
        r = be->ops->list_memory_blocks(be, name, &blocks, &n);
        if (r >= 0 && n == 0)
                r = -ENXIO; /* kmem added nothing: the chunk is not block aligned */
        if (r < 0) {
                j->step = "listing the chunk's memory blocks";
                goto destroy;
        }
        onlined = g_new(uint64_t, n);
        for (size_t i = 0; i < n; i++) {
                /* auto_online_blocks or a udev rule may have been first. */
                if (blocks[i].online) {
                        j->host_wrote = true;
                        continue;
                }
                r = be->ops->set_memory_block(be, blocks[i].id, true, 0);
                if (r < 0) {
                        j->step = "onlining a memory block";
                        j->block = blocks[i].id;
                        break;
                }
                j->host_wrote = true;
                onlined[k++] = blocks[i].id;
                crash_point("return-online");
        }
        if (r >= 0)
                return;

        /* Undo: what we onlined goes offline again; only if all of it does
         * may the device go, or its memory would be stranded. */
        blocks_restore(be, onlined, k, false, h->offline_timeout_usec);
destroy:
        j->err = r;
        r = kernel_destroy(be, name, &ignored);
        if (r < 0) {
                log_error("Cannot undo host chunk %s: %s; it stays host memory", name, g_strerror(-r));
                return;
        }
        j->gone = true;
        return;
fail:
        j->err = r;
}

/* Offlines every block of the chunk, each within the timeout; on any
 * failure the blocks this job took offline go back online. */
static void reclaim_offline_work(void *userdata) {
        HostJob *j = userdata;
        HostCtx *h = j->host;
        DaxBackend *be = h->backend;
        bool adopted = j->chunk->adopted;
        _cleanup_free_ DaxMemBlock *blocks = NULL, *again = NULL;
        g_autofree uint64_t *offlined = NULL;
        size_t n = 0, k = 0, n2 = 0;
        int r;

        r = be->ops->list_memory_blocks(be, j->chunk->device, &blocks, &n);
        if (r < 0) {
                j->err = r;
                j->step = "listing the chunk's memory blocks";
                return;
        }
        offlined = g_new(uint64_t, n + 1);
        for (size_t i = 0; i < n; i++) {
                if (!blocks[i].online)
                        continue;
                r = be->ops->set_memory_block(be, blocks[i].id, false, h->offline_timeout_usec);
                if (r < 0) {
                        j->err = r;
                        j->step = "offlining a memory block";
                        j->block = blocks[i].id;
                        goto undo;
                }
                offlined[k++] = blocks[i].id;
                crash_point(adopted ? "reclaim-adopted-offline" : "reclaim-offline");
        }
        crash_point(adopted ? "reclaim-adopted-offlined" : "reclaim-offlined");

        /* Someone (udev, auto_online_blocks, an operator) may have onlined
         * a block meanwhile; unbinding then would strand it. */
        r = be->ops->list_memory_blocks(be, j->chunk->device, &again, &n2);
        if (r < 0) {
                j->err = r;
                j->step = "re-reading the chunk's memory blocks";
                goto undo;
        }
        for (size_t i = 0; i < n2; i++)
                if (again[i].online) {
                        j->err = -EBUSY;
                        j->step = "verifying the chunk is offline (a block was onlined by another agent)";
                        j->block = again[i].id;
                        goto undo;
                }
        return;
undo:
        blocks_restore(be, offlined, k, true, 0);
}

/* Every block is offline: unbind kmem (the backend re-checks and refuses
 * if a block came online), drop the id, destroy the device. */
static void reclaim_destroy_work(void *userdata) {
        HostJob *j = userdata;
        HostCtx *h = j->host;
        DaxBackend *be = h->backend;
        int r;

        crash_op_begin(j->chunk->adopted ? "reclaim-adopted" : "reclaim");
        r = be->ops->unbind(be, j->chunk->device);
        if (r < 0) {
                j->err = r;
                j->step = "unbinding kmem";
                return;
        }
        crash_point(j->chunk->adopted ? "reclaim-adopted-unbound" : "reclaim-unbound");
        r = kernel_destroy(be, j->chunk->device, &j->step);
        if (r < 0) {
                j->err = r;
                return;
        }
        j->gone = true;
        if (!j->chunk->adopted)
                crash_point("reclaim-destroyed");
}

/* ---- requests ---- */

static HostRequest *request_new(bool reclaim, uint64_t wanted, BrokerSizeDone done, void *userdata) {
        HostRequest *q = g_new0(HostRequest, 1);

        q->reclaim = reclaim;
        q->wanted = wanted;
        q->done = done;
        q->userdata = userdata;
        q->outstanding = 1; /* held until every job is queued */
        return q;
}

static void request_finish_one(HostRequest *q, uint64_t bytes, const char *error) {
        if (!q)
                return;
        q->bytes += bytes;
        if (error && !q->error)
                q->error = g_strdup(error);
        if (--q->outstanding > 0)
                return;
        if (q->done) {
                char sz[FORMAT_SIZE_MAX], sz2[FORMAT_SIZE_MAX];
                g_autoptr(GError) e = NULL;

                if (q->bytes < q->wanted)
                        e = g_error_new(BROKER_ERROR, q->reclaim ? BROKER_ERROR_BUSY : BROKER_ERROR_KERNEL_FAILURE,
                                        "%s %s of %s: %s", q->reclaim ? "Reclaimed" : "Returned",
                                        format_size(q->bytes, sz, sizeof(sz)), format_size(q->wanted, sz2, sizeof(sz2)),
                                        q->error ? q->error : "no more host memory to reclaim");
                q->done(q->bytes, e, q->userdata);
        }
        g_free(q->error);
        g_free(q);
}

static char *job_error(const HostJob *j) {
        const HostChunk *c = j->chunk;
        g_autofree char *block = j->block ? g_strdup_printf(" memory%" G_GUINT64_FORMAT, j->block) : NULL;

        return g_strdup_printf("%s at %#" G_GINT64_MODIFIER "x (pool %s) failed while %s%s: %s",
                               c->device[0] ? c->device : "chunk", c->ranges[0].start, c->pool->name, j->step,
                               block ? block : "",
                               j->err == -EBUSY       ? "the kernel refused (unmovable pages)"
                               : j->err == -ETIMEDOUT ? "it did not finish in time (pinned pages)"
                                                      : g_strerror(-j->err));
}

/* ---- return ---- */

static void return_done(void *userdata) {
        HostJob *j = userdata;
        HostCtx *h = j->host;
        HostChunk *c = j->chunk;
        Pool *p = c->pool;
        uint64_t size = chunk_size(c);

        p->host_jobs--;
        c->busy = false;
        if (j->err < 0) {
                g_autofree char *msg = job_error(j);

                log_error("Returning memory to the host: %s", msg);
                p->host_failures++;
                if (j->gone)
                        /* What the host wrote before the undo is dirt. */
                        chunk_drop(c, j->host_wrote || c->lent_dirty ? EXTENT_DIRTY : EXTENT_FREE);
                else /* some blocks stayed online: host memory after all */
                        extent_map_set_ranges(p->map, c->ranges, c->n_ranges, EXTENT_HOST, c);
                (void) h->commit(h->userdata, true);
                request_finish_one(j->request, 0, msg);
        } else {
                extent_map_set_ranges(p->map, c->ranges, c->n_ranges, EXTENT_HOST, c);
                events_host_returned(p, c->ranges, c->n_ranges, c->device);
                p->host_failures = 0;
                (void) h->commit(h->userdata, true);
                /* Before the reply: who asked sees the node's HMAT. */
                if (h->onlined)
                        h->onlined(h->userdata, p);
                request_finish_one(j->request, size, NULL);
        }
        h->sizes_changed(h->userdata, p);
        if (j->err < 0)
                h->dirt_added(h->userdata, p);
        g_free(j);
        /* An allocation may have been waiting for host jobs to finish. */
        h->memory_freed(h->userdata, p);
}

/* Memory a chunk may take: clean free memory, and dirt no device holds
 * when dirt_ok (it is zeroed first, or the host zeroes it). */
static bool usable(const Extent *x, bool dirt_ok) {
        return x->kind == EXTENT_FREE || (dirt_ok && x->kind == EXTENT_DIRTY && !x->tag);
}

/* Where a chunk goes in map m: block aligned (and on the pool's boundary),
 * as high as possible, so that VMs keep the low, long free runs; never so
 * that the largest free run drops below Reserve=. Runs of usable extents
 * count as one. In a pool with cache colours a chunk lies only in colours
 * allowed (host RAM shares the cache like any tenant). */
static bool return_window_in(Pool *p, const ExtentMap *m, uint64_t chunk, bool keep_reserve, bool dirt_ok,
                             ColorMask allowed, DaxRange *ret) {
        bool colored = cache_colors_enabled(&p->colors);

        if (p->block_size == 0)
                return false;
        for (size_t e = extent_map_count(m); e-- > 0;) {
                const Extent *x = extent_map_get(m, e);
                uint64_t s, lo, hi;
                size_t f = e;

                if (!usable(x, dirt_ok))
                        continue;
                hi = x->start + x->size;
                while (f > 0 && usable(extent_map_get(m, f - 1), dirt_ok))
                        f--;
                lo = extent_map_get(m, f)->start;
                e = f; /* the next run starts below this one */
                if (hi - lo < chunk)
                        continue;
                /* Blocks are physical; the boundary counts from the pool
                 * start. Step down until both (and the colours) hold. */
                for (s = round_down_u64(hi - chunk, p->block_size); s >= lo && s + chunk <= hi && s >= p->block_size;
                     s -= p->block_size) {
                        if (p->boundary && (s - p->start) % p->boundary != 0) {
                                s = round_down_u64(p->start + round_down_u64(s - p->start, p->boundary), p->block_size) +
                                    p->block_size;
                                continue;
                        }
                        if (colored && (cache_colors_of_range(&p->colors, s, chunk) & ~allowed))
                                continue;
                        if (keep_reserve) {
                                ExtentMap *c = extent_map_copy(m);
                                bool ok;

                                extent_map_set(c, s, chunk, EXTENT_HOST, NULL);
                                ok = extent_map_largest_free(c, 2 * MiB, p->boundary) >= p->reserve;
                                extent_map_free(c);
                                if (!ok)
                                        break;
                        }
                        *ret = (DaxRange) { s, chunk };
                        return true;
                }
        }
        return false;
}

/* With cache colours, whole colours no allocation touches go to the host
 * first; colours a cache-isolated owner holds never do. */
static bool return_window(Pool *p, const ExtentMap *m, uint64_t chunk, bool keep_reserve, bool dirt_ok,
                          DaxRange *ret) {
        HostCtx *h = p->host;
        ColorMask all;

        if (!cache_colors_enabled(&p->colors) || !h->colors_in_use)
                return return_window_in(p, m, chunk, keep_reserve, dirt_ok, 0, ret);
        all = cache_colors_all(&p->colors);
        return return_window_in(p, m, chunk, keep_reserve, dirt_ok, all & ~h->colors_in_use(h->userdata, p, false), ret) ||
               return_window_in(p, m, chunk, keep_reserve, dirt_ok, all & ~h->colors_in_use(h->userdata, p, true), ret);
}

/* Some byte of the window is dirt. */
static bool window_dirty(const ExtentMap *m, const DaxRange *w) {
        for (size_t e = 0; e < extent_map_count(m); e++) {
                const Extent *x = extent_map_get(m, e);
                if (x->kind == EXTENT_DIRTY && x->start < w->start + w->size && w->start < x->start + x->size)
                        return true;
        }
        return false;
}

static int return_start(HostCtx *h, Pool *p, const DaxRange *w, HostRequest *q) {
        bool dirty = window_dirty(p->map, w);
        HostChunk *c = chunk_new(p, w, 1, NULL, true, EXTENT_PENDING);
        HostJob *j;

        c->busy = true;
        /* The host zeroes every page it hands out: old data may go. */
        c->lent_dirty = dirty;
        /* On record before the device exists: after a crash start-up finds
         * it (and zeroes what the host may have written). */
        if (h->commit(h->userdata, false) < 0) {
                chunk_drop(c, dirty ? EXTENT_DIRTY : EXTENT_FREE);
                return -EIO;
        }
        j = g_new0(HostJob, 1);
        *j = (HostJob) { .host = h, .chunk = c, .request = q };
        if (q)
                q->outstanding++;
        p->host_jobs++;
        worker_submit(h->worker, p->region_id, return_work, return_done, j);
        return 0;
}

/* Warm devices nobody holds count as free: they are given back first
 * when the host needs the room. */
static uint64_t pool_free_bytes(const Pool *p) {
        return extent_map_total(p->map, EXTENT_FREE) + extent_map_total_bare_dirty(p->map) + warm_bytes(p);
}

/* The idle delay is over: return chunks while the pool keeps Reserve=. */
static void host_return_idle(HostCtx *h, Pool *p) {
        DaxRange w;

        /* Memory is on its way back for an allocation: returning other
         * memory now would be the thrashing the delay is there to stop. */
        if (p->host_jobs > 0 || p->warm_returning > 0 || h->allocations_waiting(h->userdata))
                return;
        /* Zeroing is still going on: the pool is not idle, and the memory
         * it frees may make a better place for the chunk. Dirt whose
         * zeroing keeps failing waits for a retry and holds nothing up. */
        if (extent_map_total(p->map, EXTENT_DIRTY) > scrub_sched_stuck_bytes(p))
                return;

        while (!h->stopping && p->host_return && p->host_failures < 3 &&
               pool_free_bytes(p) >= p->host_chunk + p->reserve) {
                if (!return_window(p, p->map, p->host_chunk, true, h->lend_dirty, &w)) {
                        /* Warm devices stand in the way: they go, and the
                         * return is tried again once they are gone. */
                        if (warm_ready_bytes(p) > 0)
                                (void) h->warm_give_back(h->userdata, p);
                        break;
                }
                if (return_start(h, p, &w, NULL) < 0)
                        break;
        }
}

static int on_host_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Pool *p = userdata;

        host_return_idle(p->host, p);
        return 0;
}

/* now == 0: an operator asks, so a recent failure does not matter. */
static bool chunk_reclaimable(const HostChunk *c, uint64_t now) {
        return !c->busy && c->device[0] && (!now || !c->failed_usec || now - c->failed_usec >= RECLAIM_RETRY_USEC);
}

static bool reclaim_start(HostCtx *h, HostChunk *c, HostRequest *q);

static void returns_retry(HostCtx *h, Pool *p);

void host_pool_changed(HostCtx *h, Pool *p) {
        uint64_t now;

        if (h->stopping || !h->event)
                return;
        if (p->returns_waiting && !g_queue_is_empty(p->returns_waiting))
                returns_retry(h, p);

        /* Refill: allocations up to Reserve= must not wait for the host. */
        if (p->reserve && p->host_jobs == 0 && pool_free_bytes(p) < p->reserve) {
                now = now_usec();
                for (guint i = 0; i < p->chunks->len; i++) {
                        HostChunk *c = p->chunks->pdata[i];
                        if (!c->adopted && chunk_reclaimable(c, now)) {
                                reclaim_start(h, c, NULL);
                                break;
                        }
                }
        }

        if (!p->host_return || p->host_failures >= 3)
                return;
        /* Any change restarts the idle delay: allocation churn does not
         * move memory to the host and back. */
        (void) sd_event_now(h->event, CLOCK_MONOTONIC, &now);
        if (!p->host_timer) {
                if (sd_event_add_time(h->event, &p->host_timer, CLOCK_MONOTONIC, now + p->host_delay_usec, 0,
                                      on_host_timer, p) < 0)
                        return;
        } else
                (void) sd_event_source_set_time(p->host_timer, now + p->host_delay_usec);
        (void) sd_event_source_set_enabled(p->host_timer, SD_EVENT_ONESHOT);
}

/* Picks n windows as if each earlier one were taken, on a copy of the
 * map: all or nothing, nothing changes. Returns how many fit. */
static guint return_plan_in(Pool *p, ExtentMap *m, uint64_t n, bool dirt_ok, GArray *windows) {

        g_array_set_size(windows, 0);
        for (uint64_t i = 0; i < n; i++) {
                DaxRange w;

                if (!return_window(p, m, p->host_chunk, false, dirt_ok, &w))
                        break;
                extent_map_set(m, w.start, w.size, EXTENT_PENDING, NULL);
                g_array_append_val(windows, w);
        }
        extent_map_free(m);
        return windows->len;
}

static guint return_plan(Pool *p, uint64_t n, bool dirt_ok, GArray *windows) {
        return return_plan_in(p, extent_map_copy(p->map), n, dirt_ok, windows);
}

static void returns_start(HostCtx *h, Pool *p, const GArray *windows, uint64_t size, BrokerSizeDone done,
                          void *userdata) {
        HostRequest *q = request_new(false, size, done, userdata);

        for (guint i = 0; i < windows->len; i++)
                if (return_start(h, p, &g_array_index(windows, DaxRange, i), q) < 0)
                        request_finish_one(q, 0, "cannot record the chunk in the state file");
        h->sizes_changed(h->userdata, p);
        request_finish_one(q, 0, NULL);
}

/* A ReturnToHost whose windows hold dirt that must be zeroed first (the
 * host kernel does not zero pages on allocation). */
typedef struct WaitingReturn {
        uint64_t size;
        uint64_t deadline_usec; /* CLOCK_MONOTONIC */
        BrokerSizeDone done;
        void *userdata;
} WaitingReturn;

static void zero_windows_first(HostCtx *h, Pool *p, const GArray *windows) {
        for (guint i = 0; i < windows->len; i++) {
                const DaxRange *w = &g_array_index(windows, DaxRange, i);
                if (window_dirty(p->map, w))
                        h->zero_first(h->userdata, p, w);
        }
}

static int on_returns_timer(sd_event_source *src, uint64_t usec, void *userdata);

/* The call waits, within ReturnTimeout, for what stands in its way. */
static void return_wait(HostCtx *h, Pool *p, uint64_t size, BrokerSizeDone done, void *userdata) {
        WaitingReturn *w = g_new0(WaitingReturn, 1);

        *w = (WaitingReturn) {
                .size = size,
                .deadline_usec = (uint64_t) g_get_monotonic_time() + h->return_timeout_usec,
                .done = done,
                .userdata = userdata,
        };
        if (!p->returns_waiting)
                p->returns_waiting = g_queue_new();
        g_queue_push_tail(p->returns_waiting, w);
}

static void returns_arm(HostCtx *h, Pool *p) {
        uint64_t first = UINT64_MAX;

        for (GList *l = p->returns_waiting ? p->returns_waiting->head : NULL; l; l = l->next)
                first = MIN(first, ((WaitingReturn *) l->data)->deadline_usec);
        if (!h->event)
                return;
        if (first == UINT64_MAX) {
                if (p->returns_timer)
                        (void) sd_event_source_set_enabled(p->returns_timer, SD_EVENT_OFF);
                return;
        }
        if (!p->returns_timer) {
                if (sd_event_add_time(h->event, &p->returns_timer, CLOCK_MONOTONIC, first, 0, on_returns_timer, p) < 0)
                        return;
        } else
                (void) sd_event_source_set_time(p->returns_timer, first);
        (void) sd_event_source_set_enabled(p->returns_timer, SD_EVENT_ONESHOT);
}

/* Waiting returns look again (a chunk was zeroed, memory changed use):
 * start those whose windows are clean now, fail those that no longer fit,
 * fail those whose deadline passed. */
static void returns_retry(HostCtx *h, Pool *p) {
        g_autoptr(GArray) windows = g_array_new(FALSE, FALSE, sizeof(DaxRange));
        uint64_t now = (uint64_t) g_get_monotonic_time();
        unsigned n = p->returns_waiting ? g_queue_get_length(p->returns_waiting) : 0;
        char sz[FORMAT_SIZE_MAX], sz2[FORMAT_SIZE_MAX];

        for (unsigned i = 0; i < n; i++) {
                WaitingReturn *w = g_queue_pop_head(p->returns_waiting);
                uint64_t chunks = w->size / p->host_chunk;
                g_autoptr(GError) e = NULL;

                if (return_plan(p, chunks, h->lend_dirty, windows) == chunks) {
                        log_info("Pool %s: the memory to return to the host is zeroed; returning %s", p->name,
                                 format_size(w->size, sz, sizeof(sz)));
                        returns_start(h, p, windows, w->size, w->done, w->userdata);
                        g_free(w);
                        continue;
                }
                if (w->deadline_usec <= now)
                        e = g_error_new(BROKER_ERROR, BROKER_ERROR_TIMED_OUT,
                                        "Pool %s: the memory to return to the host (%s) was still being zeroed at the "
                                        "call's deadline (AllocateTimeout=)", p->name,
                                        format_size(w->size, sz, sizeof(sz)));
                else if (warm_bytes(p) > 0 && return_plan(p, chunks, true, windows) < chunks) {
                        /* Warm devices (one made meanwhile) still stand in
                         * the way: they go first. */
                        if (warm_ready_bytes(p) > 0)
                                (void) h->warm_give_back(h->userdata, p);
                        g_queue_push_tail(p->returns_waiting, w);
                        continue;
                } else if (return_plan(p, chunks, true, windows) < chunks)
                        e = g_error_new(BROKER_ERROR, BROKER_ERROR_NO_SPACE,
                                        "Pool %s no longer has room for %s of free memory to return to the host "
                                        "(it was taken while being zeroed)", p->name,
                                        format_size(w->size, sz2, sizeof(sz2)));
                if (e) {
                        log_info("ReturnToHost: %s", e->message);
                        w->done(0, e, w->userdata);
                        g_free(w);
                        continue;
                }
                zero_windows_first(h, p, windows);
                g_queue_push_tail(p->returns_waiting, w);
        }
        returns_arm(h, p);
}

static int on_returns_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        Pool *p = userdata;

        returns_retry(p->host, p);
        return 0;
}

bool host_return_to_host(HostCtx *h, Pool *p, uint64_t size, BrokerSizeDone done, void *userdata,
                           GError **error) {
        char sz[FORMAT_SIZE_MAX], sz2[FORMAT_SIZE_MAX];
        g_autoptr(GArray) windows = g_array_new(FALSE, FALSE, sizeof(DaxRange));
        uint64_t n;

        if (!p->host_chunk || !p->block_size) {
                g_set_error(error, BROKER_ERROR, BROKER_ERROR_INVALID_ARGUMENT,
                            "Pool %s cannot return memory to the host (%s)", p->name,
                            p->block_size ? "HostChunk= is not a multiple of the memory block size"
                                          : "the kernel has no memory hotplug");
                return false;
        }
        if (size == 0 || size % p->host_chunk != 0) {
                g_set_error(error, BROKER_ERROR, BROKER_ERROR_INVALID_ARGUMENT,
                            "Size %" G_GUINT64_FORMAT " is not a non-zero multiple of the pool's host chunk, %s", size,
                            format_size(p->host_chunk, sz, sizeof(sz)));
                return false;
        }
        /* All or nothing: pick every window before touching anything.
         * Where the host zeroes pages on allocation, dirt may go as it is. */
        n = size / p->host_chunk;
        if (return_plan(p, n, h->lend_dirty, windows) == n) {
                returns_start(h, p, windows, size, done, userdata);
                return true;
        }
        /* Dirt (after boot, after a release) would make room: it is zeroed
         * first, ahead of other dirt, and the call waits for it. */
        if (!h->lend_dirty && h->event && return_plan(p, n, true, windows) == n) {
                return_wait(h, p, size, done, userdata);
                log_info("Pool %s: returning %s to the host once the memory for it is zeroed (zeroed first)", p->name,
                         format_size(size, sz, sizeof(sz)));
                zero_windows_first(h, p, windows);
                returns_arm(h, p);
                return true;
        }
        /* Warm devices stand in the way: they are given back first, and
         * the call waits for that. */
        if (h->event && warm_ready_bytes(p) > 0 &&
            return_plan_in(p, warm_map_as_free(p), n, true, windows) == n && h->warm_give_back(h->userdata, p)) {
                return_wait(h, p, size, done, userdata);
                log_info("Pool %s: returning %s to the host once its warm devices are given back", p->name,
                         format_size(size, sz, sizeof(sz)));
                returns_arm(h, p);
                return true;
        }
        g_set_error(error, BROKER_ERROR, BROKER_ERROR_NO_SPACE,
                    "Pool %s has room for %u chunks of %s of %s memory, not %s", p->name,
                    return_plan(p, n, h->lend_dirty, windows), format_size(p->host_chunk, sz, sizeof(sz)),
                    h->lend_dirty ? "free" : "clean free", format_size(size, sz2, sizeof(sz2)));
        return false;
}

/* ---- reclaim ---- */

static void reclaim_finish(HostJob *j) {
        HostCtx *h = j->host;
        HostChunk *c = j->chunk;
        Pool *p = c->pool;
        uint64_t size = chunk_size(c);

        p->host_jobs--;
        c->busy = false;
        if (j->err < 0) {
                g_autofree char *msg = job_error(j);

                log_warning("Reclaiming host memory: %s; it stays host memory", msg);
                c->failed_usec = now_usec();
                if (c->adopted && c->recorded) {
                        /* Undone: whole host memory again, as found. */
                        c->recorded = false;
                        if (h->commit(h->userdata, false) < 0)
                                log_warning("Cannot drop the record of the reclaim of %s; start-up will find it "
                                            "whole and keep it as host memory", c->device);
                }
                g_free(p->host_error);
                p->host_error = g_steal_pointer(&msg);
                request_finish_one(j->request, 0, p->host_error);
        } else {
                events_host_reclaimed(p, c->ranges, c->n_ranges, c->device);
                /* It held host data: dirty, zeroed by whoever uses it. */
                chunk_drop(c, EXTENT_DIRTY);
                if (h->commit(h->userdata, true) < 0)
                        log_error("Cannot record the reclaim; start-up will find the chunk gone and zero it");
                request_finish_one(j->request, size, NULL);
                h->dirt_added(h->userdata, p);
        }
        h->sizes_changed(h->userdata, p);
        g_free(j);
        h->memory_freed(h->userdata, p);
        host_pool_changed(h, p);
}

static void reclaim_destroy_done(void *userdata) {
        reclaim_finish(userdata);
}

static void reclaim_offline_done(void *userdata) {
        HostJob *j = userdata;

        if (j->err < 0) {
                reclaim_finish(j);
                return;
        }
        worker_submit(j->host->worker, j->chunk->pool->region_id, reclaim_destroy_work, reclaim_destroy_done, j);
}

static bool reclaim_start(HostCtx *h, HostChunk *c, HostRequest *q) {
        HostJob *j;
        char sz[FORMAT_SIZE_MAX];

        if (c->adopted) {
                /* On record before the kernel is touched, as for chunks of
                 * ours: after a crash start-up puts back online what was
                 * offlined, or finishes removing what was unbound. */
                c->recorded = true;
                if (h->commit(h->userdata, true) < 0) {
                        c->recorded = false;
                        log_error("Pool %s: cannot record the reclaim of %s in the state file; leaving it as host "
                                  "memory", c->pool->name, c->device);
                        if (q) {
                                q->outstanding++;
                                request_finish_one(q, 0, "cannot record the reclaim in the state file");
                        }
                        return false;
                }
                crash_point("reclaim-adopted-recorded");
        }
        j = g_new0(HostJob, 1);
        *j = (HostJob) { .host = h, .chunk = c, .request = q };
        if (q)
                q->outstanding++;
        c->busy = true;
        c->pool->host_jobs++;
        log_info("Pool %s: reclaiming %s (%s) from the host", c->pool->name, c->device,
                 format_size(chunk_size(c), sz, sizeof(sz)));
        worker_submit(h->worker, HOST_LANE(c->pool->region_id), reclaim_offline_work, reclaim_offline_done, j);
        return true;
}

/* Chunks of ours first (onlined movable, they offline), lowest address
 * first (next to the free space VMs use), adopted ones last. */
static gint chunk_cmp(gconstpointer x, gconstpointer y) {
        const HostChunk *a = *(HostChunk *const *) x, *c = *(HostChunk *const *) y;

        if (a->adopted != c->adopted)
                return a->adopted ? 1 : -1;
        return a->ranges[0].start < c->ranges[0].start ? -1 : a->ranges[0].start > c->ranges[0].start;
}

static GPtrArray *reclaim_candidates(Pool *p, bool retry_failed) {
        GPtrArray *l = g_ptr_array_new();
        uint64_t now = retry_failed ? 0 : now_usec();

        for (guint i = 0; i < p->chunks->len; i++)
                if (chunk_reclaimable(p->chunks->pdata[i], now))
                        g_ptr_array_add(l, p->chunks->pdata[i]);
        g_ptr_array_sort(l, chunk_cmp);
        return l;
}

static bool pool_matches(const Pool *p, const AllocateRequest *req) {
        return (!req->pool || strcmp(req->pool, p->name) == 0) &&
               (!req->has_numa_node || req->numa_node == p->numa_node);
}

bool host_reclaim_running(HostCtx *h, const AllocateRequest *req) {
        for (guint i = 0; i < h->pools->len; i++) {
                Pool *p = h->pools->pdata[i];
                if (pool_matches(p, req) && p->host_jobs > 0)
                        return true;
        }
        return false;
}

/* How much a chunk suits the request: 0 within its first colours, 1
 * within its other colours, 2 partly in them, -1 of no use to it. */
static int chunk_rank(const HostChunk *c, const ReclaimWant *w) {
        ColorMask m;

        if (!cache_colors_enabled(&c->pool->colors))
                return 0;
        m = cache_colors_of_ranges(&c->pool->colors, c->ranges, c->n_ranges);
        if (!(m & w->allowed))
                return -1;
        return !(m & ~w->first) ? 0 : !(m & ~(w->first | w->then)) ? 1 : 2;
}

/* The highest colour a chunk lies in: placement adds colours lowest
 * first, so chunks of low colours make the request fit soonest. */
static int chunk_top_color(const HostChunk *c) {
        ColorMask m;

        if (!cache_colors_enabled(&c->pool->colors))
                return 0;
        m = cache_colors_of_ranges(&c->pool->colors, c->ranges, c->n_ranges);
        return m ? 63 - __builtin_clzll((unsigned long long) m) : 0;
}

typedef struct RankedChunk {
        HostChunk *chunk;
        int rank, top;
} RankedChunk;

static gint ranked_cmp(gconstpointer x, gconstpointer y) {
        const RankedChunk *a = x, *c = y;

        if (a->rank != c->rank)
                return a->rank < c->rank ? -1 : 1;
        if (a->top != c->top)
                return a->top < c->top ? -1 : 1;
        return chunk_cmp(&a->chunk, &c->chunk);
}

bool host_reclaim_for(HostCtx *h, Pool *p, const ReclaimWant *w) {
        g_autoptr(GPtrArray) cands = reclaim_candidates(p, false);
        g_autoptr(GArray) ranked = g_array_new(FALSE, FALSE, sizeof(RankedChunk));
        ExtentMap *m;
        guint k;
        bool fits = false;

        for (guint i = 0; i < cands->len; i++) {
                RankedChunk r = { cands->pdata[i], chunk_rank(cands->pdata[i], w), chunk_top_color(cands->pdata[i]) };
                if (r.rank >= 0)
                        g_array_append_val(ranked, r);
        }
        g_array_sort(ranked, ranked_cmp);
        /* The fewest chunks, in order, that make the request fit, placed
         * by the request's own rules on the map as it would be with
         * them back (bare dirt until zeroed). */
        m = extent_map_copy(p->map);
        for (k = 0; k < ranked->len && !fits; k++) {
                g_autoptr(GArray) held = g_array_new(FALSE, FALSE, sizeof(DaxRange));

                chunk_held(g_array_index(ranked, RankedChunk, k).chunk, held);
                (void) extent_map_set_ranges(m, (DaxRange *) held->data, held->len, EXTENT_DIRTY, NULL);
                fits = w->fits(w->userdata, p, m);
        }
        extent_map_free(m);
        if (!fits)
                return false;
        for (guint q = 0; q < k; q++)
                reclaim_start(h, g_array_index(ranked, RankedChunk, q).chunk, NULL);
        return true;
}

bool host_reclaim_from_host(HostCtx *h, Pool *p, uint64_t size, BrokerSizeDone done, void *userdata,
                              GError **error) {
        g_autoptr(GPtrArray) cands = reclaim_candidates(p, true);
        char sz[FORMAT_SIZE_MAX], sz2[FORMAT_SIZE_MAX];
        uint64_t planned = 0, host = extent_map_total(p->map, EXTENT_HOST);
        HostRequest *q;

        if (size == 0 || size % (2 * MiB) != 0) {
                g_set_error(error, BROKER_ERROR, BROKER_ERROR_INVALID_ARGUMENT,
                            "Size %" G_GUINT64_FORMAT " is not a non-zero multiple of 2 MiB", size);
                return false;
        }
        if (size > host) {
                g_set_error(error, BROKER_ERROR, BROKER_ERROR_NO_SPACE, "Pool %s has only %s of host memory, not %s",
                            p->name, format_size(host, sz, sizeof(sz)), format_size(size, sz2, sizeof(sz2)));
                return false;
        }
        for (guint i = 0; i < cands->len; i++)
                planned += chunk_size(cands->pdata[i]);
        if (planned < size) {
                g_set_error(error, BROKER_ERROR, BROKER_ERROR_BUSY,
                            "Only %s of pool %s's host memory can be reclaimed now; the rest is being moved to or "
                            "from the host", format_size(planned, sz, sizeof(sz)), p->name);
                return false;
        }
        q = request_new(true, size, done, userdata);
        planned = 0;
        for (guint i = 0; i < cands->len && planned < size; i++) {
                planned += chunk_size(cands->pdata[i]);
                reclaim_start(h, cands->pdata[i], q);
        }
        request_finish_one(q, 0, NULL);
        return true;
}

/* ---- start-up ---- */

void host_adopt(HostCtx *h, Pool *p, const DaxDeviceInfo *d) {
        HostChunk *c = chunk_new(p, d->ranges, d->n_ranges, d->name, false, EXTENT_HOST);

        c->adopted = true;
}

/* Brings a recorded chunk whose return or reclaim was cut short to a
 * whole state: all online (host) or gone (dirty). */
static bool recorded_chunk_settle(HostCtx *h, Pool *p, const DaxDeviceInfo *d) {
        DaxBackend *be = h->backend;
        _cleanup_free_ DaxMemBlock *blocks = NULL;
        const char *step = NULL;
        size_t n = 0, online = 0;
        int r;

        if (d->driver == DAX_DRIVER_KMEM && be->ops->list_memory_blocks(be, d->name, &blocks, &n) >= 0) {
                for (size_t i = 0; i < n; i++)
                        online += blocks[i].online;
                if (online > 0) {
                        for (size_t i = 0; i < n; i++)
                                if (!blocks[i].online && (r = be->ops->set_memory_block(be, blocks[i].id, true, 0)) < 0)
                                        log_warning("Host chunk %s: cannot online memory%" G_GUINT64_FORMAT ": %s",
                                                    d->name, blocks[i].id, g_strerror(-r));
                        if (online < n)
                                log_info("Host chunk %s: %zu of %zu memory blocks were offline (cut short); "
                                         "onlined them again", d->name, n - online, n);
                        return true;
                }
        } else if (d->driver == DAX_DRIVER_KMEM)
                return true; /* cannot tell: leave it bound rather than risk stranding it */

        /* Wholly offline, unbound, or some other driver: the chunk goes. */
        r = kernel_destroy(be, d->name, &step);
        if (r < 0) {
                log_error("Host chunk %s: cannot remove it while %s: %s; it stays host memory", d->name, step,
                          g_strerror(-r));
                return true;
        }
        log_info("Host chunk %s was cut short while %s; removed it, its memory is zeroed before use", d->name,
                 d->driver == DAX_DRIVER_KMEM ? "being reclaimed" : "being returned");
        return false;
}

/* The record lies inside one of the device's ranges. */
static bool record_in_device(const RegionRange *rec, const DaxDeviceInfo *d) {
        for (unsigned q = 0; q < d->n_ranges; q++)
                if (rec->start >= d->ranges[q].start &&
                    rec->start + rec->size <= d->ranges[q].start + d->ranges[q].size)
                        return true;
        return false;
}

void host_reconcile(HostCtx *h, Pool *p, const GArray *records, DaxDeviceInfo *devs, size_t nd, bool *claimed,
                    bool new_boot, GArray *dirty) {
        g_autofree bool *used = g_new0(bool, records->len + 1);

        /* A device holding recorded host memory: a chunk of ours, or an
         * adopted one whose reclaim was under way (recorded are the bytes
         * it held; a restored allocation may own the rest of it). */
        for (size_t k = 0; k < nd; k++) {
                bool any = false;

                /* After a reboot every recorded chunk died with the boot. */
                if (new_boot || claimed[k] || devs[k].size == 0)
                        continue;
                for (guint i = 0; i < records->len; i++) {
                        const RegionRange *rec = &g_array_index(records, RegionRange, i);
                        if (!used[i] && rec->region_id == p->region_id && record_in_device(rec, &devs[k]))
                                any = true;
                }
                if (!any)
                        continue;
                /* A device that someone else has open is not ours to remove. */
                if (devs[k].driver == DAX_DRIVER_DEVICE_DAX && h->backend->ops->device_in_use(h->backend, devs[k].name) != 0)
                        continue;
                for (guint i = 0; i < records->len; i++) {
                        const RegionRange *rec = &g_array_index(records, RegionRange, i);
                        if (rec->region_id == p->region_id && record_in_device(rec, &devs[k]))
                                used[i] = true;
                }
                claimed[k] = true;
                if (recorded_chunk_settle(h, p, &devs[k])) {
                        /* Ours are one range of HostChunk=; anything else was
                         * adopted and is again, whole host memory as found. */
                        bool ours = devs[k].instance != 0 && devs[k].n_ranges == 1 && devs[k].size == p->host_chunk;
                        HostChunk *c = chunk_new(p, devs[k].ranges, devs[k].n_ranges, devs[k].name, ours, EXTENT_HOST);

                        c->adopted = !ours;
                        if (!ours)
                                log_info("%s: %s was being reclaimed from the host when daxbroker stopped; it is "
                                         "whole host memory again", p->name, devs[k].name);
                } else
                        for (unsigned q = 0; q < devs[k].n_ranges; q++) {
                                DaxRange r = devs[k].ranges[q];
                                g_array_append_val(dirty, r);
                        }
        }
        for (guint i = 0; i < records->len; i++) {
                const RegionRange *rec = &g_array_index(records, RegionRange, i);
                DaxRange r = { rec->start, rec->size };

                if (used[i] || rec->region_id != p->region_id)
                        continue;
                /* The device is gone (reclaim finished, or it never got
                 * made): the host may have written there. */
                log_info("Host chunk at %#" G_GINT64_MODIFIER "x has no device any more; its memory is "
                         "zeroed before use", rec->start);
                g_array_append_val(dirty, r);
        }
}

int host_reclaim_device_now(HostCtx *h, Pool *p, const DaxDeviceInfo *d, char **ret_error) {
        HostChunk c = { .pool = p, .n_ranges = d->n_ranges, .recorded = false };
        HostJob j = { .host = h, .chunk = &c };

        memcpy(c.ranges, d->ranges, d->n_ranges * sizeof(DaxRange));
        g_strlcpy(c.device, d->name, sizeof(c.device));
        reclaim_offline_work(&j);
        if (j.err >= 0)
                reclaim_destroy_work(&j);
        if (j.err < 0) {
                *ret_error = job_error(&j);
                return j.err;
        }
        return 0;
}

int host_reclaim_overlapping(HostCtx *h, Pool *p, const DaxRange *r, size_t n) {
        int found = 0;

        for (guint i = 0; i < p->chunks->len; i++) {
                HostChunk *c = p->chunks->pdata[i];

                if (!ranges_overlap(c->ranges, c->n_ranges, r, n))
                        continue;
                found = 1;
                if (chunk_reclaimable(c, 0) && !h->stopping)
                        reclaim_start(h, c, NULL);
        }
        return found;
}

void host_take_back(HostCtx *h, Pool *p, const DaxRange *r, size_t n) {
        for (guint i = 0; i < p->chunks->len; i++) {
                HostChunk *c = p->chunks->pdata[i];

                for (unsigned q = 0; q < c->n_ranges; q++)
                        for (size_t k = 0; k < n; k++) {
                                uint64_t s = max_u64(c->ranges[q].start, r[k].start);
                                uint64_t t = min_u64(c->ranges[q].start + c->ranges[q].size, r[k].start + r[k].size);

                                if (s < t)
                                        (void) extent_map_set(p->map, s, t - s, EXTENT_HOST, c);
                        }
        }
}

bool host_overlaps(HostCtx *h, Pool *p, const DaxRange *r, size_t n) {
        for (guint i = 0; i < p->chunks->len; i++) {
                const HostChunk *c = p->chunks->pdata[i];
                if (ranges_overlap(c->ranges, c->n_ranges, r, n))
                        return true;
        }
        return false;
}
