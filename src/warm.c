/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker-private.h"
#include "events.h"
#include "log.h"
#include "owners.h"
#include "util.h"
#include "warm.h"

/* Refills wait for the pool to be quiet this long, so that a burst of
 * requests is not queued behind kernel work for the next one. */
#define WARM_DELAY_USEC (50 * 1000ULL)
/* At most this many warm devices of one size. */
#define WARM_PER_SIZE_MAX 32
/* Fills that failed in a row before the pool stops trying until a
 * configuration reload or a successful operation. */
#define WARM_FAILURES_MAX 3
/* At most this many hand-overs share one durable save: under a steady
 * stream of calls the loop may never be idle, and the first caller of a
 * group waits for the last. */
#define WARM_COMMIT_MAX 32

typedef struct WarmJob {
        Broker *broker;
        Allocation *allocation;
        KernelResult res;
        int err;
        const char *step;
        char name[DAX_NAME_MAX];
} WarmJob;

/* A hand-over waiting for the save that records it. */
typedef struct HandOver {
        Allocation *allocation;
        /* The record the allocation gets at the commit (a copy of the warm
         * one, the caller's); after the commit, the warm one it had. */
        AllocationRecord *rec;
        bool has_device_owner;
        uid_t device_uid;
        gid_t device_gid;
        BrokerAllocateDone done;
        void *userdata;
} HandOver;

static void warm_allocation_free(Allocation *a) {
        if (!a)
                return;
        allocation_record_free(a->rec);
        g_free(a->restore_message);
        g_free(a);
}

void warm_pool_configure(Pool *p, const PoolConfig *pc) {
        p->warm_budget = pc ? pc->warm_budget : DEFAULT_WARM_BUDGET;
        p->n_warm_sizes = pc ? pc->n_warm_sizes : 0;
        if (pc)
                memcpy(p->warm_sizes, pc->warm_sizes, sizeof(p->warm_sizes));
        p->warm_failures = 0;
}

void warm_pool_init(Pool *p, const PoolConfig *pc) {
        p->warm = g_ptr_array_new();
        warm_pool_configure(p, pc);
}

void warm_pool_done(Pool *p) {
        if (!p->warm)
                return;
        sd_event_source_disable_unref(p->warm_timer);
        p->warm_timer = NULL;
        for (guint i = 0; i < p->warm->len; i++)
                warm_allocation_free(p->warm->pdata[i]);
        g_ptr_array_free(p->warm, TRUE);
        p->warm = NULL;
}

bool warm_ready(const Allocation *a) {
        return a->rec->warm && !a->busy && a->rec->state == ALLOCATION_ACTIVE && a->rec->device;
}

/* Being made, ready or being given back: free memory to callers. One
 * whose removal failed is neither free nor handed out. */
static bool warm_counted(const Allocation *a) {
        return a->busy || a->rec->state != ALLOCATION_RELEASING;
}

static uint64_t warm_sum(const Pool *p, bool (*pick)(const Allocation *a)) {
        uint64_t n = 0;

        for (guint i = 0; p->warm && i < p->warm->len; i++)
                if (pick(p->warm->pdata[i]))
                        n += allocation_size(p->warm->pdata[i]);
        return n;
}

uint64_t warm_bytes(const Pool *p) {
        return warm_sum(p, warm_counted);
}

uint64_t warm_ready_bytes(const Pool *p) {
        return warm_sum(p, warm_ready);
}

bool warm_holds(const Pool *p, const void *tag) {
        for (guint i = 0; tag && p->warm && i < p->warm->len; i++)
                if (p->warm->pdata[i] == tag)
                        return warm_counted(tag);
        return false;
}

ExtentMap *warm_map_as_free(const Pool *p) {
        ExtentMap *m = extent_map_copy(p->map);

        for (guint i = 0; i < p->warm->len; i++) {
                Allocation *a = p->warm->pdata[i];
                if (warm_counted(a))
                        extent_map_set_ranges(m, a->rec->ranges, a->rec->n_ranges, EXTENT_FREE, NULL);
        }
        return m;
}

void warm_collect(Broker *b, GPtrArray *recs) {
        for (guint i = 0; i < b->pools->len; i++) {
                Pool *p = b->pools->pdata[i];

                for (guint k = 0; p->warm && k < p->warm->len; k++)
                        g_ptr_array_add(recs, ((Allocation *) p->warm->pdata[k])->rec);
        }
        /* As they are: warm until the commit swaps their records. */
        for (guint i = 0; b->handovers && i < b->handovers->len; i++)
                g_ptr_array_add(recs, ((HandOver *) b->handovers->pdata[i])->allocation->rec);
}

void warm_adopt(Broker *b) {
        g_autoptr(GPtrArray) all = broker_list_allocations(b);

        for (guint i = 0; i < all->len; i++) {
                Allocation *a = all->pdata[i];

                if (!a->rec->warm)
                        continue;
                owners_index_remove(b, a->rec);
                g_hash_table_steal(b->allocations, a->rec->id);
                if (a->restore != ALLOCATION_RESTORED) {
                        /* Not reachable (warm records are transient, so
                         * one without its device is dropped), but never
                         * hand over a device that is not there. */
                        extent_map_set_ranges(a->pool->map, a->rec->ranges, a->rec->n_ranges, EXTENT_DIRTY, NULL);
                        warm_allocation_free(a);
                        continue;
                }
                log_info("Pool %s: adopted warm device %s (%" G_GUINT64_FORMAT " MiB)", a->pool->name, a->rec->device,
                         allocation_size(a) >> 20);
                g_ptr_array_add(a->pool->warm, a);
                /* Its size was learned from requests before the restart:
                 * keep it rather than give the device back at once. */
                warm_note_request(a->pool, allocation_size(a));
        }
}

/* ---- which sizes ---- */

void warm_note_request(Pool *p, uint64_t size) {
        unsigned i;

        for (i = 0; i < p->n_warm_recent && p->warm_recent[i] != size; i++)
                ;
        if (i == p->n_warm_recent && p->n_warm_recent < WARM_SIZES_MAX)
                p->n_warm_recent++;
        if (i == p->n_warm_recent)
                i--;
        memmove(&p->warm_recent[1], &p->warm_recent[0], i * sizeof(uint64_t));
        p->warm_recent[0] = size;
}

static uint64_t warm_budget(const Pool *p) {
        /* A pool with cache colours places every allocation by colour: a
         * device made ahead of the request cannot know its colours. */
        if (p->colors.n > 0)
                return 0;
        /* Where idle memory goes to the host, the warm set is part of the
         * memory the pool keeps for VMs, never memory the host would get. */
        return p->host_return ? MIN(p->warm_budget, p->reserve) : p->warm_budget;
}

/* How many devices of each size the pool should hold: the sizes in
 * turn, one more of each per round, while the budget lasts. */
static unsigned warm_plan(const Pool *p, const uint64_t **ret_sizes, unsigned want[WARM_SIZES_MAX]) {
        const uint64_t *sizes = p->n_warm_sizes ? p->warm_sizes : p->warm_recent;
        unsigned n = p->n_warm_sizes ? p->n_warm_sizes : p->n_warm_recent;
        uint64_t granule = MAX(MAX(p->align, p->boundary), 2 * MiB), used = 0, budget = warm_budget(p);

        memset(want, 0, WARM_SIZES_MAX * sizeof(unsigned));
        for (unsigned round = 0; round < WARM_PER_SIZE_MAX; round++) {
                bool any = false;

                for (unsigned i = 0; i < n; i++)
                        if (sizes[i] % granule == 0 && used + sizes[i] <= budget) {
                                want[i]++;
                                used += sizes[i];
                                any = true;
                        }
                if (!any)
                        break;
        }
        *ret_sizes = sizes;
        return n;
}

/* The highest place for size bytes in clean free memory: warm devices
 * collect at the top of the pool, away from the bottom where best fit
 * puts allocations in an empty pool, just under host chunks. */
static bool warm_place_top(const Pool *p, uint64_t size, uint64_t align, DaxRange *ret) {
        uint64_t base = extent_map_start(p->map);

        for (size_t e = extent_map_count(p->map); e-- > 0;) {
                const Extent *x = extent_map_get(p->map, e);
                uint64_t start;

                if (x->kind != EXTENT_FREE || x->size < size)
                        continue;
                start = x->start + x->size - size;
                for (int k = 0; k < 8; k++) {
                        uint64_t s = start / align * align;

                        if (p->boundary)
                                s = base + (s - base) / p->boundary * p->boundary;
                        if (s == start)
                                break;
                        start = s;
                }
                if (start < x->start || start % align != 0 ||
                    (p->boundary && (start - base) % p->boundary != 0))
                        continue;
                *ret = (DaxRange) { start, size };
                return true;
        }
        return false;
}

/* ---- fill ---- */

static void fill_work(void *data) {
        WarmJob *j = data;
        const AllocationRecord *r = j->allocation->rec;
        const char *ignored;

        crash_op_begin("warmfill");
        kernel_create(j->broker->backend, r->region_id, r->align, r->ranges, r->n_ranges, &j->res);
        if (j->res.err < 0) {
                j->err = j->res.err;
                j->step = j->res.step;
                return;
        }
        /* Nobody but root may open it until it is handed over, whatever
         * udev rules say about new nodes. */
        if (fchown(j->res.fd, 0, 0) < 0 || fchmod(j->res.fd, 0600) < 0) {
                j->err = -errno;
                j->step = "making the device node root's, mode 0600";
        } else
                crash_point("warmfill-owned");
        close(j->res.fd);
        j->res.fd = -1;
        if (j->err < 0)
                (void) kernel_destroy(j->broker->backend, j->res.name, &ignored);
}

static void fill_done(void *data) {
        WarmJob *j = data;
        Broker *b = j->broker;
        Allocation *a = j->allocation;
        Pool *p = a->pool;

        p->warm_jobs--;
        a->busy = false;
        if (j->err < 0) {
                log_warning("Pool %s: cannot make a warm device: the kernel refused while %s: %s", p->name, j->step,
                            g_strerror(-j->err));
                /* Nobody wrote there, but a half-made device is not proof
                 * enough: zero it before use. */
                g_autofree char *id = g_strdup(a->rec->id);

                extent_map_set_ranges(p->map, a->rec->ranges, a->rec->n_ranges, EXTENT_DIRTY, NULL);
                g_ptr_array_remove(p->warm, a);
                warm_allocation_free(a);
                p->warm_failures++;
                (void) broker_save_gone(b, id, 0, NULL);
                broker_scrub_later(b);
        } else {
                a->rec->device = g_strdup(j->res.name);
                a->rec->state = ALLOCATION_ACTIVE;
                extent_map_set_ranges(p->map, a->rec->ranges, a->rec->n_ranges, EXTENT_ALLOCATED, a);
                p->warm_failures = 0;
                /* No fsync: the device does not survive the power cut
                 * that would lose the record. */
                if (broker_save_changed(b, a->rec, 0, NULL) < 0)
                        log_warning("Pool %s: cannot record warm device %s; it is adopted or removed at the next start",
                                    p->name, a->rec->device);
        }
        broker_notify_sizes(b, p);
        g_free(j);
        /* Requests waiting for room look again: this one is given back
         * if it stands in their way. */
        if (!g_queue_is_empty(b->waiting))
                broker_waiting_retry(b);
        if (p->returns_waiting && !g_queue_is_empty(p->returns_waiting))
                host_pool_changed(&b->host, p);
        warm_later(b, p);
}

static char *warm_new_id(Broker *b) {
        for (;;) {
                char *id = g_strdup_printf("%08x%08x", g_random_int(), g_random_int());
                bool taken = g_hash_table_contains(b->allocations, id);

                for (guint i = 0; !taken && i < b->handovers->len; i++)
                        taken = strcmp(((HandOver *) b->handovers->pdata[i])->rec->id, id) == 0;

                for (guint i = 0; !taken && i < b->pools->len; i++) {
                        Pool *p = b->pools->pdata[i];
                        for (guint k = 0; !taken && k < p->warm->len; k++)
                                taken = strcmp(((Allocation *) p->warm->pdata[k])->rec->id, id) == 0;
                }
                if (!taken)
                        return id;
                g_free(id);
        }
}

static bool fill_start(Broker *b, Pool *p, const DaxRange *range) {
        g_autoptr(GError) error = NULL;
        AllocationRecord *rec = allocation_record_new();
        Allocation *a = g_new0(Allocation, 1);
        WarmJob *j;

        rec->id = warm_new_id(b);
        rec->owner = g_strdup(WARM_OWNER);
        rec->owner_uid = 0;
        rec->label = g_strdup(rec->id);
        rec->pool = g_strdup(p->name);
        rec->region_id = p->region_id;
        rec->align = p->align;
        rec->created_usec = now_usec();
        rec->transient = true;
        rec->warm = true;
        rec->state = ALLOCATION_CREATING;
        rec->n_ranges = 1;
        rec->ranges[0] = *range;
        a->rec = rec;
        a->pool = p;
        a->busy = true;
        if (extent_map_set_ranges(p->map, rec->ranges, 1, EXTENT_PENDING, a) < 0) {
                warm_allocation_free(a);
                return false;
        }
        g_ptr_array_add(p->warm, a);
        /* On record before the kernel is touched: a crash is rolled back. */
        if (broker_save_changed(b, rec, 0, &error) < 0) {
                log_warning("Pool %s: cannot record a warm device: %s", p->name, error->message);
                extent_map_set_ranges(p->map, rec->ranges, 1, EXTENT_FREE, NULL);
                g_ptr_array_remove(p->warm, a);
                warm_allocation_free(a);
                p->warm_failures++;
                return false;
        }
        j = g_new0(WarmJob, 1);
        *j = (WarmJob) { .broker = b, .allocation = a, .res.fd = -1 };
        p->warm_jobs++;
        worker_submit(b->worker, p->region_id, fill_work, fill_done, j);
        broker_notify_sizes(b, p);
        return true;
}

/* ---- give back ---- */

static void give_back_work(void *data) {
        WarmJob *j = data;

        crash_op_begin("giveback");
        j->err = kernel_destroy(j->broker->backend, j->name, &j->step);
}

static void give_back_done(void *data) {
        WarmJob *j = data;
        Broker *b = j->broker;
        Allocation *a = j->allocation;
        Pool *p = a->pool;

        p->warm_jobs--;
        p->warm_returning--;
        a->busy = false;
        if (j->err < 0) {
                /* Stays on record as releasing: start-up finishes it. It
                 * is not free, and not handed out. */
                log_error("Pool %s: cannot remove warm device %s: the kernel refused while %s: %s", p->name, j->name,
                          j->step, g_strerror(-j->err));
        } else {
                g_autofree char *id = g_strdup(a->rec->id);

                /* Made of clean memory and never handed to anyone. */
                extent_map_set_ranges(p->map, a->rec->ranges, a->rec->n_ranges, EXTENT_FREE, NULL);
                g_ptr_array_remove(p->warm, a);
                warm_allocation_free(a);
                /* A lost removal leaves a releasing record, which start-up
                 * finishes (and zeroes once more): no fsync needed. */
                (void) broker_save_gone(b, id, 0, NULL);
        }
        g_free(j);
        broker_notify_sizes(b, p);
        if (p->warm_returning == 0) {
                broker_waiting_retry(b);
                host_pool_changed(&b->host, p);
        }
        warm_later(b, p);
}

static void give_back_start(Broker *b, Allocation *a) {
        WarmJob *j = g_new0(WarmJob, 1);

        *j = (WarmJob) { .broker = b, .allocation = a };
        g_strlcpy(j->name, a->rec->device, sizeof(j->name));
        a->busy = true;
        a->pool->warm_jobs++;
        a->pool->warm_returning++;
        worker_submit(b->worker, a->pool->region_id, give_back_work, give_back_done, j);
}

/* Marks the devices releasing, records that, then queues the destroys. */
static bool give_back(Broker *b, Allocation **list, unsigned n) {
        if (n == 0)
                return false;
        for (unsigned i = 0; i < n; i++)
                list[i]->rec->state = ALLOCATION_RELEASING;
        if (broker_save_full(b, 0, NULL) < 0) {
                for (unsigned i = 0; i < n; i++)
                        list[i]->rec->state = ALLOCATION_ACTIVE;
                return false;
        }
        for (unsigned i = 0; i < n; i++)
                give_back_start(b, list[i]);
        broker_notify_sizes(b, list[0]->pool);
        return true;
}

bool warm_give_back_pool(Broker *b, Pool *p) {
        g_autofree Allocation **list = g_new0(Allocation *, p->warm->len + 1);
        unsigned n = 0;

        for (guint i = 0; i < p->warm->len; i++)
                if (warm_ready(p->warm->pdata[i]))
                        list[n++] = p->warm->pdata[i];
        if (n)
                log_info("Pool %s: giving back %u warm devices for memory that is needed", p->name, n);
        return give_back(b, list, n);
}

bool warm_give_back_for(Broker *b, const AllocateRequest *req) {
        for (guint i = 0; i < b->pools->len; i++) {
                Pool *p = b->pools->pdata[i];
                PlacementRequest pr = placement_request(b, p, req, true);
                DaxRange out[DAX_RANGES_MAX];
                ExtentMap *m;
                bool fits;

                if ((req->pool && strcmp(req->pool, p->name) != 0) ||
                    (req->has_numa_node && req->numa_node != p->numa_node) || warm_bytes(p) == 0)
                        continue;
                m = warm_map_as_free(p);
                fits = extent_map_place(m, &pr, out, DAX_RANGES_MAX) > 0;
                extent_map_free(m);
                /* Fits once they are gone, or once they are gone and host
                 * memory comes back (host reclaim looks after that). */
                if (!fits &&
                    (extent_map_total(p->map, EXTENT_HOST) == 0 ||
                     req->size > extent_map_total(p->map, EXTENT_FREE) + extent_map_total_bare_dirty(p->map) +
                                         warm_bytes(p) + extent_map_total(p->map, EXTENT_HOST)))
                        continue;
                /* One being made is given back once it is made (the
                 * request waits, and is placed again after each job). */
                if (p->warm_jobs > 0 || warm_give_back_pool(b, p))
                        return true;
        }
        return false;
}

/* ---- refill ---- */

static void warm_refill(Broker *b, Pool *p) {
        const uint64_t *sizes;
        unsigned want[WARM_SIZES_MAX], n;

        if (b->stopping || p->warm_jobs > 0 || p->host_jobs > 0 || !g_queue_is_empty(b->waiting) ||
            (p->returns_waiting && !g_queue_is_empty(p->returns_waiting)) ||
            p->warm_failures >= WARM_FAILURES_MAX || b->state_untrusted)
                return;
        /* Zeroing is going on: wait for the clean memory at the top. */
        if (extent_map_total(p->map, EXTENT_DIRTY) > scrub_sched_stuck_bytes(p))
                return;
        n = warm_plan(p, &sizes, want);

        /* Too many of a size (learned sizes moved on, the budget shrank):
         * give one back. */
        for (guint k = 0; k < p->warm->len; k++) {
                Allocation *a = p->warm->pdata[k];
                unsigned have = 0, w = 0;

                if (!warm_ready(a))
                        continue;
                for (unsigned i = 0; i < n; i++)
                        if (sizes[i] == allocation_size(a))
                                w = want[i];
                for (guint m = 0; m < p->warm->len; m++)
                        if (allocation_size(p->warm->pdata[m]) == allocation_size(a) &&
                            ((Allocation *) p->warm->pdata[m])->rec->align == a->rec->align)
                                have++;
                if (have > w || a->rec->align != p->align) {
                        give_back(b, &a, 1);
                        return;
                }
        }

        for (unsigned i = 0; i < n; i++) {
                unsigned have = 0;
                DaxRange r;

                for (guint m = 0; m < p->warm->len; m++)
                        if (allocation_size(p->warm->pdata[m]) == sizes[i])
                                have++;
                if (have >= want[i])
                        continue;
                if (!warm_place_top(p, sizes[i], p->align, &r))
                        continue;
                if (fill_start(b, p, &r))
                        return;
        }
}

static int on_warm_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Pool *p = userdata;

        warm_refill(p->warm_broker, p);
        return 0;
}

void warm_later(Broker *b, Pool *p) {
        if (b->stopping || !b->event)
                return;
        p->warm_broker = b;
        if (!p->warm_timer) {
                if (sd_event_add_time_relative(b->event, &p->warm_timer, CLOCK_MONOTONIC, WARM_DELAY_USEC, 0,
                                               on_warm_timer, p) < 0)
                        return;
        } else
                (void) sd_event_source_set_time_relative(p->warm_timer, WARM_DELAY_USEC);
        (void) sd_event_source_set_enabled(p->warm_timer, SD_EVENT_ONESHOT);
}

void warm_later_all(Broker *b) {
        for (guint i = 0; i < b->pools->len; i++)
                warm_later(b, b->pools->pdata[i]);
}

/* ---- hand-over ---- */

static bool warm_matches(const Allocation *a, const Pool *p, const AllocateRequest *req) {
        /* Requests by class of memory or by colour are placed cold. */
        if (p->colors.n > 0 || req->min_read_bandwidth || req->min_write_bandwidth || req->max_read_latency ||
            req->max_write_latency || req->tier || req->cache_isolation || req->colors)
                return false;
        return warm_ready(a) && allocation_size(a) == req->size &&
               (req->align ? req->align : p->align) == a->rec->align && (!req->pool || strcmp(req->pool, p->name) == 0) &&
               (!req->has_numa_node || req->numa_node == p->numa_node);
}

/* ---- hand-over, committed in groups ---- */

static void hand_over_free(HandOver *h) {
        allocation_record_free(h->rec);
        g_free(h);
}

static void hand_over_swap(HandOver *h) {
        AllocationRecord *r = h->allocation->rec;

        h->allocation->rec = h->rec;
        h->rec = r;
}

/* Takes the device over for the request once the commit has made its
 * record durable: fd, device owner, journal, stable path, reply. */
static void hand_over_finish(Broker *b, HandOver *h) {
        g_autoptr(GError) error = NULL;
        Allocation *a = h->allocation;
        AllocationRecord *rec = a->rec;
        int fd;

        crash_point("handover-recorded");
        /* On the event loop: an open and a chown take microseconds, and
         * the region's lane may be busy making the next warm device. */
        fd = b->backend->ops->open_device(b->backend, rec->device);
        if (fd >= 0 && h->has_device_owner && fchown(fd, h->device_uid, h->device_gid) < 0) {
                int k = -errno;
                close(fd);
                fd = k;
        }
        if (fd < 0) {
                g_set_error(&error, BROKER_ERROR, BROKER_ERROR_KERNEL_FAILURE,
                            "Cannot hand warm device /dev/%s over: %s", rec->device, g_strerror(-fd));
                log_error("Allocate for '%s': %s; removing it", rec->owner, error->message);
                h->allocation = NULL;
                broker_allocation_retire(b, a);
                h->done(NULL, -1, error, h->userdata);
                return;
        }
        if (h->has_device_owner)
                crash_point("handover-chowned");

        log_debug("Allocate %s for '%s': warm device %s handed over", rec->id, rec->owner, rec->device);
        warm_note_request(a->pool, allocation_size(a));
        broker_stable_path_update(b, rec);
        h->done(a, fd, NULL, h->userdata);
        close(fd);
}

void warm_commit(Broker *b) {
        g_autoptr(GPtrArray) batch = NULL, recs = NULL;
        g_autoptr(GError) error = NULL;
        int r;

        if (!b->handovers || b->handovers->len == 0)
                return;
        /* Taken out before any reply: a reply or a signal may lead to
         * another Allocate, which starts the next group. */
        batch = g_steal_pointer(&b->handovers);
        b->handovers = g_ptr_array_new();
        /* The records change hands now, in memory (the allocations are
         * the broker's from here on, as the owner index already has
         * them), and one durable save writes them all. */
        recs = g_ptr_array_sized_new(batch->len);
        for (guint i = 0; i < batch->len; i++) {
                HandOver *h = batch->pdata[i];

                hand_over_swap(h);
                g_hash_table_insert(b->allocations, h->allocation->rec->id, h->allocation);
                g_ptr_array_add(recs, h->allocation->rec);
        }
        r = broker_save_records(b, (AllocationRecord *const *) recs->pdata, recs->len, STORE_SAVE_DURABLE, &error);
        if (r < 0) {
                g_prefix_error(&error, "Cannot record the allocation: ");
                error->domain = BROKER_ERROR;
                error->code = BROKER_ERROR_KERNEL_FAILURE;
                for (guint i = 0; i < batch->len; i++) {
                        HandOver *h = batch->pdata[i];

                        g_hash_table_steal(b->allocations, h->allocation->rec->id);
                        hand_over_swap(h);
                        owners_index_remove(b, h->rec);
                        g_ptr_array_add(h->allocation->pool->warm, h->allocation);
                }
                for (guint i = 0; i < batch->len; i++) {
                        HandOver *h = batch->pdata[i];

                        log_error("Allocate for '%s': %s; the warm device stays warm", h->rec->owner, error->message);
                        h->done(NULL, -1, error, h->userdata);
                        hand_over_free(h);
                }
                return;
        }
        /* Every reply before the first journal event and signal: the
         * callers wait for the replies, the journal and observers can wait
         * a moment. */
        for (guint i = 0; i < batch->len; i++)
                hand_over_finish(b, batch->pdata[i]);
        for (guint i = 0; i < batch->len; i++) {
                HandOver *h = batch->pdata[i];
                Allocation *a = h->allocation;

                if (a) {
                        events_allocated(a, NULL, 0);
                        broker_notify_added(b, a);
                        broker_notify_sizes(b, a->pool);
                        host_pool_changed(&b->host, a->pool);
                        warm_later(b, a->pool);
                }
                hand_over_free(h);
        }
}

void warm_commit_abandon(Broker *b) {
        g_autoptr(GError) e = g_error_new(BROKER_ERROR, BROKER_ERROR_BUSY, "The broker is stopping");

        for (guint i = 0; b->handovers && i < b->handovers->len; i++) {
                HandOver *h = b->handovers->pdata[i];

                owners_index_remove(b, h->rec);
                g_ptr_array_add(h->allocation->pool->warm, h->allocation);
                h->done(NULL, -1, e, h->userdata);
                hand_over_free(h);
        }
        if (b->handovers)
                g_ptr_array_set_size(b->handovers, 0);
        b->commit_source = sd_event_source_disable_unref(b->commit_source);
}

static int on_commit(sd_event_source *s, void *userdata) {
        warm_commit(userdata);
        return 0;
}

bool warm_queued_foreach(Broker *b, bool (*f)(const AllocationRecord *r, void *userdata), void *userdata) {
        for (guint i = 0; b->handovers && i < b->handovers->len; i++)
                if (!f(((HandOver *) b->handovers->pdata[i])->rec, userdata))
                        return false;
        return true;
}

int warm_hand_over(Broker *b, const AllocateRequest *req, BrokerAllocateDone done, void *userdata) {
        AllocationRecord *rec;
        Allocation *a = NULL;
        Pool *p = NULL;
        HandOver *h;

        for (guint i = 0; !a && i < b->pools->len; i++) {
                p = b->pools->pdata[i];
                for (guint k = 0; !a && k < p->warm->len; k++)
                        if (warm_matches(p->warm->pdata[k], p, req))
                                a = p->warm->pdata[k];
        }
        if (!a)
                return 0;

        rec = allocation_record_copy(a->rec);
        g_free(rec->owner);
        rec->owner = g_strdup(req->owner);
        rec->owner_uid = req->owner_uid;
        g_free(rec->label);
        rec->label = g_strdup(req->label ? req->label : rec->id);
        g_free(rec->client);
        rec->client = req->transient && req->client ? g_strdup(req->client) : NULL;
        rec->created_usec = now_usec();
        rec->transient = req->transient;
        rec->device_uid = req->has_device_owner ? req->device_uid : (uid_t) -1;
        rec->device_gid = req->has_device_owner ? req->device_gid : (gid_t) -1;
        rec->warm = false;

        h = g_new0(HandOver, 1);
        *h = (HandOver) {
                .allocation = a,
                .rec = rec,
                .has_device_owner = req->has_device_owner,
                .device_uid = req->device_uid,
                .device_gid = req->device_gid,
                .done = done,
                .userdata = userdata,
        };
        g_ptr_array_remove(p->warm, a);
        owners_claim(b, rec->owner, rec->owner_uid);
        /* Out of the warm set and not yet among the allocations: nothing
         * gives it back, lists or releases it until the commit. Its record
         * stays the warm one until then, so that a save in between (a
         * fill, a cold Allocate) writes nothing of the hand-over. */
        g_ptr_array_add(b->handovers, h);
        owners_index_add(b, rec);

        /* Durable before the node changes hands and before the reply, as
         * one save for every hand-over read in this pass of the event
         * loop: the commit runs once the calls queued on the bus are
         * handled (idle priority), or at once when the group is full, so
         * that a stream of calls never holds the first one back. */
        if (b->handovers->len >= WARM_COMMIT_MAX || !b->event || b->stopping)
                warm_commit(b);
        else {
                if (!b->commit_source &&
                    (sd_event_add_defer(b->event, &b->commit_source, on_commit, b) < 0 ||
                     sd_event_source_set_priority(b->commit_source, SD_EVENT_PRIORITY_IDLE) < 0))
                        b->commit_source = sd_event_source_disable_unref(b->commit_source);
                if (!b->commit_source || sd_event_source_set_enabled(b->commit_source, SD_EVENT_ONESHOT) < 0)
                        warm_commit(b);
        }
        return 1;
}
