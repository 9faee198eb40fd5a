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

typedef struct Find {
        const char *owner;
        const AllocationRecord *first; /* earliest record of the owner */
} Find;

static bool find_one(const AllocationRecord *r, void *userdata) {
        Find *f = userdata;

        if (strcmp(r->owner, f->owner) == 0 &&
            (!f->first || r->created_usec < f->first->created_usec ||
             (r->created_usec == f->first->created_usec && strcmp(r->id, f->first->id) < 0)))
                f->first = r;
        return true;
}

bool broker_owner_uid(Broker *b, const char *owner, uid_t *ret) {
        Find f = { .owner = owner };
        void *v;

        records_foreach(b, find_one, &f);
        if (!f.first)
                return false;
        /* The table says who created it; a record without an entry (not
         * reachable through the store, which lists every owner) falls back
         * to the owner's earliest allocation, as a version 1 file does. */
        if (g_hash_table_lookup_extended(b->owners, owner, NULL, &v))
                *ret = (uid_t) GPOINTER_TO_UINT(v);
        else
                *ret = f.first->owner_uid;
        return true;
}

typedef struct Count {
        const char *owner, *label;
        uid_t uid;
        unsigned in_owner, of_uid;
        bool label_taken;
} Count;

static bool count_one(const AllocationRecord *r, void *userdata) {
        Count *c = userdata;

        if (r->owner_uid == c->uid)
                c->of_uid++;
        if (strcmp(r->owner, c->owner) != 0)
                return true;
        c->in_owner++;
        if (c->label && strcmp(r->label, c->label) == 0)
                c->label_taken = true;
        return true;
}

bool owners_admit(Broker *b, const AllocateRequest *req, GError **error) {
        Count c = { .owner = req->owner, .label = req->label, .uid = req->owner_uid };
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

        records_foreach(b, count_one, &c);
        if (c.in_owner >= b->config->max_allocations_per_owner) {
                g_set_error(error, BROKER_ERROR, BROKER_ERROR_NO_SPACE,
                            "Owner '%s' already has %u allocations, the configured maximum "
                            "(MaxAllocationsPerOwner=)",
                            req->owner, b->config->max_allocations_per_owner);
                return false;
        }
        if (req->owner_uid != 0 && c.of_uid >= b->config->max_allocations_per_uid) {
                g_set_error(error, BROKER_ERROR, BROKER_ERROR_NO_SPACE,
                            "uid %u already has %u allocations, the configured maximum (MaxAllocationsPerUid=)",
                            (unsigned) req->owner_uid, b->config->max_allocations_per_uid);
                return false;
        }
        if (c.label_taken) {
                g_set_error(error, BROKER_ERROR, BROKER_ERROR_INVALID_ARGUMENT,
                            "Owner '%s' already has an allocation labelled '%s'", req->owner, req->label);
                return false;
        }
        return true;
}

static bool add_owner(const AllocationRecord *r, void *userdata) {
        GHashTable *live = userdata;

        g_hash_table_add(live, r->owner);
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
                g_autoptr(GHashTable) live = g_hash_table_new(g_str_hash, g_str_equal);
                GHashTableIter it;
                void *k;

                records_foreach(b, add_owner, live);
                g_hash_table_add(live, (char *) owner);
                g_hash_table_iter_init(&it, b->owners);
                while (g_hash_table_iter_next(&it, &k, NULL))
                        if (!g_hash_table_contains(live, k))
                                g_hash_table_iter_remove(&it);
        }
}

bool owners_link_allowed(Broker *b, const AllocationRecord *r) {
        uid_t uid;

        return broker_owner_uid(b, r->owner, &uid) && uid == r->owner_uid;
}
