/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * broker-private: what the broker's own modules share and nobody else
 * sees: the Broker itself, state saving, kernel helpers and the entry
 * points of host return (host-return.c) that the transactions call.
 */

#include "broker.h"

struct Broker {
        sd_event *event;
        DaxBackend *backend;
        Config *config;
        char *state_path;
        char *runtime_dir;
        Worker *worker;
        GPtrArray *pools;        /* Pool* */
        GHashTable *allocations; /* id -> Allocation* */
        /* Records of regions we do not manage right now (config changed,
         * region missing): kept verbatim so nothing is forgotten. */
        GPtrArray *unmanaged;    /* AllocationRecord* */
        GQueue *waiting;         /* WaitingAllocate* */
        Scrubber *scrubber;
        sd_event_source *scrub_timer;
        int lock_fd;
        char *boot_id;
        bool stopping;
        /* Test-only (DAXBROKER_TEST_CRASH_AT): the step of host return,
         * reclaim or zeroing at which the daemon kills itself, to prove
         * recovery (see broker_crash_point()). */
        char *crash_at;
        uint64_t offline_timeout_usec;
        BrokerListener listener;
        void *listener_data;
};

/* Kernel work runs on lanes: one per region for device changes (create,
 * map, bind, destroy must not interleave within a region), one per region
 * for zeroing and one per region for memory-block offlining, so that
 * allocations in the region never wait behind either. */
#define SCRUB_LANE(region) ((region) + 0x10000u)
#define HOST_LANE(region) ((region) + 0x20000u)

int broker_save(Broker *b, GError **error);
int broker_save_full(Broker *b, StoreSaveFlags flags, GError **error);
void broker_notify_sizes(Broker *b, Pool *p);
void broker_waiting_retry(Broker *b);
void broker_scrub_later(Broker *b);
bool ranges_equal(const DaxRange *a, size_t na, const DaxRange *c, size_t nc);
/* Unbinds, shrinks and deletes a device; gone already counts as done. */
int kernel_destroy(DaxBackend *be, const char *name, const char **ret_step);
/* Test-only fault injection: SIGKILLs the daemon if step is the one asked
 * for. Runs on worker threads. */
void broker_crash_point(Broker *b, const char *step);

/* ---- host-return.c ---- */

/* Sets up host return for a new pool. */
void host_pool_init(Broker *b, Pool *p, const PoolConfig *pc);
/* (Re)reads the pool's host policy (pc may be NULL: the defaults); checks
 * HostChunk= against the block size. */
void host_pool_configure(Pool *p, const PoolConfig *pc);
void host_pool_done(Pool *p);
/* Start-up: settles every device that a host record names, and records
 * without a device. Ranges whose contents are unknown (held host data)
 * are appended to dirty. */
void host_reconcile(Broker *b, Pool *p, const GArray *records, DaxDeviceInfo *devs, size_t nd, bool *claimed,
                    GArray *dirty);
/* Start-up: a kmem device nobody recorded (the 6.3+ default, another
 * tool) becomes host capacity that can be reclaimed but is never split. */
void host_adopt(Broker *b, Pool *p, const DaxDeviceInfo *d);
/* Host records for state.json. */
void host_collect(Broker *b, GArray *host);
/* The pool's free space changed: re-arms the idle delay before returning,
 * and refills Reserve= from the host at once if it fell below. */
void host_pool_changed(Broker *b, Pool *p);
/* Reclaims host chunks when that lets the request fit. True if reclaim
 * was started (the caller waits for it and places again). */
bool host_reclaim_for(Broker *b, const AllocateRequest *req);
/* Host reclaims running in pools the request could use. */
bool host_reclaim_running(Broker *b, const AllocateRequest *req);
/* Why the last reclaim in the pool failed, or NULL. */
const char *host_last_error(const Pool *p);
