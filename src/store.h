/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * store: the broker's durable memory, state.json (json-glib). It records
 * every allocation with its exact physical ranges, so a daemon crash or a
 * host reboot loses nothing. The file is replaced atomically (write a temp
 * file, fsync, rename, fsync the directory). Loading validates everything:
 * a malformed file is an error naming what is wrong, never a partial load.
 */

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "dax-backend.h"

typedef enum AllocationState {
        ALLOCATION_ACTIVE = 0,
        ALLOCATION_CREATING,  /* kernel work started, not finished */
        ALLOCATION_RELEASING, /* release started, not finished */
} AllocationState;

typedef struct AllocationRecord {
        char *id;
        char *owner;
        uid_t owner_uid;
        char *label;
        char *pool;
        unsigned region_id;
        uint64_t align;
        char *device;     /* "daxR.N", may be NULL while creating */
        uint64_t created_usec;
        bool transient;
        char *client;     /* unique bus name a transient allocation is tied to, or NULL */
        /* Owner given to the device node (-1: left alone), reapplied when
         * the device is recreated after a reboot. */
        uid_t device_uid;
        gid_t device_gid;
        AllocationState state;
        unsigned n_ranges;
        DaxRange ranges[DAX_RANGES_MAX];
        /* store's private cache of the serialized record */
        struct {
                char *text;
                AllocationState state;
                char *device;
                char *pool;
        } cache;
} AllocationRecord;

AllocationRecord *allocation_record_new(void);
void allocation_record_free(AllocationRecord *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(AllocationRecord, allocation_record_free)

const char *allocation_state_to_string(AllocationState s);

/* A physical range of one region. */
typedef struct RegionRange {
        unsigned region_id;
        uint64_t start;
        uint64_t size;
} RegionRange;

typedef struct StoreState {
        GPtrArray *allocations; /* AllocationRecord*, owned */
        char *boot_id;          /* the boot the file was written in; NULL if unknown */
        /* Memory that no device holds and that holds old data (after a
         * reboot, a rolled-back allocation, a scrub cut short, a chunk back
         * from the host): zeroed before anyone gets it. */
        GArray *dirty;          /* RegionRange */
        /* Host chunks: devices of ours bound to kmem. Recorded before the
         * device exists and dropped after it is gone, so start-up knows
         * every chunk, even one whose return or reclaim was cut short. */
        GArray *host;           /* RegionRange */
        /* Owner name (char*) -> the uid it belongs to (GUINT_TO_POINTER):
         * the uid that created it. Saving writes the owners of the
         * allocations saved; one missing here is written with its
         * allocation's owner_uid. */
        GHashTable *owners;
} StoreState;

/* An empty owner table of the kind StoreState holds. */
GHashTable *store_owners_new(void);

void store_state_init(StoreState *s);
void store_state_clear(StoreState *s);
int store_load_state(const char *path, StoreState *ret, GError **error);
int store_load_state_data(const char *data, gsize len, StoreState *ret, GError **error);
/* The new file is always fsync'ed before it replaces the old one, so a
 * power cut leaves the old or the new file, never an empty one. Without
 * STORE_SAVE_DURABLE the directory is not fsync'ed: after a power cut the
 * rename may be lost (the old file stays), which only records that a power
 * cut makes moot anyway may accept. Saving runs the same validation as
 * loading. */
typedef enum StoreSaveFlags {
        STORE_SAVE_DURABLE = 1 << 0,
} StoreSaveFlags;
int store_save_state(const char *path, const StoreState *s, StoreSaveFlags flags, GError **error);
char *store_state_to_data(const StoreState *s);

/* Loads path like store_load_state() and also checks that every range
 * recorded for one of regions (the managed ones; records of other regions
 * cannot be checked and are kept as they are) lies inside it. A file whose
 * content is bad is never deleted and never half-trusted: it is renamed to
 * PATH.corrupt-YYYYmmddTHHMMSSZ (a "-N" suffix when that exists), *ret is
 * an empty state, *ret_set_aside the new name and *ret_reason what is wrong;
 * returns 1. A missing file is an empty state; returns 0. A file that
 * cannot be read (permissions, I/O) or set aside is an error: its content
 * may be fine. */
int store_load_state_or_set_aside(const char *path, const RegionRange *regions, size_t n_regions,
                                  StoreState *ret, char **ret_set_aside, char **ret_reason, GError **error);
/* Only the content check of the above, for data in memory. */
int store_state_check_regions(const StoreState *st, const RegionRange *regions, size_t n_regions,
                              GError **error);

/* Loads path into an array of AllocationRecord* (owned). A missing file is
 * an empty state. */
int store_load(const char *path, GPtrArray **ret, GError **error);
int store_load_data(const char *data, gsize len, GPtrArray **ret, GError **error);

/* Atomically replaces path with the records. Returns 0 or -errno. */
int store_save(const char *path, AllocationRecord *const *records, size_t n, GError **error);
/* Serializes to a string (for tests). */
char *store_to_data(AllocationRecord *const *records, size_t n);
