#!/bin/bash
# run-bench.sh - latency of daxbrokerd's Allocate and Release against the raw
# sysfs floor (bench/floor) and daxctl, on Debian's 6.1 and 6.12 kernels in
# the QEMU rig (tests/vm/run-vm.sh, --memhp offline). See docs/benchmarks.md.
#
# Usage: run-bench.sh [OPTIONS] BUILD_DIR SOURCE_DIR
#   (or: meson compile -C BUILD_DIR bench)
#
#   --kernel 6.1|6.12       kernel to boot; repeatable (default: both)
#   --accel kvm|tcg|auto    passed to run-vm.sh (default auto)
#   --results DIR           where raw numbers, logs and report.txt go
#                           (default: a new /var/tmp/daxbroker-bench.XXXXXX)
#   --iterations N, --rounds R, --held K, --daxctl-iterations N,
#   --paused-iterations N, --pause-ms MS, --suite allocate|reclaim|allocate,reclaim,
#   --reclaim-iterations N, --trace, --state-tmpfs, --state-rig
#                           passed to bench/guest-bench.sh (see there)
#
# The daemon's state directory is an ext4 file system on a virtio-blk disk
# (a sparse image in /var/tmp, removed afterwards), as on a host whose
# /var/lib is on a local disk; --state-tmpfs and --state-rig measure it on
# a tmpfs and on the rig's /var (overlayfs over 9p) for reference.
#
# Prints, per kernel, the median latencies and the ratios with the targets
# (bench/report.awk: a warm Allocate at most 0.15x the floor's allocate, a
# cold one 1.2x, the Release reply 0.15x the floor's release, a burst of 20
# warm Allocates 0.2x 20 floor allocates, with 500 live allocations every
# operation at most 1.05x its time with one, RSS at 500 live at most 16 MiB,
# no CPU when idle; an Allocate that reclaims 1 GiB from the host at most
# 1.2x the raw sysfs sequence). It reports; it
# does not fail on a missed target. Exit status: 0 when every kernel was measured,
# 77 when the rig is unavailable, 1 otherwise.
set -u

kernels=() accel=${DAXRIG_ACCEL:-auto} results='' guest_opts=() state_disk=1
while [ $# -gt 0 ]; do
        case $1 in
        --kernel) kernels+=("$2"); shift 2 ;;
        --accel) accel=$2; shift 2 ;;
        --results) results=$2; shift 2 ;;
        --iterations|--rounds|--held|--daxctl-iterations|--paused-iterations|--pause-ms|--suite|--reclaim-iterations)
                guest_opts+=("$1" "$2"); shift 2 ;;
        --trace) guest_opts+=("$1"); shift ;;
        --state-tmpfs|--state-rig) guest_opts+=("$1"); state_disk=0; shift ;;
        -h|--help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
        --) shift; break ;;
        -*) echo "run-bench: unknown option $1" >&2; exit 2 ;;
        *) break ;;
        esac
done
[ $# = 2 ] || { echo "usage: run-bench.sh [OPTIONS] BUILD_DIR SOURCE_DIR" >&2; exit 2; }
build=$(cd "$1" && pwd) src=$(cd "$2" && pwd)
[ ${#kernels[@]} -gt 0 ] || kernels=(6.1 6.12)

for b in bench/floor bench/bus-bench src/daxbrokerd; do
        [ -x "$build/$b" ] || { echo "run-bench: $build/$b is not built" >&2; exit 1; }
done

if [ -z "$results" ]; then
        results=$(mktemp -d /var/tmp/daxbroker-bench.XXXXXX) || exit 1
fi
mkdir -p "$results" || exit 1
results=$(cd "$results" && pwd)
stage=$(mktemp -d /var/tmp/daxbroker-bench-stage.XXXXXX) || exit 1
disk_opts=()
if [ "$state_disk" = 1 ]; then
        disk=$(mktemp /var/tmp/daxbroker-bench-disk.XXXXXX) && truncate -s 256M "$disk" || exit 1
        disk_opts=(--disk "$disk")
        guest_opts+=(--state-disk)
fi
trap 'rm -rf "$stage" ${disk:+"$disk"}' EXIT

meson install -C "$build" --destdir "$stage" --quiet >/dev/null || { echo "run-bench: meson install failed" >&2; exit 1; }

rc=0 skipped=0
: >"$results/report.txt"
for k in "${kernels[@]}"; do
        log=$results/console-$k.log
        echo "run-bench: kernel $k (console: $log)"
        "$src/tests/vm/run-vm.sh" --kernel "$k" --memhp offline --dbus --accel "$accel" --timeout 3600 \
                --stage "$stage" --results "$results" "${disk_opts[@]}" \
                -- "$src/bench/guest-bench.sh" "${guest_opts[@]}" "$build" "$src" 2>&1 |
                tee "$log" | grep --line-buffered -E '^(guest-bench|run-vm):'
        st=${PIPESTATUS[0]}
        if [ "$st" = 77 ]; then
                skipped=$((skipped + 1))
                continue
        fi
        if [ "$st" != 0 ] || [ ! -s "$results/raw-$k.txt" ]; then
                echo "run-bench: the run on kernel $k failed (status $st)" >&2
                rc=1
                continue
        fi
        machine=$(sed -n 's/^run-vm: kernel .*, accel \([a-z]*\),.*/\1/p' "$log" | head -n 1)
        {
                awk -f "$src/bench/report.awk" "$results/raw-$k.txt"
                echo "  QEMU accelerator: ${machine:-unknown}; host: $(nproc) CPUs," \
                        "$(grep -m 1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
                echo
        } >>"$results/report.txt"
done

cat "$results/report.txt"
echo "run-bench: raw numbers, logs and report.txt in $results"
[ "$rc" = 0 ] && [ "$skipped" = ${#kernels[@]} ] && exit 77
exit $rc
