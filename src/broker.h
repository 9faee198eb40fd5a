/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * broker: the transactions. It owns the pools (one per managed dax region,
 * each with its extent map) and the allocations, and is the only code that
 * changes them: allocate, release, open, and the start-up reconciliation of
 * the stored state with what the kernel really has. Kernel work runs on the
 * worker; results come back to the event loop, where state is committed to
 * the store before anyone is told. Everything here runs on the event loop
 * thread.
 */

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <systemd/sd-event.h>

#include "cache-color.h"
#include "config.h"
#include "dax-backend.h"
#include "extent-map.h"
#include "scrub.h"
#include "store.h"
#include "worker.h"

/* Errors the caller must react to; the bus layer maps each 1:1 to
 * org.daxbroker.Broker1.Error.<Name>. */
typedef enum BrokerError {
        BROKER_ERROR_NO_SPACE,
        BROKER_ERROR_NO_SUCH_POOL,
        BROKER_ERROR_NO_SUCH_ALLOCATION,
        BROKER_ERROR_INVALID_ARGUMENT,
        BROKER_ERROR_ACCESS_DENIED,
        BROKER_ERROR_BUSY,
        BROKER_ERROR_KERNEL_FAILURE,
        BROKER_ERROR_TIMED_OUT,
} BrokerError;

#define BROKER_ERROR (broker_error_quark())
GQuark broker_error_quark(void);

#define OPTIONS_MAX 16
/* sd-bus's and libdbus's default method call timeout. */
#define DBUS_DEFAULT_TIMEOUT_USEC (25 * 1000 * 1000ULL)
#define ALLOCATION_ID_LEN 16

typedef struct Broker Broker;
typedef struct Allocation Allocation;

/* A chunk of dirt that could not be zeroed: it stays dirty (nobody gets
 * it unzeroed) and is retried later. */
typedef struct ScrubStuck {
        uint64_t start;
        uint64_t size;
        uint64_t since_usec; /* CLOCK_REALTIME of the first failure */
        uint64_t retry_usec; /* CLOCK_MONOTONIC of the next try */
        unsigned failures;   /* in a row */
        char *error;         /* the last failure */
} ScrubStuck;

typedef struct Pool {
        struct HostCtx *host; /* host return (host-return.h) */
        char *name;
        unsigned region_id;
        int numa_node;
        uint64_t start;
        uint64_t size;
        uint64_t align;    /* default allocation align */
        uint64_t boundary; /* 0 = none */
        ExtentMap *map;
        unsigned scrubs_in_flight;  /* zeroing jobs running on this pool */
        unsigned releases_in_flight; /* released allocations whose device is still being destroyed */
        bool bare_scrub_running;    /* a scrub device is zeroing bare dirt */
        /* Chunks of bare dirt whose zeroing keeps failing, each retried
         * with its own backoff while the rest is zeroed (scrub-sched.c). */
        GArray *scrub_stuck;        /* ScrubStuck */
        /* Host return (host-return.c); chunks are EXTENT_HOST tagged with
         * their HostChunk. */
        bool host_return;           /* HostReturn= */
        uint64_t host_chunk;        /* HostChunk= (resolved) */
        uint64_t reserve;           /* Reserve= */
        uint64_t host_delay_usec;   /* HostReturnDelay= */
        uint64_t block_size;        /* memory block size, 0: no hotplug */
        GPtrArray *chunks;          /* HostChunk* */
        unsigned host_jobs;         /* returns and reclaims in flight */
        unsigned host_failures;     /* consecutive failed returns */
        sd_event_source *host_timer;
        char *host_error;           /* why the last reclaim failed */
        GQueue *returns_waiting;    /* ReturnToHost calls waiting for zeroing */
        sd_event_source *returns_timer;
        NodePerf perf;              /* the kernel's HMAT for numa_node, read at start */
        char *tier;                 /* Tier=, NULL = none */
        unsigned colors_configured; /* Colors= */
        CacheColors colors;         /* disabled unless Colors= fits the node's cache */
        char *colors_off;           /* why Colors= is configured but not in effect */
        /* The warm set (warm.c): Allocation* with rec->warm, being made,
         * ready, or being given back. */
        GPtrArray *warm;
        uint64_t warm_budget;       /* WarmBudget= */
        uint64_t warm_sizes[WARM_SIZES_MAX]; /* WarmSizes= */
        unsigned n_warm_sizes;
        uint64_t warm_recent[WARM_SIZES_MAX]; /* learned: request sizes, latest first */
        unsigned n_warm_recent;
        unsigned warm_jobs;         /* fills and give-backs in flight */
        unsigned warm_returning;    /* give-backs in flight */
        unsigned warm_failures;     /* failed fills in a row */
        sd_event_source *warm_timer;
        struct Broker *warm_broker;
} Pool;

/* Whether a recorded allocation has its device. After a reboot its ranges
 * may be host RAM (kmem) or held by another device: it stays listed and
 * owns its ranges while the broker keeps trying. */
typedef enum AllocationRestore {
        ALLOCATION_RESTORED = 0, /* has its device (or is being created/released) */
        ALLOCATION_RESTORING,    /* waiting for its memory to come back from the host */
        ALLOCATION_RESTORE_FAILED, /* the kernel refused; retried with backoff */
} AllocationRestore;

struct Allocation {
        AllocationRecord *rec;
        Pool *pool;
        bool busy; /* a kernel operation on it is in flight */
        AllocationRestore restore;
        char *restore_message;       /* why it has no device yet */
        bool restore_zero;           /* its ranges held host data: zero before handing out */
};

/* "active", "creating", "releasing", "restoring" or "failed". */
const char *allocation_state_name(const Allocation *a);

typedef struct AllocateRequest {
        const char *owner;
        uid_t owner_uid;
        uint64_t size;
        const char *pool;   /* NULL = any */
        bool has_numa_node;
        int numa_node;
        uint64_t align;     /* 0 = pool default */
        bool contiguous;
        const char *label;  /* NULL = the id */
        bool transient;
        const char *client; /* bus name a transient allocation is tied to */
        /* Hand the device node to this uid/gid (for consumers that open by
         * path); only callers allowed to manage may ask. */
        bool has_device_owner;
        uid_t device_uid;
        gid_t device_gid;
        /* How long the caller waits (0: AllocateTimeout=). A request still
         * waiting for memory then fails with TimedOut, and one whose device
         * is made after it is taken down again: nobody holds it. */
        uint64_t timeout_usec;
        uint64_t deadline_usec; /* monotonic; set by broker_allocate */
        bool explicit_timeout;  /* timeout_usec came from the caller */
        /* A class of memory instead of (or besides) a node: 0 = not asked.
         * Bandwidths in MB/s and latencies in ns, as the kernel's HMAT. */
        uint64_t min_read_bandwidth;
        uint64_t min_write_bandwidth;
        uint64_t max_read_latency;
        uint64_t max_write_latency;
        const char *tier;   /* NULL = any */
        /* Cache colours: whole colours of its own for the owner, or the
         * given ones (bit k: colour k). */
        bool cache_isolation;
        ColorMask colors;   /* 0 = not asked */
} AllocateRequest;

/* Hooks for the layer above (the bus), called after state is committed. */
typedef struct BrokerListener {
        void (*allocation_added)(Allocation *a, void *userdata);
        void (*allocation_removed)(Allocation *a, void *userdata);
        void (*allocation_changed)(Allocation *a, void *userdata);
        void (*sizes_changed)(Pool *p, void *userdata);
        /* The pool's HMAT (and with it maybe its colours) became known. */
        void (*perf_changed)(Pool *p, void *userdata);
} BrokerListener;

typedef struct BrokerSettings {
        const char *state_dir;
        const char *runtime_dir; /* NULL: no stable paths */
} BrokerSettings;

int broker_new(sd_event *event, DaxBackend *backend, Config *config, const BrokerSettings *settings,
               Broker **ret, GError **error);
void broker_free(Broker *b);

void broker_set_listener(Broker *b, const BrokerListener *l, void *userdata);

/* Reconciles the stored state with the kernel; blocking, run before serving. */
int broker_start(Broker *b, GError **error);

/* Stops starting new background work (zeroing); work in flight finishes. */
void broker_stop(Broker *b);

/* Applies a new configuration (allocation defaults of existing pools). */
int broker_reload(Broker *b, Config *config, GError **error);

/* Completion callbacks get error == NULL on success. For allocate and open,
 * fd is owned by the callee: the callback must not close it, it is closed
 * after the callback returns. */
typedef void (*BrokerAllocateDone)(Allocation *a, int fd, const GError *error, void *userdata);
typedef void (*BrokerDone)(unsigned count, const GError *error, void *userdata);
typedef void (*BrokerSizeDone)(uint64_t size, const GError *error, void *userdata);

/* Validates at once (returns false with error set, nothing changed) or
 * queues the work and returns true; done runs later. */
bool broker_allocate(Broker *b, const AllocateRequest *req, BrokerAllocateDone done, void *userdata,
                     GError **error);
bool broker_release(Broker *b, Allocation *a, BrokerDone done, void *userdata, GError **error);
bool broker_release_owner(Broker *b, const char *owner, BrokerDone done, void *userdata,
                          GError **error);
/* Returns a new fd of the allocation's device, or -1 with error set. */
int broker_open(Broker *b, Allocation *a, GError **error);

/* Hands size bytes of clean free memory to the host now, in HostChunk=
 * chunks (size must be a multiple), whatever HostReturn= and Reserve= say;
 * done gets the bytes returned. */
bool broker_return_to_host(Broker *b, Pool *p, uint64_t size, BrokerSizeDone done, void *userdata,
                           GError **error);
/* Takes at least size bytes back from the host (whole chunks); done gets
 * the bytes reclaimed, or an error if fewer than size could be. */
bool broker_reclaim_from_host(Broker *b, Pool *p, uint64_t size, BrokerSizeDone done, void *userdata,
                              GError **error);

/* Releases the transient allocations tied to a bus client that is gone. */
void broker_client_vanished(Broker *b, const char *client);

Allocation *broker_find_allocation(Broker *b, const char *id);
Pool *broker_find_pool(Broker *b, const char *name);
/* Pointers stay valid until the next broker change. */
GPtrArray *broker_list_allocations(Broker *b); /* sorted by creation */
GPtrArray *broker_pools(Broker *b);
unsigned broker_pending(Broker *b);
void broker_drain(Broker *b);

typedef struct PoolUsage {
        uint64_t free;      /* held by no device: clean, or dirty and zeroed on use */
        uint64_t allocated; /* allocations and operations in progress */
        uint64_t host;
        uint64_t dirty;     /* still to be zeroed (part of free, or in a scrub device) */
        uint64_t foreign;
        uint64_t largest_free;
        uint64_t warm;      /* warm devices nobody holds yet (part of free) */
} PoolUsage;

void pool_usage(const Pool *p, PoolUsage *ret);
/* Sums over all pools. */
void broker_usage(Broker *b, uint64_t *ret_total, PoolUsage *ret);

uint64_t allocation_size(const Allocation *a);
