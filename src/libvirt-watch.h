/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * libvirt-watch: releases the memory of libvirt domains that are no longer
 * running when the hook could not (daemon down, hook missed, libvirt
 * restarted, domain undefined meanwhile). The libvirt hook allocates with
 * the domain UUID as owner, so an allocation whose owner is a UUID belongs
 * to a libvirt domain of this host.
 *
 * libvirt runs on one thread of its own (its default event loop, a
 * read-only connection, reconnecting with backoff); that thread only asks
 * libvirt and posts what it learnt to the daemon's sd-event loop, where
 * the broker is changed through its public API. See docs/architecture.md.
 */

#include <stdbool.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include "broker.h"

typedef struct LibvirtWatch LibvirtWatch;

typedef struct LibvirtWatchStats {
        unsigned connects;    /* connections made */
        unsigned reconciles;  /* full reconciliations applied on the loop */
        unsigned events;      /* stopped/undefined domains handled on the loop */
        unsigned released;    /* releases started */
        unsigned reported;    /* orphans only reported (LibvirtOrphans=report) */
} LibvirtWatchStats;

/* Starts watching uri; never fails because libvirt is down (it retries). */
int libvirt_watch_new(sd_event *event, Broker *broker, const char *uri, bool report_only, LibvirtWatch **ret);
/* Stops the thread and waits for it. */
void libvirt_watch_free(LibvirtWatch *w);
void libvirt_watch_get_stats(LibvirtWatch *w, LibvirtWatchStats *ret);

/* True for a lower-case UUID, the form the hook uses as owner. */
bool libvirt_owner_is_domain(const char *owner);
