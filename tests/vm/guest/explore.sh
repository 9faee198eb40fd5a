#!/bin/bash
# Payload for run-vm.sh: print the dax/sysfs facts documented in
# docs/test-rig.md, and walk one region through a manual
# create -> mapping -> bind -> open, unbind -> size 0 -> delete cycle,
# printing the errno of every write.  Destructive: run it in the rig only.
# Usage (inside the rig): explore.sh [REGION]   (default region 1)
R=${1:-1}
D=/sys/bus/dax/devices
DRV=/sys/bus/dax/drivers

# w FILE VALUE: write VALUE to FILE in one write(2), print the errno.
w() {
    local err r
    err=$( { printf '%s' "$2" >"$1"; } 2>&1 )
    if [ -z "$err" ]; then r=OK; else
        r=${err##*: }
        case $r in
        "Device or resource busy") r="EBUSY ($r)" ;;
        "Invalid argument") r="EINVAL ($r)" ;;
        "No such device") r="ENODEV ($r)" ;;
        "No such device or address") r="ENXIO ($r)" ;;
        "Cannot allocate memory") r="ENOMEM ($r)" ;;
        "No space left on device") r="ENOSPC ($r)" ;;
        "No such file or directory") r="ENOENT ($r)" ;;
        "File exists") r="EEXIST ($r)" ;;
        "Operation not permitted") r="EPERM ($r)" ;;
        "Permission denied") r="EACCES ($r)" ;;
        "Numerical result out of range") r="ERANGE ($r)" ;;
        esac
    fi
    printf '  write %-55s <- %-28s : %s\n' "$1" "$2" "$r"
}
show() { for f in "$@"; do printf '  %-55s = %s\n' "$f" "$(cat "$f" 2>&1 | tr '\n' ' ')"; done; }
drv() { local l; l=$(readlink "$D/$1/driver" 2>/dev/null) && basename "$l" || echo none; }
blocks() { # summarise memory blocks covering [start,end]
    bs=$(cat /sys/devices/system/memory/block_size_bytes)
    python3 - "$1" "$2" "$bs" <<'PY'
import sys, os, collections
s, e, bs = int(sys.argv[1], 16), int(sys.argv[2], 16), int(sys.argv[3], 16)
c = collections.Counter(); zones = collections.Counter(); missing = 0
for b in range(s // bs, e // bs + 1):
    p = "/sys/devices/system/memory/memory%d" % b
    if not os.path.isdir(p):
        missing += 1; continue
    st = open(p + "/state").read().strip()
    c[st] += 1
    try: zones[open(p + "/valid_zones").read().strip()] += 1
    except OSError: pass
print("  memory blocks %#x-%#x: %s absent=%d valid_zones=%s" % (s, e, dict(c), missing, dict(zones)))
PY
}

echo "== kernel $(uname -r); cmdline: $(cat /proc/cmdline)"
echo "== /proc/iomem (above 4G and soft reserved)"
grep -E 'Soft|hmem|dax|kmem|^1[0-9a-f]{8}|^2[0-9a-f]{8}' /proc/iomem | sed 's/^/  /'
echo "== memory: block_size_bytes=$(cat /sys/devices/system/memory/block_size_bytes) auto_online_blocks=$(cat /sys/devices/system/memory/auto_online_blocks)"
for n in /sys/devices/system/node/node*; do echo "  $(basename $n): $(grep MemTotal $n/meminfo | awk '{print $4, $5}') memory blocks: $(ls -d $n/memory* 2>/dev/null | wc -l)"; done
grep -E 'MemTotal' /proc/meminfo | sed 's/^/  /'
echo "== /sys/bus/dax"
ls -l $D | sed 's/^/  /'
ls $DRV | sed 's/^/  drivers: /'
for d in $DRV/*; do echo "  $(basename $d): $(ls $d | tr '\n' ' ')"; done
for r in 0 1; do
    dev=dax$r.0
    echo "== $dev: realpath $(readlink -f $D/$dev); driver $(drv $dev)"
    echo "  files: $(ls $D/$dev | tr '\n' ' ')"
    echo "  dax_region -> $(readlink -f $D/$dev/../dax_region)"
    echo "  dax_region files: $(ls $D/$dev/../dax_region | tr '\n' ' ')"
    for f in $D/$dev/*; do [ -f "$f" ] && [ -r "$f" ] && show "$f"; done 2>/dev/null
    for m in $D/$dev/mapping[0-9]*; do [ -d "$m" ] && show $m/start $m/end $m/page_offset; done
    for f in $D/$dev/../dax_region/*; do [ -f "$f" ] && show "$f"; done
    p=$(readlink -f $D/$dev/..)
    echo "  parent $p: $(ls $p | tr '\n' ' ')"
    for f in $p/resource $p/dax_region/resource $p/numa_node $p/driver_override; do [ -e $f ] && show $f; done; echo "  parent driver: $(basename "$(readlink $p/driver)")"
    show $D/$dev/target_node $D/$dev/numa_node
    st=$(cat $D/$dev/mapping0/start 2>/dev/null); en=$(cat $D/$dev/mapping0/end 2>/dev/null)
    [ -n "$st" ] && blocks $st $en
done
if command -v daxctl >/dev/null; then
    echo "== daxctl list -RDu"
    daxctl list -RDu 2>&1 | sed 's/^/  /'
fi

dev=dax$R.0
RG=$D/$dev/../dax_region
START=$(cat $D/$dev/mapping0/start)
echo "== manual cycle on region $R (start $START), driver at boot: $(drv $dev)"
if [ "$(drv $dev)" = kmem ]; then
    echo "-- kmem-bound: offline its memory blocks, then unbind kmem"
    bs=$(cat /sys/devices/system/memory/block_size_bytes)
    en=$(cat $D/$dev/mapping0/end)
    for b in $(python3 -c "import sys; s,e,bs=(int(x,16) for x in sys.argv[1:]); print(*range(s//bs, e//bs+1))" $START $en $bs); do
        if [ "$(cat /sys/devices/system/memory/memory$b/state)" = online ]; then
            w /sys/devices/system/memory/memory$b/state offline
        fi
    done
    blocks $START $en
    w $D/$dev/size 0
    w $DRV/kmem/unbind $dev
    w $DRV/kmem/remove_id $dev
else
    w $D/$dev/size 0
    w $DRV/device_dax/unbind $dev
fi
echo "  driver now $(drv $dev); iomem:"; grep -E -A3 "Soft" /proc/iomem | sed 's/^/    /'
w $D/$dev/size 0
show $D/$dev/size $RG/size $RG/available_size $RG/seed $RG/create
echo "  $dev files after size 0: $(ls $D/$dev | tr '\n' ' ')"
show $D/$dev/resource $RG/../resource; ls -d $D/$dev/mapping* | sed "s/^/  /"
echo "  iomem after size 0:"; grep -E -A2 "Soft" /proc/iomem | sed 's/^/    /'
w $RG/delete $dev
w $RG/create 1
NEW=$(cat $RG/create)
echo "  created: $NEW; seed=$(cat $RG/seed); devices: $(ls $D | tr '\n' ' ')"
show $D/$NEW/size $D/$NEW/target_node $D/$NEW/numa_node $D/$NEW/align
echo "  $NEW driver: $(drv $NEW)"
w $DRV/device_dax/bind $NEW
S=$(printf '%#x' $((START)))
E256=$(printf '%#x' $((START + 0x10000000 - 1)))
w $D/$NEW/mapping "$S-$(printf '%#x' $((START + 0x100000 - 1)))"
w $D/$NEW/mapping "$S-$E256"
show $D/$NEW/size $D/$NEW/mapping0/start $D/$NEW/mapping0/end $RG/available_size
w $D/$NEW/mapping "$S-$E256"
w $D/$NEW/size 0x20100000
w $D/$NEW/size 536870912
show $D/$NEW/size
for m in $D/$NEW/mapping[0-9]*; do show $m/start $m/end; done
w $D/$NEW/size 268435456
w $DRV/device_dax/bind $NEW
echo "  after bare bind: driver $(drv $NEW)"
if [ "$(drv $NEW)" = none ]; then
    w $DRV/device_dax/new_id $NEW
    echo "  after new_id: driver $(drv $NEW)"
fi
w $DRV/device_dax/bind $NEW
w $D/$NEW/size 0
w $D/$NEW/align 1073741824
w $RG/delete $NEW
w $D/$NEW/mapping "$(printf '%#x' $((START + 0x10000000)))-$(printf '%#x' $((START + 0x101fffff)))"
show $D/$NEW/size
for m in $D/$NEW/mapping[0-9]*; do show $m/start $m/end; done
ls -l /dev/$NEW | sed 's/^/  /'
python3 - /dev/$NEW <<'PY'
import os, mmap, sys
fd = os.open(sys.argv[1], os.O_RDWR)
m = mmap.mmap(fd, 2 << 20, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
m[0:5] = b"hello"
print("  open+mmap(MAP_SHARED, 2 MiB) of %s ok, read back %r" % (sys.argv[1], m[0:5]))
m.close()
try:
    mmap.mmap(fd, 2 << 20, mmap.MAP_PRIVATE)
    print("  MAP_PRIVATE mmap ok")
except OSError as e:
    print("  MAP_PRIVATE mmap: %s" % e)
try:
    os.read(fd, 4096); print("  read() ok")
except OSError as e:
    print("  read(): %s" % e)
os.close(fd)
PY
echo "  iomem with $NEW:"; grep -E -A3 "Soft" /proc/iomem | sed 's/^/    /'
echo "-- teardown"
w $DRV/device_dax/unbind $NEW
w $DRV/device_dax/remove_id $NEW
w $D/$NEW/size 0
w $RG/delete $NEW
echo "  devices: $(ls $D | tr '\n' ' '); seed=$(cat $RG/seed) available=$(cat $RG/available_size)"
echo "-- create until ENOSPC"
w $RG/create 1; N1=$(cat $RG/create)
w $RG/create 1; N2=$(cat $RG/create)
echo "  created $N1 $N2 (two zero-size devices); seed=$(cat $RG/seed)"
w $D/$N1/size 2147483648
w $RG/create 1
echo "  create now reads: $(cat $RG/create); devices: $(ls $D | tr '\n' ' ')"
w $D/$N1/size 0
w $RG/delete $N1
w $RG/delete $N2
w $RG/delete dax9.9
echo "-- restore $dev to the full region"
w $D/$dev/size 2147483648
w $DRV/device_dax/new_id $dev
w $DRV/device_dax/bind $dev
echo "  $dev driver $(drv $dev), size $(cat $D/$dev/size); devices: $(ls $D | tr '\n' ' ')"
echo "== done"
