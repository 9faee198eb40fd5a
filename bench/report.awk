# report.awk - turns the result lines of bench/floor and bench/bus-bench (one
# raw-KERNEL.txt of bench/guest-bench.sh) into the latency table and the
# ratios against the targets. Several runs of the same series (rounds) are
# combined as the median of their medians.
#
#   awk -f report.awk raw-6.1.txt
#
# Targets (issue 11; the daemon keeps 2 MiB warm devices, so its 2 MiB
# Allocate is a warm hand-over and its 1 GiB one cold): a warm Allocate at
# most 0.15x the floor's allocate, a cold one 1.2x; the Release reply 0.15x
# the floor's release; a burst of 20 warm Allocates 0.2x 20 floor
# allocates; with 500 live allocations every operation at most 1.05x its
# time with one; the daemon's RSS with 500 live at most 16 MiB, no CPU when
# idle. An Allocate that has to reclaim 1 GiB from the host at most 1.2x
# the raw sysfs sequence (offline blocks, unbind, destroy, create, map,
# bind). The
# target lines use the floor as defined (back-to-back raw cycle); the
# reference lines below them compare like with like where the daemon's work
# differs (see docs/benchmarks.md).

function median(list,    n, a, i, j, t) {
        n = split(list, a, " ")
        for (i = 2; i <= n; i++)
                for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) {
                        t = a[j]; a[j] = a[j - 1]; a[j - 1] = t
                }
        if (n == 0)
                return ""
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}

function med(tool, size, held, op,    k) {
        k = tool SUBSEP size SUBSEP held SUBSEP op
        return (k in meds) ? median(meds[k]) : ""
}

function fmt(v) {
        return v == "" ? "-" : sprintf("%.0f", v)
}

function ratio(a, b) {
        return (a == "" || b == "" || b + 0 == 0) ? "" : a / b
}

# A latency row: both sizes, 1 live and H live.
function lrow(label, tool, op) {
        if (med(tool, S2, 0, op) == "" && med(tool, S1G, 0, op) == "" && med(tool, S2, H, op) == "")
                return
        printf "  %-34s %10s %10s %10s %10s\n", label, fmt(med(tool, S2, 0, op)), fmt(med(tool, S2, H, op)),
                fmt(med(tool, S1G, 0, op)), fmt(med(tool, S1G, H, op))
}

# A ratio row (a / b per size, at held ha and hb); target 0: reference
# only; "T2,T1G": a target per size (0 for none); scale multiplies b.
function rrow(label, ta, opa, ha, tb, opb, hb, target, scale,    s, i, size, v, verdict, tg, t) {
        s = sprintf("  %-52s", label)
        split(target "", tg, ",")
        if (!(2 in tg))
                tg[2] = tg[1]
        for (i = 1; i <= 2; i++) {
                size = i == 1 ? S2 : S1G
                t = tg[i] + 0
                v = ratio(med(ta, size, ha, opa), med(tb, size, hb, opb) * (scale ? scale : 1))
                verdict = ""
                if (t > 0 && v != "") {
                        checked++
                        if (v <= t) {
                                verdict = " met"
                                met++
                        } else
                                verdict = " MISSED"
                }
                s = s sprintf("%13s", (v == "" ? "-" : sprintf("%.2f", v)) verdict)
        }
        print s (target != "0" && target != "" ? "   <= " target : "")
}

function pct(v) {
        return v == "" ? "-" : sprintf("%.2f", v)
}

# (daemon - floor) at H live over the same at 1 live, per size.
function drow(label, op,    s, i, size, a, b) {
        s = sprintf("  %-52s", label)
        for (i = 1; i <= 2; i++) {
                size = i == 1 ? S2 : S1G
                a = b = ""
                if (med("daemon", size, H, op) != "" && med("floor", size, H, op) != "")
                        a = med("daemon", size, H, op) - med("floor", size, H, op)
                if (med("daemon", size, 0, op) != "" && med("floor", size, 0, op) != "")
                        b = med("daemon", size, 0, op) - med("floor", size, 0, op)
                s = s sprintf("%13s", pct(b == "" || b + 0 <= 0 ? "" : ratio(a, b)))
        }
        print s
}

/^# / {
        if ($0 ~ /^# daemon (cpu|idle cpu)/)
                cpu[++n_cpu] = substr($0, 3)
        else if ($0 ~ /^# daemon [0-9]+ held: VmRSS:/) {
                rss[++n_rss] = substr($0, 3)
                if ($3 + 0 > 0 && $6 + 0 > rss_max[$3 + 0])
                        rss_max[$3 + 0] = $6 + 0
        } else if ($0 ~ /^# daemon [0-9]+ held: RssAnon:/)
                next
        else if ($0 !~ /^# round/)
                header[++n_header] = substr($0, 3)
        next
}

$1 == "result" {
        delete f
        for (i = 2; i <= NF; i++) {
                eq = index($i, "=")
                f[substr($i, 1, eq - 1)] = substr($i, eq + 1)
        }
        k = f["tool"] SUBSEP f["size"] SUBSEP f["held"] SUBSEP f["op"]
        meds[k] = meds[k] " " f["median_us"]
        kernel = f["kernel"]
        if (f["tool"] ~ /-reclaim/) {
                # One size and one filler for the whole reclaim suite.
                RSIZE = f["size"]
                RHELD = f["held"]
                have_reclaim = 1
        } else {
                have_allocate = 1
                if (f["held"] + 0 > H)
                        H = f["held"] + 0
        }
}

# Reclaim suite: one column, at size RSIZE with RHELD other devices.
function rmed(tool, op) {
        return med(tool, RSIZE, RHELD, op)
}

function rlrow(label, tool, op) {
        if (rmed(tool, op) != "")
                printf "  %-52s %12s\n", label, fmt(rmed(tool, op))
}

function rrrow(label, ta, opa, tb, opb, target, count,    v, verdict) {
        v = ratio(rmed(ta, opa), rmed(tb, opb))
        verdict = ""
        if (target > 0 && v != "") {
                if (count)
                        checked++
                if (v <= target) {
                        verdict = " met"
                        if (count)
                                met++
                } else
                        verdict = " MISSED"
        }
        printf "  %-52s %12s%s\n", label, (v == "" ? "-" : sprintf("%.2f", v)) verdict,
                (target > 0 ? sprintf("   <= %.1f%s", target, count ? "" : " (not counted)") : "")
}

function reclaim_report(    n, steps, s, size) {
        size = (RSIZE >= S1G && RSIZE % S1G == 0) ? RSIZE / S1G " GiB" : RSIZE / 1048576 " MiB"
        print ""
        printf "  %-52s %12s\n", "reclaim " size " from the host, median us", RHELD " other live"
        rlrow("raw sysfs: offline .. open", "floor-reclaim", "reclaim")
        rlrow("  of which back from the host (offline .. delete)", "floor-reclaim", "reclaim.host")
        rlrow("  of which the new device (create .. open)", "floor-reclaim", "reclaim.device")
        rlrow("raw sysfs + zeroing (memset, 1 thread)", "floor-reclaim-zero", "reclaim")
        rlrow("  of which zeroing", "floor-reclaim-zero", "reclaim.zero")
        rlrow("raw sysfs + zeroing (daemon's engine)", "floor-reclaim-scrub", "reclaim")
        rlrow("  of which zeroing", "floor-reclaim-scrub", "reclaim.zero")
        rlrow("raw + zeroing (engine), idle before (cold start)", "floor-reclaim-scrub-paused", "reclaim")
        rlrow("  of which back from the host (offline .. delete)", "floor-reclaim-scrub-paused", "reclaim.host")
        rlrow("  of which the new device (create .. open)", "floor-reclaim-scrub-paused", "reclaim.device")
        rlrow("daxctl: offline-memory .. create-device, open", "daxctl-reclaim", "reclaim")
        rlrow("  of which back from the host (.. destroy --force)", "daxctl-reclaim", "reclaim.host")
        rlrow("daemon Allocate that reclaims (zeroes before reply)", "daemon-reclaim", "reclaim")
        rlrow("daemon ReclaimFromHost (reply)", "daemon-reclaim", "reclaim-only")
        rlrow("daemon ReclaimFromHost until zeroed (DirtySize 0)", "daemon-reclaim", "reclaim-only.clean")
        rlrow("daemon Allocate of clean memory (no reclaim)", "daemon-reclaim", "allocate-clean")
        rlrow("daemon ReturnToHost (reply)", "daemon-reclaim", "return")

        print ""
        printf "  %-52s %12s\n", "raw steps (median us)", ""
        n = split("offline unbind remove_id size0 delete create mapping bind open", steps, " ")
        for (s = 1; s <= n; s++)
                rlrow(steps[s], "floor-reclaim", "reclaim." steps[s])
        rlrow("zero, memset (raw + zeroing run)", "floor-reclaim-zero", "reclaim.zero")
        rlrow("zero, daemon's engine (raw + scrub run)", "floor-reclaim-scrub", "reclaim.zero")
        printf "  %-52s %12s\n", "daxctl steps (median us)", ""
        n = split("offline-memory reconfigure-devdax destroy create open", steps, " ")
        for (s = 1; s <= n; s++)
                rlrow(steps[s], "daxctl-reclaim", "reclaim." steps[s])

        print ""
        printf "  %-52s %12s\n", "ratio of medians", size
        print "  target:"
        rrrow("daemon reclaiming Allocate / raw sequence", "daemon-reclaim", "reclaim", "floor-reclaim", "reclaim",
              1.2, 1)
        print "  reference:"
        rrrow("daemon reclaiming Allocate / raw + zeroing (engine)", "daemon-reclaim", "reclaim",
              "floor-reclaim-scrub", "reclaim", 1.2, 0)
        rrrow("daemon reclaiming Allocate / raw + zeroing, cold", "daemon-reclaim", "reclaim",
              "floor-reclaim-scrub-paused", "reclaim", 1.2, 0)
        rrrow("daemon reclaiming Allocate / raw + zeroing (memset)", "daemon-reclaim", "reclaim",
              "floor-reclaim-zero", "reclaim", 1.2, 0)
        rrrow("daemon ReclaimFromHost / raw offline .. delete", "daemon-reclaim", "reclaim-only", "floor-reclaim",
              "reclaim.host", 0, 0)
        rrrow("daemon ReclaimFromHost / same, cold", "daemon-reclaim", "reclaim-only",
              "floor-reclaim-scrub-paused", "reclaim.host", 0, 0)
        rrrow("daemon clean Allocate / raw create .. open", "daemon-reclaim", "allocate-clean", "floor-reclaim",
              "reclaim.device", 0, 0)
        rrrow("raw + zeroing (engine), cold / back to back", "floor-reclaim-scrub-paused", "reclaim",
              "floor-reclaim-scrub", "reclaim", 0, 0)
        rrrow("daxctl sequence / raw sequence", "daxctl-reclaim", "reclaim", "floor-reclaim", "reclaim", 0, 0)
        rrrow("daemon reclaiming Allocate / daxctl sequence", "daemon-reclaim", "reclaim", "daxctl-reclaim",
              "reclaim", 0, 0)
}

END {
        S2 = 2097152
        S1G = 1073741824
        L = H " live"
        print "== " kernel
        for (i = 1; i <= n_header; i++)
                print "   " header[i]
        if (have_reclaim)
                reclaim_report()
        if (have_allocate)
                allocate_report()
        print ""
        printf "  targets met: %d of %d\n", met, checked
}

function allocate_report(    i, s, n_steps, steps, n, w) {
        print ""
        printf "  %-34s %21s %21s\n", "median latency, microseconds", "2 MiB", "1 GiB"
        printf "  %-34s %10s %10s %10s %10s\n", "", "1 live", L, "1 live", L
        lrow("floor allocate", "floor", "allocate")
        lrow("floor release", "floor", "release")
        lrow("floor-paused allocate", "floor-paused", "allocate")
        lrow("floor-paused release", "floor-paused", "release")
        lrow("floor-zero release (incl. zeroing)", "floor-zero", "release")
        lrow("  of which zeroing", "floor-zero", "release.zero")
        lrow("daemon Allocate (2 MiB warm)", "daemon", "allocate")
        lrow("daemon burst of 20 warm Allocates", "daemon", "allocate.burst20")
        lrow("daemon Release (reply)", "daemon", "release")
        lrow("daemon Release until memory reusable", "daemon", "release.complete")
        lrow("daxctl create-device", "daxctl", "allocate")
        lrow("daxctl disable + destroy-device", "daxctl", "release")
        printf "  %-34s %10s %10s\n", "daemon bus round trip (Peer.Ping)", fmt(med("daemon", 0, 0, "ping")),
                fmt(med("daemon", 0, H, "ping"))
        if (H > 0) {
                printf "  %-34s %10s %10s\n", "2 MiB fill: floor, daemon", fmt(med("floor", S2, H, "fill")),
                        fmt(med("daemon", S2, H, "fill"))
                printf "  %-34s %10s %10s\n", "2 MiB drain: floor, daemon", fmt(med("floor", S2, H, "drain")),
                        fmt(med("daemon", S2, H, "drain"))
        }

        print ""
        printf "  %-34s %10s %10s %10s %10s\n", "floor steps (median us)", "2M 1 live", "2M " L, "1G 1 live",
                "1G " L
        n_steps = split("allocate.create allocate.mapping allocate.bind allocate.open release.close " \
                        "release.unbind release.remove_id release.size0 release.delete", steps, " ")
        for (s = 1; s <= n_steps; s++)
                lrow(steps[s], "floor", steps[s])
        for (s = 1; s <= n_steps; s++)
                lrow("paused " steps[s], "floor-paused", steps[s])

        print ""
        printf "  %-52s%13s%13s   %s\n", "ratio of medians", "2 MiB", "1 GiB", "target"
        print "  targets (2 MiB: warm, 1 GiB: cold):"
        rrow("daemon Allocate / floor allocate, 1 live", "daemon", "allocate", 0, "floor", "allocate", 0, "0.15,1.2")
        rrow("daemon Release reply / floor release, 1 live", "daemon", "release", 0, "floor", "release", 0, "0.15")
        rrow("burst of 20 warm Allocates / 20 floor allocates", "daemon", "allocate.burst20", 0, "floor",
             "allocate", 0, "0.2,0", 20)
        if (H > 0) {
                rrow("daemon Allocate, " L " / 1 live", "daemon", "allocate", H, "daemon", "allocate", 0, "1.05")
                rrow("daemon Release reply, " L " / 1 live", "daemon", "release", H, "daemon", "release", 0, "1.05")
                rrow("daemon Allocate / floor allocate, " L, "daemon", "allocate", H, "floor", "allocate", H, 0)
                rrow("daemon Release reply / floor release, " L, "daemon", "release", H, "floor", "release", H, 0)
        }
        if (H in rss_max) {
                checked++
                if (rss_max[H] <= 16384)
                        met++
                printf "  %-52s %10d KiB %s   <= 16384 KiB\n", "daemon VmRSS with " L, rss_max[H],
                       rss_max[H] <= 16384 ? "met" : "MISSED"
        }
        for (i = 1; i <= n_cpu; i++)
                if (cpu[i] ~ /^daemon idle cpu ticks over 10 s/) {
                        n = split(cpu[i], w, " ")
                        checked++
                        if (w[n] + 0 == 0)
                                met++
                        printf "  %-52s %10d ticks %s   = 0\n", "daemon CPU while idle, 10 s", w[n],
                               w[n] + 0 == 0 ? "met" : "MISSED"
                }
        print "  reference:"
        rrow("daemon Allocate / floor-paused allocate", "daemon", "allocate", 0, "floor-paused", "allocate", 0, 0)
        rrow("daemon Release until reusable / floor-zero release", "daemon", "release.complete", 0, "floor-zero",
             "release", 0, 0)
        rrow("floor-paused allocate / floor allocate", "floor-paused", "allocate", 0, "floor", "allocate", 0, 0)
        rrow("daemon Allocate during a 1 GiB scrub / idle", "daemon", "allocate.during-scrub", 0, "daemon",
             "allocate", 0, 0)
        if (H > 0) {
                rrow("daemon Release until reusable, " L " / 1 live", "daemon", "release.complete", H, "daemon",
                     "release.complete", 0, 0)
                rrow("floor allocate, " L " / 1 live", "floor", "allocate", H, "floor", "allocate", 0, 0)
                rrow("floor release, " L " / 1 live", "floor", "release", H, "floor", "release", 0, 0)
                # What a cold Allocate adds to the kernel's work (it does
                # the floor's work and more): does that part grow?
                drow("daemon cold Allocate - floor allocate, " L " / 1 live", "allocate")
        }
        # The bus alone, against the floor: no call through dbus-daemon
        # can beat this share.
        printf "  %-52s%13s%13s\n", "bus round trip (Peer.Ping) / floor allocate, 1 live",
               pct(ratio(med("daemon", 0, 0, "ping"), med("floor", S2, 0, "allocate"))),
               pct(ratio(med("daemon", 0, 0, "ping"), med("floor", S1G, 0, "allocate")))
        printf "  %-52s%13s%13s\n", "bus round trip (Peer.Ping) / floor release, 1 live",
               pct(ratio(med("daemon", 0, 0, "ping"), med("floor", S2, 0, "release"))),
               pct(ratio(med("daemon", 0, 0, "ping"), med("floor", S1G, 0, "release")))
        rrow("daxctl create-device / floor allocate, 1 live", "daxctl", "allocate", 0, "floor", "allocate", 0, 0)
        rrow("daxctl disable+destroy / floor release, 1 live", "daxctl", "release", 0, "floor", "release", 0, 0)
        if (H > 0) {
                rrow("daxctl create-device / floor allocate, " L, "daxctl", "allocate", H, "floor", "allocate", H, 0)
                rrow("daxctl disable+destroy / floor release, " L, "daxctl", "release", H, "floor", "release", H, 0)
        }
        for (i = 1; i <= n_cpu; i++)
                print "  " cpu[i]
}
