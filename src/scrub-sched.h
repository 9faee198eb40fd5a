/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * scrub-sched: when and where memory that no device holds gets zeroed.
 * Bare dirty extents of each pool are zeroed one chunk at a time through a
 * short-lived device of their own (create on the region lane, zero on the
 * scrub lane, destroy on the region lane). It changes only the extents it
 * zeroes and tells its owner when a chunk is done; committing the result
 * and waking waiters is the owner's job. A chunk whose zeroing fails stays
 * dirty and is retried with its own backoff (Pool.scrub_stuck) while the
 * rest of the pool is zeroed.
 */

#include <glib.h>
#include <stdbool.h>

#include <systemd/sd-event.h>

#include "broker.h"
#include "kernel-ops.h"
#include "scrub.h"
#include "worker.h"

typedef struct ScrubSched ScrubSched;

/* A chunk of pool p was zeroed (zeroed) or could not be (it stays dirty). */
typedef void (*ScrubFinished)(Pool *p, bool zeroed, void *userdata);

/* Kernel work lanes: zeroing runs on its own lane per region so that
 * allocations in the region never wait behind it. */
#define SCRUB_LANE(region) ((region) + 0x10000u)

ScrubSched *scrub_sched_new(sd_event *event, Worker *worker, DaxBackend *backend, Scrubber *scrubber,
                            GPtrArray *pools, ScrubFinished finished, void *userdata);
void scrub_sched_free(ScrubSched *s);
/* Starts zeroing the next chunk in every pool that has bare dirt and is
 * not zeroing already. */
void scrub_sched_kick(ScrubSched *s);
/* The same a moment later, so that releases that come together are zeroed
 * together. */
void scrub_sched_later(ScrubSched *s);
/* Starts nothing new from now on; work in flight finishes. */
void scrub_sched_stop(ScrubSched *s);
/* Zeroes the bare dirt in r before other dirt of the pool (someone waits
 * for it); call scrub_sched_kick() after. */
void scrub_sched_prefer(ScrubSched *s, Pool *p, const DaxRange *r);
/* Bytes of the pool's dirt that waits for a retry after failing. */
uint64_t scrub_sched_stuck_bytes(const Pool *p);
/* Frees the pool's record of stuck chunks. */
void scrub_sched_pool_done(Pool *p);
