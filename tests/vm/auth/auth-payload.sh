#!/bin/bash
# Runs inside the QEMU guest (chroot of the host root with the installed
# daxbroker tree on top, stock dbus-daemon --system running since before
# this script). Checks who may do what: the bus policy, then polkit, first
# python3-dbusmock's polkitd template, then no polkit at all, then the real
# polkitd reading the installed actions and rules. Creating users and groups
# is harmless here: the guest root is a throw-away overlay.
# Usage: auth-payload.sh
set -u
res=${DAXRIG_RESULTS:?}
# The clients run as other users: give them a copy they can read, and the
# mock polkitd (user polkitd) a log file it can write.
work=$(mktemp -d /tmp/daxbroker-auth.XXXXXX)
chmod 0755 "$work"
install -m 0755 "$(dirname "$0")/call.py" "$work/call.py"
install -m 0644 -o polkitd /dev/null "$work/polkit-mock.log"
group=daxbroker
mib512=536870912
pid= mock_pid= polkitd_pid=
rc=0

ok() { echo "ok - $*"; }
nok() { echo "not ok - $*"; rc=1; }

busctl_sys() { busctl --system "$@"; }
has_owner() {
        busctl_sys call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus NameHasOwner s "$1" \
                2>/dev/null | grep -q true
}
wait_owner() { # NAME PID
        for _ in $(seq 600); do
                has_owner "$1" && return 0
                kill -0 "$2" 2>/dev/null || return 1
                sleep 0.1
        done
        return 1
}
reload_bus() { busctl_sys call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus ReloadConfig; }

# USER call.py ARGS...: prints "ok RESULT" or "error NAME: MESSAGE".
# Through USER's call server (call.py --serve, started by serve_as): each
# call is a new process of USER with its own new bus connection, without
# the seconds Python takes to start under TCG.
declare -A server_pid
serve_as() { # USER
        local user=$1
        mkfifo -m 0600 "$work/serve.$user" && chown "$user" "$work/serve.$user" || return 1
        setpriv --reuid="$user" --regid="$user" --init-groups -- \
                /usr/bin/python3 "$work/call.py" --serve "$work/serve.$user" >"$res/serve.$user.log" 2>&1 &
        server_pid[$user]=$!
        for _ in $(seq 600); do
                grep -q serving "$res/serve.$user.log" && return 0
                kill -0 "${server_pid[$user]}" 2>/dev/null || break
                sleep 0.1
        done
        cat "$res/serve.$user.log"
        return 1
}
call() {
        local user=$1 reply line
        shift
        if ! kill -0 "${server_pid[$user]:-0}" 2>/dev/null; then
                echo "error: $user's call server is not running"
                return 1
        fi
        reply=$(mktemp -u "$work/reply.XXXXXX")
        # Written by the server's child, which runs as USER.
        mkfifo -m 0622 "$reply" || return 1
        line=$(printf '%s\037' "$reply" "$@")
        printf '%s\n' "$line" >"$work/serve.$user"
        cat "$reply"
        rm -f "$reply"
}
stop_servers() {
        local p
        for p in "${server_pid[@]}"; do kill "$p" 2>/dev/null; done
}
trap stop_servers EXIT
# expect DESCRIPTION PATTERN USER ARGS...: the output of call matches the
# extended regular expression PATTERN. Sets $out.
expect() {
        local what=$1 pattern=$2
        shift 2
        out=$(call "$@")
        if echo "$out" | grep -Eq -- "$pattern"; then
                ok "$what"
        else
                nok "$what: got '$out'"
        fi
}
path_of() { echo "$1" | sed -n 's/^ok \(\/org\/daxbroker\/Broker1\/allocation\/[0-9a-f]*\)$/\1/p'; }

mock() { busctl_sys call org.freedesktop.PolicyKit1 /org/freedesktop/PolicyKit1/Authority org.freedesktop.DBus.Mock "$@"; }
polkit_asked() { grep -c CheckAuthorization "$work/polkit-mock.log"; }
# Positive control for a "polkit was not asked" check: a call that must ask
# raises the mock's count, so an unchanged count means something.
asked_again() { # BEFORE WHAT
        local now
        now=$(polkit_asked)
        [ "$now" -gt "$1" ] && ok "polkit was asked for $2 (count $1 -> $now)" ||
                nok "polkit's count did not rise for $2 ($1 -> $now): the mock's log is not written"
}

POLICY=org.freedesktop.DBus.Error.AccessDenied
DENIED=org.daxbroker.Broker1.Error.AccessDenied
ALLOCATE=org.daxbroker.Broker1.allocate
MANAGE=org.daxbroker.Broker1.manage

# Nothing may start polkitd behind the test's back (bus activation): each
# phase decides whether and which polkit runs.
mkdir -p "$res/hidden"
mv /usr/share/dbus-1/system-services/org.freedesktop.PolicyKit1.service "$res/hidden/" 2>/dev/null
reload_bus >/dev/null

mkdir -p /etc/daxbroker
cat >/etc/daxbroker/daxbroker.conf <<CONF
[Pool low]
Region=0

[Pool high]
Region=1
CONF

echo "# --- the bus policy names group '$group', which does not exist yet"
if getent group "$group" >/dev/null; then
        nok "group $group exists before the test created it"
elif grep -q "group=\"$group\"" /usr/share/dbus-1/system.d/org.daxbroker.Broker1.conf; then
        ok "installed bus policy names group $group, which this host lacks"
else
        nok "installed bus policy does not name group $group"
fi
echo "# --- a file named like a device does not make the device busy"
# mallory maps regular files called dax0.0 and dax1.0 (the names of the
# regions' seed devices) before the broker starts; a broker that matched
# mapping names would leave both regions alone as foreign.
useradd -M mallory || { nok "cannot create mallory"; exit 1; }
install -d -o mallory "$work/mallory"
setpriv --reuid=mallory --regid=mallory --init-groups -- /usr/bin/python3 -c '
import mmap, os, sys, time
maps = []
for name in ("dax0.0", "dax1.0"):
    fd = os.open(os.path.join(sys.argv[1], name), os.O_RDWR | os.O_CREAT, 0o600)
    os.ftruncate(fd, 2 << 20)
    maps.append(mmap.mmap(fd, 2 << 20))
print("mapped", flush=True)
time.sleep(100000)' "$work/mallory" >"$res/mallory.out" 2>&1 &
mallory_pid=$!
serve_as root || { nok "root's call server did not start"; exit 1; }
for _ in $(seq 300); do grep -q mapped "$res/mallory.out" && break; sleep 0.1; done
grep -q "/dax0.0" /proc/$mallory_pid/maps && ok "mallory maps $work/mallory/dax0.0" ||
        nok "mallory's mapping is missing: $(cat "$res/mallory.out")"
/usr/sbin/daxbrokerd >>"$res/daemon.log" 2>&1 &
pid=$!
if wait_owner org.daxbroker.Broker1 "$pid"; then
        ok "dbus-daemon loaded the policy despite the unknown group; daxbrokerd owns its name"
else
        nok "daxbrokerd did not come up"
        cat "$res/daemon.log"
        exit 1
fi
expect "both regions were taken over despite mallory's files: no foreign memory" '^ok 0 0$' root pool-foreign
grep -q "in use by some process" "$res/daemon.log" && nok "the daemon thought a seed device was in use" ||
        ok "the daemon did not take mallory's files for the devices"
kill "$mallory_pid"
expect "root may call methods while the group is unknown" '^ok /org/daxbroker' root allocate early $mib512
early=$(path_of "$out")
[ -n "$early" ] && expect "root releases it" '^ok' root release "$early"

echo "# --- users: alice and bob in $group, carol not"
groupadd --system "$group" && useradd -M -G "$group" alice && useradd -M -G "$group" bob &&
        useradd -M carol || { nok "cannot create the test users"; exit 1; }
alice=$(id -u alice) bob=$(id -u bob)
for u in alice bob carol; do serve_as $u || { nok "$u's call server did not start"; exit 1; }; done
reload_bus >/dev/null && ok "bus configuration reloaded with the group present"

echo "# --- polkit: python3-dbusmock's polkitd template, allowing nothing"
setpriv --reuid=polkitd --regid=polkitd --init-groups -- \
        /usr/bin/python3 -m dbusmock --template polkitd --system -l "$work/polkit-mock.log" \
        >>"$res/polkit-mock.out" 2>&1 &
mock_pid=$!
if wait_owner org.freedesktop.PolicyKit1 "$mock_pid"; then
        ok "mock polkitd is on the system bus"
else
        nok "mock polkitd did not come up"
        cat "$res/polkit-mock.out"
        exit 1
fi

echo "# --- anyone may read"
expect "carol lists pools" '^ok 2$' carol list-pools
expect "carol lists allocations" '^ok' carol list-allocations
expect "carol reads a property" '^ok [0-9]' carol get TotalSize
if setpriv --reuid=carol --regid=carol --init-groups -- busctl --system introspect org.daxbroker.Broker1 \
        /org/daxbroker/Broker1 >/dev/null 2>&1; then
        ok "carol introspects"
else
        nok "carol cannot introspect"
fi

echo "# --- outside the group, the bus policy refuses changes"
before=$(polkit_asked)
expect "carol gets AccessDenied on Allocate" "^error $POLICY" carol allocate carol-vm $mib512
expect "carol gets AccessDenied on ReleaseOwner" "^error $POLICY" carol release-owner carol-vm
[ "$(polkit_asked)" = "$before" ] && ok "polkit was not asked for carol" || nok "polkit was asked for carol"

echo "# --- in the group, polkit decides"
expect "alice gets AccessDenied on Allocate while polkit denies allocate, naming the action" \
        "^error $DENIED: .*$ALLOCATE" alice allocate vm-a $mib512
asked_again "$before" "alice's Allocate"
mock SetAllowed as 1 "$ALLOCATE" >/dev/null
expect "alice allocates with allocate granted" '^ok /org/daxbroker' alice allocate vm-a $mib512 label=s:ram0
a1=$(path_of "$out")
expect "the allocation's OwnerUID is alice's uid" "$a1:$alice( |\$)" root list-allocations
expect "alice opens her own allocation" '^ok fd$' alice open "$a1"
expect "alice allocates a second one" '^ok /org/daxbroker' alice allocate vm-a $mib512 label=s:ram1
a2=$(path_of "$out")

expect "bob gets AccessDenied on Release of alice's allocation, naming manage" \
        "^error $DENIED: .*$MANAGE" bob release "$a1"
expect "bob gets AccessDenied on Open of alice's allocation, naming manage" \
        "^error $DENIED: .*$MANAGE" bob open "$a1"
expect "bob gets AccessDenied on ReleaseOwner of alice's owner, naming manage" \
        "^error $DENIED: .*$MANAGE" bob release-owner vm-a

echo "# --- owners belong to the uid that created them"
link_before=$(readlink /run/daxbroker/owners/vm-a/ram0)
expect "bob gets AccessDenied allocating label disk into alice's owner vm-a, naming manage" \
        "^error $DENIED: .*$MANAGE" bob allocate vm-a $mib512 label=s:disk
expect "bob cannot take vm-a's next label ram2 before alice" "^error $DENIED: .*$MANAGE" \
        bob allocate vm-a $mib512 label=s:ram2
expect "alice's two allocations are all there is" "^ok $a1:$alice $a2:$alice\$" root list-allocations
[ ! -e /run/daxbroker/owners/vm-a/disk ] && [ ! -e /run/daxbroker/owners/vm-a/ram2 ] &&
        ok "no stable path appeared for bob's labels" || nok "bob got a stable path in vm-a"
expect "vm-a/ram0 still points at alice's device" "^ok $link_before\$" alice get-on "$a1" \
        org.daxbroker.Broker1.Allocation Device
expect "bob's own owner works" '^ok /org/daxbroker' bob allocate vm-b $mib512 label=s:disk
bpath=$(path_of "$out")
[ "$(readlink /run/daxbroker/owners/vm-b/disk)" = "$(call root get-on "$bpath" org.daxbroker.Broker1.Allocation Device | cut -d' ' -f2)" ] &&
        ok "vm-b/disk points at bob's device" || nok "vm-b/disk: $(readlink /run/daxbroker/owners/vm-b/disk)"
long=$(printf '/%.0s' $(seq 64))
expect "an owner whose escaped name exceeds NAME_MAX is InvalidArgument" \
        '^error org.daxbroker.Broker1.Error.InvalidArgument: Owner .*escaped' alice allocate "$long" $mib512

echo "# --- physical addresses: root, the group $group and the allocation's own uid"
root_starts=$(call root pool-starts)
expect "carol (outside the group) sees 0 as every pool's start" '^ok 0 0$' carol pool-starts
expect "bob (in the group) sees the pool starts" "^$root_starts\$" bob pool-starts
expect "root sees them: region starts 4 GiB and 6 GiB" '^ok 4294967296 6442450944$' root pool-starts
expect "carol sees no ranges of any allocation" "^ok $a1:0 $a2:0 $bpath:0\$" carol ranges
expect "bob (in the group) sees every allocation's ranges" "^ok $a1:1 $a2:1 $bpath:1\$" bob ranges
expect "carol's Get of Ranges is empty" '^ok \[\]$' carol get-on "$a1" org.daxbroker.Broker1.Allocation Ranges
expect "carol's GetAll gives no Ranges" '^ok \[\]$' carol getall-ranges "$a1"
expect "carol's Get of a pool's Start is 0" '^ok 0$' carol get-on /org/daxbroker/Broker1/pool/low \
        org.daxbroker.Broker1.Pool Start
expect "alice sees her own ranges" '^ok [1-9][0-9]*\+536870912$' alice getall-ranges "$a1"
expect "bob (group) sees alice's ranges through GetAll" '^ok [1-9][0-9]*\+536870912$' bob getall-ranges "$a1"
expect "bob releases his own owner" '^ok 1$' bob release-owner vm-b
expect "alice gets AccessDenied on Allocate with device-uid, naming manage" \
        "^error $DENIED: .*$MANAGE" alice allocate vm-d $mib512 device-uid=u:$bob
expect "alice gets AccessDenied on Allocate with device-gid, naming manage" \
        "^error $DENIED: .*$MANAGE" alice allocate vm-d $mib512 device-gid=u:0

before=$(polkit_asked)
expect "a wrongly typed device-uid is InvalidArgument" \
        '^error org.daxbroker.Broker1.Error.InvalidArgument' alice allocate vm-d $mib512 device-uid=s:bob
expect "an invalid owner is InvalidArgument" '^error org.daxbroker.Broker1.Error.InvalidArgument' \
        alice release-owner ""
expect "a path that is no allocation is InvalidArgument" \
        '^error org.daxbroker.Broker1.Error.InvalidArgument' bob release /org/daxbroker/Broker1
[ "$(polkit_asked)" = "$before" ] && ok "invalid calls are refused before polkit is asked" ||
        nok "polkit was asked about invalid calls"
expect "bob still gets AccessDenied on Open of alice's allocation" "^error $DENIED: .*$MANAGE" bob open "$a1"
asked_again "$before" "bob's Open"

echo "# --- polkit is asked asynchronously"
mock SimulateHang b true >/dev/null
call alice allocate vm-slow $mib512 >"$res/slow.out" &
slow=$!
for _ in $(seq 300); do
        mock HaveHangingCalls | grep -q true && break
        sleep 0.1
done
mock HaveHangingCalls | grep -q true && ok "alice's Allocate waits for polkit" || nok "no polkit call is pending"
start=$(date +%s%N)
expect "carol lists pools while polkit has not answered" '^ok 2$' carol list-pools
expect "root allocates while polkit has not answered" '^ok /org/daxbroker' root allocate vm-root $mib512
ms=$((($(date +%s%N) - start) / 1000000))
echo "# both answered in ${ms} ms"
kill -0 "$slow" 2>/dev/null && ok "alice's Allocate is still waiting" || nok "alice's Allocate returned early"
mock ReleaseHangingCalls >/dev/null
mock SimulateHang b false >/dev/null
wait "$slow"
grep -q '^ok /org/daxbroker' "$res/slow.out" && ok "alice's Allocate completes once polkit answers" ||
        nok "alice's Allocate after polkit answered: $(cat "$res/slow.out")"
slowpath=$(path_of "$(cat "$res/slow.out")")

echo "# --- granting manage"
mock SetAllowed as 2 "$ALLOCATE" "$MANAGE" >/dev/null
expect "bob opens alice's allocation with manage granted" '^ok fd$' bob open "$a1"
expect "bob releases alice's allocation with manage granted" '^ok' bob release "$a1"
expect "alice allocates with device-uid and device-gid with manage granted" '^ok /org/daxbroker' \
        alice allocate vm-d $mib512 device-uid=u:$alice device-gid=u:0
dpath=$(path_of "$out")
mock SetAllowed as 1 "$ALLOCATE" >/dev/null
# bob released ram0 above: ram1 is left.
expect "alice releases her own owner with allocate only" '^ok 1$' alice release-owner vm-a
expect "alice releases her own allocation with allocate only" '^ok' alice release "$slowpath"

echo "# --- root never needs polkit"
mock SetAllowed as 0 >/dev/null
before=$(polkit_asked)
expect "root allocates with device-uid" '^ok /org/daxbroker' root allocate vm-r $mib512 device-uid=u:$bob
rpath=$(path_of "$out")
expect "root opens alice's allocation" '^ok fd$' root open "$dpath"
expect "root releases alice's allocation" '^ok' root release "$dpath"
expect "root releases an owner" '^ok 1$' root release-owner vm-r
expect "root releases the allocation made while polkit hung" '^ok 1$' root release-owner vm-root
[ "$(polkit_asked)" = "$before" ] && ok "polkit was not asked for root" || nok "polkit was asked for root"
expect "alice gets AccessDenied on Allocate with nothing granted" "^error $DENIED: .*$ALLOCATE" \
        alice allocate vm-a $mib512
asked_again "$before" "alice's Allocate with nothing granted"
[ -n "$rpath" ] || nok "no allocation path from root's Allocate"

echo "# --- polkit not on the bus"
kill "$mock_pid"
wait "$mock_pid" 2>/dev/null
mock_pid=
for _ in $(seq 100); do has_owner org.freedesktop.PolicyKit1 || break; sleep 0.1; done
expect "alice gets AccessDenied saying polkit is not running" \
        "^error $DENIED: polkit .*not running.*$ALLOCATE" alice allocate vm-n $mib512
expect "root still allocates" '^ok /org/daxbroker' root allocate vm-n $mib512

echo "# --- the real polkitd with the installed actions and rules"
/usr/lib/polkit-1/polkitd --no-debug >>"$res/polkitd.log" 2>&1 &
polkitd_pid=$!
if wait_owner org.freedesktop.PolicyKit1 "$polkitd_pid"; then
        ok "polkitd is on the system bus"
        if pkaction --action-id "$MANAGE" --verbose 2>&1 | grep -q "org.freedesktop.policykit.imply.*$ALLOCATE"; then
                ok "polkitd knows $MANAGE, which implies $ALLOCATE"
        else
                nok "pkaction: $(pkaction --action-id "$MANAGE" --verbose 2>&1)"
        fi
        expect "alice allocates: the rules file grants $group members allocate" '^ok /org/daxbroker' \
                alice allocate vm-p $mib512
        ppath=$(path_of "$out")
        expect "bob gets AccessDenied on Release of alice's allocation (manage needs an administrator)" \
                "^error $DENIED: .*$MANAGE" bob release "$ppath"
        echo "# $out"
        expect "alice releases her own" '^ok' alice release "$ppath"
else
        nok "polkitd did not come up"
        cat "$res/polkitd.log"
fi

expect "root releases what is left" '^ok' root release-owner vm-n
expect "nothing is left" '^ok $' root list-allocations

[ -n "$polkitd_pid" ] && kill "$polkitd_pid" 2>/dev/null
kill "$pid"
wait "$pid"
mv "$res/hidden/org.freedesktop.PolicyKit1.service" /usr/share/dbus-1/system-services/ 2>/dev/null
echo "--- polkit mock log"
cat "$work/polkit-mock.log"
echo "--- daemon log"
cat "$res/daemon.log"
exit $rc
