/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * auth: who may call what. One table maps each method of the Manager
 * interface, in each scope (own allocations, another uid's, handing a device
 * node to someone), to a polkit action; anything not in it is denied, root
 * included. Root is then allowed at once; anyone else is asked of polkit
 * (CheckAuthorization, subject system-bus-name) without blocking the event
 * loop: the method handler runs a second time with the same message once the
 * answer is in.
 */

#include <stdbool.h>
#include <sys/types.h>

#include <systemd/sd-bus.h>

#define AUTH_ACTION_ALLOCATE "org.daxbroker.Broker1.allocate"
#define AUTH_ACTION_MANAGE "org.daxbroker.Broker1.manage"

/* Polkit checks in flight at once; more are refused as Busy rather than
 * queued without bound. */
#define AUTH_PENDING_MAX 128

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
