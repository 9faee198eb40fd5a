#!/bin/bash
# daxbrokerctl against a running daemon: every verb, human and --json output,
# and its errors. Usage: ctl-test.sh DAXBROKERCTL BUS_ADDRESS
set -u
ctl=$1 addr=$2
n=0 fail=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
nok() { n=$((n + 1)); fail=$((fail + 1)); echo "not ok $n - $*"; }
c() { "$ctl" --bus-address "$addr" "$@"; }

out=$(c status) && echo "$out" | grep -q "bounded" && ok "status lists the pools" || nok "status: $out"
out=$(c --json status) && echo "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d' \
        && ok "status --json is JSON" || nok "status --json: $out"
out=$(c pools) && echo "$out" | grep -q "open" && ok "pools" || nok "pools: $out"
out=$(c --no-legend --no-pager pools) && ! echo "$out" | grep -q "POOL" && [ "$(echo "$out" | wc -l)" = 2 ] \
        && ok "--no-legend leaves out the header" || nok "pools --no-legend: $out"
out=$(c --json=short status) && [ "$(echo "$out" | wc -l)" = 1 ] && echo "$out" | python3 -c 'import json,sys; json.load(sys.stdin)' \
        && ok "--json=short is one line of JSON" || nok "--json=short: $out"
out=$(c --json=pretty status) && [ "$(echo "$out" | wc -l)" -gt 1 ] && ok "--json=pretty is indented" || nok "--json=pretty: $out"
out=$(c --json=yaml status 2>&1); rc=$?
[ $rc = 2 ] && ok "--json=yaml is a usage error" || nok "--json=yaml: rc=$rc $out"

out=$(c allocate ctl-vm 512M --pool bounded --label ram0 2>&1) && ok "allocate 512M" || nok "allocate: $out"
path=$(echo "$out" | grep -o '/org/daxbroker/Broker1/allocation/[0-9a-f]*' | head -1)
[ -n "$path" ] && ok "allocate prints the object path" || nok "no path in: $out"

out=$(c --json list) && echo "$out" | python3 -c '
import json,sys
d=json.load(sys.stdin)
items = d if isinstance(d, list) else d.get("allocations", [])
assert any(a.get("owner") == "ctl-vm" and a.get("size") == 512*1024*1024 for a in items), d
' && ok "list --json shows the allocation with its size in bytes" || nok "list --json: $out"
out=$(c list) && echo "$out" | grep -q "ctl-vm" && ok "list" || nok "list: $out"

out=$(c allocate ctl-vm 3M 2>&1); rc=$?
[ $rc = 1 ] && echo "$out" | grep -q "InvalidArgument" && ok "a bad size is refused by the daemon with InvalidArgument" \
        || nok "allocate 3M: rc=$rc $out"
out=$(c allocate ctl-vm banana 2>&1); rc=$?
[ $rc = 2 ] && ok "an unparsable size is a usage error (exit 2)" || nok "allocate banana: rc=$rc $out"
out=$(c frobnicate 2>&1); rc=$?
[ $rc = 2 ] && ok "an unknown verb is a usage error" || nok "frobnicate: rc=$rc $out"
out=$(c release /org/daxbroker/Broker1/allocation/ffffffffffffffff 2>&1); rc=$?
[ $rc = 1 ] && echo "$out" | grep -q "NoSuchAllocation" && ok "release of an unknown allocation" \
        || nok "release unknown: rc=$rc $out"

id=${path##*/}
out=$(c release "$id" 2>&1) && ok "release by id" || nok "release $id: $out"
c allocate ctl-vm 512M --pool bounded >/dev/null && c allocate ctl-vm 512M --pool bounded >/dev/null
out=$(c release-owner ctl-vm 2>&1) && [ "$out" = 2 ] && ok "release-owner releases two and prints 2" \
        || nok "release-owner: $out"
c allocate ctl-vm 512M --pool bounded >/dev/null
out=$(c --json release-owner ctl-vm 2>&1) && echo "$out" | python3 -c '
import json,sys; d=json.load(sys.stdin); assert d == {"owner": "ctl-vm", "released": 1}, d' \
        && ok "release-owner --json" || nok "release-owner --json: $out"
out=$(c --json list) && echo "$out" | python3 -c '
import json,sys
d=json.load(sys.stdin)
items = d if isinstance(d, list) else d.get("allocations")
assert isinstance(items, list), d
assert not [a for a in items if a.get("owner") == "ctl-vm"], d
' && ok "nothing of ctl-vm is left" || nok "left: $out"
# Lending memory to the host and taking it back (pool open: 2 GiB, 1 GiB chunks).
host() { c --json status | python3 -c 'import json,sys; print(next(p["host"] for p in json.load(sys.stdin)["pools"] if p["name"]=="open"))'; }
clean() { c --json status | python3 -c 'import json,sys; sys.exit(any(p["dirty"] for p in json.load(sys.stdin)["pools"]))'; }
for _ in $(seq 600); do clean && break; sleep 0.1; done
out=$(c return-to-host open 1G 2>&1) && [ "$out" = "1 GiB" ] && [ "$(host)" = $((1 << 30)) ] \
        && ok "return-to-host prints the size returned and status shows it as host" || nok "return-to-host: $out"
out=$(c --json reclaim-from-host open 1G 2>&1) && echo "$out" | python3 -c '
import json,sys; d=json.load(sys.stdin); assert d == {"pool": "open", "reclaimed": 1 << 30}, d' && [ "$(host)" = 0 ] \
        && ok "reclaim-from-host --json" || nok "reclaim-from-host: $out"
out=$(c return-to-host open 3M 2>&1); rc=$?
[ $rc = 1 ] && echo "$out" | grep -q InvalidArgument && ok "return-to-host of a partial chunk is refused" \
        || nok "return-to-host 3M: rc=$rc $out"
out=$(c reclaim-from-host 'no such' 1G 2>&1); rc=$?
[ $rc = 2 ] && ok "a bad pool name is a usage error" || nok "reclaim-from-host 'no such': rc=$rc $out"

# exec: a transient allocation for the life of one command, as fd 3.
owners() { c --json list | python3 -c 'import json,sys; print(" ".join(sorted(a["owner"] for a in json.load(sys.stdin)["allocations"])))'; }
before=$(owners)
out=$(c exec --size 64M --pool open -- sh -c 'test -e /proc/self/fd/3 && echo "$DAXBROKER_FD $DAXBROKER_SIZE $DAXBROKER_DEVICE"' 2>&1)
rc=$?
[ $rc = 0 ] && echo "$out" | grep -Eq '^3 67108864 /dev/dax[0-9]+\.[0-9]+$' \
        && ok "exec runs the command with fd 3, DAXBROKER_FD, DAXBROKER_SIZE, DAXBROKER_DEVICE" || nok "exec: rc=$rc $out"
[ "$(owners)" = "$before" ] && ok "the exec allocation is gone once the command exited" || nok "left: $(owners)"
out=$(c exec --size 64M --pool open --owner ctl-exec --label ram0 -- sh -c "$ctl --bus-address '$addr' list" 2>&1)
echo "$out" | grep -q "ctl-exec.*ram0" && ok "while the command runs its allocation is listed (--owner, --label)" \
        || nok "exec list: $out"
c exec --size 64M -- sh -c 'exit 7' >/dev/null 2>&1; rc=$?
[ $rc = 7 ] && ok "exec exits with the command's status" || nok "exec exit 7: rc=$rc"
c exec --size 64M -- sh -c 'kill -TERM $$' >/dev/null 2>&1; rc=$?
[ $rc = 143 ] && ok "a command killed by SIGTERM gives 128+15" || nok "exec kill: rc=$rc"
c exec --size 64M -- /nonexistent/command >/dev/null 2>&1; rc=$?
[ $rc = 127 ] && [ "$(owners)" = "$before" ] && ok "a command that cannot be found gives 127, nothing left" \
        || nok "exec nonexistent: rc=$rc, left $(owners)"
out=$(c exec --size 3M -- true 2>&1); rc=$?
[ $rc = 1 ] && echo "$out" | grep -q InvalidArgument && ok "exec with a size the broker refuses fails with its error" \
        || nok "exec 3M: rc=$rc $out"
out=$(c exec -- true 2>&1); rc=$?
[ $rc = 2 ] && ok "exec without --size is a usage error" || nok "exec without size: rc=$rc $out"
out=$(c list --size 1G 2>&1); rc=$?
[ $rc = 2 ] && ok "--size with another verb is a usage error" || nok "list --size: rc=$rc $out"
out=$(c exec --size 64M --transient -- true 2>&1); rc=$?
[ $rc = 2 ] && ok "exec --transient is a usage error" || nok "exec --transient: rc=$rc $out"

# open: an existing allocation's device for one command.
out=$(c allocate ctl-open 64M --pool open 2>&1) || nok "allocate for open: $out"
oid=$(echo "$out" | sed -n 's/^Id: *//p')
out=$(c open "$oid" -- sh -c 'test -e /proc/self/fd/3 && echo "$DAXBROKER_SIZE"' 2>&1); rc=$?
[ $rc = 0 ] && [ "$out" = 67108864 ] && ok "open ID runs the command with the device as fd 3" || nok "open: rc=$rc $out"
echo "$(owners)" | grep -q ctl-open && ok "open leaves the allocation in place" || nok "open released it"
out=$(c open ffffffff -- true 2>&1); rc=$?
[ $rc = 1 ] && echo "$out" | grep -q NoSuchAllocation && ok "open of an unknown allocation" || nok "open unknown: rc=$rc $out"
out=$(c show "$oid" 2>&1) && echo "$out" | grep -q "^Owner: *ctl-open" && echo "$out" | grep -q "^Id: *$oid" \
        && ok "show ID" || nok "show: $out"
out=$(c --json show "$oid" 2>&1) && echo "$out" | python3 -c '
import json,sys; d=json.load(sys.stdin); assert d["owner"] == "ctl-open" and d["size"] == 64 << 20, d
assert d["state"] == "active" and d["state_message"] == "", d' \
        && ok "show --json (state active)" || nok "show --json: $out"
out=$(c show "$oid" 2>&1) && echo "$out" | grep -qx "State: *active" && ! echo "$out" | grep -q "^Message:" \
        && ok "show prints State: active, no message" || nok "show state: $out"
out=$(c list 2>&1) && echo "$out" | head -1 | grep -q "STATE" && echo "$out" | grep "^$oid " | grep -qw active \
        && ok "list has a STATE column, active for $oid" || nok "list state: $out"
out=$(c show ffffffff 2>&1); rc=$?
[ $rc = 1 ] && echo "$out" | grep -q NoSuchAllocation && ok "show of an unknown allocation" || nok "show unknown: rc=$rc $out"
c release-owner ctl-open >/dev/null
out=$(c allocate ctl-dev 64M --pool open --device-uid 0 --device-gid root 2>&1) && ok "allocate --device-uid 0 --device-gid root" \
        || nok "allocate --device-uid: $out"
c release-owner ctl-dev >/dev/null
out=$(c allocate ctl-dev 64M --device-uid no-such-user-here 2>&1); rc=$?
[ $rc = 2 ] && ok "--device-uid of an unknown user is a usage error" || nok "--device-uid unknown: rc=$rc $out"
out=$(c list --device-gid 0 2>&1); rc=$?
[ $rc = 2 ] && ok "--device-gid with list is a usage error" || nok "list --device-gid: rc=$rc $out"

echo "1..$n"
[ $fail = 0 ]
