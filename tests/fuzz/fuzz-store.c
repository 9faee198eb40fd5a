/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <glib.h>
#include <string.h>

#include "store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        g_autoptr(GPtrArray) records = NULL, again = NULL;
        g_autoptr(GError) error = NULL;
        g_autofree char *text = NULL, *text_again = NULL;
        int r;

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
