#!/bin/bash
# Installs every Debian package the build, the tests and the demo need.
set -eu
cd "$(dirname "$0")/.."
pkgs=$(cat scripts/packages.txt tests/vm/packages.txt 2>/dev/null | sed 's/#.*//' | tr -s ' \n' ' ')
missing=
for p in $pkgs; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
        echo "==> Installing:$missing"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        apt-get install -y -q --no-install-recommends $missing
fi
