/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * dax-backend: the one small interface between the broker and the device-dax
 * kernel ABI. Two implementations exist: dax-sysfs (the real kernel, through
 * /sys/bus/dax) and dax-sim (an in-memory model that enforces the same kernel
 * rules, for fast tests). All functions return 0 or a negative errno, and the
 * errno is the kernel's own (never libdaxctl's blanket ENXIO), so callers can
 * tell EBUSY from ENOSPC from ENOMEM.
 *
 * Every call may be made from a worker thread; calls for one region are
 * serialized by the caller, calls for different regions may run concurrently.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "node-perf.h"

#define DAX_NAME_MAX 32
#define DAX_RANGES_MAX 64

typedef struct DaxRange {
        uint64_t start; /* physical address */
        uint64_t size;  /* bytes */
} DaxRange;

typedef enum DaxDriver {
        DAX_DRIVER_NONE = 0, /* not bound */
        DAX_DRIVER_DEVICE_DAX,
        DAX_DRIVER_KMEM,
        DAX_DRIVER_OTHER,
} DaxDriver;

typedef struct DaxRegionInfo {
        unsigned id;          /* region id R of daxR.N */
        uint64_t start;       /* physical start of the region */
        uint64_t size;
        uint64_t align;       /* region alignment (2 MiB for hmem) */
        uint64_t available;   /* kernel's available_size */
        int numa_node;        /* target node of the memory, -1 unknown */
} DaxRegionInfo;

typedef struct DaxDeviceInfo {
        char name[DAX_NAME_MAX]; /* "daxR.N" */
        unsigned region_id;
        unsigned instance;       /* N of daxR.N */
        uint64_t size;
        uint64_t align;
        DaxDriver driver;
        int target_node;
        unsigned n_ranges;
        DaxRange ranges[DAX_RANGES_MAX];
        /* For kmem-bound devices: memory blocks of its ranges, and how many
         * of them are online. Zero for other drivers. */
        unsigned mem_blocks;
        unsigned mem_blocks_online;
} DaxDeviceInfo;

/* One memory block (/sys/devices/system/memory/memoryN). */
typedef struct DaxMemBlock {
        uint64_t id;    /* N */
        uint64_t start; /* physical address */
        bool online;
        bool movable;   /* online in ZONE_MOVABLE (offlining normally succeeds) */
} DaxMemBlock;

typedef struct DaxBackend DaxBackend;

typedef struct DaxBackendOps {
        const char *name;
        void (*free)(DaxBackend *b);

        /* Snapshot of all regions; *ret is malloc()ed. */
        int (*list_regions)(DaxBackend *b, DaxRegionInfo **ret, size_t *ret_n);
        /* Snapshot of all devices of one region, daxR.0 included. */
        int (*list_devices)(DaxBackend *b, unsigned region_id, DaxDeviceInfo **ret, size_t *ret_n);
        int (*get_device)(DaxBackend *b, const char *name, DaxDeviceInfo *ret);
        /* Only the device's ranges, in device order (the cheaper read-back
         * after carving it); NULL: get_device() serves. */
        int (*get_ranges)(DaxBackend *b, const char *name, DaxRange ranges[DAX_RANGES_MAX], unsigned *ret_n);

        /* Creates a new zero-size unbound device; ret_name gets "daxR.N". */
        int (*create_device)(DaxBackend *b, unsigned region_id, char ret_name[DAX_NAME_MAX]);
        /* Device must be unbound. align: 4096, 2 MiB or 1 GiB. */
        int (*set_align)(DaxBackend *b, const char *name, uint64_t align);
        /* Appends exactly this physical range. Device must be unbound. */
        int (*add_mapping)(DaxBackend *b, const char *name, uint64_t start, uint64_t size);
        /* Device must be unbound; used to shrink to zero before delete. */
        int (*set_size)(DaxBackend *b, const char *name, uint64_t size);
        /* Binds an unbound device to device_dax ("bind", else "new_id" and
         * "bind" on kernels where the driver matches listed names only).
         * Already bound to it: 0; to another driver: -EBUSY. */
        int (*bind_device_dax)(DaxBackend *b, const char *name);
        /* Unbinds from whatever driver holds it and drops our id from that
         * driver's id list. Refuses (-EBUSY) a kmem device with online blocks:
         * kmem removal is one shot and would strand the range. */
        int (*unbind)(DaxBackend *b, const char *name);
        /* Deletes an unbound zero-size device (not daxR.0). */
        int (*delete_device)(DaxBackend *b, const char *name);
        /* Opens the character device read-write; returns the fd. */
        int (*open_device)(DaxBackend *b, const char *name);
        /* 1 if some process has the device open or mapped, 0 if not. */
        int (*device_in_use)(DaxBackend *b, const char *name);

        /* Memory hotplug, for returning memory to the host. */

        /* The host's memory block size (block_size_bytes); 0 when the
         * kernel has no memory hotplug, so nothing can go to kmem. */
        uint64_t (*memory_block_size)(DaxBackend *b);
        /* Binds an unbound, non-empty device to kmem, the same way as
         * bind_device_dax. kmem adds the memory blocks that lie wholly
         * inside its ranges; whether they come up online is the kernel's
         * auto_online_blocks policy, so callers re-read block state.
         * Already kmem: 0; bound elsewhere: -EBUSY; no range: -ENXIO; a
         * negative target node or no whole memory block: -EINVAL; kmem
         * not loaded: -EOPNOTSUPP (it is not loaded on demand, see
         * dax-sysfs.c). */
        int (*bind_kmem)(DaxBackend *b, const char *name);
        /* The memory blocks of a kmem-bound device, in address order; *ret
         * is malloc()ed. Computed from the device's own ranges, so
         * multi-range devices are right; blocks kmem could not add are left
         * out. "going-offline" counts as online (not removable), and
         * movable is only set for a block fully online in ZONE_MOVABLE.
         * These are the blocks DaxDeviceInfo.mem_blocks counts. A device
         * not bound to kmem: -ENXIO. */
        int (*list_memory_blocks)(DaxBackend *b, const char *name, DaxMemBlock **ret, size_t *ret_n);
        /* Onlines (movable if the kernel allows it, else its default zone)
         * or offlines one memory block. Already in that state: 0. No such
         * block: -ENOENT. Offlining fails with -EBUSY when the kernel
         * refuses (unmovable pages) and with -ETIMEDOUT when it does not
         * finish within timeout_usec (it is then cancelled and the block
         * stays online); UINT64_MAX waits without limit, other values
         * (0 too) are kept to within about a millisecond. Onlining is not
         * bounded: it waits for nothing. */
        int (*set_memory_block)(DaxBackend *b, uint64_t block_id, bool online, uint64_t timeout_usec);
        /* Whether the host kernel zeroes every page before handing it out
         * (init_on_alloc), so memory lent through kmem need not be zeroed
         * first; *ret_why says how that was decided. */
        bool (*host_zeroes_on_alloc)(DaxBackend *b, const char **ret_why);

        /* What the kernel publishes about a NUMA node's memory (HMAT);
         * missing attributes are NODE_PERF_UNKNOWN. */
        int (*node_perf)(DaxBackend *b, int node, NodePerf *ret);
        /* The kernel's boot id (malloc()ed), NULL if unknown: the start-up
         * after a reboot treats memory and devices differently. */
        char *(*boot_id)(DaxBackend *b);
} DaxBackendOps;

struct DaxBackend {
        const DaxBackendOps *ops;
};

/* The real kernel. sysfs_root is "/sys" and dev_root "/dev" in production. */
int dax_sysfs_new(const char *sysfs_root, const char *dev_root, DaxBackend **ret);

/* What the model's auto_online_blocks does with the blocks kmem adds. */
typedef enum DaxSimAutoOnline {
        DAX_SIM_AUTOONLINE_OFFLINE = 0,
        DAX_SIM_AUTOONLINE_ONLINE,         /* ZONE_NORMAL */
        DAX_SIM_AUTOONLINE_ONLINE_MOVABLE, /* ZONE_MOVABLE */
} DaxSimAutoOnline;

/* What offlining a memory block of the model runs into: DAX_SIM_BLOCK_BUSY
 * fails with -EBUSY (unmovable pages), DAX_SIM_BLOCK_HANG never finishes, so
 * offlining runs into its timeout (-ETIMEDOUT at once, whatever the
 * timeout: the model does not wait). */
typedef enum DaxSimBlockPin {
        DAX_SIM_BLOCK_MOVABLE = 0,
        DAX_SIM_BLOCK_BUSY,
        DAX_SIM_BLOCK_HANG,
} DaxSimBlockPin;

typedef struct DaxSimPin {
        uint64_t phys; /* any address in the memory block */
        DaxSimBlockPin pin;
} DaxSimPin;

typedef struct DaxSimBusy {
        uint64_t phys;
        const char *while_file; /* held while this file exists */
} DaxSimBusy;

typedef struct DaxSimOptions {
        /* daxR.0 at start: "idle" (size 0, the default), "devdax" (whole
         * region bound to device_dax, like 6.1), "kmem-offline" or
         * "kmem-online" (whole region bound to kmem, like 6.3+; online in
         * ZONE_MOVABLE if autoonline says online_movable, else ZONE_NORMAL). */
        const char *boot_mode;
        /* If not NULL, the model keeps its layout (devices, memory block
         * states and pins) in that file and the memory's bytes in files
         * under "<state_path>.mem/", so both survive a daemon restart as
         * they survive it on a real kernel; a missing state file means a
         * fresh boot (with empty memory). */
        const char *state_path;
        DaxSimAutoOnline autoonline;
        /* Blocks that will not go offline, added to those of the state file.
         * Each must lie in a region (-EINVAL). */
        const DaxSimPin *pins;
        size_t n_pins;
        /* Physical addresses that another claimant holds in iomem while
         * its file exists (a test fault that can be cleared): mapping a
         * range that contains one into a device fails with -ENOMEM, as
         * __request_region() makes alloc_dev_dax_range() fail. */
        const DaxSimBusy *busy;
        size_t n_busy;
        /* The model's host kernel zeroes pages on allocation (init_on_alloc). */
        bool init_on_alloc;
        /* HMAT of the model's nodes: "access=" and "cache=" items in
         * node_perf_parse_access() and node_perf_parse_cache() spelling. */
        const char *const *access;
        size_t n_access;
        const char *const *caches;
        size_t n_caches;
        /* Nodes whose memory is all soft-reserved: like the kernel, the
         * model publishes their HMAT only once some of their memory is
         * online (kmem), until then every attribute is unknown. */
        const int *hotplug_nodes;
        size_t n_hotplug_nodes;
} DaxSimOptions;

/* The model. spec lists regions as "ID:START:SIZE:NODE" separated by ','
 * (START and SIZE accept K/M/G suffixes and 0x hex), e.g.
 * "0:4G:2G:1,1:8G:2G:0". Regions start with one daxR.0 device, as
 * options->boot_mode says; options may be NULL for the defaults. Memory
 * blocks are 128 MiB. */
int dax_sim_new_with_options(const char *spec, const DaxSimOptions *options, DaxBackend **ret);
/* The same with only boot_mode and state_path set (either may be NULL). */
int dax_sim_new(const char *spec, const char *boot_mode, const char *state_path, DaxBackend **ret);

/* Test hooks of the model; -EOPNOTSUPP on other backends. */

/* Puts the first n_online memory blocks of a kmem device (in range order)
 * online in ZONE_MOVABLE and the others offline, ignoring pins; onlining
 * writes host data into a block. -ERANGE if the device has fewer blocks,
 * -ENXIO if it is not kmem. */
int dax_sim_set_blocks_online(DaxBackend *b, const char *name, unsigned n_online);
/* What device_in_use() reports for a device. */
int dax_sim_set_in_use(DaxBackend *b, const char *name, bool in_use);
/* Another agent (udev, auto_online_blocks, an operator) onlines or
 * offlines the memory block at this physical address behind the broker's
 * back; onlining writes host data into it and ignores pins. movable picks
 * the zone of an online block. -ENOENT if no kmem device holds the block. */
int dax_sim_set_block_state(DaxBackend *b, uint64_t phys, bool online, bool movable);
/* Pins (or with DAX_SIM_BLOCK_MOVABLE unpins) the memory block at this
 * physical address. The pin belongs to the memory, not to a device: it may
 * be set before kmem adds the block and outlives the device. -ENOENT if
 * the address lies in no region. */
int dax_sim_set_block_pin(DaxBackend *b, uint64_t phys, DaxSimBlockPin pin);

/* Spelling of model settings in option strings and the state file:
 * sizes and addresses are decimal or 0x hex with an optional K, M, G or T
 * suffix; pins are "none", "busy" or "hang". */
int dax_sim_parse_size(const char *s, uint64_t *ret);
const char *dax_sim_block_pin_to_string(DaxSimBlockPin pin);
int dax_sim_block_pin_from_string(const char *s, DaxSimBlockPin *ret);

/* "sysfs" or "sim:SPEC[;boot=MODE][;state=PATH][;autoonline=POLICY][;pin=PHYS:MODE,...][;busy=PHYS:FILE][;init_on_alloc=1]
 * [;access=NODE:CLASS:RBW:WBW:RLAT:WLAT,...][;cache=NODE:LEVEL:SIZE:LINE:INDEXING:POLICY,...][;hotplug=NODE,...]".
 * autoonline is what the model's auto_online_blocks does when kmem adds
 * blocks: "offline" (default), "online" (ZONE_NORMAL) or "online_movable".
 * pin marks memory blocks that will not offline, MODE "busy" or "hang"
 * (see DaxSimBlockPin); pin= may be given more than once. busy= holds
 * the address PHYS in iomem while FILE exists (see DaxSimBusy).
 * init_on_alloc=1 models a host kernel that zeroes pages on allocation.
 * hotplug= lists nodes of soft-reserved memory alone (see DaxSimOptions). */
int dax_backend_new_from_string(const char *s, DaxBackend **ret);

static inline void dax_backend_free(DaxBackend *b) {
        if (b)
                b->ops->free(b);
}

const char *dax_driver_to_string(DaxDriver d);

/* Sums range sizes. */
uint64_t dax_ranges_size(const DaxRange *r, size_t n);
