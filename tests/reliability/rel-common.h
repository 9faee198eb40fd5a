/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * rel-common: what the reliability tools (stress, bus fuzzer, invariant
 * check) share: reading the broker's pools and allocations over D-Bus,
 * reading the devices the kernel really has (the sim backend's layout file,
 * or /sys/bus/dax), and the invariant that ties them together.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <systemd/sd-bus.h>

#define REL_DEST "org.daxbroker.Broker1"
#define REL_PATH "/org/daxbroker/Broker1"
#define REL_MGR "org.daxbroker.Broker1.Manager"
#define REL_ERROR_PREFIX "org.daxbroker.Broker1.Error."
#define REL_MiB (UINT64_C(1) << 20)
#define REL_GiB (UINT64_C(1) << 30)
#define REL_RANGES_MAX 64

typedef struct RelRange {
        uint64_t start, size;
} RelRange;

typedef struct RelPool {
        char name[64];
        uint32_t region;
        int32_t node;
        uint64_t start, size, align, boundary, free, allocated, host, dirty, foreign, largest;
        uint64_t warm; /* the Pool's WarmSize: warm devices, part of free */
        char path[128];
} RelPool;

typedef struct RelAlloc {
        char path[256], id[80], owner[300], pool[64], device[64];
        uint64_t size;
        bool transient;
        unsigned n_ranges;
        RelRange ranges[REL_RANGES_MAX];
} RelAlloc;

typedef struct RelDevice {
        char name[32];
        unsigned region, instance;
        char driver[16]; /* none, device_dax, kmem, other */
        uint64_t size;
        unsigned n_ranges;
        RelRange ranges[REL_RANGES_MAX];
} RelDevice;

/* Where the kernel's devices are read from. */
typedef struct RelKernel {
        const char *sim_state; /* the sim backend's state= file, or NULL */
        bool sysfs;            /* /sys/bus/dax */
} RelKernel;

int rel_bus_open(const char *address, sd_bus **ret);
/* Returns the count, or a negative errno; *ret is malloc'ed. */
int rel_list_pools(sd_bus *bus, RelPool **ret);
/* The pool's warm extents (Extents entries of use "warm") as physical
 * ranges; -errno or how many, at most max. */
int rel_warm_ranges(sd_bus *bus, const RelPool *p, RelRange *out, int max);
int rel_list_allocations(sd_bus *bus, RelAlloc **ret);
int rel_list_devices(const RelKernel *k, RelDevice **ret);
/* Waits (bounded, as a liveness guard) until no pool has dirty memory. */
bool rel_wait_clean(sd_bus *bus);
/* A cheap call that proves the daemon still serves. */
bool rel_ping(sd_bus *bus);

/* Checks, printing "# ..." lines to out for every violation:
 * per pool allocated + free + host + foreign = size; allocations do not
 * overlap and their ranges add up to their size; per pool the allocations
 * add up to AllocatedSize; and with a kernel source: every allocation is a
 * device bound to device_dax with exactly its ranges, the other devices
 * with memory add up to ForeignSize + HostSize + WarmSize, and the devices
 * plus FreeSize add up to the region plus WarmSize. Call it when the daemon
 * is idle and clean; warm devices being made in the background meanwhile
 * are waited for (bounded, as a liveness guard). Returns the number of
 * violations. */
typedef unsigned (*RelCheck)(sd_bus *bus, const RelKernel *k, const char *what, FILE *out);
/* Runs check until it passes or about 10 s went by; prints the last try. */
unsigned rel_check_settled(RelCheck check, sd_bus *bus, const RelKernel *k, const char *what, FILE *out);
unsigned rel_check_invariant(sd_bus *bus, const RelKernel *k, const char *what, FILE *out);

/* The daemon's open fds (not counting the sim backend's device memory)
 * and anonymous resident memory (RssAnon), from /proc. */
int rel_proc_fds(int pid);
int64_t rel_proc_rss_anon(int pid);
