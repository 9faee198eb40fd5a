#!/bin/bash
# Runs inside the QEMU rig (--iommu --dbus --stage): starts the installed
# daxbrokerd on the system bus, binds QEMU's edu device (1234:11e8) to
# vfio-pci and runs vfio-map, which maps allocations for DMA through the
# IOMMU.  Output is vfio-map's TAP, then the daemon log.
# Usage: vfio-payload.sh VFIO_MAP_BINARY
set -u
vfio_map=$1
log=/run/daxbrokerd-vfio.log
pid=

fail() { echo "Bail out! $*"; [ -s "$log" ] && { echo "--- daemon log"; cat "$log"; }; exit 1; }

echo "# kernel $(uname -r): $(cat /proc/cmdline)"
[ "${DAXRIG_IOMMU:-0}" = 1 ] || fail "the rig was booted without --iommu"
[ -x "$vfio_map" ] || fail "no vfio-map binary at $vfio_map"

# The embedded default configuration: every soft-reserved region is a pool.
rm -rf /etc/daxbroker/daxbroker.conf /etc/daxbroker/daxbroker.conf.d

# --- the edu device on vfio-pci ---------------------------------------------
modprobe vfio-pci 2>/dev/null
edu=
for d in /sys/bus/pci/devices/*; do
        [ "$(cat "$d/vendor")" = 0x1234 ] && [ "$(cat "$d/device")" = 0x11e8 ] && { edu=$d; break; }
done
[ -n "$edu" ] || fail "no edu PCI device (1234:11e8)"
bdf=${edu##*/}
[ -e "$edu/iommu_group" ] || fail "$bdf has no IOMMU group (is the IOMMU on?)"
if [ -e "$edu/driver" ] && [ "$(basename "$(readlink "$edu/driver")")" != vfio-pci ]; then
        echo "$bdf" >"$edu/driver/unbind" || fail "cannot unbind $bdf from its driver"
fi
echo vfio-pci >"$edu/driver_override" || fail "cannot set driver_override of $bdf"
echo "$bdf" >/sys/bus/pci/drivers_probe 2>/dev/null
[ "$(basename "$(readlink "$edu/driver")")" = vfio-pci ] || fail "$bdf did not bind to vfio-pci"
group=$(basename "$(readlink "$edu/iommu_group")")
for _ in $(seq 50); do
        [ -c "/dev/vfio/$group" ] && break
        sleep 0.1
done
[ -c "/dev/vfio/$group" ] || fail "/dev/vfio/$group did not appear"
echo "# edu at $bdf bound to vfio-pci, IOMMU group $group"

# --- the daemon -------------------------------------------------------------
/usr/sbin/daxbrokerd >"$log" 2>&1 &
pid=$!
up=0
for _ in $(seq 600); do
        if busctl --system call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus \
                NameHasOwner s org.daxbroker.Broker1 2>/dev/null | grep -q true; then
                up=1; break
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
done
[ $up = 1 ] || fail "daxbrokerd did not come up"

rc=0
"$vfio_map" --device "$bdf" || rc=1
if ! kill -0 "$pid" 2>/dev/null; then
        echo "# daxbrokerd is gone"; rc=1
fi
kill "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
echo "# dmesg (IOMMU, VFIO, dax):"
dmesg | grep -i -E 'dmar|iommu|vfio|dax' | tail -n 30 | sed 's/^/#   /'
echo "--- daemon log"
cat "$log"
exit $rc
