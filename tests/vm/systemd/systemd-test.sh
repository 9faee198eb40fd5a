#!/bin/bash
# Host side of the systemd test: builds the Debian package (when the source
# tree has changed since the last build), boots the rig with systemd as
# PID 1 and runs systemd-payload.sh with the package.
# Usage: systemd-test.sh SOURCE_ROOT KERNEL DEB_DIR
set -u
src=$1 kernel=$2 debdir=$3
mkdir -p "$debdir"
deb=$debdir/daxbroker.deb
exec 9>"$debdir/.lock"
flock 9
stale=no
if [ ! -s "$deb" ]; then
        stale=yes
elif [ -n "$(find "$src" \( -name '.git' -o -name 'obj-*' -o -path "$src/build*" \) -prune \
                -o -type f -newer "$deb" -print -quit)" ]; then
        stale=yes
fi
if [ $stale = yes ]; then
        echo "building the package"
        "$src/scripts/build-deb.sh" "$src" "$debdir" "$deb.new" || exit $?
        mv "$deb.new" "$deb"
fi
flock -u 9
"$src/tests/vm/run-vm.sh" --kernel "$kernel" --systemd --timeout 1500 -- "$src/tests/vm/systemd/systemd-payload.sh" "$deb"
rc=$?
if [ $rc = 77 ] && [ "${CI:-}" = true ]; then
        echo "the QEMU rig is unavailable in CI"; exit 1
fi
exit $rc
