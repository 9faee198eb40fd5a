#!/bin/bash
# Host side of the authorization test: installs the build into a staging
# tree and boots the rig with a stock system dbus-daemon, then runs
# auth-payload.sh inside as root.
# Usage: auth-test.sh BUILD_ROOT SOURCE_ROOT KERNEL
set -u
build=$1 src=$2 kernel=$3
work=$(mktemp -d /var/tmp/daxbroker-authtest.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/results"

# One install at a time per build: vm tests run in parallel, and meson
# install may rebuild and writes the build's install log.
flock "$build/meson-private/vm-install.lock" \
        meson install -C "$build" --destdir "$work/stage" --quiet >/dev/null || { echo "meson install failed"; exit 1; }

"$src/tests/vm/run-vm.sh" --kernel "$kernel" --dbus --stage "$work/stage" --results "$work/results" \
        -- "$src/tests/vm/auth/auth-payload.sh"
rc=$?
# The real-kernel suites must run: a rig that cannot is a failure unless
# skipping was asked for (DAXBROKER_ALLOW_SKIP=1), and never under CI.
if [ $rc = 77 ] && { [ "${DAXBROKER_ALLOW_SKIP:-0}" != 1 ] || [ "${CI:-}" = true ]; }; then
        echo "the QEMU rig could not run and skipping was not allowed"
        exit 1
fi
exit $rc
