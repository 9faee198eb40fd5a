#!/bin/bash
# Runs daxbrokerd on the sim backend on a private dbus-daemon, then one test
# against it. Usage: harness.sh BUILD_ROOT SOURCE_ROOT TEST
#   scenarios   the scenario suite
#   crash       three allocations, kill -9, restart: all three come back
#   crash-scrub fill, release, the daemon dies half-way through zeroing it
#               (SIGKILL at scrub-half), restart: dirty, then reads zero
#   stop        SIGTERM while zeroing (held at scrub-half): exit 0,
#               restart: nothing lost
#   introspect  exported API equals dbus/org.daxbroker.Broker1.xml
#   ctl         daxbrokerctl verbs, human and --json
#   metrics     the metrics file parses as OpenMetrics and equals ListPools
#   events      each event's journal entry and fields (in export format
#               through DAXBROKER_TEST_JOURNAL_FILE), the metrics counters
#               moving by exactly the operations, a restore after a reboot
#   host        idle memory goes to the host and comes back (HostReturn=yes)
#   host-autoonline  the same with blocks onlined behind the broker's back
#   host-busy   a host chunk with an unmovable block: reclaim fails cleanly
#   host-hang   the same with a block whose offlining never finishes
#   host-crash  kill -9 at every step of return and reclaim
#   host-deadline  an Allocate waiting for a hung reclaim times out, leaving nothing
#   crash-points  kill -9 at every named crash point in turn (daxbrokerd
#               --list-crash-points), restart, check the invariant;
#               CRASH_POINTS=short: the last point of each operation;
#               CRASH_POINTS="P1 P2": just those
#   reboot-host three allocations, then a reboot that onlines every region
#               as host RAM (memhp default): all three come back, same ranges
#   reboot-host-pinned  the same with an unmovable block in region 0: its
#               allocations stay listed (restoring), their ranges reserved
#   tenants     three uids and a polkit that grants allocate only: owners,
#               quotas, stable paths, physical addresses, polkit jamming
#   corrupt-state, stress, busfuzz   see tests/reliability/bus-cases.sh
#   libvirt-hook  the libvirt hook over sample domain XMLs
set -u
build=$1 src=$2 what=$3
# The sim keeps the memory's bytes in files under $tmp: on tmpfs, as RAM
# (what memory is), not written out to a disk.
tmp=$(mktemp -d /dev/shm/daxbroker-bus.XXXXXX 2>/dev/null || mktemp -d /tmp/daxbroker-bus.XXXXXX)
daemon_pid= bus_pid=
cleanup() {
        [ -n "$daemon_pid" ] && kill -9 "$daemon_pid" 2>/dev/null
        [ -n "$bus_pid" ] && kill "$bus_pid" 2>/dev/null
        wait 2>/dev/null
        rm -rf "$tmp"
}
trap cleanup EXIT

command -v dbus-daemon >/dev/null || { echo "1..0 # SKIP dbus-daemon is not installed"; exit 77; }

cat > "$tmp/bus.conf" <<CONF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$tmp/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="signal"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
  </policy>
</busconfig>
CONF
dbus-daemon --config-file="$tmp/bus.conf" --nofork --nopidfile &
bus_pid=$!
addr="unix:path=$tmp/bus"
for _ in $(seq 100); do [ -S "$tmp/bus" ] && break; sleep 0.05; done

mkdir -p "$tmp/state" "$tmp/run"
cat > "$tmp/daxbroker.conf" <<CONF
[Pool bounded]
Region=0
Boundary=512M

[Pool open]
Region=1
CONF
backend="sim:0:4G:2G:0,1:8G:2G:1;boot=devdax;state=$tmp/sim-kernel.json"
case "$what" in
host*|crash-points|events)
        # Region 1 returns idle memory to the host: 1 GiB chunks, of which
        # the top one (9G..10G) is what the pin modes make unmovable.
        cat > "$tmp/daxbroker.conf" <<CONF
[Pool bounded]
Region=0
Boundary=512M

[Pool host]
Region=1
HostReturn=yes
Reserve=512M
HostReturnDelay=1s
CONF
        # Returns happen when the workload asks, not behind the check's back.
        [ "$what" = crash-points ] && sed -i 's/^HostReturnDelay=1s/HostReturnDelay=1h/' "$tmp/daxbroker.conf"
        ;;
esac
if [ "$what" = tenants ]; then
        # Other uids connect to the bus and read the stable paths.
        chmod 0755 "$tmp"
        printf '[Broker]\nMaxAllocationsPerUid=6\n' >>"$tmp/daxbroker.conf"
fi
case "$what" in
host-busy) backend="$backend;pin=0x250000000:busy" ;;
host-hang) backend="$backend;pin=0x250000000:hang" ;;
host-autoonline) backend="$backend;autoonline=online_movable" ;;
metrics) export DAXBROKER_METRICS_FILE=$tmp/metrics/daxbroker.prom; mkdir -p "$tmp/metrics" ;;
events)
        export DAXBROKER_METRICS_FILE=$tmp/metrics/daxbroker.prom DAXBROKER_TEST_JOURNAL_FILE=$tmp/journal.export
        mkdir -p "$tmp/metrics"
        # Returns and reclaims only when the test asks.
        sed -i 's/^HostReturnDelay=1s/HostReturnDelay=1h/' "$tmp/daxbroker.conf" ;;
esac

start_daemon() {
        "$build/src/daxbrokerd" --config "$tmp/daxbroker.conf" --state-dir "$tmp/state" \
                --runtime-dir "$tmp/run" --backend "$backend" --bus-address "$addr" \
                2>>"$tmp/daemon.log" &
        daemon_pid=$!
        for _ in $(seq 200); do
                if busctl --address="$addr" call org.freedesktop.DBus /org/freedesktop/DBus \
                        org.freedesktop.DBus NameHasOwner s org.daxbroker.Broker1 2>/dev/null | grep -q true; then
                        return 0
                fi
                kill -0 "$daemon_pid" 2>/dev/null || break
                sleep 0.05
        done
        echo "# daxbrokerd did not come up:"; sed 's/^/# /' "$tmp/daemon.log"
        return 1
}

# The daemon has died at the crash point STEP: by SIGKILL (status 137), and
# its log names the step.
killed_at() { # STEP
        local st
        for _ in $(seq 3000); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$daemon_pid" 2>/dev/null; then
                echo "# the daemon never reached $1"
                kill -9 "$daemon_pid"; wait "$daemon_pid" 2>/dev/null; daemon_pid=
                return 1
        fi
        wait "$daemon_pid" 2>/dev/null; st=$?; daemon_pid=
        if [ "$st" != 137 ]; then
                echo "# the daemon exited with status $st, not by SIGKILL (137), waiting for $1"
                return 1
        fi
        if ! grep -q "DAXBROKER_TEST_CRASH_AT=$1: killing" "$tmp/daemon.log"; then
                echo "# no crash logged at $1"
                return 1
        fi
        echo "# the daemon was killed at $1"
}

if [ "$what" = stop ]; then
        # The first start zeroes every pool; hold that half-way.
        touch "$tmp/hold"
        export DAXBROKER_TEST_CRASH_AT=scrub-half DAXBROKER_TEST_HOLD_WHILE=$tmp/hold
fi
start_daemon || exit 1
unset DAXBROKER_TEST_CRASH_AT DAXBROKER_TEST_HOLD_WHILE
scn=("$build/tests/scenarios/scenarios" --bus-address "$addr" --runtime-dir "$tmp/run")
rc=0
case "$what" in
scenarios)
        "${scn[@]}" run || rc=1
        ;;
crash)
        "${scn[@]}" setup-persist "$tmp/persist" || rc=1
        kill -9 "$daemon_pid"; wait "$daemon_pid" 2>/dev/null; daemon_pid=
        start_daemon || exit 1
        "${scn[@]}" check-persist "$tmp/persist" || rc=1
        ;;
stop)
        # A clean stop while memory is still being zeroed in the background
        # (the first start zeroes every pool, held half-way) exits 0 and
        # loses nothing.
        "${scn[@]}" setup-persist "$tmp/persist" || rc=1
        for _ in $(seq 3000); do
                grep -q "DAXBROKER_TEST_CRASH_AT=scrub-half: holding" "$tmp/daemon.log" && break; sleep 0.1
        done
        grep -q "DAXBROKER_TEST_CRASH_AT=scrub-half: holding" "$tmp/daemon.log" ||
                { echo "# zeroing never reached scrub-half"; rc=1; }
        "${scn[@]}" zeroing || rc=1
        kill -TERM "$daemon_pid"; rm -f "$tmp/hold"; wait "$daemon_pid"; st=$?; daemon_pid=
        if [ $st != 0 ]; then echo "# daxbrokerd exited with $st on SIGTERM"; rc=1; fi
        start_daemon || exit 1
        "${scn[@]}" check-persist "$tmp/persist" || rc=1
        ;;
crash-scrub)
        # Restarted clean, with a crash point half-way through zeroing.
        "${scn[@]}" wait-clean || rc=1
        kill -TERM "$daemon_pid"; wait "$daemon_pid"; daemon_pid=
        export DAXBROKER_TEST_CRASH_AT=scrub-half
        start_daemon || exit 1
        unset DAXBROKER_TEST_CRASH_AT
        "${scn[@]}" setup-dirty "$tmp/dirty" || rc=1
        killed_at scrub-half || rc=1
        # Restarted, the daemon holds its zeroing at the same point, so
        # the test sees the memory still dirty before it is zeroed.
        touch "$tmp/hold"
        export DAXBROKER_TEST_CRASH_AT=scrub-half DAXBROKER_TEST_HOLD_WHILE=$tmp/hold
        start_daemon || exit 1
        unset DAXBROKER_TEST_CRASH_AT DAXBROKER_TEST_HOLD_WHILE
        "${scn[@]}" check-dirty "$tmp/dirty" "$tmp/hold" || rc=1
        ;;
introspect)
        out=$(busctl --address="$addr" call org.daxbroker.Broker1 /org/daxbroker/Broker1 \
                org.daxbroker.Broker1.Manager Allocate sta{sv} scn-intro 2097152 0 2>&1)
        path=$(echo "$out" | awk '{print $2}' | tr -d '"')
        python3 "$src/tests/bus/check-introspection.py" --xml "$src/dbus/org.daxbroker.Broker1.xml" \
                --bus-address "$addr" --allocation-path "$path" || rc=1
        [ $rc = 0 ] && echo "1..1" && echo "ok 1 - introspection equals the contract"
        ;;
metrics)
        # Debian's python3: python3-prometheus-client (scripts/packages.txt)
        # is installed for it, not for another python3 earlier in PATH.
        /usr/bin/python3 "$src/tests/bus/check-metrics.py" "$addr" "$DAXBROKER_METRICS_FILE" "$build/src/daxbrokerctl" || rc=$?
        ;;
events)
        TAP_PLAN=no /usr/bin/python3 "$src/tests/bus/check-events.py" run "$addr" "$DAXBROKER_TEST_JOURNAL_FILE" \
                "$DAXBROKER_METRICS_FILE" "$src/systemd/daxbroker.catalog" "$tmp/daxbroker.conf" "$daemon_pid" \
                "$tmp/daemon.log" | tee "$tmp/events.tap"
        [ "${PIPESTATUS[0]}" = 0 ] || rc=1
        keep=$(sed -n 's/^# keep //p' "$tmp/events.tap")
        done_n=$(sed -n 's/^# done //p' "$tmp/events.tap")
        # A reboot: the allocation comes back, and its restore is an event.
        kill -TERM "$daemon_pid"; wait "$daemon_pid"; daemon_pid=
        rm -f "$tmp/sim-kernel.json"
        start_daemon || exit 1
        TAP_DONE=${done_n:-0} /usr/bin/python3 "$src/tests/bus/check-events.py" restored "$addr" \
                "$DAXBROKER_TEST_JOURNAL_FILE" "${keep:-none}" || rc=1
        ;;
ctl)
        "$src/tests/bus/ctl-test.sh" "$build/src/daxbrokerctl" "$addr" || rc=1
        ;;
libvirt-hook)
        "$src/tests/libvirt/hook-test.sh" "$build/src/daxbroker-libvirt-hook" "$addr" "$tmp/run"; st=$?
        [ $st = 77 ] && exit 77
        [ $st = 0 ] || rc=1
        ;;
host|host-autoonline)
        "${scn[@]}" host host $((1 << 30)) $((512 << 20)) || rc=1
        ;;
host-busy|host-hang)
        "${scn[@]}" host-pinned host --must-fail || rc=1
        grep -q "Reclaiming host memory: .*memory[0-9]" "$tmp/daemon.log" ||
                { echo "# the daemon did not log which block refused"; rc=1; }
        ;;
reboot-host|reboot-host-pinned)
        # One TAP plan per test: the set-up's own lines become comments.
        "${scn[@]}" setup-persist "$tmp/persist" >"$tmp/setup.tap" || rc=1
        sed 's/^/# setup: /' "$tmp/setup.tap"
        kill -TERM "$daemon_pid"; wait "$daemon_pid"; daemon_pid=
        # The host reboots; the kernel onlines every region as System RAM.
        rm -f "$tmp/sim-kernel.json"
        backend="${backend/boot=devdax/boot=kmem-online}"
        [ "$what" = reboot-host-pinned ] && backend="$backend;pin=0x150000000:busy"
        start_daemon || exit 1
        if [ "$what" = reboot-host ]; then
                # Host RAM may have been written over the allocations while
                # the host ran: restored memory is zeroed, not the pattern.
                "${scn[@]}" check-persist "$tmp/persist" --after-reboot || rc=1
        else
                "${scn[@]}" check-restoring "$tmp/persist" || rc=1
                grep -q "Cannot restore allocation .*host RAM" "$tmp/daemon.log" ||
                        { echo "# the daemon did not log why an allocation waits"; rc=1; }
        fi
        ;;
crash-points)
        # Every point in turn, each from a fresh boot of the sim, so that
        # start-up points (take-over, zeroing) are reached too.
        kill -TERM "$daemon_pid"; wait "$daemon_pid"; daemon_pid=
        base_backend=$backend
        call() { busctl --address="$addr" call org.daxbroker.Broker1 /org/daxbroker/Broker1 \
                org.daxbroker.Broker1.Manager "$@" 2>/dev/null; }
        settle() { # wait until no pool has dirt being zeroed
                for _ in $(seq 300); do
                        kill -0 "$daemon_pid" 2>/dev/null || return 0
                        busctl --address="$addr" --json=short call org.daxbroker.Broker1 /org/daxbroker/Broker1 \
                                org.daxbroker.Broker1.Manager ListPools 2>/dev/null |
                                python3 -c 'import json,sys; sys.exit(any(p[11] for p in json.load(sys.stdin)["data"][0]))' &&
                                return 0
                        sleep 0.1
                done
        }
        points=$("$build/src/daxbrokerd" --list-crash-points | cut -f1)
        # The short run (CI's bus suite): the last point of each operation.
        case ${CRASH_POINTS:-all} in all|short) ;; *) points=$CRASH_POINTS ;; esac
        if [ "${CRASH_POINTS:-all}" = short ]; then
                points=$(echo "$points" | awk -F- '{last[$1]=$0; if (!($1 in seen)) {seen[$1]=1; order[++n]=$1}}
                        END {for (i = 1; i <= n; i++) print last[order[i]]}')
        fi
        total=0 reached=0 bad=0
        for point in $points; do
                total=$((total + 1))
                rm -rf "$tmp/state" "$tmp/run" "$tmp/sim-kernel.json"; mkdir -p "$tmp/state" "$tmp/run"
                backend=$base_backend
                case $point in
                restore-*)
                        start_daemon || exit 1
                        "${scn[@]}" setup-persist "$tmp/persist" >/dev/null
                        kill -TERM "$daemon_pid"; wait "$daemon_pid"; daemon_pid=
                        rm -f "$tmp/sim-kernel.json"
                        backend="${base_backend/boot=devdax/boot=kmem-online}" ;;
                rollback-*)
                        # A creation cut short leaves a record and a device.
                        DAXBROKER_TEST_CRASH_AT=allocate-bound start_daemon || exit 1
                        call Allocate 'sta{sv}' scn-cp 268435456 1 pool s host
                        wait "$daemon_pid" 2>/dev/null; daemon_pid= ;;
                esac
                export DAXBROKER_TEST_CRASH_AT=$point
                start_daemon >/dev/null
                unset DAXBROKER_TEST_CRASH_AT
                # The workload: an allocation handed to a user (zeroing the
                # dirt it takes), its release and zeroing, a return to the
                # host and a reclaim from it.
                alive() { kill -0 "$daemon_pid" 2>/dev/null; }
                if alive; then
                        out=$(call Allocate 'sta{sv}' scn-cp 536870912 2 pool s host device-uid u 65534)
                        path=$(echo "$out" | awk '{print $2}' | tr -d '"')
                        alive && [ -n "$path" ] && call Release o "$path" >/dev/null
                        settle
                        alive && call ReturnToHost st host 1073741824 >/dev/null
                        settle
                        alive && timeout 120 "${scn[@]}" host-trigger host >/dev/null 2>&1
                fi
                for _ in $(seq 600); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
                if kill -0 "$daemon_pid" 2>/dev/null; then
                        echo "# $point: not reached by the workload"
                        kill -9 "$daemon_pid"; wait "$daemon_pid" 2>/dev/null; daemon_pid=
                        continue
                fi
                wait "$daemon_pid" 2>/dev/null; daemon_pid=
                if ! grep -q "DAXBROKER_TEST_CRASH_AT=$point:" "$tmp/daemon.log"; then
                        echo "# $point: the daemon died without reaching it"; bad=$((bad + 1)); continue
                fi
                reached=$((reached + 1))
                start_daemon || { echo "not ok - restart after a crash at $point"; bad=$((bad + 1)); continue; }
                settle
                if python3 "$src/tests/bus/sim-invariant.py" "$tmp/sim-kernel.json" "$tmp/state/state.json" "$addr" \
                                > "$tmp/check.out" 2>&1 &&
                        { [[ $point != restore-* ]] || call ReleaseOwner s scn-persist >/dev/null; } &&
                        "${scn[@]}" host-check host >> "$tmp/check.out" 2>&1; then
                        echo "ok - crash at $point: state and kernel agree, the host pool is whole and reads zero"
                else
                        echo "not ok - crash at $point: inconsistent after restart"; bad=$((bad + 1))
                        grep -E '^not ok|INCONSISTENT|Traceback|Error' "$tmp/check.out" | sed 's/^/#   /' 
                fi
                kill -TERM "$daemon_pid"; wait "$daemon_pid"; daemon_pid=
        done
        echo "# crash points: $reached of $total reached, $bad inconsistencies"
        [ "$bad" = 0 ] && [ "$reached" -gt 0 ] || rc=1
        ;;
host-deadline)
        # Offlining a block takes 3 s here (a slow kernel): an Allocate
        # that needs it, with a 1 s deadline, fails with TimedOut.
        kill -TERM "$daemon_pid"; wait "$daemon_pid"; daemon_pid=
        export DAXBROKER_TEST_DELAY_AT=reclaim-offline:3000000
        start_daemon || exit 1
        unset DAXBROKER_TEST_DELAY_AT
        "${scn[@]}" deadline host || rc=1
        ;;
host-crash)
        # kill -9 at every step of return and reclaim; after a restart the
        # sums hold and the whole pool can be reclaimed and handed out.
        kill -TERM "$daemon_pid"; wait "$daemon_pid"; daemon_pid=
        for step in return-bound return-online reclaim-offline reclaim-offlined reclaim-unbound reclaim-destroyed; do
                echo "# crash at $step"
                export DAXBROKER_TEST_CRASH_AT=$step
                start_daemon || exit 1
                unset DAXBROKER_TEST_CRASH_AT
                case $step in
                reclaim-*) "${scn[@]}" host-trigger host >/dev/null ;;
                esac
                killed_at "$step" || rc=1
                start_daemon || exit 1
                "${scn[@]}" host-check host || { echo "# check after a crash at $step failed"; rc=1; }
                kill -TERM "$daemon_pid"; wait "$daemon_pid"; daemon_pid=
        done
        ;;
tenants)
        mkdir -p "$tmp/tenants"
        "$src/tests/bus/tenants-test.sh" "$build/src/daxbrokerctl" "$build/tests/bus/polkit-mock" "$addr" \
                "$tmp/run" "$tmp/tenants"
        rc=$?
        [ $rc = 77 ] && exit 77
        [ $rc != 0 ] && { echo "# polkit mock log:"; sed 's/^/# /' "$tmp/tenants/polkit.log"; }
        ;;
corrupt-state|stress|busfuzz)
        . "$src/tests/reliability/bus-cases.sh"
        ;;
*)
        echo "unknown test $what"; exit 2 ;;
esac
if [ $rc != 0 ]; then
        echo "# daemon log:"; sed 's/^/# /' "$tmp/daemon.log"
fi
exit $rc
