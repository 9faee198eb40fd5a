/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <glib.h>
#include <string.h>

#include "kernel-ops.h"
#include "store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The state directory's writer names a crash point; the parser under test
 * never reaches it, and the fuzzer does not link the kernel operations. */
void crash_point(const char *step) {
        (void) step;
}

/* The regions the checks against managed regions see: two of 2 GiB. */
static const RegionRange regions[] = {
        { .region_id = 0, .start = 4ULL << 30, .size = 2ULL << 30 },
        { .region_id = 1, .start = 8ULL << 30, .size = 2ULL << 30 },
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        g_autoptr(GPtrArray) records = NULL, again = NULL;
        g_autoptr(GError) error = NULL;
        g_autofree char *text = NULL, *text_again = NULL;
        StoreState st;
        int r;

        /* The whole state (dirty and host too), and the region check:
         * either loads cleanly or says what is wrong. */
        r = store_load_state_data((const char *) data, size, &st, &error);
        if (r < 0)
                g_assert_nonnull(error);
        else {
                g_assert_no_error(error);
                r = store_state_check_regions(&st, regions, G_N_ELEMENTS(regions), &error);
                g_assert_true((r < 0) == (error != NULL));
                store_state_clear(&st);
        }
        g_clear_error(&error);

        r = store_load_data((const char *) data, size, &records, &error);
        if (r < 0) {
                g_assert_nonnull(error);
                g_assert_null(records);
                return 0;
        }
        g_assert_no_error(error);

        /* Whatever loads must save, and load back to the same text. */
        text = store_to_data((AllocationRecord *const *) records->pdata, records->len);
        r = store_load_data(text, strlen(text), &again, &error);
        g_assert_no_error(error);
        g_assert_cmpint(r, ==, 0);
        text_again = store_to_data((AllocationRecord *const *) again->pdata, again->len);
        g_assert_cmpstr(text, ==, text_again);

        return 0;
}
