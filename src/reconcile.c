/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Start-up reconciliation: brings the stored state and the kernel's devices to
 * one picture, pool by pool, before the daemon serves anyone.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "broker-private.h"
#include "events.h"
#include "log.h"
#include "reconcile.h"
#include "recovery.h"
#include "owners.h"
#include "util.h"

static Allocation *pool_adopt(Broker *b, Pool *p, AllocationRecord *rec) {
        Allocation *a = g_new0(Allocation, 1);

        g_free(rec->pool);
        rec->pool = g_strdup(p->name);
        rec->state = ALLOCATION_ACTIVE;
        a->rec = rec;
        a->pool = p;
        g_hash_table_insert(b->allocations, rec->id, a);
        owners_index_add(b, rec);
        if (extent_map_set_ranges(p->map, rec->ranges, rec->n_ranges, EXTENT_ALLOCATED, a) < 0)
                log_error("Allocation %s has ranges outside pool %s", rec->id, p->name);
        return a;
}

static void pool_mark_device(Pool *p, const DaxDeviceInfo *d, ExtentKind kind) {
        if (extent_map_set_ranges(p->map, d->ranges, d->n_ranges, kind, NULL) < 0)
                log_warning("Device %s has ranges outside its region, ignoring them", d->name);
}

/* Decides what to do with a device no record claims. */
static void pool_settle_unclaimed(Broker *b, Pool *p, const DaxDeviceInfo *d) {
        DaxBackend *be = b->backend;

        crash_op_begin("adopt");
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
                host_adopt(&b->host, p, d);
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

static bool dirty_overlaps(const GArray *dirty, unsigned region_id, const DaxRange *r, size_t n) {
        for (guint i = 0; i < dirty->len; i++) {
                const RegionRange *d = &g_array_index(dirty, RegionRange, i);
                DaxRange x = { d->start, d->size };

                if (d->region_id == region_id && ranges_overlap(&x, 1, r, n))
                        return true;
        }
        return false;
}

/* Restores one persistent allocation whose device is gone (the host
 * rebooted). Whatever stands in its way and may be taken is taken; if
 * that fails, the allocation is listed without a device (restoring or
 * failed, with the reason) and retried later. */
static void restore_one(Broker *b, Pool *p, AllocationRecord *rec, DaxDeviceInfo *devs, size_t nd, bool *claimed,
                        const GArray *dirty, GArray *leftovers, GPtrArray *unrestored) {
        DaxBackend *be = b->backend;
        g_autofree char *why = NULL;
        AllocationRestore state = ALLOCATION_RESTORE_FAILED;
        KernelResult res = {};
        /* Recorded dirt under it: host data (see record_host_dirt), or a
         * crash between its creation and the removal of the dirt it was
         * made of. Either way it is zeroed before its owner sees it. */
        bool from_host = dirty_overlaps(dirty, p->region_id, rec->ranges, rec->n_ranges);
        Allocation *a;
        int r;

        for (size_t k = 0; k < nd && !why; k++) {
                const char *step = NULL;
                g_autofree char *err = NULL;

                crash_op_begin("restore");
                if (claimed[k] || devs[k].size == 0 ||
                    !ranges_overlap(devs[k].ranges, devs[k].n_ranges, rec->ranges, rec->n_ranges))
                        continue;
                if (devs[k].driver == DAX_DRIVER_KMEM) {
                        /* The host onlined it at boot (memhp policy): take it
                         * back whole, as kmem can only be removed whole. */
                        crash_point("restore-reclaim");
                        r = host_reclaim_device_now(&b->host, p, &devs[k], &err);
                        if (r < 0) {
                                state = ALLOCATION_RESTORING;
                                why = g_strdup_printf("its memory is host RAM (%s) and could not be taken back: %s",
                                                      devs[k].name, err);
                                continue;
                        }
                        crash_point("restore-reclaimed");
                        log_info("Took %s back from the host for allocation %s of '%s'", devs[k].name, rec->id,
                                 rec->owner);
                        from_host = true;
                } else if (devs[k].instance == 0 &&
                           (devs[k].driver == DAX_DRIVER_DEVICE_DAX || devs[k].driver == DAX_DRIVER_NONE) &&
                           be->ops->device_in_use(be, devs[k].name) == 0) {
                        r = kernel_destroy(be, devs[k].name, &step);
                        if (r < 0) {
                                why = g_strdup_printf("cannot take over %s while %s: %s", devs[k].name, step,
                                                      g_strerror(-r));
                                continue;
                        }
                        log_info("Took over %s (unused) for allocation %s", devs[k].name, rec->id);
                } else {
                        why = g_strdup_printf("its ranges are held by %s (driver %s), which daxbroker did not "
                                              "create", devs[k].name, dax_driver_to_string(devs[k].driver));
                        continue;
                }
                claimed[k] = true;
                /* What the device held beyond the allocation is dirt. */
                for (unsigned q = 0; q < devs[k].n_ranges; q++)
                        g_array_append_val(leftovers, devs[k].ranges[q]);
        }

        if (!why) {
                crash_op_begin("restore");
                kernel_create(be, p->region_id, rec->align, rec->ranges, rec->n_ranges, &res);
                if (res.err < 0)
                        why = g_strdup_printf("the kernel refused while %s: %s", res.step, g_strerror(-res.err));
        }
        if (!why && from_host) {
                const char *step = NULL;

                /* The host's pages were there: none of it reaches the owner. */
                r = kernel_zero(be, b->scrubber, res.name, dax_ranges_size(rec->ranges, rec->n_ranges), NULL, 0, &step);
                if (r >= 0)
                        crash_point("restore-zeroed");
                if (r < 0) {
                        const char *ignored;

                        close(res.fd);
                        (void) kernel_destroy(be, res.name, &ignored);
                        state = ALLOCATION_RESTORE_FAILED;
                        why = g_strdup_printf("the kernel refused while %s: %s", step, g_strerror(-r));
                }
        }
        if (why) {
                log_error("Cannot restore allocation %s of '%s' now: %s; it stays listed (%s) and keeps its "
                          "ranges, retrying later", rec->id, rec->owner, why,
                          state == ALLOCATION_RESTORING ? "restoring" : "failed");
                g_clear_pointer(&rec->device, g_free);
                a = pool_adopt(b, p, rec);
                a->restore = state;
                a->restore_message = g_steal_pointer(&why);
                /* It never got its device back: what the ranges hold now is
                 * unknown (host data at worst). */
                a->restore_zero = true;
                g_ptr_array_add(unrestored, a);
                return;
        }
        if ((rec->device_uid != (uid_t) -1 || rec->device_gid != (gid_t) -1) &&
            fchown(res.fd, rec->device_uid, rec->device_gid) < 0)
                log_warning("Cannot give /dev/%s to %d:%d again: %m", res.name, (int) rec->device_uid,
                            (int) rec->device_gid);
        close(res.fd);
        g_free(rec->device);
        rec->device = g_strdup(res.name);
        events_restored(p, rec, from_host ? dax_ranges_size(rec->ranges, rec->n_ranges) : 0);
        pool_adopt(b, p, rec);
}

/* A device found with exactly a record's ranges after a reboot may be a
 * restore that a crash cut short before it zeroed the host's data out of
 * it (recorded dirt says so) or gave the device to its owner: both are
 * finished before anyone is handed it. false: it could not be zeroed. */
static bool finish_found(Broker *b, Pool *p, AllocationRecord *rec, const GArray *dirty, bool new_boot) {
        DaxBackend *be = b->backend;
        int fd, r;

        if (new_boot && dirty_overlaps(dirty, p->region_id, rec->ranges, rec->n_ranges)) {
                const char *step = NULL;

                r = kernel_zero(be, b->scrubber, rec->device, dax_ranges_size(rec->ranges, rec->n_ranges), NULL, 0,
                                &step);
                if (r < 0) {
                        log_error("Cannot zero %s of allocation %s, which may hold host data, while %s: %s",
                                  rec->device, rec->id, step, g_strerror(-r));
                        return false;
                }
                log_info("Zeroed %s of allocation %s: the host had its memory before a restore was cut short",
                         rec->device, rec->id);
        }
        if (rec->device_uid == (uid_t) -1 && rec->device_gid == (gid_t) -1)
                return true;
        fd = be->ops->open_device(be, rec->device);
        if (fd < 0 || fchown(fd, rec->device_uid, rec->device_gid) < 0)
                log_warning("Cannot give /dev/%s to %d:%d again: %s", rec->device, (int) rec->device_uid,
                            (int) rec->device_gid, g_strerror(fd < 0 ? -fd : errno));
        if (fd >= 0)
                close(fd);
        return true;
}

static int pool_reconcile(Broker *b, Pool *p, GPtrArray *records, const GArray *dirty, const GArray *host,
                          bool new_boot) {
        DaxBackend *be = b->backend;
        _cleanup_free_ DaxDeviceInfo *devs = NULL;
        g_autofree bool *claimed = NULL;
        g_autoptr(GPtrArray) restore = g_ptr_array_new();
        g_autoptr(GArray) leftovers = g_array_new(FALSE, FALSE, sizeof(DaxRange));
        g_autoptr(GPtrArray) unrestored = g_ptr_array_new();
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
                        crash_op_begin("rollback");
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
                if (found && !finish_found(b, p, rec, dirty, new_boot)) {
                        /* Not handed to anyone: the restore finds the device in
                         * its way and lists the allocation as failed, retried. */
                        for (size_t k = 0; k < nd; k++)
                                if (claimed[k] && g_strcmp0(devs[k].name, rec->device) == 0)
                                        claimed[k] = false;
                        found = false;
                }
                if (found) {
                        /* A warm device handed over just before a crash
                         * may not have been given to its user yet. */
                        if (rec->device_uid != (uid_t) -1 || rec->device_gid != (gid_t) -1) {
                                int fd = be->ops->open_device(be, rec->device);

                                if (fd < 0 || fchown(fd, rec->device_uid, rec->device_gid) < 0)
                                        log_warning("Cannot give /dev/%s to %d:%d again: %s", rec->device,
                                                    (int) rec->device_uid, (int) rec->device_gid,
                                                    g_strerror(fd < 0 ? -fd : errno));
                                if (fd >= 0)
                                        close(fd);
                        }
                        pool_adopt(b, p, rec);
                        records->pdata[i] = NULL;
                } else
                        g_ptr_array_add(restore, rec);
        }

        host_reconcile(&b->host, p, host, devs, nd, claimed, new_boot, leftovers);

        /* Devices lying wholly in recorded dirt are scrub devices (or a
         * release) cut short by a crash: they go, the dirt stays. */
        for (size_t k = 0; k < nd; k++) {
                const char *step = NULL;

                if (claimed[k] || devs[k].instance == 0 || devs[k].driver == DAX_DRIVER_KMEM ||
                    !device_within_dirty(&devs[k], dirty, p->region_id))
                        continue;
                claimed[k] = true;
                /* Ours by its ranges, but someone has it open (an operator,
                 * a tool that created a device there meanwhile): leave it. */
                r = be->ops->device_in_use(be, devs[k].name);
                if (r != 0) {
                        log_warning("%s lies in memory recorded as dirty but is %s; leaving it alone and counting "
                                    "it as used", devs[k].name, r > 0 ? "in use" : "unreadable");
                        pool_mark_device(p, &devs[k], EXTENT_FOREIGN);
                        continue;
                }
                r = kernel_destroy(be, devs[k].name, &step);
                if (r < 0) {
                        log_error("Cannot remove scrub device %s while %s: %s", devs[k].name, step, g_strerror(-r));
                        pool_mark_device(p, &devs[k], EXTENT_FOREIGN);
                } else
                        log_info("Removed %s, left over from zeroing cut short", devs[k].name);
        }

        /* Recorded allocations come before anything else the kernel
         * shows: their ranges were promised. A device in their way that
         * the broker may take (an unused boot-time daxR.0, memory the host
         * onlined through kmem) is taken for them first. */
        for (guint i = 0; i < restore->len; i++) {
                AllocationRecord *rec = restore->pdata[i];

                for (guint k = 0; k < records->len; k++)
                        if (records->pdata[k] == rec)
                                records->pdata[k] = NULL;

                if (rec->transient) {
                        log_info("Dropping transient allocation %s of '%s': its client is gone; its memory is "
                                 "zeroed before reuse", rec->id, rec->owner);
                        /* Its device went with the client's data still in it
                         * (or the host rebooted warm): dirt either way. */
                        for (unsigned q = 0; q < rec->n_ranges; q++)
                                g_array_append_val(leftovers, rec->ranges[q]);
                        allocation_record_free(rec);
                        continue;
                }
                restore_one(b, p, rec, devs, nd, claimed, dirty, leftovers, unrestored);
        }

        for (size_t k = 0; k < nd; k++)
                if (!claimed[k] && b->state_untrusted)
                        recovery_keep_device(p, &devs[k]);
                else if (!claimed[k])
                        pool_settle_unclaimed(b, p, &devs[k]);

        /* Allocations still without a device own their ranges all the same:
         * nobody else is handed them, not even when host memory comes back. */
        for (guint i = 0; i < unrestored->len; i++) {
                Allocation *a = unrestored->pdata[i];

                if (extent_map_set_ranges(p->map, a->rec->ranges, a->rec->n_ranges, EXTENT_ALLOCATED, a) < 0)
                        log_error("Allocation %s has ranges outside pool %s", a->rec->id, p->name);
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

/* Adds r to the dirt, merged with the dirt it overlaps (one record per
 * start). false: it was all dirt already. */
static bool dirty_add(GArray *dirty, unsigned region_id, const DaxRange *r) {
        RegionRange m = { region_id, r->start, r->size };

        for (guint i = 0; i < dirty->len;) {
                const RegionRange *d = &g_array_index(dirty, RegionRange, i);
                uint64_t end = m.start + m.size;

                if (d->region_id != region_id || d->start + d->size < m.start || d->start > end) {
                        i++;
                        continue;
                }
                if (d->start <= m.start && d->start + d->size >= end)
                        return false;
                m.start = min_u64(m.start, d->start);
                m.size = max_u64(end, d->start + d->size) - m.start;
                g_array_remove_index_fast(dirty, i);
        }
        g_array_append_val(dirty, m);
        return true;
}

/* After a reboot into a memhp policy the kernel may have onlined memory
 * under recorded allocations as host RAM, and the host's pages were
 * there. Before any of it is taken back it goes on record as dirt, durably:
 * a crash half-way through the restore then leaves no device that shows
 * where the host was, but the record still says which allocations must be
 * zeroed before their owners see them. */
static int record_host_dirt(Broker *b, StoreState *st, GError **error) {
        StoreState with_dirt = *st;
        bool added = false;
        int r;

        for (guint i = 0; i < b->pools->len; i++) {
                Pool *p = b->pools->pdata[i];
                _cleanup_free_ DaxDeviceInfo *devs = NULL;
                size_t nd = 0;

                if (b->backend->ops->list_devices(b->backend, p->region_id, &devs, &nd) < 0)
                        continue; /* pool_reconcile says why */
                for (size_t k = 0; k < nd; k++) {
                        bool under = false;

                        if (devs[k].driver != DAX_DRIVER_KMEM || devs[k].size == 0)
                                continue;
                        for (guint a = 0; a < st->allocations->len && !under; a++) {
                                const AllocationRecord *rec = st->allocations->pdata[a];

                                under = rec->region_id == p->region_id && rec->state == ALLOCATION_ACTIVE &&
                                        ranges_overlap(devs[k].ranges, devs[k].n_ranges, rec->ranges,
                                                       rec->n_ranges);
                        }
                        for (unsigned q = 0; under && q < devs[k].n_ranges; q++)
                                added |= dirty_add(st->dirty, p->region_id, &devs[k].ranges[q]);
                }
        }
        if (!added)
                return 0;
        /* The owners moved to the broker when the state was loaded. */
        with_dirt.owners = b->owners;
        r = store_save_state(b->state_path, &with_dirt, STORE_SAVE_DURABLE, error);
        if (r < 0) {
                g_prefix_error(error, "Cannot record host memory under allocations as dirty before taking it back: ");
                return r;
        }
        crash_point("restore-dirt-recorded");
        return 0;
}

int reconcile_pools(Broker *b, StoreState *st, bool new_boot, GError **error) {
        GPtrArray *records = st->allocations;
        int r;

        if (!b->state_untrusted) {
                crash_op_begin("restore");
                r = record_host_dirt(b, st, error);
                if (r < 0)
                        return r;
        }

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
                r = pool_reconcile(b, p, mine, st->dirty, st->host, new_boot);
                /* Whatever reconcile did not take over stays on record. */
                for (guint k = 0; k < mine->len; k++)
                        if (mine->pdata[k]) {
                                g_ptr_array_add(b->unmanaged, mine->pdata[k]);
                                owners_index_add(b, mine->pdata[k]);
                        }
                if (r < 0) {
                        g_set_error(error, BROKER_ERROR, BROKER_ERROR_KERNEL_FAILURE,
                                    "Cannot reconcile pool %s with the kernel: %s", p->name, g_strerror(-r));
                        return r;
                }
        }
        for (guint k = 0; k < records->len; k++) {
                AllocationRecord *rec = records->pdata[k];
                if (!rec)
                        continue;
                log_warning("Allocation %s of '%s' is in region %u, which is not managed now; keeping its record",
                            rec->id, rec->owner, rec->region_id);
                g_ptr_array_add(b->unmanaged, rec);
                owners_index_add(b, rec);
                records->pdata[k] = NULL;
        }

        return 0;
}
