/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * bus-names: the names of the org.daxbroker.Broker1 API (bus name, object
 * paths, interfaces, error names), shared by the bus layer and the
 * authorization layer so that neither reaches into the other.
 */

#define BUS_NAME "org.daxbroker.Broker1"
#define BUS_PATH "/org/daxbroker/Broker1"
#define BUS_POOL_PREFIX BUS_PATH "/pool"
#define BUS_ALLOCATION_PREFIX BUS_PATH "/allocation"
#define BUS_MANAGER_IFACE "org.daxbroker.Broker1.Manager"
#define BUS_POOL_IFACE "org.daxbroker.Broker1.Pool"
#define BUS_ALLOCATION_IFACE "org.daxbroker.Broker1.Allocation"
#define BUS_ERROR_PREFIX "org.daxbroker.Broker1.Error."
#define BUS_ERROR_NO_SPACE BUS_ERROR_PREFIX "NoSpace"
#define BUS_ERROR_NO_SUCH_POOL BUS_ERROR_PREFIX "NoSuchPool"
#define BUS_ERROR_NO_SUCH_ALLOCATION BUS_ERROR_PREFIX "NoSuchAllocation"
#define BUS_ERROR_INVALID_ARGUMENT BUS_ERROR_PREFIX "InvalidArgument"
#define BUS_ERROR_ACCESS_DENIED BUS_ERROR_PREFIX "AccessDenied"
#define BUS_ERROR_BUSY BUS_ERROR_PREFIX "Busy"
#define BUS_ERROR_KERNEL_FAILURE BUS_ERROR_PREFIX "KernelFailure"

/* D-Bus error name of a broker error code (BrokerError). */
const char *bus_error_name(int broker_error_code);
