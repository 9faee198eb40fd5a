/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * worker: runs kernel work (sysfs writes, memory offlining) off the bus
 * thread. Work is queued on a lane (one per region, so operations on one
 * region are serialized while regions proceed in parallel) and its
 * completion runs back on the sd-event loop, where the broker owns all
 * state. The bus thread never blocks on sysfs.
 */

#include <systemd/sd-event.h>

typedef struct Worker Worker;

/* Runs on a lane thread; must not touch broker state. */
typedef void (*WorkerFunc)(void *data);
/* Runs on the event loop after WorkerFunc returned. */
typedef void (*WorkerDone)(void *data);

int worker_new(sd_event *event, Worker **ret);
void worker_free(Worker *w);

/* Queues fn on the lane; done runs later on the event loop. */
void worker_submit(Worker *w, unsigned lane, WorkerFunc fn, WorkerDone done, void *data);

/* Number of submitted jobs whose done callback has not run yet. */
unsigned worker_pending(Worker *w);

/* Blocks until every submitted job has finished and runs their done
 * callbacks (also those that done callbacks submit). For start-up, stop and
 * tests. */
void worker_drain(Worker *w);
