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
#include "util.h"

typedef struct HostChunk {
        Pool *pool;
        unsigned n_ranges;
        DaxRange ranges[DAX_RANGES_MAX];
        char device[DAX_NAME_MAX]; /* "" while being created */
        bool recorded;             /* ours, in state.json; false: adopted */
        bool busy;                 /* a return or reclaim is running */
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
                        RegionRange r = { p->region_id, c->ranges[0].start, c->ranges[0].size };

                        if (c->recorded)
                                g_array_append_val(host, r);
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
                crash_point("reclaim-offline");
        }
        crash_point("reclaim-offlined");

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

        crash_op_begin("reclaim");
        r = be->ops->unbind(be, j->chunk->device);
        if (r < 0) {
                j->err = r;
                j->step = "unbinding kmem";
                return;
        }
        crash_point("reclaim-unbound");
        r = kernel_destroy(be, j->chunk->device, &j->step);
        if (r < 0) {
                j->err = r;
                return;
        }
        j->gone = true;
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
                        chunk_drop(c, j->host_wrote ? EXTENT_DIRTY : EXTENT_FREE);
                else /* some blocks stayed online: host memory after all */
                        extent_map_set_ranges(p->map, c->ranges, c->n_ranges, EXTENT_HOST, c);
                (void) h->commit(h->userdata, true);
                request_finish_one(j->request, 0, msg);
        } else {
                extent_map_set_ranges(p->map, c->ranges, c->n_ranges, EXTENT_HOST, c);
                events_host_returned(p, c->ranges, c->n_ranges, c->device);
                p->host_failures = 0;
                (void) h->commit(h->userdata, true);
                request_finish_one(j->request, size, NULL);
        }
        h->sizes_changed(h->userdata, p);
        if (j->err < 0)
                h->dirt_added(h->userdata, p);
        g_free(j);
        /* An allocation may have been waiting for host jobs to finish. */
        h->memory_freed(h->userdata, p);
}

/* Where a chunk of clean free memory goes: block aligned (and on the
 * pool's boundary), as high as possible, so that VMs keep the low, long
 * free runs; never so that the largest free run drops below Reserve=. */
static bool return_window(Pool *p, uint64_t chunk, bool keep_reserve, DaxRange *ret) {
        for (size_t e = extent_map_count(p->map); e-- > 0;) {
                const Extent *x = extent_map_get(p->map, e);
                uint64_t s;

                if (x->kind != EXTENT_FREE || x->size < chunk)
                        continue;
                /* Blocks are physical; the boundary counts from the pool
                 * start. Step down until both hold. */
                s = round_down_u64(x->start + x->size - chunk, p->block_size);
                while (s >= x->start && p->boundary && (s - p->start) % p->boundary != 0)
                        s = round_down_u64(p->start + round_down_u64(s - p->start, p->boundary), p->block_size);
                if (s < x->start || s + chunk > x->start + x->size)
                        continue;
                if (keep_reserve) {
                        bool ok;

                        extent_map_set(p->map, s, chunk, EXTENT_HOST, NULL);
                        ok = extent_map_largest_free(p->map, 2 * MiB, p->boundary) >= p->reserve;
                        extent_map_set(p->map, s, chunk, EXTENT_FREE, NULL);
                        if (!ok)
                                continue;
                }
                *ret = (DaxRange) { s, chunk };
                return true;
        }
        return false;
}

static int return_start(HostCtx *h, Pool *p, const DaxRange *w, HostRequest *q) {
        HostChunk *c = chunk_new(p, w, 1, NULL, true, EXTENT_PENDING);
        HostJob *j;

        c->busy = true;
        /* On record before the device exists: after a crash start-up finds
         * it (and zeroes what the host may have written). */
        if (h->commit(h->userdata, false) < 0) {
                chunk_drop(c, EXTENT_FREE);
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

static uint64_t pool_free_bytes(const Pool *p) {
        return extent_map_total(p->map, EXTENT_FREE) + extent_map_total_bare_dirty(p->map);
}

/* The idle delay is over: return chunks while the pool keeps Reserve=. */
static void host_return_idle(HostCtx *h, Pool *p) {
        DaxRange w;

        /* Memory is on its way back for an allocation: returning other
         * memory now would be the thrashing the delay is there to stop. */
        if (p->host_jobs > 0 || h->allocations_waiting(h->userdata))
                return;
        /* Zeroing is still going on: the pool is not idle, and the memory
         * it frees may make a better place for the chunk. */
        if (extent_map_total(p->map, EXTENT_DIRTY) > 0)
                return;

        while (!h->stopping && p->host_return && p->host_failures < 3 &&
               pool_free_bytes(p) >= p->host_chunk + p->reserve && return_window(p, p->host_chunk, true, &w))
                if (return_start(h, p, &w, NULL) < 0)
                        break;
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

static void reclaim_start(HostCtx *h, HostChunk *c, HostRequest *q);

void host_pool_changed(HostCtx *h, Pool *p) {
        uint64_t now;

        if (h->stopping || !h->event)
                return;

        /* Refill: allocations up to Reserve= must not wait for the host. */
        if (p->reserve && p->host_jobs == 0 && pool_free_bytes(p) < p->reserve) {
                now = now_usec();
                for (guint i = 0; i < p->chunks->len; i++) {
                        HostChunk *c = p->chunks->pdata[i];
                        if (c->recorded && chunk_reclaimable(c, now)) {
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

bool host_return_to_host(HostCtx *h, Pool *p, uint64_t size, BrokerSizeDone done, void *userdata,
                           GError **error) {
        char sz[FORMAT_SIZE_MAX], sz2[FORMAT_SIZE_MAX];
        g_autoptr(GArray) windows = g_array_new(FALSE, FALSE, sizeof(DaxRange));
        uint64_t n;
        HostRequest *q;

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
        /* All or nothing: pick every window before touching anything. */
        n = size / p->host_chunk;
        for (uint64_t i = 0; i < n; i++) {
                DaxRange w;

                if (!return_window(p, p->host_chunk, false, &w))
                        break;
                extent_map_set(p->map, w.start, w.size, EXTENT_PENDING, NULL);
                g_array_append_val(windows, w);
        }
        for (guint i = 0; i < windows->len; i++) {
                DaxRange *w = &g_array_index(windows, DaxRange, i);
                extent_map_set(p->map, w->start, w->size, EXTENT_FREE, NULL);
        }
        if (windows->len < n) {
                g_set_error(error, BROKER_ERROR, BROKER_ERROR_NO_SPACE,
                            "Pool %s has room for %u chunks of %s of clean free memory, not %s", p->name,
                            windows->len, format_size(p->host_chunk, sz, sizeof(sz)), format_size(size, sz2, sizeof(sz2)));
                return false;
        }

        q = request_new(false, size, done, userdata);
        for (guint i = 0; i < windows->len; i++)
                if (return_start(h, p, &g_array_index(windows, DaxRange, i), q) < 0)
                        request_finish_one(q, 0, "cannot record the chunk in the state file");
        h->sizes_changed(h->userdata, p);
        request_finish_one(q, 0, NULL);
        return true;
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

static void reclaim_start(HostCtx *h, HostChunk *c, HostRequest *q) {
        HostJob *j = g_new0(HostJob, 1);
        char sz[FORMAT_SIZE_MAX];

        *j = (HostJob) { .host = h, .chunk = c, .request = q };
        if (q)
                q->outstanding++;
        c->busy = true;
        c->pool->host_jobs++;
        log_info("Pool %s: reclaiming %s (%s) from the host", c->pool->name, c->device,
                 format_size(chunk_size(c), sz, sizeof(sz)));
        worker_submit(h->worker, HOST_LANE(c->pool->region_id), reclaim_offline_work, reclaim_offline_done, j);
}

/* Chunks of ours first (onlined movable, they offline), lowest address
 * first (next to the free space VMs use), adopted ones last. */
static gint chunk_cmp(gconstpointer x, gconstpointer y) {
        const HostChunk *a = *(HostChunk *const *) x, *c = *(HostChunk *const *) y;

        if (a->recorded != c->recorded)
                return a->recorded ? -1 : 1;
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

bool host_reclaim_for(HostCtx *h, const AllocateRequest *req) {
        for (guint i = 0; i < h->pools->len; i++) {
                Pool *p = h->pools->pdata[i];
                uint64_t align = req->align ? req->align : p->align;
                PlacementRequest pr = {
                        .size = req->size,
                        .align = align,
                        .boundary = p->boundary,
                        .contiguous = req->contiguous,
                        .max_ranges = h->max_ranges,
                        .include_dirty = true,
                };
                g_autoptr(GPtrArray) cands = NULL;
                g_autoptr(GArray) extra = NULL;
                DaxRange ranges[DAX_RANGES_MAX];
                guint k;
                bool fits = false;

                if (!pool_matches(p, req) || req->size % max_u64(max_u64(align, p->boundary), 2 * MiB))
                        continue;
                cands = reclaim_candidates(p, false);
                extra = g_array_new(FALSE, FALSE, sizeof(DaxRange));
                /* The fewest chunks, in order, that make the request fit. */
                for (k = 0; k < cands->len && !fits; k++) {
                        chunk_held(cands->pdata[k], extra);
                        fits = extent_map_place_as_free(p->map, (DaxRange *) extra->data, extra->len, &pr, ranges,
                                                        DAX_RANGES_MAX) > 0;
                }
                if (!fits)
                        continue;
                for (guint q = 0; q < k; q++)
                        reclaim_start(h, cands->pdata[q], NULL);
                return true;
        }
        return false;
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
        chunk_new(p, d->ranges, d->n_ranges, d->name, false, EXTENT_HOST);
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

void host_reconcile(HostCtx *h, Pool *p, const GArray *records, DaxDeviceInfo *devs, size_t nd, bool *claimed,
                    GArray *dirty) {
        for (guint i = 0; i < records->len; i++) {
                const RegionRange *rec = &g_array_index(records, RegionRange, i);
                DaxRange r = { rec->start, rec->size };
                bool found = false;

                if (rec->region_id != p->region_id)
                        continue;
                for (size_t k = 0; k < nd && !found; k++) {
                        if (claimed[k] || devs[k].instance == 0 || !ranges_equal(devs[k].ranges, devs[k].n_ranges, &r, 1))
                                continue;
                        claimed[k] = found = true;
                        if (recorded_chunk_settle(h, p, &devs[k]))
                                chunk_new(p, &r, 1, devs[k].name, true, EXTENT_HOST);
                        else
                                g_array_append_val(dirty, r);
                }
                if (!found) {
                        /* The device is gone (reclaim finished, or it never
                         * got made): the host may have written there. */
                        log_info("Host chunk at %#" G_GINT64_MODIFIER "x has no device any more; its memory is "
                                 "zeroed before use", rec->start);
                        g_array_append_val(dirty, r);
                }
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
