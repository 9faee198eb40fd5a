/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "broker.h"
#include "build-config.h"
#include "bus.h"
#include "config.h"
#include "dax-backend.h"
#include "events.h"
#include "kernel-ops.h"
#include "libvirt-watch.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

typedef struct Options {
        const char *config;
        const char *state_dir;
        const char *runtime_dir;
        const char *backend;
        const char *bus_address;
        const char *metrics_file;
} Options;

/* How often the metrics file is rewritten; after a counter moves it is
 * rewritten sooner, but at most once per METRICS_MIN_GAP_USEC, so a burst
 * of calls costs one write. */
#define METRICS_INTERVAL_USEC (UINT64_C(15) * 1000 * 1000)
#define METRICS_MIN_GAP_USEC (UINT64_C(1) * 1000 * 1000)

static void help(void) {
        printf("Usage: daxbrokerd [OPTIONS]\n\n"
               "Carves soft-reserved memory into per-VM device-dax allocations, served on D-Bus\n"
               "as org.daxbroker.Broker1.\n\n"
               "  -h --help               Show this help\n"
               "     --version            Show the version\n"
               "     --config PATH        Configuration file (default " CONFIG_FILE ",\n"
               "                          plus PATH.d/*.conf drop-ins)\n"
               "     --state-dir DIR      State directory (default $STATE_DIRECTORY or " STATE_DIR ")\n"
               "     --runtime-dir DIR    Runtime directory for stable paths (default\n"
               "                          $RUNTIME_DIRECTORY or " RUNTIME_DIR ")\n"
               "     --backend KIND       sysfs (default) or sim:SPEC for tests\n"
               "     --bus-address ADDR   Connect to this bus instead of the system bus\n"
               "     --metrics-file PATH  Keep OpenMetrics text in PATH, rewritten every 15 s\n"
               "                          (default $DAXBROKER_METRICS_FILE, else none)\n"
               "     --debug              Log debug messages\n"
               "     --list-crash-points  List the test-only crash points (DAXBROKER_TEST_CRASH_AT)\n");
}

static int parse_args(int argc, char **argv, Options *o) {
        enum { ARG_VERSION = 0x100, ARG_CONFIG, ARG_STATE, ARG_RUNTIME, ARG_BACKEND, ARG_BUS, ARG_DEBUG, ARG_LIST_CRASH,
               ARG_METRICS };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "config", required_argument, NULL, ARG_CONFIG },
                { "state-dir", required_argument, NULL, ARG_STATE },
                { "runtime-dir", required_argument, NULL, ARG_RUNTIME },
                { "backend", required_argument, NULL, ARG_BACKEND },
                { "bus-address", required_argument, NULL, ARG_BUS },
                { "debug", no_argument, NULL, ARG_DEBUG },
                { "list-crash-points", no_argument, NULL, ARG_LIST_CRASH },
                { "metrics-file", required_argument, NULL, ARG_METRICS },
                {},
        };
        int c;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case 'h':
                        help();
                        exit(EXIT_SUCCESS);
                case ARG_VERSION:
                        printf("daxbrokerd %s\n", PACKAGE_VERSION);
                        exit(EXIT_SUCCESS);
                case ARG_CONFIG:
                        o->config = optarg;
                        break;
                case ARG_STATE:
                        o->state_dir = optarg;
                        break;
                case ARG_RUNTIME:
                        o->runtime_dir = optarg;
                        break;
                case ARG_BACKEND:
                        o->backend = optarg;
                        break;
                case ARG_BUS:
                        o->bus_address = optarg;
                        break;
                case ARG_METRICS:
                        if (!*optarg) {
                                fprintf(stderr, "daxbrokerd: --metrics-file needs a path\n");
                                return -EINVAL;
                        }
                        o->metrics_file = optarg;
                        break;
                case ARG_DEBUG:
                        log_set_max_level(LOG_DEBUG);
                        break;
                case ARG_LIST_CRASH: {
                        size_t n;
                        const CrashPoint *l = crash_points_list(&n);

                        for (size_t i = 0; i < n; i++)
                                printf("%s\t%s\n", l[i].name, l[i].what);
                        exit(EXIT_SUCCESS);
                }
                default:
                        return -EINVAL;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "daxbrokerd: unexpected argument '%s'\n", argv[optind]);
                return -EINVAL;
        }
        return 0;
}

typedef struct Daemon {
        Options options;
        Broker *broker;
        Bus *bus;
        LibvirtWatch *libvirt;
        sd_event_source *metrics_timer;
        uint64_t metrics_written_usec;
} Daemon;

static int on_sigterm(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Daemon *d = userdata;

        (void) sd_notify(0, "STOPPING=1\nSTATUS=Finishing kernel work in progress");
        /* Replies for work in flight go out before we leave; zeroing not
         * yet started is on record and resumes at the next start. */
        broker_stop(d->broker);
        broker_drain(d->broker);
        return sd_event_exit(sd_event_source_get_event(s), 0);
}

static int on_sighup(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Daemon *d = userdata;
        g_autoptr(GError) error = NULL;
        Config *c;

        (void) sd_notify(0, "RELOADING=1");
        c = config_load(d->options.config, &error);
        if (!c)
                log_error("Not reloading, the configuration is invalid: %s", error->message);
        else {
                events_set_ranges(c->journal_ranges);
                if (broker_reload(d->broker, c, &error) < 0)
                        log_error("Reload failed: %s", error->message);
        }
        (void) sd_notify(0, "READY=1");
        return 0;
}

/* Test-only (DAXBROKER_TEST_STALL=1): SIGUSR1 blocks the event loop for
 * good, so tests can prove that systemd's watchdog kills a hung daemon
 * and the restart keeps every allocation. */
static int on_sigusr1_stall(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        log_warning("DAXBROKER_TEST_STALL: stalling the event loop on SIGUSR1");
        for (;;)
                pause();
        return 0;
}

static void metrics_update(Daemon *d) {
        g_autoptr(GError) error = NULL;

        if (metrics_write(d->broker, d->options.metrics_file, &error) < 0)
                log_warning("Cannot write the metrics file: %s", error->message);
}

static int on_metrics_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Daemon *d = userdata;
        uint64_t now;

        metrics_update(d);
        (void) sd_event_now(sd_event_source_get_event(s), CLOCK_MONOTONIC, &now);
        d->metrics_written_usec = now;
        (void) sd_event_source_set_time(s, now + METRICS_INTERVAL_USEC);
        (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        return 0;
}

/* A counter moved: the file follows within a second. */
static void on_metrics_changed(void *userdata) {
        Daemon *d = userdata;
        uint64_t now, due, at;
        int enabled;

        if (!d->metrics_timer)
                return;
        (void) sd_event_now(sd_event_source_get_event(d->metrics_timer), CLOCK_MONOTONIC, &now);
        due = MAX(now, d->metrics_written_usec + METRICS_MIN_GAP_USEC);
        if (sd_event_source_get_enabled(d->metrics_timer, &enabled) >= 0 && enabled != SD_EVENT_OFF &&
            sd_event_source_get_time(d->metrics_timer, &at) >= 0 && at <= due)
                return;
        (void) sd_event_source_set_time(d->metrics_timer, due);
        (void) sd_event_source_set_enabled(d->metrics_timer, SD_EVENT_ONESHOT);
}

static const char *dir_option(const char *opt, const char *env, const char *def) {
        const char *e;

        if (opt)
                return opt;
        e = getenv(env);
        /* systemd may pass several colon-separated directories. */
        if (e && *e && !strchr(e, ':'))
                return e;
        return def;
}

int main(int argc, char **argv) {
        Daemon d = {};
        g_autoptr(GError) error = NULL;
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        DaxBackend *backend = NULL;
        Config *config;
        sigset_t mask;
        int r;

        if (parse_args(argc, argv, &d.options) < 0)
                return 2;

        config = config_load(d.options.config, &error);
        if (!config) {
                log_error("Invalid configuration: %s", error->message);
                return 1;
        }
        r = dax_backend_new_from_string(d.options.backend, &backend);
        if (r < 0) {
                log_error("Cannot set up backend '%s': %s", d.options.backend ? d.options.backend : "sysfs",
                          strerror(-r));
                config_free(config);
                return 1;
        }

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        if (g_strcmp0(getenv("DAXBROKER_TEST_STALL"), "1") == 0)
                sigaddset(&mask, SIGUSR1);
        sigprocmask(SIG_BLOCK, &mask, NULL);

        r = sd_event_default(&event);
        if (r < 0) {
                log_error("Cannot create event loop: %s", strerror(-r));
                return 1;
        }
        (void) sd_event_add_signal(event, NULL, SIGTERM, on_sigterm, &d);
        (void) sd_event_add_signal(event, NULL, SIGINT, on_sigterm, &d);
        (void) sd_event_add_signal(event, NULL, SIGHUP, on_sighup, &d);
        if (g_strcmp0(getenv("DAXBROKER_TEST_STALL"), "1") == 0)
                (void) sd_event_add_signal(event, NULL, SIGUSR1, on_sigusr1_stall, &d);
        (void) sd_event_set_watchdog(event, true);

        BrokerSettings settings = {
                .state_dir = dir_option(d.options.state_dir, "STATE_DIRECTORY", STATE_DIR),
                .runtime_dir = dir_option(d.options.runtime_dir, "RUNTIME_DIRECTORY", RUNTIME_DIR),
        };
        events_set_ranges(config->journal_ranges);
        r = broker_new(event, backend, config, &settings, &d.broker, &error);
        if (r < 0) {
                log_error("%s", error->message);
                return 1;
        }
        (void) sd_notify(0, "STATUS=Reconciling state with the kernel");
        r = broker_start(d.broker, &error);
        if (r < 0) {
                log_error("%s", error->message);
                broker_free(d.broker);
                dax_backend_free(backend);
                return 1;
        }
        r = bus_new(event, d.broker, d.options.bus_address, &d.bus);
        if (r < 0) {
                broker_free(d.broker);
                dax_backend_free(backend);
                return 1;
        }

        /* After the bus: a hook's Allocate must be served while libvirt is
         * still being asked about the domain it starts. */
        if (config->libvirt_uri) {
                r = libvirt_watch_new(event, d.broker, config->libvirt_uri, config->libvirt_report_only,
                                      &d.libvirt);
                if (r < 0)
                        log_error("Cannot start watching libvirt at %s: %s; serving without it",
                                  config->libvirt_uri, strerror(-r));
        }

        if (!d.options.metrics_file) {
                const char *e = getenv("DAXBROKER_METRICS_FILE");

                d.options.metrics_file = e && *e ? e : NULL;
        }
        if (d.options.metrics_file) {
                uint64_t now;

                metrics_update(&d);
                (void) sd_event_now(event, CLOCK_MONOTONIC, &now);
                d.metrics_written_usec = now;
                if (sd_event_add_time(event, &d.metrics_timer, CLOCK_MONOTONIC, now + METRICS_INTERVAL_USEC, 0,
                                      on_metrics_timer, &d) >= 0)
                        metrics_set_changed(on_metrics_changed, &d);
        }
        (void) sd_notifyf(0, "READY=1\nSTATUS=Serving %u pools", broker_pools(d.broker)->len);
        r = sd_event_loop(event);

        metrics_set_changed(NULL, NULL);
        sd_event_source_disable_unref(d.metrics_timer);
        libvirt_watch_free(d.libvirt);
        bus_free(d.bus);
        broker_free(d.broker);
        dax_backend_free(backend);
        return r < 0 ? 1 : 0;
}
