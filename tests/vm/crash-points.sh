# SPDX-License-Identifier: LGPL-2.1-or-later
# The crash-point suite of the QEMU rig, sourced by payload.sh (mode
# crash-points) with its $scn $res $pid, start_daemon, no_stranding and rc.
#
# Kills daxbrokerd at every point `daxbrokerd --list-crash-points` names, in
# turn, in one boot, and after each restart checks the daemon's books
# against sysfs (tests/reliability/invariant --strict: every byte of every
# region is exactly one of allocated, free, host, dirty, foreign; every
# allocation is a device_dax device with exactly its ranges; no seed, orphan
# or zero-size device is left) and that each pool can be handed out whole,
# reading zero (no dirty range is ever handed out).
#
# A point is reached by one of these scenarios, tried in the order its
# operation suggests (any unknown operation tries all):
#   steady    the daemon as the last check left it
#   fresh     a boot: daxR.0 spans each region (device_dax), no state file,
#             so the start takes the devices over and zeroes everything
#   adopted   the same, but region 1 is host RAM (kmem, online) the daemon
#             adopts as host capacity and reclaims when an allocation needs it
#   restore   three persistent allocations, then a reboot into the 6.12
#             default layout (region 1 online host RAM) with a new boot id
#   adopted-chunk  a 128 MiB host chunk of ours whose record is lost, so
#             the daemon adopts it as host capacity and reclaims it
#   rollback  an allocation cut short at allocate-bound, so the start
#             rolls it back
# and the workload `scenarios crash-workload host` (allocate with a device
# owner and write, release, zero, return 1 GiB to the host, reclaim it).
# A point that no scenario reaches is not covered, and fails the suite.
# $res/crash-points, if present, names the points to run (CRASH_POINTS), or
# says "short": the last point of each operation.

rel=$(dirname "$scn")/../reliability
# The state store: one file per record, meta.json holding the boot id.
state=/var/lib/daxbroker/state
bs=$((0x$(cat /sys/devices/system/memory/block_size_bytes)))
bus=(busctl --system)
mgr=(org.daxbroker.Broker1 /org/daxbroker/Broker1 org.daxbroker.Broker1.Manager)

stop() {
        kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; local st=$?; pid=
        return $st
}

# The memory blocks of a device's ranges.
dev_blocks() { # DEV
        local m s e b
        for m in /sys/bus/dax/devices/"$1"/mapping[0-9]*; do
                [ -d "$m" ] || continue
                s=$(($(cat "$m/start"))) e=$(($(cat "$m/end")))
                for ((b = s / bs; b <= e / bs; b++)); do echo "$b"; done
        done
}

unbind_dev() { # DEV
        local drv b
        [ -e "/sys/bus/dax/devices/$1/driver" ] || return 0
        drv=$(basename "$(readlink -f "/sys/bus/dax/devices/$1/driver")")
        if [ "$drv" = kmem ]; then
                for b in $(dev_blocks "$1"); do
                        grep -qx online "/sys/devices/system/memory/memory$b/state" 2>/dev/null &&
                                echo offline >"/sys/devices/system/memory/memory$b/state"
                done
        fi
        echo "$1" >"/sys/bus/dax/drivers/$drv/unbind" || return 1
        echo "$1" >"/sys/bus/dax/drivers/$drv/remove_id" 2>/dev/null
        return 0
}

# What a boot leaves (the daemon is stopped): daxR.0 spans region R, bound
# to DRIVER; kmem memory online (movable), as memhp auto-online leaves it.
boot_layout() { # R DRIVER
        local r=$1 drv=$2 d n b region=/sys/bus/dax/devices/dax$1.0/../dax_region
        for d in /sys/bus/dax/devices/dax"$r".*; do
                n=$(basename "$d")
                unbind_dev "$n" || { echo "# cannot unbind $n"; return 1; }
                [ "$n" = "dax$r.0" ] && continue
                echo 0 >"$d/size" && echo "$n" >"$region/delete" || { echo "# cannot delete $n"; return 1; }
        done
        echo 0 >"/sys/bus/dax/devices/dax$r.0/size" &&
                cat "$region/size" >"/sys/bus/dax/devices/dax$r.0/size" &&
                echo "dax$r.0" >"/sys/bus/dax/drivers/$drv/new_id" || { echo "# cannot rebuild dax$r.0"; return 1; }
        if [ "$drv" = kmem ]; then
                for b in $(dev_blocks "dax$r.0"); do
                        grep -qx offline "/sys/devices/system/memory/memory$b/state" &&
                                echo online_movable >"/sys/devices/system/memory/memory$b/state"
                done
        fi
        return 0
}

# Starts the daemon with the crash point armed; it may die before it owns
# its name (a start-up point).
start_armed() { # POINT
        DAXBROKER_TEST_CRASH_AT=$1 /usr/sbin/daxbrokerd >>"$res/daemon.log" 2>&1 &
        pid=$!
        for _ in $(seq 600); do
                "${bus[@]}" call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus \
                        NameHasOwner s org.daxbroker.Broker1 2>/dev/null | grep -q true && return 0
                kill -0 "$pid" 2>/dev/null || return 0
                sleep 0.1
        done
}

# Until no pool has dirt (or the daemon is gone); a liveness bound only.
settle() {
        for _ in $(seq 3000); do
                kill -0 "$pid" 2>/dev/null || return 0
                d=$("${bus[@]}" --json=short call "${mgr[@]}" ListPools 2>/dev/null | jq '[.data[0][][11]] | add')
                [ "$d" = 0 ] && return 0
                sleep 0.1
        done
}

prepare() { # SCENARIO
        case $1 in
        steady) ;;
        fresh|adopted)
                boot_layout 0 device_dax || return 1
                boot_layout 1 "$([ "$1" = adopted ] && echo kmem || echo device_dax)" || return 1
                rm -rf "$state" "$state".* /var/lib/daxbroker/state.json* ;;
        restore)
                start_daemon >/dev/null || return 1
                "$scn" --sysfs setup-persist "$res/persist" >"$res/setup.out" ||
                        { sed 's/^/# setup: /' "$res/setup.out"; stop; return 1; }
                stop
                boot_layout 0 device_dax && boot_layout 1 kmem || return 1
                # A new boot as the daemon sees it.
                grep -q '"boot_id"' "$state/meta.json" || { echo "# no boot id in $state/meta.json"; return 1; }
                sed -i 's/"boot_id": *"[^"]*"/"boot_id": "00000000000000000000000000000000"/' "$state/meta.json" ;;
        adopted-chunk)
                # A host chunk of ours whose record is lost: to the daemon
                # it is a kmem device some other tool made.
                start_daemon >/dev/null || return 1
                settle
                "${bus[@]}" call "${mgr[@]}" ReturnToHost st host $((128 << 20)) >/dev/null || { stop; return 1; }
                stop
                ls "$state"/host-*.json >/dev/null 2>&1 || { echo "# no host chunk on record"; return 1; }
                rm -f "$state"/host-*.json ;;
        rollback)
                start_armed allocate-bound
                "$scn" --sysfs crash-workload host >/dev/null 2>&1
                for _ in $(seq 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
                kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; pid= ;;
        esac
}

scenarios_for() { # POINT
        # kmem removes daxR.0 never, so a reclaim of a device taken over
        # gets to its last step only with a chunk of ours whose record is
        # gone (adopted-chunk).
        case $1 in
        reclaim-adopted-deleted) echo adopted-chunk; return ;;
        reclaim-adopted-*) echo adopted adopted-chunk; return ;;
        esac
        case ${1%%-*} in
        allocate|release|scrub|return|reclaim) echo steady fresh adopted ;;
        adopt) echo fresh adopted ;;
        restore) echo restore ;;
        rollback) echo rollback ;;
        *) echo steady fresh adopted restore rollback ;;
        esac
}

# A call to the dead daemon must not start another one behind the test's
# back (the daemon's restarts are the test's).
rm -f /usr/share/dbus-1/system-services/org.daxbroker.Broker1.service
"${bus[@]}" call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus ReloadConfig
points=$(/usr/sbin/daxbrokerd --list-crash-points | cut -f1)
# "short" (CI): the last point of each operation, where the most kernel
# work is done and not yet on record.
if [ "$(cat "$res/crash-points" 2>/dev/null)" = short ]; then
        points=$(echo "$points" | awk -F- '{op = $1 ($1 == "reclaim" && $2 == "adopted" ? "-adopted" : "")
                last[op] = $0; if (!(op in seen)) {seen[op] = 1; order[++n] = op}}
                END {for (i = 1; i <= n; i++) print last[order[i]]}')
elif [ -s "$res/crash-points" ]; then
        points=$(cat "$res/crash-points")
fi
n_all=$(echo "$points" | wc -w)
total=0 covered=0 bad=0 uncovered=
# The first start zeroes both regions; the loop starts from a quiet daemon.
start_daemon || exit 1
settle
stop
for point in $points; do
        total=$((total + 1)) t0=$(cut -d. -f1 /proc/uptime)
        how=
        for s in $(scenarios_for "$point"); do
                prepare "$s" || { echo "# $point: cannot prepare scenario $s"; continue; }
                lines=$(wc -l <"$res/daemon.log")
                start_armed "$point"
                if kill -0 "$pid" 2>/dev/null; then
                        "$scn" --sysfs crash-workload host >/dev/null 2>&1
                        settle
                fi
                if kill -0 "$pid" 2>/dev/null; then
                        # Not reached here: leave the daemon quiet and empty.
                        "$scn" --sysfs cleanup >/dev/null 2>&1
                        "${bus[@]}" call "${mgr[@]}" ReleaseOwner s scn-persist >/dev/null 2>&1
                        settle
                        stop
                        continue
                fi
                wait "$pid" 2>/dev/null; st=$?; pid=
                if [ "$st" = 137 ] && tail -n +$((lines + 1)) "$res/daemon.log" |
                                grep -q "DAXBROKER_TEST_CRASH_AT=$point: killing"; then
                        how=$s
                        break
                fi
                echo "# $point ($s): the daemon ended with status $st without being killed there"
                tail -n +$((lines + 1)) "$res/daemon.log" | tail -5 | sed 's/^/#   /'
        done
        if [ -z "$how" ]; then
                echo "not ok $total - $point: no scenario reaches it (not covered)"
                uncovered="$uncovered $point"
                # Whatever the last try left, the next point starts quiet.
                continue
        fi
        covered=$((covered + 1))
        problems=
        if ! start_daemon >"$res/check.out" 2>&1; then
                problems="the daemon does not start again"
        else
                "$rel/invariant" --sysfs --wait-clean --strict --what "after a crash at $point" >"$res/check.out" 2>&1 ||
                        problems="the books do not match sysfs"
                if [ "$how" = restore ]; then
                        # Cut short anywhere, the restore still zeroes the
                        # host's data out of the allocations in pool host.
                        "$scn" --sysfs check-persist "$res/persist" --from-host host >>"$res/check.out" 2>&1 ||
                                problems="restored allocations do not hold what they must"
                        "${bus[@]}" call "${mgr[@]}" ReleaseOwner s scn-persist >/dev/null
                fi
                for p in host bounded; do
                        "$scn" --sysfs host-check $p >>"$res/check.out" 2>&1 ||
                                problems="${problems:+$problems; }pool $p is not whole or does not read zero"
                done
                "$rel/invariant" --sysfs --wait-clean --strict --allocations 0 --what "after the checks" \
                        >>"$res/check.out" 2>&1 || problems="${problems:+$problems; }the books do not match after the checks"
                stop || problems="${problems:+$problems; }the daemon did not stop cleanly"
        fi
        no_stranding >>"$res/check.out" 2>&1 || problems="${problems:+$problems; }memory stranded"
        if [ -n "$problems" ]; then
                bad=$((bad + 1))
                echo "not ok $total - crash at $point ($how): $problems"
                grep -E '^(not ok|# )' "$res/check.out" | sed 's/^/#   /'
        else
                echo "ok $total - crash at $point ($how): restarted, books match sysfs, pools whole and zero"
        fi
        echo "#   $point: $(($(cut -d. -f1 /proc/uptime) - t0)) s" 
done
echo "1..$total"
echo "# $covered of $n_all crash points covered${uncovered:+ (not covered:$uncovered)}"
echo "# crash points covered: $covered"
echo "# inconsistencies found: $bad"
[ "$covered" = "$n_all" ] && [ "$bad" = 0 ] || rc=1
