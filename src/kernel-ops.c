/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kernel-ops.h"
#include "log.h"
#include "util.h"

bool ranges_equal(const DaxRange *a, size_t na, const DaxRange *c, size_t nc) {
        if (na != nc)
                return false;
        for (size_t i = 0; i < na; i++)
                if (a[i].start != c[i].start || a[i].size != c[i].size)
                        return false;
        return true;
}

bool ranges_overlap(const DaxRange *a, size_t na, const DaxRange *c, size_t nc) {
        for (size_t i = 0; i < na; i++)
                for (size_t j = 0; j < nc; j++)
                        if (a[i].start < c[j].start + c[j].size && c[j].start < a[i].start + a[i].size)
                                return true;
        return false;
}

/* Removes a device of ours. A device that is already gone counts as done. */
int kernel_destroy(DaxBackend *be, const char *name, const char **ret_step) {
        DaxDeviceInfo d;
        int r;

        r = be->ops->get_device(be, name, &d);
        if (r == -ENODEV || r == -ENOENT)
                return 0;
        if (r < 0) {
                *ret_step = "reading the device";
                return r;
        }
        if (d.driver != DAX_DRIVER_NONE) {
                r = be->ops->unbind(be, name);
                if (r < 0) {
                        *ret_step = "unbinding the device";
                        return r;
                }
                crash_step("unbound");
        }
        if (d.size > 0) {
                r = be->ops->set_size(be, name, 0);
                if (r < 0) {
                        *ret_step = "shrinking the device to zero";
                        return r;
                }
                crash_step("shrunk");
        }
        if (d.instance == 0)
                return 0; /* daxR.0 cannot be deleted; size 0 frees it */
        r = be->ops->delete_device(be, name);
        if (r < 0 && r != -ENODEV && r != -ENXIO) {
                *ret_step = "deleting the device";
                return r;
        }
        crash_step("deleted");
        return 0;
}

/* Creates a device with exactly these ranges, bound to device_dax, and
 * opens it. On failure nothing is left behind (no seed, no half-mapped
 * device). */
void kernel_create(DaxBackend *be, unsigned region_id, uint64_t align, const DaxRange *ranges,
                          size_t n, KernelResult *res) {
        DaxDeviceInfo d;
        const char *ignored;
        int r;

        res->fd = -1;
        r = be->ops->create_device(be, region_id, res->name);
        if (r < 0) {
                res->step = "creating a device";
                goto fail_nodev;
        }
        crash_step("created");
        if (align != 2 * MiB) {
                r = be->ops->set_align(be, res->name, align);
                if (r < 0) {
                        res->step = "setting the device alignment";
                        goto fail;
                }
        }
        for (size_t i = 0; i < n; i++) {
                r = be->ops->add_mapping(be, res->name, ranges[i].start, ranges[i].size);
                if (r < 0) {
                        res->step = "mapping a physical range into the device";
                        goto fail;
                }
                crash_step("mapped");
        }
        r = be->ops->bind_device_dax(be, res->name);
        if (r < 0) {
                res->step = "binding the device to device_dax";
                goto fail;
        }
        crash_step("bound");
        /* The kernel must hold exactly what we asked for; anything else
         * would hand out the wrong memory. Only the ranges are compared,
         * so only they are read (each sysfs read is a syscall or three on
         * the request path). */
        if (be->ops->get_ranges)
                r = be->ops->get_ranges(be, res->name, d.ranges, &d.n_ranges);
        else
                r = be->ops->get_device(be, res->name, &d);
        if (r < 0) {
                res->step = "reading back the device";
                goto fail;
        }
        if (!ranges_equal(d.ranges, d.n_ranges, ranges, n)) {
                r = -EIO;
                res->step = "verifying the device ranges";
                goto fail;
        }
        r = be->ops->open_device(be, res->name);
        if (r < 0) {
                res->step = "opening the device";
                goto fail;
        }
        res->fd = r;
        res->err = 0;
        return;

fail:
        if (kernel_destroy(be, res->name, &ignored) < 0)
                log_error("Rolling back %s failed; start-up reconciliation will retry", res->name);
fail_nodev:
        res->err = r;
        res->name[0] = 0;
}

/* Zeroes parts of a device through its own mapping. n == 0 zeroes all. */
int kernel_zero(DaxBackend *be, Scrubber *scrubber, const char *name, uint64_t size, const ZeroPart *parts, size_t n,
                       const char **ret_step) {
        _cleanup_close_ int fd = -1;
        void *mem;
        int r = 0;

        fd = be->ops->open_device(be, name);
        if (fd < 0) {
                *ret_step = "opening the device to zero it";
                return fd;
        }
        mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (mem == MAP_FAILED) {
                *ret_step = "mapping the device to zero it";
                return -errno;
        }
        if (n == 0) {
                /* In two halves, so that a test can kill the daemon
                 * ("scrub-half") with the memory half zeroed. */
                uint64_t half = size / 2 / 4096 * 4096;

                r = scrubber_zero(scrubber, mem, half);
                if (r >= 0)
                        crash_point("scrub-half");
                if (r >= 0)
                        r = scrubber_zero(scrubber, (char *) mem + half, size - half);
        }
        for (size_t i = 0; i < n && r >= 0; i++)
                r = scrubber_zero(scrubber, (char *) mem + parts[i].offset, parts[i].size);
        if (r < 0)
                *ret_step = "zeroing the device";
        munmap(mem, size);
        return r;
}

/* Every point at which DAXBROKER_TEST_CRASH_AT can kill the daemon: one
 * after each kernel-changing step of each operation. The test suites
 * iterate this table (daxbrokerd --list-crash-points), so a point missing
 * here is one no test kills at. */
static const CrashPoint crash_points[] = {
        { "allocate-created", "Allocate: device created, nothing mapped" },
        { "allocate-mapped", "Allocate: a range mapped into the device" },
        { "allocate-bound", "Allocate: device bound to device_dax" },
        { "allocate-zeroed", "Allocate: dirty parts zeroed" },
        { "allocate-chowned", "Allocate with device-uid/gid: node handed over" },
        { "warmfill-created", "Warm set fill: device created, nothing mapped" },
        { "warmfill-mapped", "Warm set fill: a range mapped into the device" },
        { "warmfill-bound", "Warm set fill: device bound to device_dax" },
        { "warmfill-owned", "Warm set fill: node made root's, mode 0600" },
        { "handover-recorded", "Warm hand-over: allocation recorded, node not handed over yet" },
        { "handover-chowned", "Warm hand-over with device-uid/gid: node handed over" },
        { "giveback-unbound", "Warm give-back: device unbound" },
        { "giveback-shrunk", "Warm give-back: device shrunk to zero" },
        { "giveback-deleted", "Warm give-back: device deleted" },
        { "release-revoked", "Release: on record, node given back to root, reply about to go" },
        { "release-unbound", "Release: device unbound" },
        { "release-shrunk", "Release: device shrunk to zero" },
        { "release-deleted", "Release: device deleted" },
        { "scrub-created", "Zeroing: scrub device created" },
        { "scrub-mapped", "Zeroing: dirt mapped into the scrub device" },
        { "scrub-bound", "Zeroing: scrub device bound" },
        { "scrub-half", "Zeroing: half of a chunk zeroed" },
        { "scrub-zeroed", "Zeroing: chunk zeroed, device still there" },
        { "scrub-unbound", "Zeroing: scrub device unbound" },
        { "scrub-shrunk", "Zeroing: scrub device shrunk" },
        { "scrub-deleted", "Zeroing: scrub device deleted" },
        { "return-created", "Host return: chunk device created" },
        { "return-mapped", "Host return: chunk mapped" },
        { "return-bound", "Host return: chunk bound to kmem" },
        { "return-online", "Host return: a block onlined" },
        { "reclaim-offline", "Host reclaim: a block offlined" },
        { "reclaim-offlined", "Host reclaim: every block offline" },
        { "reclaim-unbound", "Host reclaim: kmem unbound" },
        { "reclaim-destroyed", "Host reclaim: chunk device destroyed" },
        { "reclaim-adopted-recorded", "Host reclaim of an adopted kmem device: on record, kernel untouched" },
        { "reclaim-adopted-offline", "Host reclaim of an adopted kmem device: a block offlined" },
        { "reclaim-adopted-offlined", "Host reclaim of an adopted kmem device: every block offline" },
        { "reclaim-adopted-unbound", "Host reclaim of an adopted kmem device: kmem unbound" },
        { "reclaim-adopted-shrunk", "Host reclaim of an adopted kmem device: shrunk to zero" },
        { "reclaim-adopted-deleted", "Host reclaim of an adopted kmem device: deleted" },
        { "adopt-unbound", "Start-up take-over of a boot device: unbound" },
        { "adopt-shrunk", "Start-up take-over of a boot device: shrunk" },
        { "rollback-unbound", "Start-up rollback of a cut-short operation: device unbound" },
        { "rollback-shrunk", "Start-up rollback: device shrunk" },
        { "rollback-deleted", "Start-up rollback: device deleted" },
        { "restore-dirt-recorded", "Reboot restore: host-held memory under allocations recorded as dirty" },
        { "restore-reclaim", "Reboot restore: about to take host-held memory back" },
        { "restore-reclaimed", "Reboot restore: host-held memory taken back" },
        { "restore-created", "Reboot restore: device created" },
        { "restore-mapped", "Reboot restore: a range mapped" },
        { "restore-bound", "Reboot restore: device bound" },
        { "restore-zeroed", "Reboot restore: host data zeroed" },
        { "state-half-saved", "State save: new and changed files in place, old ones not yet removed" },
};

const CrashPoint *crash_points_list(size_t *ret_n) {
        *ret_n = G_N_ELEMENTS(crash_points);
        return crash_points;
}

static bool crash_point_known(const char *step) {
        for (size_t i = 0; i < G_N_ELEMENTS(crash_points); i++)
                if (strcmp(crash_points[i].name, step) == 0)
                        return true;
        return false;
}

static char *crash_at;
/* POINT@N: the Nth time the point is reached (a burst of operations). */
static gint crash_skip;
static char *delay_at;
static uint64_t delay_usec;
static __thread const char *crash_op;

void crash_point_arm(const char *step) {
        const char *at = step ? strrchr(step, '@') : NULL;
        guint64 v = 1;

        g_free(crash_at);
        crash_at = at ? g_strndup(step, at - step) : g_strdup(step);
        if (at && !g_ascii_string_to_unsigned(at + 1, 10, 1, G_MAXINT, &v, NULL))
                log_warning("DAXBROKER_TEST_CRASH_AT=%s: '%s' is not a count from 1; stopping at the first", step,
                            at + 1);
        crash_skip = (gint) v - 1;
        if (step && !crash_point_known(crash_at))
                log_warning("DAXBROKER_TEST_CRASH_AT=%s names no crash point (see --list-crash-points)", step);
}

void crash_delay_arm(const char *spec) {
        const char *colon = spec ? strrchr(spec, ':') : NULL;
        guint64 v;

        g_clear_pointer(&delay_at, g_free);
        if (!spec)
                return;
        if (!colon || !g_ascii_string_to_unsigned(colon + 1, 10, 1, 600000000, &v, NULL)) {
                log_warning("DAXBROKER_TEST_DELAY_AT=%s is not POINT:USEC; ignoring", spec);
                return;
        }
        delay_at = g_strndup(spec, colon - spec);
        delay_usec = v;
}

void crash_op_begin(const char *op) {
        crash_op = op;
}

void crash_step(const char *step) {
        char name[64];

        if ((!crash_at && !delay_at) || !crash_op)
                return;
        snprintf(name, sizeof(name), "%s-%s", crash_op, step);
        if (crash_point_known(name))
                crash_point(name);
}

void crash_point(const char *step) {
        const char *hold;

        if (delay_at && strcmp(delay_at, step) == 0)
                g_usleep(delay_usec);
        if (!crash_at || strcmp(crash_at, step) != 0)
                return;
        /* Points on the lanes are reached from several threads. */
        for (gint k; (k = g_atomic_int_get(&crash_skip)) > 0;)
                if (g_atomic_int_compare_and_exchange(&crash_skip, k, k - 1))
                        return;
        /* With DAXBROKER_TEST_HOLD_WHILE=FILE the step waits while FILE
         * exists and then goes on: a test can look at the daemon stopped
         * half-way (zeroing, say) without racing it. */
        hold = getenv("DAXBROKER_TEST_HOLD_WHILE");
        if (hold) {
                log_warning("DAXBROKER_TEST_CRASH_AT=%s: holding here while %s exists (test-only)", step, hold);
                while (access(hold, F_OK) == 0)
                        (void) usleep(10 * 1000);
                return;
        }
        log_warning("DAXBROKER_TEST_CRASH_AT=%s: killing the daemon here (test-only fault injection)", step);
        (void) raise(SIGKILL);
}
