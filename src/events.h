/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * events: every allocation event as one structured journal entry, so an
 * operator can ask `journalctl DAXBROKER_OWNER=vm1`. Each kind has its own
 * MESSAGE_ID (explained in systemd/daxbroker.catalog) and the fields
 * DAXBROKER_OWNER, _ALLOCATION, _POOL, _SIZE, _DEVICE and, only with
 * JournalRanges=yes, _RANGES (physical addresses; see docs/security.md).
 * Each call also moves the event's counters in metrics.h, so a site needs
 * exactly one line. Event loop thread only.
 *
 * Under systemd (JOURNAL_STREAM) the entry goes to the journal natively and
 * replaces the plain log line; otherwise the message goes to stderr as
 * before. DAXBROKER_TEST_JOURNAL_FILE=PATH (tests) also appends every
 * entry to PATH in the journal export format.
 */

#include <stdbool.h>
#include <stdint.h>

#include "broker.h"
#include "kernel-ops.h"

/* JournalRanges=: whether entries carry physical addresses. */
void events_set_ranges(bool ranges);

/* An allocation got its device; zero/n_zero are the parts of dirty memory
 * zeroed for it first (n_zero SIZE_MAX: all of it). */
void events_allocated(const Allocation *a, const ZeroPart *zero, size_t n_zero);
/* An allocation's device is gone (device: its name, "" if it had none). */
void events_released(const Allocation *a, const char *device);
/* An allocation got its device back with its recorded ranges, after a
 * reboot; zeroed: bytes zeroed first (the host had the memory). */
void events_restored(const Pool *p, const AllocationRecord *rec, uint64_t zeroed);
/* Dirty memory of pool p (range, through scrub device device) is zeroed. */
void events_scrubbed(const Pool *p, const DaxRange *range, const char *device);
/* Memory lent to the host (kmem), or taken back from it. */
void events_host_returned(const Pool *p, const DaxRange *ranges, size_t n, const char *device);
void events_host_reclaimed(const Pool *p, const DaxRange *ranges, size_t n, const char *device);

/* A D-Bus call was refused. Strings may be NULL when the call did not
 * name them; error_name is the full D-Bus error name. */
typedef struct EventRefusal {
        const char *method;
        const char *error_name;
        const char *message;
        const char *owner;
        const char *allocation;
        const char *pool;
        uint64_t size;
        uid_t uid; /* the caller, (uid_t) -1 if unknown */
} EventRefusal;
void events_refused(const EventRefusal *r);
