/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * host-return: the memory a pool lends to the host. A chunk is one device
 * bound to kmem, tagged EXTENT_HOST in the pool's map and listed under
 * "host" in the state store. Idle clean memory goes out after HostReturnDelay=,
 * comes back (offline, verify, unbind, destroy) when an allocation or
 * Reserve= needs it. It talks to the broker only through HostCtx: the
 * shared kernel plumbing, and four calls back (commit the state, sizes
 * changed, memory freed, dirt added).
 */

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include "broker.h"
#include "config.h"
#include "dax-backend.h"
#include "extent-map.h"
#include "worker.h"

/* Offlining runs on a lane of its own per region, so allocations in the
 * region that do not need it are not held up. */
#define HOST_LANE(region) ((region) + 0x20000u)

typedef struct HostCtx {
        sd_event *event;
        Worker *worker;
        DaxBackend *backend;
        GPtrArray *pools;              /* Pool*, the broker's */
        uint64_t offline_timeout_usec; /* per memory block */
        bool stopping;                 /* start nothing new */
        /* Records the chunks in the state store (durable: fsync'ed). */
        int (*commit)(void *userdata, bool durable);
        /* A pool's sizes changed (tell observers). */
        void (*sizes_changed)(void *userdata, Pool *p);
        /* Memory came back or a job ended: waiting allocations look again. */
        void (*memory_freed)(void *userdata, Pool *p);
        /* Memory that held host data is bare dirt now: zero it. */
        void (*dirt_added)(void *userdata, Pool *p);
        /* Allocations are queued waiting for memory. */
        bool (*allocations_waiting)(void *userdata);
        /* Memory of the pool's NUMA node was onlined: the kernel may
         * publish the node's HMAT now. */
        void (*onlined)(void *userdata, Pool *p);
        /* Zero this dirt before other dirt: a ReturnToHost waits for it. */
        void (*zero_first)(void *userdata, Pool *p, const DaxRange *r);
        /* A pool with cache colours: the colours allocations touch (all
         * of them, or only those cache-isolated owners hold); may be NULL. */
        uint64_t (*colors_in_use)(void *userdata, Pool *p, bool isolated_only);
        /* Gives back the pool's warm devices (they count as free memory,
         * and the host needs room); true if any is on its way. */
        bool (*warm_give_back)(void *userdata, Pool *p);
        /* The host kernel zeroes every page it hands out (HostZeroesOnAlloc=,
         * init_on_alloc): dirt may be lent as it is. */
        bool lend_dirty;
        uint64_t return_timeout_usec;  /* how long a ReturnToHost waits (AllocateTimeout=) */
        void *userdata;
} HostCtx;

/* Decides whether dirt may be lent as it is: HostZeroesOnAlloc=, or with
 * auto what the kernel says; logs which applies and why. */
void host_lend_dirty_configure(HostCtx *h, const Config *config);
/* Sets up host return for a new pool. */
void host_pool_init(HostCtx *h, Pool *p, const PoolConfig *pc);
/* (Re)reads the pool's host policy (pc may be NULL: the defaults); checks
 * HostChunk= against the block size. */
void host_pool_configure(Pool *p, const PoolConfig *pc);
void host_pool_done(Pool *p);
/* Start-up: settles every device that holds recorded host memory (a
 * chunk of ours, or an adopted one whose reclaim was cut short: put back
 * online whole, or removed), and records without a device. Ranges whose
 * contents are unknown (held host data) are appended to dirty. */
void host_reconcile(HostCtx *h, Pool *p, const GArray *records, DaxDeviceInfo *devs, size_t nd, bool *claimed,
                    bool new_boot, GArray *dirty);
/* Start-up: a kmem device nobody recorded (the 6.3+ default, another
 * tool) becomes host capacity that can be reclaimed but is never split. */
void host_adopt(HostCtx *h, Pool *p, const DaxDeviceInfo *d);
/* Host records for the state store. */
void host_collect(HostCtx *h, GArray *host);
/* The pool's free space changed: re-arms the idle delay before returning,
 * and refills Reserve= from the host at once if it fell below. */
void host_pool_changed(HostCtx *h, Pool *p);
/* What an allocation needs from a pool's host chunks. In a pool with
 * cache colours, chunks within colours first are taken before those
 * within then, before those partly outside both; chunks with no colour
 * in allowed are never taken for it (they cannot help: another owner
 * holds those colours alone). fits says whether the request would fit if
 * m were the pool's map: the same placement an Allocate does. */
typedef struct ReclaimWant {
        ColorMask first, then, allowed;
        bool (*fits)(void *userdata, Pool *p, const ExtentMap *m);
        void *userdata;
} ReclaimWant;

/* Reclaims the fewest host chunks of the pool that let the request fit.
 * True if reclaim was started (the caller waits for it and places
 * again); false, with nothing changed, when even all of them would not. */
bool host_reclaim_for(HostCtx *h, Pool *p, const ReclaimWant *w);
/* Host reclaims running in pools the request could use. */
bool host_reclaim_running(HostCtx *h, const AllocateRequest *req);
/* Why the last reclaim in the pool failed, or NULL. */
const char *host_last_error(const Pool *p);
/* Start-up, restoring a recorded allocation: takes a kmem device back at
 * once (offline every block, verify, unbind, destroy), or puts back online
 * what it took offline and says why not. */
int host_reclaim_device_now(HostCtx *h, Pool *p, const DaxDeviceInfo *d, char **ret_error);
/* Starts reclaiming the chunks that overlap the ranges (an allocation
 * being restored needs them). 1 if any chunk overlaps (reclaim started or
 * running), 0 if none does. */
int host_reclaim_overlapping(HostCtx *h, Pool *p, const DaxRange *r, size_t n);
/* Any chunk overlaps the ranges. */
bool host_overlaps(HostCtx *h, Pool *p, const DaxRange *r, size_t n);
/* The parts of the ranges that lie in a chunk are host memory again (an
 * allocation that was never restored is released). */
void host_take_back(HostCtx *h, Pool *p, const DaxRange *r, size_t n);
/* The operator's ReturnToHost and ReclaimFromHost (see broker.h). */
bool host_return_to_host(HostCtx *h, Pool *p, uint64_t size, BrokerSizeDone done, void *userdata,
                         GError **error);
bool host_reclaim_from_host(HostCtx *h, Pool *p, uint64_t size, BrokerSizeDone done, void *userdata,
                            GError **error);
