/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * node-perf: what the kernel publishes about the performance of a NUMA
 * node's memory (ACPI HMAT): per access class (access0: the best initiator
 * of any kind, access1: the best CPU initiator) read and write bandwidth
 * and latency, and the memory-side caches in front of the memory. An
 * attribute the kernel does not publish is NODE_PERF_UNKNOWN, never 0: a
 * platform without HMAT says nothing, and nothing must read as "no
 * bandwidth" or "zero latency".
 */

#include <stdbool.h>
#include <stdint.h>

#define NODE_PERF_UNKNOWN UINT64_MAX
#define NODE_PERF_ACCESS_CLASSES 2
#define NODE_PERF_CACHES_MAX 4

typedef struct NodeAccess {
        bool present;            /* the kernel has nodeN/accessK at all */
        uint64_t read_bandwidth;  /* MB/s */
        uint64_t write_bandwidth; /* MB/s */
        uint64_t read_latency;    /* ns */
        uint64_t write_latency;   /* ns */
} NodeAccess;

typedef enum NodeCacheIndexing {
        NODE_CACHE_DIRECT_MAPPED = 0, /* the kernel's values */
        NODE_CACHE_INDEXED = 1,
        NODE_CACHE_INDEXING_OTHER = 2,
        NODE_CACHE_INDEXING_UNKNOWN = -1,
} NodeCacheIndexing;

typedef enum NodeCacheWritePolicy {
        NODE_CACHE_WRITE_BACK = 0,
        NODE_CACHE_WRITE_THROUGH = 1,
        NODE_CACHE_WRITE_POLICY_OTHER = 2,
        NODE_CACHE_WRITE_POLICY_UNKNOWN = -1,
} NodeCacheWritePolicy;

typedef struct NodeCache {
        unsigned level; /* K of indexK */
        uint64_t size;      /* bytes, NODE_PERF_UNKNOWN if missing */
        uint64_t line_size; /* bytes, NODE_PERF_UNKNOWN if missing */
        NodeCacheIndexing indexing;
        NodeCacheWritePolicy write_policy;
} NodeCache;

typedef struct NodePerf {
        NodeAccess access[NODE_PERF_ACCESS_CLASSES];
        unsigned n_caches; /* sorted by level */
        NodeCache caches[NODE_PERF_CACHES_MAX];
} NodePerf;

/* Everything unknown. */
void node_perf_init(NodePerf *p);

/* Reads SYSFS/devices/system/node/nodeN. A missing directory or attribute
 * leaves it unknown; an attribute that exists but does not parse is
 * -EBADMSG (the kernel never writes one). */
int node_perf_read_sysfs(const char *sysfs_root, int node, NodePerf *ret);

/* The access class placement compares: access1 (CPU initiators) when the
 * kernel publishes it, else access0; NULL if neither. */
const NodeAccess *node_perf_access(const NodePerf *p);

/* The direct-mapped memory-side cache whose size is known, the one of the
 * lowest level; NULL if there is none. */
const NodeCache *node_perf_direct_mapped_cache(const NodePerf *p);

/* "direct-mapped", "indexed", "other", "unknown". */
const char *node_cache_indexing_to_string(NodeCacheIndexing i);
/* "write-back", "write-through", "other", "unknown". */
const char *node_cache_write_policy_to_string(NodeCacheWritePolicy w);

/* The sim backend's spelling: "NODE:CLASS:RBW:WBW:RLAT:WLAT" (MB/s and ns,
 * "-" for unknown) sets one access class; "NODE:LEVEL:SIZE:LINE:INDEXING:POLICY"
 * (INDEXING and POLICY as the kernel's numbers, or "-") one cache. */
int node_perf_parse_access(const char *s, int *ret_node, unsigned *ret_class, NodeAccess *ret);
int node_perf_parse_cache(const char *s, int *ret_node, NodeCache *ret);
/* Adds or replaces the cache of c->level, keeping them sorted. */
int node_perf_add_cache(NodePerf *p, const NodeCache *c);
