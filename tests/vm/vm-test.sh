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

# One install at a time per build: vm tests run in parallel, and meson
# install may rebuild and writes the build's install log.
flock "$build/meson-private/vm-install.lock" \
        meson install -C "$build" --destdir "$work/stage" --quiet >/dev/null || { echo "meson install failed"; exit 1; }

boot() { # PAYLOAD-MODE [MEMHP]
        "$src/tests/vm/run-vm.sh" --kernel "$kernel" --memhp "${2:-$memhp}" --dbus \
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
        boot reboot1 "${memhp%%,*}" || exit $?
        boot reboot2-host "${memhp#*,}"
elif [ "$mode" = reboot ]; then
        boot reboot1 || exit $?
        boot reboot2
else
        boot "$mode"
fi
