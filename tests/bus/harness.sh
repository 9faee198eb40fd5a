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
#   return-early  ReturnToHost right after the first start, while every
#               pool is being zeroed (slowly: a slow kernel): with
#               HostZeroesOnAlloc=no the window is zeroed first and the
#               call waits for it (or fails with TimedOut at its
#               deadline, leaving nothing); with yes it is lent dirty at once
#   scrub-stuck the first chunk of the host pool cannot be zeroed (the sim
#               holds an address of it busy): the rest is zeroed, memory
#               goes to the host, the Pool says what is stuck; once the
#               fault clears the chunk is zeroed on a retry
#   crash-points  kill -9 at every named crash point in turn (daxbrokerd
#               --list-crash-points), restart, check the invariant;
#               CRASH_POINTS=short: the last point of each operation;
#               CRASH_POINTS="P1 P2": just those
#   reboot-host three allocations, then a reboot that onlines every region
#               as host RAM (memhp default): all three come back, same ranges
#   reboot-host-pinned  the same with an unmovable block in region 0: its
#               allocations stay listed (restoring), their ranges reserved
#   hmat        pools that know their node's HMAT (the sim models it),
#               placement by bandwidth, latency and tier, cache-isolated
#               owners; their colours survive a restart and a reboot
#   hmat-host   the same pools lending memory to the host: colour
#               requests take back only the chunks of colours they can use;
#               a node of soft-reserved memory alone gets its HMAT once
#               memory of it is onlined
#   tenants     three uids and a polkit that grants allocate only: owners,
#               quotas, stable paths, physical addresses, polkit jamming
#   corrupt-state, stress, busfuzz   see tests/reliability/bus-cases.sh
#   libvirt-hook  the libvirt hook over sample domain XMLs
#   release-async  Release replies while its kernel work is held: the
#               allocation is off the bus, the node root's again, the
#               device still there and its ranges not handed out; once
#               zeroed they read zero
#   warm        the warm set: hand-over of a device made before the call
#               (fd, device-uid), never to a request it does not match,
#               adopted back after kill -9, given back to a larger request
#               and to ReturnToHost
#   warm-burst  16 Allocates that warm devices fit, sent together: each
#               gets its own device, and they share far fewer than 16
#               durable saves (fsyncs of the state directory, from the
#               metrics file); a ReleaseOwner read right behind such a burst
#               releases all of it, and one of transient Allocates from a
#               client that leaves before the replies leaves nothing; then the
#               same burst with the daemon killed
#               at the fourth hand-over's chown: the three that were
#               answered are there after the restart, and no memory is lost
set -u
build=$1 src=$2 what=$3
# Every save that names what changed is checked against a save of
# everything: the daemon aborts (and the test fails) when one missed a change.
export DAXBROKER_TEST_CHECK_SAVES=1
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
host*|crash-points|scrub-stuck|return-early|events)
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
        # One warm device of the workload's size, which its Allocate is
        # handed and its reclaim gives back.
        [ "$what" = crash-points ] && sed -i 's/^HostReturnDelay=1s/HostReturnDelay=1h\nWarmSizes=512M\nWarmBudget=512M/' \
                "$tmp/daxbroker.conf"
        ;;
esac
if [ "$what" = hmat ] || [ "$what" = hmat-host ]; then
        # Node 0: fast, both access classes. Node 1: slower, access1 with
        # an attribute the kernel left out, and a 512 MiB direct-mapped
        # memory-side cache: 4 colours of 128 MiB over the 2 GiB at 8 GiB.
        cat > "$tmp/daxbroker.conf" <<CONF
[Pool bounded]
Region=0
Boundary=512M
Tier=fast

[Pool open]
Region=1
Tier=big
Colors=4
HostReturn=yes
HostChunk=128M
HostReturnDelay=1h
CONF
        backend="$backend;access=0:0:20000:18000:100:110,0:1:19000:17000:120:130,1:0:6000:5000:300:350,1:1:5000:4000:400:-"
        backend="$backend;cache=1:1:512M:64:0:0"
        hmat_expect='{"0": {"access": [[0,20000,18000,100,110],[1,19000,17000,120,130]], "caches": []},
                      "1": {"access": [[0,6000,5000,300,350],[1,5000,4000,400,-1]], "caches": [[1,536870912,64,"direct-mapped","write-back"]]},
                      "2": {"access": [[0,2000,1000,160,200],[1,2000,1000,170,210]], "caches": []}}'
        if [ "$what" = hmat-host ]; then
                # Node 2: soft-reserved memory alone; the sim, like the
                # kernel, publishes its HMAT once some of it is online.
                backend="${backend/1:8G:2G:1;/1:8G:2G:1,2:12G:1G:2;}"
                backend="$backend;access=2:0:2000:1000:160:200,2:1:2000:1000:170:210;hotplug=2"
                printf '\n[Pool cold]\nRegion=2\nHostReturn=yes\nHostChunk=256M\nHostReturnDelay=1h\n' >>"$tmp/daxbroker.conf"
        fi
        export DAXBROKER_METRICS_FILE=$tmp/metrics/daxbroker.prom; mkdir -p "$tmp/metrics"
fi
if [ "$what" = warm ]; then
        # Two warm devices of 64 MiB in pool open (region 1, node 1).
        printf 'WarmSizes=64M\nWarmBudget=128M\n' >>"$tmp/daxbroker.conf"
fi
if [ "$what" = warm-burst ]; then
        # Sixteen warm devices of 32 MiB in pool open; the metrics file
        # counts the fsyncs of the state directory.
        printf 'WarmSizes=32M\nWarmBudget=512M\n' >>"$tmp/daxbroker.conf"
        export DAXBROKER_METRICS_FILE=$tmp/metrics/daxbroker.prom; mkdir -p "$tmp/metrics"
fi
if [ "$what" = release-async ]; then
        # The test takes all free memory of pool open: no warm devices there.
        printf 'WarmBudget=0\n' >>"$tmp/daxbroker.conf"
        # The kernel work of every release waits at release-unbound while
        # $tmp/hold exists.
        touch "$tmp/hold"
        export DAXBROKER_TEST_CRASH_AT=release-unbound DAXBROKER_TEST_HOLD_WHILE=$tmp/hold
fi
if [ "$what" = tenants ]; then
        # Other uids connect to the bus and read the stable paths.
        chmod 0755 "$tmp"
        printf '[Broker]\nMaxAllocationsPerUid=6\n' >>"$tmp/daxbroker.conf"
fi
case "$what" in
host-busy) backend="$backend;pin=0x250000000:busy" ;;
host-hang) backend="$backend;pin=0x250000000:hang" ;;
host-autoonline) backend="$backend;autoonline=online_movable" ;;
scrub-stuck) backend="$backend;busy=0x201000000:$tmp/fault"; touch "$tmp/fault" ;;
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
# TAP for the cases that number their own checks.
n=0
t() { # OK DESCRIPTION
        n=$((n + 1))
        if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; rc=1; fi
}
step() { # DESCRIPTION SCENARIO ARGS...: one check, its own lines as comments
        local what=$1 st; shift
        "${scn[@]}" "$@" >"$tmp/step.tap" 2>&1; st=$?
        sed 's/^/# /' "$tmp/step.tap"
        t $st "$what"
}
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
hmat)
        ht=(/usr/bin/python3 "$src/tests/bus/hmat-test.py")
        for _ in $(seq 300); do [ -s "$DAXBROKER_METRICS_FILE" ] && break; sleep 0.1; done
        "${ht[@]}" props "$addr" "$build/src/daxbrokerctl" "$tmp/held" --expect "$hmat_expect" \
                --metrics "$DAXBROKER_METRICS_FILE" || rc=1
        "${ht[@]}" place "$addr" "$build/src/daxbrokerctl" "$tmp/held" --expect "$hmat_expect" || rc=1
        "${ht[@]}" colors "$addr" "$build/src/daxbrokerctl" "$tmp/held" --host-return || rc=1
        # kill -9 and restart, then a reboot (the sim's kernel state gone).
        kill -9 "$daemon_pid"; wait "$daemon_pid" 2>/dev/null; daemon_pid=
        start_daemon || exit 1
        "${ht[@]}" check "$addr" "$build/src/daxbrokerctl" "$tmp/held" || rc=1
        kill -TERM "$daemon_pid"; wait "$daemon_pid"; daemon_pid=
        rm -f "$tmp/sim-kernel.json"
        start_daemon || exit 1
        for _ in $(seq 300); do
                "$build/src/daxbrokerctl" --bus-address "$addr" --json list | grep -q '"state": *"\(creating\|restoring\)"' || break
                sleep 0.1
        done
        "${ht[@]}" check "$addr" "$build/src/daxbrokerctl" "$tmp/held" || rc=1
        ;;
hmat-host)
        ht=(/usr/bin/python3 "$src/tests/bus/hmat-test.py")
        "${ht[@]}" reclaim "$addr" "$build/src/daxbrokerctl" "$tmp/held" || rc=1
        "${ht[@]}" hotplug "$addr" "$build/src/daxbrokerctl" "$tmp/held" --pool cold --expect "$hmat_expect" || rc=1
        # The colours taken back from the host stay the owners' after a
        # kill -9 and a restart.
        kill -9 "$daemon_pid"; wait "$daemon_pid" 2>/dev/null; daemon_pid=
        start_daemon || exit 1
        "${ht[@]}" check "$addr" "$build/src/daxbrokerctl" "$tmp/held" || rc=1
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
                # the host ran: restored memory reads zero, not the pattern
                # (nor host data), also where one host device held several.
                "${scn[@]}" check-persist "$tmp/persist" --from-host || rc=1
        else
                "${scn[@]}" check-restoring "$tmp/persist" || rc=1
                grep -q "Cannot restore allocation .*host RAM" "$tmp/daemon.log" ||
                        { echo "# the daemon did not log why an allocation waits"; rc=1; }
                # daxbrokerctl shows the state and why.
                ctl=("$build/src/daxbrokerctl" --bus-address "$addr")
                waiting=$("${ctl[@]}" --json list | jq -r '.allocations[] | select(.state != "active") | .id' | head -1)
                out=$("${ctl[@]}" show "$waiting" 2>&1)
                if echo "$out" | grep -Eqx "State: *(restoring|failed)" && echo "$out" | grep -q "^Message: .*host RAM" &&
                        "${ctl[@]}" list | grep "^$waiting " | grep -Eq "(restoring|failed) \(.*host RAM"; then
                        echo "# daxbrokerctl show and list give $waiting's state and message"
                else
                        echo "not ok - daxbrokerctl does not show why $waiting waits: ${waiting:-no allocation waits}: $out"; rc=1
                fi
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
                reclaim-adopted-*)
                        # A kmem device daxbroker did not create (another
                        # tool made it): a chunk of ours whose record is
                        # dropped. The workload reclaims it after ours.
                        start_daemon || exit 1
                        settle
                        call ReturnToHost st host 1073741824 >/dev/null
                        kill -TERM "$daemon_pid"; wait "$daemon_pid"; daemon_pid=
                        ls "$tmp"/state/state/host-*.json >/dev/null 2>&1 ||
                                { echo "not ok - $point: no host chunk on record to drop"; bad=$((bad + 1)); continue; }
                        rm -f "$tmp"/state/state/host-*.json ;;
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
                # The warm device is made once the pool is zeroed: on
                # record as active, it is ready.
                warm_ready() {
                        for _ in $(seq 3000); do
                                alive || break
                                grep -hs '"warm":true' "$tmp"/state/state/allocation-*.json |
                                        grep -q '"state":"active"' && break
                                sleep 0.05
                        done
                }
                if alive; then
                        warm_ready
                        # 512 MiB is the warm size; the allocate-* points
                        # need a cold Allocate.
                        size=536870912
                        [[ $point == allocate-* ]] && size=268435456
                        out=$(call Allocate 'sta{sv}' scn-cp $size 2 pool s host device-uid u 65534)
                        path=$(echo "$out" | awk '{print $2}' | tr -d '"')
                        alive && [ -n "$path" ] && call Release o "$path" >/dev/null
                        settle
                        alive && call ReturnToHost st host 1073741824 >/dev/null
                        settle
                        # The reclaiming Allocate gives the warm device back.
                        alive && warm_ready
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
                # A restore cut short anywhere still zeroes the host's
                # data out of every allocation it restores.
                if python3 "$src/tests/bus/sim-invariant.py" "$tmp/sim-kernel.json" "$tmp/state/state" "$addr" \
                                > "$tmp/check.out" 2>&1 &&
                        { [[ $point != restore-* ]] ||
                                { "${scn[@]}" check-persist "$tmp/persist" --from-host >> "$tmp/check.out" 2>&1 &&
                                  call ReleaseOwner s scn-persist >/dev/null; }; } &&
                        { [[ $point != handover-* ]] || call ReleaseOwner s scn-cp >/dev/null; } &&
                        "${scn[@]}" host-check host >> "$tmp/check.out" 2>&1; then
                        echo "ok - crash at $point: state and kernel agree, the host pool is whole and reads zero"
                else
                        echo "not ok - crash at $point: inconsistent after restart"; bad=$((bad + 1))
                        grep -E '^not ok|INCONSISTENT|Traceback|Error' "$tmp/check.out" | sed 's/^/#   /' 
                fi
                kill -TERM "$daemon_pid"; wait "$daemon_pid"; daemon_pid=
        done
        echo "# crash points: $reached of $total reached, $bad inconsistencies"
        [ "$bad" = 0 ] && [ "$reached" = "$total" ] || rc=1
        ;;
scrub-stuck)
        pool=/org/daxbroker/Broker1/pool/host
        prop() { busctl --address="$addr" get-property org.daxbroker.Broker1 $pool org.daxbroker.Broker1.Pool "$1"; }
        # The first start zeroes every pool; 8G..8.5G holds the busy address.
        for _ in $(seq 600); do
                prop ZeroingStuck | grep -q '^a(tttus) 1 8589934592 536870912 ' && break; sleep 0.1
        done
        stuck=$(prop ZeroingStuck)
        echo "# ZeroingStuck: $stuck"
        echo "$stuck" | grep -q '^a(tttus) 1 8589934592 536870912 [0-9]* [0-9]* ".*Cannot allocate memory'
        t $? "the Pool names the stuck chunk, since when and why (ZeroingStuck)"
        grep -q "Pool host: cannot zero 512 MiB at 0x200000000 .*retrying in" "$tmp/daemon.log"
        t $? "the journal says what is stuck and when it is retried"
        for _ in $(seq 600); do [ "$(prop DirtySize)" = "t 536870912" ] && break; sleep 0.1; done
        t $([ "$(prop DirtySize)" = "t 536870912" ]; echo $?) "the rest of the pool is zeroed meanwhile ($(prop DirtySize))"
        # HostReturnDelay=1s: idle clean memory goes to the host although
        # one chunk is still dirty.
        for _ in $(seq 600); do [ "$(prop HostSize)" != "t 0" ] && break; sleep 0.1; done
        t $([ "$(prop HostSize)" != "t 0" ]; echo $?) "idle memory goes to the host meanwhile ($(prop HostSize))"
        for _ in $(seq 600); do
                region0=$(busctl --address="$addr" get-property org.daxbroker.Broker1 /org/daxbroker/Broker1/pool/bounded \
                        org.daxbroker.Broker1.Pool DirtySize)
                [ "$region0" = "t 0" ] && break; sleep 0.1
        done
        t $([ "$region0" = "t 0" ]; echo $?) "the other pool is zeroed ($region0)"
        rm -f "$tmp/fault"
        for _ in $(seq 1200); do [ "$(prop DirtySize)" = "t 0" ] && break; sleep 0.1; done
        t $([ "$(prop DirtySize)" = "t 0" ] && [ "$(prop ZeroingStuck)" = "a(tttus) 0" ]; echo $?) \
                "once the fault clears the chunk is zeroed on a retry and nothing is stuck ($(prop DirtySize), $(prop ZeroingStuck))"
        grep -q "Pool host: zeroed 512 MiB at 0x200000000 after" "$tmp/daemon.log"
        t $? "the journal says the stuck chunk is zeroed"
        "${scn[@]}" host-check host >"$tmp/check.out" 2>&1
        t $? "the whole host pool can be taken back, allocated and reads zero"
        grep '^not ok' "$tmp/check.out" | sed 's/^/# /'
        echo "1..$n"
        ;;
return-early)
        kill -TERM "$daemon_pid"; wait "$daemon_pid"; daemon_pid=
        pool=/org/daxbroker/Broker1/pool/host
        prop() { busctl --address="$addr" get-property org.daxbroker.Broker1 $pool org.daxbroker.Broker1.Pool "$1"; }
        ret() { busctl --address="$addr" --timeout=3600 call org.daxbroker.Broker1 /org/daxbroker/Broker1 \
                org.daxbroker.Broker1.Manager ReturnToHost st host "$1" 2>&1; }
        fresh() { # HostZeroesOnAlloc AllocateTimeout: a fresh boot, every pool dirty
                rm -rf "$tmp/state" "$tmp/run" "$tmp/sim-kernel.json" "$tmp/sim-kernel.json.mem"
                mkdir -p "$tmp/state" "$tmp/run"
                sed -i '/^HostZeroesOnAlloc=/d; /^AllocateTimeout=/d; /^\[Broker\]/d' "$tmp/daxbroker.conf"
                printf '[Broker]\nHostZeroesOnAlloc=%s\nAllocateTimeout=%s\n' "$1" "$2" >>"$tmp/daxbroker.conf"
                : >"$tmp/daemon.log"
                start_daemon || exit 1
        }
        # Zeroing a chunk takes 2 s more here (a slow machine): the first
        # start is still zeroing when ReturnToHost comes. The deadline is
        # far off: this machine may be slower still.
        export DAXBROKER_TEST_DELAY_AT=scrub-zeroed:2000000
        fresh no 1h
        out=$(ret 1073741824)
        t $([ "$out" = "t 1073741824" ]; echo $?) "HostZeroesOnAlloc=no: ReturnToHost right after start returns 1 GiB ($out)"
        t $([ "$(prop HostSize)" = "t 1073741824" ]; echo $?) "the pool lends 1 GiB ($(prop HostSize))"
        dirty=$(prop DirtySize)
        t $([ "$dirty" != "t 0" ]; echo $?) "the window was zeroed before the rest of the pool ($dirty still dirty)"
        grep -q "Memory lent to the host is zeroed first" "$tmp/daemon.log"
        t $? "the journal says lent memory is zeroed first"
        grep -q "Pool host: returning 1 GiB to the host once the memory for it is zeroed" "$tmp/daemon.log"
        t $? "the journal says the return waits for zeroing"
        "${scn[@]}" host-check host >"$tmp/check.out" 2>&1
        t $? "the whole pool can be taken back, allocated and reads zero"
        grep '^not ok' "$tmp/check.out" | sed 's/^/# /'
        kill -TERM "$daemon_pid"; wait "$daemon_pid"; daemon_pid=

        # Its deadline passes first: TimedOut, and nothing is lent.
        export DAXBROKER_TEST_DELAY_AT=scrub-zeroed:4000000
        fresh no 1s
        out=$(gdbus call --address "$addr" --dest org.daxbroker.Broker1 --object-path /org/daxbroker/Broker1 \
                --method org.daxbroker.Broker1.Manager.ReturnToHost "'host'" "uint64 1073741824" 2>&1)
        echo "# $out"
        t $(echo "$out" | grep -q "org.daxbroker.Broker1.Error.TimedOut"; echo $?) \
                "a return whose zeroing outlasts AllocateTimeout= fails with TimedOut"
        t $([ "$(prop HostSize)" = "t 0" ]; echo $?) "and lends nothing ($(prop HostSize))"
        kill -TERM "$daemon_pid"; wait "$daemon_pid"; daemon_pid=

        # A host kernel that zeroes pages on allocation gets the memory at
        # once, dirty.
        export DAXBROKER_TEST_DELAY_AT=scrub-zeroed:2000000
        fresh yes 20s
        out=$(ret 1073741824)
        t $([ "$out" = "t 1073741824" ]; echo $?) "HostZeroesOnAlloc=yes: ReturnToHost of dirty memory right after start ($out)"
        grep -q "Memory lent to the host is not zeroed first" "$tmp/daemon.log"
        t $? "the journal says lent memory is not zeroed first"
        t $(grep -q "once the memory for it is zeroed" "$tmp/daemon.log"; [ $? = 1 ]; echo $?) "it did not wait for zeroing"
        unset DAXBROKER_TEST_DELAY_AT
        "${scn[@]}" host-check host >"$tmp/check.out" 2>&1
        t $? "memory back from the host is zeroed before use: the whole pool reads zero"
        grep '^not ok' "$tmp/check.out" | sed 's/^/# /'
        echo "1..$n"
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
release-async)
        "${scn[@]}" release-held open "$tmp/released" >"$tmp/step.tap" 2>&1; st=$?
        sed 's/^/# /' "$tmp/step.tap"
        t $st "Release replies before the device is gone: off the bus, node back to root, memory not free"
        read -r dev start size <"$tmp/released"
        python3 -c 'import json,sys
name, start, size = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for r in json.load(open(sys.argv[1]))["regions"]:
    for d in r["devices"]:
        if "dax%d.%d" % (r["id"], d["instance"]) == name and (start, size) in [(x["start"], x["size"]) for x in d.get("ranges", [])]:
            sys.exit(0)
sys.exit(1)' "$tmp/sim-kernel.json" "$dev" "$start" "$size"
        t $? "the released device $dev still exists in the kernel after the reply"
        # An allocation of all the free memory, placed while the device is
        # still there, must not get its ranges.
        free=$(busctl --address="$addr" get-property org.daxbroker.Broker1 /org/daxbroker/Broker1/pool/open \
                org.daxbroker.Broker1.Pool FreeSize | awk '{print $2}')
        busctl --address="$addr" --timeout=3600 call org.daxbroker.Broker1 /org/daxbroker/Broker1 \
                org.daxbroker.Broker1.Manager Allocate 'sta{sv}' scn-other "$free" 2 pool s open contiguous b false \
                >"$tmp/other.out" 2>&1 &
        other=$!
        # Placed (recorded as creating) before the held release goes on.
        for _ in $(seq 3000); do grep -qs '"scn-other"' "$tmp"/state/state/allocation-*.json && break; sleep 0.02; done
        grep -qs '"scn-other"' "$tmp"/state/state/allocation-*.json; t $? "an Allocate of all of FreeSize is placed meanwhile"
        # Memory still being released comes back: an Allocate that needs it
        # waits for it instead of failing with NoSpace.
        busctl --address="$addr" --timeout=3600 call org.daxbroker.Broker1 /org/daxbroker/Broker1 \
                org.daxbroker.Broker1.Manager Allocate 'sta{sv}' scn-after "$size" 2 pool s open contiguous b false \
                >"$tmp/after.out" 2>&1 &
        after=$!
        for _ in $(seq 3000); do
                grep -qs "for 'scn-after' waits" "$tmp/daemon.log" && break
                kill -0 $after 2>/dev/null || break
                sleep 0.02
        done
        grep -qs "for 'scn-after' waits" "$tmp/daemon.log"
        t $? "an Allocate that needs the memory being released waits for it: $(cat "$tmp/after.out")"
        rm -f "$tmp/hold"
        wait $other; t $? "and succeeds once the release goes on: $(cat "$tmp/other.out")"
        wait $after; t $? "the one that waited gets the released memory, zeroed: $(cat "$tmp/after.out")"
        busctl --address="$addr" call org.daxbroker.Broker1 /org/daxbroker/Broker1 org.daxbroker.Broker1.Manager \
                ReleaseOwner s scn-after >/dev/null
        busctl --address="$addr" --json=short call org.daxbroker.Broker1 /org/daxbroker/Broker1 \
                org.daxbroker.Broker1.Manager ListAllocations >"$tmp/list.json"
        python3 -c 'import json,sys
start, size = int(sys.argv[2]), int(sys.argv[3])
for a in json.load(open(sys.argv[1]))["data"][0]:
    if a[2] == "scn-other":
        sys.exit(any(s < start + size and start < s + l for s, l in a[11]))
sys.exit(1)' "$tmp/list.json" "$start" "$size"
        t $? "it did not get the released ranges, which were not zeroed yet"
        busctl --address="$addr" call org.daxbroker.Broker1 /org/daxbroker/Broker1 org.daxbroker.Broker1.Manager \
                ReleaseOwner s scn-other >/dev/null
        "${scn[@]}" whole-zero open >"$tmp/step.tap" 2>&1; st=$?
        sed 's/^/# /' "$tmp/step.tap"
        t $st "once zeroed, all the pool's free memory, the released ranges included, reads zero"
        # Each reply goes out before the call's signals: dbus-daemon routes
        # a connection's messages in order, so a signal sent first would
        # hold the reply back.
        dbus-monitor --address "$addr" --profile >"$tmp/monitor.txt" 2>&1 &
        mon=$!
        for _ in $(seq 500); do grep -qs 'NameLost' "$tmp/monitor.txt" && break; sleep 0.02; done
        p=$(busctl --address="$addr" call org.daxbroker.Broker1 /org/daxbroker/Broker1 org.daxbroker.Broker1.Manager \
                Allocate 'sta{sv}' scn-order $((2 << 20)) 1 pool s open | awk '{print $2}' | tr -d '"')
        busctl --address="$addr" call org.daxbroker.Broker1 /org/daxbroker/Broker1 org.daxbroker.Broker1.Manager \
                Release o "$p" >/dev/null
        for _ in $(seq 500); do grep -qs 'AllocationRemoved' "$tmp/monitor.txt" && break; sleep 0.02; done
        kill $mon; wait $mon 2>/dev/null
        sed 's/^/# /' "$tmp/monitor.txt" | grep -E 'Allocate|Release|AllocationNew|AllocationRemoved|^# mr'
        for call in Allocate:AllocationNew Release:AllocationRemoved; do
                awk -F'\t' -v m="${call%%:*}" -v s="${call##*:}" '
                        $1 == "mc" && $8 == m { serial = $3; caller = $4 }
                        $1 == "mr" && serial != "" && $6 == serial && $5 == caller && !reply { reply = NR }
                        $1 == "sig" && $8 == s && !sig { sig = NR }
                        END { exit !(reply && sig && reply < sig) }' "$tmp/monitor.txt"
                t $? "the reply to ${call%%:*} goes out before ${call##*:}"
        done
        python3 "$src/tests/bus/sim-invariant.py" "$tmp/sim-kernel.json" "$tmp/state/state" "$addr" >"$tmp/check.out" 2>&1
        t $? "state and kernel agree: $(grep INCONSISTENT "$tmp/check.out" | head -3)"
        echo "1..$n"
        ;;
warm)
        warm_size() {
                busctl --address="$addr" get-property org.daxbroker.Broker1 /org/daxbroker/Broker1/pool/open \
                        org.daxbroker.Broker1.Pool WarmSize | awk '{print $2}'
        }
        wait_warm() { # BYTES
                for _ in $(seq 3000); do [ "$(warm_size)" = "$1" ] && return 0; sleep 0.02; done
                return 1
        }
        devices() { # the sim kernel's devices: NAME START SIZE per range
                python3 -c 'import json,sys
for r in json.load(open(sys.argv[1]))["regions"]:
    for d in r["devices"]:
        for x in d.get("ranges", []):
            print("dax%d.%d %d %d" % (r["id"], d["instance"], x["start"], x["size"]))' "$tmp/sim-kernel.json" | sort
        }
        M64=$((64 << 20))
        wait_warm $((2 * M64)); t $? "the pool fills its warm set: two devices of 64 MiB ($(warm_size))"
        devices >"$tmp/before"
        step "an Allocate of a warm size is handed a warm device" warm-take open $M64 "$tmp/took"
        grep -qxF "$(cat "$tmp/took" 2>/dev/null)" "$tmp/before"
        t $? "its device and range existed in the kernel before the call ($(cat "$tmp/took" 2>/dev/null))"
        step "requests a warm device does not match are not given one" warm-miss open $M64 bounded 0
        wait_warm $((2 * M64)); t $? "the warm set is refilled ($(warm_size))"
        # kill -9 with the warm set full: both are adopted back, the same devices.
        devices >"$tmp/before"
        kill -9 "$daemon_pid"; wait "$daemon_pid" 2>/dev/null; daemon_pid=
        start_daemon || exit 1
        wait_warm $((2 * M64)); t $? "after kill -9 the warm set is there again ($(warm_size))"
        devices >"$tmp/after"
        adopted=$(sed -n 's/.*adopted warm device \(dax[0-9.]*\) .*/\1/p' "$tmp/daemon.log")
        same=0
        for d in $adopted; do
                grep "^$d " "$tmp/before" | cmp -s - <(grep "^$d " "$tmp/after") && [ -n "$(grep "^$d " "$tmp/after")" ] &&
                        same=$((same + 1))
        done
        t $([ "$same" = 2 ]; echo $?) "both are adopted, the same devices with the same ranges as before the kill ($(echo $adopted))"
        # Sizes learned from requests: a restart keeps the warm set it
        # adopts instead of giving it back for want of learned sizes.
        kill -TERM "$daemon_pid"; wait "$daemon_pid"; daemon_pid=
        devices >"$tmp/before"
        sed -i '/^WarmSizes=/d' "$tmp/daxbroker.conf"
        lines=$(wc -l <"$tmp/daemon.log")
        start_daemon || exit 1
        sleep 1 # well past the refill timer, which would give them back
        devices >"$tmp/after"
        adopted=$(tail -n +$((lines + 1)) "$tmp/daemon.log" | sed -n 's/.*adopted warm device \(dax[0-9.]*\) .*/\1/p')
        same=0
        for d in $adopted; do
                [ -n "$(grep "^$d " "$tmp/after")" ] && grep "^$d " "$tmp/before" | cmp -s - <(grep "^$d " "$tmp/after") &&
                        same=$((same + 1))
        done
        [ "$same" = 2 ] && [ "$(warm_size)" = $((2 * M64)) ]
        t $? "with learned sizes, a restart keeps the adopted warm devices ($(echo $adopted), $(warm_size))"
        printf 'WarmSizes=64M\n' >>"$tmp/daxbroker.conf"
        step "a larger request gets the warm devices given back" warm-larger open
        # Where memory goes to the host, warm devices live in Reserve= and
        # are given back to the host too.
        kill -TERM "$daemon_pid"; wait "$daemon_pid"; daemon_pid=
        printf 'HostReturn=yes\nReserve=512M\nHostReturnDelay=1h\n' >>"$tmp/daxbroker.conf"
        start_daemon || exit 1
        "${scn[@]}" wait-clean >/dev/null
        step "ReturnToHost of the whole pool gets the warm devices given back" warm-host open $((2 * M64))
        python3 "$src/tests/bus/sim-invariant.py" "$tmp/sim-kernel.json" "$tmp/state/state" "$addr" >"$tmp/check.out" 2>&1
        t $? "state and kernel agree: $(grep INCONSISTENT "$tmp/check.out" | head -3)"
        echo "1..$n"
        ;;
warm-burst)
        call() { busctl --address="$addr" call org.daxbroker.Broker1 /org/daxbroker/Broker1 \
                org.daxbroker.Broker1.Manager "$@"; }
        metric() { sed -n "s/^$1 //p" "$tmp/metrics/daxbroker.prom"; }
        warm_size() {
                busctl --address="$addr" get-property org.daxbroker.Broker1 /org/daxbroker/Broker1/pool/open \
                        org.daxbroker.Broker1.Pool WarmSize | awk '{print $2}'
        }
        wait_warm() { # BYTES
                for _ in $(seq 3000); do [ "$(warm_size)" = "$1" ] && return 0; sleep 0.02; done
                return 1
        }
        N=16 M32=$((32 << 20))
        wait_warm $((N * M32)); t $? "the pool fills its warm set: $N devices of 32 MiB ($(warm_size))"
        # Stale values here could only make the count below larger.
        syncs=$(metric daxbroker_state_directory_syncs_total)
        calls=$(metric daxbroker_allocate_duration_seconds_count)
        step "a burst of $N Allocates: each gets its own warm device" warm-burst open $M32 $N "$daemon_pid" "$tmp/burst"
        for _ in $(seq 500); do
                [ "$(metric daxbroker_allocate_duration_seconds_count)" = $((calls + N)) ] && break; sleep 0.02
        done
        grown=$(( $(metric daxbroker_state_directory_syncs_total) - syncs ))
        t $([ "$(metric daxbroker_allocate_duration_seconds_count)" = $((calls + N)) ] && [ "$grown" -le $((N / 4)) ]
            echo $?) "the $N hand-overs shared their durable saves: the state directory was fsync'ed $grown times"
        call ReleaseOwner s scn-burst >/dev/null
        wait_warm $((N * M32)); t $? "refilled after the release ($(warm_size))"
        step "a ReleaseOwner read right behind a burst answers after it and releases all of it" \
                warm-burst open $M32 $N "$daemon_pid" "$tmp/burst" release
        wait_warm $((N * M32)); t $? "refilled after the release ($(warm_size))"
        gone=$(grep -c "left the bus, releasing" "$tmp/daemon.log")
        step "a burst of transient Allocates from a client that leaves before the replies" \
                warm-burst open $M32 $N "$daemon_pid" "$tmp/burst" vanish
        for _ in $(seq 500); do
                left=$(busctl --address="$addr" --json=short call org.daxbroker.Broker1 /org/daxbroker/Broker1 \
                        org.daxbroker.Broker1.Manager ListAllocations |
                        python3 -c 'import json,sys; print(sum(a[2] == "scn-burst" for a in json.load(sys.stdin)["data"][0]))')
                [ "$left" = 0 ] && break; sleep 0.02
        done
        gone=$(( $(grep -c "left the bus, releasing" "$tmp/daemon.log") - gone ))
        t $([ "$left" = 0 ] && [ "$gone" = $N ]; echo $?) \
                "all of them were made, and released once it had gone ($gone released, $left left)"
        # Killed at the chown of the fourth hand-over of a group: three
        # were answered, the rest were recorded and never answered.
        kill -TERM "$daemon_pid"; wait "$daemon_pid"; daemon_pid=
        DAXBROKER_TEST_CRASH_AT=handover-chowned@4 start_daemon || exit 1
        wait_warm $((N * M32)); t $? "refilled after the release ($(warm_size))"
        step "the same burst while the daemon dies" warm-burst open $M32 $N "$daemon_pid" "$tmp/burst" crash
        killed_at handover-chowned; t $? "the daemon was killed at the fourth chown"
        t $([ "$(wc -l <"$tmp/burst")" = 3 ]; echo $?) "three Allocates were answered ($(wc -l <"$tmp/burst"))"
        start_daemon || exit 1
        "${scn[@]}" wait-clean >/dev/null
        busctl --address="$addr" --json=short call org.daxbroker.Broker1 /org/daxbroker/Broker1 \
                org.daxbroker.Broker1.Manager ListAllocations >"$tmp/list.json"
        python3 - "$tmp/list.json" "$tmp/burst" $N <<'PY'
import json, sys
allocs = json.load(open(sys.argv[1]))["data"][0]
answered = open(sys.argv[2]).read().split()
mine = {a[0] for a in allocs if a[2] == "scn-burst"}
missing = [p for p in answered if p not in mine]
sys.exit(0 if not missing and len(mine) <= int(sys.argv[3]) else 1)
PY
        t $? "every answered Allocate is there after the restart (the others are recorded, or none)"
        python3 "$src/tests/bus/sim-invariant.py" "$tmp/sim-kernel.json" "$tmp/state/state" "$addr" >"$tmp/check.out" 2>&1
        t $? "state and kernel agree: $(grep INCONSISTENT "$tmp/check.out" | head -3)"
        call ReleaseOwner s scn-burst >/dev/null
        wait_warm $((N * M32)); t $? "once the owner releases them, the warm set is whole again: no memory lost ($(warm_size))"
        echo "1..$n"
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
