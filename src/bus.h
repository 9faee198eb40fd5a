/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * bus: the org.daxbroker.Broker1 D-Bus API (sd-bus). It reads and validates
 * arguments, checks who is calling, hands the request to the broker and
 * replies when the broker's work completes. It is the only place where
 * broker errors become D-Bus error names.
 */

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "broker.h"
#include "bus-names.h"

typedef struct Bus Bus;

/* Connects (address NULL: the system bus), exports the objects and takes
 * the well-known name. */
int bus_new(sd_event *event, Broker *broker, const char *address, Bus **ret);
void bus_free(Bus *bus);

/* D-Bus error name of a broker error code. */
const char *bus_error_name(int broker_error_code);
