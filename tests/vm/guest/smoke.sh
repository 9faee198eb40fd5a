#!/bin/sh
# Payload of the 'VM rig boots' tests: run inside the rig's guest (chroot of
# the host root) and check that the two soft-reserved regions became dax
# regions on NUMA nodes 0 and 1.
set -u
fail=0
bad() { echo "smoke: FAIL: $*"; fail=1; }

echo "smoke: kernel $(uname -r), DAXRIG_KERNEL=${DAXRIG_KERNEL:-?} memhp=${DAXRIG_MEMHP:-?}"
grep -i -B1 -A2 'soft reserved' /proc/iomem
n=$(grep -c 'Soft Reserved' /proc/iomem)
[ "$n" = 2 ] || bad "expected 2 Soft Reserved ranges in /proc/iomem, saw $n"

ls /sys/bus/dax/devices
nodes=""
for r in 0 1; do
    d=/sys/bus/dax/devices/dax$r.0
    [ -e "$d" ] || { bad "dax$r.0 missing"; continue; }
    size=$(cat "$d/../dax_region/size")
    tn=$(cat "$d/target_node")
    drv=$(basename "$(readlink "$d/driver" 2>/dev/null)" 2>/dev/null)
    echo "smoke: dax$r.0 region size=$size target_node=$tn driver=${drv:-none}"
    [ "$size" = 2147483648 ] || bad "region $r size $size, want 2 GiB"
    nodes="$nodes $tn"
done
[ "$nodes" = " 0 1" ] || bad "target nodes were '$nodes', want ' 0 1'"

if command -v daxctl >/dev/null 2>&1; then
    daxctl list -R || bad "daxctl list -R failed"
    c=$(daxctl list -R | grep -c '"id"')
    [ "$c" = 2 ] || bad "daxctl list -R shows $c regions, want 2"
fi
[ $fail = 0 ] && echo "smoke: OK"
exit $fail
