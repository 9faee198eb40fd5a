/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * reconcile: start-up. Compares what the state store records with the devices
 * the kernel has, region by region, and settles every difference (adopt,
 * restore, roll back, finish, take over, leave alone) so that each byte of
 * a pool has exactly one use before the daemon serves anyone. Blocking;
 * runs once, before the event loop.
 */

#include <glib.h>
#include <stdbool.h>

#include "broker.h"
#include "store.h"

/* Takes the records of st->allocations it settles (their slots become
 * NULL); records it cannot honour go to the broker's unmanaged list. */
int reconcile_pools(Broker *b, StoreState *st, bool new_boot, GError **error);
