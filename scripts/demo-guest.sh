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
HostReturn=yes
Reserve=512M
HostReturnDelay=5s
CONF
say "Configuration: pool 'near' (region 0, ranges on 512 MiB boundaries) and pool 'far' (region 1),
which lends idle memory to the host in 1 GiB chunks, keeping 512 MiB ready for VMs"
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
memtotal() { awk '/MemTotal/ {printf "%d MiB\n", $2 / 1024}' /proc/meminfo; }
far_host() { daxbrokerctl --json status | python3 -c 'import json,sys; print(next(p["host"] for p in json.load(sys.stdin)["pools"] if p["name"]=="far"))'; }
say "Pool 'far' has been idle for 5 s: its spare memory now serves the host page allocator"
for _ in $(seq 600); do [ "$(far_host)" -gt 0 ] && break; sleep 0.2; done
printf 'Host MemTotal: '; memtotal
run daxbrokerctl status
say "Every block of that chunk is online, movable, as ordinary host RAM"
for d in /sys/bus/dax/devices/dax1.*; do
        [ "$(basename "$(readlink "$d/driver" 2>/dev/null)")" = kmem ] || continue
        printf '%s (kmem): %s-%s\n' "$(basename "$d")" "$(cat "$d/mapping0/start")" "$(cat "$d/mapping0/end")"
done
say "The host uses that memory (a process fills node 1's free memory, then exits)"
python3 - <<'PY'
import ctypes, mmap, re
free_kb = int(re.search(r"MemFree:\s+(\d+)", open("/sys/devices/system/node/node1/meminfo").read()).group(1))
size = (free_kb * 1024 - (192 << 20)) & ~((2 << 20) - 1)
m = mmap.mmap(-1, size)
libc = ctypes.CDLL(None, use_errno=True)
mask = ctypes.c_ulong(1 << 1)
buf = ctypes.c_char.from_buffer(m)
libc.syscall(237, ctypes.c_void_p(ctypes.addressof(buf)), ctypes.c_size_t(size), 2, ctypes.byref(mask),
             ctypes.c_ulong(64), 0)  # mbind(MPOL_BIND, node 1)
del buf
for off in range(0, size, 4096):
    m[off:off + 8] = b"HOSTDATA"
print(f"wrote host data over {size >> 20} MiB of node 1")
m.close()
PY
say "VM 'gamma' needs 1.5 GiB in 'far', more than is free: the broker takes the chunk back"
run daxbrokerctl allocate gamma 1536M --pool far --no-contiguous --label ram0
printf 'Host MemTotal: '; memtotal
say "Gamma's memory reads zero: what the host left there never reaches the VM"
python3 - <<'PY'
import mmap, os
fd = os.open("/run/daxbroker/owners/gamma/ram0", os.O_RDONLY)
m = mmap.mmap(fd, 1536 << 20, mmap.MAP_SHARED, mmap.PROT_READ)
dirty = sum(1 for off in range(0, len(m), 4096) if m[off:off + 8] != bytes(8))
print("pages with anything but zeros:", dirty)
m.close(); os.close(fd)
PY
say "Gamma goes; after the delay the chunk returns to the host"
run daxbrokerctl release-owner gamma
for _ in $(seq 600); do [ "$(far_host)" -gt 0 ] && break; sleep 0.2; done
printf 'Host MemTotal: '; memtotal
run daxbrokerctl status
say "What daxbrokerd logged"
cat /tmp/daxbrokerd.log
kill $pid
wait $pid 2>/dev/null
say "Demo finished"
