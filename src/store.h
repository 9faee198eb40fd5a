/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * store: the broker's durable memory, a state directory with one small
 * JSON file per allocation, owner, host chunk and dirty range (json-glib).
 * It records every allocation with its exact physical ranges, so a daemon
 * crash or a host reboot loses nothing. A save writes only the files that
 * changed, each atomically (temp file, fsync, rename; the directory is
 * fsync'ed when durability needs it), so its cost does not grow with the
 * number of allocations. Loading validates everything: a bad file is set
 * aside naming what is wrong, never half-trusted. state.json, the single
 * file of earlier releases (same record format), is upgraded on load.
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
        /* Cache colours of the pool the allocation was placed in (bit k:
         * colour k), 0 if it was placed without colour options; with
         * cache_isolation its owner holds them alone. */
        uint64_t colors;
        bool cache_isolation;
        /* A device of the pool's warm set, not handed out yet (owner
         * WARM_OWNER); see warm.h. */
        bool warm;
        unsigned n_ranges;
        DaxRange ranges[DAX_RANGES_MAX];
        /* store's private cache of the serialized record, and a copy of
         * the record it was made from */
        struct {
                char *text;
                struct AllocationRecord *shadow;
        } cache;
} AllocationRecord;

AllocationRecord *allocation_record_new(void);
void allocation_record_free(AllocationRecord *r);
/* A copy of every member, without the store's cache. */
AllocationRecord *allocation_record_copy(const AllocationRecord *r);
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
        /* A save that knows what changed sets partial: allocations then
         * holds only the records that may differ from what the last save
         * of the directory wrote (new or changed), gone the ids (char*) of
         * those no longer in the state, and every other record is as that
         * save left it. Its cost does not grow with the number of
         * allocations. The owners, dirty and host ranges are given whole,
         * as always. */
        bool partial;
        GPtrArray *gone;
} StoreState;

/* An empty owner table of the kind StoreState holds. */
GHashTable *store_owners_new(void);

void store_state_init(StoreState *s);
void store_state_clear(StoreState *s);
/* Loads the state directory dir (upgrading state.json next to it, see
 * below). A bad file is set aside as with store_load_state_or_set_aside()
 * and makes this an error. A missing directory is an empty state. */
int store_load_state(const char *dir, StoreState *ret, GError **error);
/* state.json's format (versions 1 and 2), for the upgrade and for tests. */
int store_load_state_data(const char *data, gsize len, StoreState *ret, GError **error);
/* Writes the files of s that differ from what this process last wrote or
 * read in dir, and removes the ones s no longer has; the directory is
 * created if missing. Every file is fsync'ed before it replaces the old
 * one, so a power cut leaves the old or the new file, never an empty one.
 * Without STORE_SAVE_DURABLE the directory is not fsync'ed: after a power
 * cut a rename may be lost (the old file stays), which only records that a
 * power cut makes moot anyway may accept. Saving runs the same validation
 * as loading. The store assumes that only it writes dir. */
typedef enum StoreSaveFlags {
        STORE_SAVE_DURABLE = 1 << 0,
        /* Writes nothing: fails (-EUCLEAN) naming the files a save of s
         * would write or remove. Tests use it after each partial save to
         * prove that it missed nothing. */
        STORE_SAVE_CHECK = 1 << 1,
} StoreSaveFlags;
int store_save_state(const char *dir, const StoreState *s, StoreSaveFlags flags, GError **error);
/* A partial save (StoreState.partial) returns -EAGAIN, with nothing
 * written, when it cannot be done without the whole state: the first save
 * of dir in this process, a change of host chunks (checked against every
 * allocation), or more owner files than allocations allow for. The caller
 * then saves the whole state. */
char *store_state_to_data(const StoreState *s);
/* How many fsync()s of record files and of state directories this process
 * has made (a durable save that changed anything makes one of the latter):
 * what the state costs the disk, for the metrics. */
void store_sync_counts(uint64_t *ret_files, uint64_t *ret_dirs);
/* Drops what the store remembers of dir: the next save scans it again. */
void store_forget(const char *dir);
/* state.json next to dir: the state of earlier releases. */
char *store_legacy_path(const char *dir);

/* Loads dir and also checks that every range recorded for one of regions
 * (the managed ones; records of other regions cannot be checked and are
 * kept as they are) lies inside it. A file whose content is bad, on its own
 * or against another (two claims on the same memory: both go), is never
 * deleted and never half-trusted: it is renamed to
 * NAME.corrupt-YYYYmmddTHHMMSSZ (a "-N" suffix when that exists) and left
 * out of *ret, *ret_set_aside lists the new names and *ret_reason what is
 * wrong with each; returns 1, and *ret has no boot id (memory a lost
 * record described is not known to be clean). Otherwise returns 0 and sets
 * both to NULL. A missing directory is an empty state. When dir is missing
 * and state.json (store_legacy_path()) exists, that file is loaded with
 * the same rules (set aside whole when bad) and becomes the directory:
 * written under a temporary name, made durable, renamed into place, then
 * state.json is removed, so a crash at any step loses nothing. A file that
 * cannot be read (permissions, I/O) or set aside is an error: its content
 * may be fine. */
int store_load_state_or_set_aside(const char *dir, const RegionRange *regions, size_t n_regions,
                                  StoreState *ret, char **ret_set_aside, char **ret_reason, GError **error);
/* Only the content check of the above, for data in memory. */
int store_state_check_regions(const StoreState *st, const RegionRange *regions, size_t n_regions,
                              GError **error);

/* Loads dir into an array of AllocationRecord* (owned). A missing
 * directory is an empty state. */
int store_load(const char *dir, GPtrArray **ret, GError **error);
int store_load_data(const char *data, gsize len, GPtrArray **ret, GError **error);

/* Saves the records durably to dir. Returns 0 or -errno. */
int store_save(const char *dir, AllocationRecord *const *records, size_t n, GError **error);
/* Serializes to state.json's format (for tests). */
char *store_to_data(AllocationRecord *const *records, size_t n);
