#!/bin/bash
# The installed unit: `systemd-analyze verify` accepts it and
# `systemd-analyze security --offline=yes` rates it at most 2.5.
# Usage: unit-check.sh UNIT DAXBROKERD
set -u
unit=$1 daemon=$(realpath "$2")
command -v systemd-analyze >/dev/null || { echo "SKIP: systemd-analyze not installed"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# verify wants ExecStart= to exist: point it at the built daemon.
sed "s|^ExecStart=.*|ExecStart=$daemon|" "$unit" >"$work/daxbrokerd.service"
rc=0
if ! systemd-analyze verify --man=no "$work/daxbrokerd.service"; then
        echo "FAIL: systemd-analyze verify"; rc=1
fi
systemd-analyze security --offline=yes --no-pager "$work/daxbrokerd.service" | tail -n 1
if ! systemd-analyze security --offline=yes --threshold=25 "$work/daxbrokerd.service" >/dev/null 2>&1; then
        echo "FAIL: exposure above 2.5"; rc=1
fi
exit $rc
