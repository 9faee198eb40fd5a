# report.awk - turns the result lines of bench/floor and bench/bus-bench (one
# raw-KERNEL.txt of bench/guest-bench.sh) into the latency table and the
# ratios against the targets. Several runs of the same series (rounds) are
# combined as the median of their medians and the mean of their means.
#
#   awk -f report.awk raw-6.1.txt
#
# Targets (from the issue): Allocate and Release each at most 1.3x the floor;
# with 500 live allocations at most 1.1x the latency with one.

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

function key(tool, size, held, op) {
        return tool SUBSEP size SUBSEP held SUBSEP op
}

function med(tool, size, held, op,    k) {
        k = key(tool, size, held, op)
        return (k in meds) ? median(meds[k]) : ""
}

function fmt(v) {
        return v == "" ? "-" : sprintf("%.0f", v)
}

function ratio(a, b) {
        return (a == "" || b == "" || b + 0 == 0) ? "" : a / b
}

function rfmt(r) {
        return r == "" ? "-" : sprintf("%.2f", r)
}

# One ratio row: name, ratio for each size, target (0: reference only).
function rrow(name, r2, r1g, target,    s, v, i, verdict) {
        s = sprintf("  %-46s", name)
        for (i = 1; i <= 2; i++) {
                v = i == 1 ? r2 : r1g
                verdict = ""
                if (target > 0 && v != "") {
                        checked++
                        if (v <= target) {
                                verdict = " met"
                                met++
                        } else
                                verdict = " MISSED"
                }
                s = s sprintf("%14s", rfmt(v) verdict)
        }
        print s (target > 0 ? sprintf("   <= %.2f", target) : "   (reference)")
}

/^# / {
        if ($0 !~ /^# (round|daemon cpu)/)
                header[++n_header] = substr($0, 3)
        else if ($0 ~ /^# daemon cpu/)
                cpu[++n_cpu] = substr($0, 3)
        next
}

$1 == "result" {
        delete f
        for (i = 2; i <= NF; i++) {
                eq = index($i, "=")
                f[substr($i, 1, eq - 1)] = substr($i, eq + 1)
        }
        k = key(f["tool"], f["size"], f["held"], f["op"])
        meds[k] = meds[k] " " f["median_us"]
        kernel = f["kernel"]
        if (f["held"] + 0 > maxheld)
                maxheld = f["held"] + 0
        runs[k]++
        samples[k] += f["n"]
}

END {
        S2 = 2097152
        S1G = 1073741824
        H = maxheld
        print "== " kernel
        for (i = 1; i <= n_header; i++)
                print "   " header[i]
        print ""
        printf "  median latency, microseconds      %22s %22s\n", "2 MiB", "1 GiB"
        printf "  %-32s %11s %10s %11s %10s\n", "", "1 live", H " live", "1 live", H " live"
        split("floor daemon daxctl", tools, " ")
        for (t = 1; t <= 3; t++)
                for (o = 1; o <= 2; o++) {
                        op = o == 1 ? "allocate" : "release"
                        if (med(tools[t], S2, 0, op) == "" && med(tools[t], S1G, 0, op) == "")
                                continue
                        printf "  %-32s %11s %10s %11s %10s\n", tools[t] " " op,
                                fmt(med(tools[t], S2, 0, op)), fmt(med(tools[t], S2, H, op)),
                                fmt(med(tools[t], S1G, 0, op)), fmt(med(tools[t], S1G, H, op))
                }
        printf "  %-32s %11s %10s\n", "daemon bus round trip (Ping)", fmt(med("daemon", 0, 0, "ping")),
                fmt(med("daemon", 0, H, "ping"))
        if (H > 0) {
                printf "  %-32s %11s %10s\n", "floor / daemon 2 MiB fill", fmt(med("floor", S2, H, "fill")),
                        fmt(med("daemon", S2, H, "fill"))
                printf "  %-32s %11s %10s\n", "floor / daemon 2 MiB drain", fmt(med("floor", S2, H, "drain")),
                        fmt(med("daemon", S2, H, "drain"))
        }

        print ""
        print "  floor steps (median us)          2 MiB 1 live   " H " live   1 GiB 1 live   " H " live"
        split("allocate.create allocate.mapping allocate.bind allocate.open release.close release.unbind " \
              "release.remove_id release.size0 release.delete", steps, " ")
        for (s = 1; s <= 9; s++)
                printf "  %-32s %11s %10s %11s %10s\n", steps[s], fmt(med("floor", S2, 0, steps[s])),
                        fmt(med("floor", S2, H, steps[s])), fmt(med("floor", S1G, 0, steps[s])),
                        fmt(med("floor", S1G, H, steps[s]))

        print ""
        printf "  %-46s%14s%14s   %s\n", "ratio (of medians)", "2 MiB", "1 GiB", "target"
        for (h = 0; h <= 1; h++) {
                hh = h ? H : 0
                live = h ? H " live" : "1 live"
                rrow("daemon Allocate / floor allocate, " live,
                     ratio(med("daemon", S2, hh, "allocate"), med("floor", S2, hh, "allocate")),
                     ratio(med("daemon", S1G, hh, "allocate"), med("floor", S1G, hh, "allocate")), 1.3)
                rrow("daemon Release / floor release, " live,
                     ratio(med("daemon", S2, hh, "release"), med("floor", S2, hh, "release")),
                     ratio(med("daemon", S1G, hh, "release"), med("floor", S1G, hh, "release")), 1.3)
        }
        if (H > 0) {
                rrow("daemon Allocate, " H " live / 1 live",
                     ratio(med("daemon", S2, H, "allocate"), med("daemon", S2, 0, "allocate")),
                     ratio(med("daemon", S1G, H, "allocate"), med("daemon", S1G, 0, "allocate")), 1.1)
                rrow("daemon Release, " H " live / 1 live",
                     ratio(med("daemon", S2, H, "release"), med("daemon", S2, 0, "release")),
                     ratio(med("daemon", S1G, H, "release"), med("daemon", S1G, 0, "release")), 1.1)
                rrow("floor allocate, " H " live / 1 live",
                     ratio(med("floor", S2, H, "allocate"), med("floor", S2, 0, "allocate")),
                     ratio(med("floor", S1G, H, "allocate"), med("floor", S1G, 0, "allocate")), 0)
                rrow("floor release, " H " live / 1 live",
                     ratio(med("floor", S2, H, "release"), med("floor", S2, 0, "release")),
                     ratio(med("floor", S1G, H, "release"), med("floor", S1G, 0, "release")), 0)
        }
        for (h = 0; h <= (H > 0); h++) {
                hh = h ? H : 0
                live = h ? H " live" : "1 live"
                rrow("daxctl create / floor allocate, " live,
                     ratio(med("daxctl", S2, hh, "allocate"), med("floor", S2, hh, "allocate")),
                     ratio(med("daxctl", S1G, hh, "allocate"), med("floor", S1G, hh, "allocate")), 0)
                rrow("daxctl disable+destroy / floor release, " live,
                     ratio(med("daxctl", S2, hh, "release"), med("floor", S2, hh, "release")),
                     ratio(med("daxctl", S1G, hh, "release"), med("floor", S1G, hh, "release")), 0)
        }
        for (i = 1; i <= n_cpu; i++)
                print "  " cpu[i]
        print ""
        printf "  targets met: %d of %d\n", met, checked
}
