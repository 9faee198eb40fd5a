#!/bin/bash
# Host side of a real-kernel test: installs the build into a staging tree,
# boots the rig and runs payload.sh inside.
# Usage: vm-test.sh BUILD_ROOT SOURCE_ROOT KERNEL MEMHP MODE...
#   MODE "hmat" boots twice with run-vm.sh --hmat (hmat1, then hmat2).
#   MODE "reboot" boots twice with the same state directory; MEMHP
#   "FIRST,SECOND,..." boots the first time with one policy, then reboots
#   into each of the others in turn (offline,default: the reboot brings
#   the regions up as host RAM on 6.12); "system-ram" is a boot that
#   reconfigures the regions to system-ram (kmem, online movable) before
#   the daemon starts, as daxctl's boot-time configuration does, on any
#   kernel.
#   CRASH_POINTS="P1 P2" limits MODE crash-points to those points.
set -u
build=$1 src=$2 kernel=$3 memhp=$4 mode=$5
work=$(mktemp -d /var/tmp/daxbroker-vmtest.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/results" "$work/state"
# CRASH_POINTS="P1 P2": the crash-point suite runs just those.
[ -n "${CRASH_POINTS:-}" ] && echo "$CRASH_POINTS" >"$work/results/crash-points"

# One install at a time per build: vm tests run in parallel, and meson
# install may rebuild and writes the build's install log.
flock "$build/meson-private/vm-install.lock" \
        meson install -C "$build" --destdir "$work/stage" --quiet >/dev/null || { echo "meson install failed"; exit 1; }

# The crash-point and stress modes restart the daemon many times in one
# boot: small regions keep the memory each restart zeroes small under TCG.
extra=()
case $mode in
crash-points|stress) extra=(--region-size 512M --timeout "${DAXRIG_TIMEOUT:-5400}") ;;
hmat) extra=(--hmat) ;;
esac

boot() { # PAYLOAD-MODE [MEMHP]
        "$src/tests/vm/run-vm.sh" --kernel "$kernel" --memhp "${2:-$memhp}" --dbus "${extra[@]}" \
                --stage "$work/stage" --results "$work/results" --state-disk "$work/state" \
                -- "$src/tests/vm/payload.sh" "$1" "$build/tests/scenarios/scenarios"
        local rc=$?
        # The real-kernel suites must run: a rig that cannot is a failure unless
        # skipping was asked for (DAXBROKER_ALLOW_SKIP=1), and never under CI.
        if [ $rc = 77 ] && { [ "${DAXBROKER_ALLOW_SKIP:-0}" != 1 ] || [ "${CI:-}" = true ]; }; then
                echo "the QEMU rig could not run and skipping was not allowed"; return 1
        fi
        return $rc
}

if [ "$mode" = reboot ] && [ "${memhp#*,}" != "$memhp" ]; then
        # One reboot after another, each with the next policy; the
        # allocations made in the first boot are checked after each.
        IFS=, read -ra policies <<<"$memhp"
        boot reboot1 "${policies[0]}" || exit $?
        for p in "${policies[@]:1}"; do
                echo "### reboot with memhp $p"
                if [ "$p" = system-ram ]; then
                        # Not a memhp policy: the boot reconfigures the
                        # regions to system-ram (as daxctl's boot-time
                        # configuration does) before daxbrokerd starts.
                        boot reboot2-sysram offline || exit $?
                else
                        boot reboot2-auto "$p" || exit $?
                fi
        done
elif [ "$mode" = hmat ]; then
        boot hmat1 || exit $?
        boot hmat2
elif [ "$mode" = reboot ]; then
        boot reboot1 || exit $?
        boot reboot2
else
        boot "$mode"
fi
