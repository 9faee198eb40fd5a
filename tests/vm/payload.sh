#!/bin/bash
# Runs inside the QEMU guest (chroot of the host root with the installed
# daxbroker tree on top, stock dbus-daemon --system running).
# Usage: payload.sh MODE SCENARIOS_BINARY
set -u
mode=$1 scn=$2
res=${DAXRIG_RESULTS:?}
# Every partial save is checked against a save of everything: the daemon
# aborts (and the test fails) when one missed a change.
export DAXBROKER_TEST_CHECK_SAVES=1
pid=

mkdir -p /etc/daxbroker
cat > /etc/daxbroker/daxbroker.conf <<CONF
[Pool bounded]
Region=0
Boundary=512M

[Pool open]
Region=1
CONF
case "$mode" in
host*)
        # Region 1 (node 1) lends idle memory to the host in 1 GiB chunks.
        cat > /etc/daxbroker/daxbroker.conf <<CONF
[Pool bounded]
Region=0
Boundary=512M

[Pool host]
Region=1
HostReturn=yes
Reserve=512M
HostReturnDelay=2s
CONF
        # TCG zeroes slowly: the ReturnToHost that waits for zeroing (host
        # test below) must not run into a deadline made for real machines.
        case "$mode" in host|host-auto)
                printf '[Broker]\nAllocateTimeout=10min\n' >> /etc/daxbroker/daxbroker.conf ;;
        esac
        ;;
hmat*)
        # run-vm.sh --hmat: region 0 is node 1 behind a 512 MiB
        # direct-mapped memory-side cache, 4 colours of 128 MiB over its
        # 2 GiB at 4 GiB; region 1 is node 2, whose HMAT the kernel does not
        # publish (no online memory) until memory of it is lent to the
        # host. Pools are named by their start. Both lend memory to the
        # host only when the test asks, in chunks of a colour slice.
        cat > /etc/daxbroker/daxbroker.conf <<CONF
[Pool near]
Start=0x100000000
Tier=near
Colors=4
HostReturn=yes
HostChunk=128M
HostReturnDelay=1h

[Pool far]
Start=0x180000000
Tier=far
HostChunk=256M
CONF
        for r in /sys/bus/dax/devices/dax*; do
                echo "# $r: target_node $(cat "$r/target_node" 2>/dev/null)" \
                        "mapping0 $(cat "$r/mapping0/start" 2>/dev/null)-$(cat "$r/mapping0/end" 2>/dev/null)" \
                        "region $(readlink -f "$r/../.." 2>/dev/null)"
        done
        grep -i -e "soft reserved" -e hmem -e dax /proc/iomem | sed 's/^/# iomem: /'
        dmesg | grep -i -e hmat -e hmem -e dax -e "memory-side" -e "node 1" | sed 's/^/# dmesg: /'
        ;;
crash-points|stress)
        # As host*, scaled to the 512 MiB regions these modes boot with
        # (vm-test.sh), and returns happen when the workload asks, not
        # behind the checks' backs.
        cat > /etc/daxbroker/daxbroker.conf <<CONF
[Pool bounded]
Region=0
Boundary=128M

[Pool host]
Region=1
HostReturn=yes
HostChunk=128M
Reserve=128M
HostReturnDelay=1h
CONF
        ;;
esac

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

# The daemon has died at the crash point STEP: by SIGKILL (status 137), and
# its log names the step.
killed_at() { # STEP
        local st
        for _ in $(seq 3000); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
                echo "not ok - the daemon never reached $1"
                kill -9 "$pid"; wait "$pid" 2>/dev/null
                return 1
        fi
        wait "$pid" 2>/dev/null; st=$?
        if [ "$st" != 137 ]; then
                echo "not ok - the daemon exited with status $st, not by SIGKILL (137), waiting for $1"
                return 1
        fi
        if ! grep -q "DAXBROKER_TEST_CRASH_AT=$1: killing" "$res/daemon.log"; then
                echo "not ok - the daemon log names no crash at $1"
                return 1
        fi
        echo "ok - the daemon was killed (SIGKILL) at $1"
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

# daxbrokerctl exec against the real kernel: a command gets the device as
# fd 3 and the allocation is gone once it exits; QEMU (the host's binary,
# through the chroot) started that way maps its RAM from the device.
exec_checks() {
        local rc=0 before out dev qemu maps lo hi start
        ids() { daxbrokerctl --raw --no-legend -o id list | sort; }
        # Release replies before the device is destroyed, right after; a
        # warm device made meanwhile may take the same name, not the same
        # memory.
        gone() { # /dev/daxR.N START: the device of that memory is gone
                local s=/sys/bus/dax/devices/${1#/dev/}/mapping0/start
                for _ in $(seq 300); do
                        [ "$(cat "$s" 2>/dev/null)" = "$2" ] || return 0
                        sleep 0.1
                done
                return 1
        }
        before=$(ids)
        if out=$(daxbrokerctl exec --size 64M -- sh -c 'test -e /proc/self/fd/3 && test -c "$DAXBROKER_DEVICE" &&
                        echo "$DAXBROKER_DEVICE $(cat /sys/bus/dax/devices/${DAXBROKER_DEVICE#/dev/}/mapping0/start)"' 2>&1) &&
                        [ "${out#/dev/dax}" != "$out" ]; then
                echo "ok - exec --size 64M: the command has fd 3 ($out)"
        else
                echo "not ok - exec --size 64M: $out"; rc=1
        fi
        start=${out#* } out=${out%% *}
        if [ "$(ids)" = "$before" ] && [ -n "$out" ] && gone "$out" "$start"; then
                echo "ok - the exec allocation is gone once the command exited, and its device $out right after"
        else
                echo "not ok - after exec: allocations '$(ids)' (before '$before'), device $out"; rc=1
        fi

        qemu=$(command -v qemu-system-x86_64)
        if [ -z "$qemu" ]; then
                echo "not ok - no qemu-system-x86_64 in the guest (the host's is used through the chroot)"
                return 1
        fi
        rm -f "$res/qemu-maps" "$res/qemu-dev" "$res/qemu-start"
        # Paused (-S): QEMU maps its RAM at start-up and runs no guest code.
        daxbrokerctl exec --size 64M --pool open --label qemu-ram -- sh -c '
                "$1" -S -nodefaults -display none -accel tcg -machine q35,memory-backend=m -m 64M \
                        -object memory-backend-file,id=m,mem-path=/proc/self/fd/3,share=on,size=64M,align=2M &
                q=$!
                echo "$DAXBROKER_DEVICE" >"$2/qemu-dev"
                cat "/sys/bus/dax/devices/${DAXBROKER_DEVICE#/dev/}/mapping0/start" >"$2/qemu-start"
                for _ in $(seq 3000); do
                        grep " $DAXBROKER_DEVICE\$" /proc/$q/maps >"$2/qemu-maps" && break
                        kill -0 $q 2>/dev/null || break
                        sleep 0.1
                done
                daxbrokerctl --raw --no-legend -o owner,label,device list >"$2/qemu-list"
                kill $q; wait $q
                exit 0' sh "$qemu" "$res" >"$res/qemu.log" 2>&1 || { echo "not ok - exec of QEMU failed"; rc=1; }
        dev=$(cat "$res/qemu-dev" 2>/dev/null)
        maps=$(head -1 "$res/qemu-maps" 2>/dev/null)
        lo=${maps%%-*} hi=${maps#*-}; hi=${hi%% *}
        if [ -n "$dev" ] && [ -n "$maps" ] && [ $((0x$hi - 0x$lo)) = $((64 << 20)) ] &&
                [ "$(echo "$maps" | awk '{print $2}')" = rw-s ]; then
                echo "ok - QEMU started through exec has its 64 MiB of RAM mapped shared from $dev: $maps"
        else
                echo "not ok - QEMU's maps show no 64 MiB shared mapping of '$dev': '$maps'"; rc=1
                sed 's/^/# qemu: /' "$res/qemu.log"
        fi
        grep -q "^exec-[0-9]* qemu-ram $dev\$" "$res/qemu-list" 2>/dev/null &&
                echo "ok - while QEMU ran, list showed its allocation on $dev" ||
                { echo "not ok - list while QEMU ran: $(cat "$res/qemu-list" 2>/dev/null)"; rc=1; }
        if [ "$(ids)" = "$before" ] && [ -n "$dev" ] && gone "$dev" "$(cat "$res/qemu-start" 2>/dev/null)"; then
                echo "ok - QEMU's allocation is gone once it exited"
        else
                echo "not ok - after QEMU: allocations '$(ids)', device $dev"; rc=1
        fi
        return $rc
}

rc=0
case "$mode" in
scenarios)
        start_daemon || exit 1
        "$scn" --sysfs run || rc=1
        exec_checks || rc=1
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
        # The daemon dies half-way through zeroing released memory; the
        # restarted one reports it dirty (held at the same point, so the
        # check does not race it) and zeroes it before reuse.
        start_daemon || exit 1
        "$scn" --sysfs wait-clean || rc=1
        kill "$pid"; wait "$pid"
        export DAXBROKER_TEST_CRASH_AT=scrub-half
        start_daemon || exit 1
        unset DAXBROKER_TEST_CRASH_AT
        "$scn" --sysfs setup-dirty "$res/dirty" || rc=1
        killed_at scrub-half || rc=1
        touch "$res/hold"
        export DAXBROKER_TEST_CRASH_AT=scrub-half DAXBROKER_TEST_HOLD_WHILE=$res/hold
        start_daemon || exit 1
        unset DAXBROKER_TEST_CRASH_AT DAXBROKER_TEST_HOLD_WHILE
        "$scn" --sysfs check-dirty "$res/dirty" "$res/hold" || rc=1
        ;;
hmat1)
        # Pool properties against sysfs, placement by class, two
        # cache-isolated owners checked on mappingN, kill -9 and restart.
        ht=(python3 "$(dirname "$0")/../bus/hmat-test.py")
        start_daemon || exit 1
        for n in 0 1; do
                for f in /sys/devices/system/node/node$n/access*/initiators/*_* \
                         /sys/devices/system/node/node$n/memory_side_cache/index*/*; do
                        [ -f "$f" ] && echo "# $f: $(cat "$f")"
                done
        done
        "${ht[@]}" props system daxbrokerctl "$res/held" --sysfs /sys || rc=1
        "${ht[@]}" place system daxbrokerctl "$res/held" --sysfs /sys || rc=1
        "${ht[@]}" colors system daxbrokerctl "$res/held" --sysfs /sys --host-return || rc=1
        # Node 2 publishes its HMAT once memory of it is lent to the host.
        "${ht[@]}" hotplug system daxbrokerctl "$res/held" --sysfs /sys --pool far || rc=1
        for f in /sys/devices/system/node/node2/access*/initiators/*_*; do
                [ -f "$f" ] && echo "# $f: $(cat "$f")"
        done
        kill -9 "$pid"; wait "$pid" 2>/dev/null
        start_daemon || exit 1
        "${ht[@]}" check system daxbrokerctl "$res/held" --sysfs /sys || rc=1
        kill "$pid"; wait "$pid"
        ;;
hmat2)
        # After the reboot: the same colours and ranges, checked on sysfs.
        ht=(python3 "$(dirname "$0")/../bus/hmat-test.py")
        start_daemon || exit 1
        for _ in $(seq 600); do
                daxbrokerctl --json list | grep -q '"state": *"\(creating\|restoring\)"' || break
                sleep 0.5
        done
        "${ht[@]}" check system daxbrokerctl "$res/held" --sysfs /sys || rc=1
        ;;
reboot1)
        start_daemon || exit 1
        "$scn" --sysfs setup-persist "$res/persist" || rc=1
        kill "$pid"; wait "$pid"
        ;;
reboot2)
        start_daemon || exit 1
        "$scn" --sysfs check-persist "$res/persist" --after-reboot || rc=1
        ;;
reboot2-sysram)
        # What a host whose boot reconfigures the regions to system-ram
        # (daxctl's boot-time reconfiguration, or a udev rule) has when
        # daxbrokerd starts, on any kernel: each daxR.0 bound to kmem, its
        # memory online movable.
        bs=$((0x$(cat /sys/devices/system/memory/block_size_bytes)))
        for d in /sys/bus/dax/devices/dax*.0; do
                n=$(basename "$d")
                drv=$(basename "$(readlink -f "$d/driver" 2>/dev/null)")
                [ "$drv" = kmem ] && continue
                { [ -z "$drv" ] || [ "$drv" = driver ] || echo "$n" >"/sys/bus/dax/drivers/$drv/unbind"; } &&
                        echo "$n" >/sys/bus/dax/drivers/kmem/new_id 2>/dev/null
                [ "$(basename "$(readlink -f "$d/driver" 2>/dev/null)")" = kmem ] ||
                        echo "$n" >/sys/bus/dax/drivers/kmem/bind ||
                        { echo "not ok - cannot bind $n to kmem"; exit 1; }
                for m in "$d"/mapping[0-9]*; do
                        s=$(($(cat "$m/start"))) e=$(($(cat "$m/end")))
                        for ((b = s / bs; b <= e / bs; b++)); do
                                f=/sys/devices/system/memory/memory$b/state
                                grep -qx offline "$f" 2>/dev/null && echo online_movable >"$f"
                        done
                done
        done
        exec "$0" reboot2-auto "$scn"
        ;;
reboot2-auto)
        # What the boot policy made of the regions decides which checks
        # apply: host RAM (kmem with memory online) or not.
        mode=reboot2
        for d in /sys/bus/dax/devices/dax*.0; do
                drv=$(basename "$(readlink -f "$d/driver" 2>/dev/null)")
                online=0
                if [ "$drv" = kmem ]; then
                        for m in "$d"/mapping[0-9]*; do
                                s=$(($(cat "$m/start"))) e=$(($(cat "$m/end")))
                                bs=$((0x$(cat /sys/devices/system/memory/block_size_bytes)))
                                for ((b = s / bs; b <= e / bs; b++)); do
                                        grep -qx online "/sys/devices/system/memory/memory$b/state" && online=$((online + 1))
                                done
                        done
                fi
                echo "# memhp $DAXRIG_MEMHP boot layout: $(basename "$d") driver $drv, $online memory blocks online"
                [ $online -gt 0 ] && mode=reboot2-host
        done
        exec "$0" "$mode" "$scn"
        ;;
reboot2-host)
        # The kernel brought the regions up as host RAM: the recorded
        # allocations come back with identical ranges, or (if the kernel
        # refuses to offline a block) stay listed, saying why, their
        # ranges handed to nobody.
        export DAXBROKER_OFFLINE_TIMEOUT_USEC=3000000
        for d in /sys/bus/dax/devices/dax*.0; do
                echo "# boot layout: $(basename "$d") driver $(basename "$(readlink -f "$d/driver" 2>/dev/null)")"
        done
        start_daemon || exit 1
        if grep -q "Took dax[0-9]*\.0 back from the host" "$res/daemon.log"; then
                echo "ok - start-up took host-held memory back for the recorded allocations"
        else
                echo "not ok - start-up did not take host-held memory back"; rc=1
        fi
        if ! "$scn" --sysfs check-persist "$res/persist" --from-host; then
                echo "# not all restored: they must be listed with a state"
                "$scn" --sysfs check-restoring "$res/persist" || rc=1
        fi
        no_stranding || rc=1
        ;;
host|host-auto)
        if [ "$mode" = host-auto ]; then
                # Something else onlines hot-added memory the moment kmem adds it.
                echo online_movable > /sys/devices/system/memory/auto_online_blocks
        fi
        start_daemon || exit 1
        # Right after the first start every pool is still being zeroed: an
        # explicit return waits for its window to be zeroed first (or, where
        # the kernel zeroes pages on allocation, lends it dirty at once).
        grep "Memory lent to the host is" "$res/daemon.log" | sed 's/^/# /'
        out=$(busctl --system --timeout=600 call org.daxbroker.Broker1 /org/daxbroker/Broker1 \
                org.daxbroker.Broker1.Manager ReturnToHost st host $((1 << 30)) 2>&1)
        if [ "$out" = "t $((1 << 30))" ]; then
                echo "ok - ReturnToHost of 1 GiB right after start, while zeroing, succeeds"
        else
                echo "not ok - ReturnToHost of 1 GiB right after start: $out"; rc=1
        fi
        no_stranding || rc=1
        out=$(busctl --system --timeout=600 call org.daxbroker.Broker1 /org/daxbroker/Broker1 \
                org.daxbroker.Broker1.Manager ReclaimFromHost st host $((1 << 30)) 2>&1)
        [ "$out" = "t $((1 << 30))" ] && echo "ok - and it comes back" || { echo "not ok - ReclaimFromHost: $out"; rc=1; }
        "$scn" --sysfs host host $((1 << 30)) $((512 << 20)) || rc=1
        if [ "$mode" = host-auto ]; then
                # An operator offlines one block of a host chunk behind the
                # broker's back: the chunk still counts as host memory and
                # is reclaimed cleanly (the block is already offline).
                dev=$(for d in /sys/bus/dax/devices/dax1.*; do
                        [ "$(basename "$(readlink -f "$d/driver" 2>/dev/null)")" = kmem ] && basename "$d"; done | head -1)
                start=$(cat "/sys/bus/dax/devices/$dev/mapping0/start" 2>/dev/null)
                bs=$((0x$(cat /sys/devices/system/memory/block_size_bytes)))
                blk=$(( start / bs ))
                if [ -n "$dev" ] && echo offline > "/sys/devices/system/memory/memory$blk/state"; then
                        echo "ok - offlined memory$blk of host chunk $dev behind the broker's back"
                        "$scn" --sysfs host-check host || rc=1
                else
                        echo "not ok - could not find or offline a block of a host chunk ($dev)"; rc=1
                fi
        fi
        ;;
host-crash)
        # kill -9 at every step of return and reclaim; after a restart the
        # sums hold against sysfs and the whole pool can be reclaimed and
        # handed out, reading zero.
        for step in return-bound return-online reclaim-offline reclaim-offlined reclaim-unbound reclaim-destroyed; do
                echo "# crash at $step"
                export DAXBROKER_TEST_CRASH_AT=$step
                start_daemon || exit 1
                unset DAXBROKER_TEST_CRASH_AT
                case $step in
                reclaim-*) "$scn" --sysfs host-trigger host >/dev/null ;;
                esac
                killed_at "$step" || rc=1
                no_stranding || rc=1
                start_daemon || exit 1
                "$scn" --sysfs host-check host || { echo "not ok - check after a crash at $step"; rc=1; }
                kill "$pid"; wait "$pid"
        done
        ;;
host-online)
        # Debian 6.12 defaults: the regions are online host RAM (ZONE_NORMAL).
        export DAXBROKER_OFFLINE_TIMEOUT_USEC=3000000
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
        # Taking a pool back means offlining every block of its region, in
        # ZONE_NORMAL here: the allocation fails cleanly with the block
        # named, or succeeds reading zero; it never strands anything.
        "$scn" --sysfs host-pinned bounded || rc=1
        no_stranding || rc=1
        # Node 1 has 1 GiB of its own RAM: pinning 1.5 GiB there (a
        # long-term pin, as RDMA or VFIO take) puts pinned pages into the
        # region for sure. Its blocks cannot go offline: the allocation must
        # fail cleanly and the region stay whole host memory.
        pin=$(dirname "$scn")/../vm/pin-node
        "$pin" 1 1536 > "$res/pin.out" 2>&1 & pinner=$!
        for _ in $(seq 600); do grep -q pinned "$res/pin.out" && break; kill -0 $pinner 2>/dev/null || break; sleep 0.1; done
        if grep -q pinned "$res/pin.out"; then
                echo "ok - $(cat "$res/pin.out")"
                "$scn" --sysfs host-pinned host --must-fail || rc=1
                # Pinned pages in ZONE_NORMAL: the kernel retries migrating
                # them for ever, so the refusal must be the daemon's own
                # offline timeout (DAXBROKER_OFFLINE_TIMEOUT_USEC above).
                if grep -q "it did not finish in time (pinned pages)" "$res/daemon.log"; then
                        echo "ok - offlining a pinned block ran into the daemon's timeout and was cancelled"
                else
                        echo "not ok - the daemon log shows no offline timeout on the pinned block"; rc=1
                fi
                no_stranding || rc=1
                kill $pinner; wait $pinner 2>/dev/null
                # Unpinned, the same memory comes back on request.
                "$scn" --sysfs host-check host || rc=1
        else
                echo "not ok - could not pin node 1 memory: $(cat "$res/pin.out")"; rc=1
        fi
        no_stranding || rc=1
        kill "$pid"; wait "$pid"
        no_stranding || rc=1
        ;;
crash-points)
        . "$(dirname "$0")/crash-points.sh"
        ;;
stress)
        # tests/reliability/stress.c on the real kernel, shorter than on
        # the sim: 32 clients; after each phase the books match sysfs, at
        # the end the daemon's fds and RssAnon are back to the baseline.
        start_daemon || exit 1
        "$scn" --sysfs wait-clean >/dev/null || rc=1
        "$(dirname "$scn")/../reliability/stress" --sysfs --daemon-pid "$pid" --clients 32 \
                --phases "${REL_STRESS_PHASES:-3}" --ops "${REL_STRESS_OPS:-2}" --seed 1 || rc=1
        "$(dirname "$scn")/../reliability/invariant" --sysfs --strict --wait-clean --allocations 0 \
                --what "after the stress run" || rc=1
        kill "$pid"; wait "$pid" || { echo "not ok - the daemon did not stop cleanly"; rc=1; }
        ;;
*)
        echo "unknown mode $mode"; exit 2 ;;
esac
[ $rc = 0 ] && no_stranding || rc=1
echo "--- daemon log"; cat "$res/daemon.log"
exit $rc
