/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * config: daxbroker.conf and its drop-ins (GKeyFile). Reads
 * /etc/daxbroker/daxbroker.conf, then every /etc/daxbroker/daxbroker.conf.d/
 * *.conf in lexical order (later files override earlier keys). A missing
 * main file is the embedded default: manage every soft-reserved region with
 * 2 MiB alignment. Any unknown section or key, or a malformed value, is an
 * error naming the file, section and key; nothing is half-applied.
 */

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

#define CONFIG_POOL_NAME_MAX 64
#define SCRUB_THREADS_LIMIT 64
#define WARM_SIZES_MAX 8

typedef struct PoolConfig {
        char *name;            /* [Pool NAME] */
        bool match_region;     /* Region= given */
        unsigned region_id;
        bool match_start;      /* Start= given */
        uint64_t start;
        uint64_t boundary;     /* Boundary=, 0 = none */
        uint64_t align;        /* Align=, default allocation align */
        bool manage;           /* Manage=, default yes */
        bool host_return;      /* HostReturn=, default no */
        uint64_t host_chunk;   /* HostChunk=, 0 = 1 GiB or the memory block size if larger */
        uint64_t reserve;      /* Reserve=, clean free space kept for VMs */
        uint64_t host_delay_usec; /* HostReturnDelay=, idle time before returning */
        char *tier;            /* Tier=, NULL = none */
        unsigned colors;       /* Colors=, 0 = no cache colours */
        uint64_t warm_budget;  /* WarmBudget=, bytes of warm devices kept; 0 = none */
        /* WarmSizes=: the sizes kept warm; none = learned from requests */
        uint64_t warm_sizes[WARM_SIZES_MAX];
        unsigned n_warm_sizes;
} PoolConfig;

/* WarmBudget= of a pool that does not set it: small, and on. */
#define DEFAULT_WARM_BUDGET (256ULL << 20)

#define DEFAULT_HOST_DELAY_USEC (30 * 1000 * 1000ULL)
/* Below the 25 s default D-Bus method timeout, so that a caller hears
 * TimedOut instead of giving up on a request that then succeeds. */
#define DEFAULT_ALLOCATE_TIMEOUT_USEC (20 * 1000 * 1000ULL)
#define ALLOCATE_TIMEOUT_MAX_USEC (3600 * 1000 * 1000ULL)

typedef struct Config {
        bool manage_unlisted;     /* [Broker] ManageUnlisted= */
        uint64_t default_align;   /* [Broker] DefaultAlign=, 2 MiB */
        unsigned max_ranges;      /* [Broker] MaxRanges=, split placement cap */
        unsigned max_allocations_per_owner; /* [Broker] MaxAllocationsPerOwner= */
        /* [Broker] MaxAllocationsPerUid=: allocations one uid (root
         * excepted) may hold in all its owners together */
        unsigned max_allocations_per_uid;
        unsigned scrub_threads;   /* [Broker] ScrubThreads=, 0 = all CPUs */
        uint64_t allocate_timeout_usec; /* [Broker] AllocateTimeout=, 20 s */
        char *libvirt_uri;        /* [Broker] LibvirtURI=, NULL = no libvirt watcher */
        bool libvirt_report_only; /* [Broker] LibvirtOrphans=report */
        /* [Broker] HostZeroesOnAlloc=: -1 auto (ask the kernel), 0 no, 1 yes */
        int host_zeroes_on_alloc;
        bool journal_ranges;      /* [Broker] JournalRanges=, physical ranges in journal entries */
        PoolConfig *pools;
        size_t n_pools;
} Config;

/* path: main file, or NULL for /etc/daxbroker/daxbroker.conf. The drop-in
 * directory is "<path>.d". */
Config *config_load(const char *path, GError **error);
/* Parses one in-memory file; for tests and fuzzing. */
Config *config_load_data(const char *data, gsize len, GError **error);
Config *config_new_default(void);
void config_free(Config *c);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Config, config_free)

/* Tier names: 1 to 64 of A-Za-z0-9_-. NULL if valid, else why not. */
const char *tier_invalid_reason(const char *s);

/* Finds the pool configured for a region, or NULL. */
const PoolConfig *config_find_pool(const Config *c, unsigned region_id, uint64_t region_start);

/* "2M", "512M", "1G", "4096", "0x200000" -> bytes. -EINVAL on junk or overflow. */
int parse_size(const char *s, uint64_t *ret);
/* "30", "30s", "500ms", "2min", "1h" -> microseconds (a bare number is
 * seconds, as in systemd). -EINVAL on junk or overflow. */
int parse_timespan(const char *s, uint64_t *ret_usec);
