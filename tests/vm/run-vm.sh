#!/bin/bash
# run-vm.sh - boot a Debian kernel in QEMU and run one payload command inside
# a chroot of this machine's root filesystem, against the guest kernel's real
# /sys/bus/dax.  Part of the daxbroker test rig; see docs/test-rig.md.
#
# Usage: run-vm.sh [options] [--] PAYLOAD...
#
#   PAYLOAD        command line run as `sh -c "PAYLOAD"` inside the chroot
#                  (several words are joined with spaces).  Its exit status
#                  becomes run-vm.sh's exit status.
#
# Options (each also settable through the environment variable shown):
#   --kernel 6.1|6.12   kernel flavour                    DAXRIG_KERNEL (6.1)
#   --memhp offline|default|online|online_movable         DAXRIG_MEMHP (offline)
#                       offline: guest gets memhp_default_state=offline, so
#                       hotplugged (kmem) memory stays offline; default: no
#                       parameter (Debian's 6.12 then onlines the hmem regions
#                       as ZONE_NORMAL host RAM at boot); online and
#                       online_movable: memhp_default_state=online or
#                       online_movable (what an administrator may set).
#   --region-size SIZE  size of each soft-reserved region, 128M..2G in
#                       128 MiB steps (e.g. 512M).      DAXRIG_REGION_SIZE (2G)
#   --iommu             q35 + intel-iommu + edu PCI device (1234:11e8), guest
#                       intel_iommu=on iommu=pt, vfio modules loaded. DAXRIG_IOMMU=1
#   --results DIR       host dir shared rw into the guest, mounted at the same
#                       absolute path; the payload sees it as $DAXRIG_RESULTS.
#                                                         DAXRIG_RESULTS
#   --stage DIR         DESTDIR tree (meson install --destdir DIR) copied over
#                       the guest's writable root before the payload. DAXRIG_STAGE
#   --state-disk DIR    host dir shared rw at /var/lib/daxbroker in the guest
#                       (boot twice with the same DIR to test persistence).
#                                                         DAXRIG_STATE_DISK
#   --disk FILE         raw image attached as a virtio-blk disk (/dev/vda
#                       once the payload has run `modprobe virtio_blk`);
#                       guest flushes reach FILE's file system.  DAXRIG_DISK
#   --dbus              start `dbus-daemon --system --fork` before the payload.
#                                                         DAXRIG_DBUS=1
#   --systemd           boot systemd as PID 1 (default target daxrig.target:
#                       sysinit, basic, sockets incl. dbus.socket) and run the
#                       payload as the service daxrig-payload.service.
#                                                         DAXRIG_SYSTEMD=1
#   --hmat              ACPI HMAT (-machine hmat=on) and three NUMA nodes:
#                       node 0 the CPUs and [0,1G) of RAM; node 1 [1G,2G)
#                       of RAM and region 0 ([4G,6G)) behind a 512 MiB
#                       direct-mapped write-back memory-side cache (64-byte
#                       lines); node 2 region 1 ([6G,8G)) alone. Latency
#                       and bandwidth from node 0 to each node (20/20 ns,
#                       20/20 GB/s; 80/100 ns, 5/4 GB/s; 160/200 ns, 2/1
#                       GB/s, read/write). The kernel publishes node 2's
#                       HMAT only once it has online memory: never, here.
#                       Needs the default region size.    DAXRIG_HMAT=1
#   --no-dax-modules    do not load device_dax, kmem, dax_hmem at boot.
#                                                         DAXRIG_DAX_MODULES=0
#   --append ARGS       extra kernel command line.        DAXRIG_APPEND
#   --cache DIR         kernel + initramfs cache.         DAXRIG_CACHE
#                       (default /var/tmp/daxbroker-vm-cache-$UID)
#   --accel kvm|tcg|auto                                  DAXRIG_ACCEL (auto)
#   --timeout SECONDS   hard limit around QEMU.           DAXRIG_TIMEOUT (600)
#   --log FILE          also keep the console log here.   DAXRIG_LOG
#   DAXRIG_TCG_THREAD=single|multi   TCG threading (default single)
#
# Guest layout: q35 machine, 2 vCPUs, -m 6G as two NUMA nodes of 3 GiB
# (memory-backend-ram m0/m1; both CPUs on node 0), max-ram-below-4g=1G so
# guest RAM is [0,1G) + [4G,9G).  Node 0 = [0,1G)+[4G,6G), node 1 = [6G,9G).
# Two soft-reserved regions, 2 GiB each:
#   0x100000000-0x17fffffff (node 0) and 0x180000000-0x1ffffffff (node 1),
# via memmap=2G%4G-1+0xefffffff memmap=2G%6G-1+0xefffffff (nokaslr);
# --region-size S makes them S long, at the same starts.
#
# Inside the payload: PATH is the usual one, cwd is run-vm.sh's cwd (when it
# exists in the guest), and DAXRIG=1, DAXRIG_KERNEL, DAXRIG_KVER,
# DAXRIG_MEMHP, DAXRIG_IOMMU, DAXRIG_RESULTS are set.  The guest kernel's
# modules are bind-mounted at /lib/modules/$(uname -r), so modprobe works.
#
# Exit status: the payload's; 124 on timeout; 1 on a kernel panic, a missing
# marker or another rig failure. When QEMU or the kernel cannot be had, or
# the payload exits 77 (it cannot run), the exit status is 77 (meson's SKIP)
# only if DAXBROKER_ALLOW_SKIP=1 and CI is not "true"; otherwise it is 1,
# with the reason: a test that did not run must not look like a pass.

set -u
SKIP=77
HERE=$(cd "$(dirname "$0")" && pwd)

KERNEL=${DAXRIG_KERNEL:-6.1}
MEMHP=${DAXRIG_MEMHP:-offline}
REGION_SIZE=${DAXRIG_REGION_SIZE:-2G}
IOMMU=${DAXRIG_IOMMU:-0}
RESULTS=${DAXRIG_RESULTS:-}
STAGE=${DAXRIG_STAGE:-}
STATE=${DAXRIG_STATE_DISK:-}
DISK=${DAXRIG_DISK:-}
DBUS=${DAXRIG_DBUS:-0}
SYSTEMD=${DAXRIG_SYSTEMD:-0}
DAXMODS=${DAXRIG_DAX_MODULES:-1}
HMAT=${DAXRIG_HMAT:-0}
APPEND=${DAXRIG_APPEND:-}
CACHE=${DAXRIG_CACHE:-/var/tmp/daxbroker-vm-cache-$(id -u)}
ACCEL=${DAXRIG_ACCEL:-auto}
TIMEOUT=${DAXRIG_TIMEOUT:-600}
LOG=${DAXRIG_LOG:-}

msg() { echo "run-vm: $*" >&2; }
skip_allowed() { [ "${DAXBROKER_ALLOW_SKIP:-0}" = 1 ] && [ "${CI:-}" != true ]; }
skip() {
    skip_allowed && { msg "SKIP: $*"; exit $SKIP; }
    msg "FAIL: $* (the rig must run; DAXBROKER_ALLOW_SKIP=1 allows skipping outside CI)"
    exit 1
}
fail() { msg "FAIL: $*"; exit 1; }
need_arg() { [ $# -ge 2 ] || fail "option $1 needs an argument"; }

while [ $# -gt 0 ]; do
    case $1 in
    --kernel) need_arg "$@"; KERNEL=$2; shift 2 ;;
    --memhp) need_arg "$@"; MEMHP=$2; shift 2 ;;
    --region-size) need_arg "$@"; REGION_SIZE=$2; shift 2 ;;
    --iommu) IOMMU=1; shift ;;
    --results) need_arg "$@"; RESULTS=$2; shift 2 ;;
    --stage) need_arg "$@"; STAGE=$2; shift 2 ;;
    --state-disk) need_arg "$@"; STATE=$2; shift 2 ;;
    --disk) need_arg "$@"; DISK=$2; shift 2 ;;
    --dbus) DBUS=1; shift ;;
    --systemd) SYSTEMD=1; shift ;;
    --no-dax-modules) DAXMODS=0; shift ;;
    --hmat) HMAT=1; shift ;;
    --append) need_arg "$@"; APPEND="$APPEND $2"; shift 2 ;;
    --cache) need_arg "$@"; CACHE=$2; shift 2 ;;
    --accel) need_arg "$@"; ACCEL=$2; shift 2 ;;
    --timeout) need_arg "$@"; TIMEOUT=$2; shift 2 ;;
    --log) need_arg "$@"; LOG=$2; shift 2 ;;
    -h|--help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
    --) shift; break ;;
    -*) fail "unknown option $1" ;;
    *) break ;;
    esac
done
[ $# -gt 0 ] || fail "no payload given (try --help)"
PAYLOAD="$*"

case $KERNEL in 6.1|6.12) ;; *) fail "--kernel must be 6.1 or 6.12" ;; esac
case $MEMHP in offline|default|online|online_movable) ;;
*) fail "--memhp must be offline, default, online or online_movable" ;; esac
case $REGION_SIZE in
*M) region_mib=${REGION_SIZE%M} ;;
*G) region_mib=$((${REGION_SIZE%G} * 1024)) ;;
*) region_mib=x ;;
esac
case $region_mib in ''|*[!0-9]*) fail "--region-size must be a size in M or G" ;; esac
[ "$region_mib" -ge 128 ] && [ "$region_mib" -le 2048 ] && [ $((region_mib % 128)) = 0 ] ||
    fail "--region-size must be 128M..2G in 128 MiB steps"
case $ACCEL in auto|kvm|tcg) ;; *) fail "--accel must be auto, kvm or tcg" ;; esac

QEMU=${DAXRIG_QEMU:-qemu-system-x86_64}
command -v "$QEMU" >/dev/null 2>&1 || skip "$QEMU not installed"
for t in cpio gzip xz timeout; do
    command -v $t >/dev/null 2>&1 || skip "$t not installed"
done
BUSYBOX=${DAXRIG_BUSYBOX:-/bin/busybox}
[ -x "$BUSYBOX" ] || skip "busybox (busybox-static) not installed"
if command -v file >/dev/null 2>&1 && ! file -L "$BUSYBOX" | grep -q 'statically linked'; then
    skip "$BUSYBOX is not statically linked (install busybox-static)"
fi

abspath() { (cd "$1" && pwd); }
[ -z "$DISK" ] || [ -f "$DISK" ] || fail "disk image '$DISK' does not exist"
for v in RESULTS STAGE STATE; do
    d=${!v}
    [ -n "$d" ] || continue
    [ -d "$d" ] || fail "$v directory '$d' does not exist"
    printf -v "$v" '%s' "$(abspath "$d")"
done

mkdir -p "$CACHE" || fail "cannot create $CACHE"
CACHE=$(abspath "$CACHE")

# --- kernel -----------------------------------------------------------------
out=$("$HERE/fetch-kernels.sh" "$CACHE" "$KERNEL")
rc=$?
[ "$rc" = 0 ] || { [ "$rc" = $SKIP ] && skip "fetch-kernels.sh cannot get kernel $KERNEL"; fail "fetch-kernels.sh failed ($rc)"; }
KVER=$(printf '%s\n' "$out" | tail -n 1 | awk '{print $2}')
[ -n "$KVER" ] || fail "fetch-kernels.sh printed no kernel version"
KDIR=$CACHE/$KVER
VMLINUZ=$KDIR/boot/vmlinuz-$KVER
[ -r "$VMLINUZ" ] || fail "no kernel image at $VMLINUZ"
MODDIR=$KDIR/lib/modules/$KVER
[ -d "$MODDIR" ] || MODDIR=$KDIR/usr/lib/modules/$KVER
[ -f "$MODDIR/modules.dep" ] || fail "no modules.dep in $MODDIR"

# --- base initramfs (cached per kernel version) -----------------------------
MOD_BASE="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci
 virtio_rng netfs fscache 9pnet 9pnet_virtio 9p overlay"
MOD_DAX="device_dax kmem dax_hmem"
MOD_VFIO="irqbypass vfio vfio_virqfd vfio_iommu_type1 vfio_pci_core vfio_pci"

# Print, in load order, the modules.dep paths of the named modules and their
# dependencies (built-in and missing modules are skipped).
declare -A SEEN
resolve_mods() {
    local m key path deps d i
    for m in "$@"; do
        key=${m//-/_}
        path=$(awk -F: -v k="$key" '{
                n = $1; sub(/.*\//, "", n); sub(/\.ko(\.[a-z]+)?$/, "", n)
                gsub(/-/, "_", n)
                if (n == k) { print $1; exit } }' "$MODDIR/modules.dep")
        if [ -z "$path" ]; then
            grep -Eq "/${key//_/[_-]}\.ko\$" "$MODDIR/modules.builtin" ||
                msg "note: module $m not found in $KVER"
            continue
        fi
        [ -z "${SEEN[$path]:-}" ] || continue
        deps=$(awk -F: -v p="$path" '$1 == p { print $2; exit }' "$MODDIR/modules.dep")
        # modules.dep lists dependencies so that loading them in reverse
        # order works (as modprobe does).
        set -- $deps
        for ((i = $#; i >= 1; i--)); do
            d=${!i}
            [ -z "${SEEN[$d]:-}" ] || continue
            SEEN[$d]=1
            echo "$d"
        done
        SEEN[$path]=1
        echo "$path"
    done
}

INIT=$HERE/guest/init
[ -r "$INIT" ] || fail "missing $INIT"
stamp=$( (cat "$INIT" "$0"; echo "$KVER"; cksum <"$BUSYBOX") | cksum | awk '{print $1}')
BASE=$CACHE/initramfs-$KVER-$stamp.cpio.gz
if [ ! -s "$BASE" ]; then
    msg "building initramfs for $KVER"
    work=$(mktemp -d "$CACHE/.initrd.XXXXXX")
    mkdir -p "$work/bin" "$work/rig/modules" "$work/proc" "$work/sys" "$work/dev"
    cp "$BUSYBOX" "$work/bin/busybox"
    cp "$INIT" "$work/init"
    chmod 0755 "$work/init" "$work/bin/busybox"
    for g in base dax vfio; do
        case $g in base) l=$MOD_BASE ;; dax) l=$MOD_DAX ;; vfio) l=$MOD_VFIO ;; esac
        SEEN=()
        : >"$work/rig/modules/$g.list"
        for p in $(resolve_mods $l); do
            n=$(basename "$p"); n=${n%.xz}; n=${n%.zst}; n=${n%.gz}
            case $p in
            *.xz) xz -dc "$MODDIR/$p" >"$work/rig/modules/$n" ;;
            *.zst) zstd -qdc "$MODDIR/$p" >"$work/rig/modules/$n" ;;
            *.gz) gzip -dc "$MODDIR/$p" >"$work/rig/modules/$n" ;;
            *) cp "$MODDIR/$p" "$work/rig/modules/$n" ;;
            esac || fail "cannot unpack module $p"
            echo "$n" >>"$work/rig/modules/$g.list"
        done
    done
    # Built under a name of this run's own, then renamed: tests running in
    # parallel may build the same image at once.
    (cd "$work" && find . | cpio -o -H newc --quiet | gzip -1) >"$work.cpio.gz" ||
        fail "cpio failed"
    mv "$work.cpio.gz" "$BASE"
    rm -rf "$work"
    # Drop initramfs images of older rig versions for this kernel.
    for old in "$CACHE"/initramfs-"$KVER"-*.cpio.gz; do
        [ "$old" = "$BASE" ] || rm -f "$old"
    done
fi

# --- per-run part -----------------------------------------------------------
RUN=$(mktemp -d "${TMPDIR:-/tmp}/daxrig.XXXXXX") || fail "mktemp failed"
QPID=
cleanup() {
    [ -n "$QPID" ] && kill "$QPID" 2>/dev/null
    rm -rf "$RUN"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

NONCE=$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
q() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }
CWD=$(pwd)
mkdir -p "$RUN/root/rig"
{
    echo "RIG_NONCE=$NONCE"
    echo "RIG_FLAVOUR=$KERNEL"
    echo "RIG_MEMHP=$MEMHP"
    echo "RIG_IOMMU=$IOMMU"
    echo "RIG_DBUS=$DBUS"
    echo "RIG_SYSTEMD=$SYSTEMD"
    echo "RIG_DAX_MODULES=$DAXMODS"
    echo "RIG_STAGE=$([ -n "$STAGE" ] && echo 1 || echo 0)"
    echo "RIG_STATE=$([ -n "$STATE" ] && echo 1 || echo 0)"
    echo "RIG_RESULTS=$(q "$RESULTS")"
    echo "RIG_MODDIR=$(q "$MODDIR")"
    echo "RIG_CWD=$(q "$CWD")"
} >"$RUN/root/rig/conf"
printf '%s\n' "$PAYLOAD" >"$RUN/root/rig/payload"
(cd "$RUN/root" && find . | cpio -o -H newc --quiet | gzip -1) >"$RUN/run.cpio.gz" ||
    fail "cpio failed"
cat "$BASE" "$RUN/run.cpio.gz" >"$RUN/initrd"

# --- accelerator --------------------------------------------------------------
# /dev/kvm can exist and even initialise while guests hang (broken nested
# virtualisation), so the probe boots the real kernel without an initramfs:
# with working KVM it panics ("VFS: Unable to mount root") within seconds.
# The verdict is cached per host boot.
kvm_works() {
    local bootid verdict f out
    [ -r /dev/kvm ] && [ -w /dev/kvm ] || return 1
    bootid=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null || echo unknown)
    f=$CACHE/kvm-probe-$bootid
    # One probe for all the tests that start at once.
    exec 8>"$CACHE/.kvm-probe.lock"
    flock 8
    if [ ! -s "$f" ]; then
        rm -f "$CACHE"/kvm-probe-*
        out=$(timeout -k 5 "${DAXRIG_KVM_PROBE_TIMEOUT:-25}" "$QEMU" -accel kvm -cpu host \
            -machine q35 -m 512M -nodefaults -nographic -serial stdio -no-reboot \
            -kernel "$VMLINUZ" -append "console=ttyS0 panic=-1 root=/dev/nonexistent" \
            </dev/null 2>&1)
        if printf '%s' "$out" | grep -q 'Kernel panic'; then
            echo kvm >"$f"
        else
            echo tcg >"$f"
            msg "KVM probe failed (guest did not boot under KVM): using TCG"
        fi
    fi
    read -r verdict <"$f"
    exec 8>&-
    [ "$verdict" = kvm ]
}
if [ "$ACCEL" = auto ]; then
    if kvm_works; then ACCEL=kvm; else ACCEL=tcg; fi
fi
# Multi-threaded TCG occasionally oopses 6.12 at boot ("Oops: int3" while
# the kernel live-patches its text), so the default is one TCG thread.
if [ "$ACCEL" = kvm ]; then
    CPU=(-cpu host); ACCEL_OPT=kvm
else
    CPU=(-cpu max); ACCEL_OPT="tcg,thread=${DAXRIG_TCG_THREAD:-single}"
fi

# --- QEMU command line --------------------------------------------------------
CMDLINE="console=ttyS0 quiet panic=-1 nokaslr rdinit=/init"
CMDLINE="$CMDLINE memmap=${region_mib}M%4G-1+0xefffffff memmap=${region_mib}M%6G-1+0xefffffff"
[ "$MEMHP" = default ] || CMDLINE="$CMDLINE memhp_default_state=$MEMHP"
[ "$IOMMU" = 1 ] && CMDLINE="$CMDLINE intel_iommu=on iommu=pt"
[ "$SYSTEMD" = 1 ] && [ "$DBUS" = 1 ] && fail "--dbus and --systemd exclude each other (systemd starts the bus)"
CMDLINE="$CMDLINE $APPEND"

MACHINE="q35,max-ram-below-4g=1G"
ARGS=(-accel "$ACCEL_OPT" "${CPU[@]}" -smp 2 -m 6G  # shellcheck disable=SC2054
      -object memory-backend-ram,id=m0,size=3G
      -object memory-backend-ram,id=m1,size=3G
      -numa node,nodeid=0,memdev=m0,cpus=0-1
      -numa node,nodeid=1,memdev=m1
      -nodefaults -nographic -serial stdio -no-reboot
      -kernel "$VMLINUZ" -initrd "$RUN/initrd" -append "$CMDLINE"
      -device virtio-rng-pci
      -virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap")
if [ "$IOMMU" = 1 ]; then
    MACHINE="$MACHINE,kernel-irqchip=split"
    ARGS+=(-device intel-iommu,intremap=on,caching-mode=on -device edu)
fi
if [ "$HMAT" = 1 ]; then
    # The kernel publishes a node's HMAT in sysfs only once the node has
    # online memory, and makes a dax region of a HMAT memory target only
    # when the target's SRAT range is soft-reserved whole. QEMU gives a
    # node one SRAT range, split only at the hole below 4 GiB: so node 1
    # straddles the hole ([1G,2G) System RAM, [4G,6G) region 0 alone),
    # and region 1 is node 2 alone (memory-only, no HMAT in sysfs).
    [ "$region_mib" = 2048 ] || fail "--hmat needs the default 2 GiB regions"
    MACHINE="q35,max-ram-below-4g=2G,hmat=on"
    for i in "${!ARGS[@]}"; do [ "${ARGS[$i]}" = -nodefaults ] && rest=("${ARGS[@]:$i}") && break; done
    ARGS=(-accel "$ACCEL_OPT" "${CPU[@]}" -smp 2 -m 6G  # shellcheck disable=SC2054
          -object memory-backend-ram,id=m0,size=1G
          -object memory-backend-ram,id=m1,size=3G
          -object memory-backend-ram,id=m2,size=2G
          -numa node,nodeid=0,memdev=m0,cpus=0-1,initiator=0
          -numa node,nodeid=1,memdev=m1,initiator=0
          -numa node,nodeid=2,memdev=m2,initiator=0
          "${rest[@]}")
    for t in 0 1 2; do
        case $t in 0) rl=20 wl=20 rb=20G wb=20G ;; 1) rl=80 wl=100 rb=5G wb=4G ;; 2) rl=160 wl=200 rb=2G wb=1G ;; esac
        # shellcheck disable=SC2054
        ARGS+=(-numa hmat-lb,initiator=0,target=$t,hierarchy=memory,data-type=read-latency,latency=$rl
               -numa hmat-lb,initiator=0,target=$t,hierarchy=memory,data-type=write-latency,latency=$wl
               -numa hmat-lb,initiator=0,target=$t,hierarchy=memory,data-type=read-bandwidth,bandwidth=$rb
               -numa hmat-lb,initiator=0,target=$t,hierarchy=memory,data-type=write-bandwidth,bandwidth=$wb)
    done
    ARGS+=(-numa hmat-cache,node-id=1,size=512M,level=1,associativity=direct,policy=write-back,line=64)
fi
ARGS=(-machine "$MACHINE" "${ARGS[@]}")
[ -n "$RESULTS" ] && ARGS+=(-virtfs "local,path=$RESULTS,mount_tag=results,security_model=none,multidevs=remap")
[ -n "$STAGE" ] && ARGS+=(-virtfs "local,path=$STAGE,mount_tag=stage,security_model=none,readonly=on,multidevs=remap")
[ -n "$STATE" ] && ARGS+=(-virtfs "local,path=$STATE,mount_tag=statedisk,security_model=none,multidevs=remap")
[ -n "$DISK" ] && ARGS+=(-drive "file=$DISK,if=virtio,format=raw,cache=writeback")

msg "kernel $KVER ($KERNEL), accel $ACCEL, memhp $MEMHP, regions ${region_mib} MiB, iommu $IOMMU, hmat $HMAT, timeout ${TIMEOUT}s"
CONSOLE=$RUN/console.log
start=$(date +%s.%N)
timeout -k 10 "$TIMEOUT" "$QEMU" "${ARGS[@]}" </dev/null 2>"$RUN/qemu.err" |
    stdbuf -o0 tr -d '\r' | tee "$CONSOLE"
qrc=${PIPESTATUS[0]}
end=$(date +%s.%N)
[ -n "$LOG" ] && cp "$CONSOLE" "$LOG"
secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')

if [ -s "$RUN/qemu.err" ]; then
    sed 's/^/qemu: /' "$RUN/qemu.err" >&2
fi
if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
    msg "FAIL: timeout after ${TIMEOUT}s"
    exit 124
fi
if grep -q 'Kernel panic' "$CONSOLE"; then
    fail "guest kernel panic"
fi
if [ "$qrc" != 0 ]; then
    if ! grep -q "DAXRIG-$NONCE: BOOT" "$CONSOLE"; then
        grep -qi 'kvm' "$RUN/qemu.err" && skip "QEMU could not start with $ACCEL"
    fi
    fail "QEMU exited with status $qrc"
fi
grep -q "DAXRIG-$NONCE: BOOT" "$CONSOLE" || fail "guest never reached init (no BOOT marker)"
grep -q "DAXRIG-$NONCE: FAIL" "$CONSOLE" && fail "rig setup failed in the guest"
grep -q "DAXRIG-$NONCE: PAYLOAD-START" "$CONSOLE" || fail "payload never started"
st=$(sed -n "s/.*DAXRIG-$NONCE: EXIT=\([0-9][0-9]*\)\$/\1/p" "$CONSOLE" | tail -n 1)
[ -n "$st" ] || fail "no exit marker from the guest (payload crashed the guest?)"
msg "payload exit status $st (${secs}s, $ACCEL)"
[ "$st" = $SKIP ] && skip "the payload could not run (see its output above)"
exit "$st"
