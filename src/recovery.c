/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <glob.h>

#include "log.h"
#include "recovery.h"
#include "util.h"

bool recovery_needed(const char *state_path, const char *set_aside, const char *reason) {
        g_autofree char *pattern = g_strconcat(state_path, ".corrupt-*", NULL);
        glob_t g;
        size_t n = 0;

        if (set_aside)
                log_error("Invalid state file: %s. Kept it as %s. Starting with no allocations: every device "
                          "that exists now is left alone and counted as foreign, and all other memory is zeroed "
                          "before use", reason, set_aside);
        if (glob(pattern, GLOB_NOSORT, NULL, &g) == 0) {
                n = g.gl_pathc;
                if (!set_aside)
                        log_warning("%s is a state file set aside as invalid (%zu in all): devices without a "
                                    "record stay foreign until it is moved away or deleted", g.gl_pathv[0], n);
                globfree(&g);
        }
        return set_aside || n > 0;
}

void recovery_keep_device(Pool *p, const DaxDeviceInfo *d) {
        char sz[FORMAT_SIZE_MAX];

        /* A zero-size device holds no memory: nothing to protect, and
         * nothing to gain from deleting it. */
        if (d->n_ranges == 0)
                return;
        log_notice("%s: %s (%s, driver %s) has no record and a state file was set aside as invalid: it may be "
                   "an allocation; leaving it alone and counting it as foreign", p->name, d->name,
                   format_size(d->size, sz, sizeof(sz)), dax_driver_to_string(d->driver));
        if (extent_map_set_ranges(p->map, d->ranges, d->n_ranges, EXTENT_FOREIGN, NULL) < 0)
                log_warning("Device %s has ranges outside its region, ignoring them", d->name);
}
