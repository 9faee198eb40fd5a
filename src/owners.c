/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include "broker-private.h"
#include "log.h"
#include "owners.h"
#include "util.h"

/* Calls f on every record the broker holds, managed or not; stops when f
 * returns false. */
static void records_foreach(Broker *b, bool (*f)(const AllocationRecord *r, void *userdata), void *userdata) {
        GHashTableIter it;
        void *v;

        g_hash_table_iter_init(&it, b->allocations);
        while (g_hash_table_iter_next(&it, NULL, &v))
                if (!f(((Allocation *) v)->rec, userdata))
                        return;
        for (guint i = 0; i < b->unmanaged->len; i++)
                if (!f(b->unmanaged->pdata[i], userdata))
                        return;
        /* Hand-overs waiting for their commit count against quotas and
         * labels as the allocations they are about to be. */
        (void) warm_queued_foreach(b, f, userdata);
}

/* ---- the index: every record the broker holds, by owner and by uid,
 * so that a request costs what its owner holds, not what all do ---- */

void owners_index_init(Broker *b) {
        b->owner_index = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify) g_ptr_array_unref);
        b->uid_counts = g_hash_table_new(g_direct_hash, g_direct_equal);
}

void owners_index_done(Broker *b) {
        g_clear_pointer(&b->owner_index, g_hash_table_unref);
        g_clear_pointer(&b->uid_counts, g_hash_table_unref);
}

static void uid_count_add(Broker *b, uid_t uid, int delta) {
        void *key = GUINT_TO_POINTER(uid);
        unsigned n = GPOINTER_TO_UINT(g_hash_table_lookup(b->uid_counts, key)) + delta;

        if (n == 0)
                g_hash_table_remove(b->uid_counts, key);
        else
                g_hash_table_insert(b->uid_counts, key, GUINT_TO_POINTER(n));
}

void owners_index_add(Broker *b, const AllocationRecord *r) {
        GPtrArray *recs = g_hash_table_lookup(b->owner_index, r->owner);

        if (!recs) {
                recs = g_ptr_array_new();
                g_hash_table_insert(b->owner_index, g_strdup(r->owner), recs);
        }
        g_ptr_array_add(recs, (void *) r);
        uid_count_add(b, r->owner_uid, +1);
}

void owners_index_remove(Broker *b, const AllocationRecord *r) {
        GPtrArray *recs = g_hash_table_lookup(b->owner_index, r->owner);

        if (!recs || !g_ptr_array_remove_fast(recs, (void *) r))
                return;
        uid_count_add(b, r->owner_uid, -1);
        if (recs->len == 0)
                g_hash_table_remove(b->owner_index, r->owner);
}

static bool index_one(const AllocationRecord *r, void *userdata) {
        GHashTable *seen = userdata;

        g_hash_table_add(seen, (void *) r);
        return true;
}

bool owners_index_check(Broker *b, GError **error) {
        g_autoptr(GHashTable) seen = g_hash_table_new(g_direct_hash, g_direct_equal);
        g_autoptr(GHashTable) want = g_hash_table_new(g_direct_hash, g_direct_equal); /* uid -> records */
        GHashTableIter it;
        void *k, *v;
        unsigned indexed = 0;

        records_foreach(b, index_one, seen);
        g_hash_table_iter_init(&it, b->owner_index);
        while (g_hash_table_iter_next(&it, &k, &v)) {
                GPtrArray *recs = v;

                for (guint i = 0; i < recs->len; i++) {
                        const AllocationRecord *r = recs->pdata[i];

                        if (!g_hash_table_contains(seen, r) || strcmp(r->owner, k) != 0) {
                                g_set_error(error, BROKER_ERROR, BROKER_ERROR_KERNEL_FAILURE,
                                            "owner index: %s in '%s' is not held", r->id, (const char *) k);
                                return false;
                        }
                }
                indexed += recs->len;
        }
        if (indexed != g_hash_table_size(seen)) {
                g_set_error(error, BROKER_ERROR, BROKER_ERROR_KERNEL_FAILURE, "owner index: %u records of %u held",
                            indexed, g_hash_table_size(seen));
                return false;
        }
        /* The per-uid counts, which the limits read, from the records:
         * the same uids, each with the same count. */
        g_hash_table_iter_init(&it, seen);
        while (g_hash_table_iter_next(&it, &k, NULL)) {
                void *uid = GUINT_TO_POINTER(((const AllocationRecord *) k)->owner_uid);

                g_hash_table_insert(want, uid, GUINT_TO_POINTER(GPOINTER_TO_UINT(g_hash_table_lookup(want, uid)) + 1));
        }
        g_hash_table_iter_init(&it, want);
        while (g_hash_table_iter_next(&it, &k, &v))
                if (GPOINTER_TO_UINT(g_hash_table_lookup(b->uid_counts, k)) != GPOINTER_TO_UINT(v)) {
                        g_set_error(error, BROKER_ERROR, BROKER_ERROR_KERNEL_FAILURE,
                                    "owner index: uid %u counts %u records, holds %u", GPOINTER_TO_UINT(k),
                                    GPOINTER_TO_UINT(g_hash_table_lookup(b->uid_counts, k)), GPOINTER_TO_UINT(v));
                        return false;
                }
        if (g_hash_table_size(want) != g_hash_table_size(b->uid_counts)) {
                g_set_error(error, BROKER_ERROR, BROKER_ERROR_KERNEL_FAILURE,
                            "owner index: %u uids counted, %u hold records", g_hash_table_size(b->uid_counts),
                            g_hash_table_size(want));
                return false;
        }
        return true;
}

/* The earliest record of the owner. */
static const AllocationRecord *owner_first(Broker *b, const char *owner) {
        GPtrArray *recs = g_hash_table_lookup(b->owner_index, owner);
        const AllocationRecord *first = NULL;

        for (guint i = 0; recs && i < recs->len; i++) {
                const AllocationRecord *r = recs->pdata[i];

                if (!first || r->created_usec < first->created_usec ||
                    (r->created_usec == first->created_usec && strcmp(r->id, first->id) < 0))
                        first = r;
        }
        return first;
}

bool broker_owner_uid(Broker *b, const char *owner, uid_t *ret) {
        const AllocationRecord *first = owner_first(b, owner);
        void *v;

        if (!first)
                return false;
        /* The table says who created it; a record without an entry (not
         * reachable through the store, which lists every owner) falls back
         * to the owner's earliest allocation, as a version 1 file does. */
        if (g_hash_table_lookup_extended(b->owners, owner, NULL, &v))
                *ret = (uid_t) GPOINTER_TO_UINT(v);
        else
                *ret = first->owner_uid;
        return true;
}

bool owners_admit(Broker *b, const AllocateRequest *req, GError **error) {
        GPtrArray *recs = g_hash_table_lookup(b->owner_index, req->owner);
        unsigned in_owner = recs ? recs->len : 0;
        unsigned of_uid = GPOINTER_TO_UINT(g_hash_table_lookup(b->uid_counts, GUINT_TO_POINTER(req->owner_uid)));
        bool label_taken = false;
        const char *why;
        uid_t uid;

        if ((why = link_name_invalid_reason(req->owner))) {
                g_set_error(error, BROKER_ERROR, BROKER_ERROR_INVALID_ARGUMENT, "Owner %s", why);
                return false;
        }
        if (req->label && (why = link_name_invalid_reason(req->label))) {
                g_set_error(error, BROKER_ERROR, BROKER_ERROR_INVALID_ARGUMENT, "Label %s", why);
                return false;
        }
        /* The bus layer decided whose owner this is before it asked polkit;
         * if the owner changed hands since (released and taken by another
         * uid), the caller was authorized for something else. */
        if (broker_owner_uid(b, req->owner, &uid) && uid != req->owner_uid) {
                g_set_error(error, BROKER_ERROR, BROKER_ERROR_ACCESS_DENIED,
                            "Owner '%s' belongs to uid %u; allocating into it needs the polkit action "
                            "org.daxbroker.Broker1.manage",
                            req->owner, (unsigned) uid);
                return false;
        }

        for (guint i = 0; req->label && recs && i < recs->len; i++)
                if (strcmp(((const AllocationRecord *) recs->pdata[i])->label, req->label) == 0)
                        label_taken = true;
        if (in_owner >= b->config->max_allocations_per_owner) {
                g_set_error(error, BROKER_ERROR, BROKER_ERROR_NO_SPACE,
                            "Owner '%s' already has %u allocations, the configured maximum "
                            "(MaxAllocationsPerOwner=)",
                            req->owner, b->config->max_allocations_per_owner);
                return false;
        }
        if (req->owner_uid != 0 && of_uid >= b->config->max_allocations_per_uid) {
                g_set_error(error, BROKER_ERROR, BROKER_ERROR_NO_SPACE,
                            "uid %u already has %u allocations, the configured maximum (MaxAllocationsPerUid=)",
                            (unsigned) req->owner_uid, b->config->max_allocations_per_uid);
                return false;
        }
        if (label_taken) {
                g_set_error(error, BROKER_ERROR, BROKER_ERROR_INVALID_ARGUMENT,
                            "Owner '%s' already has an allocation labelled '%s'", req->owner, req->label);
                return false;
        }
        return true;
}

void owners_claim(Broker *b, const char *owner, uid_t uid) {
        uid_t cur;

        if (broker_owner_uid(b, owner, &cur))
                return;
        g_hash_table_insert(b->owners, g_strdup(owner), GUINT_TO_POINTER(uid));

        /* Entries of owners that hold nothing any more are only dead
         * weight (a lookup ignores them); drop them once they pile up. */
        if (g_hash_table_size(b->owners) > 2 * (g_hash_table_size(b->allocations) + b->unmanaged->len) + 64) {
                GHashTableIter it;
                void *k;

                g_hash_table_iter_init(&it, b->owners);
                while (g_hash_table_iter_next(&it, &k, NULL))
                        if (!g_hash_table_contains(b->owner_index, k) && strcmp(k, owner) != 0)
                                g_hash_table_iter_remove(&it);
        }
}

bool owners_link_allowed(Broker *b, const AllocationRecord *r) {
        uid_t uid;

        return broker_owner_uid(b, r->owner, &uid) && uid == r->owner_uid;
}
