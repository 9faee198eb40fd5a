/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "build-config.h"
#include "bus.h"
#include "events.h"
#include "log.h"
#include "metrics.h"
#include "owners.h"
#include "util.h"
#include "warm.h"

#define streq(a, b) (strcmp((a), (b)) == 0)

struct Bus {
        sd_bus *bus;
        Broker *broker;
        Auth *auth;
        sd_bus_slot *name_owner_slot;
        /* uid of each unique bus name seen calling: a unique name never
         * changes hands, so one round trip to the bus per client is enough.
         * Entries go when NameOwnerChanged says the client left. */
        GHashTable *uids;
        /* Unique names that may see physical addresses of every allocation
         * (root and the group), cached like uids: name -> bool. */
        GHashTable *trusted;
        /* Clients that hold transient allocations: name -> how many. Only
         * their leaving costs a look at the allocations. */
        GHashTable *clients;
        /* Set while signals that carry properties to every listener are
         * emitted: those never carry physical addresses. */
        bool broadcasting;
        /* Pools (by object path) whose size properties changed since the
         * last PropertiesChanged, sent once the daemon is idle. */
        GHashTable *sizes_changed;
        sd_event_source *sizes_source;
        sd_event *event;
};

static void note_refusal(Bus *bus, sd_bus_message *m, const char *error_name, const char *message);

static int reply_gerror(Bus *bus, sd_bus_message *m, const GError *e) {
        const char *name = e->domain == BROKER_ERROR ? bus_error_name(e->code) : BUS_ERROR_PREFIX "KernelFailure";

        note_refusal(bus, m, name, e->message);
        return sd_bus_reply_method_errorf(m, name, "%s", e->message);
}

static int method_dispatch(sd_bus_message *m, void *userdata, sd_bus_error *ret_error);

static int set_error(sd_bus_error *ret_error, BrokerError code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static int set_error(sd_bus_error *ret_error, BrokerError code, const char *fmt, ...) {
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = sd_bus_error_setfv(ret_error, bus_error_name(code), fmt, ap);
        va_end(ap);
        return r;
}

static char *pool_path(const Pool *p) {
        char *s = NULL;

        if (sd_bus_path_encode(BUS_POOL_PREFIX, p->name, &s) < 0)
                return NULL;
        return s;
}

static char *allocation_path(const Allocation *a) {
        return g_strdup_printf(BUS_ALLOCATION_PREFIX "/%s", a->rec->id);
}

#define UID_CACHE_MAX 4096

static int sender_uid(Bus *bus, sd_bus_message *m, uid_t *ret) {
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
        const char *sender = sd_bus_message_get_sender(m);
        void *cached;
        int r;

        if (sender && g_hash_table_lookup_extended(bus->uids, sender, NULL, &cached)) {
                *ret = (uid_t) GPOINTER_TO_UINT(cached);
                return 0;
        }
        r = sd_bus_query_sender_creds(m, SD_BUS_CREDS_EUID, &creds);
        if (r < 0)
                return r;
        r = sd_bus_creds_get_euid(creds, ret);
        if (r < 0)
                return r;
        /* Only unique names: a well-known name can change owners. */
        if (sender && sender[0] == ':' && g_hash_table_size(bus->uids) < UID_CACHE_MAX)
                g_hash_table_insert(bus->uids, g_strdup(sender), GUINT_TO_POINTER(*ret));
        return 0;
}

/* Membership as the user database says, which is what dbus-daemon's
 * group="..." policy rule goes by too. */
static bool uid_in_group(uid_t uid, const char *group) {
        struct group grbuf, *gr = NULL;
        struct passwd pwbuf, *pw = NULL;
        g_autofree char *gbuf = g_malloc(65536), *pbuf = g_malloc(65536);
        g_autofree gid_t *groups = NULL;
        int n = 64;

        if (getgrnam_r(group, &grbuf, gbuf, 65536, &gr) != 0 || !gr)
                return false;
        if (getpwuid_r(uid, &pwbuf, pbuf, 65536, &pw) != 0 || !pw)
                return false;
        if (pw->pw_gid == gr->gr_gid)
                return true;
        for (int tries = 0; tries < 4; tries++) {
                int k = n;

                groups = g_renew(gid_t, groups, n);
                if (getgrouplist(pw->pw_name, pw->pw_gid, groups, &k) >= 0) {
                        for (int i = 0; i < k; i++)
                                if (groups[i] == gr->gr_gid)
                                        return true;
                        return false;
                }
                n = MAX(k, n * 2);
        }
        return false;
}

/* Physical addresses (pool Start, allocation Ranges) are for root, the
 * group and the allocation's own uid (alloc_uid; (uid_t) -1 for pools):
 * the kernel keeps them from other users (mappingN/start is 0400), as
 * they aim physical-address attacks such as Rowhammer. Signals go to
 * every listener, so they never carry them. */
static bool may_see_addresses(Bus *bus, sd_bus_message *m, uid_t alloc_uid) {
        const char *sender;
        void *cached;
        uid_t uid;
        bool trusted;

        if (!m || bus->broadcasting || !sd_bus_message_is_method_call(m, NULL, NULL))
                return false;
        if (sender_uid(bus, m, &uid) < 0)
                return false;
        if (uid == 0 || uid == alloc_uid)
                return true;
        sender = sd_bus_message_get_sender(m);
        if (sender && g_hash_table_lookup_extended(bus->trusted, sender, NULL, &cached))
                return GPOINTER_TO_INT(cached);
        trusted = uid_in_group(uid, DAXBROKER_GROUP);
        if (sender && sender[0] == ':' && g_hash_table_size(bus->trusted) < UID_CACHE_MAX)
                g_hash_table_insert(bus->trusted, g_strdup(sender), GINT_TO_POINTER(trusted));
        return trusted;
}

/* Property getters of pools and allocations get the object, not the bus;
 * the daemon has one bus connection. */
static Bus *the_bus;

static int caller_uid(Bus *bus, sd_bus_message *m, uid_t *ret, sd_bus_error *ret_error) {
        int r = sender_uid(bus, m, ret);

        if (r < 0)
                return set_error(ret_error, BROKER_ERROR_ACCESS_DENIED, "Cannot identify the caller: %s",
                                 strerror(-r));
        return 0;
}

/* Whether the caller (uid) may make call m in this scope: auth.c's table
 * names the polkit action, root needs none. Returns 1 when allowed, < 0
 * with ret_error set when not, and 0 while polkit is asked: the handler
 * then returns 1 and runs again with the same message once the answer is
 * in, so everything before this call must be repeatable. */
static int authorize(Bus *bus, sd_bus_message *m, uid_t uid, AuthScope scope, sd_bus_message_handler_t handler,
                     sd_bus_error *ret_error) {
        /* Polkit's answer runs the call again through the dispatcher, so
         * that a refusal then is noted like any other. */
        return auth_check(bus->auth, m, uid, scope, method_dispatch, bus, ret_error);
}

static AuthScope allocation_scope(const Allocation *a, uid_t uid) {
        return a->rec->owner_uid == uid ? AUTH_SCOPE_OWN : AUTH_SCOPE_OTHER;
}

/* Releasing an owner is the caller's own business only if the owner
 * belongs to the caller's uid and so does every allocation in it (state
 * from before owners were bound to uids may mix them). */
static AuthScope owner_scope(Bus *bus, const char *owner, uid_t uid) {
        g_autoptr(GPtrArray) all = NULL;
        uid_t owner_uid;

        if (broker_owner_uid(bus->broker, owner, &owner_uid) && owner_uid != uid)
                return AUTH_SCOPE_OTHER;
        all = broker_list_allocations(bus->broker);
        for (guint i = 0; i < all->len; i++) {
                const Allocation *a = all->pdata[i];
                if (streq(a->rec->owner, owner) && a->rec->owner_uid != uid)
                        return AUTH_SCOPE_OTHER;
        }
        return AUTH_SCOPE_OWN;
}

/* "/org/daxbroker/Broker1/allocation/ID" -> allocation, or a named error:
 * InvalidArgument if it is not such a path at all, NoSuchAllocation if no
 * allocation has that id. */
static Allocation *lookup_allocation(Bus *bus, const char *path, sd_bus_error *ret_error) {
        const char *id;
        Allocation *a;

        if (!g_str_has_prefix(path, BUS_ALLOCATION_PREFIX "/") ||
            strlen(path) <= strlen(BUS_ALLOCATION_PREFIX "/")) {
                set_error(ret_error, BROKER_ERROR_INVALID_ARGUMENT,
                          "'%s' is not an allocation path (" BUS_ALLOCATION_PREFIX "/ID)", path);
                return NULL;
        }
        id = path + strlen(BUS_ALLOCATION_PREFIX "/");
        a = broker_find_allocation(bus->broker, id);
        if (!a)
                set_error(ret_error, BROKER_ERROR_NO_SUCH_ALLOCATION, "No allocation %s", id);
        return a;
}

/* ---- Manager methods ---- */

typedef struct PendingCall {
        Bus *bus;
        sd_bus_message *m;
        uint64_t start_usec; /* authorized, handed to the broker */
} PendingCall;

static PendingCall *pending_new(Bus *bus, sd_bus_message *m) {
        PendingCall *p = g_new0(PendingCall, 1);

        p->bus = bus;
        p->m = sd_bus_message_ref(m);
        p->start_usec = g_get_monotonic_time();
        return p;
}

static void pending_free(PendingCall *p) {
        sd_bus_message_unref(p->m);
        g_free(p);
}

typedef struct ClientCheck {
        Bus *bus;
        char client[];
} ClientCheck;

static int on_name_has_owner(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        ClientCheck *c = userdata;
        int has = 1;

        if (sd_bus_message_is_method_error(reply, NULL) || sd_bus_message_read(reply, "b", &has) < 0 || !has)
                broker_client_vanished(c->bus->broker, c->client);
        g_free(c);
        return 0;
}

/* The client of a transient allocation may have left while the kernel
 * work ran; NameOwnerChanged came before the allocation existed. */
static void check_client_alive(Bus *bus, const char *client) {
        ClientCheck *c = g_malloc(sizeof(ClientCheck) + strlen(client) + 1);
        int r;

        c->bus = bus;
        strcpy(c->client, client);
        r = sd_bus_call_method_async(bus->bus, NULL, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                     "org.freedesktop.DBus", "NameHasOwner", on_name_has_owner, c, "s", client);
        if (r < 0) {
                log_warning("Cannot check bus client %s: %s", client, strerror(-r));
                g_free(c);
        }
}

static void allocate_reply(Allocation *a, int fd, const GError *error, void *userdata) {
        PendingCall *p = userdata;
        int r;

        if (error)
                r = reply_gerror(p->bus, p->m, error);
        else {
                g_autofree char *path = allocation_path(a);
                metrics_observe(METRICS_CALL_ALLOCATE, g_get_monotonic_time() - p->start_usec);
                r = sd_bus_reply_method_return(p->m, "oh", path, fd);
                if (a->rec->transient && a->rec->client)
                        check_client_alive(p->bus, a->rec->client);
        }
        if (r < 0)
                log_warning("Cannot send Allocate reply: %s", strerror(-r));
        pending_free(p);
}

/* A device node handed to uid or gid (uint32_t)-1 would mean "unchanged"
 * to chown(2): refuse it as a value. */
static int read_device_id(sd_bus_message *m, const char *key, uint32_t *ret, sd_bus_error *ret_error) {
        int r = sd_bus_message_read(m, "v", "u", ret);

        if (r < 0)
                return r;
        if (*ret == UINT32_MAX)
                return set_error(ret_error, BROKER_ERROR_INVALID_ARGUMENT, "Option '%s' must not be %" PRIu32,
                                 key, UINT32_MAX);
        return 0;
}

/* colors: an array of distinct colour numbers 0..63; which of them the
 * pool has is the broker's to check. */
static int read_colors(sd_bus_message *m, ColorMask *ret, sd_bus_error *ret_error) {
        const uint32_t *v;
        size_t bytes;
        int r;

        r = sd_bus_message_enter_container(m, 'v', "au");
        if (r < 0)
                return r;
        r = sd_bus_message_read_array(m, 'u', (const void **) &v, &bytes);
        if (r < 0)
                return r;
        if (bytes == 0)
                return set_error(ret_error, BROKER_ERROR_INVALID_ARGUMENT, "Option 'colors' must not be empty");
        for (size_t i = 0; i < bytes / sizeof(uint32_t); i++) {
                if (v[i] >= CACHE_COLORS_MAX)
                        return set_error(ret_error, BROKER_ERROR_INVALID_ARGUMENT,
                                         "Option 'colors': colour %" PRIu32 " is not 0 to %d", v[i],
                                         CACHE_COLORS_MAX - 1);
                if (*ret & ((ColorMask) 1 << v[i]))
                        return set_error(ret_error, BROKER_ERROR_INVALID_ARGUMENT,
                                         "Option 'colors': colour %" PRIu32 " is listed twice", v[i]);
                *ret |= (ColorMask) 1 << v[i];
        }
        return sd_bus_message_exit_container(m);
}

static int read_options(sd_bus_message *m, AllocateRequest *req, sd_bus_error *ret_error) {
        bool contiguous_given = false;
        unsigned n = 0;
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const char *key, *contents;
                char type;

                if (++n > OPTIONS_MAX)
                        return set_error(ret_error, BROKER_ERROR_INVALID_ARGUMENT, "More than %d options",
                                         OPTIONS_MAX);
                r = sd_bus_message_read(m, "s", &key);
                if (r < 0)
                        return r;
                r = sd_bus_message_peek_type(m, &type, &contents);
                if (r < 0)
                        return r;

#define WANT(sig)                                                                                      \
        if (!streq(contents, sig))                                                                     \
                return set_error(ret_error, BROKER_ERROR_INVALID_ARGUMENT,                             \
                                 "Option '%s' must have type '%s', not '%s'", key, sig, contents)

                if (streq(key, "pool")) {
                        WANT("s");
                        r = sd_bus_message_read(m, "v", "s", &req->pool);
                } else if (streq(key, "numa-node")) {
                        WANT("i");
                        r = sd_bus_message_read(m, "v", "i", &req->numa_node);
                        req->has_numa_node = true;
                } else if (streq(key, "align")) {
                        WANT("t");
                        r = sd_bus_message_read(m, "v", "t", &req->align);
                } else if (streq(key, "contiguous")) {
                        int b;
                        WANT("b");
                        r = sd_bus_message_read(m, "v", "b", &b);
                        req->contiguous = b;
                        contiguous_given = true;
                } else if (streq(key, "min-read-bandwidth") || streq(key, "min-write-bandwidth") ||
                           streq(key, "max-read-latency") || streq(key, "max-write-latency")) {
                        uint64_t *dest = streq(key, "min-read-bandwidth")    ? &req->min_read_bandwidth
                                         : streq(key, "min-write-bandwidth") ? &req->min_write_bandwidth
                                         : streq(key, "max-read-latency")    ? &req->max_read_latency
                                                                             : &req->max_write_latency;
                        WANT("t");
                        r = sd_bus_message_read(m, "v", "t", dest);
                        if (r >= 0 && (*dest == 0 || *dest > UINT32_MAX))
                                return set_error(ret_error, BROKER_ERROR_INVALID_ARGUMENT,
                                                 "Option '%s' must be from 1 to %" PRIu32 " (%s), not %" PRIu64, key,
                                                 UINT32_MAX, g_str_has_prefix(key, "min-") ? "MB/s" : "ns", *dest);
                } else if (streq(key, "tier")) {
                        const char *why;
                        WANT("s");
                        r = sd_bus_message_read(m, "v", "s", &req->tier);
                        if (r >= 0 && (why = tier_invalid_reason(req->tier)))
                                return set_error(ret_error, BROKER_ERROR_INVALID_ARGUMENT, "Option 'tier' %s", why);
                } else if (streq(key, "cache-isolation")) {
                        int b;
                        WANT("b");
                        r = sd_bus_message_read(m, "v", "b", &b);
                        req->cache_isolation = b;
                } else if (streq(key, "colors")) {
                        WANT("au");
                        r = read_colors(m, &req->colors, ret_error);
                        if (r < 0 || sd_bus_error_is_set(ret_error))
                                return r;
                } else if (streq(key, "label")) {
                        WANT("s");
                        r = sd_bus_message_read(m, "v", "s", &req->label);
                } else if (streq(key, "transient")) {
                        int b;
                        WANT("b");
                        r = sd_bus_message_read(m, "v", "b", &b);
                        req->transient = b;
                } else if (streq(key, "timeout-usec")) {
                        WANT("t");
                        r = sd_bus_message_read(m, "v", "t", &req->timeout_usec);
                        if (r >= 0 && (req->timeout_usec < 1000 || req->timeout_usec > ALLOCATE_TIMEOUT_MAX_USEC))
                                return set_error(ret_error, BROKER_ERROR_INVALID_ARGUMENT,
                                                 "Option 'timeout-usec' must be from 1000 (1 ms) to %llu (1 h), "
                                                 "not %" PRIu64, (unsigned long long) ALLOCATE_TIMEOUT_MAX_USEC,
                                                 req->timeout_usec);
                } else if (streq(key, "device-uid") || streq(key, "device-gid")) {
                        uint32_t id;
                        WANT("u");
                        r = read_device_id(m, key, &id, ret_error);
                        if (r < 0 || sd_bus_error_is_set(ret_error))
                                return r;
                        if (streq(key, "device-uid"))
                                req->device_uid = id;
                        else
                                req->device_gid = id;
                        req->has_device_owner = true;
                } else
                        return set_error(ret_error, BROKER_ERROR_INVALID_ARGUMENT,
                                         "Unknown option '%s' (known: pool, numa-node, align, contiguous, "
                                         "label, transient, device-uid, device-gid, timeout-usec, "
                                         "min-read-bandwidth, min-write-bandwidth, max-read-latency, "
                                         "max-write-latency, tier, cache-isolation, colors)",
                                         key);
#undef WANT
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        if (req->cache_isolation && req->colors)
                return set_error(ret_error, BROKER_ERROR_INVALID_ARGUMENT,
                                 "Options 'cache-isolation' and 'colors' exclude each other");
        /* A colour is spread over the pool in slices: memory of a few
         * colours is many ranges unless the caller insists. */
        if ((req->cache_isolation || req->colors) && !contiguous_given)
                req->contiguous = false;
        return sd_bus_message_exit_container(m);
}

static int method_allocate(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Bus *bus = userdata;
        /* The one of device-uid and device-gid not given stays unchanged. */
        AllocateRequest req = { .contiguous = true, .device_uid = (uid_t) -1, .device_gid = (gid_t) -1 };
        g_autoptr(GError) error = NULL;
        AuthScope scope = AUTH_SCOPE_OWN;
        uid_t uid, owner_uid;
        const char *why;
        PendingCall *p;
        int r;

        r = sd_bus_message_read(m, "st", &req.owner, &req.size);
        if (r < 0)
                return r;
        r = read_options(m, &req, ret_error);
        if (r < 0 || sd_bus_error_is_set(ret_error))
                return r;
        if (req.has_numa_node && req.numa_node < 0)
                return set_error(ret_error, BROKER_ERROR_INVALID_ARGUMENT, "NUMA node %d is negative",
                                 req.numa_node);
        /* The broker checks these too; here they are refused before polkit
         * is asked. */
        if ((why = link_name_invalid_reason(req.owner)))
                return set_error(ret_error, BROKER_ERROR_INVALID_ARGUMENT, "Owner %s", why);
        if (req.label && (why = link_name_invalid_reason(req.label)))
                return set_error(ret_error, BROKER_ERROR_INVALID_ARGUMENT, "Label %s", why);

        r = caller_uid(bus, m, &uid, ret_error);
        if (r < 0)
                return r;
        /* An owner belongs to the uid that created it. Allocating into one
         * of another uid needs manage, and the allocation is the owner's:
         * made on its behalf, it counts against that uid and is its to
         * release. */
        if (broker_owner_uid(bus->broker, req.owner, &owner_uid) && owner_uid != uid)
                scope = AUTH_SCOPE_OTHER;
        else
                owner_uid = uid;
        if (req.has_device_owner)
                scope = AUTH_SCOPE_DEVICE_OWNER;
        req.owner_uid = owner_uid;
        r = authorize(bus, m, uid, scope, method_allocate, ret_error);
        if (r < 0)
                return r;
        if (r == 0)
                return 1; /* runs again with polkit's answer */
        req.client = sd_bus_message_get_sender(m);

        p = pending_new(bus, m);
        if (!broker_allocate(bus->broker, &req, allocate_reply, p, &error)) {
                pending_free(p);
                return set_error(ret_error, error->code, "%s", error->message);
        }
        return 1;
}

static void done_reply(unsigned count, const GError *error, void *userdata) {
        PendingCall *p = userdata;
        const char *member = sd_bus_message_get_member(p->m);
        int r;

        if (error)
                r = reply_gerror(p->bus, p->m, error);
        else if (streq(member, "ReleaseOwner"))
                r = sd_bus_reply_method_return(p->m, "u", count);
        else {
                metrics_observe(METRICS_CALL_RELEASE, g_get_monotonic_time() - p->start_usec);
                r = sd_bus_reply_method_return(p->m, NULL);
        }
        if (r < 0)
                log_warning("Cannot send %s reply: %s", member, strerror(-r));
        pending_free(p);
}

/* The common start of the calls on one allocation: read its path, look it
 * up, authorize the caller. Returns 1 to go on with *ret, 0 while polkit is
 * asked (the handler returns 1 and runs again), or < 0 with ret_error set. */
static int allocation_call_begin(Bus *bus, sd_bus_message *m, sd_bus_message_handler_t handler, Allocation **ret,
                                 sd_bus_error *ret_error) {
        const char *path;
        uid_t uid;
        int r;

        r = sd_bus_message_read(m, "o", &path);
        if (r < 0)
                return r;
        *ret = lookup_allocation(bus, path, ret_error);
        if (!*ret)
                return -EINVAL;
        r = caller_uid(bus, m, &uid, ret_error);
        if (r < 0)
                return r;
        return authorize(bus, m, uid, allocation_scope(*ret, uid), handler, ret_error);
}

static int method_release(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Bus *bus = userdata;
        g_autoptr(GError) error = NULL;
        Allocation *a;
        PendingCall *p;
        int r;

        r = allocation_call_begin(bus, m, method_release, &a, ret_error);
        if (r <= 0)
                return r < 0 ? r : 1; /* 0: runs again with polkit's answer */

        p = pending_new(bus, m);
        if (!broker_release(bus->broker, a, done_reply, p, &error)) {
                pending_free(p);
                return set_error(ret_error, error->code, "%s", error->message);
        }
        return 1;
}

static int method_release_owner(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Bus *bus = userdata;
        g_autoptr(GError) error = NULL;
        const char *owner, *why;
        PendingCall *p;
        uid_t uid;
        int r;

        r = sd_bus_message_read(m, "s", &owner);
        if (r < 0)
                return r;
        if ((why = name_invalid_reason(owner)))
                return set_error(ret_error, BROKER_ERROR_INVALID_ARGUMENT, "Owner %s", why);

        r = caller_uid(bus, m, &uid, ret_error);
        if (r < 0)
                return r;
        r = authorize(bus, m, uid, owner_scope(bus, owner, uid), method_release_owner, ret_error);
        if (r < 0)
                return r;
        if (r == 0)
                return 1; /* runs again with polkit's answer */

        p = pending_new(bus, m);
        if (!broker_release_owner(bus->broker, owner, done_reply, p, &error)) {
                pending_free(p);
                return set_error(ret_error, error->code, "%s", error->message);
        }
        return 1;
}

static void size_reply(uint64_t size, const GError *error, void *userdata) {
        PendingCall *p = userdata;
        int r;

        r = error ? reply_gerror(p->bus, p->m, error) : sd_bus_reply_method_return(p->m, "t", size);
        if (r < 0)
                log_warning("Cannot send %s reply: %s", sd_bus_message_get_member(p->m), strerror(-r));
        pending_free(p);
}

/* ReturnToHost and ReclaimFromHost: (s pool, t size) -> t. */
static int method_host(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Bus *bus = userdata;
        g_autoptr(GError) error = NULL;
        const char *name;
        uint64_t size;
        PendingCall *p;
        Pool *pool;
        uid_t uid;
        bool ok;
        int r;

        r = sd_bus_message_read(m, "st", &name, &size);
        if (r < 0)
                return r;
        pool = broker_find_pool(bus->broker, name);
        if (!pool)
                return set_error(ret_error, BROKER_ERROR_NO_SUCH_POOL, "No pool named '%s'", name);
        r = caller_uid(bus, m, &uid, ret_error);
        if (r < 0)
                return r;
        r = authorize(bus, m, uid, AUTH_SCOPE_OTHER, method_host, ret_error);
        if (r <= 0)
                return r < 0 ? r : 1; /* 0: runs again with polkit's answer */

        p = pending_new(bus, m);
        if (streq(sd_bus_message_get_member(m), "ReturnToHost"))
                ok = broker_return_to_host(bus->broker, pool, size, size_reply, p, &error);
        else
                ok = broker_reclaim_from_host(bus->broker, pool, size, size_reply, p, &error);
        if (!ok) {
                pending_free(p);
                return set_error(ret_error, error->code, "%s", error->message);
        }
        return 1;
}

static int method_open(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Bus *bus = userdata;
        g_autoptr(GError) error = NULL;
        _cleanup_close_ int fd = -1;
        Allocation *a;
        int r;

        r = allocation_call_begin(bus, m, method_open, &a, ret_error);
        if (r <= 0)
                return r < 0 ? r : 1; /* 0: runs again with polkit's answer */

        fd = broker_open(bus->broker, a, &error);
        if (fd < 0)
                return set_error(ret_error, error->code, "%s", error->message);
        return sd_bus_reply_method_return(m, "h", fd);
}

static int method_list_pools(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Bus *bus = userdata;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        GPtrArray *pools = broker_pools(bus->broker);
        bool addresses = may_see_addresses(bus, m, (uid_t) -1);
        int r;

        r = sd_bus_message_new_method_return(m, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "(osuitttttttttt)");
        if (r < 0)
                return r;
        for (guint i = 0; i < pools->len; i++) {
                Pool *p = pools->pdata[i];
                g_autofree char *path = pool_path(p);
                PoolUsage u;

                pool_usage(p, &u);
                r = sd_bus_message_append(reply, "(osuitttttttttt)", path, p->name, p->region_id, p->numa_node,
                                          addresses ? p->start : 0, p->size, p->align, p->boundary, u.free, u.allocated, u.host,
                                          u.dirty, u.foreign, u.largest_free);
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

/* Ranges are physical addresses: the empty array for whoever may not see
 * them. */
static int append_ranges(sd_bus_message *reply, const AllocationRecord *rec, bool addresses) {
        int r = sd_bus_message_open_container(reply, 'a', "(tt)");
        if (r < 0)
                return r;
        for (unsigned i = 0; addresses && i < rec->n_ranges; i++) {
                r = sd_bus_message_append(reply, "(tt)", rec->ranges[i].start, rec->ranges[i].size);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(reply);
}

static int method_list_allocations(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Bus *bus = userdata;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        g_autoptr(GPtrArray) all = broker_list_allocations(bus->broker);
        bool all_addresses = may_see_addresses(bus, m, (uid_t) -1);
        uid_t uid = (uid_t) -1;
        int r;

        (void) sender_uid(bus, m, &uid);
        r = sd_bus_message_new_method_return(m, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "(ossussttsbta(tt))");
        if (r < 0)
                return r;
        for (guint i = 0; i < all->len; i++) {
                Allocation *a = all->pdata[i];
                const AllocationRecord *rec = a->rec;
                g_autofree char *path = allocation_path(a);
                g_autofree char *dev = rec->device ? g_strdup_printf("/dev/%s", rec->device) : g_strdup("");

                r = sd_bus_message_open_container(reply, 'r', "ossussttsbta(tt)");
                if (r < 0)
                        return r;
                r = sd_bus_message_append(reply, "ossussttsbt", path, rec->id, rec->owner, (uint32_t) rec->owner_uid,
                                          rec->label, rec->pool, allocation_size(a), rec->align, dev,
                                          rec->transient, rec->created_usec);
                if (r < 0)
                        return r;
                r = append_ranges(reply, rec, all_addresses || rec->owner_uid == uid);
                if (r < 0)
                        return r;
                r = sd_bus_message_close_container(reply);
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

static int property_get_manager_size(sd_bus *b, const char *path, const char *interface, const char *property,
                                     sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Bus *bus = userdata;
        uint64_t total, v;
        PoolUsage u;

        broker_usage(bus->broker, &total, &u);
        if (streq(property, "TotalSize"))
                v = total;
        else if (streq(property, "AllocatedSize"))
                v = u.allocated;
        else if (streq(property, "FreeSize"))
                v = u.free;
        else
                v = u.host;
        return sd_bus_message_append(reply, "t", v);
}

static int property_get_version(sd_bus *b, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        return sd_bus_message_append(reply, "s", PACKAGE_VERSION);
}

/* Every changing method goes through here (also when polkit's answer
 * runs it again), so each refusal is counted and logged in one place. */
static const struct {
        const char *member;
        sd_bus_message_handler_t handler;
} manager_methods[] = {
        { "Allocate", method_allocate },
        { "Release", method_release },
        { "ReleaseOwner", method_release_owner },
        { "Open", method_open },
        { "ReturnToHost", method_host },
        { "ReclaimFromHost", method_host },
};

static int method_dispatch(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        const char *member = sd_bus_message_get_member(m);
        int r = -EBADR;

        for (size_t i = 0; i < G_N_ELEMENTS(manager_methods); i++)
                if (member && streq(member, manager_methods[i].member)) {
                        r = manager_methods[i].handler(m, userdata, ret_error);
                        break;
                }
        if (sd_bus_error_is_set(ret_error))
                note_refusal(userdata, m, ret_error->name, ret_error->message);
        else if (r < 0) {
                _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;

                sd_bus_error_set_errno(&e, r);
                note_refusal(userdata, m, e.name, e.message);
        }
        return r;
}

/* What a refused call named, read again from its arguments: owner, size
 * and pool of an Allocate, the allocation of a Release or Open, ... */
static void note_refusal(Bus *bus, sd_bus_message *m, const char *error_name, const char *message) {
        const char *member = sd_bus_message_get_member(m);
        EventRefusal ev = { .method = member ? member : "?", .error_name = error_name, .message = message,
                            .uid = (uid_t) -1 };
        const char *s = NULL;
        uint64_t t = 0;

        (void) sender_uid(bus, m, &ev.uid);
        if (sd_bus_message_rewind(m, true) < 0)
                goto send;
        if (streq(ev.method, "Allocate")) {
                if (sd_bus_message_read(m, "st", &ev.owner, &ev.size) < 0 ||
                    sd_bus_message_enter_container(m, 'a', "{sv}") < 0)
                        goto send;
                while (sd_bus_message_enter_container(m, 'e', "sv") > 0) {
                        const char *key;

                        if (sd_bus_message_read(m, "s", &key) < 0)
                                break;
                        if (streq(key, "pool") && sd_bus_message_read(m, "v", "s", &ev.pool) < 0)
                                break;
                        if (!streq(key, "pool") && sd_bus_message_skip(m, "v") < 0)
                                break;
                        if (sd_bus_message_exit_container(m) < 0)
                                break;
                }
        } else if (streq(ev.method, "ReleaseOwner")) {
                (void) sd_bus_message_read(m, "s", &ev.owner);
        } else if (streq(ev.method, "Release") || streq(ev.method, "Open")) {
                if (sd_bus_message_read(m, "o", &s) >= 0 && g_str_has_prefix(s, BUS_ALLOCATION_PREFIX "/")) {
                        Allocation *a = broker_find_allocation(bus->broker, s + strlen(BUS_ALLOCATION_PREFIX "/"));

                        ev.allocation = a ? a->rec->id : NULL;
                        ev.owner = a ? a->rec->owner : NULL;
                }
        } else if (sd_bus_message_read(m, "st", &ev.pool, &t) >= 0)
                ev.size = t;
send:
        events_refused(&ev);
}

static const sd_bus_vtable manager_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Version", "s", property_get_version, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("TotalSize", "t", property_get_manager_size, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("AllocatedSize", "t", property_get_manager_size, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("FreeSize", "t", property_get_manager_size, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("HostSize", "t", property_get_manager_size, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_METHOD_WITH_ARGS("Allocate", SD_BUS_ARGS("s", owner, "t", size, "a{sv}", options),
                                SD_BUS_RESULT("o", allocation, "h", fd), method_dispatch, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Release", SD_BUS_ARGS("o", allocation), SD_BUS_NO_RESULT, method_dispatch,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ReleaseOwner", SD_BUS_ARGS("s", owner), SD_BUS_RESULT("u", count),
                                method_dispatch, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Open", SD_BUS_ARGS("o", allocation), SD_BUS_RESULT("h", fd), method_dispatch,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ReturnToHost", SD_BUS_ARGS("s", pool, "t", size), SD_BUS_RESULT("t", returned),
                                method_dispatch, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ReclaimFromHost", SD_BUS_ARGS("s", pool, "t", size),
                                SD_BUS_RESULT("t", reclaimed), method_dispatch, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ListPools", SD_BUS_NO_ARGS, SD_BUS_RESULT("a(osuitttttttttt)", pools),
                                method_list_pools, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ListAllocations", SD_BUS_NO_ARGS,
                                SD_BUS_RESULT("a(ossussttsbta(tt))", allocations), method_list_allocations,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_ARGS("AllocationNew", SD_BUS_ARGS("s", id, "o", path), 0),
        SD_BUS_SIGNAL_WITH_ARGS("AllocationRemoved", SD_BUS_ARGS("s", id, "o", path), 0),
        SD_BUS_VTABLE_END,
};

/* ---- Pool objects ---- */

static int pool_find(sd_bus *b, const char *path, const char *interface, void *userdata, void **found,
                     sd_bus_error *ret_error) {
        Bus *bus = userdata;
        g_autofree char *name = NULL;
        Pool *p;

        if (sd_bus_path_decode(path, BUS_POOL_PREFIX, &name) <= 0)
                return 0;
        p = broker_find_pool(bus->broker, name);
        if (!p)
                return 0;
        *found = p;
        return 1;
}

static int pool_enumerate(sd_bus *b, const char *path, void *userdata, char ***ret_nodes,
                          sd_bus_error *ret_error) {
        Bus *bus = userdata;
        GPtrArray *pools = broker_pools(bus->broker);
        char **l = g_new0(char *, pools->len + 1);

        for (guint i = 0; i < pools->len; i++)
                l[i] = pool_path(pools->pdata[i]);
        /* sd-bus frees the strv with free(); glib's allocator is malloc. */
        *ret_nodes = l;
        return 0;
}

/* What each part of a pool is used for, as the five uses the pool's sizes
 * count: pending extents (allocations being made, memory on its way to or
 * from the host) are counted as allocated, as in AllocatedSize. */
static const char *extent_use(const Pool *p, const Extent *e) {
        /* Warm devices nobody holds are free memory to callers. */
        if ((e->kind == EXTENT_ALLOCATED || e->kind == EXTENT_PENDING) && warm_holds(p, e->tag))
                return "warm";
        switch (e->kind) {
        case EXTENT_FREE:
                return "free";
        case EXTENT_HOST:
                return "host";
        case EXTENT_DIRTY:
                return "dirty";
        case EXTENT_FOREIGN:
                return "foreign";
        default:
                return "allocated";
        }
}

/* Extents: (offset from the pool's start, size, use), neighbours of the
 * same use merged. Offsets are not physical addresses, so everyone may
 * read them; who may see Start can add it. Merging keeps the boundaries
 * between one tenant's memory and the next out of it. */
static int append_extents(sd_bus_message *reply, const Pool *p) {
        const char *use = NULL;
        uint64_t start = 0, size = 0;
        int r;

        r = sd_bus_message_open_container(reply, 'a', "(tts)");
        if (r < 0)
                return r;
        for (size_t i = 0; i < extent_map_count(p->map); i++) {
                const Extent *e = extent_map_get(p->map, i);
                const char *u = extent_use(p, e);

                if (use && streq(use, u)) {
                        size += e->size;
                        continue;
                }
                if (use) {
                        r = sd_bus_message_append(reply, "(tts)", start, size, use);
                        if (r < 0)
                                return r;
                }
                use = u;
                start = e->start - extent_map_start(p->map);
                size = e->size;
        }
        if (use) {
                r = sd_bus_message_append(reply, "(tts)", start, size, use);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(reply);
}

/* -1 stands for what the kernel does not publish: 0 would read as a
 * measured value. */
static int64_t perf_value(uint64_t v) {
        return v == NODE_PERF_UNKNOWN || v > INT64_MAX ? -1 : (int64_t) v;
}

static int append_access(sd_bus_message *reply, const Pool *p) {
        int r = sd_bus_message_open_container(reply, 'a', "(uxxxx)");

        for (unsigned c = 0; r >= 0 && c < NODE_PERF_ACCESS_CLASSES; c++) {
                const NodeAccess *a = &p->perf.access[c];

                if (a->present)
                        r = sd_bus_message_append(reply, "(uxxxx)", c, perf_value(a->read_bandwidth),
                                                  perf_value(a->write_bandwidth), perf_value(a->read_latency),
                                                  perf_value(a->write_latency));
        }
        return r < 0 ? r : sd_bus_message_close_container(reply);
}

static int append_caches(sd_bus_message *reply, const Pool *p) {
        int r = sd_bus_message_open_container(reply, 'a', "(uxxss)");

        for (unsigned c = 0; r >= 0 && c < p->perf.n_caches; c++) {
                const NodeCache *nc = &p->perf.caches[c];

                r = sd_bus_message_append(reply, "(uxxss)", nc->level, perf_value(nc->size), perf_value(nc->line_size),
                                          node_cache_indexing_to_string(nc->indexing),
                                          node_cache_write_policy_to_string(nc->write_policy));
        }
        return r < 0 ? r : sd_bus_message_close_container(reply);
}

/* Colours held alone by cache-isolated owners, in colour order. */
static int append_isolated_colors(sd_bus_message *reply, Bus *bus, const Pool *p) {
        g_autoptr(GPtrArray) all = broker_list_allocations(bus->broker);
        const char *holder[CACHE_COLORS_MAX] = {};
        int r;

        for (guint i = 0; cache_colors_enabled(&p->colors) && i < all->len; i++) {
                const Allocation *a = all->pdata[i];
                ColorMask m;

                if (a->pool != p || !a->rec->cache_isolation)
                        continue;
                m = a->rec->colors | cache_colors_of_ranges(&p->colors, a->rec->ranges, a->rec->n_ranges);
                for (unsigned k = 0; k < CACHE_COLORS_MAX; k++)
                        if (m & ((ColorMask) 1 << k))
                                holder[k] = a->rec->owner;
        }
        r = sd_bus_message_open_container(reply, 'a', "(us)");
        for (unsigned k = 0; r >= 0 && k < CACHE_COLORS_MAX; k++)
                if (holder[k])
                        r = sd_bus_message_append(reply, "(us)", k, holder[k]);
        return r < 0 ? r : sd_bus_message_close_container(reply);
}

static int property_get_pool(sd_bus *b, const char *path, const char *interface, const char *property,
                             sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Pool *p = userdata;
        PoolUsage u;

        if (streq(property, "Access"))
                return append_access(reply, p);
        if (streq(property, "MemorySideCaches"))
                return append_caches(reply, p);
        if (streq(property, "Tier"))
                return sd_bus_message_append(reply, "s", p->tier ?: "");
        if (streq(property, "Colors"))
                return sd_bus_message_append(reply, "u", p->colors.n);
        if (streq(property, "ColorSize"))
                return sd_bus_message_append(reply, "t", p->colors.slice);
        if (streq(property, "CacheSize"))
                return sd_bus_message_append(reply, "t", p->colors.cache_size);
        if (streq(property, "ColorsMessage"))
                return sd_bus_message_append(reply, "s", p->colors_off ?: "");
        if (streq(property, "IsolatedColors"))
                return append_isolated_colors(reply, the_bus, p);

        if (streq(property, "Name"))
                return sd_bus_message_append(reply, "s", p->name);
        if (streq(property, "RegionId"))
                return sd_bus_message_append(reply, "u", p->region_id);
        if (streq(property, "NumaNode"))
                return sd_bus_message_append(reply, "i", p->numa_node);
        if (streq(property, "Extents"))
                return append_extents(reply, p);

        if (streq(property, "ZeroingStuck")) {
                bool see = may_see_addresses(the_bus, sd_bus_get_current_message(b), (uid_t) -1);
                int r = sd_bus_message_open_container(reply, 'a', "(tttus)");

                for (guint i = 0; r >= 0 && p->scrub_stuck && i < p->scrub_stuck->len; i++) {
                        const ScrubStuck *x = &g_array_index(p->scrub_stuck, ScrubStuck, i);
                        r = sd_bus_message_append(reply, "(tttus)", see ? x->start : 0, x->size, x->since_usec,
                                                  x->failures, x->error);
                }
                return r < 0 ? r : sd_bus_message_close_container(reply);
        }

        pool_usage(p, &u);
        static const struct {
                const char *name;
                size_t offset;
        } sizes[] = {
                { "FreeSize", offsetof(PoolUsage, free) },
                { "AllocatedSize", offsetof(PoolUsage, allocated) },
                { "HostSize", offsetof(PoolUsage, host) },
                { "DirtySize", offsetof(PoolUsage, dirty) },
                { "ForeignSize", offsetof(PoolUsage, foreign) },
                { "WarmSize", offsetof(PoolUsage, warm) },
                { "LargestFreeExtent", offsetof(PoolUsage, largest_free) },
        };
        for (size_t i = 0; i < G_N_ELEMENTS(sizes); i++)
                if (streq(property, sizes[i].name))
                        return sd_bus_message_append(reply, "t", *(uint64_t *) ((char *) &u + sizes[i].offset));

        if (streq(property, "Start"))
                return sd_bus_message_append(
                        reply, "t", may_see_addresses(the_bus, sd_bus_get_current_message(b), (uid_t) -1) ? p->start : 0);
        uint64_t v = streq(property, "Size") ? p->size
                     : streq(property, "Align") ? p->align
                                                : p->boundary;
        return sd_bus_message_append(reply, "t", v);
}

#define POOL_PROP(name, sig, flags) SD_BUS_PROPERTY(name, sig, property_get_pool, 0, flags)
static const sd_bus_vtable pool_vtable[] = {
        SD_BUS_VTABLE_START(0),
        POOL_PROP("Name", "s", SD_BUS_VTABLE_PROPERTY_CONST),
        POOL_PROP("RegionId", "u", SD_BUS_VTABLE_PROPERTY_CONST),
        POOL_PROP("NumaNode", "i", SD_BUS_VTABLE_PROPERTY_CONST),
        POOL_PROP("Start", "t", SD_BUS_VTABLE_PROPERTY_CONST),
        POOL_PROP("Size", "t", SD_BUS_VTABLE_PROPERTY_CONST),
        POOL_PROP("Align", "t", SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        POOL_PROP("Boundary", "t", SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        POOL_PROP("FreeSize", "t", SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        POOL_PROP("AllocatedSize", "t", SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        POOL_PROP("HostSize", "t", SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        POOL_PROP("DirtySize", "t", SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        POOL_PROP("ForeignSize", "t", SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        POOL_PROP("WarmSize", "t", SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        POOL_PROP("LargestFreeExtent", "t", SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        POOL_PROP("ZeroingStuck", "a(tttus)", SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        /* Invalidation only: a fragmented pool's list is long. */
        POOL_PROP("Extents", "a(tts)", SD_BUS_VTABLE_PROPERTY_EMITS_INVALIDATION),
        POOL_PROP("Access", "a(uxxxx)", SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        POOL_PROP("MemorySideCaches", "a(uxxss)", SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        POOL_PROP("Tier", "s", SD_BUS_VTABLE_PROPERTY_CONST),
        POOL_PROP("Colors", "u", SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        POOL_PROP("ColorSize", "t", SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        POOL_PROP("CacheSize", "t", SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        POOL_PROP("ColorsMessage", "s", SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        POOL_PROP("IsolatedColors", "a(us)", SD_BUS_VTABLE_PROPERTY_EMITS_INVALIDATION),
        SD_BUS_VTABLE_END,
};

/* ---- Allocation objects ---- */

static int allocation_find(sd_bus *b, const char *path, const char *interface, void *userdata, void **found,
                           sd_bus_error *ret_error) {
        Bus *bus = userdata;
        Allocation *a;

        if (!g_str_has_prefix(path, BUS_ALLOCATION_PREFIX "/"))
                return 0;
        a = broker_find_allocation(bus->broker, path + strlen(BUS_ALLOCATION_PREFIX "/"));
        if (!a)
                return 0;
        *found = a;
        return 1;
}

static int allocation_enumerate(sd_bus *b, const char *path, void *userdata, char ***ret_nodes,
                                sd_bus_error *ret_error) {
        Bus *bus = userdata;
        g_autoptr(GPtrArray) all = broker_list_allocations(bus->broker);
        char **l = g_new0(char *, all->len + 1);

        for (guint i = 0; i < all->len; i++)
                l[i] = allocation_path(all->pdata[i]);
        *ret_nodes = l;
        return 0;
}

static int property_get_allocation(sd_bus *b, const char *path, const char *interface, const char *property,
                                   sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Allocation *a = userdata;
        const AllocationRecord *rec = a->rec;

        if (streq(property, "Id"))
                return sd_bus_message_append(reply, "s", rec->id);
        if (streq(property, "Owner"))
                return sd_bus_message_append(reply, "s", rec->owner);
        if (streq(property, "OwnerUID"))
                return sd_bus_message_append(reply, "u", (uint32_t) rec->owner_uid);
        if (streq(property, "Label"))
                return sd_bus_message_append(reply, "s", rec->label);
        if (streq(property, "Pool")) {
                g_autofree char *pp = pool_path(a->pool);
                return sd_bus_message_append(reply, "o", pp);
        }
        if (streq(property, "Size"))
                return sd_bus_message_append(reply, "t", allocation_size(a));
        if (streq(property, "Align"))
                return sd_bus_message_append(reply, "t", rec->align);
        if (streq(property, "Device")) {
                g_autofree char *dev = rec->device ? g_strdup_printf("/dev/%s", rec->device) : g_strdup("");
                return sd_bus_message_append(reply, "s", dev);
        }
        if (streq(property, "Ranges"))
                return append_ranges(reply, rec,
                                     may_see_addresses(the_bus, sd_bus_get_current_message(b), rec->owner_uid));
        if (streq(property, "NumaNode"))
                return sd_bus_message_append(reply, "i", a->pool->numa_node);
        if (streq(property, "Transient"))
                return sd_bus_message_append(reply, "b", (int) rec->transient);
        if (streq(property, "State"))
                return sd_bus_message_append(reply, "s", allocation_state_name(a));
        if (streq(property, "StateMessage"))
                return sd_bus_message_append(reply, "s", a->restore_message ? a->restore_message : "");
        if (streq(property, "CacheIsolation"))
                return sd_bus_message_append(reply, "b", (int) rec->cache_isolation);
        if (streq(property, "Colors")) {
                int r = sd_bus_message_open_container(reply, 'a', "u");

                for (unsigned k = 0; r >= 0 && k < CACHE_COLORS_MAX; k++)
                        if (rec->colors & ((ColorMask) 1 << k))
                                r = sd_bus_message_append(reply, "u", k);
                return r < 0 ? r : sd_bus_message_close_container(reply);
        }
        return sd_bus_message_append(reply, "t", rec->created_usec);
}

#define ALLOC_PROP(name, sig, flags) SD_BUS_PROPERTY(name, sig, property_get_allocation, 0, flags)
static const sd_bus_vtable allocation_vtable[] = {
        SD_BUS_VTABLE_START(0),
        ALLOC_PROP("Id", "s", SD_BUS_VTABLE_PROPERTY_CONST),
        ALLOC_PROP("Owner", "s", SD_BUS_VTABLE_PROPERTY_CONST),
        ALLOC_PROP("OwnerUID", "u", SD_BUS_VTABLE_PROPERTY_CONST),
        ALLOC_PROP("Label", "s", SD_BUS_VTABLE_PROPERTY_CONST),
        ALLOC_PROP("Pool", "o", SD_BUS_VTABLE_PROPERTY_CONST),
        ALLOC_PROP("Size", "t", SD_BUS_VTABLE_PROPERTY_CONST),
        ALLOC_PROP("Align", "t", SD_BUS_VTABLE_PROPERTY_CONST),
        ALLOC_PROP("Device", "s", SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        ALLOC_PROP("Ranges", "a(tt)", SD_BUS_VTABLE_PROPERTY_CONST),
        ALLOC_PROP("NumaNode", "i", SD_BUS_VTABLE_PROPERTY_CONST),
        ALLOC_PROP("Transient", "b", SD_BUS_VTABLE_PROPERTY_CONST),
        ALLOC_PROP("CreatedUSec", "t", SD_BUS_VTABLE_PROPERTY_CONST),
        ALLOC_PROP("State", "s", SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        ALLOC_PROP("StateMessage", "s", SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        ALLOC_PROP("CacheIsolation", "b", SD_BUS_VTABLE_PROPERTY_CONST),
        ALLOC_PROP("Colors", "au", SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_VTABLE_END,
};

/* ---- broker events ---- */

static void client_track(Bus *bus, const Allocation *a, int delta);

static void on_allocation_added(Allocation *a, void *userdata) {
        Bus *bus = userdata;
        g_autofree char *path = allocation_path(a);

        client_track(bus, a, +1);
        bus->broadcasting = true;
        (void) sd_bus_emit_object_added(bus->bus, path);
        bus->broadcasting = false;
        (void) sd_bus_emit_signal(bus->bus, BUS_PATH, BUS_MANAGER_IFACE, "AllocationNew", "so", a->rec->id, path);
}

static void on_allocation_removed(Allocation *a, void *userdata) {
        Bus *bus = userdata;
        g_autofree char *path = allocation_path(a);

        client_track(bus, a, -1);
        (void) sd_bus_emit_object_removed(bus->bus, path);
        (void) sd_bus_emit_signal(bus->bus, BUS_PATH, BUS_MANAGER_IFACE, "AllocationRemoved", "so", a->rec->id,
                                  path);
}

static void emit_sizes(Bus *bus, const char *path) {
        bus->broadcasting = true;
        (void) sd_bus_emit_properties_changed(bus->bus, path, BUS_POOL_IFACE, "FreeSize", "AllocatedSize",
                                              "HostSize", "DirtySize", "ForeignSize", "WarmSize", "LargestFreeExtent",
                                              "Align", "Boundary", "ZeroingStuck", "Extents", "IsolatedColors", NULL);
        bus->broadcasting = false;
}

static int on_sizes_idle(sd_event_source *s, void *userdata) {
        Bus *bus = userdata;
        GHashTableIter it;
        void *path;

        if (g_hash_table_size(bus->sizes_changed) == 0)
                return 0;
        (void) sd_bus_emit_properties_changed(bus->bus, BUS_PATH, BUS_MANAGER_IFACE, "AllocatedSize", "FreeSize",
                                              "HostSize", NULL);
        g_hash_table_iter_init(&it, bus->sizes_changed);
        while (g_hash_table_iter_next(&it, &path, NULL))
                emit_sizes(bus, path);
        g_hash_table_remove_all(bus->sizes_changed);
        return 0;
}

/* Every Allocate and Release changes the sizes. Building and sending the
 * two PropertiesChanged costs more than a warm hand-over itself, and a
 * burst of calls would pay it once per call, each time before the next
 * call is read: they go out once the calls queued on the bus are answered
 * (idle priority), once per pool, with the values of that moment. */
static void on_sizes_changed(Pool *p, void *userdata) {
        Bus *bus = userdata;
        char *path = pool_path(p);

        metrics_gauges_changed();
        if (!path)
                return;
        if (!bus->sizes_source && bus->event &&
            (sd_event_add_defer(bus->event, &bus->sizes_source, on_sizes_idle, bus) < 0 ||
             sd_event_source_set_priority(bus->sizes_source, SD_EVENT_PRIORITY_IDLE) < 0))
                bus->sizes_source = sd_event_source_disable_unref(bus->sizes_source);
        g_hash_table_add(bus->sizes_changed, path);
        if (!bus->sizes_source || sd_event_source_set_enabled(bus->sizes_source, SD_EVENT_ONESHOT) < 0)
                (void) on_sizes_idle(NULL, bus);
}

static void on_perf_changed(Pool *p, void *userdata) {
        Bus *bus = userdata;
        g_autofree char *path = pool_path(p);

        (void) sd_bus_emit_properties_changed(bus->bus, path, BUS_POOL_IFACE, "Access", "MemorySideCaches", "Colors",
                                              "ColorSize", "CacheSize", "ColorsMessage", NULL);
}

static int on_name_owner_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Bus *bus = userdata;
        const char *name, *old_owner, *new_owner;

        if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) < 0)
                return 0;
        if (name[0] == ':' && new_owner[0] == 0) {
                g_hash_table_remove(bus->uids, name);
                g_hash_table_remove(bus->trusted, name);
                auth_client_vanished(bus->auth, name);
                if (g_hash_table_contains(bus->clients, name))
                        broker_client_vanished(bus->broker, name);
        }
        return 0;
}

static void client_track(Bus *bus, const Allocation *a, int delta) {
        const char *c = a->rec->client;
        unsigned n;

        if (!a->rec->transient || !c)
                return;
        n = GPOINTER_TO_UINT(g_hash_table_lookup(bus->clients, c));
        /* A failed commit removes an allocation that was never added. */
        if (delta < 0 && n == 0)
                return;
        n += (unsigned) delta;
        if (n == 0)
                g_hash_table_remove(bus->clients, c);
        else
                g_hash_table_replace(bus->clients, g_strdup(c), GUINT_TO_POINTER(n));
}

/* Transient allocations that survived a daemon restart belong to clients
 * that may have left while we were gone. */
static void check_transient_clients(Bus *bus) {
        g_autoptr(GPtrArray) all = broker_list_allocations(bus->broker);

        for (guint i = 0; i < all->len; i++) {
                Allocation *a = all->pdata[i];
                client_track(bus, a, +1);
                if (a->rec->transient && a->rec->client)
                        check_client_alive(bus, a->rec->client);
        }
}

static void on_allocation_changed(Allocation *a, void *userdata) {
        Bus *bus = userdata;
        g_autofree char *path = allocation_path(a);

        (void) sd_bus_emit_properties_changed(bus->bus, path, BUS_ALLOCATION_IFACE, "Device", "State", "StateMessage",
                                              NULL);
}

static const BrokerListener bus_listener = {
        .allocation_added = on_allocation_added,
        .allocation_changed = on_allocation_changed,
        .allocation_removed = on_allocation_removed,
        .sizes_changed = on_sizes_changed,
        .perf_changed = on_perf_changed,
};

int bus_new(sd_event *event, Broker *broker, const char *address, Bus **ret) {
        Bus *bus = g_new0(Bus, 1);
        int r;

        bus->broker = broker;
        bus->uids = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        bus->trusted = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        bus->clients = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        bus->sizes_changed = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        bus->event = event;
        if (address) {
                r = sd_bus_new(&bus->bus);
                if (r >= 0)
                        r = sd_bus_set_address(bus->bus, address);
                if (r >= 0)
                        r = sd_bus_set_bus_client(bus->bus, 1);
                if (r >= 0)
                        r = sd_bus_start(bus->bus);
        } else
                r = sd_bus_open_system(&bus->bus);
        if (r < 0) {
                log_error("Cannot connect to the %s bus: %s", address ? address : "system", strerror(-r));
                goto fail;
        }
        r = auth_new(bus->bus, &bus->auth);
        if (r < 0)
                goto fail;

        if ((r = sd_bus_add_object_vtable(bus->bus, NULL, BUS_PATH, BUS_MANAGER_IFACE, manager_vtable, bus)) < 0 ||
            (r = sd_bus_add_fallback_vtable(bus->bus, NULL, BUS_POOL_PREFIX, BUS_POOL_IFACE, pool_vtable, pool_find,
                                            bus)) < 0 ||
            (r = sd_bus_add_node_enumerator(bus->bus, NULL, BUS_POOL_PREFIX, pool_enumerate, bus)) < 0 ||
            (r = sd_bus_add_fallback_vtable(bus->bus, NULL, BUS_ALLOCATION_PREFIX, BUS_ALLOCATION_IFACE,
                                            allocation_vtable, allocation_find, bus)) < 0 ||
            (r = sd_bus_add_node_enumerator(bus->bus, NULL, BUS_ALLOCATION_PREFIX, allocation_enumerate, bus)) < 0 ||
            (r = sd_bus_add_object_manager(bus->bus, NULL, BUS_PATH)) < 0) {
                log_error("Cannot export objects: %s", strerror(-r));
                goto fail;
        }
        /* Only names that were lost (new owner empty): a bus client that
         * connects or takes a name costs the daemon nothing. */
        r = sd_bus_add_match(bus->bus, &bus->name_owner_slot,
                             "type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',"
                             "interface='org.freedesktop.DBus',member='NameOwnerChanged',arg2=''",
                             on_name_owner_changed, bus);
        if (r < 0) {
                log_error("Cannot watch bus clients: %s", strerror(-r));
                goto fail;
        }
        r = sd_bus_attach_event(bus->bus, event, 0);
        if (r < 0)
                goto fail;
        r = sd_bus_request_name(bus->bus, BUS_NAME, 0);
        if (r < 0) {
                log_error("Cannot own %s (is the bus policy installed, and is another daxbrokerd running?): %s",
                          BUS_NAME, strerror(-r));
                goto fail;
        }
        the_bus = bus;
        broker_set_listener(broker, &bus_listener, bus);
        check_transient_clients(bus);
        *ret = bus;
        return 0;

fail:
        bus_free(bus);
        return r;
}

void bus_free(Bus *bus) {
        if (!bus)
                return;
        /* Work finishing after this must not call into a freed bus. */
        broker_set_listener(bus->broker, &(BrokerListener) {}, NULL);
        auth_free(bus->auth);
        sd_bus_slot_unref(bus->name_owner_slot);
        sd_event_source_disable_unref(bus->sizes_source);
        if (bus->bus)
                sd_bus_flush_close_unref(bus->bus);
        g_hash_table_destroy(bus->uids);
        g_hash_table_destroy(bus->trusted);
        g_hash_table_destroy(bus->clients);
        g_hash_table_destroy(bus->sizes_changed);
        if (the_bus == bus)
                the_bus = NULL;
        g_free(bus);
}
