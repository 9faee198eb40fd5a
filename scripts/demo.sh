#!/bin/bash
# The demo: boots a QEMU host whose firmware map has two 2 GiB soft-reserved
# regions on two NUMA nodes (Debian's own 6.1 kernel), installs daxbroker in
# it and walks daxbrokerd through allocations, a crash and releases.
set -eu
cd "$(dirname "$0")/.."
root=$(pwd)
./scripts/install-deps.sh
build=$root/build-demo
[ -f "$build/build.ninja" ] || meson setup "$build" --prefix=/usr --sysconfdir=/etc --localstatedir=/var >/dev/null
ninja -C "$build" >/dev/null
stage=$(mktemp -d /var/tmp/daxbroker-demo.XXXXXX)
trap 'rm -rf "$stage"' EXIT
meson install -C "$build" --destdir "$stage/root" --quiet >/dev/null
echo "Booting the demo host (Debian's 6.1 kernel under QEMU; this takes a little while)..."
"$root/tests/vm/run-vm.sh" --kernel "${DEMO_KERNEL:-6.1}" --dbus --stage "$stage/root" \
        -- "$root/scripts/demo-guest.sh"
