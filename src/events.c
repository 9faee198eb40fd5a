/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include <systemd/sd-journal.h>

#include "events.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

/* One id per kind, never to change: the catalog and operators' queries
 * (journalctl MESSAGE_ID=...) go by them. systemd/daxbroker.catalog. */
#define ID_ALLOCATED "dc1ff1efe526449b92f1361fbc7e2b62"
#define ID_RELEASED "6b43207153874c69b54eb639b229f4ce"
#define ID_RESTORED "2ac512c1aae142a7a34c5fb569079ea2"
#define ID_SCRUBBED "5fdce8400aff498ba28a68e8840d6b37"
#define ID_RETURNED "b28087928d5041c1b1ec8a059ff30d56"
#define ID_RECLAIMED "36a350d22e0941e78232c7354b072511"
#define ID_REFUSED "fa248b8407f341d6a3e6bbfd12e31984"

static bool with_ranges;

void events_set_ranges(bool ranges) {
        with_ranges = ranges;
}

typedef struct Entry {
        GPtrArray *fields; /* "NAME=value" */
} Entry;

static void entry_add(Entry *e, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void entry_add(Entry *e, const char *name, const char *fmt, ...) {
        g_autofree char *v = NULL;
        va_list ap;

        va_start(ap, fmt);
        v = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        g_ptr_array_add(e->fields, g_strconcat(name, "=", v, NULL));
}

static void entry_init(Entry *e, const char *event, const char *id, int priority) {
        e->fields = g_ptr_array_new_with_free_func(g_free);
        entry_add(e, "MESSAGE_ID", "%s", id);
        entry_add(e, "PRIORITY", "%d", priority);
        entry_add(e, "SYSLOG_IDENTIFIER", "daxbrokerd");
        entry_add(e, "DAXBROKER_EVENT", "%s", event);
}

static void entry_add_ranges(Entry *e, const DaxRange *r, size_t n) {
        g_autoptr(GString) s = g_string_new(NULL);

        if (!with_ranges)
                return;
        /* The kernel's own notation (sysfs mapping): first-last, inclusive. */
        for (size_t i = 0; i < n; i++)
                g_string_append_printf(s, "%s%#" PRIx64 "-%#" PRIx64, i ? " " : "", r[i].start,
                                       r[i].start + r[i].size - 1);
        entry_add(e, "DAXBROKER_RANGES", "%s", s->str);
}

static void entry_add_device(Entry *e, const char *device) {
        if (device && device[0])
                entry_add(e, "DAXBROKER_DEVICE", "/dev/%s", device);
}

static void entry_add_pool(Entry *e, const Pool *p) {
        entry_add(e, "DAXBROKER_POOL", "%s", p->name);
        entry_add(e, "DAXBROKER_REGION", "%u", p->region_id);
}

static void entry_add_record(Entry *e, const AllocationRecord *r) {
        entry_add(e, "DAXBROKER_OWNER", "%s", r->owner);
        entry_add(e, "DAXBROKER_UID", "%u", (unsigned) r->owner_uid);
        entry_add(e, "DAXBROKER_ALLOCATION", "%s", r->id);
        entry_add(e, "DAXBROKER_LABEL", "%s", r->label);
        entry_add(e, "DAXBROKER_SIZE", "%" PRIu64, dax_ranges_size(r->ranges, r->n_ranges));
}

/* Journal export format (what `journalctl -o export` prints): NAME=value
 * lines, or NAME, a little-endian 64-bit length and the bytes when the
 * value has a newline; a blank line ends the entry. */
static void write_export(const Entry *e) {
        const char *path = getenv("DAXBROKER_TEST_JOURNAL_FILE");
        g_autoptr(GString) s = NULL;
        int fd;

        if (!path || !*path)
                return;
        s = g_string_new(NULL);
        for (guint i = 0; i < e->fields->len; i++) {
                const char *f = e->fields->pdata[i];
                const char *eq = strchr(f, '=');

                if (!strchr(eq, '\n')) {
                        g_string_append_printf(s, "%s\n", f);
                        continue;
                }
                uint64_t n = strlen(eq + 1);
                uint8_t le[8];

                for (int k = 0; k < 8; k++)
                        le[k] = (uint8_t) (n >> (8 * k));
                g_string_append_len(s, f, eq - f);
                g_string_append_c(s, '\n');
                g_string_append_len(s, (const char *) le, 8);
                g_string_append_len(s, eq + 1, (gssize) n);
                g_string_append_c(s, '\n');
        }
        g_string_append_c(s, '\n');
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0 || write(fd, s->str, s->len) != (ssize_t) s->len)
                log_warning("Cannot append the event to %s: %m", path);
        if (fd >= 0)
                close(fd);
}

/* The message is the entry's MESSAGE; outside the journal it is the plain
 * log line it always was. */
static void entry_send(Entry *e, int priority, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void entry_send(Entry *e, int priority, const char *fmt, ...) {
        g_autofree char *message = NULL;
        g_autofree struct iovec *iov = NULL;
        va_list ap;
        int r = -1;

        va_start(ap, fmt);
        message = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        g_ptr_array_insert(e->fields, 0, g_strconcat("MESSAGE=", message, NULL));

        if (log_level_enabled(priority)) {
                if (log_to_journal()) {
                        iov = g_new(struct iovec, e->fields->len);
                        for (guint i = 0; i < e->fields->len; i++)
                                iov[i] = (struct iovec) { e->fields->pdata[i], strlen(e->fields->pdata[i]) };
                        r = sd_journal_sendv(iov, (int) e->fields->len);
                }
                if (r < 0)
                        log_msg(priority, "%s", message);
                write_export(e);
        }
        g_ptr_array_free(e->fields, TRUE);
}

void events_allocated(const Allocation *a, const ZeroPart *zero, size_t n_zero) {
        const AllocationRecord *r = a->rec;
        uint64_t size = allocation_size(a), zeroed = 0;
        char sz[FORMAT_SIZE_MAX];
        Entry e;

        if (n_zero == SIZE_MAX)
                zeroed = size;
        else
                for (size_t i = 0; i < n_zero; i++)
                        zeroed += zero[i].size;
        metrics_count_allocation(a->pool->name);
        if (zeroed)
                metrics_count_zeroed(a->pool->name, zeroed);

        entry_init(&e, "allocated", ID_ALLOCATED, LOG_INFO);
        entry_add_record(&e, r);
        entry_add_pool(&e, a->pool);
        entry_add_device(&e, r->device);
        entry_add_ranges(&e, r->ranges, r->n_ranges);
        entry_add(&e, "DAXBROKER_ZEROED", "%" PRIu64, zeroed);
        if (r->transient)
                entry_add(&e, "DAXBROKER_TRANSIENT", "1");
        entry_send(&e, LOG_INFO, "Allocated %s (%s) for '%s' label '%s' as %s in pool %s", r->id,
                   format_size(size, sz, sizeof(sz)), r->owner, r->label, r->device, a->pool->name);
}

void events_released(const Allocation *a, const char *device) {
        const AllocationRecord *r = a->rec;
        char sz[FORMAT_SIZE_MAX];
        Entry e;

        metrics_count_release(a->pool->name);
        entry_init(&e, "released", ID_RELEASED, LOG_INFO);
        entry_add_record(&e, r);
        entry_add_pool(&e, a->pool);
        entry_add_device(&e, device);
        entry_add_ranges(&e, r->ranges, r->n_ranges);
        entry_send(&e, LOG_INFO, "Released %s of '%s' (%s, %s); its device is destroyed and its memory zeroed before reuse", r->id, r->owner,
                   device && device[0] ? device : "no device", format_size(allocation_size(a), sz, sizeof(sz)));
}

void events_restored(const Pool *p, const AllocationRecord *rec, uint64_t zeroed) {
        Entry e;

        if (zeroed)
                metrics_count_zeroed(p->name, zeroed);
        entry_init(&e, "restored", ID_RESTORED, LOG_INFO);
        entry_add_record(&e, rec);
        entry_add_pool(&e, p);
        entry_add_device(&e, rec->device);
        entry_add_ranges(&e, rec->ranges, rec->n_ranges);
        entry_add(&e, "DAXBROKER_ZEROED", "%" PRIu64, zeroed);
        entry_send(&e, LOG_INFO, "Restored allocation %s of '%s' as %s with its original ranges%s", rec->id,
                   rec->owner, rec->device, zeroed ? " (zeroed: the host had the memory)" : "");
}

void events_scrubbed(const Pool *p, const DaxRange *range, const char *device) {
        char sz[FORMAT_SIZE_MAX];
        Entry e;

        metrics_count_zeroed(p->name, range->size);
        entry_init(&e, "scrubbed", ID_SCRUBBED, LOG_INFO);
        entry_add_pool(&e, p);
        entry_add(&e, "DAXBROKER_SIZE", "%" PRIu64, range->size);
        entry_add_device(&e, device);
        entry_add_ranges(&e, range, 1);
        entry_send(&e, LOG_INFO, "Pool %s: zeroed %s of free memory through %s", p->name,
                   format_size(range->size, sz, sizeof(sz)), device);
}

static void host_event(const Pool *p, const DaxRange *ranges, size_t n, const char *device, bool reclaim) {
        uint64_t size = dax_ranges_size(ranges, n);
        char sz[FORMAT_SIZE_MAX], at[64] = "";
        Entry e;

        if (reclaim)
                metrics_count_reclaimed(p->name, size);
        else
                metrics_count_returned(p->name, size);
        entry_init(&e, reclaim ? "host-reclaimed" : "host-returned", reclaim ? ID_RECLAIMED : ID_RETURNED, LOG_INFO);
        entry_add_pool(&e, p);
        entry_add(&e, "DAXBROKER_SIZE", "%" PRIu64, size);
        entry_add_device(&e, device);
        entry_add_ranges(&e, ranges, n);
        /* The address only where the journal may carry addresses at all. */
        if (with_ranges && n > 0)
                snprintf(at, sizeof(at), " at %#" PRIx64, ranges[0].start);
        format_size(size, sz, sizeof(sz));
        if (reclaim)
                entry_send(&e, LOG_INFO, "Pool %s: reclaimed %s%s from the host (was %s); it is zeroed before use",
                           p->name, sz, at, device);
        else
                entry_send(&e, LOG_INFO, "Pool %s: returned %s%s to the host as %s", p->name, sz, at, device);
}

void events_host_returned(const Pool *p, const DaxRange *ranges, size_t n, const char *device) {
        host_event(p, ranges, n, device, false);
}

void events_host_reclaimed(const Pool *p, const DaxRange *ranges, size_t n, const char *device) {
        host_event(p, ranges, n, device, true);
}

/* What a refused caller sent is not trusted to be a name: anything that is
 * not (control characters, bad UTF-8, too long) is escaped and cut short so
 * it cannot garble the log. */
#define REFUSAL_STRING_MAX 256

static char *printable(const char *s) {
        g_autofree char *esc = NULL;

        if (!s)
                return NULL;
        if (!name_invalid_reason(s))
                return g_strdup(s);
        esc = g_strescape(s, NULL);
        if (strlen(esc) > REFUSAL_STRING_MAX)
                return g_strdup_printf("%.*s...", REFUSAL_STRING_MAX, esc);
        return g_steal_pointer(&esc);
}

void events_refused(const EventRefusal *r) {
        const char *short_name = r->error_name ? strrchr(r->error_name, '.') : NULL;
        g_autoptr(GString) what = g_string_new(r->method);
        g_autofree char *owner = printable(r->owner), *pool = printable(r->pool);
        g_autofree char *message = NULL;
        Entry e;

        metrics_count_failure(r->method, r->error_name);
        entry_init(&e, "refused", ID_REFUSED, LOG_NOTICE);
        entry_add(&e, "DAXBROKER_METHOD", "%s", r->method);
        entry_add(&e, "DAXBROKER_ERROR", "%s", r->error_name ? r->error_name : "");
        if (r->uid != (uid_t) -1)
                entry_add(&e, "DAXBROKER_CALLER_UID", "%u", (unsigned) r->uid);
        if (owner) {
                entry_add(&e, "DAXBROKER_OWNER", "%s", owner);
                g_string_append_printf(what, " for '%s'", owner);
        }
        if (r->allocation) {
                entry_add(&e, "DAXBROKER_ALLOCATION", "%s", r->allocation);
                g_string_append_printf(what, " of %s", r->allocation);
        }
        if (pool) {
                entry_add(&e, "DAXBROKER_POOL", "%s", pool);
                g_string_append_printf(what, " in pool %s", pool);
        }
        if (r->size)
                entry_add(&e, "DAXBROKER_SIZE", "%" PRIu64, r->size);
        /* Error messages quote what the caller sent. */
        message = g_strescape(r->message ? r->message : "", "\"'");
        if (message && strlen(message) > 4 * REFUSAL_STRING_MAX)
                strcpy(message + 4 * REFUSAL_STRING_MAX - 3, "...");
        entry_send(&e, LOG_NOTICE, "%s refused (%s): %s", what->str, short_name ? short_name + 1 : "unknown",
                   message);
}
