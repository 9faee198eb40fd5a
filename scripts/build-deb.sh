#!/bin/bash
# Builds the Debian package (daxbroker_*.deb) from a copy of the source tree,
# so neither the tree nor its parent directory is written to.
# Usage: build-deb.sh SOURCE_ROOT OUTPUT_DIR [COPY]
#   COPY  also copy the package to this path (a fixed name for meson)
# Prints the path of the .deb on its last line. The package build runs with
# DEB_BUILD_OPTIONS=nocheck (the test suites run from the source tree).
set -eu
src=$(cd "$1" && pwd)
out=$2 copy=${3:-}
mkdir -p "$out"
out=$(cd "$out" && pwd)
command -v dpkg-buildpackage >/dev/null || { echo "build-deb: dpkg-buildpackage missing (dpkg-dev)" >&2; exit 77; }
command -v dh >/dev/null || { echo "build-deb: dh missing (debhelper)" >&2; exit 77; }

work=$out/pkg
rm -rf "$work"
mkdir -p "$work/daxbroker"
# Everything but build directories (they hold meson-private/) and VCS data.
for e in "$src"/* "$src"/.[!.]*; do
        [ -e "$e" ] || continue
        n=$(basename "$e")
        case $n in .git|.cache|obj-*) continue ;; esac
        [ -d "$e/meson-private" ] && continue
        cp -a "$e" "$work/daxbroker/"
done
rm -f "$out"/daxbroker_*.deb
(cd "$work/daxbroker" &&
        DEB_BUILD_OPTIONS="nocheck ${DEB_BUILD_OPTIONS:-}" \
        dpkg-buildpackage -us -uc -b) >"$out/build-deb.log" 2>&1 || {
        tail -n 40 "$out/build-deb.log" >&2
        echo "build-deb: dpkg-buildpackage failed, log in $out/build-deb.log" >&2
        exit 1
}
deb=$(ls "$work"/daxbroker_*.deb)
mv "$deb" "$out/"
rm -rf "$work"
[ -z "$copy" ] || cp "$out/$(basename "$deb")" "$copy"
echo "$out/$(basename "$deb")"
