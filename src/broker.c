/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker-private.h"
#include "events.h"
#include "reconcile.h"
#include "log.h"
#include "owners.h"
#include "pool-select.h"
#include "recovery.h"
#include "util.h"

G_DEFINE_QUARK(daxbroker-broker-error-quark, broker_error)

static void restore_later(Broker *b);


/* ---- small helpers ---- */

static void pool_free(Pool *p) {
        if (!p)
                return;
        warm_pool_done(p);
        host_pool_done(p);
        scrub_sched_pool_done(p);
        extent_map_free(p->map);
        g_free(p->name);
        g_free(p->tier);
        g_free(p->colors_off);
        g_free(p);
}

static void allocation_free(Allocation *a) {
        if (!a)
                return;
        allocation_record_free(a->rec);
        g_free(a->restore_message);
        g_free(a);
}

const char *allocation_state_name(const Allocation *a) {
        if (a->rec->state == ALLOCATION_CREATING)
                return "creating";
        if (a->rec->state == ALLOCATION_RELEASING)
                return "releasing";
        if (a->restore == ALLOCATION_RESTORING)
                return "restoring";
        if (a->restore == ALLOCATION_RESTORE_FAILED)
                return "failed";
        return "active";
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
        uint64_t warm = warm_bytes(p);

        /* Free is what no device holds, which is the kernel's
         * available_size, plus the warm devices nobody holds yet: those
         * are anyone's for the asking. Dirty memory in it is zeroed on
         * the way out. */
        *ret = (PoolUsage) {
                .free = extent_map_total(p->map, EXTENT_FREE) + extent_map_total_bare_dirty(p->map) + warm,
                .allocated = extent_map_total(p->map, EXTENT_ALLOCATED) +
                             extent_map_total(p->map, EXTENT_PENDING) - warm,
                .warm = warm,
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
                ret->warm += u.warm;
                ret->largest_free = max_u64(ret->largest_free, u.largest_free);
        }
        *ret_total = total;
}

void broker_set_listener(Broker *b, const BrokerListener *l, void *userdata) {
        b->listener = *l;
        b->listener_data = userdata;
}

void broker_notify_added(Broker *b, Allocation *a) {
        if (b->listener.allocation_added)
                b->listener.allocation_added(a, b->listener_data);
}
static void notify_changed(Broker *b, Allocation *a) {
        if (b->listener.allocation_changed)
                b->listener.allocation_changed(a, b->listener_data);
}
static void notify_removed(Broker *b, Allocation *a) {
        if (b->listener.allocation_removed)
                b->listener.allocation_removed(a, b->listener_data);
}
void broker_notify_sizes(Broker *b, Pool *p) {
        if (b->listener.sizes_changed)
                b->listener.sizes_changed(p, b->listener_data);
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

static void collect_all(Broker *b, GPtrArray *recs) {
        GHashTableIter it;
        void *v;

        /* Hash order: sorting would cost every save O(n log n) for nothing. */
        g_hash_table_iter_init(&it, b->allocations);
        while (g_hash_table_iter_next(&it, NULL, &v))
                g_ptr_array_add(recs, ((Allocation *) v)->rec);
        g_hash_table_iter_init(&it, b->releasing);
        while (g_hash_table_iter_next(&it, NULL, &v))
                g_ptr_array_add(recs, ((Allocation *) v)->rec);
        for (guint i = 0; i < b->unmanaged->len; i++)
                g_ptr_array_add(recs, b->unmanaged->pdata[i]);
        warm_collect(b, recs);
}

/* Tests: a partial save missed nothing, and the owner index holds what
 * the broker does; anything else is a bug worth a core dump. */
static int save_check(Broker *b, StoreState *st, const char *what) {
        g_autoptr(GError) error = NULL;

        g_ptr_array_set_size(st->allocations, 0);
        st->partial = false;
        collect_all(b, st->allocations);
        if (store_save_state(b->state_path, st, STORE_SAVE_CHECK, &error) < 0 || !owners_index_check(b, &error)) {
                log_error("After a save of %s: %s", what, error->message);
                abort();
        }
        return 0;
}

/* Every file written is fsync'ed; STORE_SAVE_DURABLE also fsyncs the
 * directory, so that its names survive a power cut. A record of work about
 * to start (an allocation being created) goes without: the power cut that
 * would lose its name also ends the kernel work it records, and a process
 * crash still finds it. */
static int save(Broker *b, AllocationRecord *const *changed, size_t n_changed, const char *gone,
                StoreSaveFlags flags, GError **error) {
        g_autoptr(GPtrArray) recs = g_ptr_array_new();
        g_autoptr(GPtrArray) gone_ids = g_ptr_array_new();
        g_autoptr(GArray) dirty = g_array_new(FALSE, FALSE, sizeof(RegionRange));
        g_autoptr(GArray) host = g_array_new(FALSE, FALSE, sizeof(RegionRange));
        StoreState st = { .allocations = recs, .boot_id = b->boot_id, .dirty = dirty, .host = host,
                          .owners = b->owners, .partial = !b->save_all, .gone = gone_ids };
        int r;

        if (st.partial) {
                for (size_t i = 0; i < n_changed; i++)
                        g_ptr_array_add(recs, changed[i]);
                if (gone)
                        g_ptr_array_add(gone_ids, (void *) gone);
        } else
                collect_all(b, recs);
        collect_dirty(b, dirty);
        host_collect(&b->host, host);

        r = store_save_state(b->state_path, &st, flags, error);
        if (r == -EAGAIN && st.partial) {
                g_ptr_array_set_size(recs, 0);
                st.partial = false;
                collect_all(b, recs);
                r = store_save_state(b->state_path, &st, flags, error);
        }
        /* A save cut short leaves the files and the view of them between
         * two states: only a save of everything knows what to write. */
        b->save_all = r < 0;
        if (r < 0 || !b->check_saves)
                return r;
        return save_check(b, &st, n_changed ? changed[0]->id : gone ? gone : "no record");
}

int broker_save_full(Broker *b, StoreSaveFlags flags, GError **error) {
        b->save_all = true;
        return save(b, NULL, 0, NULL, flags, error);
}

int broker_save_changed(Broker *b, AllocationRecord *changed, StoreSaveFlags flags, GError **error) {
        return save(b, &changed, changed ? 1 : 0, NULL, flags, error);
}

int broker_save_records(Broker *b, AllocationRecord *const *changed, size_t n, StoreSaveFlags flags,
                        GError **error) {
        return save(b, changed, n, NULL, flags, error);
}

int broker_save_gone(Broker *b, const char *id, StoreSaveFlags flags, GError **error) {
        return save(b, NULL, 0, id, flags, error);
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
 * bus does not depend on it. The link is made under a name that starts with
 * '.', which no escaped owner or label has, so it never replaces another
 * label's link. Only a device of the owner's uid gets a link. */
void broker_stable_path_update(Broker *b, const AllocationRecord *r) {
        g_autofree char *dir = NULL, *target = NULL, *tmp = NULL;
        g_autofree char *path = NULL;
        int k;

        if (!b->runtime_dir || !r->device)
                return;
        if (!owners_link_allowed(b, r)) {
                log_warning("Allocation %s of uid %u is in owner '%s' of another uid: it gets no stable path",
                            r->id, (unsigned) r->owner_uid, r->owner);
                return;
        }
        path = stable_path(b, r, &dir);
        target = g_strdup_printf("/dev/%s", r->device);
        tmp = g_build_filename(dir, ".link.tmp", NULL);

        /* Two syscalls when the owner's directory is there (it holds
         * another link); the directory is made, or a temporary link left
         * by a crash removed, only when the first symlink() says so. */
        k = symlink(target, tmp) < 0 ? -errno : 0;
        if (k == -ENOENT)
                k = g_mkdir_with_parents(dir, 0755) < 0 || symlink(target, tmp) < 0 ? -errno : 0;
        else if (k == -EEXIST)
                k = unlink(tmp) < 0 || symlink(target, tmp) < 0 ? -errno : 0;
        if (k < 0 || rename(tmp, path) < 0) {
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
        uint64_t deadline_usec;
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

        crash_op_begin("allocate");
        kernel_create(j->broker->backend, j->region_id, j->align, r->ranges, r->n_ranges, &j->res);
        if (j->res.err < 0)
                return;

        /* Old data in the ranges never reaches the new owner. */
        k = j->n_zero == 0 ? 0
                           : kernel_zero(j->broker->backend, j->broker->scrubber, j->res.name, dax_ranges_size(r->ranges, r->n_ranges), j->zero,
                                         j->n_zero == SIZE_MAX ? 0 : j->n_zero, &step);
        if (k >= 0 && j->n_zero)
                crash_point("allocate-zeroed");
        if (k >= 0 && j->chown && fchown(j->res.fd, j->device_uid, j->device_gid) < 0) {
                k = -errno;
                step = "changing the owner of the device node";
        } else if (k >= 0 && j->chown)
                crash_point("allocate-chowned");
        if (k < 0) {
                const char *ignored;

                close(j->res.fd);
                j->res.fd = -1;
                (void) kernel_destroy(j->broker->backend, j->res.name, &ignored);
                j->res.err = k;
                j->res.step = step;
        }
}


static void allocate_done(void *p) {
        AllocateJob *j = p;
        Broker *b = j->broker;
        Allocation *a = j->allocation;
        Pool *pool = a->pool;
        g_autoptr(GError) error = NULL;

        a->busy = false;
        if (j->res.err < 0) {
                g_set_error(&error, BROKER_ERROR, BROKER_ERROR_KERNEL_FAILURE,
                            "Kernel refused while %s in region %u: %s", j->res.step, j->region_id,
                            g_strerror(-j->res.err));
                log_error("Allocate %s for '%s' failed: %s", a->rec->id, a->rec->owner, error->message);
                /* What the ranges hold now is unknown: zero before reuse. */
                extent_map_set_ranges(pool->map, a->rec->ranges, a->rec->n_ranges, EXTENT_DIRTY, NULL);
                owners_index_remove(b, a->rec);
                g_hash_table_remove(b->allocations, a->rec->id);
                (void) broker_save(b, NULL);
                broker_notify_sizes(b, pool);
                j->done(NULL, -1, error, j->userdata);
                g_free(j);
                broker_scrub_kick(b);
                warm_later(b, pool);
                return;
        }

        a->rec->device = g_strdup(j->res.name);
        a->rec->state = ALLOCATION_ACTIVE;
        if ((uint64_t) g_get_monotonic_time() > j->deadline_usec) {
                /* The caller stopped waiting: nobody would hold it. */
                g_autoptr(GError) e = g_error_new(BROKER_ERROR, BROKER_ERROR_TIMED_OUT,
                                                  "The allocation was made too late for the caller's deadline and "
                                                  "was taken down again; try again");

                log_warning("Allocate %s for '%s' finished after its deadline; releasing it", a->rec->id,
                            a->rec->owner);
                close(j->res.fd);
                broker_allocation_retire(b, a);
                j->done(NULL, -1, e, j->userdata);
                g_free(j);
                return;
        }
        extent_map_set_ranges(pool->map, a->rec->ranges, a->rec->n_ranges, EXTENT_ALLOCATED, a);
        if (broker_save_changed(b, a->rec, STORE_SAVE_DURABLE, &error) < 0) {
                /* Nobody may get memory the state file does not know about:
                 * take the device down again. */
                g_autoptr(GError) e = g_error_new(BROKER_ERROR, BROKER_ERROR_KERNEL_FAILURE,
                                                  "Cannot record the allocation: %s", error->message);

                close(j->res.fd);
                broker_allocation_retire(b, a);
                j->done(NULL, -1, e, j->userdata);
                g_free(j);
                return;
        }

        broker_stable_path_update(b, a->rec);
        /* The caller is waiting for its fd; the journal and observers can
         * wait a moment (anything sent on the bus before the reply is
         * routed before it). */
        j->done(a, j->res.fd, NULL, j->userdata);
        close(j->res.fd);
        events_allocated(a, j->zero, j->n_zero);
        g_free(j);
        broker_notify_added(b, a);
        broker_notify_sizes(b, pool);
        host_pool_changed(&b->host, pool);
        warm_later(b, pool);
}

static char *allocation_new_id(Broker *b) {
        for (;;) {
                char *id = g_strdup_printf("%08x%08x", g_random_int(), g_random_int());
                if (!g_hash_table_contains(b->allocations, id) && !g_hash_table_contains(b->releasing, id))
                        return id;
                g_free(id);
        }
}

static bool align_valid(uint64_t a) {
        return a == 4 * KiB || a == 2 * MiB || a == GiB;
}

/* Who holds which colours of a pool, as seen by one owner. */
typedef struct ColorView {
        ColorMask isolated_others; /* held alone by cache-isolated owners other than this one */
        ColorMask touched_others;  /* touched by any allocation of another owner */
        ColorMask mine;            /* held alone by this owner (its cache-isolated allocations) */
        GString *holders;          /* "owner (colours)" of the other isolated owners */
} ColorView;

static void color_view(Broker *b, Pool *p, const char *owner, ColorView *ret) {
        GHashTableIter it;
        gpointer v;
        g_autoptr(GHashTable) per_owner = g_hash_table_new(g_str_hash, g_str_equal);

        *ret = (ColorView) { .holders = g_string_new(NULL) };
        g_hash_table_iter_init(&it, b->allocations);
        while (g_hash_table_iter_next(&it, NULL, &v)) {
                Allocation *a = v;
                ColorMask m;

                if (a->pool != p)
                        continue;
                m = cache_colors_of_ranges(&p->colors, a->rec->ranges, a->rec->n_ranges);
                if (a->rec->cache_isolation)
                        m |= a->rec->colors;
                if (strcmp(a->rec->owner, owner) == 0) {
                        if (a->rec->cache_isolation)
                                ret->mine |= m;
                        continue;
                }
                ret->touched_others |= m;
                if (a->rec->cache_isolation) {
                        ret->isolated_others |= m;
                        g_hash_table_insert(per_owner, a->rec->owner,
                                            GSIZE_TO_POINTER(GPOINTER_TO_SIZE(g_hash_table_lookup(per_owner, a->rec->owner)) | m));
                }
        }
        g_autoptr(GList) keys = g_list_sort(g_hash_table_get_keys(per_owner), (GCompareFunc) strcmp);
        for (GList *l = keys; l; l = l->next) {
                g_autofree char *c = color_mask_to_string(GPOINTER_TO_SIZE(g_hash_table_lookup(per_owner, l->data)));
                g_string_append_printf(ret->holders, "%s%s (%s)", ret->holders->len ? ", " : "", (char *) l->data, c);
        }
}

/* Why a colour request does not fit in a pool, for NoSpace. */
static char *color_no_space(Pool *p, const AllocateRequest *req, const ColorView *cv, ColorMask tried) {
        char sz[FORMAT_SIZE_MAX], sz2[FORMAT_SIZE_MAX];
        ColorMask all = cache_colors_all(&p->colors);
        ColorMask free_colors = all & ~cv->touched_others & ~cv->mine;
        g_autofree char *mine = color_mask_to_string(cv->mine), *tried_s = color_mask_to_string(tried);
        g_autofree char *busy = color_mask_to_string(cv->touched_others & ~cv->isolated_others);
        GString *s = g_string_new(NULL);

        g_string_append_printf(s, "pool %s (%u colours of %s each)", p->name, p->colors.n,
                               format_size(p->size / p->colors.n, sz, sizeof(sz)));
        if (req->colors) {
                g_autofree char *want = color_mask_to_string(req->colors);
                g_autofree char *clash = color_mask_to_string(req->colors & cv->isolated_others);

                if (req->colors & cv->isolated_others)
                        g_string_append_printf(s, ": colours %s are held by cache-isolated owners %s", clash,
                                               cv->holders->str);
                else
                        g_string_append_printf(s, ": colours %s have no room for %s", want,
                                               format_size(req->size, sz2, sizeof(sz2)));
                return g_string_free(s, false);
        }
        if (!req->cache_isolation) {
                g_autofree char *held = color_mask_to_string(cv->isolated_others);

                g_string_append_printf(s, ": colours %s are held by cache-isolated owners %s, and the other colours have no room",
                                       held, cv->holders->str);
                return g_string_free(s, false);
        }
        g_string_append_printf(s, ": no free cache colour is left for owner %s", req->owner);
        if (cv->isolated_others)
                g_string_append_printf(s, "; held by cache-isolated owners: %s", cv->holders->str);
        if (*busy)
                g_string_append_printf(s, "; colours %s are used by other owners' allocations", busy);
        if (cv->mine)
                g_string_append_printf(s, "; owner %s holds colours %s", req->owner, mine);
        if (free_colors == 0)
                g_string_append_printf(s, "; %s does not fit in %s", format_size(req->size, sz2, sizeof(sz2)),
                                       *tried_s ? tried_s : "its colours");
        else
                g_string_append_printf(s, "; %s does not fit even with every free colour (%s)",
                                       format_size(req->size, sz2, sizeof(sz2)), tried_s);
        return g_string_free(s, false);
}

/* A cache-isolated owner's placement: its own colours, then the fewest free
 * ones added lowest first. */
static int place_isolated(const ExtentMap *m, PlacementRequest *pr, const CacheColors *colors, ColorMask mine,
                          ColorMask free_colors, DaxRange *ranges) {
        int n = -ENOSPC;

        pr->color_mask = mine;
        if (mine)
                n = extent_map_place(m, pr, ranges, DAX_RANGES_MAX);
        for (unsigned k = 0; n == -ENOSPC && k < colors->n; k++)
                if (free_colors & ((ColorMask) 1 << k)) {
                        pr->color_mask |= (ColorMask) 1 << k;
                        n = extent_map_place(m, pr, ranges, DAX_RANGES_MAX);
                }
        return n;
}

/* Places in a pool with colours: in the colours asked for, or for a
 * cache-isolated owner in its own colours and then the fewest free ones
 * added lowest first; anything else stays out of colours other owners
 * hold alone. */
static int place_colored(Broker *b, Pool *p, const ExtentMap *m, const AllocateRequest *req, PlacementRequest *pr,
                         DaxRange *ranges, char **ret_why) {
        ColorMask all = cache_colors_all(&p->colors);
        ColorView cv;
        int n = -ENOSPC;

        color_view(b, p, req->owner, &cv);
        pr->colors = &p->colors;
        if (req->colors) {
                pr->color_mask = req->colors;
                if (!(req->colors & cv.isolated_others))
                        n = extent_map_place(m, pr, ranges, DAX_RANGES_MAX);
        } else if (req->cache_isolation) {
                ColorMask free_colors = all & ~cv.touched_others & ~cv.mine;

                n = place_isolated(m, pr, &p->colors, cv.mine, free_colors, ranges);
                if (n > 0 && p->scrubs_in_flight > 0) {
                        /* Memory a scrub device holds for a moment would do
                         * with fewer colours: wait for the scrub rather than
                         * take a colour more for good. */
                        ExtentMap *c = extent_map_copy(m);
                        PlacementRequest pr2 = *pr;
                        DaxRange r2[DAX_RANGES_MAX];

                        for (size_t e = 0; e < extent_map_count(m); e++) {
                                const Extent *x = extent_map_get(m, e);
                                if (x->kind == EXTENT_DIRTY && x->tag)
                                        (void) extent_map_set(c, x->start, x->size, EXTENT_DIRTY, NULL);
                        }
                        if (place_isolated(c, &pr2, &p->colors, cv.mine, free_colors, r2) > 0 &&
                            __builtin_popcountll(pr2.color_mask) < __builtin_popcountll(pr->color_mask))
                                n = -EAGAIN;
                        extent_map_free(c);
                }
        } else {
                pr->color_mask = all & ~cv.isolated_others;
                n = extent_map_place(m, pr, ranges, DAX_RANGES_MAX);
        }
        if (n == -ENOSPC && (req->colors || req->cache_isolation || cv.isolated_others) && ret_why && !*ret_why)
                *ret_why = color_no_space(p, req, &cv, pr->color_mask);
        g_string_free(cv.holders, true);
        return n;
}

/* Places the request in a pool whose map is m (the pool's own, or a copy
 * showing memory that could come back from the host): the one placement
 * both an Allocate and the reclaim it may start go by. */
PlacementRequest placement_request(const Broker *b, const Pool *p, const AllocateRequest *req, bool include_dirty) {
        return (PlacementRequest) {
                .size = req->size,
                .align = req->align ? req->align : p->align,
                .boundary = p->boundary,
                .contiguous = req->contiguous,
                .max_ranges = b->config->max_ranges,
                .include_dirty = include_dirty,
        };
}

static int place_in(Broker *b, Pool *p, const ExtentMap *m, const AllocateRequest *req, bool include_dirty,
                    DaxRange *ranges, uint64_t *ret_align, char **ret_why) {
        PlacementRequest pr = placement_request(b, p, req, include_dirty);

        *ret_align = pr.align;
        if (cache_colors_enabled(&p->colors))
                return place_colored(b, p, m, req, &pr, ranges, ret_why);
        return extent_map_place(m, &pr, ranges, DAX_RANGES_MAX);
}

/* The pools the request may use, in the order they are tried; why the
 * others do not qualify goes to unqualified. */
static GPtrArray *allocate_candidates(Broker *b, const AllocateRequest *req, GString *unqualified, bool *ret_any_pool) {
        GPtrArray *candidates = g_ptr_array_new();

        *ret_any_pool = false;
        for (guint i = 0; i < b->pools->len; i++) {
                Pool *p = b->pools->pdata[i];
                g_autofree char *why = NULL;

                if (req->pool && strcmp(req->pool, p->name) != 0)
                        continue;
                if (req->has_numa_node && req->numa_node != p->numa_node)
                        continue;
                *ret_any_pool = true;
                if (!pool_select_qualifies(p, req, &why)) {
                        if (unqualified)
                                g_string_append_printf(unqualified, "%s%s", unqualified->len ? "; " : "", why);
                        continue;
                }
                g_ptr_array_add(candidates, p);
        }
        if (pool_select_by_class(req))
                pool_select_sort(candidates, req);
        return candidates;
}

typedef struct ReclaimFit {
        Broker *broker;
        const AllocateRequest *req;
} ReclaimFit;

static bool reclaim_fits(void *userdata, Pool *p, const ExtentMap *m) {
        ReclaimFit *f = userdata;
        DaxRange ranges[DAX_RANGES_MAX];
        uint64_t align;

        return place_in(f->broker, p, m, f->req, true, ranges, &align, NULL) > 0;
}

/* Takes back the host chunks that let the request fit, in the first pool
 * where some do: with cache colours, those in the colours the request
 * may use (an isolated owner's own, then free ones; pinned ones; or any
 * an isolated owner does not hold), never those only another isolated
 * owner's allocations may use. */
static bool reclaim_for(Broker *b, const AllocateRequest *req) {
        bool any_pool;
        g_autoptr(GPtrArray) candidates = allocate_candidates(b, req, NULL, &any_pool);
        ReclaimFit f = { b, req };

        for (guint i = 0; i < candidates->len; i++) {
                Pool *p = candidates->pdata[i];
                ReclaimWant w = { .fits = reclaim_fits, .userdata = &f };

                if (cache_colors_enabled(&p->colors)) {
                        ColorMask all = cache_colors_all(&p->colors);
                        ColorView cv;

                        color_view(b, p, req->owner, &cv);
                        if (req->colors)
                                w.first = w.allowed = req->colors & ~cv.isolated_others;
                        else if (req->cache_isolation) {
                                w.first = cv.mine;
                                w.then = all & ~cv.touched_others & ~cv.mine;
                                w.allowed = w.first | w.then;
                        } else
                                w.first = w.allowed = all & ~cv.isolated_others;
                        g_string_free(cv.holders, true);
                }
                if (host_reclaim_for(&b->host, p, &w))
                        return true;
        }
        return false;
}

/* Picks pool and ranges: clean memory first, then memory that still has to
 * be zeroed. *ret_wait tells the caller that memory being scrubbed right
 * now would make the request fit. */
static Pool *allocate_place(Broker *b, const AllocateRequest *req, uint64_t *ret_align, DaxRange *ranges,
                            int *ret_n, bool *ret_wait, GError **error) {
        char sz[FORMAT_SIZE_MAX], sz2[FORMAT_SIZE_MAX];
        uint64_t largest = 0, biggest_pool = 0, granule_needed = 0, host = 0, held_dirty = 0;
        const char *host_error = NULL;
        bool any_candidate = false, any_pool;
        g_autoptr(GString) unqualified = g_string_new(NULL);
        g_autoptr(GPtrArray) candidates = allocate_candidates(b, req, unqualified, &any_pool);
        g_autofree char *color_why = NULL;

        *ret_wait = false;
        for (int pass = 0; pass < 2; pass++)
                for (guint i = 0; i < candidates->len; i++) {
                        Pool *p = candidates->pdata[i];
                        uint64_t align = req->align ? req->align : p->align;
                        uint64_t granule = max_u64(max_u64(align, p->boundary), 2 * MiB);
                        int n;

                        if (pass == 0) {
                                any_candidate = true;
                                biggest_pool = max_u64(biggest_pool, p->size);
                                host += extent_map_total(p->map, EXTENT_HOST);
                                /* Released memory comes back (dirty) once its
                                 * device is gone: Release replies before. */
                                held_dirty += p->scrubs_in_flight + p->releases_in_flight;
                                if (host_last_error(p))
                                        host_error = host_last_error(p);
                        }
                        if (req->size % granule != 0) {
                                granule_needed = granule;
                                continue;
                        }
                        /* Clean memory first would make an isolated owner
                         * take more colours than it needs when the clean
                         * memory is spread: it counts dirt at once. */
                        if (pass == 0 && req->cache_isolation)
                                continue;
                        n = place_in(b, p, p->map, req, pass == 1, ranges, &align, pass == 1 ? &color_why : NULL);
                        if (n > 0) {
                                *ret_align = align;
                                *ret_n = n;
                                return p;
                        }
                        largest = max_u64(largest, extent_map_largest_usable(p->map, align, p->boundary, true));
                }

        if (!any_candidate && any_pool)
                g_set_error(error, BROKER_ERROR, BROKER_ERROR_NO_SUCH_POOL, "No pool has the memory asked for: %s",
                            unqualified->str);
        else if (!any_candidate) {
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
        else if (color_why) {
                *ret_wait = held_dirty > 0;
                g_set_error(error, BROKER_ERROR, BROKER_ERROR_NO_SPACE, "No room for %s: %s",
                            format_size(req->size, sz, sizeof(sz)), color_why);
        } else {
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
        char *owner, *pool, *label, *client, *tier;
        BrokerAllocateDone done;
        void *userdata;
} WaitingAllocate;

static void waiting_free(WaitingAllocate *w) {
        g_free(w->owner);
        g_free(w->pool);
        g_free(w->label);
        g_free(w->client);
        g_free(w->tier);
        g_free(w);
}

static void waiting_arm(Broker *b);

/* Requests whose deadline passed while they waited fail with TimedOut;
 * nothing was created for them. */
static int on_waiting_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Broker *b = userdata;
        uint64_t now = g_get_monotonic_time();
        unsigned n = g_queue_get_length(b->waiting);

        for (unsigned i = 0; i < n; i++) {
                WaitingAllocate *w = g_queue_pop_head(b->waiting);
                g_autoptr(GError) e = NULL;

                if (w->req.deadline_usec > now) {
                        g_queue_push_tail(b->waiting, w);
                        continue;
                }
                e = g_error_new(BROKER_ERROR, BROKER_ERROR_TIMED_OUT,
                                "No memory became free within the request's deadline (%" G_GUINT64_FORMAT
                                " ms): it was waiting for memory being zeroed or taken back from the host",
                                w->req.timeout_usec / 1000);
                log_info("Allocate for '%s' timed out while waiting for memory", w->req.owner);
                w->done(NULL, -1, e, w->userdata);
                waiting_free(w);
        }
        waiting_arm(b);
        return 0;
}

static void waiting_arm(Broker *b) {
        uint64_t first = UINT64_MAX;

        for (GList *l = b->waiting->head; l; l = l->next)
                first = MIN(first, ((WaitingAllocate *) l->data)->req.deadline_usec);
        if (!b->event)
                return;
        if (first == UINT64_MAX) {
                if (b->waiting_timer)
                        (void) sd_event_source_set_enabled(b->waiting_timer, SD_EVENT_OFF);
                return;
        }
        if (!b->waiting_timer) {
                if (sd_event_add_time(b->event, &b->waiting_timer, CLOCK_MONOTONIC, first, 0, on_waiting_timer, b) < 0)
                        return;
        } else
                (void) sd_event_source_set_time(b->waiting_timer, first);
        (void) sd_event_source_set_enabled(b->waiting_timer, SD_EVENT_ONESHOT);
}

static void waiting_add(Broker *b, const AllocateRequest *req, BrokerAllocateDone done, void *userdata) {
        WaitingAllocate *w = g_new0(WaitingAllocate, 1);

        w->req = *req;
        w->req.owner = w->owner = g_strdup(req->owner);
        w->req.pool = w->pool = g_strdup(req->pool);
        w->req.label = w->label = g_strdup(req->label);
        w->req.client = w->client = g_strdup(req->client);
        w->req.tier = w->tier = g_strdup(req->tier);
        w->done = done;
        w->userdata = userdata;
        g_queue_push_tail(b->waiting, w);
        waiting_arm(b);
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
        bool wait;
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
        if (!owners_admit(b, req, error))
                return false;

        /* A warm device that fits is handed over: no kernel work now. */
        if (warm_hand_over(b, req, done, userdata) > 0)
                return true;

        pool = allocate_place(b, req, &align, ranges, &n, &wait, error);
        /* Warm devices go first when they stand in the way. */
        if (!pool && !wait && may_wait && g_error_matches(*error, BROKER_ERROR, BROKER_ERROR_NO_SPACE) &&
            warm_give_back_for(b, req))
                wait = true;
        /* Host memory comes back for it: wait for the reclaim (ours or one
         * already running), then place again. */
        if (!pool && !wait && may_wait && g_error_matches(*error, BROKER_ERROR, BROKER_ERROR_NO_SPACE) &&
            (host_reclaim_running(&b->host, req) || reclaim_for(b, req)))
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
        if (cache_colors_enabled(&pool->colors) && (req->cache_isolation || req->colors)) {
                rec->colors = cache_colors_of_ranges(&pool->colors, ranges, n);
                rec->cache_isolation = req->cache_isolation;
        }

        AllocateJob *j = g_new0(AllocateJob, 1);
        *j = (AllocateJob) {
                .broker = b,
                /* Waiting ends at the deadline. Kernel work already under
                 * way is given up only once the caller has surely stopped
                 * listening: its own timeout-usec, or the 25 s default
                 * D-Bus timeout when it gave none. */
                .deadline_usec = req->explicit_timeout ? req->deadline_usec
                                                       : req->deadline_usec - req->timeout_usec +
                                                                 MAX(req->timeout_usec, DBUS_DEFAULT_TIMEOUT_USEC),
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
        /* All or nothing: on failure the map is unchanged. */
        n = extent_map_set_ranges(pool->map, a->rec->ranges, a->rec->n_ranges, EXTENT_PENDING, a);
        if (n < 0) {
                g_set_error(error, BROKER_ERROR, BROKER_ERROR_KERNEL_FAILURE,
                            "Cannot reserve the ranges in pool %s: %s", pool->name, g_strerror(-n));
                allocation_free(a);
                g_free(j);
                return false;
        }
        owners_claim(b, a->rec->owner, a->rec->owner_uid);
        g_hash_table_insert(b->allocations, a->rec->id, a);
        owners_index_add(b, a->rec);

        /* Written before the kernel is touched, so that a crash in between
         * is rolled back at start-up instead of leaking a device. */
        if (broker_save_changed(b, a->rec, 0, error) < 0) {
                g_prefix_error(error, "Cannot record the allocation: ");
                (*error)->domain = BROKER_ERROR;
                (*error)->code = BROKER_ERROR_KERNEL_FAILURE;
                /* Any dirt the placement took over is dirt again; marking
                 * the whole allocation dirty is the safe superset. */
                extent_map_set_ranges(pool->map, a->rec->ranges, a->rec->n_ranges,
                                      j->n_zero ? EXTENT_DIRTY : EXTENT_FREE, NULL);
                owners_index_remove(b, a->rec);
                g_hash_table_remove(b->allocations, a->rec->id);
                g_free(j);
                return false;
        }

        warm_note_request(pool, req->size);
        worker_submit(b->worker, pool->region_id, allocate_work, allocate_done, j);
        broker_notify_sizes(b, pool);
        return true;
}

bool broker_allocate(Broker *b, const AllocateRequest *req, BrokerAllocateDone done, void *userdata,
                     GError **error) {
        AllocateRequest r = *req;
        unsigned n;

        /* sd-event's CLOCK_MONOTONIC is the kernel's, as is GLib's. */
        r.explicit_timeout = r.timeout_usec != 0;
        if (!r.timeout_usec)
                r.timeout_usec = b->config->allocate_timeout_usec;
        r.deadline_usec = g_get_monotonic_time() + r.timeout_usec;
        n = g_queue_get_length(b->waiting);
        if (!allocate_try(b, &r, done, userdata, true, error))
                return false;
        if (g_queue_get_length(b->waiting) > n)
                log_info("Allocate of %" PRIu64 " bytes for '%s' waits for memory being released, zeroed or taken back",
                         r.size, r.owner);
        return true;
}

/* ---- release: reply, then destroy the device and zero its memory ---- */

typedef struct ReleaseJob {
        Broker *broker;
        Allocation *allocation;
        char name[DAX_NAME_MAX];
        int err;
        const char *step;
} ReleaseJob;

static void release_work(void *p) {
        ReleaseJob *j = p;

        crash_op_begin("release");
        j->err = j->name[0] ? kernel_destroy(j->broker->backend, j->name, &j->step) : 0;
}

/* The device is gone (or the kernel refused): the caller heard long ago. */
static void release_done(void *p) {
        ReleaseJob *j = p;
        Broker *b = j->broker;
        Allocation *a = j->allocation;
        Pool *pool = a->pool;
        g_autoptr(GError) error = NULL;
        g_autofree char *id = g_strdup(a->rec->id);

        a->busy = false;
        pool->releases_in_flight--;
        if (j->err < 0) {
                /* Stays on record as releasing, its ranges reserved: the
                 * next start finishes it (and zeroes the memory). */
                log_error("Release %s: the kernel refused while %s %s: %s; the next start finishes it", a->rec->id,
                          j->step, j->name, g_strerror(-j->err));
                g_free(j);
                return;
        }

        /* The kernel does not zero device memory: what the owner left
         * there is dirt until the scrubber has been through it. */
        if (extent_map_set_ranges(pool->map, a->rec->ranges, a->rec->n_ranges, EXTENT_DIRTY, NULL) < 0)
                log_error("Cannot mark the ranges of %s dirty in pool %s", a->rec->id, pool->name);
        /* Never restored: parts of it may still be host RAM, which stays
         * the host's. */
        if (a->restore != ALLOCATION_RESTORED)
                host_take_back(&b->host, pool, a->rec->ranges, a->rec->n_ranges);
        g_hash_table_remove(b->releasing, id);
        if (broker_save_gone(b, id, STORE_SAVE_DURABLE, &error) < 0)
                /* The file still says RELEASING, which the next start-up
                 * finishes (and zeroes); nothing is lost. */
                log_error("Cannot record the release: %s", error->message);
        broker_notify_sizes(b, pool);
        /* Zeroed at once: memory is reusable as soon as the kernel and
         * memory bandwidth allow, never after a fixed wait. Releases that
         * come together still share the region's lane one after another. */
        broker_scrub_kick(b);
        g_free(j);
        broker_waiting_retry(b);
        host_pool_changed(&b->host, pool);
        warm_later(b, pool);
}

/* Out of the allocations (nobody lists, opens or counts it any more),
 * its ranges still reserved; its device is destroyed on the region lane
 * once the job is submitted. */
static ReleaseJob *release_take(Broker *b, Allocation *a) {
        ReleaseJob *j = g_new0(ReleaseJob, 1);

        *j = (ReleaseJob) { .broker = b, .allocation = a };
        g_strlcpy(j->name, a->rec->device && a->restore == ALLOCATION_RESTORED ? a->rec->device : "", sizeof(j->name));
        a->rec->state = ALLOCATION_RELEASING;
        a->busy = true;
        a->pool->releases_in_flight++;
        owners_index_remove(b, a->rec);
        g_hash_table_steal(b->allocations, a->rec->id);
        g_hash_table_insert(b->releasing, a->rec->id, a);
        return j;
}

static void release_submit(Broker *b, ReleaseJob *j) {
        worker_submit(b->worker, j->allocation->pool->region_id, release_work, release_done, j);
}

static void release_background(Broker *b, Allocation *a) {
        release_submit(b, release_take(b, a));
}

void broker_allocation_retire(Broker *b, Allocation *a) {
        events_released(a, a->rec->device);
        release_background(b, a);
}

/* The device node goes back to root, mode 0600: nobody opens it by path
 * any more. Descriptors already open keep working until the device is
 * destroyed in the background. */
static void release_revoke(Broker *b, Allocation *a) {
        int fd;

        if (!a->rec->device || a->restore != ALLOCATION_RESTORED)
                return;
        fd = b->backend->ops->open_device(b->backend, a->rec->device);
        if (fd < 0 || fchown(fd, 0, 0) < 0 || fchmod(fd, 0600) < 0)
                log_warning("Release %s: cannot give /dev/%s back to root: %s; it is destroyed shortly", a->rec->id,
                            a->rec->device, g_strerror(fd < 0 ? -fd : errno));
        if (fd >= 0)
                close(fd);
        crash_point("release-revoked");
}

/* Records the release durably, revokes access to the device, takes the
 * allocation off the bus and replies; the kernel work follows. */
static bool release_start(Broker *b, Allocation *a, BrokerDone done, void *userdata, GError **error) {
        ReleaseJob *j;

        if (a->busy) {
                g_set_error(error, BROKER_ERROR, BROKER_ERROR_BUSY,
                            "Allocation %s has an operation in progress, try again", a->rec->id);
                return false;
        }
        a->rec->state = ALLOCATION_RELEASING;
        /* Durable: the reply says it is released, whatever happens next. */
        if (broker_save_changed(b, a->rec, STORE_SAVE_DURABLE, error) < 0) {
                a->rec->state = ALLOCATION_ACTIVE;
                g_prefix_error(error, "Cannot record the release: ");
                (*error)->domain = BROKER_ERROR;
                (*error)->code = BROKER_ERROR_KERNEL_FAILURE;
                return false;
        }
        release_revoke(b, a);
        stable_path_remove(b, a->rec);
        j = release_take(b, a);
        if (done)
                done(1, NULL, userdata);
        /* After the reply: a signal sent before it is routed before it,
         * and under a slow CPU (emulation) the lane's kernel work would
         * compete with it. Nobody lists or opens the allocation since
         * release_take(). */
        events_released(a, a->rec->device);
        notify_removed(b, a);
        broker_notify_sizes(b, a->pool);
        release_submit(b, j);
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

static bool not_of_owner(const AllocationRecord *r, void *owner) {
        return strcmp(r->owner, owner) != 0;
}

static bool not_of_client(const AllocationRecord *r, void *client) {
        return !r->transient || g_strcmp0(r->client, client) != 0;
}

bool broker_release_owner(Broker *b, const char *owner, BrokerDone done, void *userdata, GError **error) {
        g_autoptr(GPtrArray) all = NULL;
        const char *why = name_invalid_reason(owner);
        OwnerRelease *o;

        if (why) {
                g_set_error(error, BROKER_ERROR, BROKER_ERROR_INVALID_ARGUMENT, "Owner %s", why);
                return false;
        }
        /* An Allocate of the owner read before this call is answered
         * before it, and released by it. */
        if (!warm_queued_foreach(b, not_of_owner, (void *) owner))
                warm_commit(b);
        all = broker_list_allocations(b);
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

        if (a->restore != ALLOCATION_RESTORED) {
                g_set_error(error, BROKER_ERROR, BROKER_ERROR_BUSY,
                            "Allocation %s has no device yet (%s): %s", a->rec->id, allocation_state_name(a),
                            a->restore_message ? a->restore_message : "being restored");
                return -1;
        }
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
        g_autoptr(GPtrArray) all = NULL;

        /* Its transient hand-overs still waiting are committed, then
         * released with the rest. */
        if (!warm_queued_foreach(b, not_of_client, (void *) client))
                warm_commit(b);
        all = broker_list_allocations(b);

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

/* ---- background zeroing ---- */

/* A chunk of bare dirt was zeroed (or failed to be): commit it and let
 * everything that waits for clean memory look again. */
static void scrub_finished(Pool *p, bool zeroed, void *userdata) {
        Broker *b = userdata;

        if (zeroed)
                (void) broker_save_changed(b, NULL, STORE_SAVE_DURABLE, NULL);
        broker_notify_sizes(b, p);
        broker_waiting_retry(b);
        host_pool_changed(&b->host, p);
        warm_later(b, p);
}

void broker_scrub_kick(Broker *b) {
        if (!b->stopping)
                scrub_sched_kick(b->scrub);
}

void broker_scrub_later(Broker *b) {
        if (!b->stopping)
                scrub_sched_later(b->scrub);
}

/* ---- start-up: pools and reconciliation ---- */

/* Colors= comes into effect once the node's cache is known and the
 * arithmetic fits; otherwise colors_off says why. */
static void pool_colors_setup(Pool *p) {
        const NodeCache *cache;
        const char *why = NULL;

        if (!p->colors_configured || cache_colors_enabled(&p->colors))
                return;
        g_clear_pointer(&p->colors_off, g_free);
        cache = node_perf_direct_mapped_cache(&p->perf);
        if (!cache)
                p->colors_off = g_strdup_printf("NUMA node %d has no direct-mapped memory-side cache of known size",
                                                p->numa_node);
        else if (!cache_colors_init(&p->colors, cache->size, p->colors_configured,
                                    max_u64(max_u64(p->align, p->boundary), 2 * MiB), &why))
                p->colors_off = g_strdup(why);
        if (p->colors_off)
                log_warning("Pool %s: Colors=%u is not in effect: %s", p->name, p->colors_configured, p->colors_off);
        else {
                char sz[FORMAT_SIZE_MAX], sz2[FORMAT_SIZE_MAX];

                log_info("Pool %s: %u cache colours of %s (cache %s)", p->name, p->colors.n,
                         format_size(p->colors.slice, sz, sizeof(sz)), format_size(p->colors.cache_size, sz2, sizeof(sz2)));
        }
}

/* The firmware's HMAT does not change while the host runs, but the kernel
 * publishes a node's part of it only once the node has online memory (a
 * node of soft-reserved memory alone has none at first), and takes it
 * away with the node's last memory block. So it is read at start and
 * again when memory of the node is onlined, and what was once read is
 * kept. */
static void pool_perf_init(Broker *b, Pool *p, const PoolConfig *pc) {
        int r = -EOPNOTSUPP;

        if (b->backend->ops->node_perf)
                r = b->backend->ops->node_perf(b->backend, p->numa_node, &p->perf);
        if (r < 0) {
                log_warning("Pool %s: cannot read the performance of NUMA node %d, reporting it unknown: %s", p->name,
                            p->numa_node, g_strerror(-r));
                node_perf_init(&p->perf);
        }
        p->tier = pc && pc->tier ? g_strdup(pc->tier) : NULL;
        p->colors_configured = pc ? pc->colors : 0;
        pool_colors_setup(p);
}

/* Takes what the kernel publishes now that it did not before. */
static bool pool_perf_refresh(Broker *b, Pool *p) {
        NodePerf now, merged = p->perf;
        int r = -EOPNOTSUPP;

        if (b->backend->ops->node_perf)
                r = b->backend->ops->node_perf(b->backend, p->numa_node, &now);
        if (r < 0) {
                log_debug("Pool %s: cannot read the performance of NUMA node %d again: %s", p->name, p->numa_node,
                          g_strerror(-r));
                return false;
        }
        for (unsigned c = 0; c < NODE_PERF_ACCESS_CLASSES; c++)
                if (now.access[c].present)
                        merged.access[c] = now.access[c];
        if (now.n_caches > 0) {
                merged.n_caches = now.n_caches;
                memcpy(merged.caches, now.caches, sizeof(merged.caches));
        }
        if (memcmp(&merged, &p->perf, sizeof(merged)) == 0)
                return false;
        p->perf = merged;
        log_info("Pool %s: NUMA node %d publishes its performance now (memory of it is online)", p->name,
                 p->numa_node);
        pool_colors_setup(p);
        return true;
}

static void node_onlined(Broker *b, int node) {
        for (guint i = 0; i < b->pools->len; i++) {
                Pool *p = b->pools->pdata[i];

                if (p->numa_node == node && pool_perf_refresh(b, p) && b->listener.perf_changed)
                        b->listener.perf_changed(p, b->listener_data);
        }
}

static Pool *pool_new(Broker *b, const DaxRegionInfo *ri, const PoolConfig *pc) {
        Pool *p = g_new0(Pool, 1);

        p->host = &b->host;
        p->name = pc ? g_strdup(pc->name) : g_strdup_printf("region%u", ri->id);
        p->region_id = ri->id;
        p->numa_node = ri->numa_node;
        p->start = ri->start;
        p->size = ri->size;
        p->align = pc && pc->align ? pc->align : b->config->default_align;
        p->boundary = pc ? pc->boundary : 0;
        p->map = extent_map_new(ri->start, ri->size);
        host_pool_init(&b->host, p, pc);
        pool_perf_init(b, p, pc);
        warm_pool_init(p, pc);
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

static void stable_paths_refresh(Broker *b) {
        g_autofree char *owners = NULL;
        g_autoptr(GHashTable) keep = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        g_autoptr(GPtrArray) all = broker_list_allocations(b);
        GDir *d;

        if (!b->runtime_dir)
                return;
        for (guint i = 0; i < all->len; i++) {
                Allocation *a = all->pdata[i];
                broker_stable_path_update(b, a->rec);
                if (owners_link_allowed(b, a->rec))
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

int broker_start(Broker *b, GError **error) {
        g_autofree char *set_aside = NULL, *reason = NULL;
        g_autoptr(GArray) regions = g_array_new(FALSE, FALSE, sizeof(RegionRange));
        StoreState st;
        bool new_boot;
        int r;

        /* Pools first: the state's ranges are checked against them. */
        r = broker_setup_pools(b, error);
        if (r < 0)
                return r;
        for (guint i = 0; i < b->pools->len; i++) {
                const Pool *p = b->pools->pdata[i];
                RegionRange rr = { .region_id = p->region_id, .start = p->start, .size = p->size };
                g_array_append_val(regions, rr);
        }
        r = store_load_state_or_set_aside(b->state_path, (const RegionRange *) regions->data, regions->len, &st,
                                          &set_aside, &reason, error);
        if (r < 0) {
                g_prefix_error(error, "Refusing to start with an unreadable state: ");
                return r;
        }
        b->state_untrusted = recovery_needed(b->state_path, set_aside, reason);
        g_hash_table_unref(b->owners);
        b->owners = g_steal_pointer(&st.owners);
        new_boot = !b->boot_id || !st.boot_id || strcmp(b->boot_id, st.boot_id) != 0;
        if (new_boot && !set_aside)
                log_info("First start since boot: memory not held by allocations is zeroed before use");

        r = reconcile_pools(b, &st, new_boot, error);
        if (r < 0)
                goto finish;
        warm_adopt(b);

        r = broker_save(b, error);
        if (r < 0)
                goto finish;
        stable_paths_refresh(b);
        broker_scrub_kick(b);
        for (guint i = 0; i < b->pools->len; i++)
                host_pool_changed(&b->host, b->pools->pdata[i]);
        restore_later(b);
        warm_later_all(b);
        log_info("Ready: %u pools, %u allocations", b->pools->len, g_hash_table_size(b->allocations));
finish:
        /* unclaimed records were moved out by reconcile_pools; the rest are NULL */
        g_ptr_array_set_free_func(st.allocations, NULL);
        store_state_clear(&st);
        return r;
}

void broker_stop(Broker *b) {
        /* Hand-overs read before the stop are answered; later ones are
         * committed one by one (warm_hand_over() while stopping). */
        warm_commit(b);
        b->stopping = true;
        b->host.stopping = true;
        if (b->scrub)
                scrub_sched_stop(b->scrub);
}

int broker_reload(Broker *b, Config *config, GError **error) {
        /* Committed under the configuration they were matched by. */
        warm_commit(b);
        for (guint i = 0; i < b->pools->len; i++) {
                Pool *p = b->pools->pdata[i];
                const PoolConfig *pc = config_find_pool(config, p->region_id, p->start);

                p->align = pc && pc->align ? pc->align : config->default_align;
                p->boundary = pc ? pc->boundary : 0;
                host_pool_configure(p, pc);
                warm_pool_configure(p, pc);
                broker_notify_sizes(b, p);
        }
        config_free(b->config);
        b->config = config;
        host_lend_dirty_configure(&b->host, config);
        for (guint i = 0; i < b->pools->len; i++) {
                host_pool_changed(&b->host, b->pools->pdata[i]);
                warm_later(b, b->pools->pdata[i]);
        }
        log_info("Configuration reloaded; adding or removing pools takes a restart");
        return 0;
}

/* ---- allocations restored later (host-held or blocked after a reboot) ---- */

/* First retry a little after start-up, then backing off up to this. */
#define RESTORE_RETRY_MIN_USEC (10 * 1000 * 1000ULL)
#define RESTORE_RETRY_MAX_USEC (10 * 60 * 1000 * 1000ULL)

typedef struct RestoreJob {
        Broker *broker;
        Allocation *allocation;
        bool zero;
        KernelResult res;
        int err;
        const char *step;
} RestoreJob;

static void restore_work(void *p) {
        RestoreJob *j = p;
        const AllocationRecord *r = j->allocation->rec;
        const char *ignored;

        crash_op_begin("restore");
        kernel_create(j->broker->backend, r->region_id, r->align, r->ranges, r->n_ranges, &j->res);
        if (j->res.err < 0) {
                j->err = j->res.err;
                j->step = j->res.step;
                return;
        }
        if (j->zero) {
                j->err = kernel_zero(j->broker->backend, j->broker->scrubber, j->res.name,
                                     dax_ranges_size(r->ranges, r->n_ranges), NULL, 0, &j->step);
                if (j->err >= 0)
                        crash_point("restore-zeroed");
        }
        if (j->err >= 0 && (r->device_uid != (uid_t) -1 || r->device_gid != (gid_t) -1) &&
            fchown(j->res.fd, r->device_uid, r->device_gid) < 0) {
                j->err = -errno;
                j->step = "changing the owner of the device node";
        }
        close(j->res.fd);
        if (j->err < 0)
                (void) kernel_destroy(j->broker->backend, j->res.name, &ignored);
}

static void restore_done(void *p) {
        RestoreJob *j = p;
        Broker *b = j->broker;
        Allocation *a = j->allocation;
        g_autoptr(GError) error = NULL;

        a->busy = false;
        if (j->err < 0) {
                g_free(a->restore_message);
                a->restore_message = g_strdup_printf("the kernel refused while %s: %s", j->step, g_strerror(-j->err));
                a->restore = ALLOCATION_RESTORE_FAILED;
                log_error("Cannot restore allocation %s of '%s' yet: %s; retrying later", a->rec->id, a->rec->owner,
                          a->restore_message);
                notify_changed(b, a);
                restore_later(b);
                g_free(j);
                return;
        }
        g_free(a->rec->device);
        a->rec->device = g_strdup(j->res.name);
        a->restore = ALLOCATION_RESTORED;
        a->restore_zero = false;
        g_clear_pointer(&a->restore_message, g_free);
        if (broker_save(b, &error) < 0)
                log_error("Cannot record the restored allocation %s: %s; start-up will adopt its device",
                          a->rec->id, error->message);
        events_restored(a->pool, a->rec, j->zero ? allocation_size(a) : 0);
        broker_stable_path_update(b, a->rec);
        notify_changed(b, a);
        g_free(j);
}

/* Tries again for every allocation without its device: host chunks in its
 * way are reclaimed (if reclaim is set), and once none is, the device is
 * created with the recorded ranges. */
static void restore_kick(Broker *b, bool reclaim) {
        GHashTableIter it;
        void *v;

        if (b->stopping)
                return;
        g_hash_table_iter_init(&it, b->allocations);
        while (g_hash_table_iter_next(&it, NULL, &v)) {
                Allocation *a = v;
                RestoreJob *j;

                if (a->restore == ALLOCATION_RESTORED || a->busy)
                        continue;
                if (reclaim ? host_reclaim_overlapping(&b->host, a->pool, a->rec->ranges, a->rec->n_ranges)
                            : host_overlaps(&b->host, a->pool, a->rec->ranges, a->rec->n_ranges))
                        continue;
                j = g_new0(RestoreJob, 1);
                *j = (RestoreJob) { .broker = b, .allocation = a, .zero = a->restore_zero };
                a->busy = true;
                worker_submit(b->worker, a->pool->region_id, restore_work, restore_done, j);
        }
}

static bool restore_pending(Broker *b) {
        GHashTableIter it;
        void *v;

        g_hash_table_iter_init(&it, b->allocations);
        while (g_hash_table_iter_next(&it, NULL, &v))
                if (((Allocation *) v)->restore != ALLOCATION_RESTORED)
                        return true;
        return false;
}

static int on_restore_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Broker *b = userdata;

        restore_kick(b, true);
        restore_later(b);
        return 0;
}

/* Backs off: 10 s, 20 s, ... up to 10 minutes between rounds. */
static void restore_later(Broker *b) {
        uint64_t now;

        if (b->stopping || !b->event || !restore_pending(b))
                return;
        b->restore_delay_usec = b->restore_delay_usec ? MIN(2 * b->restore_delay_usec, RESTORE_RETRY_MAX_USEC)
                                                      : RESTORE_RETRY_MIN_USEC;
        (void) sd_event_now(b->event, CLOCK_MONOTONIC, &now);
        if (!b->restore_timer) {
                if (sd_event_add_time(b->event, &b->restore_timer, CLOCK_MONOTONIC, now + b->restore_delay_usec, 0,
                                      on_restore_timer, b) < 0)
                        return;
        } else
                (void) sd_event_source_set_time(b->restore_timer, now + b->restore_delay_usec);
        (void) sd_event_source_set_enabled(b->restore_timer, SD_EVENT_ONESHOT);
}

/* ---- host return's view of the broker ---- */

static int host_commit(void *userdata, bool durable) {
        return broker_save_full(userdata, durable ? STORE_SAVE_DURABLE : 0, NULL);
}

static void host_sizes_changed(void *userdata, Pool *p) {
        broker_notify_sizes(userdata, p);
}

static void host_onlined(void *userdata, Pool *p) {
        node_onlined(userdata, p->numa_node);
}

static void host_memory_freed(void *userdata, Pool *p) {
        broker_waiting_retry(userdata);
        restore_kick(userdata, false);
        /* Refills wait for host jobs to end. */
        warm_later(userdata, p);
}

static void host_dirt_added(void *userdata, Pool *p) {
        broker_scrub_later(userdata);
}

static uint64_t host_colors_in_use(void *userdata, Pool *p, bool isolated_only) {
        Broker *b = userdata;
        ColorView cv;
        ColorMask m;

        /* No owner is named "": every allocation counts as another's. */
        color_view(b, p, "", &cv);
        m = isolated_only ? cv.isolated_others : cv.touched_others;
        g_string_free(cv.holders, true);
        return m;
}

static void host_zero_first(void *userdata, Pool *p, const DaxRange *r) {
        Broker *b = userdata;

        scrub_sched_prefer(b->scrub, p, r);
        broker_scrub_kick(b);
}

static bool host_warm_give_back(void *userdata, Pool *p) {
        return warm_give_back_pool(userdata, p);
}

static bool host_allocations_waiting(void *userdata) {
        Broker *b = userdata;
        return !g_queue_is_empty(b->waiting);
}

bool broker_return_to_host(Broker *b, Pool *p, uint64_t size, BrokerSizeDone done, void *userdata,
                           GError **error) {
        return host_return_to_host(&b->host, p, size, done, userdata, error);
}

bool broker_reclaim_from_host(Broker *b, Pool *p, uint64_t size, BrokerSizeDone done, void *userdata,
                              GError **error) {
        return host_reclaim_from_host(&b->host, p, size, done, userdata, error);
}

/* Offlining a block normally takes well under a second; one that has not
 * finished in this time is pinned, and waiting longer only delays the VM. */
#define OFFLINE_TIMEOUT_USEC (10 * 1000 * 1000ULL)

int broker_new(sd_event *event, DaxBackend *backend, Config *config, const BrokerSettings *settings,
               Broker **ret, GError **error) {
        Broker *b = g_new0(Broker, 1);
        int r;

        b->event = event;
        b->backend = backend;
        b->config = config;
        b->state_path = g_build_filename(settings->state_dir, "state", NULL);
        b->runtime_dir = g_strdup(settings->runtime_dir);
        b->pools = g_ptr_array_new_with_free_func((GDestroyNotify) pool_free);
        b->allocations = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify) allocation_free);
        b->releasing = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify) allocation_free);
        b->unmanaged = g_ptr_array_new_with_free_func((GDestroyNotify) allocation_record_free);
        b->owners = store_owners_new();
        owners_index_init(b);
        b->waiting = g_queue_new();
        b->handovers = g_ptr_array_new();
        b->boot_id = backend->ops->boot_id(backend);
        b->lock_fd = -1;
        b->save_all = true;
        b->check_saves = g_strcmp0(g_getenv("DAXBROKER_TEST_CHECK_SAVES"), "1") == 0;
        crash_point_arm(g_getenv("DAXBROKER_TEST_CRASH_AT"));
        crash_delay_arm(g_getenv("DAXBROKER_TEST_DELAY_AT"));
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
        b->host = (HostCtx) {
                .event = event,
                .worker = b->worker,
                .backend = backend,
                .pools = b->pools,
                .offline_timeout_usec = b->offline_timeout_usec,
                .commit = host_commit,
                .sizes_changed = host_sizes_changed,
                .memory_freed = host_memory_freed,
                .onlined = host_onlined,
                .dirt_added = host_dirt_added,
                .allocations_waiting = host_allocations_waiting,
                .zero_first = host_zero_first,
                .colors_in_use = host_colors_in_use,
                .warm_give_back = host_warm_give_back,
                .return_timeout_usec = config->allocate_timeout_usec,
                .userdata = b,
        };
        host_lend_dirty_configure(&b->host, config);
        b->scrub = scrub_sched_new(event, b->worker, backend, b->scrubber, b->pools, scrub_finished, b);
        *ret = b;
        return 0;
}

void broker_free(Broker *b) {
        if (!b)
                return;
        broker_stop(b);
        if (b->worker)
                worker_free(b->worker); /* finishes kernel work in flight */
        while (!g_queue_is_empty(b->waiting)) {
                WaitingAllocate *w = g_queue_pop_head(b->waiting);
                g_autoptr(GError) e = g_error_new(BROKER_ERROR, BROKER_ERROR_BUSY, "The broker is stopping");

                w->done(NULL, -1, e, w->userdata);
                waiting_free(w);
        }
        g_queue_free(b->waiting);
        warm_commit_abandon(b);
        g_ptr_array_free(b->handovers, TRUE);
        scrub_sched_free(b->scrub);
        sd_event_source_disable_unref(b->waiting_timer);
        sd_event_source_disable_unref(b->restore_timer);
        scrubber_free(b->scrubber);
        g_hash_table_destroy(b->allocations);
        owners_index_done(b);
        g_hash_table_destroy(b->releasing);
        g_ptr_array_free(b->pools, TRUE);
        g_ptr_array_free(b->unmanaged, TRUE);
        if (b->owners)
                g_hash_table_unref(b->owners);
        config_free(b->config);
        g_free(b->state_path);
        g_free(b->runtime_dir);
        g_free(b->boot_id);
        if (b->lock_fd >= 0)
                close(b->lock_fd);
        g_free(b);
}
