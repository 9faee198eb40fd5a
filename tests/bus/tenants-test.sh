#!/bin/bash
# Tenants on the sim backend: three real uids on the private bus, a polkit
# (polkit-mock) that grants org.daxbroker.Broker1.allocate and refuses
# manage, as a group member's polkit would. Each attack a hostile local
# user can make on another is refused with a named error and changes
# nothing; the real owner's allocations, links and ReleaseOwner keep
# working. Runs as root (to act as the other uids with setpriv).
# Usage: tenants-test.sh DAXBROKERCTL POLKIT_MOCK ADDR RUNTIME_DIR WORKDIR
# The daemon runs with MaxAllocationsPerUid=6.
set -u
ctl=$1 mock=$2 addr=$3 run=$4 work=$5
n=0 rc=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
nok() { n=$((n + 1)); echo "not ok $n - $*"; rc=1; }

if [ "$(id -u)" != 0 ] || ! command -v setpriv >/dev/null; then
        echo "1..0 # SKIP acting as other uids needs root and setpriv"
        exit 77
fi
# dbus-daemon only lets uids that the user database knows connect: three
# existing accounts other than root play the tenants (nothing is created;
# they only connect to the private bus). None is in the group daxbroker.
read -r alice bob carol < <(getent passwd | awk -F: '$3 != 0 {print $3}' | sort -un | head -3 | tr '\n' ' ')
if [ -z "$carol" ]; then
        echo "1..0 # SKIP fewer than three non-root accounts to act as tenants"
        exit 77
fi
for u in $alice $bob $carol; do
        if id -Gn "$(getent passwd "$u" | cut -d: -f1)" 2>/dev/null | grep -qw daxbroker; then
                echo "1..0 # SKIP uid $u is in group daxbroker, which may see every address"
                exit 77
        fi
done
echo "# tenants: alice=$alice bob=$bob carol=$carol"

as() { # UID CMD...: runs CMD as that uid, no supplementary groups
        local u=$1
        shift
        setpriv --reuid="$u" --regid="$u" --clear-groups -- "$@"
}
ctl_as() { local u=$1; shift; as "$u" "$ctl" --bus-address "$addr" "$@" 2>&1; }
# expect DESCRIPTION PATTERN UID CTL-ARGS...: output matches PATTERN. Sets $out.
expect() {
        local what=$1 pattern=$2
        shift 2
        out=$(ctl_as "$@")
        if echo "$out" | grep -Eq -- "$pattern"; then ok "$what"; else nok "$what: got '$out'"; fi
}
bctl() { local u=$1; shift; as "$u" busctl --address="$addr" "$@" 2>&1; }
pk() { busctl --address="$addr" call org.freedesktop.PolicyKit1 /org/freedesktop/PolicyKit1/Authority \
        org.daxbroker.test.PolkitMock "$@"; }
snapshot() { # what root sees: every allocation with owner, uid, label, device; every link
        ctl_as 0 list --json | python3 -c '
import json, sys
for a in json.load(sys.stdin)["allocations"]:
    print(a["id"], a["owner"], a["uid"], a["label"], a["device"])' | sort
        (cd "$run" && find owners -mindepth 2 -printf '%p -> %l\n' 2>/dev/null | sort)
}
unchanged() { # DESCRIPTION: the snapshot equals $before
        local now
        now=$(snapshot)
        if [ "$now" = "$before" ]; then ok "$1: nothing changed"; else
                nok "$1: state changed"; diff <(echo "$before") <(echo "$now") | sed 's/^/# /'; fi
}
id_of() { echo "$1" | sed -n 's/.*\([0-9a-f]\{16\}\).*/\1/p' | head -1; }
link_of() { readlink "$run/owners/$1/$2"; }
device_of() { # ID
        ctl_as 0 list --json | python3 -c '
import json, sys
for a in json.load(sys.stdin)["allocations"]:
    if a["id"] == sys.argv[1]: print(a["device"])' "$1"
}

"$mock" "$addr" "$work/polkit.log" serve 2>>"$work/polkit.err" &
mock_pid=$!
trap 'kill $mock_pid 2>/dev/null; jobs -p | xargs -r kill 2>/dev/null' EXIT
for _ in $(seq 100); do pk Pending >/dev/null 2>&1 && break; sleep 0.05; done
pk SetAllowed as 1 org.daxbroker.Broker1.allocate >/dev/null || { echo "Bail out! polkit mock"; exit 1; }

echo "# --- owners belong to the uid that created them"
expect "alice allocates ram0 in owner vm1" '^Allocation: ' $alice allocate vm1 2M --label ram0
a_ram0=$(id_of "$out")
[ "$(link_of vm1 ram0)" = "$(device_of "$a_ram0")" ] && ok "vm1/ram0 points at alice's device" ||
        nok "vm1/ram0 is '$(link_of vm1 ram0)', not $(device_of "$a_ram0")"
before=$(snapshot)
expect "bob cannot allocate label disk into alice's owner vm1 (manage needed)" \
        'AccessDenied: .*org.daxbroker.Broker1.manage' $bob allocate vm1 2M --label disk
unchanged "bob's allocation into vm1"
[ ! -e "$run/owners/vm1/disk" ] && ok "no stable path vm1/disk appeared" || nok "vm1/disk exists"
expect "bob cannot take label ram1 of vm1 before alice does" \
        'AccessDenied: .*manage' $bob allocate vm1 2M --label ram1
for i in 1 2 3 4 5; do ctl_as $bob allocate vm1 2M >/dev/null; done
unchanged "bob's five more tries to fill vm1 up to MaxAllocationsPerOwner"
expect "alice still allocates ram1 in vm1" '^Allocation: ' $alice allocate vm1 2M --label ram1
a_ram1=$(id_of "$out")
before=$(snapshot)
expect "bob cannot ReleaseOwner alice's vm1 (manage needed)" 'AccessDenied: .*manage' $bob release-owner vm1
expect "bob cannot Release alice's allocation" 'AccessDenied: .*manage' $bob release "$a_ram0"
unchanged "bob's releases"

echo "# --- per-uid quota (MaxAllocationsPerUid=6)"
for i in 1 2 3 4 5 6; do ctl_as $bob allocate "bob-$i" 2M >/dev/null || nok "bob's allocation $i failed"; done
before=$(snapshot)
expect "bob's seventh allocation is NoSpace naming MaxAllocationsPerUid" \
        "NoSpace: .*uid $bob .*MaxAllocationsPerUid" $bob allocate bob-7 2M
unchanged "bob's seventh allocation"
expect "alice is not held back by bob's quota" '^Allocation: ' $alice allocate vm2 2M
expect "bob releases one of his owners" '^1$' $bob release-owner bob-1

echo "# --- stable-path names"
expect "alice allocates label x.tmp" '^Allocation: ' $alice allocate vm3 2M --label x.tmp
x_tmp=$(id_of "$out")
expect "alice allocates label x" '^Allocation: ' $alice allocate vm3 2M --label x
x=$(id_of "$out")
[ "$(link_of vm3 x.tmp)" = "$(device_of "$x_tmp")" ] && [ "$(link_of vm3 x)" = "$(device_of "$x")" ] &&
        ok "x and x.tmp both keep their own links" ||
        nok "links: x.tmp -> '$(link_of vm3 x.tmp)', x -> '$(link_of vm3 x)'"
[ -z "$(find "$run/owners" -name '.*')" ] && ok "no temporary link is left behind" || nok "leftover temp links"
long=$(printf '/%.0s' $(seq 64))
before=$(snapshot)
expect "an owner whose escaped name exceeds NAME_MAX is InvalidArgument" \
        'InvalidArgument: Owner .*255 bytes once escaped' $alice allocate "$long" 2M
expect "a label whose escaped name exceeds NAME_MAX is InvalidArgument" \
        'InvalidArgument: Label .*255 bytes once escaped' $alice allocate vm3 2M --label "..$long"
unchanged "over-long names"

echo "# --- physical addresses: root, the group, the allocation's own uid"
starts() { ctl_as "$1" pools --json | python3 -c '
import json, sys
print(" ".join(str(p["start"]) for p in json.load(sys.stdin)["pools"]))'; }
ranges_of() { # UID ID: the ranges that uid sees for allocation ID
        ctl_as "$1" list --json | python3 -c '
import json, sys
for a in json.load(sys.stdin)["allocations"]:
    if a["id"] == sys.argv[1]: print(len(a["ranges"]), sum(r["size"] for r in a["ranges"]), a["size"])' "$2"
}
root_starts=$(starts 0)
[ -n "$root_starts" ] && [ "$root_starts" != "0 0" ] && ok "root sees pool starts ($root_starts)" ||
        nok "root sees pool starts '$root_starts'"
[ "$(starts $carol)" = "0 0" ] && ok "carol sees 0 as every pool's start" || nok "carol sees '$(starts $carol)'"
[ "$(starts $alice)" = "0 0" ] && ok "alice (not in the group) sees 0 as every pool's start" ||
        nok "alice sees '$(starts $alice)'"
[ "$(ranges_of 0 "$a_ram0")" = "1 2097152 2097152" ] && ok "root sees alice's ranges" ||
        nok "root sees '$(ranges_of 0 "$a_ram0")'"
[ "$(ranges_of $alice "$a_ram0")" = "1 2097152 2097152" ] && ok "alice sees her own ranges" ||
        nok "alice sees '$(ranges_of $alice "$a_ram0")'"
[ "$(ranges_of $carol "$a_ram0")" = "0 0 2097152" ] && ok "carol sees no ranges of alice's, only the size" ||
        nok "carol sees '$(ranges_of $carol "$a_ram0")'"
[ "$(ranges_of $bob "$a_ram0")" = "0 0 2097152" ] && ok "bob sees no ranges of alice's" ||
        nok "bob sees '$(ranges_of $bob "$a_ram0")'"
apath=/org/daxbroker/Broker1/allocation/$a_ram0
pstart() { bctl "$1" get-property org.daxbroker.Broker1 /org/daxbroker/Broker1/pool/bounded org.daxbroker.Broker1.Pool Start; }
[ "$(pstart $carol)" = "t 0" ] && [ "$(pstart 0)" != "t 0" ] && ok "the Start property: 0 for carol, the address for root" ||
        nok "Start property: carol '$(pstart $carol)', root '$(pstart 0)'"
prange() { bctl "$1" get-property org.daxbroker.Broker1 "$apath" org.daxbroker.Broker1.Allocation Ranges; }
[ "$(prange $carol)" = "a(tt) 0" ] && [ "$(prange $alice)" != "a(tt) 0" ] &&
        ok "the Ranges property: empty for carol, filled for alice" ||
        nok "Ranges property: carol '$(prange $carol)', alice '$(prange $alice)'"
getall() { bctl "$1" call org.daxbroker.Broker1 "$2" org.freedesktop.DBus.Properties GetAll s "$3"; }
rng=$(getall 0 "$apath" org.daxbroker.Broker1.Allocation | grep -o '"Ranges" a(tt) [0-9]*')
[ "$rng" = '"Ranges" a(tt) 1' ] && ok "GetAll gives root the ranges" || nok "GetAll for root: '$rng'"
rng=$(getall $carol "$apath" org.daxbroker.Broker1.Allocation | grep -o '"Ranges" a(tt) [0-9]*')
[ "$rng" = '"Ranges" a(tt) 0' ] && ok "GetAll gives carol no ranges" || nok "GetAll for carol: '$rng'"
st=$(getall $carol /org/daxbroker/Broker1/pool/bounded org.daxbroker.Broker1.Pool | grep -o '"Start" t [0-9]*')
[ "$st" = '"Start" t 0' ] && ok "GetAll gives carol 0 as the pool start" || nok "GetAll pool for carol: '$st'"
# GetManagedObjects holds every pool's and allocation's properties: for
# carol no range and no start but 0, so no number in it is a region address.
mo=$(bctl $carol call org.daxbroker.Broker1 /org/daxbroker/Broker1 org.freedesktop.DBus.ObjectManager \
        GetManagedObjects)
leak=
for s in $root_starts; do
        echo "$mo" | grep -qw "$s" && leak="$leak $s"
done
echo "$mo" | grep -q '"Ranges" a(tt) [1-9]' && leak="$leak ranges"
[ -n "$mo" ] && [ -z "$leak" ] && ok "GetManagedObjects shows carol no pool start and no ranges" ||
        nok "GetManagedObjects leaks to carol:$leak"

echo "# --- polkit cannot be jammed"
pk SetHang b true >/dev/null
# exec: $! must be the client itself, so that killing it closes its connection.
setpriv --reuid="$bob" --regid="$bob" --clear-groups -- "$mock" "$addr" - flood 12 bob-flood >"$work/flood.out" 2>&1 &
flood=$!
for _ in $(seq 2000); do [ "$(grep -c '^reply' "$work/flood.out")" -ge 4 ] && break; sleep 0.05; done
busy=$(grep -c '^reply org.daxbroker.Broker1.Error.Busy' "$work/flood.out")
[ "$busy" = 4 ] && ok "one client gets Busy beyond 8 checks in flight (4 of 12)" ||
        nok "Busy replies to the flood: $busy ($(tr '\n' ' ' <"$work/flood.out"))"
held=$(pk Pending | awk '{print $2}')
[ "$held" = 8 ] && ok "polkit holds the flooding client's 8 checks" || nok "polkit holds $held checks"
ctl_as $alice allocate vm4 2M >"$work/alice.out" 2>&1 &
alice_call=$!
for _ in $(seq 2000); do [ "$(pk Pending | awk '{print $2}')" = 9 ] && break; sleep 0.05; done
[ "$(pk Pending | awk '{print $2}')" = 9 ] && ok "alice's check still reaches polkit" || nok "alice was locked out"
grep -q ' daxbroker-[0-9]*$' "$work/polkit.log" && ! grep -q '^check .* -$' "$work/polkit.log" &&
        ok "every check carries a cancellation id" || nok "checks without a cancellation id"
kill $flood
wait $flood 2>/dev/null
for _ in $(seq 2000); do [ "$(grep -c '^cancel ' "$work/polkit.log")" -ge 8 ] && break; sleep 0.05; done
[ "$(grep -c '^cancel daxbroker-' "$work/polkit.log")" = 8 ] &&
        ok "the 8 checks of the client that left are cancelled at polkit" ||
        nok "cancelled: $(grep -c '^cancel ' "$work/polkit.log")"
[ "$(pk Pending | awk '{print $2}')" = 1 ] && ok "only alice's check is still held" ||
        nok "held after cancelling: $(pk Pending)"
pk SetHang b false >/dev/null
wait $alice_call
grep -q '^Allocation: ' "$work/alice.out" && ok "alice's Allocate completes once polkit answers" ||
        nok "alice's Allocate: $(cat "$work/alice.out")"
[ -z "$(ctl_as 0 list --json | grep bob-flood)" ] && ok "the flood allocated nothing" || nok "bob-flood allocated"

echo "# --- the real owner's ReleaseOwner still works"
expect "alice releases vm1 (ram0 and ram1)" '^2$' $alice release-owner vm1
[ ! -e "$run/owners/vm1" ] && ok "vm1's links are gone" || nok "vm1's links remain"
expect "bob may now create owner vm1: it is his" '^Allocation: ' $bob allocate vm1 2M --label disk
expect "and alice may not allocate into it" 'AccessDenied: .*manage' $alice allocate vm1 2M

ctl_as 0 release-owner vm1 >/dev/null
for o in vm2 vm3 vm4 bob-2 bob-3 bob-4 bob-5 bob-6; do ctl_as 0 release-owner $o >/dev/null; done
[ "$(ctl_as 0 list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["allocations"]))')" = 0 ] &&
        ok "root released everything" || nok "allocations left: $(ctl_as 0 list)"
echo "1..$n"
exit $rc
