/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * busfuzz: calls every method of org.daxbroker.Broker1 (Manager, Pool and
 * Allocation objects, their properties, introspection) with random and
 * mutated arguments: right signatures with hostile values (empty, huge and
 * odd strings, extreme sizes, option dictionaries with unknown keys, wrong
 * variant types, nested variants), and wrong signatures (missing, extra and
 * mistyped arguments, fds where none belong). Every call must get success
 * or a named error (org.daxbroker.Broker1.Error.* or
 * org.freedesktop.DBus.Error.*, but not the ones that mean the daemon is
 * gone or hangs: NoReply, Timeout, ServiceUnknown, NameHasNoOwner,
 * Disconnected). Afterwards the daemon must still answer and its books
 * must match the kernel.
 *
 *   busfuzz [--bus-address ADDR] [--sim-state FILE | --sysfs] [--daemon-pid PID]
 *           [--iterations 2000] [--seed 1]
 *
 * The same seed gives the same calls. Strings that are not valid UTF-8 (or
 * object paths, signatures) never reach the daemon: sd-bus refuses to put
 * them in a message; such attempts are counted as "refused by sd-bus".
 * Output is TAP, then one summary line starting "busfuzz:".
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rel-common.h"

static uint64_t rng;
static char *big;
static int devnull = -1;

static uint64_t rnd(void) {
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        return rng * UINT64_C(2685821657736338717);
}

static unsigned pick(unsigned n) {
        return (unsigned) (rnd() % n);
}

#define N_ELEMENTS(a) (sizeof(a) / sizeof((a)[0]))

static char known_ids[64][96];
static unsigned n_known_ids;
static char created[4096][256];
static unsigned n_created;

static const char *random_string(char *buf, size_t len) {
        static const char *const fixed[] = {
                "", "a", "vm1", "fuzz", "bounded", "open", "host", "regionX", "..", "../etc", "/", "a/b", ".hidden",
                "tab\there", "new\nline", "\x01\x02\x1f", "\x7f", "ü-ünïcode", "日本語", "sp ace", "-", "_",
                "label", "pool", "numa-node", "align", "contiguous", "transient", "device-uid", "device-gid",
                ":1.1", "org.daxbroker.Broker1", "%s%n%s", "\\", "\"quoted\"", "\xef\xbf\xbf",
        };
        switch (pick(6)) {
        case 0: {
                /* Long: around the 255-byte limits, or far beyond them. */
                static const size_t lens[] = { 63, 64, 255, 256, 4096, 65536, 1 << 20 };
                size_t n = lens[pick(N_ELEMENTS(lens))];
                return big + (4 * 1024 * 1024 - n);
        }
        case 1: {
                size_t n = pick(40);
                for (size_t i = 0; i < n && i + 1 < len; i++)
                        buf[i] = (char) (1 + pick(255)); /* maybe not UTF-8: sd-bus refuses those */
                buf[n < len ? n : len - 1] = 0;
                return buf;
        }
        case 2:
                snprintf(buf, len, "fuzz-%u", pick(8));
                return buf;
        default:
                return fixed[pick(N_ELEMENTS(fixed))];
        }
}

static const char *random_path(char *buf, size_t len) {
        switch (pick(7)) {
        case 0: return "/";
        case 1: return REL_PATH;
        case 2: return "/org/daxbroker/Broker1/pool/bounded";
        case 3: return "/org/daxbroker/Broker1/allocation/0000000000000000";
        case 4:
                if (n_created)
                        return created[pick(n_created)];
                /* fall through */
        case 5:
                if (n_known_ids) {
                        snprintf(buf, len, "/org/daxbroker/Broker1/allocation/%s", known_ids[pick(n_known_ids)]);
                        return buf;
                }
                /* fall through */
        default:
                snprintf(buf, len, "/org/daxbroker/Broker1/allocation/%s_%u", pick(2) ? "x" : "a", pick(1000));
                return buf;
        }
}

static uint64_t random_size(void) {
        static const uint64_t fixed[] = {
                0, 1, 4096, 2 * REL_MiB - 1, 2 * REL_MiB, 2 * REL_MiB + 1, 512 * REL_MiB, REL_GiB, 2 * REL_GiB,
                4 * REL_GiB, UINT64_C(1) << 62, UINT64_C(1) << 63, UINT64_MAX, UINT64_MAX - 2 * REL_MiB + 1,
        };
        if (pick(3) == 0)
                return 2 * REL_MiB * (1 + pick(64));
        return fixed[pick(N_ELEMENTS(fixed))];
}

/* Appends one value of a basic or simple container type. */
static int append_value(sd_bus_message *m, char type, int depth);

static int append_variant(sd_bus_message *m, int depth) {
        static const char types[] = "sitbudxyqngoav";
        char t = types[pick(sizeof types - 1)];
        char sig[4] = { t, 0 };
        int r;

        if (t == 'a') {
                strcpy(sig, "as");
        } else if (t == 'v' && depth > 3)
                t = sig[0] = 's';
        r = sd_bus_message_open_container(m, 'v', sig);
        if (r < 0)
                return r;
        r = t == 'a' ? append_value(m, 'A', depth + 1) : append_value(m, t, depth + 1);
        if (r < 0)
                return r;
        return sd_bus_message_close_container(m);
}

static int append_options(sd_bus_message *m, int depth) {
        static const char *const keys[] = {
                "pool", "numa-node", "align", "contiguous", "label", "transient", "device-uid", "device-gid",
        };
        unsigned n = pick(7);
        char buf[64];
        int r;

        r = sd_bus_message_open_container(m, 'a', "{sv}");
        for (unsigned i = 0; r >= 0 && i < n; i++) {
                const char *key = pick(5) ? keys[pick(N_ELEMENTS(keys))] : random_string(buf, sizeof buf);

                r = sd_bus_message_open_container(m, 'e', "sv");
                if (r >= 0)
                        r = sd_bus_message_append_basic(m, 's', key);
                /* Mostly the type the key wants, so that values are tested too. */
                if (r >= 0 && pick(3)) {
                        static const struct { const char *key; char type; } want[] = {
                                { "pool", 's' }, { "numa-node", 'i' }, { "align", 't' }, { "contiguous", 'b' },
                                { "label", 's' }, { "transient", 'b' }, { "device-uid", 'u' }, { "device-gid", 'u' },
                        };
                        char t = 's';
                        for (size_t k = 0; k < N_ELEMENTS(want); k++)
                                if (strcmp(want[k].key, key) == 0)
                                        t = want[k].type;
                        char sig[2] = { t, 0 };
                        r = sd_bus_message_open_container(m, 'v', sig);
                        if (r >= 0)
                                r = append_value(m, t, depth + 1);
                        if (r >= 0)
                                r = sd_bus_message_close_container(m);
                } else if (r >= 0)
                        r = append_variant(m, depth + 1);
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
        }
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        return r;
}

static int append_value(sd_bus_message *m, char type, int depth) {
        char buf[256];

        switch (type) {
        case 's': return sd_bus_message_append_basic(m, 's', random_string(buf, sizeof buf));
        case 'o': return sd_bus_message_append_basic(m, 'o', random_path(buf, sizeof buf));
        case 'g': return sd_bus_message_append_basic(m, 'g', pick(2) ? "sta{sv}" : "");
        case 't': {
                uint64_t v = random_size();
                return sd_bus_message_append_basic(m, 't', &v);
        }
        case 'x': {
                int64_t v = (int64_t) random_size();
                return sd_bus_message_append_basic(m, 'x', &v);
        }
        case 'u': case 'i': {
                static const uint32_t fixed[] = { 0, 1, 2, 7, 65534, 65535, 0x7fffffff, 0x80000000, 0xffffffff };
                uint32_t v = fixed[pick(N_ELEMENTS(fixed))];
                return sd_bus_message_append_basic(m, type, &v);
        }
        case 'n': case 'q': {
                uint16_t v = (uint16_t) rnd();
                return sd_bus_message_append_basic(m, type, &v);
        }
        case 'y': {
                uint8_t v = (uint8_t) rnd();
                return sd_bus_message_append_basic(m, 'y', &v);
        }
        case 'b': {
                int v = (int) pick(2);
                return sd_bus_message_append_basic(m, 'b', &v);
        }
        case 'd': {
                double v = pick(2) ? -1.5 : 1e300;
                return sd_bus_message_append_basic(m, 'd', &v);
        }
        case 'h':
                return sd_bus_message_append_basic(m, 'h', &devnull);
        case 'v':
                return append_variant(m, depth);
        case 'O':
                return append_options(m, depth);
        case 'A': {
                int r = sd_bus_message_open_container(m, 'a', "s");
                for (unsigned i = 0, n = pick(4); r >= 0 && i < n; i++)
                        r = sd_bus_message_append_basic(m, 's', random_string(buf, sizeof buf));
                return r < 0 ? r : sd_bus_message_close_container(m);
        }
        default:
                return -EINVAL;
        }
}

typedef struct Method {
        const char *interface;
        const char *member;
        const char *args; /* O = a{sv}, A = as */
        int target;       /* 0 manager, 1 a pool, 2 an allocation, 3 any path */
} Method;

static const Method methods[] = {
        { REL_MGR, "Allocate", "stO", 0 },
        { REL_MGR, "Release", "o", 0 },
        { REL_MGR, "ReleaseOwner", "s", 0 },
        { REL_MGR, "Open", "o", 0 },
        { REL_MGR, "ReturnToHost", "st", 0 },
        { REL_MGR, "ReclaimFromHost", "st", 0 },
        { REL_MGR, "ListPools", "", 0 },
        { REL_MGR, "ListAllocations", "", 0 },
        { "org.freedesktop.DBus.Properties", "Get", "ss", 3 },
        { "org.freedesktop.DBus.Properties", "GetAll", "s", 3 },
        { "org.freedesktop.DBus.Properties", "Set", "ssv", 3 },
        { "org.freedesktop.DBus.Introspectable", "Introspect", "", 3 },
        { "org.freedesktop.DBus.Peer", "Ping", "", 3 },
        { REL_MGR, "NoSuchMethod", "", 0 },
        { "org.daxbroker.Broker1.Pool", "Allocate", "stO", 1 },
        { "org.daxbroker.Broker1.Allocation", "Release", "", 2 },
};

/* Error names that mean the daemon is gone, hangs or the call never got
 * through: never an acceptable answer. */
static const char *const fatal_errors[] = {
        "org.freedesktop.DBus.Error.NoReply",        "org.freedesktop.DBus.Error.Timeout",
        "org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner",
        "org.freedesktop.DBus.Error.Disconnected",   "org.freedesktop.DBus.Error.TimedOut",
};

static bool error_named(const char *name) {
        if (!name)
                return false;
        for (size_t i = 0; i < N_ELEMENTS(fatal_errors); i++)
                if (strcmp(name, fatal_errors[i]) == 0)
                        return false;
        return strncmp(name, REL_ERROR_PREFIX, strlen(REL_ERROR_PREFIX)) == 0 ||
               strncmp(name, "org.freedesktop.DBus.Error.", strlen("org.freedesktop.DBus.Error.")) == 0;
}

static void refresh_ids(sd_bus *bus) {
        RelAlloc *all = NULL;
        int n = rel_list_allocations(bus, &all);

        n_known_ids = 0;
        for (int i = 0; i < n && n_known_ids < N_ELEMENTS(known_ids); i++)
                snprintf(known_ids[n_known_ids++], sizeof known_ids[0], "%s", all[i].id);
        free(all);
}

static unsigned n_test, n_fail;

static void check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(bool ok, const char *fmt, ...) {
        va_list ap;

        n_test++;
        n_fail += !ok;
        printf("%s %u - ", ok ? "ok" : "not ok", n_test);
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        printf("\n");
        fflush(stdout);
}

int main(int argc, char **argv) {
        static const struct option options[] = {
                { "bus-address", required_argument, NULL, 'b' },
                { "sim-state", required_argument, NULL, 'S' },
                { "sysfs", no_argument, NULL, 's' },
                { "daemon-pid", required_argument, NULL, 'p' },
                { "iterations", required_argument, NULL, 'n' },
                { "seed", required_argument, NULL, 'r' },
                {},
        };
        static const char wrong_types[] = "stuibhdvoyxOA";
        const char *address = NULL;
        unsigned iterations = 2000, seed = 1, n_calls = 0, n_ok = 0, n_named = 0, n_refused = 0, n_bad = 0;
        unsigned per_method_ok[N_ELEMENTS(methods)] = {}, per_method_err[N_ELEMENTS(methods)] = {};
        RelKernel k = {};
        sd_bus *bus = NULL, *check_bus = NULL;
        int pid = 0, c;

        while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0)
                switch (c) {
                case 'b': address = optarg; break;
                case 'S': k.sim_state = optarg; break;
                case 's': k.sysfs = true; break;
                case 'p': pid = atoi(optarg); break;
                case 'n': iterations = (unsigned) strtoul(optarg, NULL, 10); break;
                case 'r': seed = (unsigned) strtoul(optarg, NULL, 10); break;
                default: return 2;
                }
        rng = UINT64_C(0x9e3779b97f4a7c15) * (seed + 1);
        big = malloc(4 * 1024 * 1024 + 1);
        memset(big, 'x', 4 * 1024 * 1024);
        big[4 * 1024 * 1024] = 0;
        devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (rel_bus_open(address, &bus) < 0 || rel_bus_open(address, &check_bus) < 0 || !rel_ping(bus)) {
                printf("1..0 # SKIP no daemon to fuzz\n");
                return 77;
        }
        refresh_ids(check_bus);

        for (unsigned it = 0; it < iterations; it++) {
                unsigned mi = pick(N_ELEMENTS(methods));
                const Method *meth = &methods[mi];
                sd_bus_error error = SD_BUS_ERROR_NULL;
                sd_bus_message *m = NULL, *reply = NULL;
                char args[8], pathbuf[256];
                const char *path = REL_PATH;
                int r;

                if (meth->target == 1)
                        path = pick(2) ? "/org/daxbroker/Broker1/pool/bounded" : "/org/daxbroker/Broker1/pool/open";
                else if (meth->target == 2 || (meth->target == 3 && pick(2)))
                        path = random_path(pathbuf, sizeof pathbuf);

                /* Mostly the real signature, else a wrong one. */
                if (pick(4)) {
                        snprintf(args, sizeof args, "%s", meth->args);
                } else {
                        unsigned n = pick(4);
                        for (unsigned i = 0; i < n; i++)
                                args[i] = wrong_types[pick(sizeof wrong_types - 1)];
                        args[n] = 0;
                }

                r = sd_bus_message_new_method_call(bus, &m, REL_DEST, path, meth->interface, meth->member);
                for (const char *a = args; r >= 0 && *a; a++)
                        r = append_value(m, *a, 0);
                if (r < 0) {
                        /* e.g. a string that is not UTF-8 */
                        n_refused++;
                        sd_bus_message_unref(m);
                        continue;
                }
                n_calls++;
                r = sd_bus_call(bus, m, 30 * 1000 * 1000, &error, &reply);
                if (r >= 0) {
                        const char *p;
                        int fd;

                        n_ok++;
                        per_method_ok[mi]++;
                        if (strcmp(meth->member, "Allocate") == 0 && sd_bus_message_read(reply, "oh", &p, &fd) > 0 &&
                            n_created < N_ELEMENTS(created))
                                snprintf(created[n_created++], sizeof created[0], "%s", p);
                } else if (error_named(error.name)) {
                        n_named++;
                        per_method_err[mi]++;
                } else {
                        n_bad++;
                        printf("# call %u: %s.%s(%s) on %s got no named error: %s: %s\n", it, meth->interface,
                               meth->member, args, path, error.name ? error.name : "(none)",
                               error.message ? error.message : strerror(-r));
                        if (!rel_ping(check_bus)) {
                                printf("# the daemon no longer answers\n");
                                sd_bus_error_free(&error);
                                sd_bus_message_unref(m);
                                break;
                        }
                }
                sd_bus_error_free(&error);
                sd_bus_message_unref(reply);
                sd_bus_message_unref(m);
                if (it % 50 == 0)
                        refresh_ids(check_bus);
        }

        check(n_bad == 0, "%u calls: each got success or a named error (%u success, %u named errors)", n_calls, n_ok,
              n_named);
        for (size_t i = 0; i < N_ELEMENTS(methods); i++)
                printf("# %s.%s: %u success, %u errors\n", methods[i].interface, methods[i].member, per_method_ok[i],
                       per_method_err[i]);
        /* What the fuzzer allocated goes: transient ones with its connection. */
        for (unsigned i = 0; i < n_created; i++)
                sd_bus_call_method(check_bus, REL_DEST, REL_PATH, REL_MGR, "Release", NULL, NULL, "o", created[i]);
        sd_bus_flush_close_unref(bus);
        check(rel_ping(check_bus), "the daemon still answers");
        check(pid <= 0 || kill(pid, 0) == 0, "the daemon is still running");
        check(rel_wait_clean(check_bus), "released memory is zeroed");
        check(rel_check_invariant(check_bus, k.sim_state || k.sysfs ? &k : NULL, "after fuzzing", stdout) == 0,
              "allocated + free + host + foreign = size, allocations = devices, no overlap");
        printf("1..%u\n", n_test);
        printf("busfuzz: seed=%u iterations=%u calls=%u success=%u named_errors=%u refused_by_sdbus=%u unnamed=%u "
               "daemon_alive=%s\n", seed, iterations, n_calls, n_ok, n_named, n_refused, n_bad,
               rel_ping(check_bus) ? "yes" : "no");
        sd_bus_flush_close_unref(check_bus);
        free(big);
        return n_fail ? 1 : 0;
}
