#!/bin/bash
# Runs inside the QEMU guest (chroot of the host root with the installed
# daxbroker tree on top, stock dbus-daemon --system running).
# Usage: payload.sh MODE SCENARIOS_BINARY
set -u
mode=$1 scn=$2
res=${DAXRIG_RESULTS:?}
pid=

mkdir -p /etc/daxbroker
cat > /etc/daxbroker/daxbroker.conf <<CONF
[Pool bounded]
Region=0
Boundary=512M

[Pool open]
Region=1
CONF

start_daemon() {
        /usr/sbin/daxbrokerd >>"$res/daemon.log" 2>&1 &
        pid=$!
        for _ in $(seq 600); do
                busctl --system call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus \
                        NameHasOwner s org.daxbroker.Broker1 2>/dev/null | grep -q true && return 0
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
        done
        echo "daxbrokerd did not come up"; cat "$res/daemon.log"
        return 1
}

no_stranding() {
        local rc=0
        if dmesg | grep -i "cannot be hotremoved"; then
                echo "not ok - dmesg reports memory that cannot be hot-removed"; rc=1
        else
                echo "ok - dmesg reports no stranded memory"
        fi
        local bad
        bad=$(grep -L -x -e online -e offline /sys/devices/system/memory/memory*/state 2>/dev/null)
        if [ -n "$bad" ]; then
                echo "not ok - memory blocks neither online nor offline: $bad"; rc=1
        else
                echo "ok - every memory block is cleanly online or offline"
        fi
        return $rc
}

rc=0
case "$mode" in
scenarios)
        start_daemon || exit 1
        "$scn" --sysfs run || rc=1
        echo "--- introspection"
        busctl --system introspect org.daxbroker.Broker1 /org/daxbroker/Broker1 || rc=1
        ;;
crash)
        start_daemon || exit 1
        "$scn" --sysfs setup-persist "$res/persist" || rc=1
        kill -9 "$pid"; wait "$pid" 2>/dev/null
        start_daemon || exit 1
        "$scn" --sysfs check-persist "$res/persist" || rc=1
        ;;
crash-scrub)
        start_daemon || exit 1
        "$scn" --sysfs setup-dirty "$res/dirty" || rc=1
        kill -9 "$pid"; wait "$pid" 2>/dev/null
        start_daemon || exit 1
        "$scn" --sysfs check-dirty "$res/dirty" || rc=1
        ;;
reboot1)
        start_daemon || exit 1
        "$scn" --sysfs setup-persist "$res/persist" || rc=1
        kill "$pid"; wait "$pid"
        ;;
reboot2)
        start_daemon || exit 1
        "$scn" --sysfs check-persist "$res/persist" || rc=1
        ;;
host-online)
        # Debian 6.12 defaults: the regions are online host RAM (ZONE_NORMAL).
        start_daemon || exit 1
        total=0 host=0
        for p in $(busctl --system --json=short call org.daxbroker.Broker1 /org/daxbroker/Broker1 \
                        org.daxbroker.Broker1.Manager ListPools | python3 -c '
import json,sys
for p in json.load(sys.stdin)["data"][0]:
    print(f"{p[1]}:{p[5]}:{p[10]}")'); do
                IFS=: read -r name size h <<<"$p"
                echo "# pool $name size $size host $h"
                [ "$h" = "$size" ] && echo "ok - pool $name is shown as held by the host" \
                        || { echo "not ok - pool $name host size $h != $size"; rc=1; }
                total=$((total + 1))
        done
        [ "$total" -ge 2 ] || { echo "not ok - expected two pools"; rc=1; }
        out=$(daxbrokerctl allocate vm1 1G 2>&1)
        echo "$out" | grep -q NoSpace && echo "ok - Allocate says NoSpace while the host holds the memory" \
                || { echo "not ok - Allocate: $out"; rc=1; }
        no_stranding || rc=1
        kill "$pid"; wait "$pid"
        no_stranding || rc=1
        ;;
*)
        echo "unknown mode $mode"; exit 2 ;;
esac
[ $rc = 0 ] && no_stranding || rc=1
echo "--- daemon log"; cat "$res/daemon.log"
exit $rc
