/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <glob.h>

#include "log.h"
#include "recovery.h"
#include "store.h"
#include "util.h"

/* Files set aside as invalid: records in the state directory, or a whole
 * state.json of an earlier release. */
static size_t count_set_aside(const char *state_dir, char **ret_first) {
        g_autofree char *legacy = store_legacy_path(state_dir);
        const char *const patterns[] = {
                "%s/*.corrupt-*",
                "%s.corrupt-*",
        };
        const char *const bases[] = { state_dir, legacy };
        size_t n = 0;

        for (size_t i = 0; i < G_N_ELEMENTS(patterns); i++) {
                g_autofree char *pattern = g_strdup_printf(patterns[i], bases[i]);
                glob_t g;

                if (glob(pattern, GLOB_NOSORT, NULL, &g) != 0)
                        continue;
                if (n == 0 && g.gl_pathc > 0)
                        *ret_first = g_strdup(g.gl_pathv[0]);
                n += g.gl_pathc;
                globfree(&g);
        }
        return n;
}

bool recovery_needed(const char *state_path, const char *set_aside, const char *reason) {
        g_autofree char *first = NULL;
        size_t n;

        if (set_aside)
                log_error("Invalid state file: %s. Kept it as %s. Starting without what it recorded: every device "
                          "that no record claims is left alone and counted as foreign, and all other memory no "
                          "allocation holds is zeroed before use", reason, set_aside);
        n = count_set_aside(state_path, &first);
        if (n > 0 && !set_aside)
                log_warning("%s is a state file set aside as invalid (%zu in all): devices without a "
                            "record stay foreign until it is moved away or deleted", first, n);
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
