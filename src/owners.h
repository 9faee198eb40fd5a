/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * owners: who owns what. An owner name belongs to the uid that created it
 * (its first allocation) for as long as it holds any allocation; every
 * allocation in it belongs to that uid, and only that uid's devices get a
 * stable path owners/OWNER/LABEL. The owner table is recorded in
 * state store. This module also enforces the per-owner and per-uid limits
 * and label uniqueness for new allocations.
 */

#include <stdbool.h>
#include <sys/types.h>

#include "broker.h"

/* The index of the records the broker holds (its allocations and the
 * records of regions not managed now) by owner and uid: every record that
 * enters or leaves those tables is added or removed here. */
void owners_index_init(Broker *b);
void owners_index_done(Broker *b);
void owners_index_add(Broker *b, const AllocationRecord *r);
void owners_index_remove(Broker *b, const AllocationRecord *r);
/* Tests: whether the index holds exactly the records the broker does. */
bool owners_index_check(Broker *b, GError **error);

/* The uid an owner belongs to, if it holds any allocation (including
 * records kept for regions not managed now). */
bool broker_owner_uid(Broker *b, const char *owner, uid_t *ret);

/* Everything about a new allocation that depends on who owns what: the
 * owner and label can have a stable path, the owner belongs to
 * req->owner_uid (or is new), and neither MaxAllocationsPerOwner= nor
 * MaxAllocationsPerUid= (not for root) is reached, and the label is free.
 * False with error set (nothing changed) if not. */
bool owners_admit(Broker *b, const AllocateRequest *req, GError **error);

/* A new allocation is being recorded: a new owner now belongs to uid. */
void owners_claim(Broker *b, const char *owner, uid_t uid);

/* Whether the stable path of this record may point at its device: only if
 * the record belongs to the owner's uid (state written before owners were
 * bound to uids may hold other uids' allocations in one owner). */
bool owners_link_allowed(Broker *b, const AllocationRecord *r);
