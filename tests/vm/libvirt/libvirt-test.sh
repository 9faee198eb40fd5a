#!/bin/bash
# Host side of the libvirt end-to-end test: installs the build into a
# staging tree (hook included), boots the rig with a stock system bus and
# runs libvirt-payload.sh inside.
# Usage: libvirt-test.sh BUILD_ROOT SOURCE_ROOT KERNEL
set -u
build=$1 src=$2 kernel=$3
command -v libvirtd >/dev/null && command -v virsh >/dev/null ||
        { echo "1..0 # SKIP libvirt-daemon-system is not installed on the host (tests/vm/packages.txt)"; exit 77; }
work=$(mktemp -d /var/tmp/daxbroker-libvirt.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/results"
# One install at a time per build: vm tests run in parallel, and meson
# install may rebuild and writes the build's install log.
flock "$build/meson-private/vm-install.lock" \
        meson install -C "$build" --destdir "$work/stage" --quiet >/dev/null || { echo "meson install failed"; exit 1; }
"$src/tests/vm/run-vm.sh" --kernel "$kernel" --memhp offline --dbus --stage "$work/stage" --results "$work/results" \
        -- "$src/tests/vm/libvirt/libvirt-payload.sh" "$build/tests/scenarios/scenarios" "$src"
rc=$?
if [ $rc = 77 ] && [ "${CI:-}" = true ]; then
        echo "the QEMU rig is unavailable in CI"; exit 1
fi
exit $rc
