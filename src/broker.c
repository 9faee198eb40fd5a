/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker-private.h"
#include "log.h"
#include "util.h"

G_DEFINE_QUARK(daxbroker-broker-error-quark, broker_error)

static void broker_scrub_kick(Broker *b);

/* ---- small helpers ---- */

static void pool_free(Pool *p) {
        if (!p)
                return;
        host_pool_done(p);
        extent_map_free(p->map);
        g_free(p->name);
        g_free(p);
}

static void allocation_free(Allocation *a) {
        if (!a)
                return;
        allocation_record_free(a->rec);
        g_free(a);
}

uint64_t allocation_size(const Allocation *a) {
        return dax_ranges_size(a->rec->ranges, a->rec->n_ranges);
}

Pool *broker_find_pool(Broker *b, const char *name) {
        for (guint i = 0; i < b->pools->len; i++) {
                Pool *p = b->pools->pdata[i];
                if (strcmp(p->name, name) == 0)
                        return p;
        }
        return NULL;
}

Allocation *broker_find_allocation(Broker *b, const char *id) {
        return g_hash_table_lookup(b->allocations, id);
}

GPtrArray *broker_pools(Broker *b) {
        return b->pools;
}

static gint allocation_cmp(gconstpointer x, gconstpointer y) {
        const Allocation *a = *(Allocation *const *) x, *c = *(Allocation *const *) y;

        if (a->rec->created_usec != c->rec->created_usec)
                return a->rec->created_usec < c->rec->created_usec ? -1 : 1;
        return strcmp(a->rec->id, c->rec->id);
}

GPtrArray *broker_list_allocations(Broker *b) {
        GPtrArray *l = g_ptr_array_new();
        GHashTableIter it;
        void *v;

        g_hash_table_iter_init(&it, b->allocations);
        while (g_hash_table_iter_next(&it, NULL, &v))
                g_ptr_array_add(l, v);
        g_ptr_array_sort(l, allocation_cmp);
        return l;
}

unsigned broker_pending(Broker *b) {
        return worker_pending(b->worker);
}

void broker_drain(Broker *b) {
        worker_drain(b->worker);
}

void pool_usage(const Pool *p, PoolUsage *ret) {
        /* Free is what no device holds, so it equals the kernel's
         * available_size: dirty memory in it is zeroed on the way out. */
        *ret = (PoolUsage) {
                .free = extent_map_total(p->map, EXTENT_FREE) + extent_map_total_bare_dirty(p->map),
                .allocated = extent_map_total(p->map, EXTENT_ALLOCATED) +
                             extent_map_total(p->map, EXTENT_PENDING),
                .host = extent_map_total(p->map, EXTENT_HOST),
                .dirty = extent_map_total(p->map, EXTENT_DIRTY),
                .foreign = extent_map_total(p->map, EXTENT_FOREIGN),
                .largest_free = extent_map_largest_usable(p->map, 2 * MiB, p->boundary, true),
        };
}

void broker_usage(Broker *b, uint64_t *ret_total, PoolUsage *ret) {
        uint64_t total = 0;

        *ret = (PoolUsage) {};
        for (guint i = 0; i < b->pools->len; i++) {
                Pool *p = b->pools->pdata[i];
                PoolUsage u;

                pool_usage(p, &u);
                total += p->size;
                ret->free += u.free;
                ret->allocated += u.allocated;
                ret->host += u.host;
                ret->dirty += u.dirty;
                ret->foreign += u.foreign;
                ret->largest_free = max_u64(ret->largest_free, u.largest_free);
        }
        *ret_total = total;
}

void broker_set_listener(Broker *b, const BrokerListener *l, void *userdata) {
        b->listener = *l;
        b->listener_data = userdata;
}

static void notify_added(Broker *b, Allocation *a) {
        if (b->listener.allocation_added)
                b->listener.allocation_added(a, b->listener_data);
}
static void notify_removed(Broker *b, Allocation *a) {
        if (b->listener.allocation_removed)
                b->listener.allocation_removed(a, b->listener_data);
}
void broker_notify_sizes(Broker *b, Pool *p) {
        if (b->listener.sizes_changed)
                b->listener.sizes_changed(p, b->listener_data);
}

bool ranges_equal(const DaxRange *a, size_t na, const DaxRange *c, size_t nc) {
        if (na != nc)
                return false;
        for (size_t i = 0; i < na; i++)
                if (a[i].start != c[i].start || a[i].size != c[i].size)
                        return false;
        return true;
}

static bool ranges_overlap(const DaxRange *a, size_t na, const DaxRange *c, size_t nc) {
        for (size_t i = 0; i < na; i++)
                for (size_t j = 0; j < nc; j++)
                        if (a[i].start < c[j].start + c[j].size && c[j].start < a[i].start + a[i].size)
                                return true;
        return false;
}

/* ---- state file and stable paths ---- */

/* Every DIRTY extent goes on record, whoever holds it: after a crash the
 * start-up finds which device (if any) still holds each piece. */
static void collect_dirty(Broker *b, GArray *dirty) {
        for (guint i = 0; i < b->pools->len; i++) {
                Pool *p = b->pools->pdata[i];

                for (size_t e = 0; e < extent_map_count(p->map); e++) {
                        const Extent *x = extent_map_get(p->map, e);
                        RegionRange d = { p->region_id, x->start, x->size };

                        if (x->kind == EXTENT_DIRTY)
                                g_array_append_val(dirty, d);
                }
        }
}

/* Durable unless told otherwise: a record of work about to start (an
 * allocation being created, a release begun) needs no fsync, because the
 * kernel's devices do not survive the power cut that would lose it, and a
 * process crash still finds it in the page cache. */
int broker_save_full(Broker *b, StoreSaveFlags flags, GError **error) {
        g_autoptr(GPtrArray) recs = g_ptr_array_sized_new(g_hash_table_size(b->allocations) + b->unmanaged->len);
        g_autoptr(GArray) dirty = g_array_new(FALSE, FALSE, sizeof(RegionRange));
        g_autoptr(GArray) host = g_array_new(FALSE, FALSE, sizeof(RegionRange));
        StoreState st = { .allocations = recs, .boot_id = b->boot_id, .dirty = dirty, .host = host };
        GHashTableIter it;
        void *v;

        /* Hash order: sorting would cost every save O(n log n) for nothing. */
        g_hash_table_iter_init(&it, b->allocations);
        while (g_hash_table_iter_next(&it, NULL, &v))
                g_ptr_array_add(recs, ((Allocation *) v)->rec);
        for (guint i = 0; i < b->unmanaged->len; i++)
                g_ptr_array_add(recs, b->unmanaged->pdata[i]);
        collect_dirty(b, dirty);
        host_collect(b, host);

        return store_save_state(b->state_path, &st, flags, error);
}

int broker_save(Broker *b, GError **error) {
        return broker_save_full(b, STORE_SAVE_DURABLE, error);
}

static char *stable_path(Broker *b, const AllocationRecord *r, char **ret_dir) {
        _cleanup_free_ char *o = path_component_escape(r->owner);
        _cleanup_free_ char *l = path_component_escape(r->label);
        char *dir = g_build_filename(b->runtime_dir, "owners", o, NULL);
        char *path = g_build_filename(dir, l, NULL);

        if (ret_dir)
                *ret_dir = dir;
        else
                g_free(dir);
        return path;
}

/* Points owners/OWNER/LABEL at the current device; replaced atomically so a
 * consumer never sees it missing. Failure is logged: the fd handed over the
 * bus does not depend on it. */
static void stable_path_update(Broker *b, const AllocationRecord *r) {
        g_autofree char *dir = NULL, *target = NULL, *tmp = NULL;
        g_autofree char *path = NULL;

        if (!b->runtime_dir || !r->device)
                return;
        path = stable_path(b, r, &dir);
        target = g_strdup_printf("/dev/%s", r->device);
        tmp = g_strdup_printf("%s.tmp", path);

        if (g_mkdir_with_parents(dir, 0755) < 0 || (unlink(tmp) < 0 && errno != ENOENT) ||
            symlink(target, tmp) < 0 || rename(tmp, path) < 0) {
                log_warning("Cannot maintain stable path %s -> %s: %m, ignoring", path, target);
                (void) unlink(tmp);
        }
}

static void stable_path_remove(Broker *b, const AllocationRecord *r) {
        g_autofree char *dir = NULL, *path = NULL;

        if (!b->runtime_dir)
                return;
        path = stable_path(b, r, &dir);
        (void) unlink(path);
        (void) rmdir(dir); /* only succeeds once the owner has nothing left */
}

/* ---- kernel work (runs on worker lanes, or at start-up) ---- */

typedef struct KernelResult {
        int err;           /* -errno */
        const char *step;  /* what failed, for the message */
        char name[DAX_NAME_MAX];
        int fd;
} KernelResult;

/* Removes a device of ours. A device that is already gone counts as done. */
int kernel_destroy(DaxBackend *be, const char *name, const char **ret_step) {
        DaxDeviceInfo d;
        int r;

        r = be->ops->get_device(be, name, &d);
        if (r == -ENODEV || r == -ENOENT)
                return 0;
        if (r < 0) {
                *ret_step = "reading the device";
                return r;
        }
        if (d.driver != DAX_DRIVER_NONE) {
                r = be->ops->unbind(be, name);
                if (r < 0) {
                        *ret_step = "unbinding the device";
                        return r;
                }
        }
        if (d.size > 0) {
                r = be->ops->set_size(be, name, 0);
                if (r < 0) {
                        *ret_step = "shrinking the device to zero";
                        return r;
                }
        }
        if (d.instance == 0)
                return 0; /* daxR.0 cannot be deleted; size 0 frees it */
        r = be->ops->delete_device(be, name);
        if (r < 0 && r != -ENODEV && r != -ENXIO) {
                *ret_step = "deleting the device";
                return r;
        }
        return 0;
}

/* Creates a device with exactly these ranges, bound to device_dax, and
 * opens it. On failure nothing is left behind (no seed, no half-mapped
 * device). */
static void kernel_create(DaxBackend *be, unsigned region_id, uint64_t align, const DaxRange *ranges,
                          size_t n, KernelResult *res) {
        DaxDeviceInfo d;
        const char *ignored;
        int r;

        res->fd = -1;
        r = be->ops->create_device(be, region_id, res->name);
        if (r < 0) {
                res->step = "creating a device";
                goto fail_nodev;
        }
        if (align != 2 * MiB) {
                r = be->ops->set_align(be, res->name, align);
                if (r < 0) {
                        res->step = "setting the device alignment";
                        goto fail;
                }
        }
        for (size_t i = 0; i < n; i++) {
                r = be->ops->add_mapping(be, res->name, ranges[i].start, ranges[i].size);
                if (r < 0) {
                        res->step = "mapping a physical range into the device";
                        goto fail;
                }
        }
        r = be->ops->bind_device_dax(be, res->name);
        if (r < 0) {
                res->step = "binding the device to device_dax";
                goto fail;
        }
        /* The kernel must hold exactly what we asked for; anything else
         * would hand out the wrong memory. */
        r = be->ops->get_device(be, res->name, &d);
        if (r < 0) {
                res->step = "reading back the device";
                goto fail;
        }
        if (!ranges_equal(d.ranges, d.n_ranges, ranges, n)) {
                r = -EIO;
                res->step = "verifying the device ranges";
                goto fail;
        }
        r = be->ops->open_device(be, res->name);
        if (r < 0) {
                res->step = "opening the device";
                goto fail;
        }
        res->fd = r;
        res->err = 0;
        return;

fail:
        if (kernel_destroy(be, res->name, &ignored) < 0)
                log_error("Rolling back %s failed; start-up reconciliation will retry", res->name);
fail_nodev:
        res->err = r;
        res->name[0] = 0;
}

/* ---- zeroing (runs on worker lanes) ---- */

/* A piece of a device to zero, as an offset into the device. */
typedef struct ZeroPart {
        uint64_t offset;
        uint64_t size;
} ZeroPart;

/* Zeroes parts of a device through its own mapping. n == 0 zeroes all. */
static int kernel_zero(Broker *b, const char *name, uint64_t size, const ZeroPart *parts, size_t n,
                       const char **ret_step) {
        DaxBackend *be = b->backend;
        _cleanup_close_ int fd = -1;
        void *mem;
        int r = 0;

        fd = be->ops->open_device(be, name);
        if (fd < 0) {
                *ret_step = "opening the device to zero it";
                return fd;
        }
        mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (mem == MAP_FAILED) {
                *ret_step = "mapping the device to zero it";
                return -errno;
        }
        if (n == 0) {
                /* In two halves, so that a test can kill the daemon
                 * ("scrub-half") with the memory half zeroed. */
                uint64_t half = size / 2 / 4096 * 4096;

                r = scrubber_zero(b->scrubber, mem, half);
                if (r >= 0)
                        broker_crash_point(b, "scrub-half");
                if (r >= 0)
                        r = scrubber_zero(b->scrubber, (char *) mem + half, size - half);
        }
        for (size_t i = 0; i < n && r >= 0; i++)
                r = scrubber_zero(b->scrubber, (char *) mem + parts[i].offset, parts[i].size);
        if (r < 0)
                *ret_step = "zeroing the device";
        munmap(mem, size);
        return r;
}

/* The parts of ranges that are bare dirty memory, as device offsets. */
static size_t dirty_parts(const Pool *p, const DaxRange *ranges, size_t n, ZeroPart *ret, size_t max) {
        uint64_t offset = 0;
        size_t k = 0;

        for (size_t i = 0; i < n; i++) {
                for (size_t e = 0; e < extent_map_count(p->map); e++) {
                        const Extent *x = extent_map_get(p->map, e);
                        uint64_t s = max_u64(x->start, ranges[i].start);
                        uint64_t t = min_u64(x->start + x->size, ranges[i].start + ranges[i].size);

                        if (x->kind != EXTENT_DIRTY || s >= t)
                                continue;
                        if (k < max)
                                ret[k++] = (ZeroPart) { offset + (s - ranges[i].start), t - s };
                        else /* too fragmented to list: zero everything */
                                return SIZE_MAX;
                }
                offset += ranges[i].size;
        }
        return k;
}

/* ---- allocate ---- */

#define ZERO_PARTS_MAX 256

typedef struct AllocateJob {
        Broker *broker;
        Allocation *allocation;
        unsigned region_id;
        uint64_t align;
        bool chown;
        uid_t device_uid;
        gid_t device_gid;
        size_t n_zero;    /* SIZE_MAX: zero the whole device */
        ZeroPart zero[ZERO_PARTS_MAX];
        KernelResult res;
        BrokerAllocateDone done;
        void *userdata;
} AllocateJob;

static void allocate_work(void *p) {
        AllocateJob *j = p;
        const AllocationRecord *r = j->allocation->rec;
        const char *step = NULL;
        int k;

        kernel_create(j->broker->backend, j->region_id, j->align, r->ranges, r->n_ranges, &j->res);
        if (j->res.err < 0)
                return;

        /* Old data in the ranges never reaches the new owner. */
        k = j->n_zero == 0 ? 0
                           : kernel_zero(j->broker, j->res.name, dax_ranges_size(r->ranges, r->n_ranges), j->zero,
                                         j->n_zero == SIZE_MAX ? 0 : j->n_zero, &step);
        if (k >= 0 && j->chown && fchown(j->res.fd, j->device_uid, j->device_gid) < 0) {
                k = -errno;
                step = "changing the owner of the device node";
        }
        if (k < 0) {
                const char *ignored;

                close(j->res.fd);
                j->res.fd = -1;
                (void) kernel_destroy(j->broker->backend, j->res.name, &ignored);
                j->res.err = k;
                j->res.step = step;
        }
}

static void allocation_retire(Broker *b, Allocation *a);

static void allocate_done(void *p) {
        AllocateJob *j = p;
        Broker *b = j->broker;
        Allocation *a = j->allocation;
        Pool *pool = a->pool;
        g_autoptr(GError) error = NULL;
        char sz[FORMAT_SIZE_MAX];

        a->busy = false;
        if (j->res.err < 0) {
                g_set_error(&error, BROKER_ERROR, BROKER_ERROR_KERNEL_FAILURE,
                            "Kernel refused while %s in region %u: %s", j->res.step, j->region_id,
                            g_strerror(-j->res.err));
                log_error("Allocate %s for '%s' failed: %s", a->rec->id, a->rec->owner, error->message);
                /* What the ranges hold now is unknown: zero before reuse. */
                extent_map_set_ranges(pool->map, a->rec->ranges, a->rec->n_ranges, EXTENT_DIRTY, NULL);
                g_hash_table_remove(b->allocations, a->rec->id);
                (void) broker_save(b, NULL);
                broker_notify_sizes(b, pool);
                j->done(NULL, -1, error, j->userdata);
                g_free(j);
                broker_scrub_kick(b);
                return;
        }

        a->rec->device = g_strdup(j->res.name);
        a->rec->state = ALLOCATION_ACTIVE;
        extent_map_set_ranges(pool->map, a->rec->ranges, a->rec->n_ranges, EXTENT_ALLOCATED, a);
        if (broker_save(b, &error) < 0) {
                /* Nobody may get memory the state file does not know about:
                 * take the device down again. */
                g_autoptr(GError) e = g_error_new(BROKER_ERROR, BROKER_ERROR_KERNEL_FAILURE,
                                                  "Cannot record the allocation: %s", error->message);

                close(j->res.fd);
                allocation_retire(b, a);
                j->done(NULL, -1, e, j->userdata);
                g_free(j);
                return;
        }

        log_info("Allocated %s (%s) for '%s' label '%s' as %s in pool %s", a->rec->id,
                 format_size(allocation_size(a), sz, sizeof(sz)), a->rec->owner, a->rec->label,
                 a->rec->device, pool->name);
        stable_path_update(b, a->rec);
        /* The caller is waiting for its fd; observers can wait a moment. */
        j->done(a, j->res.fd, NULL, j->userdata);
        close(j->res.fd);
        g_free(j);
        notify_added(b, a);
        broker_notify_sizes(b, pool);
        host_pool_changed(b, pool);
}

static char *allocation_new_id(Broker *b) {
        for (;;) {
                char *id = g_strdup_printf("%08x%08x", g_random_int(), g_random_int());
                if (!g_hash_table_contains(b->allocations, id))
                        return id;
                g_free(id);
        }
}

static unsigned owner_count(Broker *b, const char *owner, const char *label, bool *ret_label_taken) {
        GHashTableIter it;
        unsigned n = 0;
        void *v;

        *ret_label_taken = false;
        g_hash_table_iter_init(&it, b->allocations);
        while (g_hash_table_iter_next(&it, NULL, &v)) {
                Allocation *a = v;
                if (strcmp(a->rec->owner, owner) != 0)
                        continue;
                n++;
                if (label && strcmp(a->rec->label, label) == 0)
                        *ret_label_taken = true;
        }
        return n;
}

static bool align_valid(uint64_t a) {
        return a == 4 * KiB || a == 2 * MiB || a == GiB;
}

/* Picks pool and ranges: clean memory first, then memory that still has to
 * be zeroed. *ret_wait tells the caller that memory being scrubbed right
 * now would make the request fit. */
static Pool *allocate_place(Broker *b, const AllocateRequest *req, uint64_t *ret_align, DaxRange *ranges,
                            int *ret_n, bool *ret_wait, GError **error) {
        char sz[FORMAT_SIZE_MAX], sz2[FORMAT_SIZE_MAX];
        uint64_t largest = 0, biggest_pool = 0, granule_needed = 0, host = 0, held_dirty = 0;
        const char *host_error = NULL;
        bool any_candidate = false;

        *ret_wait = false;
        for (int pass = 0; pass < 2; pass++)
                for (guint i = 0; i < b->pools->len; i++) {
                        Pool *p = b->pools->pdata[i];
                        uint64_t align = req->align ? req->align : p->align;
                        uint64_t granule = max_u64(max_u64(align, p->boundary), 2 * MiB);
                        PlacementRequest pr = {
                                .size = req->size,
                                .align = align,
                                .boundary = p->boundary,
                                .contiguous = req->contiguous,
                                .max_ranges = b->config->max_ranges,
                                .include_dirty = pass == 1,
                        };
                        int n;

                        if (req->pool && strcmp(req->pool, p->name) != 0)
                                continue;
                        if (req->has_numa_node && req->numa_node != p->numa_node)
                                continue;
                        if (pass == 0) {
                                any_candidate = true;
                                biggest_pool = max_u64(biggest_pool, p->size);
                                host += extent_map_total(p->map, EXTENT_HOST);
                                held_dirty += p->scrubs_in_flight;
                                if (host_last_error(p))
                                        host_error = host_last_error(p);
                        }
                        if (req->size % granule != 0) {
                                granule_needed = granule;
                                continue;
                        }
                        n = extent_map_place(p->map, &pr, ranges, DAX_RANGES_MAX);
                        if (n > 0) {
                                *ret_align = align;
                                *ret_n = n;
                                return p;
                        }
                        largest = max_u64(largest, extent_map_largest_usable(p->map, align, p->boundary, true));
                }

        if (!any_candidate) {
                Pool *named = req->pool ? broker_find_pool(b, req->pool) : NULL;

                if (named)
                        g_set_error(error, BROKER_ERROR, BROKER_ERROR_NO_SUCH_POOL,
                                    "Pool '%s' is on NUMA node %d, not on node %d", req->pool, named->numa_node,
                                    req->numa_node);
                else if (req->pool)
                        g_set_error(error, BROKER_ERROR, BROKER_ERROR_NO_SUCH_POOL, "No pool named '%s'",
                                    req->pool);
                else if (req->has_numa_node)
                        g_set_error(error, BROKER_ERROR, BROKER_ERROR_NO_SUCH_POOL,
                                    "No pool on NUMA node %d", req->numa_node);
                else
                        g_set_error(error, BROKER_ERROR, BROKER_ERROR_NO_SUCH_POOL,
                                    "No pools are managed (no soft-reserved memory found or configured)");
        } else if (req->size > biggest_pool)
                g_set_error(error, BROKER_ERROR, BROKER_ERROR_NO_SPACE,
                            "Size %s is larger than any pool (the largest is %s)",
                            format_size(req->size, sz, sizeof(sz)), format_size(biggest_pool, sz2, sizeof(sz2)));
        else if (granule_needed && largest == 0)
                g_set_error(error, BROKER_ERROR, BROKER_ERROR_INVALID_ARGUMENT,
                            "Size %s is not a multiple of %s (the pool's boundary or the requested alignment)",
                            format_size(req->size, sz, sizeof(sz)), format_size(granule_needed, sz2, sizeof(sz2)));
        else {
                char sz3[FORMAT_SIZE_MAX];

                *ret_wait = held_dirty > 0;
                g_set_error(error, BROKER_ERROR, BROKER_ERROR_NO_SPACE,
                            "No room for %s%s; the largest free extent is %s%s%s%s%s%s",
                            format_size(req->size, sz, sizeof(sz)), req->contiguous ? " in one contiguous range" : "",
                            format_size(largest, sz2, sizeof(sz2)), host ? "; " : "",
                            host ? format_size(host, sz3, sizeof(sz3)) : "",
                            host ? " is host RAM through kmem" : "",
                            host && host_error ? " and the last attempt to take it back failed: " : "",
                            host && host_error ? host_error : "");
        }
        return NULL;
}

/* A request that only memory being scrubbed right now can satisfy waits
 * for that scrub instead of failing. */
typedef struct WaitingAllocate {
        AllocateRequest req; /* strings below are owned copies */
        char *owner, *pool, *label, *client;
        BrokerAllocateDone done;
        void *userdata;
} WaitingAllocate;

static void waiting_free(WaitingAllocate *w) {
        g_free(w->owner);
        g_free(w->pool);
        g_free(w->label);
        g_free(w->client);
        g_free(w);
}

static void waiting_add(Broker *b, const AllocateRequest *req, BrokerAllocateDone done, void *userdata) {
        WaitingAllocate *w = g_new0(WaitingAllocate, 1);

        w->req = *req;
        w->req.owner = w->owner = g_strdup(req->owner);
        w->req.pool = w->pool = g_strdup(req->pool);
        w->req.label = w->label = g_strdup(req->label);
        w->req.client = w->client = g_strdup(req->client);
        w->done = done;
        w->userdata = userdata;
        g_queue_push_tail(b->waiting, w);
}

static bool allocate_try(Broker *b, const AllocateRequest *req, BrokerAllocateDone done, void *userdata,
                         bool may_wait, GError **error);

void broker_waiting_retry(Broker *b) {
        unsigned n = g_queue_get_length(b->waiting);

        /* Each is tried once; one that still has to wait goes back in line. */
        for (unsigned i = 0; i < n; i++) {
                WaitingAllocate *w = g_queue_pop_head(b->waiting);
                g_autoptr(GError) error = NULL;

                if (!allocate_try(b, &w->req, w->done, w->userdata, true, &error))
                        w->done(NULL, -1, error, w->userdata);
                waiting_free(w);
        }
}

static bool allocate_try(Broker *b, const AllocateRequest *req, BrokerAllocateDone done, void *userdata,
                         bool may_wait, GError **error) {
        g_autoptr(AllocationRecord) rec = NULL;
        DaxRange ranges[DAX_RANGES_MAX];
        const char *why;
        char sz[FORMAT_SIZE_MAX];
        uint64_t align = 0;
        bool label_taken, wait;
        Allocation *a;
        Pool *pool;
        int n;

        why = name_invalid_reason(req->owner);
        if (why) {
                g_set_error(error, BROKER_ERROR, BROKER_ERROR_INVALID_ARGUMENT, "Owner %s", why);
                return false;
        }
        if (req->label && (why = name_invalid_reason(req->label))) {
                g_set_error(error, BROKER_ERROR, BROKER_ERROR_INVALID_ARGUMENT, "Label %s", why);
                return false;
        }
        if (req->size == 0) {
                g_set_error(error, BROKER_ERROR, BROKER_ERROR_INVALID_ARGUMENT, "Size must not be zero");
                return false;
        }
        if (req->size % (2 * MiB) != 0) {
                g_set_error(error, BROKER_ERROR, BROKER_ERROR_INVALID_ARGUMENT,
                            "Size %" G_GUINT64_FORMAT " (%s) is not a multiple of 2 MiB", req->size,
                            format_size(req->size, sz, sizeof(sz)));
                return false;
        }
        if (req->align && !align_valid(req->align)) {
                g_set_error(error, BROKER_ERROR, BROKER_ERROR_INVALID_ARGUMENT,
                            "Alignment %" G_GUINT64_FORMAT " is not one of 4096, 2097152 (2 MiB) or 1073741824 (1 GiB)",
                            req->align);
                return false;
        }
        if (owner_count(b, req->owner, req->label, &label_taken) >= b->config->max_allocations_per_owner) {
                g_set_error(error, BROKER_ERROR, BROKER_ERROR_NO_SPACE,
                            "Owner '%s' already has %u allocations, the configured maximum", req->owner,
                            b->config->max_allocations_per_owner);
                return false;
        }
        if (label_taken) {
                g_set_error(error, BROKER_ERROR, BROKER_ERROR_INVALID_ARGUMENT,
                            "Owner '%s' already has an allocation labelled '%s'", req->owner, req->label);
                return false;
        }

        pool = allocate_place(b, req, &align, ranges, &n, &wait, error);
        /* Host memory comes back for it: wait for the reclaim (ours or one
         * already running), then place again. */
        if (!pool && !wait && may_wait && g_error_matches(*error, BROKER_ERROR, BROKER_ERROR_NO_SPACE) &&
            (host_reclaim_running(b, req) || host_reclaim_for(b, req)))
                wait = true;
        if (!pool) {
                if (!wait || !may_wait)
                        return false;
                g_clear_error(error);
                waiting_add(b, req, done, userdata);
                return true;
        }

        rec = allocation_record_new();
        rec->id = allocation_new_id(b);
        rec->owner = g_strdup(req->owner);
        rec->owner_uid = req->owner_uid;
        rec->label = g_strdup(req->label ? req->label : rec->id);
        rec->pool = g_strdup(pool->name);
        rec->region_id = pool->region_id;
        rec->align = align;
        rec->created_usec = now_usec();
        rec->transient = req->transient;
        rec->client = req->transient && req->client ? g_strdup(req->client) : NULL;
        if (req->has_device_owner) {
                rec->device_uid = req->device_uid;
                rec->device_gid = req->device_gid;
        }
        rec->state = ALLOCATION_CREATING;
        rec->n_ranges = n;
        memcpy(rec->ranges, ranges, n * sizeof(DaxRange));

        AllocateJob *j = g_new0(AllocateJob, 1);
        *j = (AllocateJob) {
                .broker = b,
                .region_id = pool->region_id,
                .align = align,
                .chown = req->has_device_owner,
                .device_uid = req->device_uid,
                .device_gid = req->device_gid,
                .done = done,
                .userdata = userdata,
        };
        j->n_zero = dirty_parts(pool, rec->ranges, rec->n_ranges, j->zero, ZERO_PARTS_MAX);

        a = g_new0(Allocation, 1);
        a->rec = g_steal_pointer(&rec);
        a->pool = pool;
        a->busy = true;
        j->allocation = a;
        g_hash_table_insert(b->allocations, a->rec->id, a);
        extent_map_set_ranges(pool->map, a->rec->ranges, a->rec->n_ranges, EXTENT_PENDING, a);

        /* Written before the kernel is touched, so that a crash in between
         * is rolled back at start-up instead of leaking a device. */
        if (broker_save_full(b, 0, error) < 0) {
                g_prefix_error(error, "Cannot record the allocation: ");
                (*error)->domain = BROKER_ERROR;
                (*error)->code = BROKER_ERROR_KERNEL_FAILURE;
                /* Any dirt the placement took over is dirt again; marking
                 * the whole allocation dirty is the safe superset. */
                extent_map_set_ranges(pool->map, a->rec->ranges, a->rec->n_ranges,
                                      j->n_zero ? EXTENT_DIRTY : EXTENT_FREE, NULL);
                g_hash_table_remove(b->allocations, a->rec->id);
                g_free(j);
                return false;
        }

        worker_submit(b->worker, pool->region_id, allocate_work, allocate_done, j);
        broker_notify_sizes(b, pool);
        return true;
}

bool broker_allocate(Broker *b, const AllocateRequest *req, BrokerAllocateDone done, void *userdata,
                     GError **error) {
        return allocate_try(b, req, done, userdata, true, error);
}

/* ---- release: destroy the device, then zero its memory ---- */

typedef struct ReleaseJob {
        Broker *broker;
        Allocation *allocation;
        char name[DAX_NAME_MAX];
        int err;
        const char *step;
        BrokerDone done;
        void *userdata;
} ReleaseJob;

static void release_work(void *p) {
        ReleaseJob *j = p;

        j->err = j->name[0] ? kernel_destroy(j->broker->backend, j->name, &j->step) : 0;
}

static void release_done(void *p) {
        ReleaseJob *j = p;
        Broker *b = j->broker;
        Allocation *a = j->allocation;
        Pool *pool = a->pool;
        g_autoptr(GError) error = NULL;
        char sz[FORMAT_SIZE_MAX];
        bool transient;

        a->busy = false;
        if (j->err < 0) {
                /* Stays RELEASING: a new Release or the next start-up retries. */
                g_set_error(&error, BROKER_ERROR, BROKER_ERROR_KERNEL_FAILURE, "Kernel refused while %s %s: %s",
                            j->step, j->name, g_strerror(-j->err));
                log_error("Release %s failed: %s", a->rec->id, error->message);
                if (j->done)
                        j->done(0, error, j->userdata);
                g_free(j);
                return;
        }

        log_info("Released %s of '%s' (%s, %s); its memory is zeroed before reuse", a->rec->id, a->rec->owner,
                 j->name[0] ? j->name : "no device", format_size(allocation_size(a), sz, sizeof(sz)));
        stable_path_remove(b, a->rec);
        notify_removed(b, a);
        /* The kernel does not zero device memory: what the owner left
         * there is dirt until the scrubber has been through it. */
        extent_map_set_ranges(pool->map, a->rec->ranges, a->rec->n_ranges, EXTENT_DIRTY, NULL);
        transient = a->rec->transient;
        g_hash_table_remove(b->allocations, a->rec->id);
        if (broker_save(b, &error) < 0)
                /* The file still says RELEASING, which the next start-up
                 * finishes (and zeroes); nothing is lost. */
                log_error("Cannot record the release: %s", error->message);
        broker_notify_sizes(b, pool);
        if (j->done)
                j->done(1, NULL, j->userdata);
        /* Nobody waits on a transient release to look at the pool: its
         * client is gone, so its data is zeroed at once. */
        if (transient)
                broker_scrub_kick(b);
        else
                broker_scrub_later(b);
        g_free(j);
        broker_waiting_retry(b);
        host_pool_changed(b, pool);
}

/* Takes a device down without a caller waiting (a failed commit). */
static void allocation_retire(Broker *b, Allocation *a) {
        ReleaseJob *j = g_new0(ReleaseJob, 1);

        *j = (ReleaseJob) { .broker = b, .allocation = a };
        g_strlcpy(j->name, a->rec->device ? a->rec->device : "", sizeof(j->name));
        a->rec->state = ALLOCATION_RELEASING;
        a->busy = true;
        worker_submit(b->worker, a->pool->region_id, release_work, release_done, j);
}

static bool release_start(Broker *b, Allocation *a, BrokerDone done, void *userdata, GError **error) {
        ReleaseJob *j;

        if (a->busy) {
                g_set_error(error, BROKER_ERROR, BROKER_ERROR_BUSY,
                            "Allocation %s has an operation in progress, try again", a->rec->id);
                return false;
        }
        a->rec->state = ALLOCATION_RELEASING;
        if (broker_save_full(b, 0, error) < 0) {
                a->rec->state = ALLOCATION_ACTIVE;
                g_prefix_error(error, "Cannot record the release: ");
                (*error)->domain = BROKER_ERROR;
                (*error)->code = BROKER_ERROR_KERNEL_FAILURE;
                return false;
        }
        j = g_new0(ReleaseJob, 1);
        *j = (ReleaseJob) { .broker = b, .allocation = a, .done = done, .userdata = userdata };
        g_strlcpy(j->name, a->rec->device ? a->rec->device : "", sizeof(j->name));
        a->busy = true;
        worker_submit(b->worker, a->pool->region_id, release_work, release_done, j);
        return true;
}

bool broker_release(Broker *b, Allocation *a, BrokerDone done, void *userdata, GError **error) {
        return release_start(b, a, done, userdata, error);
}

typedef struct OwnerRelease {
        unsigned outstanding;
        unsigned released;
        GError *first_error;
        BrokerDone done;
        void *userdata;
} OwnerRelease;

static void owner_release_one(unsigned count, const GError *error, void *userdata) {
        OwnerRelease *o = userdata;

        o->released += count;
        if (error && !o->first_error)
                o->first_error = g_error_copy(error);
        if (--o->outstanding > 0)
                return;
        o->done(o->released, o->first_error, o->userdata);
        g_clear_error(&o->first_error);
        g_free(o);
}

bool broker_release_owner(Broker *b, const char *owner, BrokerDone done, void *userdata, GError **error) {
        g_autoptr(GPtrArray) all = broker_list_allocations(b);
        const char *why = name_invalid_reason(owner);
        OwnerRelease *o;

        if (why) {
                g_set_error(error, BROKER_ERROR, BROKER_ERROR_INVALID_ARGUMENT, "Owner %s", why);
                return false;
        }
        for (guint i = 0; i < all->len; i++) {
                Allocation *a = all->pdata[i];
                if (strcmp(a->rec->owner, owner) == 0 && a->busy) {
                        g_set_error(error, BROKER_ERROR, BROKER_ERROR_BUSY,
                                    "Allocation %s of '%s' has an operation in progress, try again",
                                    a->rec->id, owner);
                        return false;
                }
        }

        o = g_new0(OwnerRelease, 1);
        o->done = done;
        o->userdata = userdata;
        o->outstanding = 1; /* held until every release is queued */
        for (guint i = 0; i < all->len; i++) {
                Allocation *a = all->pdata[i];
                g_autoptr(GError) e = NULL;

                if (strcmp(a->rec->owner, owner) != 0)
                        continue;
                o->outstanding++;
                if (!release_start(b, a, owner_release_one, o, &e))
                        owner_release_one(0, e, o);
        }
        owner_release_one(0, NULL, o);
        return true;
}

int broker_open(Broker *b, Allocation *a, GError **error) {
        int fd;

        if (a->busy || a->rec->state != ALLOCATION_ACTIVE || !a->rec->device) {
                g_set_error(error, BROKER_ERROR, BROKER_ERROR_BUSY,
                            "Allocation %s is being created or released", a->rec->id);
                return -1;
        }
        fd = b->backend->ops->open_device(b->backend, a->rec->device);
        if (fd < 0) {
                g_set_error(error, BROKER_ERROR, BROKER_ERROR_KERNEL_FAILURE, "Cannot open /dev/%s: %s",
                            a->rec->device, g_strerror(-fd));
                return -1;
        }
        return fd;
}

void broker_client_vanished(Broker *b, const char *client) {
        g_autoptr(GPtrArray) all = broker_list_allocations(b);

        for (guint i = 0; i < all->len; i++) {
                Allocation *a = all->pdata[i];
                g_autoptr(GError) e = NULL;

                if (!a->rec->transient || g_strcmp0(a->rec->client, client) != 0 || a->busy)
                        continue;
                log_info("Client %s of transient allocation %s left the bus, releasing", client, a->rec->id);
                if (!release_start(b, a, NULL, NULL, &e))
                        log_error("Cannot release transient allocation %s: %s", a->rec->id, e->message);
        }
}

/* ---- background scrubbing of memory no device holds ---- */

/* Bare dirty memory (after boot, a rolled-back allocation) is zeroed
 * through a short-lived device of its own, one chunk per pool at a time:
 * create (region lane), zero (scrub lane, so allocations in the region do
 * not wait for it), destroy (region lane). */
#define SCRUB_CHUNK_MAX (512 * MiB)

typedef struct ScrubJob {
        Broker *broker;
        Pool *pool;
        DaxRange range;
        KernelResult res;
        int err;
        const char *step;
} ScrubJob;

static void scrub_create_work(void *p) {
        ScrubJob *j = p;

        kernel_create(j->broker->backend, j->pool->region_id, 2 * MiB, &j->range, 1, &j->res);
        if (j->res.err >= 0)
                close(j->res.fd);
}

static void scrub_zero_work(void *p) {
        ScrubJob *j = p;

        j->err = kernel_zero(j->broker, j->res.name, j->range.size, NULL, 0, &j->step);
}

static void scrub_destroy_work(void *p) {
        ScrubJob *j = p;
        const char *step = NULL;
        int r = kernel_destroy(j->broker->backend, j->res.name, &step);

        if (r < 0 && j->err >= 0) {
                j->err = r;
                j->step = step;
        }
}

static void scrub_finish(ScrubJob *j) {
        Broker *b = j->broker;
        Pool *p = j->pool;
        char sz[FORMAT_SIZE_MAX];

        p->scrubs_in_flight--;
        p->bare_scrub_running = false;
        if (j->err < 0 || j->res.err < 0) {
                log_warning("Pool %s: cannot zero %s at %#" G_GINT64_MODIFIER "x while %s: %s; will retry", p->name,
                            format_size(j->range.size, sz, sizeof(sz)), j->range.start,
                            j->res.err < 0 ? j->res.step : j->step, g_strerror(-(j->res.err < 0 ? j->res.err : j->err)));
                extent_map_set(p->map, j->range.start, j->range.size, EXTENT_DIRTY, NULL);
                p->scrub_failures++;
        } else {
                extent_map_set(p->map, j->range.start, j->range.size, EXTENT_FREE, NULL);
                p->scrub_failures = 0;
                (void) broker_save(b, NULL);
        }
        broker_notify_sizes(b, p);
        g_free(j);
        broker_scrub_kick(b);
        broker_waiting_retry(b);
        host_pool_changed(b, p);
}

static void scrub_destroy_done(void *p) {
        scrub_finish(p);
}

static void scrub_zero_done(void *p) {
        ScrubJob *j = p;

        worker_submit(j->broker->worker, j->pool->region_id, scrub_destroy_work, scrub_destroy_done, j);
}

static void scrub_create_done(void *p) {
        ScrubJob *j = p;

        if (j->res.err < 0) {
                scrub_finish(j);
                return;
        }
        worker_submit(j->broker->worker, SCRUB_LANE(j->pool->region_id), scrub_zero_work, scrub_zero_done, j);
}

static int on_scrub_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        broker_scrub_kick(userdata);
        return 0;
}

/* Released memory is zeroed a moment later rather than at once: releases
 * that come together (a VM with several allocations, an owner's whole set)
 * are zeroed as one, and right after a Release the pool shows the memory
 * as free without a scrub device holding part of it. Allocations can use
 * dirty memory meanwhile; they zero what they take. */
#define SCRUB_DELAY_USEC (1000 * 1000)

void broker_scrub_later(Broker *b) {
        uint64_t now;

        if (!b->event) {
                broker_scrub_kick(b);
                return;
        }
        if (b->scrub_timer) {
                int enabled = SD_EVENT_OFF;
                (void) sd_event_source_get_enabled(b->scrub_timer, &enabled);
                if (enabled != SD_EVENT_OFF)
                        return;
        }
        (void) sd_event_now(b->event, CLOCK_MONOTONIC, &now);
        if (!b->scrub_timer) {
                if (sd_event_add_time(b->event, &b->scrub_timer, CLOCK_MONOTONIC, now + SCRUB_DELAY_USEC, 0,
                                      on_scrub_timer, b) < 0) {
                        broker_scrub_kick(b);
                        return;
                }
        } else {
                (void) sd_event_source_set_time(b->scrub_timer, now + SCRUB_DELAY_USEC);
        }
        (void) sd_event_source_set_enabled(b->scrub_timer, SD_EVENT_ONESHOT);
}

/* Starts zeroing the next chunk of bare dirty memory in every pool that has
 * some and is not zeroing already. */
static void broker_scrub_kick(Broker *b) {
        if (b->stopping)
                return;
        for (guint i = 0; i < b->pools->len; i++) {
                Pool *p = b->pools->pdata[i];
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
                j->broker = b;
                j->pool = p;
                j->range = (DaxRange) { x->start, min_u64(x->size, SCRUB_CHUNK_MAX) };
                extent_map_set(p->map, j->range.start, j->range.size, EXTENT_DIRTY, j);
                p->bare_scrub_running = true;
                p->scrubs_in_flight++;
                worker_submit(b->worker, p->region_id, scrub_create_work, scrub_create_done, j);
        }
}

/* ---- start-up: pools and reconciliation ---- */

static Pool *pool_new(Broker *b, const DaxRegionInfo *ri, const PoolConfig *pc) {
        Pool *p = g_new0(Pool, 1);

        p->broker = b;
        p->name = pc ? g_strdup(pc->name) : g_strdup_printf("region%u", ri->id);
        p->region_id = ri->id;
        p->numa_node = ri->numa_node;
        p->start = ri->start;
        p->size = ri->size;
        p->align = pc && pc->align ? pc->align : b->config->default_align;
        p->boundary = pc ? pc->boundary : 0;
        p->map = extent_map_new(ri->start, ri->size);
        host_pool_init(b, p, pc);
        return p;
}

static int broker_setup_pools(Broker *b, GError **error) {
        _cleanup_free_ DaxRegionInfo *regions = NULL;
        size_t n = 0;
        int r;

        r = b->backend->ops->list_regions(b->backend, &regions, &n);
        if (r < 0) {
                g_set_error(error, BROKER_ERROR, BROKER_ERROR_KERNEL_FAILURE, "Cannot list dax regions: %s",
                            g_strerror(-r));
                return r;
        }
        for (size_t i = 0; i < n; i++) {
                const PoolConfig *pc = config_find_pool(b->config, regions[i].id, regions[i].start);
                char sz[FORMAT_SIZE_MAX];

                if (pc ? !pc->manage : !b->config->manage_unlisted) {
                        log_info("Region %u is not managed by configuration", regions[i].id);
                        continue;
                }
                if (pc && pc->boundary && regions[i].size % pc->boundary != 0)
                        log_warning("Pool %s: region size is not a multiple of Boundary=; the tail is never used",
                                    pc->name);
                Pool *p = pool_new(b, &regions[i], pc);
                g_ptr_array_add(b->pools, p);
                log_info("Pool %s: region %u, %s at %#" G_GINT64_MODIFIER "x, NUMA node %d", p->name, p->region_id,
                         format_size(p->size, sz, sizeof(sz)), p->start, p->numa_node);
        }
        for (size_t i = 0; i < b->config->n_pools; i++) {
                const PoolConfig *pc = &b->config->pools[i];
                if (pc->manage && !broker_find_pool(b, pc->name))
                        log_warning("Pool %s matches no dax region, ignoring", pc->name);
        }
        return 0;
}

static void pool_adopt(Broker *b, Pool *p, AllocationRecord *rec) {
        Allocation *a = g_new0(Allocation, 1);

        g_free(rec->pool);
        rec->pool = g_strdup(p->name);
        rec->state = ALLOCATION_ACTIVE;
        a->rec = rec;
        a->pool = p;
        g_hash_table_insert(b->allocations, rec->id, a);
        extent_map_set_ranges(p->map, rec->ranges, rec->n_ranges, EXTENT_ALLOCATED, a);
}

static void pool_mark_device(Pool *p, const DaxDeviceInfo *d, ExtentKind kind) {
        if (extent_map_set_ranges(p->map, d->ranges, d->n_ranges, kind, NULL) < 0)
                log_warning("Device %s has ranges outside its region, ignoring them", d->name);
}

/* Decides what to do with a device no record claims. */
static void pool_settle_unclaimed(Broker *b, Pool *p, const DaxDeviceInfo *d) {
        DaxBackend *be = b->backend;
        const char *step = NULL;
        char sz[FORMAT_SIZE_MAX];
        int r;

        if (d->size == 0) {
                /* A seed left by a cut-short creation: holds no memory. */
                if (d->instance != 0 && d->driver == DAX_DRIVER_NONE) {
                        r = be->ops->delete_device(be, d->name);
                        if (r < 0)
                                log_warning("Cannot delete empty device %s: %s, ignoring", d->name, g_strerror(-r));
                        else
                                log_info("Deleted empty device %s", d->name);
                }
                return;
        }

        if (d->driver == DAX_DRIVER_KMEM) {
                /* kmem removal is one shot: only memory that is wholly
                 * offline may be taken back; anything else stays host RAM. */
                if (d->instance == 0 && d->mem_blocks_online == 0) {
                        r = kernel_destroy(be, d->name, &step);
                        if (r >= 0) {
                                log_info("Took over %s (%s, was kmem with all memory offline)", d->name,
                                         format_size(d->size, sz, sizeof(sz)));
                                pool_mark_device(p, d, EXTENT_DIRTY);
                                return;
                        }
                        log_warning("Cannot take over %s while %s: %s; it stays host memory", d->name, step,
                                    g_strerror(-r));
                } else
                        log_notice("%s: %s is host RAM through kmem (%u of %u memory blocks online); "
                                   "counted as host capacity, taken back whole when allocations need it", p->name,
                                   d->name, d->mem_blocks_online, d->mem_blocks);
                host_adopt(b, p, d);
                return;
        }

        if (d->instance == 0 && (d->driver == DAX_DRIVER_DEVICE_DAX || d->driver == DAX_DRIVER_NONE)) {
                r = be->ops->device_in_use(be, d->name);
                if (r == 0) {
                        r = kernel_destroy(be, d->name, &step);
                        if (r >= 0) {
                                log_info("Took over %s (%s, unused)", d->name, format_size(d->size, sz, sizeof(sz)));
                                pool_mark_device(p, d, EXTENT_DIRTY);
                                return;
                        }
                        log_warning("Cannot take over %s while %s: %s; leaving it alone", d->name, step,
                                    g_strerror(-r));
                } else
                        log_notice("%s is in use by some process; leaving it alone", d->name);
        }

        log_notice("%s: device %s (%s, driver %s) was not created by daxbroker; leaving it alone and "
                   "counting it as used", p->name, d->name, format_size(d->size, sz, sizeof(sz)),
                   dax_driver_to_string(d->driver));
        pool_mark_device(p, d, EXTENT_FOREIGN);
}

/* Marks the FREE parts of [start, start+size) dirty. */
static void pool_mark_dirty_where_free(Pool *p, uint64_t start, uint64_t size) {
        g_autoptr(GArray) pieces = g_array_new(FALSE, FALSE, sizeof(DaxRange));
        uint64_t end = start + size;

        for (size_t e = 0; e < extent_map_count(p->map); e++) {
                const Extent *x = extent_map_get(p->map, e);
                uint64_t s = max_u64(x->start, start), t = min_u64(x->start + x->size, end);
                DaxRange d = { s, t - s };

                if (x->kind == EXTENT_FREE && s < t)
                        g_array_append_val(pieces, d);
        }
        for (guint i = 0; i < pieces->len; i++) {
                DaxRange *d = &g_array_index(pieces, DaxRange, i);
                (void) extent_map_set(p->map, d->start, d->size, EXTENT_DIRTY, NULL);
        }
}

/* Free or bare dirty: no device holds any of it. */
static bool range_unclaimed(const Pool *p, uint64_t start, uint64_t size) {
        for (size_t e = 0; e < extent_map_count(p->map); e++) {
                const Extent *x = extent_map_get(p->map, e);

                if (x->start >= start + size || x->start + x->size <= start)
                        continue;
                if (!(x->kind == EXTENT_FREE || (x->kind == EXTENT_DIRTY && !x->tag)))
                        return false;
        }
        return true;
}

static bool device_within_dirty(const DaxDeviceInfo *d, const GArray *dirty, unsigned region_id) {
        for (unsigned r = 0; r < d->n_ranges; r++) {
                bool inside = false;

                for (guint i = 0; i < dirty->len && !inside; i++) {
                        const RegionRange *x = &g_array_index(dirty, RegionRange, i);
                        inside = x->region_id == region_id && d->ranges[r].start >= x->start &&
                                 d->ranges[r].start + d->ranges[r].size <= x->start + x->size;
                }
                if (!inside)
                        return false;
        }
        return d->n_ranges > 0;
}

static int pool_reconcile(Broker *b, Pool *p, GPtrArray *records, const GArray *dirty, const GArray *host,
                          bool new_boot) {
        DaxBackend *be = b->backend;
        _cleanup_free_ DaxDeviceInfo *devs = NULL;
        g_autofree bool *claimed = NULL;
        g_autoptr(GPtrArray) restore = g_ptr_array_new();
        g_autoptr(GArray) leftovers = g_array_new(FALSE, FALSE, sizeof(DaxRange));
        size_t nd = 0;
        int r;

        r = be->ops->list_devices(be, p->region_id, &devs, &nd);
        if (r < 0) {
                log_error("Cannot list devices of region %u: %s", p->region_id, g_strerror(-r));
                return r;
        }
        claimed = g_new0(bool, nd + 1);

        for (guint i = 0; i < records->len; i++) {
                AllocationRecord *rec = records->pdata[i];
                bool found = false;

                if (rec->state != ALLOCATION_ACTIVE) {
                        /* Cut short: roll back creation, finish release. */
                        for (size_t k = 0; k < nd; k++) {
                                const char *step = NULL;

                                if (claimed[k] || devs[k].instance == 0 ||
                                    !ranges_overlap(devs[k].ranges, devs[k].n_ranges, rec->ranges, rec->n_ranges))
                                        continue;
                                claimed[k] = true;
                                r = kernel_destroy(be, devs[k].name, &step);
                                if (r < 0) {
                                        log_error("Cannot finish %s of %s while %s %s: %s",
                                                  allocation_state_to_string(rec->state), rec->id, step,
                                                  devs[k].name, g_strerror(-r));
                                        pool_mark_device(p, &devs[k], EXTENT_FOREIGN);
                                }
                        }
                        log_info("Finished interrupted %s of %s (owner '%s'); its memory is zeroed before reuse",
                                 rec->state == ALLOCATION_CREATING ? "allocation (rolled back)" : "release",
                                 rec->id, rec->owner);
                        for (unsigned q = 0; q < rec->n_ranges; q++)
                                g_array_append_val(leftovers, rec->ranges[q]);
                        allocation_record_free(rec);
                        records->pdata[i] = NULL;
                        continue;
                }

                for (size_t k = 0; k < nd && !found; k++) {
                        if (claimed[k] || !ranges_equal(devs[k].ranges, devs[k].n_ranges, rec->ranges, rec->n_ranges))
                                continue;
                        if (devs[k].driver == DAX_DRIVER_NONE) {
                                r = be->ops->bind_device_dax(be, devs[k].name);
                                if (r < 0) {
                                        log_error("Cannot rebind %s of %s: %s", devs[k].name, rec->id, g_strerror(-r));
                                        continue;
                                }
                        } else if (devs[k].driver != DAX_DRIVER_DEVICE_DAX)
                                continue;
                        claimed[k] = true;
                        found = true;
                        g_free(rec->device);
                        rec->device = g_strdup(devs[k].name);
                }
                if (found) {
                        pool_adopt(b, p, rec);
                        records->pdata[i] = NULL;
                } else
                        g_ptr_array_add(restore, rec);
        }

        host_reconcile(b, p, host, devs, nd, claimed, leftovers);

        /* Devices lying wholly in recorded dirt are scrub devices (or a
         * release) cut short by a crash: they go, the dirt stays. */
        for (size_t k = 0; k < nd; k++) {
                const char *step = NULL;

                if (claimed[k] || devs[k].instance == 0 || devs[k].driver == DAX_DRIVER_KMEM ||
                    !device_within_dirty(&devs[k], dirty, p->region_id))
                        continue;
                claimed[k] = true;
                r = kernel_destroy(be, devs[k].name, &step);
                if (r < 0) {
                        log_error("Cannot remove scrub device %s while %s: %s", devs[k].name, step, g_strerror(-r));
                        pool_mark_device(p, &devs[k], EXTENT_FOREIGN);
                } else
                        log_info("Removed %s, left over from zeroing cut short", devs[k].name);
        }

        for (size_t k = 0; k < nd; k++)
                if (!claimed[k])
                        pool_settle_unclaimed(b, p, &devs[k]);

        /* After a host reboot the kernel has forgotten our layout: replay
         * the exact ranges of every persistent allocation. */
        for (guint i = 0; i < restore->len; i++) {
                AllocationRecord *rec = restore->pdata[i];
                KernelResult res = {};

                for (guint k = 0; k < records->len; k++)
                        if (records->pdata[k] == rec)
                                records->pdata[k] = NULL;

                if (rec->transient) {
                        log_info("Dropping transient allocation %s of '%s': its client is gone", rec->id, rec->owner);
                        allocation_record_free(rec);
                        continue;
                }
                for (unsigned q = 0; q < rec->n_ranges; q++)
                        if (!range_unclaimed(p, rec->ranges[q].start, rec->ranges[q].size))
                                goto blocked;

                kernel_create(be, p->region_id, rec->align, rec->ranges, rec->n_ranges, &res);
                if (res.err >= 0 && (rec->device_uid != (uid_t) -1 || rec->device_gid != (gid_t) -1) &&
                    fchown(res.fd, rec->device_uid, rec->device_gid) < 0)
                        log_warning("Cannot give /dev/%s to %d:%d again: %m", res.name, (int) rec->device_uid,
                                    (int) rec->device_gid);
                if (res.err < 0) {
                        log_error("Cannot restore allocation %s of '%s' while %s: %s; keeping its record",
                                  rec->id, rec->owner, res.step, g_strerror(-res.err));
                        g_ptr_array_add(b->unmanaged, rec);
                        continue;
                }
                close(res.fd);
                g_free(rec->device);
                rec->device = g_strdup(res.name);
                log_info("Restored allocation %s of '%s' as %s with its original ranges", rec->id, rec->owner,
                         res.name);
                pool_adopt(b, p, rec);
                continue;
        blocked:
                log_error("Cannot restore allocation %s of '%s': its ranges are in use by another device; "
                          "keeping its record", rec->id, rec->owner);
                g_ptr_array_add(b->unmanaged, rec);
        }

        for (guint i = 0; i < leftovers->len; i++) {
                DaxRange *d = &g_array_index(leftovers, DaxRange, i);
                pool_mark_dirty_where_free(p, d->start, d->size);
        }
        for (guint i = 0; i < dirty->len; i++) {
                const RegionRange *d = &g_array_index(dirty, RegionRange, i);
                if (d->region_id == p->region_id)
                        pool_mark_dirty_where_free(p, d->start, d->size);
        }
        /* After a boot nobody knows what the memory holds: the last
         * tenant's data may have survived a warm reboot. */
        if (new_boot)
                pool_mark_dirty_where_free(p, p->start, p->size);
        return 0;
}

static void stable_paths_refresh(Broker *b) {
        g_autofree char *owners = NULL;
        g_autoptr(GHashTable) keep = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        g_autoptr(GPtrArray) all = broker_list_allocations(b);
        GDir *d;

        if (!b->runtime_dir)
                return;
        for (guint i = 0; i < all->len; i++) {
                Allocation *a = all->pdata[i];
                stable_path_update(b, a->rec);
                g_hash_table_add(keep, stable_path(b, a->rec, NULL));
        }

        /* Links of allocations released while we were down. */
        owners = g_build_filename(b->runtime_dir, "owners", NULL);
        d = g_dir_open(owners, 0, NULL);
        if (!d)
                return;
        for (const char *o; (o = g_dir_read_name(d));) {
                g_autofree char *od = g_build_filename(owners, o, NULL);
                GDir *d2 = g_dir_open(od, 0, NULL);

                if (!d2)
                        continue;
                for (const char *l; (l = g_dir_read_name(d2));) {
                        g_autofree char *lp = g_build_filename(od, l, NULL);
                        if (!g_hash_table_contains(keep, lp))
                                (void) unlink(lp);
                }
                g_dir_close(d2);
                (void) rmdir(od);
        }
        g_dir_close(d);
}

static char *read_boot_id(void) {
        g_autofree char *s = NULL;

        if (read_attr("/proc/sys/kernel/random/boot_id", &s) < 0)
                return NULL;
        return g_strdup(g_strstrip(s));
}

int broker_start(Broker *b, GError **error) {
        StoreState st;
        bool new_boot;
        int r;

        r = store_load_state(b->state_path, &st, error);
        if (r < 0) {
                g_prefix_error(error, "Refusing to start with an unreadable state file (move it away to start "
                                      "empty, losing track of its allocations): ");
                return r;
        }
        GPtrArray *records = st.allocations;
        new_boot = !b->boot_id || !st.boot_id || strcmp(b->boot_id, st.boot_id) != 0;
        if (new_boot)
                log_info("First start since boot: memory not held by allocations is zeroed before use");

        r = broker_setup_pools(b, error);
        if (r < 0)
                goto finish;

        for (guint i = 0; i < b->pools->len; i++) {
                Pool *p = b->pools->pdata[i];
                g_autoptr(GPtrArray) mine = g_ptr_array_new();

                for (guint k = 0; k < records->len; k++) {
                        AllocationRecord *rec = records->pdata[k];
                        if (rec && rec->region_id == p->region_id) {
                                g_ptr_array_add(mine, rec);
                                records->pdata[k] = NULL;
                        }
                }
                r = pool_reconcile(b, p, mine, st.dirty, st.host, new_boot);
                /* Whatever reconcile did not take over stays on record. */
                for (guint k = 0; k < mine->len; k++)
                        if (mine->pdata[k])
                                g_ptr_array_add(b->unmanaged, mine->pdata[k]);
                if (r < 0) {
                        g_set_error(error, BROKER_ERROR, BROKER_ERROR_KERNEL_FAILURE,
                                    "Cannot reconcile pool %s with the kernel: %s", p->name, g_strerror(-r));
                        goto finish;
                }
        }
        for (guint k = 0; k < records->len; k++) {
                AllocationRecord *rec = records->pdata[k];
                if (!rec)
                        continue;
                log_warning("Allocation %s of '%s' is in region %u, which is not managed now; keeping its record",
                            rec->id, rec->owner, rec->region_id);
                g_ptr_array_add(b->unmanaged, rec);
                records->pdata[k] = NULL;
        }

        r = broker_save(b, error);
        if (r < 0)
                goto finish;
        stable_paths_refresh(b);
        broker_scrub_kick(b);
        for (guint i = 0; i < b->pools->len; i++)
                host_pool_changed(b, b->pools->pdata[i]);
        log_info("Ready: %u pools, %u allocations", b->pools->len, g_hash_table_size(b->allocations));
finish:
        /* unclaimed records were moved out above; the rest are NULL */
        g_ptr_array_set_free_func(records, NULL);
        store_state_clear(&st);
        return r;
}

void broker_stop(Broker *b) {
        b->stopping = true;
}

int broker_reload(Broker *b, Config *config, GError **error) {
        for (guint i = 0; i < b->pools->len; i++) {
                Pool *p = b->pools->pdata[i];
                const PoolConfig *pc = config_find_pool(config, p->region_id, p->start);

                p->align = pc && pc->align ? pc->align : config->default_align;
                p->boundary = pc ? pc->boundary : 0;
                host_pool_configure(p, pc);
                broker_notify_sizes(b, p);
        }
        config_free(b->config);
        b->config = config;
        for (guint i = 0; i < b->pools->len; i++)
                host_pool_changed(b, b->pools->pdata[i]);
        log_info("Configuration reloaded; adding or removing pools takes a restart");
        return 0;
}

/* Offlining a block normally takes well under a second; one that has not
 * finished in this time is pinned, and waiting longer only delays the VM. */
#define OFFLINE_TIMEOUT_USEC (10 * 1000 * 1000ULL)

void broker_crash_point(Broker *b, const char *step) {
        const char *hold;

        if (!b->crash_at || strcmp(b->crash_at, step) != 0)
                return;
        /* With DAXBROKER_TEST_HOLD_WHILE=FILE the step waits while FILE
         * exists and then goes on: a test can look at the daemon stopped
         * half-way (zeroing, say) without racing it. */
        hold = getenv("DAXBROKER_TEST_HOLD_WHILE");
        if (hold) {
                log_warning("DAXBROKER_TEST_CRASH_AT=%s: holding here while %s exists (test-only)", step, hold);
                while (access(hold, F_OK) == 0)
                        (void) usleep(10 * 1000);
                return;
        }
        log_warning("DAXBROKER_TEST_CRASH_AT=%s: killing the daemon here (test-only fault injection)", step);
        (void) raise(SIGKILL);
}

int broker_new(sd_event *event, DaxBackend *backend, Config *config, const BrokerSettings *settings,
               Broker **ret, GError **error) {
        Broker *b = g_new0(Broker, 1);
        int r;

        b->event = event;
        b->backend = backend;
        b->config = config;
        b->state_path = g_build_filename(settings->state_dir, "state.json", NULL);
        b->runtime_dir = g_strdup(settings->runtime_dir);
        b->pools = g_ptr_array_new_with_free_func((GDestroyNotify) pool_free);
        b->allocations = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify) allocation_free);
        b->unmanaged = g_ptr_array_new_with_free_func((GDestroyNotify) allocation_record_free);
        b->waiting = g_queue_new();
        b->boot_id = read_boot_id();
        b->lock_fd = -1;
        b->crash_at = g_strdup(g_getenv("DAXBROKER_TEST_CRASH_AT"));
        b->offline_timeout_usec = OFFLINE_TIMEOUT_USEC;
        const char *t = g_getenv("DAXBROKER_OFFLINE_TIMEOUT_USEC");
        if (t) {
                guint64 v;

                if (g_ascii_string_to_unsigned(t, 10, 1, UINT64_MAX - 1, &v, NULL))
                        b->offline_timeout_usec = v;
                else
                        log_warning("DAXBROKER_OFFLINE_TIMEOUT_USEC=%s is not a number of microseconds from 1 "
                                    "up; using %" G_GUINT64_FORMAT, t, (guint64) OFFLINE_TIMEOUT_USEC);
        }

        if (g_mkdir_with_parents(settings->state_dir, 0700) < 0) {
                r = -errno;
                g_set_error(error, BROKER_ERROR, BROKER_ERROR_KERNEL_FAILURE, "Cannot create %s: %s",
                            settings->state_dir, g_strerror(errno));
                b->config = NULL;
                broker_free(b);
                return r;
        }
        /* Two brokers reconciling the same regions would destroy each
         * other's devices: the state directory is held exclusively. */
        g_autofree char *lock_path = g_build_filename(settings->state_dir, "lock", NULL);
        b->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (b->lock_fd < 0 || flock(b->lock_fd, LOCK_EX | LOCK_NB) < 0) {
                r = -errno;
                g_set_error(error, BROKER_ERROR, BROKER_ERROR_BUSY, "Cannot lock %s: %s%s", lock_path,
                            g_strerror(-r), r == -EWOULDBLOCK ? " (another daxbrokerd is running)" : "");
                b->config = NULL;
                broker_free(b);
                return r;
        }

        r = scrubber_new(config->scrub_threads, &b->scrubber);
        if (r < 0) {
                g_set_error(error, BROKER_ERROR, BROKER_ERROR_KERNEL_FAILURE, "Cannot start the scrubber: %s",
                            g_strerror(-r));
                b->config = NULL;
                broker_free(b);
                return r;
        }
        log_info("Zeroing memory with %s on %u threads", scrubber_method(b->scrubber),
                 scrubber_threads(b->scrubber));
        r = worker_new(event, &b->worker);
        if (r < 0) {
                g_set_error(error, BROKER_ERROR, BROKER_ERROR_KERNEL_FAILURE, "Cannot start worker: %s",
                            g_strerror(-r));
                b->config = NULL;
                broker_free(b);
                return r;
        }
        *ret = b;
        return 0;
}

void broker_free(Broker *b) {
        if (!b)
                return;
        b->stopping = true;
        if (b->worker)
                worker_free(b->worker); /* finishes kernel work in flight */
        while (!g_queue_is_empty(b->waiting)) {
                WaitingAllocate *w = g_queue_pop_head(b->waiting);
                g_autoptr(GError) e = g_error_new(BROKER_ERROR, BROKER_ERROR_BUSY, "The broker is stopping");

                w->done(NULL, -1, e, w->userdata);
                waiting_free(w);
        }
        g_queue_free(b->waiting);
        sd_event_source_disable_unref(b->scrub_timer);
        scrubber_free(b->scrubber);
        g_hash_table_destroy(b->allocations);
        g_ptr_array_free(b->pools, TRUE);
        g_ptr_array_free(b->unmanaged, TRUE);
        config_free(b->config);
        g_free(b->state_path);
        g_free(b->runtime_dir);
        g_free(b->boot_id);
        g_free(b->crash_at);
        if (b->lock_fd >= 0)
                close(b->lock_fd);
        g_free(b);
}
