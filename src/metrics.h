/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * metrics: the broker's numbers as an OpenMetrics text file for
 * node_exporter's textfile collector (names and labels in daxbrokerd(8)).
 * Read-only: it only looks at the broker through broker.h's public API.
 * The file is replaced atomically, so a scraper never sees half of it.
 */

#include <glib.h>

#include "broker.h"

/* Appends the OpenMetrics exposition of b's pools to out (ends in "# EOF"). */
void metrics_render(Broker *b, GString *out);

/* Renders and atomically replaces path (mode 0644). */
int metrics_write(Broker *b, const char *path, GError **error);
