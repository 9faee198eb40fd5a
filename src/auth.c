/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <glib.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdarg.h>
#include <string.h>

#include "auth.h"
#include "broker.h"
#include "bus-names.h"
#include "log.h"
#include "util.h"

#define POLKIT_NAME "org.freedesktop.PolicyKit1"
#define POLKIT_PATH "/org/freedesktop/PolicyKit1/Authority"
#define POLKIT_IFACE "org.freedesktop.PolicyKit1.Authority"
#define POLKIT_ALLOW_USER_INTERACTION 1u

typedef struct AuthRule {
        const char *member;
        AuthScope scope;
        const char *action;
        const char *what; /* for messages: "<uid> may not <what>" */
} AuthRule;

/* The one place that says which action each call needs. A (member, scope)
 * pair that is not here is denied for everyone, root included, so a new
 * method cannot slip through unchecked. */
static const AuthRule auth_rules[] = {
        { "Allocate", AUTH_SCOPE_OWN, AUTH_ACTION_ALLOCATE, "allocate memory" },
        { "Allocate", AUTH_SCOPE_OTHER, AUTH_ACTION_MANAGE, "allocate into an owner that belongs to another user" },
        { "Allocate", AUTH_SCOPE_DEVICE_OWNER, AUTH_ACTION_MANAGE,
          "hand a device node to a user or group (device-uid, device-gid)" },
        { "Release", AUTH_SCOPE_OWN, AUTH_ACTION_ALLOCATE, "release its own allocation" },
        { "Release", AUTH_SCOPE_OTHER, AUTH_ACTION_MANAGE, "release another user's allocation" },
        { "Open", AUTH_SCOPE_OWN, AUTH_ACTION_ALLOCATE, "open its own allocation" },
        { "Open", AUTH_SCOPE_OTHER, AUTH_ACTION_MANAGE, "open another user's allocation" },
        { "ReleaseOwner", AUTH_SCOPE_OWN, AUTH_ACTION_ALLOCATE, "release its own allocations" },
        { "ReleaseOwner", AUTH_SCOPE_OTHER, AUTH_ACTION_MANAGE,
          "release an owner that has allocations of another user" },
        { "ReturnToHost", AUTH_SCOPE_OTHER, AUTH_ACTION_MANAGE, "return pool memory to the host" },
        { "ReclaimFromHost", AUTH_SCOPE_OTHER, AUTH_ACTION_MANAGE, "take pool memory back from the host" },
};

typedef struct AuthQuery {
        Auth *auth;
        sd_bus_message *m; /* the method call waiting for the answer */
        const AuthRule *rule;
        uid_t uid;
        sd_bus_slot *slot; /* the CheckAuthorization call; NULL once answered */
        sd_bus_message_handler_t handler;
        void *userdata;
        bool allowed;
        char *denial; /* why not, when !allowed */
        char *sender;
        char cancellation_id[32];
} AuthQuery;

struct Auth {
        sd_bus *bus;
        GHashTable *queries;   /* sd_bus_message* -> AuthQuery*, owned */
        GHashTable *by_sender; /* sender -> checks in flight (GUINT_TO_POINTER) */
        GHashTable *by_uid;    /* uid -> checks in flight */
        uint64_t next_id;
};

static unsigned counter_get(GHashTable *h, const void *key) {
        return GPOINTER_TO_UINT(g_hash_table_lookup(h, key));
}

static void counter_add(GHashTable *h, void *key, int delta, bool dup_key) {
        unsigned n = counter_get(h, key) + (unsigned) delta;

        if (n == 0)
                g_hash_table_remove(h, key);
        else
                g_hash_table_replace(h, dup_key ? g_strdup(key) : key, GUINT_TO_POINTER(n));
}

/* The check is no longer in flight (answered or cancelled). */
static void auth_query_unslot(AuthQuery *q) {
        if (!q->slot)
                return;
        q->slot = sd_bus_slot_unref(q->slot);
        counter_add(q->auth->by_sender, q->sender, -1, true);
        counter_add(q->auth->by_uid, GUINT_TO_POINTER(q->uid), -1, false);
}

static void auth_query_free(AuthQuery *q) {
        if (!q)
                return;
        auth_query_unslot(q);
        g_free(q->sender);
        sd_bus_message_unref(q->m);
        g_free(q->denial);
        g_free(q);
}

int auth_new(sd_bus *bus, Auth **ret) {
        Auth *auth = g_new0(Auth, 1);

        auth->bus = sd_bus_ref(bus);
        auth->queries = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL,
                                              (GDestroyNotify) auth_query_free);
        auth->by_sender = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        auth->by_uid = g_hash_table_new(g_direct_hash, g_direct_equal);
        *ret = auth;
        return 0;
}

void auth_free(Auth *auth) {
        if (!auth)
                return;
        /* Unreferencing the slots cancels the calls: no answer arrives into
         * freed memory. Callers still waiting get no reply; the daemon is
         * leaving the bus. */
        g_hash_table_destroy(auth->queries);
        g_hash_table_destroy(auth->by_sender);
        g_hash_table_destroy(auth->by_uid);
        sd_bus_unref(auth->bus);
        g_free(auth);
}

static const AuthRule *auth_rule(sd_bus_message *m, AuthScope scope) {
        const char *interface = sd_bus_message_get_interface(m);
        const char *member = sd_bus_message_get_member(m);

        if (!interface || !member || strcmp(interface, BUS_MANAGER_IFACE) != 0)
                return NULL;
        for (size_t i = 0; i < G_N_ELEMENTS(auth_rules); i++)
                if (auth_rules[i].scope == scope && strcmp(auth_rules[i].member, member) == 0)
                        return &auth_rules[i];
        return NULL;
}

static int deny(sd_bus_error *ret_error, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int deny(sd_bus_error *ret_error, const char *fmt, ...) {
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = sd_bus_error_setfv(ret_error, BUS_ERROR_ACCESS_DENIED, fmt, ap);
        va_end(ap);
        return r;
}

static bool polkit_absent(const sd_bus_error *e) {
        return sd_bus_error_has_names(e, SD_BUS_ERROR_SERVICE_UNKNOWN, SD_BUS_ERROR_NAME_HAS_NO_OWNER) ||
               g_str_has_prefix(e->name, "org.freedesktop.DBus.Error.Spawn.");
}

/* Records polkit's answer (or why there is none) in q. */
static void auth_query_settle(AuthQuery *q, sd_bus_message *reply) {
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        const char *action = q->rule->action, *what = q->rule->what;
        unsigned uid = (unsigned) q->uid;
        int authorized = 0, challenge = 0, r;

        if (e && polkit_absent(e)) {
                q->denial = g_strdup_printf("polkit (" POLKIT_NAME ") is not running on the system bus, so only "
                                            "root may %s (polkit action %s); asked by uid %u",
                                            what, action, uid);
                log_notice("%s", q->denial);
                return;
        }
        if (e) {
                q->denial = g_strdup_printf("Cannot ask polkit whether uid %u may %s (polkit action %s): %s", uid,
                                            what, action, e->message ? e->message : e->name);
                log_warning("%s", q->denial);
                return;
        }

        r = sd_bus_message_enter_container(reply, 'r', "bba{ss}");
        if (r >= 0)
                r = sd_bus_message_read(reply, "bb", &authorized, &challenge);
        if (r < 0) {
                q->denial = g_strdup_printf("polkit gave an unreadable answer for uid %u and action %s: %s", uid,
                                            action, strerror(-r));
                log_warning("%s", q->denial);
                return;
        }
        if (authorized) {
                q->allowed = true;
                return;
        }
        if (challenge)
                q->denial = g_strdup_printf("uid %u may %s only after authenticating for polkit action %s; call "
                                            "with interactive authorization allowed (busctl "
                                            "--allow-interactive-authorization=yes) from a session with a polkit "
                                            "agent, or have a polkit rule grant it",
                                            uid, what, action);
        else
                q->denial = g_strdup_printf("uid %u is not authorized to %s (polkit action %s)", uid, what,
                                            action);
}

static int on_check_authorization(sd_bus_message *reply, void *userdata, sd_bus_error *unused) {
        AuthQuery *q = userdata;
        Auth *auth = q->auth;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        /* The handler consumes (and frees) q when it asks for the verdict:
         * keep what is needed afterwards. */
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = sd_bus_message_ref(q->m);
        sd_bus_message_handler_t handler = q->handler;
        void *handler_userdata = q->userdata;
        AuthQuery *left;
        int r;

        auth_query_unslot(q);
        auth_query_settle(q, reply);

        /* Run the method again from the start: it reads and validates its
         * arguments anew (the allocation may be gone by now) and gets the
         * verdict from auth_check(). */
        r = sd_bus_message_rewind(m, true);
        if (r >= 0)
                r = handler(m, handler_userdata, &error);
        if (r < 0 || sd_bus_error_is_set(&error)) {
                int k = sd_bus_error_is_set(&error) ? sd_bus_reply_method_error(m, &error)
                                                    : sd_bus_reply_method_errno(m, r, NULL);
                if (k < 0)
                        log_warning("Cannot send %s reply: %s", sd_bus_message_get_member(m), strerror(-k));
        }

        /* A handler that failed before asking (say, NoSuchAllocation) left
         * the verdict here; a new question for another action is pending. */
        left = g_hash_table_lookup(auth->queries, m);
        if (left && !left->slot)
                g_hash_table_remove(auth->queries, m);
        return 0;
}

static int auth_query_start(Auth *auth, sd_bus_message *m, const AuthRule *rule, uid_t uid,
                            sd_bus_message_handler_t handler, void *userdata, sd_bus_error *ret_error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL;
        const char *sender = sd_bus_message_get_sender(m);
        AuthQuery *q;
        uint32_t flags = 0;
        int r;

        if (!sender)
                return deny(ret_error, "The caller has no bus name; cannot ask polkit about it");
        if (counter_get(auth->by_sender, sender) >= AUTH_PENDING_PER_SENDER)
                return sd_bus_error_setf(ret_error, BUS_ERROR_BUSY,
                                         "%s has %d authorization checks in progress already, the most one "
                                         "client may have; try again when they are answered",
                                         sender, AUTH_PENDING_PER_SENDER);
        if (counter_get(auth->by_uid, GUINT_TO_POINTER(uid)) >= AUTH_PENDING_PER_UID)
                return sd_bus_error_setf(ret_error, BUS_ERROR_BUSY,
                                         "uid %u has %d authorization checks in progress already, the most one "
                                         "user may have; try again when they are answered",
                                         (unsigned) uid, AUTH_PENDING_PER_UID);
        if (g_hash_table_size(auth->queries) >= AUTH_PENDING_MAX)
                return sd_bus_error_setf(ret_error, BUS_ERROR_BUSY,
                                         "%d authorization checks are in progress already, try again",
                                         AUTH_PENDING_MAX);

        q = g_new0(AuthQuery, 1);
        q->auth = auth;
        q->m = sd_bus_message_ref(m);
        q->rule = rule;
        q->uid = uid;
        q->handler = handler;
        q->userdata = userdata;
        q->sender = g_strdup(sender);
        snprintf(q->cancellation_id, sizeof(q->cancellation_id), "daxbroker-%" PRIu64, ++auth->next_id);

        if (sd_bus_message_get_allow_interactive_authorization(m) > 0)
                flags |= POLKIT_ALLOW_USER_INTERACTION;
        /* Subject system-bus-name: polkit looks the connection up itself,
         * which is not racy the way a pid is. */
        r = sd_bus_message_new_method_call(auth->bus, &call, POLKIT_NAME, POLKIT_PATH, POLKIT_IFACE,
                                           "CheckAuthorization");
        if (r >= 0)
                r = sd_bus_message_append(call, "(sa{sv})sa{ss}us", "system-bus-name", 1, "name", "s", sender,
                                          rule->action, 0, flags, q->cancellation_id);
        /* An interactive check waits for a person to type a password; the
         * default 25 s would refuse a slow administrator. */
        if (r >= 0)
                r = sd_bus_call_async(auth->bus, &q->slot, call, on_check_authorization, q,
                                      (flags & POLKIT_ALLOW_USER_INTERACTION) ? AUTH_INTERACTIVE_TIMEOUT_USEC
                                                                              : AUTH_TIMEOUT_USEC);
        if (r < 0) {
                q->slot = NULL;
                auth_query_free(q);
                return deny(ret_error, "Cannot ask polkit whether uid %u may %s (polkit action %s): %s",
                            (unsigned) uid, rule->what, rule->action, strerror(-r));
        }
        counter_add(auth->by_sender, q->sender, +1, true);
        counter_add(auth->by_uid, GUINT_TO_POINTER(uid), +1, false);
        g_hash_table_replace(auth->queries, m, q);
        return 0;
}

static int on_cancel_reply(sd_bus_message *reply, void *userdata, sd_bus_error *unused) {
        const sd_bus_error *e = sd_bus_message_get_error(reply);

        /* Polkit answers the cancelled check itself (with an error we no
         * longer listen to); a failure here only means it had finished. */
        if (e)
                log_debug("CancelCheckAuthorization: %s", e->message ? e->message : e->name);
        return 0;
}

void auth_client_vanished(Auth *auth, const char *sender) {
        GHashTableIter it;
        void *v;

        if (counter_get(auth->by_sender, sender) == 0)
                return;
        g_hash_table_iter_init(&it, auth->queries);
        while (g_hash_table_iter_next(&it, NULL, &v)) {
                AuthQuery *q = v;
                int r;

                if (!q->slot || strcmp(q->sender, sender) != 0)
                        continue;
                r = sd_bus_call_method_async(auth->bus, NULL, POLKIT_NAME, POLKIT_PATH, POLKIT_IFACE,
                                             "CancelCheckAuthorization", on_cancel_reply, NULL, "s",
                                             q->cancellation_id);
                if (r < 0)
                        log_warning("Cannot cancel polkit check %s of %s: %s", q->cancellation_id, sender,
                                    strerror(-r));
                else
                        log_debug("Cancelled polkit check %s: %s left the bus", q->cancellation_id, sender);
                g_hash_table_iter_remove(&it);
        }
}

unsigned auth_pending(Auth *auth) {
        unsigned n = 0;
        GHashTableIter it;
        void *v;

        g_hash_table_iter_init(&it, auth->queries);
        while (g_hash_table_iter_next(&it, NULL, &v))
                n += ((AuthQuery *) v)->slot != NULL;
        return n;
}

int auth_check(Auth *auth, sd_bus_message *m, uid_t uid, AuthScope scope, sd_bus_message_handler_t handler,
               void *userdata, sd_bus_error *ret_error) {
        const AuthRule *rule = auth_rule(m, scope);
        AuthQuery *q;

        if (!rule)
                return deny(ret_error, "No authorization rule covers %s.%s in this form: denied",
                            sd_bus_message_get_interface(m) ?: "?", sd_bus_message_get_member(m) ?: "?");
        if (uid == 0)
                return 1;

        q = g_hash_table_lookup(auth->queries, m);
        if (q && !q->slot) {
                /* The second run of the handler: polkit has answered. If
                 * what the call needs changed meanwhile (the owner's
                 * allocations changed hands), the answer is for the wrong
                 * action and polkit is asked again. */
                if (strcmp(q->rule->action, rule->action) == 0 && q->uid == uid) {
                        bool allowed = q->allowed;
                        int r = allowed ? 1 : deny(ret_error, "%s", q->denial);

                        g_hash_table_remove(auth->queries, m);
                        return r;
                }
        } else if (q)
                /* Not reached: a call is not dispatched twice while
                 * polkit is asked. Refuse rather than ask twice. */
                return deny(ret_error, "An authorization check for this call is in progress already");

        return auth_query_start(auth, m, rule, uid, handler, userdata, ret_error);
}
