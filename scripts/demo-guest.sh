#!/bin/bash
# The demo's guest half: runs inside the QEMU host that scripts/demo.sh boots.
set -u
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

say "This machine has soft-reserved memory: the firmware set it aside for special use"
grep -i "soft reserved" /proc/iomem
say "Linux shows each soft-reserved range as a device-dax region"
run daxctl list -R

mkdir -p /etc/daxbroker
cat > /etc/daxbroker/daxbroker.conf <<CONF
[Pool near]
Region=0
Boundary=512M

[Pool far]
Region=1
CONF
say "Configuration: pool 'near' (region 0, ranges on 512 MiB boundaries) and pool 'far' (region 1)"
cat /etc/daxbroker/daxbroker.conf

say "Starting daxbrokerd on the system bus"
/usr/sbin/daxbrokerd 2>/tmp/daxbrokerd.log &
pid=$!
for _ in $(seq 300); do
        busctl --system status org.daxbroker.Broker1 >/dev/null 2>&1 && break
        sleep 0.1
done
run daxbrokerctl status

say "VM 'alpha' asks for 1 GiB in pool 'near'"
run daxbrokerctl allocate alpha 1G --pool near --label ram0
say "VM 'beta' asks for 512 MiB on NUMA node 1"
run daxbrokerctl allocate beta 512M --numa-node 1 --label ram0
run daxbrokerctl list

say "Each allocation is a real /dev/daxR.N with exactly the reported physical ranges"
for d in /sys/bus/dax/devices/dax*; do
        n=$(basename "$d"); s=$(cat "$d/size")
        [ "$s" = 0 ] && continue
        printf '%s: %s bytes, driver %s, ranges:' "$n" "$s" "$(basename "$(readlink "$d/driver" 2>/dev/null)")"
        for m in "$d"/mapping[0-9]*; do printf ' %s-%s' "$(cat "$m/start")" "$(cat "$m/end")"; done
        echo
done

say "VM managers that open by path (QEMU mem-path) use the stable links"
run ls -l /run/daxbroker/owners/alpha /run/daxbroker/owners/beta
say "Writing through alpha's device and reading it back"
python3 - <<'PY'
import mmap, os
fd = os.open("/run/daxbroker/owners/alpha/ram0", os.O_RDWR)
m = mmap.mmap(fd, 1 << 30, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
msg = b"hello from VM alpha"
m[4096:4096 + len(msg)] = msg
print("read back:", m[4096:4096 + len(msg)].decode())
m.close(); os.close(fd)
PY

say "The state survives a daemon crash: kill -9 and start again"
run kill -9 $pid
wait $pid 2>/dev/null
/usr/sbin/daxbrokerd 2>>/tmp/daxbrokerd.log &
pid=$!
for _ in $(seq 300); do
        busctl --system status org.daxbroker.Broker1 >/dev/null 2>&1 && break
        sleep 0.1
done
run daxbrokerctl list

say "Alpha shuts down: its memory goes back to the pool"
run daxbrokerctl release-owner alpha
say "Beta too"
run daxbrokerctl release-owner beta
say "Released memory is free at once, and counted dirty until it has been zeroed in the background"
run daxbrokerctl status
for _ in $(seq 600); do
        daxbrokerctl --json status | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if all(p["dirty"]==0 for p in d["pools"]) else 1)' && break
        sleep 0.2
done
say "A moment later every byte is zeroed: the next VM cannot read what alpha or beta left"
run daxbrokerctl status
say "What daxbrokerd logged"
cat /tmp/daxbrokerd.log
kill $pid
wait $pid 2>/dev/null
say "Demo finished"
