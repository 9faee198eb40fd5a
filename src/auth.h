/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * auth: who may call what. One table maps each method of the Manager
 * interface, in each scope (own allocations, another uid's, handing a device
 * node to someone), to a polkit action; anything not in it is denied, root
 * included. Root is then allowed at once; anyone else is asked of polkit
 * (CheckAuthorization, subject system-bus-name) without blocking the event
 * loop: the method handler runs a second time with the same message once the
 * answer is in. Each check carries a cancellation id, and is cancelled when
 * its caller leaves the bus.
 */

#include <stdbool.h>
#include <sys/types.h>

#include <systemd/sd-bus.h>

#define AUTH_ACTION_ALLOCATE "org.daxbroker.Broker1.allocate"
#define AUTH_ACTION_MANAGE "org.daxbroker.Broker1.manage"

/* Polkit checks in flight for one bus client, and for all clients of one
 * uid: more are refused as Busy rather than queued, so that no caller can
 * take the slots of another. The total is bounded by memory only through
 * AUTH_PENDING_MAX. */
#define AUTH_PENDING_PER_SENDER 8
#define AUTH_PENDING_PER_UID 32
#define AUTH_PENDING_MAX 4096

/* How long polkit may take to answer. A check that may ask the user for a
 * password (interactive authorization) waits for a person; any other is
 * answered by rules alone. */
#define AUTH_TIMEOUT_USEC (25ULL * 1000 * 1000)
#define AUTH_INTERACTIVE_TIMEOUT_USEC (10ULL * 60 * 1000 * 1000)

typedef enum AuthScope {
        AUTH_SCOPE_OWN,          /* a new allocation, or the caller uid's own */
        AUTH_SCOPE_OTHER,        /* allocations created by another uid */
        AUTH_SCOPE_DEVICE_OWNER, /* Allocate with device-uid or device-gid */
} AuthScope;

typedef struct Auth Auth;

int auth_new(sd_bus *bus, Auth **ret);
void auth_free(Auth *auth);

/* Decides whether the sender of method call m, whose uid the caller has
 * looked up, may do what m asks in this scope. Returns 1 when allowed; a
 * negative errno with ret_error set (AccessDenied, Busy) when not; 0 when
 * polkit has been asked: the handler then returns 1, and auth calls
 * handler(m, userdata) again once the answer is in, where this returns the
 * verdict. Errors that handler returns on that second run are sent as the
 * reply, as sd-bus does for the first. */
int auth_check(Auth *auth, sd_bus_message *m, uid_t uid, AuthScope scope, sd_bus_message_handler_t handler,
               void *userdata, sd_bus_error *ret_error);

/* The bus client (unique name) left: its checks still in flight are
 * cancelled at polkit (CancelCheckAuthorization, which also takes down an
 * authentication dialog) and forgotten; its calls get no reply. */
void auth_client_vanished(Auth *auth, const char *sender);

/* Checks in flight (for tests and diagnostics). */
unsigned auth_pending(Auth *auth);
