#!/bin/bash
# Runs inside the rig: the installed daxbroker (hook in
# /etc/libvirt/hooks/qemu.d/), a real libvirtd and QEMU from the shared root.
# A domain with an NVDIMM region and a main-RAM region (a guest NUMA node
# backed by memory-backend-file,share=on), both by their stable paths.
# Usage: libvirt-payload.sh SCENARIOS_BINARY SOURCE_ROOT
set -u
scn=$1
res=${DAXRIG_RESULTS:?}
n=0 fail=0 dpid=
ok() { n=$((n + 1)); echo "ok $n - $*"; }
nok() { n=$((n + 1)); fail=$((fail + 1)); echo "not ok $n - $*"; }
finish() {
        virsh -q destroy dax-e2e >/dev/null 2>&1
        [ -f /run/libvirt/libvirtd.pid ] && kill "$(cat /run/libvirt/libvirtd.pid)" 2>/dev/null
        [ -n "$dpid" ] && kill "$dpid" 2>/dev/null
        echo "1..$n"
        if [ $fail != 0 ]; then
                echo "# daemon log:"; sed 's/^/# /' "$res/daemon.log"
                echo "# libvirt domain log:"; sed 's/^/# /' /var/log/libvirt/qemu/dax-e2e.log 2>/dev/null | tail -20
                echo "# libvirtd log:"; sed 's/^/# /' "$res/libvirtd.log" 2>/dev/null | tail -30
                exit 1
        fi
        exit 0
}
export LIBVIRT_DEFAULT_URI=qemu:///system

mkdir -p /etc/daxbroker
cat > /etc/daxbroker/daxbroker.conf <<CONF
[Broker]
LibvirtURI=qemu:///system
CONF

start_daemon() {
        /usr/sbin/daxbrokerd >>"$res/daemon.log" 2>&1 &
        dpid=$!
        for _ in $(seq 600); do
                busctl --system call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus \
                        NameHasOwner s org.daxbroker.Broker1 2>/dev/null | grep -q true && return 0
                kill -0 "$dpid" 2>/dev/null || break
                sleep 0.1
        done
        echo "# daxbrokerd did not come up"; return 1
}
# allocations of one owner: "label device size pool start:size..." sorted by label
allocs() {
        busctl --system --json=short call org.daxbroker.Broker1 /org/daxbroker/Broker1 \
                org.daxbroker.Broker1.Manager ListAllocations | python3 -c '
import json, sys
for a in sorted(json.load(sys.stdin)["data"][0], key=lambda a: a[4]):
    if a[2] == sys.argv[1]:
        print(a[4], a[8], a[6], a[5], " ".join("%d:%d" % (r[0], r[1]) for r in a[11]))' "$1"
}

[ -x /etc/libvirt/hooks/qemu.d/daxbroker ] && ok "the hook is installed as /etc/libvirt/hooks/qemu.d/daxbroker" \
        || { nok "no hook installed"; finish; }

# The rig's chroot (9p root under overlayfs, a devtmpfs of its own) makes
# libvirt's private /dev for QEMU fail with EACCES on the dax node: a
# property of the chroot, not of libvirt (on a host no qemu.conf change is
# needed for the NVDIMM). So only here: no mount namespace. libvirt still
# labels the NVDIMM path (DAC), the hook gives the main-RAM device to
# libvirt-qemu, and the device cgroup stays on.
echo 'namespaces = []' >> /etc/libvirt/qemu.conf
# Not a rig workaround: what daxbroker-libvirt-hook(8) tells hosts to set for
# main RAM given on <qemu:commandline>, which libvirt does not read: without
# it the device cgroup refuses QEMU the device (EPERM). The NVDIMM needs
# nothing.
uuid=3f1c2a9e-7d4b-4c11-9e2f-0a6b5c4d3e21
cat >> /etc/libvirt/qemu.conf <<CONF
cgroup_device_acl = [
    "/dev/null", "/dev/full", "/dev/zero", "/dev/random", "/dev/urandom",
    "/dev/ptmx", "/dev/kvm",
    "/run/daxbroker/owners/$uuid/ram"
]
CONF
# The rig's bus would start daxbrokerd by activation for the release hook;
# the watcher case below needs the daemon to stay down, as on a host where
# it failed or is being upgraded.
rm -f /usr/share/dbus-1/system-services/org.daxbroker.Broker1.service

echo "# starting daxbrokerd"
start_daemon || finish
echo "# starting virtlogd and libvirtd"
mkdir -p /var/log/libvirt/qemu /var/lib/libvirt/qemu /run/libvirt
virtlogd -d
LIBVIRT_LOG_OUTPUTS="3:file:$res/libvirtd.log" libvirtd -d
for _ in $(seq 600); do timeout 60 virsh -q list >/dev/null 2>&1 && break; sleep 0.5; done
virsh -q list >/dev/null 2>&1 && ok "libvirtd answers" || { nok "libvirtd did not come up"; finish; }

mkdom() { # NAME UUID METADATA
        cat > "$res/$1.xml" <<XML
<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>$1</name>
  <uuid>$2</uuid>
  <metadata>
$3
  </metadata>
  <maxMemory slots='4' unit='GiB'>8</maxMemory>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <features><acpi/></features>
  <cpu><numa><cell id='0' cpus='0' memory='128' unit='MiB'/></numa></cpu>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <memory model='nvdimm' access='shared'>
      <source>
        <path>/run/daxbroker/owners/$2/pmem0</path>
        <alignsize unit='KiB'>2048</alignsize>
      </source>
      <target><size unit='MiB'>512</size><node>0</node></target>
    </memory>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-object'/>
    <qemu:arg value='memory-backend-file,id=daxbroker-ram,mem-path=/run/daxbroker/owners/$2/ram,size=256M,share=on,align=2M'/>
    <qemu:arg value='-numa'/>
    <qemu:arg value='node,nodeid=1,memdev=daxbroker-ram'/>
    <qemu:arg value='-m'/>
    <qemu:arg value='size=384M'/>
  </qemu:commandline>
</domain>
XML
}
mkdom dax-e2e $uuid "    <daxbroker:memory xmlns:daxbroker='https://daxbroker.org/libvirt/1'>
      <daxbroker:region label='pmem0' size='512' unit='MiB' pool='region1'/>
      <daxbroker:region label='ram' size='256' unit='MiB' pool='region0' user='libvirt-qemu' group='libvirt-qemu'/>
    </daxbroker:memory>"
out=$(virsh -q define "$res/dax-e2e.xml" 2>&1) && ok "domain defined" || { nok "define failed: $out"; finish; }

# --- start: allocations exist, QEMU maps both devices
out=$(virsh start --paused dax-e2e 2>&1) && ok "virsh start --paused dax-e2e" || { nok "start: $out"; finish; }
got=$(allocs $uuid)
echo "$got" | sed 's/^/# /'
pdev=$(echo "$got" | awk '$1 == "pmem0" && $3 == 536870912 && $4 == "region1" {print $2}')
rdev=$(echo "$got" | awk '$1 == "ram" && $3 == 268435456 && $4 == "region0" {print $2}')
[ -n "$pdev" ] && [ -n "$rdev" ] && ok "both regions are allocated for the domain's UUID ($pdev, $rdev)" \
        || nok "allocations: $got"
qpid=$(cat /run/libvirt/qemu/dax-e2e.pid 2>/dev/null)
maps=$(grep /dev/dax "/proc/$qpid/maps" 2>/dev/null)
echo "$maps" | sed 's/^/# /'
if [ -n "$pdev" ] && [ -n "$rdev" ] && echo "$maps" | grep -q " $pdev\$" && echo "$maps" | grep -q " $rdev\$" &&
        [ "$(echo "$maps" | awk '{print $2}' | grep -vc 's$')" = 0 ]; then
        ok "QEMU (pid $qpid) maps $pdev (NVDIMM) and $rdev (main RAM, guest node 1), shared"
else
        nok "QEMU maps: $maps"
fi

# Data the next tenant must not see, written while the guest owns the memory.
python3 - "$pdev" <<'PY' && ok "a pattern is written into the NVDIMM's memory" || nok "cannot write a pattern"
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
m = mmap.mmap(fd, 512 << 20, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
for off in range(0, 512 << 20, 2 << 20):
    m[off:off + 4096] = b"\xa5" * 4096
m.close()
PY
echo "region1 1 $(echo "$got" | awk '$1 == "pmem0" {print $5}' | tr ':' ' ')" > "$res/pmem-ranges"

# --- destroy: released by the hook, zeroed before reuse
virsh -q destroy dax-e2e >/dev/null && ok "virsh destroy" || nok "destroy failed"
[ -z "$(allocs $uuid)" ] && ok "after destroy nothing of the domain is allocated" || nok "left: $(allocs $uuid)"
[ ! -e /run/daxbroker/owners/$uuid/pmem0 ] && ok "its stable paths are gone" || nok "stable path left"
"$scn" --sysfs check-dirty "$res/pmem-ranges" | sed 's/^/# /'
[ "${PIPESTATUS[0]}" = 0 ] && ok "the NVDIMM's memory reads zero for the next owner (same physical range)" \
        || nok "memory not zeroed for the next owner"

# --- invalid metadata: the start fails with our message, nothing allocated
bad=5b2d7c1e-0f3a-4e8b-9c6d-7e8f9a0b1c2d
mkdom dax-bad $bad "    <daxbroker:memory xmlns:daxbroker='https://daxbroker.org/libvirt/1'>
      <daxbroker:region label='pmem0' size='512' unit='MeB'/>
    </daxbroker:memory>"
virsh -q define "$res/dax-bad.xml" >/dev/null
out=$(virsh start dax-bad 2>&1); rc=$?
echo "$out" | sed 's/^/# /'
[ $rc != 0 ] && echo "$out" | grep -q "daxbroker: domain 'dax-bad': region 'pmem0': unit 'MeB' is not a libvirt unit" \
        && ok "invalid metadata: virsh start fails with the hook's message" || nok "invalid metadata: rc=$rc"
[ -z "$(allocs $bad)" ] && ok "nothing allocated for it" || nok "left: $(allocs $bad)"
# A valid first region and an impossible second: the first is released again.
big=6c3e8d2f-1a4b-4f9c-8d7e-8f9a0b1c2d3e
mkdom dax-big $big "    <daxbroker:memory xmlns:daxbroker='https://daxbroker.org/libvirt/1'>
      <daxbroker:region label='pmem0' size='512' unit='MiB'/>
      <daxbroker:region label='ram' size='64' unit='TiB'/>
    </daxbroker:memory>"
virsh -q define "$res/dax-big.xml" >/dev/null
out=$(virsh start dax-big 2>&1); rc=$?
echo "$out" | sed 's/^/# /'
[ $rc != 0 ] && echo "$out" | grep -q "daxbroker: domain 'dax-big': region 'ram' (64 TiB)" && [ -z "$(allocs $big)" ] \
        && ok "a region the daemon refuses fails the start; the region allocated before it is released" \
        || nok "dax-big: rc=$rc left=$(allocs $big)"

# --- the daemon is killed while the domain runs, the domain is destroyed,
# the daemon comes back: its watcher finds the leak and releases it
out=$(virsh start --paused dax-e2e 2>&1) && [ -n "$(allocs $uuid)" ] && ok "started again, allocated again" \
        || nok "restart: $out"
kill -9 "$dpid"; wait "$dpid" 2>/dev/null; dpid=
virsh -q destroy dax-e2e >/dev/null 2>&1 && ok "destroyed while daxbrokerd is down (the release hook cannot reach it)" \
        || nok "destroy while down"
start_daemon || finish
gone=
for _ in $(seq 600); do [ -z "$(allocs $uuid)" ] && { gone=1; break; }; sleep 0.5; done
[ -n "$gone" ] && grep -q "libvirt: releasing allocation .* of domain $uuid, which is not running" "$res/daemon.log" \
        && ok "after the restart the watcher found the leaked allocations and released them" \
        || nok "leak not released: $(allocs $uuid)"
finish
