/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * invariant: one TAP check that the daemon's books match the kernel.
 *
 *   invariant [--bus-address ADDR] [--sim-state FILE | --sysfs] [--wait-clean]
 *             [--allocations N] [--what TEXT]
 *
 * --wait-clean first waits until no memory is waiting to be zeroed (the
 * invariant is about a quiet daemon); --allocations N also requires exactly
 * N allocations. Exit status 0 only if everything holds.
 */
#include <getopt.h>
#include <stdlib.h>

#include "rel-common.h"

int main(int argc, char **argv) {
        static const struct option options[] = {
                { "bus-address", required_argument, NULL, 'b' },
                { "sim-state", required_argument, NULL, 'S' },
                { "sysfs", no_argument, NULL, 's' },
                { "wait-clean", no_argument, NULL, 'w' },
                { "allocations", required_argument, NULL, 'a' },
                { "what", required_argument, NULL, 'W' },
                {},
        };
        const char *address = NULL, *what = "invariant";
        RelKernel k = {};
        bool wait = false;
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
