/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * warm: per pool, a few devices made ahead of any request (created,
 * mapped, bound, of clean memory, root 0600), of the sizes orchestrators
 * ask for (WarmSizes=, or learned from recent requests), within
 * WarmBudget=. An Allocate that one of them fits takes it over: chown,
 * record, fresh fd, no kernel device work on the request path. They count
 * as free memory, are given back (destroyed, the memory clean again) first
 * when a larger request or the host needs room, and are refilled in the
 * background. Each is an allocation record with "warm": true, written
 * before the kernel is touched, so start-up adopts it (record and kernel
 * agree) or rolls it back like any allocation (the memory is then dirty).
 * Everything here runs on the event loop; kernel work on the region lane.
 */

#include "broker.h"

/* The owner name of warm devices in the state directory. */
#define WARM_OWNER "daxbroker-warm"

void warm_pool_init(Pool *p, const PoolConfig *pc);
void warm_pool_configure(Pool *p, const PoolConfig *pc);
void warm_pool_done(Pool *p);

/* A warm device nobody holds and no job touches: free memory. */
bool warm_ready(const Allocation *a);
uint64_t warm_ready_bytes(const Pool *p);
/* Every warm device that counts as free memory: ready, being made or
 * being given back. */
uint64_t warm_bytes(const Pool *p);
/* Whether an extent's tag is one of the pool's warm devices that counts
 * as free. */
bool warm_holds(const Pool *p, const void *tag);
/* A copy of the pool's map with its warm devices free (given back). */
ExtentMap *warm_map_as_free(const Pool *p);

/* The records of every pool's warm devices and of the hand-overs waiting
 * for their commit, for a save. */
void warm_collect(Broker *b, GPtrArray *recs);
/* Calls f on the record of each hand-over waiting for its commit (not in
 * the allocations yet, so that nothing releases or lists it); false if f
 * stopped it. */
bool warm_queued_foreach(Broker *b, bool (*f)(const AllocationRecord *r, void *userdata), void *userdata);
/* Start-up: the warm records reconcile adopted move from the allocations
 * to their pool's warm set. */
void warm_adopt(Broker *b);

/* Hands a matching warm device over for req: 1 (done is called once the
 * hand-over is committed, or failed and rolled back: the device is warm
 * again), 0 (none matches: go on cold). The record changes in memory at
 * once; hand-overs of one pass of the event loop (at most
 * WARM_COMMIT_MAX) share one durable save, and only then does each get
 * its fd, device owner and reply. */
int warm_hand_over(Broker *b, const AllocateRequest *req, BrokerAllocateDone done, void *userdata);
/* Commits the queued hand-overs now: before anything acts on all the
 * allocations of an owner or client, or on the configuration, and at
 * stop. */
void warm_commit(Broker *b);
/* Stop: hand-overs still queued are rolled back, each told why. */
void warm_commit_abandon(Broker *b);
/* A request of this size was placed in p: learned sizes follow it. */
void warm_note_request(Pool *p, uint64_t size);
/* Refill soon (after a short quiet time), if the pool lacks warm devices. */
void warm_later(Broker *b, Pool *p);
void warm_later_all(Broker *b);
/* A request that does not fit would fit with a pool's warm devices
 * given back: gives them back (or one is already being given back) and
 * returns true; the caller waits and places again. */
bool warm_give_back_for(Broker *b, const AllocateRequest *req);
/* Gives back every ready warm device of p; true if any was. */
bool warm_give_back_pool(Broker *b, Pool *p);
