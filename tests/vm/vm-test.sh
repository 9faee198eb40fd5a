#!/bin/bash
# Host side of a real-kernel test: installs the build into a staging tree,
# boots the rig and runs payload.sh inside.
# Usage: vm-test.sh BUILD_ROOT SOURCE_ROOT KERNEL MEMHP MODE...
#   MODE "reboot" boots twice with the same state directory; MEMHP
#   "FIRST,SECOND" boots the first time with one policy, then the other
#   (offline,default: the reboot brings the regions up as host RAM).
set -u
build=$1 src=$2 kernel=$3 memhp=$4 mode=$5
work=$(mktemp -d /var/tmp/daxbroker-vmtest.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/results" "$work/state"

meson install -C "$build" --destdir "$work/stage" --quiet >/dev/null || { echo "meson install failed"; exit 1; }

boot() { # PAYLOAD-MODE [MEMHP]
        "$src/tests/vm/run-vm.sh" --kernel "$kernel" --memhp "${2:-$memhp}" --dbus \
                --stage "$work/stage" --results "$work/results" --state-disk "$work/state" \
                -- "$src/tests/vm/payload.sh" "$1" "$build/tests/scenarios/scenarios"
        local rc=$?
        # CI must run the real-kernel suites: a missing rig is a failure there.
        if [ $rc = 77 ] && [ "${CI:-}" = true ]; then
                echo "the QEMU rig is unavailable in CI"; return 1
        fi
        return $rc
}

if [ "$mode" = reboot ] && [ "${memhp#*,}" != "$memhp" ]; then
        boot reboot1 "${memhp%%,*}" || exit $?
        boot reboot2-host "${memhp#*,}"
elif [ "$mode" = reboot ]; then
        boot reboot1 || exit $?
        boot reboot2
else
        boot "$mode"
fi
