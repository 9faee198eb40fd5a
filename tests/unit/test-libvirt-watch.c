/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The libvirt watcher against libvirt's test:///default driver (in this
 * process, shared by every connection to it) and the broker on the sim
 * backend: reconcile at start, lifecycle events (define, start, destroy,
 * undefine), report-only mode. With LIBVIRT_WATCH_RESTART_URI set (the
 * bus harness runs a private libvirtd and sets it), also a libvirtd that
 * goes away and comes back.
 */
#include <glib.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "broker.h"
#include "config.h"
#include "libvirt-watch.h"
#include "util.h"

#define TEST_DOMAIN_UUID "6695eb01-f6a4-8304-79aa-97f2502e193f" /* "test", running */
#define NO_DOMAIN_UUID "0bad0bad-0000-4000-8000-000000000001"

typedef struct Fixture {
        char *dir;
        sd_event *event;
        DaxBackend *backend;
        Broker *broker;
        virConnectPtr conn;
} Fixture;

static void quiet(void *u, virErrorPtr e) {
}

static void fixture_setup(Fixture *f, const char *uri) {
        g_autoptr(GError) error = NULL;
        g_autofree char *spec = NULL;
        BrokerSettings settings = {};

        f->dir = g_dir_make_tmp("daxbroker-libvirt-XXXXXX", NULL);
        g_assert_nonnull(f->dir);
        spec = g_strdup_printf("sim:0:4G:512M:0;boot=devdax;state=%s/sim.json", f->dir);
        g_assert_cmpint(sd_event_new(&f->event), >=, 0);
        g_assert_cmpint(dax_backend_new_from_string(spec, &f->backend), ==, 0);
        settings.state_dir = f->dir;
        g_assert_cmpint(broker_new(f->event, f->backend, config_new_default(), &settings, &f->broker, &error), ==, 0);
        g_assert_no_error(error);
        g_assert_cmpint(broker_start(f->broker, &error), ==, 0);
        g_assert_no_error(error);
        f->conn = uri ? virConnectOpen(uri) : NULL;
}

static void fixture_teardown(Fixture *f) {
        broker_stop(f->broker);
        broker_drain(f->broker);
        broker_free(f->broker);
        dax_backend_free(f->backend);
        sd_event_unref(f->event);
        if (f->conn)
                virConnectClose(f->conn);
        g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", f->dir);
        g_assert_cmpint(system(cmd), ==, 0);
        g_free(f->dir);
}

typedef struct Done {
        bool done;
        char *id;
        char *error;
} Done;

static void on_allocated(Allocation *a, int fd, const GError *error, void *userdata) {
        Done *d = userdata;

        d->done = true;
        if (error)
                d->error = g_strdup(error->message);
        else
                d->id = g_strdup(a->rec->id);
}

static char *allocate(Fixture *f, const char *owner, const char *label) {
        g_autoptr(GError) error = NULL;
        AllocateRequest req = {
                .owner = owner, .size = 64 * MiB, .contiguous = true, .label = label,
        };
        Done d = {};

        g_assert_true(broker_allocate(f->broker, &req, on_allocated, &d, &error));
        while (!d.done)
                g_assert_cmpint(sd_event_run(f->event, UINT64_MAX), >=, 0);
        g_assert_null(d.error);
        return d.id;
}

static bool exists(Fixture *f, const char *id) {
        return broker_find_allocation(f->broker, id) != NULL;
}

static bool any_busy(Fixture *f) {
        g_autoptr(GPtrArray) all = broker_list_allocations(f->broker);

        for (guint i = 0; i < all->len; i++)
                if (((Allocation *) all->pdata[i])->busy)
                        return true;
        return false;
}

/* Runs the loop until the watcher's counters reach the wanted values and
 * the releases it started are finished. */
static void wait_for(Fixture *f, LibvirtWatch *w, unsigned reconciles, unsigned events) {
        LibvirtWatchStats st;

        for (;;) {
                libvirt_watch_get_stats(w, &st);
                if (st.reconciles >= reconciles && st.events >= events && !any_busy(f))
                        break;
                g_assert_cmpint(sd_event_run(f->event, 100 * 1000), >=, 0);
        }
}

static virDomainPtr define(Fixture *f, const char *name) {
        g_autofree char *xml = g_strdup_printf("<domain type='test'><name>%s</name><memory>65536</memory>"
                                               "<os><type>hvm</type></os></domain>", name);
        virDomainPtr d = virDomainDefineXML(f->conn, xml);

        g_assert_nonnull(d);
        return d;
}

static char *uuid_of(virDomainPtr d) {
        char u[VIR_UUID_STRING_BUFLEN];

        g_assert_cmpint(virDomainGetUUIDString(d, u), ==, 0);
        return g_strdup(u);
}

static void test_reconcile_and_events(void) {
        Fixture f = {};
        LibvirtWatch *w = NULL;
        virDomainPtr d1, d2, d3;
        g_autofree char *u1 = NULL, *u2 = NULL, *u3 = NULL;
        g_autofree char *keep_running = NULL, *gone = NULL, *plain = NULL, *defined_off = NULL;
        g_autofree char *a1 = NULL, *a2 = NULL, *late = NULL;
        LibvirtWatchStats st;

        fixture_setup(&f, "test:///default");
        g_assert_nonnull(f.conn);
        d1 = define(&f, "dax1");
        u1 = uuid_of(d1);

        /* Before the watcher starts: what a daemon finds after a downtime. */
        keep_running = allocate(&f, TEST_DOMAIN_UUID, "ram");
        gone = allocate(&f, NO_DOMAIN_UUID, "ram");
        plain = allocate(&f, "vm-not-libvirt", "ram");
        defined_off = allocate(&f, u1, "ram");

        g_assert_cmpint(libvirt_watch_new(f.event, f.broker, "test:///default", false, &w), ==, 0);
        wait_for(&f, w, 1, 0);
        g_assert_true(exists(&f, keep_running));
        g_assert_false(exists(&f, gone));
        g_assert_true(exists(&f, plain));
        g_assert_false(exists(&f, defined_off));
        libvirt_watch_get_stats(w, &st);
        g_assert_cmpuint(st.connects, ==, 1);
        g_assert_cmpuint(st.released, ==, 2);

        /* Start (the hook allocates), destroy: released on the event. */
        g_assert_cmpint(virDomainCreate(d1), ==, 0);
        a1 = allocate(&f, u1, "ram");
        g_assert_cmpint(virDomainDestroy(d1), ==, 0);
        wait_for(&f, w, 1, 1);
        g_assert_false(exists(&f, a1));
        g_assert_true(exists(&f, keep_running));

        /* Undefined while running: it runs on (transient), memory stays.
         * A stopped third domain afterwards tells that the undefine event
         * has been seen. */
        d2 = define(&f, "dax2");
        u2 = uuid_of(d2);
        g_assert_cmpint(virDomainCreate(d2), ==, 0);
        a2 = allocate(&f, u2, "ram");
        g_assert_cmpint(virDomainUndefine(d2), ==, 0);
        d3 = define(&f, "dax3");
        u3 = uuid_of(d3);
        g_assert_cmpint(virDomainCreate(d3), ==, 0);
        g_assert_cmpint(virDomainDestroy(d3), ==, 0);
        wait_for(&f, w, 1, 2);
        g_assert_true(exists(&f, a2));
        libvirt_watch_get_stats(w, &st);
        g_assert_cmpuint(st.events, ==, 2);

        /* The transient domain stops: gone for good, released. */
        g_assert_cmpint(virDomainDestroy(d2), ==, 0);
        wait_for(&f, w, 1, 3);
        g_assert_false(exists(&f, a2));

        /* A stopped domain that is undefined: what it still holds is
         * released. */
        late = allocate(&f, u3, "ram");
        g_assert_cmpint(virDomainUndefine(d3), ==, 0);
        wait_for(&f, w, 1, 4);
        g_assert_false(exists(&f, late));

        g_assert_true(exists(&f, keep_running));
        g_assert_true(exists(&f, plain));
        libvirt_watch_free(w);
        virDomainUndefine(d1);
        virDomainFree(d1);
        virDomainFree(d2);
        virDomainFree(d3);
        fixture_teardown(&f);
}

static void test_report_only(void) {
        Fixture f = {};
        LibvirtWatch *w = NULL;
        g_autofree char *gone = NULL;
        LibvirtWatchStats st;

        fixture_setup(&f, NULL);
        gone = allocate(&f, NO_DOMAIN_UUID, "ram");
        g_assert_cmpint(libvirt_watch_new(f.event, f.broker, "test:///default", true, &w), ==, 0);
        wait_for(&f, w, 1, 0);
        libvirt_watch_get_stats(w, &st);
        g_assert_true(exists(&f, gone));
        g_assert_cmpuint(st.reported, ==, 1);
        g_assert_cmpuint(st.released, ==, 0);
        libvirt_watch_free(w);
        fixture_teardown(&f);
}

static void test_owner_is_domain(void) {
        g_assert_true(libvirt_owner_is_domain("6695eb01-f6a4-8304-79aa-97f2502e193f"));
        g_assert_false(libvirt_owner_is_domain("6695EB01-f6a4-8304-79aa-97f2502e193f"));
        g_assert_false(libvirt_owner_is_domain("6695eb01f6a4-8304-79aa-97f2502e193f0"));
        g_assert_false(libvirt_owner_is_domain("vm1"));
        g_assert_false(libvirt_owner_is_domain(""));
}

/* A real libvirtd (its URI in LIBVIRT_WATCH_RESTART_URI, its pid in
 * LIBVIRT_WATCH_RESTART_PIDFILE, and a command that starts it again in
 * LIBVIRT_WATCH_RESTART_CMD) is killed while the daemon runs; a domain's
 * memory is orphaned meanwhile; when libvirtd is back the watcher
 * reconnects and releases it. The broker serves throughout. */
static void test_restart(void) {
        const char *uri = getenv("LIBVIRT_WATCH_RESTART_URI");
        const char *pidfile = getenv("LIBVIRT_WATCH_RESTART_PIDFILE");
        const char *cmd = getenv("LIBVIRT_WATCH_RESTART_CMD");
        g_autofree char *pid_text = NULL, *orphan = NULL, *during = NULL, *keep = NULL;
        Fixture f = {};
        LibvirtWatch *w = NULL;
        LibvirtWatchStats st;

        if (!uri || !pidfile || !cmd) {
                g_test_skip("no private libvirtd (run through the bus harness)");
                return;
        }
        fixture_setup(&f, NULL);
        keep = allocate(&f, TEST_DOMAIN_UUID, "ram");
        g_assert_cmpint(libvirt_watch_new(f.event, f.broker, uri, false, &w), ==, 0);
        wait_for(&f, w, 1, 0);
        g_assert_true(exists(&f, keep));

        g_assert_true(g_file_get_contents(pidfile, &pid_text, NULL, NULL));
        g_assert_cmpint(kill((pid_t) atoi(pid_text), SIGKILL), ==, 0);
        /* libvirtd is gone: the broker still serves, and memory of a
         * domain that is not running is left until libvirt can be asked. */
        orphan = allocate(&f, NO_DOMAIN_UUID, "ram");
        during = allocate(&f, "vm-not-libvirt", "ram");
        g_assert_true(exists(&f, orphan));

        g_assert_cmpint(system(cmd), ==, 0);
        wait_for(&f, w, 2, 0);
        libvirt_watch_get_stats(w, &st);
        g_assert_cmpuint(st.connects, >=, 2);
        g_assert_false(exists(&f, orphan));
        g_assert_true(exists(&f, keep));
        g_assert_true(exists(&f, during));
        libvirt_watch_free(w);
        fixture_teardown(&f);
}

int main(int argc, char **argv) {
        g_test_init(&argc, &argv, NULL);
        virSetErrorFunc(NULL, quiet);
        g_test_add_func("/libvirt-watch/owner-is-domain", test_owner_is_domain);
        g_test_add_func("/libvirt-watch/reconcile-and-events", test_reconcile_and_events);
        g_test_add_func("/libvirt-watch/report-only", test_report_only);
        g_test_add_func("/libvirt-watch/restart", test_restart);
        return g_test_run();
}
