/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * pool-select: which pools may serve a request that asks for a class of
 * memory (bandwidth, latency, tier, cache colours) and in which order they
 * are tried. The rule: a pool qualifies when its NUMA node's HMAT
 * attributes (access1, the CPU initiators, when the kernel publishes it,
 * else access0) meet every bound asked for (an unknown attribute meets
 * none), its Tier= is the one asked for, and it has cache colours if they
 * are asked for. Qualifying pools are tried closest to the request first
 * (the smallest sum over the bounds asked for of how far the pool is past
 * the bound, relative to the bound: the memory that just meets the
 * request, keeping faster memory for requests that need it), then the one
 * with most free memory, then in the order of ListPools.
 */

#include <glib.h>
#include <stdbool.h>

#include "broker.h"

/* Whether the request asks for a class of memory at all. */
bool pool_select_by_class(const AllocateRequest *req);

/* Whether p qualifies; if not, *ret_why (g_free) says why. */
bool pool_select_qualifies(const Pool *p, const AllocateRequest *req, char **ret_why);

/* How far p is past the request's bounds (0: exactly at them). */
double pool_select_distance(const Pool *p, const AllocateRequest *req);

/* Orders qualifying pools by the rule above. */
void pool_select_sort(GPtrArray *pools, const AllocateRequest *req);
