/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * stress: many bus clients at once doing random allocate, open and release
 * with mixed sizes and options, in phases. After each phase the daemon's
 * books must match the kernel (rel_check_invariant) and, after the last,
 * its open fds and anonymous memory must be back where they were after the
 * first (warm-up) phase.
 *
 *   stress [--bus-address ADDR] [--sim-state FILE | --sysfs] --daemon-pid PID
 *          [--clients 32] [--phases 3] [--ops 25] [--seed 1] [--rss-slack PERCENT]
 *
 * Each client has its own connection and owner name. Phase 1 is a warm-up
 * that ends with every allocation released: its end is the baseline. Middle
 * phases keep their persistent allocations; every phase ends with the
 * clients disconnecting, which must release their transient allocations.
 * The last phase releases everything. The only errors allowed are running
 * out of memory (NoSpace), a busy allocation (Busy) and an allocation
 * request outliving its deadline (REL_ERROR_DEADLINE). Every new allocation
 * must read zero where the client looks (its first page).
 *
 * Output is TAP, then one summary line starting "stress:" with the
 * operations and the errors by name. Exit status 0 only if all holds.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "rel-common.h"

/* The error an Allocate gets when it waited past its deadline
 * (AllocateTimeout=, or the call's timeout-usec). */
#define REL_ERROR_DEADLINE REL_ERROR_PREFIX "TimedOut"

static const char *const allowed_errors[] = {
        REL_ERROR_PREFIX "NoSpace",
        REL_ERROR_PREFIX "Busy",
        REL_ERROR_DEADLINE,
};

#define CLIENT_ALLOCS_MAX 256
#define NAMES_MAX 32

typedef struct Held {
        char path[256];
        bool transient;
} Held;

typedef struct Client {
        unsigned id;
        uint64_t rng;
        char owner[32];
        unsigned label_counter;
        Held held[CLIENT_ALLOCS_MAX];
        unsigned n_held;
        unsigned ops;
        bool release_all; /* at the end of this phase */
} Client;

static const char *address;
static RelPool *pools;
static int n_pools;
static unsigned ops_per_phase = 25;

static pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
        char name[128];
        unsigned count;
} names[NAMES_MAX];
static unsigned n_names, n_ops, n_ok, n_unexpected;

static void count(const char *name, bool ok, bool unexpected, const char *what, const char *message) {
        pthread_mutex_lock(&stats_lock);
        n_ops++;
        if (ok)
                n_ok++;
        else {
                unsigned i;
                for (i = 0; i < n_names && strcmp(names[i].name, name) != 0; i++)
                        ;
                if (i == n_names && n_names < NAMES_MAX)
                        snprintf(names[n_names++].name, sizeof names[0].name, "%s", name);
                if (i < n_names)
                        names[i].count++;
        }
        if (unexpected) {
                n_unexpected++;
                printf("# unexpected: %s -> %s: %s\n", what, name, message ? message : "");
        }
        pthread_mutex_unlock(&stats_lock);
}

static bool error_allowed(const char *name) {
        for (size_t i = 0; i < sizeof allowed_errors / sizeof *allowed_errors; i++)
                if (name && strcmp(name, allowed_errors[i]) == 0)
                        return true;
        return false;
}

static uint64_t rnd(Client *c) {
        /* xorshift64*: deterministic per client and seed. */
        c->rng ^= c->rng >> 12;
        c->rng ^= c->rng << 25;
        c->rng ^= c->rng >> 27;
        return c->rng * UINT64_C(2685821657736338717);
}

static unsigned pick(Client *c, unsigned n) {
        return (unsigned) (rnd(c) % n);
}

static uint64_t max_u64(uint64_t a, uint64_t b) {
        return a > b ? a : b;
}

static uint64_t granule_of(const RelPool *p) {
        return max_u64(2 * REL_MiB, p->boundary);
}

static void do_allocate(Client *c, sd_bus *bus) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *m = NULL, *reply = NULL;
        uint64_t granule = 2 * REL_MiB, align = 0, size, smallest = UINT64_MAX;
        const RelPool *target = NULL;
        int node = -1, transient = pick(c, 4) == 0, contiguous = (int) pick(c, 3) - 1;
        char label[32], what[512];
        const char *path;
        int fd, r;

        /* By pool, by NUMA node, or anywhere: the granule must suit every
         * pool the request may land in, so that InvalidArgument is a bug. */
        switch (pick(c, 3)) {
        case 0:
                target = &pools[pick(c, n_pools)];
                granule = granule_of(target);
                smallest = target->size;
                break;
        case 1:
                node = pools[pick(c, n_pools)].node;
                for (int i = 0; i < n_pools; i++)
                        if (pools[i].node == node) {
                                granule = max_u64(granule, granule_of(&pools[i]));
                                smallest = pools[i].size < smallest ? pools[i].size : smallest;
                        }
                break;
        default:
                for (int i = 0; i < n_pools; i++) {
                        granule = max_u64(granule, granule_of(&pools[i]));
                        smallest = pools[i].size < smallest ? pools[i].size : smallest;
                }
        }
        switch (pick(c, 40)) {
        case 0: align = REL_GiB; break;
        case 1: case 2: case 3: case 4: align = 4096; break;
        case 5: case 6: case 7: case 8: case 9: case 10: align = 2 * REL_MiB; break;
        default: break;
        }
        granule = max_u64(granule, align);
        /* Mostly small, sometimes an eighth of a pool. */
        if (pick(c, 32) == 0)
                size = granule * (1 + pick(c, (unsigned) max_u64(1, smallest / granule / 8)));
        else
                size = granule * (1 + pick(c, granule >= 8 * REL_MiB ? 2 : 4));

        sd_bus_message_new_method_call(bus, &m, REL_DEST, REL_PATH, REL_MGR, "Allocate");
        sd_bus_message_append(m, "st", c->owner, size);
        sd_bus_message_open_container(m, 'a', "{sv}");
        if (target)
                sd_bus_message_append(m, "{sv}", "pool", "s", target->name);
        if (node >= 0)
                sd_bus_message_append(m, "{sv}", "numa-node", "i", node);
        if (align)
                sd_bus_message_append(m, "{sv}", "align", "t", align);
        if (contiguous >= 0)
                sd_bus_message_append(m, "{sv}", "contiguous", "b", contiguous);
        if (pick(c, 2)) {
                snprintf(label, sizeof label, "l%u", c->label_counter++);
                sd_bus_message_append(m, "{sv}", "label", "s", label);
        }
        if (transient)
                sd_bus_message_append(m, "{sv}", "transient", "b", 1);
        sd_bus_message_close_container(m);
        snprintf(what, sizeof what, "Allocate(%s, %" PRIu64 " MiB, pool %s, node %d, align %" PRIu64
                 ", contiguous %d, transient %d)", c->owner, size / REL_MiB, target ? target->name : "-", node,
                 align, contiguous, transient);

        r = sd_bus_call(bus, m, 0, &error, &reply);
        sd_bus_message_unref(m);
        if (r < 0) {
                count(error.name ? error.name : "(no name)", false, !error_allowed(error.name), what, error.message);
                sd_bus_error_free(&error);
                return;
        }
        r = sd_bus_message_read(reply, "oh", &path, &fd);
        if (r < 0) {
                count("(malformed reply)", false, true, what, strerror(-r));
                sd_bus_message_unref(reply);
                return;
        }
        /* Nobody else's data: the first page of a new allocation is zero. */
        uint64_t map_len = max_u64(2 * REL_MiB, align);
        unsigned char *mem = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (mem == MAP_FAILED)
                count("(mmap failed)", false, true, what, strerror(errno));
        else {
                bool zero = true;
                for (size_t i = 0; i < 4096; i++)
                        zero = zero && mem[i] == 0;
                if (!zero)
                        count("(old data visible)", false, true, what, path);
                else
                        count("", true, false, what, NULL);
                memset(mem, 0xa5, 4096);
                munmap(mem, map_len);
        }
        if (c->n_held < CLIENT_ALLOCS_MAX) {
                snprintf(c->held[c->n_held].path, sizeof c->held[0].path, "%s", path);
                c->held[c->n_held++].transient = transient;
        }
        sd_bus_message_unref(reply);
}

static void do_open(Client *c, sd_bus *bus) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        Held *h = &c->held[pick(c, c->n_held)];
        char what[300];
        int fd, r;

        snprintf(what, sizeof what, "Open(%s)", h->path);
        r = sd_bus_call_method(bus, REL_DEST, REL_PATH, REL_MGR, "Open", &error, &reply, "o", h->path);
        if (r < 0) {
                count(error.name ? error.name : "(no name)", false, !error_allowed(error.name), what, error.message);
                sd_bus_error_free(&error);
                return;
        }
        r = sd_bus_message_read(reply, "h", &fd);
        count(r < 0 ? "(malformed reply)" : "", r >= 0 && fcntl(fd, F_GETFD) >= 0, r < 0, what, NULL);
        sd_bus_message_unref(reply);
}

static void do_release(Client *c, sd_bus *bus, unsigned i) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        char what[300];
        int r;

        snprintf(what, sizeof what, "Release(%s)", c->held[i].path);
        r = sd_bus_call_method(bus, REL_DEST, REL_PATH, REL_MGR, "Release", &error, NULL, "o", c->held[i].path);
        if (r < 0)
                count(error.name ? error.name : "(no name)", false, !error_allowed(error.name), what, error.message);
        else
                count("", true, false, what, NULL);
        sd_bus_error_free(&error);
        if (r >= 0)
                c->held[i] = c->held[--c->n_held];
}

static void do_release_owner(Client *c, sd_bus *bus) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        uint32_t n = 0;
        char what[64];
        int r;

        snprintf(what, sizeof what, "ReleaseOwner(%s)", c->owner);
        r = sd_bus_call_method(bus, REL_DEST, REL_PATH, REL_MGR, "ReleaseOwner", &error, &reply, "s", c->owner);
        if (r < 0) {
                count(error.name ? error.name : "(no name)", false, !error_allowed(error.name), what, error.message);
                sd_bus_error_free(&error);
                return;
        }
        (void) sd_bus_message_read(reply, "u", &n);
        sd_bus_message_unref(reply);
        count(n == c->n_held ? "" : "(wrong count)", n == c->n_held, n != c->n_held, what, NULL);
        c->n_held = 0;
}

static void *client_run(void *arg) {
        Client *c = arg;
        sd_bus *bus = NULL;

        if (rel_bus_open(address, &bus) < 0) {
                count("(cannot connect)", false, true, c->owner, NULL);
                return NULL;
        }
        for (unsigned i = 0; i < c->ops; i++) {
                unsigned p = pick(c, 100);

                if (c->n_held == 0 || p < 45)
                        do_allocate(c, bus);
                else if (p < 70)
                        do_open(c, bus);
                else if (p < 98)
                        do_release(c, bus, pick(c, c->n_held));
                else
                        do_release_owner(c, bus);
        }
        if (c->release_all && c->n_held > 0)
                do_release_owner(c, bus);
        /* Disconnecting releases the transient ones. */
        sd_bus_flush_close_unref(bus);
        for (unsigned i = 0; i < c->n_held;)
                if (c->held[i].transient)
                        c->held[i] = c->held[--c->n_held];
                else
                        i++;
        return NULL;
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

/* Transient allocations go when the daemon sees the client leave. */
static bool wait_allocations(sd_bus *bus, unsigned want) {
        for (int i = 0; i < 6000; i++) {
                RelAlloc *all = NULL;
                int n = rel_list_allocations(bus, &all);

                free(all);
                if (n == (int) want)
                        return true;
                usleep(50 * 1000);
        }
        return false;
}

int main(int argc, char **argv) {
        static const struct option options[] = {
                { "bus-address", required_argument, NULL, 'b' },
                { "sim-state", required_argument, NULL, 'S' },
                { "sysfs", no_argument, NULL, 's' },
                { "daemon-pid", required_argument, NULL, 'p' },
                { "clients", required_argument, NULL, 'c' },
                { "phases", required_argument, NULL, 'P' },
                { "ops", required_argument, NULL, 'o' },
                { "seed", required_argument, NULL, 'r' },
                { "rss-slack", required_argument, NULL, 'R' },
                {},
        };
        unsigned n_clients = 32, phases = 3, seed = 1, slack = 10;
        int pid = 0, base_fds = -1, c;
        int64_t base_rss = -1;
        RelKernel k = {};
        Client *clients;
        sd_bus *bus = NULL;

        while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0)
                switch (c) {
                case 'b': address = optarg; break;
                case 'S': k.sim_state = optarg; break;
                case 's': k.sysfs = true; break;
                case 'p': pid = atoi(optarg); break;
                case 'c': n_clients = (unsigned) atoi(optarg); break;
                case 'P': phases = (unsigned) atoi(optarg); break;
                case 'o': ops_per_phase = (unsigned) atoi(optarg); break;
                case 'r': seed = (unsigned) atoi(optarg); break;
                case 'R': slack = (unsigned) atoi(optarg); break;
                default: return 2;
                }
        if (pid <= 0 || phases < 2 || n_clients == 0) {
                fprintf(stderr, "usage: stress --daemon-pid PID [--phases N>=2] ...\n");
                return 2;
        }
        if (rel_bus_open(address, &bus) < 0 || (n_pools = rel_list_pools(bus, &pools)) <= 0) {
                printf("1..0 # SKIP no daemon or no pools to stress\n");
                return 77;
        }

        clients = calloc(n_clients, sizeof *clients);
        for (unsigned i = 0; i < n_clients; i++) {
                clients[i].id = i;
                clients[i].rng = UINT64_C(0x9e3779b97f4a7c15) * (seed * 1000003ULL + i + 1);
                snprintf(clients[i].owner, sizeof clients[i].owner, "stress-%u", i);
        }

        for (unsigned ph = 1; ph <= phases; ph++) {
                pthread_t *threads = calloc(n_clients, sizeof *threads);
                unsigned held = 0, unexpected_before = n_unexpected;
                char what[64];

                for (unsigned i = 0; i < n_clients; i++) {
                        clients[i].ops = ops_per_phase;
                        clients[i].release_all = ph == 1 || ph == phases;
                        pthread_create(&threads[i], NULL, client_run, &clients[i]);
                }
                for (unsigned i = 0; i < n_clients; i++)
                        pthread_join(threads[i], NULL);
                free(threads);
                for (unsigned i = 0; i < n_clients; i++)
                        held += clients[i].n_held;

                check(n_unexpected == unexpected_before, "phase %u: %u clients x %u operations, no error but %s",
                      ph, n_clients, ops_per_phase, "NoSpace, Busy and the deadline");
                check(wait_allocations(bus, held), "phase %u: the daemon lists the %u allocations the clients "
                      "hold (transient ones went with their clients)", ph, held);
                check(rel_wait_clean(bus), "phase %u: released memory is zeroed", ph);
                snprintf(what, sizeof what, "after phase %u", ph);
                check(rel_check_invariant(bus, k.sim_state || k.sysfs ? &k : NULL, what, stdout) == 0,
                      "phase %u: allocated + free + host + foreign = size, allocations = devices, no overlap", ph);

                if (ph == 1) {
                        base_fds = rel_proc_fds(pid);
                        base_rss = rel_proc_rss_anon(pid);
                        printf("# baseline after the warm-up: %d fds, RssAnon %" PRId64 " KiB\n", base_fds,
                               base_rss / 1024);
                }
        }

        int fds = rel_proc_fds(pid);
        int64_t rss = rel_proc_rss_anon(pid);
        int64_t rss_max = base_rss + base_rss * slack / 100 + (int64_t) REL_MiB;
        check(fds >= 0 && fds == base_fds, "the daemon's open fds are back to the baseline: %d (baseline %d)", fds,
              base_fds);
        check(rss >= 0 && rss <= rss_max, "the daemon's RssAnon is back to the baseline: %" PRId64 " KiB "
              "(baseline %" PRId64 " KiB, allowed up to +%u%% + 1 MiB)", rss / 1024, base_rss / 1024, slack);
        check(rel_ping(bus), "the daemon still answers");

        printf("1..%u\n", n_test);
        printf("stress: clients=%u phases=%u operations=%u ok=%u unexpected=%u fds=%d->%d rss_kib=%" PRId64
               "->%" PRId64, n_clients, phases, n_ops, n_ok, n_unexpected, base_fds, fds, base_rss / 1024, rss / 1024);
        for (unsigned i = 0; i < n_names; i++)
                printf(" %s=%u", strncmp(names[i].name, REL_ERROR_PREFIX, strlen(REL_ERROR_PREFIX)) == 0 ?
                       names[i].name + strlen(REL_ERROR_PREFIX) : names[i].name, names[i].count);
        printf("\n");
        free(clients);
        free(pools);
        sd_bus_flush_close_unref(bus);
        return n_fail ? 1 : 0;
}
