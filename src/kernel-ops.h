/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * kernel-ops: the kernel steps every operation is built from: create a
 * device with exact ranges, destroy one, zero (parts of) one, compare
 * range lists, and the named crash points that prove recovery from a kill
 * at each step. Nothing here knows pools, records or the event loop; the
 * functions run on worker lanes (or at start-up) and report -errno plus
 * the step that failed.
 */

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dax-backend.h"
#include "scrub.h"

typedef struct KernelResult {
        int err;           /* -errno */
        const char *step;  /* what failed, for the message */
        char name[DAX_NAME_MAX];
        int fd;
} KernelResult;

/* A piece of a device to zero, as an offset into the device. */
typedef struct ZeroPart {
        uint64_t offset;
        uint64_t size;
} ZeroPart;

bool ranges_equal(const DaxRange *a, size_t na, const DaxRange *c, size_t nc);
bool ranges_overlap(const DaxRange *a, size_t na, const DaxRange *c, size_t nc);

/* Unbinds, shrinks and deletes a device; gone already counts as done. */
int kernel_destroy(DaxBackend *be, const char *name, const char **ret_step);
/* Creates a device with exactly these ranges, bound to device_dax, and
 * opens it (res->fd). On failure nothing is left behind. */
void kernel_create(DaxBackend *be, unsigned region_id, uint64_t align, const DaxRange *ranges, size_t n,
                   KernelResult *res);
/* Zeroes parts of a device through its own mapping. n == 0 zeroes all. */
int kernel_zero(DaxBackend *be, Scrubber *scrubber, const char *name, uint64_t size, const ZeroPart *parts,
                size_t n, const char **ret_step);

/* Test-only fault injection. DAXBROKER_TEST_CRASH_AT=POINT makes
 * crash_point(POINT) SIGKILL the daemon; DAXBROKER_TEST_DELAY_AT=POINT:USEC
 * makes it sleep there (a slow kernel step). Safe on worker threads once
 * armed before they start. */
typedef struct CrashPoint {
        const char *name;
        const char *what;
} CrashPoint;

/* The table of every point, for --list-crash-points and the test suites. */
const CrashPoint *crash_points_list(size_t *ret_n);
void crash_point_arm(const char *step);
void crash_delay_arm(const char *spec);
void crash_point(const char *step);
/* The shared steps (created, mapped, bound, unbound, shrunk, deleted) are
 * named after the operation the calling thread runs: "allocate-bound". */
void crash_op_begin(const char *op);
void crash_step(const char *step);
