/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * invariant: one TAP check that the daemon's books match the kernel.
 *
 *   invariant [--bus-address ADDR] [--sim-state FILE | --sysfs] [--wait-clean]
 *             [--allocations N] [--strict] [--what TEXT]
 *
 * --wait-clean first waits until no memory is waiting to be zeroed (the
 * invariant is about a quiet daemon); --allocations N also requires exactly
 * N allocations. --strict is for a machine where nothing but the broker
 * touches the regions (the crash-point suites): no foreign memory, every
 * device with memory is an allocation's or a host chunk (kmem), no device
 * other than daxR.0 without memory (a seed left by a cut-short creation),
 * no two devices share a byte, every device lies in its region, and dirty
 * memory is part of the free memory. Exit status 0 only if everything holds.
 */
#include <getopt.h>
#include <stdlib.h>

#include <inttypes.h>
#include <string.h>

#include "rel-common.h"

static int range_cmp(const void *a, const void *b) {
        const RelRange *x = a, *y = b;
        return x->start < y->start ? -1 : x->start > y->start;
}

/* What a crash must never leave behind, beyond the sums of
 * rel_check_invariant. */
/* A device lying wholly in a warm extent of its pool is a warm device. */
static bool is_warm(sd_bus *bus, const RelPool *p, const RelDevice *x) {
        RelRange warm[256];
        int n = p ? rel_warm_ranges(bus, p, warm, 256) : 0;

        for (unsigned q = 0; q < x->n_ranges; q++) {
                bool in = false;

                for (int i = 0; i < n && !in; i++)
                        in = x->ranges[q].start >= warm[i].start &&
                             x->ranges[q].start + x->ranges[q].size <= warm[i].start + warm[i].size;
                if (!in)
                        return false;
        }
        return x->n_ranges > 0;
}

static unsigned check_strict_once(sd_bus *bus, const RelKernel *k, const char *what, FILE *out) {
        RelPool *pools = NULL;
        RelAlloc *all = NULL;
        RelDevice *devs = NULL;
        RelRange *spans = NULL;
        unsigned bad = 0, n_spans = 0;
        int np = rel_list_pools(bus, &pools), na = rel_list_allocations(bus, &all), nd = rel_list_devices(k, &devs);

#define FAIL(...) do { bad++; fprintf(out, "# %s: ", what); fprintf(out, __VA_ARGS__); fprintf(out, "\n"); } while (0)
        if (np < 0 || na < 0 || nd < 0) {
                FAIL("cannot list pools, allocations or devices");
                goto out;
        }
        for (int i = 0; i < np; i++) {
                if (pools[i].foreign != 0)
                        FAIL("pool %s: ForeignSize %" PRIu64 " MiB where nothing but the broker runs", pools[i].name,
                             pools[i].foreign / REL_MiB);
                if (pools[i].dirty > pools[i].free)
                        FAIL("pool %s: DirtySize %" PRIu64 " MiB exceeds FreeSize %" PRIu64 " MiB", pools[i].name,
                             pools[i].dirty / REL_MiB, pools[i].free / REL_MiB);
        }
        for (int d = 0; d < nd; d++) {
                const RelDevice *x = &devs[d];
                const RelPool *p = NULL;
                bool is_alloc = false;

                for (int i = 0; i < np && !p; i++)
                        if (pools[i].region == x->region)
                                p = &pools[i];
                for (int a = 0; a < na && !is_alloc; a++)
                        is_alloc = strcmp(all[a].device, x->name) == 0;
                if (x->size == 0 && x->instance != 0)
                        FAIL("seed device %s (size 0) left behind", x->name);
                if (x->size > 0 && !is_alloc && strcmp(x->driver, "kmem") != 0 && !is_warm(bus, p, x))
                        FAIL("orphan device %s (driver %s, %" PRIu64 " MiB) is no allocation and no host chunk",
                             x->name, x->driver, x->size / REL_MiB);
                for (unsigned q = 0; q < x->n_ranges; q++) {
                        if (p && (x->ranges[q].start < p->start ||
                                  x->ranges[q].start + x->ranges[q].size > p->start + p->size))
                                FAIL("device %s: range %#" PRIx64 "+%#" PRIx64 " lies outside region %u", x->name,
                                     x->ranges[q].start, x->ranges[q].size, x->region);
                        spans = realloc(spans, (n_spans + 1) * sizeof *spans);
                        spans[n_spans++] = x->ranges[q];
                }
        }
        if (n_spans > 0)
                qsort(spans, n_spans, sizeof *spans, range_cmp);
        for (unsigned i = 1; i < n_spans; i++)
                if (spans[i].start < spans[i - 1].start + spans[i - 1].size)
                        FAIL("two devices share memory at %#" PRIx64, spans[i].start);
        for (int a = 0; a < na; a++)
                for (int b = a + 1; b < na; b++)
                        if (all[a].device[0] && strcmp(all[a].device, all[b].device) == 0)
                                FAIL("allocations %s and %s name the same device %s", all[a].id, all[b].id,
                                     all[a].device);
#undef FAIL
out:
        free(pools);
        free(all);
        free(devs);
        free(spans);
        return bad;
}


int main(int argc, char **argv) {
        static const struct option options[] = {
                { "bus-address", required_argument, NULL, 'b' },
                { "sim-state", required_argument, NULL, 'S' },
                { "sysfs", no_argument, NULL, 's' },
                { "wait-clean", no_argument, NULL, 'w' },
                { "allocations", required_argument, NULL, 'a' },
                { "what", required_argument, NULL, 'W' },
                { "strict", no_argument, NULL, 'x' },
                {},
        };
        const char *address = NULL, *what = "invariant";
        RelKernel k = {};
        bool wait = false, strict = false;
        long want = -1;
        unsigned bad = 0;
        sd_bus *bus = NULL;
        RelAlloc *all = NULL;
        int c, n;

        while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0)
                switch (c) {
                case 'b': address = optarg; break;
                case 'S': k.sim_state = optarg; break;
                case 's': k.sysfs = true; break;
                case 'w': wait = true; break;
                case 'a': want = strtol(optarg, NULL, 10); break;
                case 'W': what = optarg; break;
                case 'x': strict = true; break;
                default: return 2;
                }
        if (rel_bus_open(address, &bus) < 0) {
                printf("1..1\nnot ok 1 - %s: cannot connect to the bus\n", what);
                return 1;
        }
        if (wait && !rel_wait_clean(bus)) {
                printf("# memory is still dirty after 600 s\n");
                bad++;
        }
        bad += rel_check_invariant(bus, k.sim_state || k.sysfs ? &k : NULL, what, stdout);
        if (strict && !k.sim_state && !k.sysfs) {
                printf("# %s: --strict needs --sysfs or --sim-state\n", what);
                bad++;
        } else if (strict)
                bad += rel_check_settled(check_strict_once, bus, &k, what, stdout);
        n = rel_list_allocations(bus, &all);
        if (want >= 0 && n != want) {
                printf("# %s: %d allocations, expected %ld\n", what, n, want);
                bad++;
        }
        free(all);
        printf("1..1\n%s 1 - %s: books match the kernel\n", bad ? "not ok" : "ok", what);
        sd_bus_flush_close_unref(bus);
        return bad ? 1 : 0;
}
