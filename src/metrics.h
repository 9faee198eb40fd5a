/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * metrics: the broker's numbers as an OpenMetrics text file for
 * node_exporter's textfile collector (names and labels in daxbrokerd(8)):
 * gauges read through broker.h's public API, and the counters and latency
 * histograms that events.c and the bus layer move. Counters live as long
 * as the process (a restart starts them at 0, as Prometheus expects).
 * The file is replaced atomically, so a scraper never sees half of it.
 * Event loop thread only.
 */

#include <glib.h>
#include <stdint.h>

#include "broker.h"

/* Appends the OpenMetrics exposition of b's pools to out (ends in "# EOF"). */
void metrics_render(Broker *b, GString *out);

/* Renders and atomically replaces path (mode 0644). */
int metrics_write(Broker *b, const char *path, GError **error);

/* Called after every counter change (the daemon then rewrites the file
 * soon instead of at the next interval). */
void metrics_set_changed(void (*changed)(void *userdata), void *userdata);
void metrics_gauges_changed(void);

void metrics_count_allocation(const char *pool);
void metrics_count_release(const char *pool);
void metrics_count_zeroed(const char *pool, uint64_t bytes);
void metrics_count_returned(const char *pool, uint64_t bytes);
void metrics_count_reclaimed(const char *pool, uint64_t bytes);
/* A refused call: method "Allocate", error "NoSpace" (the D-Bus error name
 * without org.daxbroker.Broker1.Error., other names in full). */
void metrics_count_failure(const char *method, const char *error_name);

typedef enum MetricsCall {
        METRICS_CALL_ALLOCATE,
        METRICS_CALL_RELEASE,
        _METRICS_CALL_MAX,
} MetricsCall;

/* A successful call took usec from its arrival to its reply. */
void metrics_observe(MetricsCall call, uint64_t usec);

/* Forgets every counter (tests). */
void metrics_reset(void);
