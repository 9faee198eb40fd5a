/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * broker-private: what the broker's own modules share and nobody else
 * sees: the Broker itself, state saving, kernel helpers and the entry
 * points of host return (host-return.c) that the transactions call.
 */

#include "broker.h"
#include "kernel-ops.h"
#include "host-return.h"
#include "scrub-sched.h"
#include "warm.h"

struct Broker {
        sd_event *event;
        DaxBackend *backend;
        Config *config;
        char *state_path;        /* the state directory (store.h) */
        char *runtime_dir;
        Worker *worker;
        GPtrArray *pools;        /* Pool* */
        GHashTable *allocations; /* id -> Allocation* */
        /* Released (the caller has its reply), device still being
         * destroyed: on record as releasing, ranges reserved. */
        GHashTable *releasing;   /* id -> Allocation* */
        /* Records of regions we do not manage right now (config changed,
         * region missing): kept verbatim so nothing is forgotten. */
        GPtrArray *unmanaged;    /* AllocationRecord* */
        GHashTable *owners;      /* owner name -> uid it belongs to (owners.c) */
        GHashTable *owner_index; /* owner name -> GPtrArray of its AllocationRecord* (owners.c) */
        GHashTable *uid_counts;  /* uid -> number of records it owns (owners.c) */
        GQueue *waiting;         /* WaitingAllocate* */
        /* Warm hand-overs made in memory, waiting for the one durable
         * save that commits them together (warm.c). */
        GPtrArray *handovers;    /* HandOver* */
        sd_event_source *commit_source;
        sd_event_source *waiting_timer; /* fails waiting requests at their deadline */
        Scrubber *scrubber;
        ScrubSched *scrub;
        HostCtx host;            /* host return's view of the broker */
        sd_event_source *restore_timer; /* retries allocations without a device */
        uint64_t restore_delay_usec;
        int lock_fd;
        char *boot_id;
        /* a state file was bad and set aside: this start acts on no device
         * (recovery.c). */
        bool state_untrusted;
        bool stopping;
        /* The next save compares every record (the last one failed, or
         * nothing has been saved yet). */
        bool save_all;
        /* Tests: every partial save is checked against a save of
         * everything (DAXBROKER_TEST_CHECK_SAVES=1). */
        bool check_saves;
        uint64_t offline_timeout_usec;
        BrokerListener listener;
        void *listener_data;
};

/* Kernel work runs on lanes: one per region for device changes (create,
 * map, bind, destroy must not interleave within a region), one per region
 * for zeroing and one per region for memory-block offlining, so that
 * allocations in the region never wait behind either. */

int broker_save(Broker *b, GError **error);
void broker_stable_path_update(Broker *b, const AllocationRecord *r);
void broker_notify_added(Broker *b, Allocation *a);
/* Takes a device down without a caller waiting (a failed commit). */
void broker_allocation_retire(Broker *b, Allocation *a);
/* Compares every record with what is on disk. */
int broker_save_full(Broker *b, StoreSaveFlags flags, GError **error);
/* Saves when, since the last save, only changed (NULL: no record) or the
 * record id that is gone (no longer in any table) changed among the
 * allocation records; dirt and host chunks may have changed too. Costs
 * what the change costs, not what the state holds. */
int broker_save_changed(Broker *b, AllocationRecord *changed, StoreSaveFlags flags, GError **error);
/* The same for n records that changed (a group of hand-overs). */
int broker_save_records(Broker *b, AllocationRecord *const *changed, size_t n, StoreSaveFlags flags,
                        GError **error);
int broker_save_gone(Broker *b, const char *id, StoreSaveFlags flags, GError **error);
void broker_notify_sizes(Broker *b, Pool *p);
void broker_waiting_retry(Broker *b);
void broker_scrub_later(Broker *b);
void broker_scrub_kick(Broker *b);
/* How the request is placed in pool p: Allocate and everything that
 * makes room for it (reclaim, warm give-back) go by the same. */
PlacementRequest placement_request(const Broker *b, const Pool *p, const AllocateRequest *req, bool include_dirty);

