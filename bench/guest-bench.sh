#!/bin/bash
# guest-bench.sh - the guest half of bench/run-bench.sh: runs inside the QEMU
# rig (chroot of the host root, installed daxbroker tree on top, system bus
# up) and measures region 1 three ways, one after the other so that nothing
# else touches the region meanwhile:
#   floor   the raw sysfs cycle (bench/floor), back to back; also with a
#           pause before each step (floor-paused: every step pays the RCU
#           grace period of mem_hotplug_begin(), as the daemon's steps do),
#           and zeroing the device before release (floor-zero: what the
#           daemon does in the background after answering Release)
#   daemon  daxbrokerd's Allocate / Release over D-Bus (bench/bus-bench)
#   daxctl  daxctl create-device / disable-device + destroy-device
# Each round runs floor, then starts daxbrokerd, runs bus-bench and stops it
# again; rounds alternate so that a change in host load hits both sides.
#
# The reclaim suite times taking 1 GiB back from the host (a kmem device at
# the top of the region, every block online) into a new open device, these
# ways per round: the raw sysfs sequence (floor --reclaim), the same plus
# zeroing the device (the daemon must zero memory that held host data) with
# memset (--zero) and with the daemon's zeroing engine (--zero=scrub), the
# latter also after an idle pause (--pause-ms: the first offlining pays the
# RCU grace period, as a reclaim long after the return does), the daxctl
# sequence (floor --reclaim --daxctl), and daxbrokerd's Allocate when the
# pool's free memory is lent to the host, with ReclaimFromHost alone and a
# clean Allocate for context (bus-bench --reclaim, with the same pause
# before each timed call).
#
# Usage: guest-bench.sh [OPTIONS] BUILD_DIR SOURCE_DIR
#   --iterations N          measured cycles per size and round (default 30)
#   --rounds R              floor/daemon rounds (default 3)
#   --held K                live 2 MiB allocations for the flatness runs (500)
#   --paused-iterations N   floor-paused and floor-zero cycles per size and
#                           round (default 10; 0 skips them)
#   --pause-ms MS           pause of floor-paused and of the reclaim suite's cold
#                           starts (default 100)
#   --daxctl-iterations N   daxctl cycles per size (default 10; 0 skips)
#   --suite LIST            allocate, reclaim or both, comma-separated
#                           (default allocate,reclaim)
#   --reclaim-iterations N  measured cycles per way and round of the reclaim
#                           suite (default 10, after 1 unmeasured)
#   --state-disk            the state directory on an ext4 file system made
#                           on /dev/vda (run-vm.sh --disk; run-bench.sh's
#                           default), as on a host's local disk
#   --state-tmpfs           the state directory on a tmpfs (not durable;
#                           a reference for the daemon's own cost)
#   --state-rig             (the default here) the rig's /var: an overlay
#                           over 9p
#   --trace                 afterwards, trace every syscall of a few daemon
#                           cycles (2 MiB warm: ftrace-daemon-KERNEL.txt,
#                           1 GiB cold: ftrace-daemon-1g-KERNEL.txt) and
#                           floor cycles with ftrace (kept in the results
#                           directory; bench/syscall-timeline.py)
# Raw result lines go to $DAXRIG_RESULTS/raw-KERNEL.txt, the table to
# stdout (bench/report.awk).
set -u

state_fs=rig iterations=30 rounds=3 held=500 daxctl_iterations=10 paused_iterations=10 pause_ms=100 trace=0
suite=allocate,reclaim reclaim_iterations=10
while [ $# -gt 0 ]; do
        case $1 in
        --iterations) iterations=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --held) held=$2; shift 2 ;;
        --daxctl-iterations) daxctl_iterations=$2; shift 2 ;;
        --paused-iterations) paused_iterations=$2; shift 2 ;;
        --pause-ms) pause_ms=$2; shift 2 ;;
        --suite) suite=$2; shift 2 ;;
        --reclaim-iterations) reclaim_iterations=$2; shift 2 ;;
        --trace) trace=1; shift ;;
        --state-tmpfs) state_fs=tmpfs; shift ;;
        --state-disk) state_fs=disk; shift ;;
        --state-rig) state_fs=rig; shift ;;
        --) shift; break ;;
        -*) echo "guest-bench: unknown option $1" >&2; exit 2 ;;
        *) break ;;
        esac
done
[ $# = 2 ] || { echo "usage: guest-bench.sh [OPTIONS] BUILD_DIR SOURCE_DIR" >&2; exit 2; }
build=$1 src=$2
do_allocate=0 do_reclaim=0
for s in ${suite//,/ }; do
        case $s in
        allocate) do_allocate=1 ;;
        reclaim) do_reclaim=1 ;;
        *) echo "guest-bench: unknown suite $s" >&2; exit 2 ;;
        esac
done
res=${DAXRIG_RESULTS:?guest-bench.sh runs inside the QEMU rig (tests/vm/run-vm.sh --results)}
region=1
kernel=${DAXRIG_KERNEL:-unknown}
raw=$res/raw-$kernel.txt
floor=$build/bench/floor
busbench=$build/bench/bus-bench
pid=

say() { echo "guest-bench: $*" >&2; }
die() {
        say "$*"
        stop_daemon
        save_logs
        exit 1
}

# The daemon's log, and a backtrace of every core it left (a crash of the
# daemon is a finding in its own right).
save_logs() {
        local core
        cp /tmp/daxbrokerd.log "$res/daxbrokerd-$kernel.log" 2>/dev/null
        for core in /tmp/cores/core.*; do
                [ -e "$core" ] || continue
                say "daxbrokerd crashed: backtrace in $res/daxbrokerd-crash-$kernel.txt"
                gdb -batch -ex 'thread apply all bt full' /usr/sbin/daxbrokerd "$core" \
                        >>"$res/daxbrokerd-crash-$kernel.txt" 2>&1
                gdb -batch -ex bt /usr/sbin/daxbrokerd "$core" 2>/dev/null | grep '^#' >&2
                rm -f "$core"
        done
}

# Cores stay in the guest's tmpfs; only their backtraces are kept.
mkdir -p /tmp/cores
echo '/tmp/cores/core.%e.%p' >/proc/sys/kernel/core_pattern
ulimit -c unlimited

# The daemon logs to a tmpfs file: a line per call written to the 9p results
# share would be timed as part of each call.
start_daemon() {
        /usr/sbin/daxbrokerd >>/tmp/daxbrokerd.log 2>&1 &
        pid=$!
        for _ in $(seq 600); do
                busctl --system call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus \
                        NameHasOwner s org.daxbroker.Broker1 2>/dev/null | grep -q true && return 0
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
        done
        pid=
        return 1
}

stop_daemon() {
        [ -n "$pid" ] || return 0
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        pid=
}

# utime + stime of the daemon in clock ticks.
daemon_cpu() {
        awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0
}

# dax1.0 holds the whole region at boot: bound to device_dax (6.1) or to
# kmem with every block offline (6.3+ with memhp_default_state=offline).
# Empty it so that the benchmarks can carve the region.
take_over_region() {
        local dev=/sys/bus/dax/devices/dax$region.0 drv size bs start end state m
        [ -e "$dev" ] || die "no dax region $region"
        size=$(cat "$dev/size")
        [ "$size" = 0 ] && return 0
        drv=$(basename "$(readlink "$dev/driver" 2>/dev/null)" 2>/dev/null)
        if [ "$drv" = kmem ]; then
                # Unbinding kmem with a block online strands it until reboot.
                bs=$((0x$(cat /sys/devices/system/memory/block_size_bytes)))
                start=$(cat "$dev/mapping0/start") end=$(cat "$dev/mapping0/end")
                for ((m = start / bs; m < (end + 1) / bs; m++)); do
                        state=$(cat "/sys/devices/system/memory/memory$m/state" 2>/dev/null) || continue
                        [ "$state" = offline ] || die "memory block $m of dax$region.0 is $state; not taking it over"
                done
        fi
        if [ -n "$drv" ]; then
                echo "dax$region.0" >"/sys/bus/dax/drivers/$drv/unbind" || die "cannot unbind dax$region.0 from $drv"
        fi
        echo 0 >"$dev/size" || die "cannot shrink dax$region.0"
        say "took over region $region (dax$region.0 was ${drv:-unbound}, $size bytes)"
}

run() { # label command...
        local label=$1
        shift
        say "$label"
        "$@" >>"$raw" || die "$label failed"
}

mkdir -p /etc/daxbroker
# The warm set: 2 MiB devices (the measured 2 MiB Allocates are hand-overs,
# 1 GiB ones cold). 20 of them for the burst with 1 live allocation; with
# 500 live 2 MiB ones (1000 MiB) only 8, so that a 1 GiB allocation still
# fits the 2 GiB region beside them without giving warm devices back.
configure() { # WARM_BUDGET
        cat >/etc/daxbroker/daxbroker.conf <<CONF
# Written by bench/guest-bench.sh: the daemon manages region $region only.
# Nothing goes to the host on its own (the reclaim suite lends with
# ReturnToHost, HostChunk= at its default of 1 GiB).
[Pool bench]
Region=$region
HostReturn=no
WarmSizes=2M
WarmBudget=$1
CONF
}
warm1=40M warm500=16M burst=20
configure $warm1

{
        echo "# kernel $(uname -r) (flavour $kernel, memhp ${DAXRIG_MEMHP:-?})"
        echo "# $(dmesg | grep -o 'Hypervisor detected: .*' | head -n 1)"
        echo "# cpu: $(grep -m 1 'model name' /proc/cpuinfo | cut -d: -f2-)"
        echo "# suites $suite: iterations $iterations x $rounds rounds, held $held, paused/zeroing iterations" \
                "$paused_iterations x $rounds (pause $pause_ms ms), daxctl iterations $daxctl_iterations," \
                "reclaim iterations $reclaim_iterations x $rounds"
        echo "# memory block size 0x$(cat /sys/devices/system/memory/block_size_bytes)," \
                "auto_online_blocks $(cat /sys/devices/system/memory/auto_online_blocks 2>/dev/null)"
} >"$raw"

take_over_region

# The rig's /var is an overlay on the host's root over 9p, where every new
# file name is looked up on the host: --state-tmpfs puts the state
# directory on tmpfs instead, to tell the daemon's own cost from the rig's.
# --state-disk puts it on ext4 on a virtio-blk disk, as a host's local disk
# would hold it (an fsync reaches the image file on the host).
if [ "$state_fs" = tmpfs ]; then
        mkdir -p /var/lib/daxbroker && mount -t tmpfs -o mode=0700 daxstate /var/lib/daxbroker ||
                die "cannot mount a tmpfs on /var/lib/daxbroker"
        echo "# state directory on tmpfs" >>"$raw"
elif [ "$state_fs" = disk ]; then
        if ! modprobe virtio_blk || ! modprobe ext4; then
                die "cannot load virtio_blk and ext4"
        fi
        for _ in $(seq 100); do [ -b /dev/vda ] && break; sleep 0.1; done
        if ! mkfs.ext4 -q -F /dev/vda || ! mkdir -p /var/lib/daxbroker ||
                ! mount -t ext4 /dev/vda /var/lib/daxbroker || ! chmod 0700 /var/lib/daxbroker; then
                die "cannot make and mount ext4 on /dev/vda at /var/lib/daxbroker"
        fi
        echo "# state directory on ext4 on a virtio-blk disk" >>"$raw"
fi

# One round of the reclaim suite; each program leaves the region empty.
reclaim_round() {
        local round=$1
        run "round $round: reclaim, raw" "$floor" --reclaim -r $region -n "$reclaim_iterations" -w 1
        run "round $round: reclaim, raw + zeroing (memset)" "$floor" --reclaim --zero \
                -r $region -n "$reclaim_iterations" -w 1
        run "round $round: reclaim, raw + zeroing (daemon's engine)" "$floor" --reclaim --zero=scrub \
                -r $region -n "$reclaim_iterations" -w 1
        run "round $round: reclaim, raw + zeroing (daemon's engine), paused" "$floor" --reclaim --zero=scrub \
                -P "$pause_ms" -r $region -n "$reclaim_iterations" -w 1
        run "round $round: reclaim, daxctl" "$floor" --reclaim --daxctl -r $region -n "$reclaim_iterations" -w 1
        start_daemon || die "daxbrokerd did not come up: $(tail -n 20 /tmp/daxbrokerd.log)"
        run "round $round: reclaim, daemon" "$busbench" --reclaim -p bench -P "$pause_ms" \
                -n "$reclaim_iterations" -w 1
        stop_daemon
}

for ((round = 1; do_reclaim && round <= rounds; round++)); do
        echo "# round $round" >>"$raw"
        reclaim_round "$round"
done

for ((round = 1; do_allocate && round <= rounds; round++)); do
        echo "# round $round" >>"$raw"
        run "round $round: floor, 1 live" "$floor" -r $region -n "$iterations" -H 0
        run "round $round: floor, $held held" "$floor" -r $region -n "$iterations" -H "$held"
        if [ "$paused_iterations" -gt 0 ]; then
                run "round $round: floor, paused" "$floor" -r $region -n "$paused_iterations" -P "$pause_ms"
                run "round $round: floor, zeroing" "$floor" -r $region -n "$paused_iterations" -w 1 --zero
        fi

        configure $warm1
        start_daemon || die "daxbrokerd did not come up: $(tail -n 20 /tmp/daxbrokerd.log)"
        cpu0=$(daemon_cpu)
        run "round $round: daemon, 1 live" "$busbench" -p bench -n "$iterations" -H 0 --warm-size $warm1 \
                --burst $burst
        cpu1=$(daemon_cpu)
        stop_daemon
        configure $warm500
        start_daemon || die "daxbrokerd did not come up: $(tail -n 20 /tmp/daxbrokerd.log)"
        cpu1b=$(daemon_cpu)
        run "round $round: daemon, $held held" "$busbench" -p bench -n "$iterations" -H "$held" --warm-size $warm500
        cpu2=$(daemon_cpu)
        echo "# daemon cpu ticks (utime+stime, $(getconf CLK_TCK)/s): held 0 pass $((cpu1 - cpu0)), held $held pass $((cpu2 - cpu1b))" >>"$raw"
        # Idle: the warm set full, nothing to zero, nobody calling.
        sleep 2
        cpu3=$(daemon_cpu)
        sleep 10
        cpu4=$(daemon_cpu)
        echo "# daemon idle cpu ticks over 10 s ($(getconf CLK_TCK)/s): $((cpu4 - cpu3))" >>"$raw"
        stop_daemon
done

if [ "$do_allocate" = 1 ] && [ "$daxctl_iterations" -gt 0 ]; then
        run "daxctl, 1 live" "$floor" --daxctl -r $region -n "$daxctl_iterations" -w 1 -H 0
        run "daxctl, $held held" "$floor" --daxctl -r $region -n "$daxctl_iterations" -w 1 -H "$held"
fi

# Every syscall of a few cycles, with kernel timestamps (ftrace has far
# less overhead than strace): bench/syscall-timeline.py reads it.
t=/sys/kernel/tracing
if [ "$trace" = 1 ]; then
        mountpoint -q $t || mount -t tracefs tracefs $t || die "no tracefs"
        echo 65536 >$t/buffer_size_kb
fi

# Trace FILE COMMAND...: the syscalls of COMMAND (and of the daemon) into
# $res/ftrace-FILE-$kernel.txt, its stdout into $res/trace-FILE-$kernel.txt.
traced() {
        local file=$1
        shift
        echo >$t/trace
        echo 1 >$t/events/syscalls/enable
        echo 1 >$t/tracing_on
        "$@" >"$res/trace-$file-$kernel.txt" || say "traced run $file failed"
        echo 0 >$t/tracing_on
        echo 0 >$t/events/syscalls/enable
        cp $t/trace "$res/ftrace-$file-$kernel.txt"
}

if [ "$trace" = 1 ] && [ "$do_reclaim" = 1 ]; then
        # One reclaiming Allocate, one ReclaimFromHost, one clean Allocate.
        start_daemon || die "daxbrokerd did not come up"
        traced reclaim-daemon "$busbench" --reclaim -p bench -P "$pause_ms" -n 1 -w 0
        stop_daemon
        traced reclaim-floor "$floor" --reclaim --zero=scrub -r $region -n 1 -w 0
fi

if [ "$trace" = 1 ] && [ "$do_allocate" = 1 ]; then
        start_daemon || die "daxbrokerd did not come up"
        "$busbench" -p bench -n 1 -w 0 -s 2M >/dev/null || die "warm-up failed"
        echo >$t/trace
        echo 1 >$t/events/syscalls/enable
        echo 1 >$t/tracing_on
        "$busbench" -p bench -n 3 -w 0 -s 2M >"$res/trace-daemon-$kernel.txt" || say "traced daemon run failed"
        echo 0 >$t/tracing_on
        cp $t/trace "$res/ftrace-daemon-$kernel.txt"
        # Cold 1 GiB Allocates, each on a quiet daemon (warm set full,
        # nothing to zero), as the measured ones.
        echo >$t/trace
        echo 1 >$t/tracing_on
        "$busbench" -p bench -n 3 -w 0 -s 1G --warm-size $warm500 >"$res/trace-daemon-1g-$kernel.txt" ||
                say "traced daemon 1 GiB run failed"
        echo 0 >$t/tracing_on
        cp $t/trace "$res/ftrace-daemon-1g-$kernel.txt"
        stop_daemon
        echo >$t/trace
        echo 1 >$t/tracing_on
        "$floor" -r $region -n 3 -w 0 -s 2M >"$res/trace-floor-$kernel.txt" || say "traced floor run failed"
        echo 0 >$t/tracing_on
        cp $t/trace "$res/ftrace-floor-$kernel.txt"
        echo >$t/trace
        echo 1 >$t/tracing_on
        "$floor" -r $region -n 3 -w 0 -s 1G >"$res/trace-floor-1g-$kernel.txt" || say "traced floor 1 GiB run failed"
        echo 0 >$t/tracing_on
        echo 0 >$t/events/syscalls/enable
        cp $t/trace "$res/ftrace-floor-1g-$kernel.txt"
fi

save_logs
awk -f "$src/bench/report.awk" "$raw"
