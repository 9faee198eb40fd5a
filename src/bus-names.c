/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <glib.h>

#include "broker.h"
#include "bus-names.h"

static const char *const error_names[] = {
        [BROKER_ERROR_NO_SPACE] = BUS_ERROR_PREFIX "NoSpace",
        [BROKER_ERROR_NO_SUCH_POOL] = BUS_ERROR_PREFIX "NoSuchPool",
        [BROKER_ERROR_NO_SUCH_ALLOCATION] = BUS_ERROR_PREFIX "NoSuchAllocation",
        [BROKER_ERROR_INVALID_ARGUMENT] = BUS_ERROR_PREFIX "InvalidArgument",
        [BROKER_ERROR_ACCESS_DENIED] = BUS_ERROR_PREFIX "AccessDenied",
        [BROKER_ERROR_BUSY] = BUS_ERROR_PREFIX "Busy",
        [BROKER_ERROR_KERNEL_FAILURE] = BUS_ERROR_PREFIX "KernelFailure",
        [BROKER_ERROR_TIMED_OUT] = BUS_ERROR_PREFIX "TimedOut",
};

const char *bus_error_name(int code) {
        if (code < 0 || (size_t) code >= G_N_ELEMENTS(error_names) || !error_names[code])
                return BUS_ERROR_PREFIX "KernelFailure";
        return error_names[code];
}
