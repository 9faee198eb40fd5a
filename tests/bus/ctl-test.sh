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

# Columns (-o), raw and JSON output, exactly, for the harness's two pools:
# bounded = region 0 at 4 GiB, 2 GiB, node 0, Boundary=512M; open = region 1
# at 8 GiB, 2 GiB, node 1.
expect() { # DESCRIPTION EXPECTED COMMAND...: the output is exactly EXPECTED
        local what=$1 want=$2 got; shift 2
        got=$("$@" 2>&1) && [ "$got" = "$want" ] && ok "$what" || nok "$what: got
$got
wanted
$want"
}
expect "-o picks the columns of pools, in its order, any case" "$(printf '%s\n' \
        'NAME     SIZE BOUNDARY NODE' 'bounded 2 GiB  512 MiB    0' 'open    2 GiB        -    1')" \
        c -o name,SIZE,Boundary,node pools
expect "--raw: one space between cells, sizes in bytes" "$(printf '%s\n' 'NAME REGION START SIZE ALIGN BOUNDARY' \
        'bounded 0 0x100000000 2147483648 2097152 536870912' 'open 1 0x200000000 2147483648 2097152 -')" \
        c --raw -o NAME,REGION,START,SIZE,ALIGN,BOUNDARY pools
expect "--raw --no-legend leaves out the header" "$(printf '%s\n' 'bounded 0' 'open 1')" \
        c --raw --no-legend -o name,region pools
expect "--json=short -o: the chosen members, numbers as numbers" \
        '{"pools":[{"name":"bounded","size":2147483648,"boundary":536870912,"node":0},{"name":"open","size":2147483648,"boundary":0,"node":1}]}' \
        c --json=short -o name,size,boundary,node pools
expect "-o +LIST adds to the defaults of status" \
        "$(printf '%s\n' 'bounded 0 0 2147483648 /org/daxbroker/Broker1/pool/bounded' 'open 1 1 2147483648 /org/daxbroker/Broker1/pool/open')" \
        sh -c "'$ctl' --bus-address '$addr' status --raw --no-legend -o +path | cut -d' ' -f1-4,11"
out=$(c --json pools) && echo "$out" | python3 -c '
import json,sys
d=json.load(sys.stdin)
want=["name","path","region","node","start","size","align","boundary","free","allocated","host","dirty","foreign","largest-free",
      "tier","read-bw","write-bw","read-lat","write-lat","cache","colors"]
assert [list(p) for p in d["pools"]] == [want, want], d' && ok "pools --json without -o has every column" || nok "pools --json: $out"
for bad in "name,bogus" "NAME,,SIZE" "" "+"; do
        out=$(c -o "$bad" pools 2>&1); rc=$?
        [ $rc = 2 ] && echo "$out" | grep -q "LARGEST-FREE" && ! echo "$out" | grep -q "^bounded" \
                && ok "-o '$bad' is a usage error naming the columns" || nok "-o '$bad': rc=$rc $out"
done
out=$(c -o id pools 2>&1); rc=$?
[ $rc = 2 ] && echo "$out" | grep -q "Unknown column 'id' for pools" && ok "a column of list is not one of pools" \
        || nok "pools -o id: rc=$rc $out"
out=$(c -o size show x 2>&1); rc=$?
[ $rc = 2 ] && ok "-o with a verb without a table is a usage error" || nok "show -o: rc=$rc $out"
out=$(c --raw --json list 2>&1); rc=$?
[ $rc = 2 ] && ok "--raw with --json is a usage error" || nok "--raw --json: rc=$rc $out"
out=$(c --raw release-owner x 2>&1); rc=$?
[ $rc = 2 ] && ok "--raw with a verb without a table is a usage error" || nok "--raw release-owner: rc=$rc $out"

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

# The map of status: 26 columns leave "bounded [" + 16 cells + "]", 128 MiB
# a cell. Two allocations in bounded; every cell of their ranges (as list
# --json gives them) is '#', the rest '.'; open is all free.
for l in a b c; do c allocate ctl-map 512M --pool bounded --label $l >/dev/null || nok "allocate $l for the map"; done
want=$(c --json list | python3 -c '
import json,sys
cells = ["."] * 16
for a in json.load(sys.stdin)["allocations"]:
    if a["pool"] == "bounded":
        for r in a["ranges"]:
            for i in range(16):
                lo, hi = (1 << 32) + i * (128 << 20), (1 << 32) + (i + 1) * (128 << 20)
                if r["start"] < hi and r["start"] + r["size"] > lo:
                    cells[i] = "#"
print("bounded [" + "".join(cells) + "]")
print("open    [" + "." * 16 + "]")
print("         # allocated  . free  H host  ~ dirty  X foreign")')
out=$(COLUMNS=26 c status) && [ "$(echo "$out" | tail -3)" = "$want" ] && [ "$(echo "$want" | head -1 | grep -o '#' | wc -l)" = 12 ] \
        && ok "status draws each pool's map as its allocations lie" || nok "status map: got
$(echo "$out" | tail -3)
wanted
$want"
echo "$out" | grep -q "$(printf '\033')" && nok "escape sequences when not a terminal" || ok "plain ASCII when not a terminal"
out=$(COLUMNS=26 c --no-legend status | tail -1)
[ "$out" = "open    [................]" ] && ok "--no-legend leaves out the map's legend" || nok "status --no-legend: $out"
out=$(COLUMNS=100 c status | tail -2 | head -1)
[ ${#out} = 100 ] && ok "the map fills \$COLUMNS" || nok "map at 100 columns is ${#out} wide: $out"
out=$(unset COLUMNS; c status | tail -2 | head -1)
[ ${#out} = 72 ] && ok "the map is 72 wide when not a terminal" || nok "map width without a terminal: ${#out}"
out=$(c --json status) && echo "$out" | python3 -c '
import json,sys
for p in json.load(sys.stdin)["pools"]:
    e = p["extents"]
    assert e[0]["offset"] == 0 and all(a["offset"] + a["size"] == b["offset"] for a, b in zip(e, e[1:])), e
    assert sum(x["size"] for x in e) == p["size"], p
    for use in ("allocated", "host", "dirty", "foreign"):
        assert sum(x["size"] for x in e if x["use"] == use) == p[use], (use, p)
    assert all(x["use"] != y["use"] for x, y in zip(e, e[1:])), e
' && ok "status --json: each pool's extents tile it and add up to its sizes" || nok "status --json extents: $out"
if command -v script >/dev/null; then
        tty_status() { script -qec "env $1 '$ctl' --bus-address '$addr' $2 status" /dev/null; }
        tty_status "TERM=xterm" "" | grep -q "$(printf '\033')\[32m#" && ok "on a terminal the map is coloured" \
                || nok "no colours on a terminal"
        tty_status "TERM=xterm NO_COLOR=1" "" | grep -q "$(printf '\033')" && nok "colours with NO_COLOR" \
                || ok "NO_COLOR: plain ASCII on a terminal"
        tty_status "TERM=xterm" "--no-pager" | grep -q "$(printf '\033')" && nok "colours with --no-pager" \
                || ok "--no-pager: plain ASCII on a terminal"
else
        ok "# SKIP script(1) is not installed: no terminal to check colours on"
fi

# list: columns, one range per line in a table, comma-separated in raw
# output, objects in JSON. Bounded has 512 MiB slots, three of them held:
# freeing the middle one and asking for 1 GiB in pieces gives two ranges.
c release "$(c --raw --no-legend -o label,id list | awk '$1 == "b" { print $2 }')" >/dev/null || nok "release b"
out=$(c allocate ctl-split 1G --pool bounded --no-contiguous --label two 2>&1) || nok "allocate split: $out"
split=$(echo "$out" | sed -n 's/^Id: *//p')
r=$(c --json list | python3 -c '
import json,sys
a = next(a for a in json.load(sys.stdin)["allocations"] if a["id"] == sys.argv[1])
rs = a["ranges"]
print(len(rs), sum(r["size"] for r in rs))
for r in rs: print("0x%x-0x%x" % (r["start"], r["start"] + r["size"] - 1))' "$split")
[ "$(echo "$r" | head -1)" = "2 1073741824" ] && ok "a split allocation has two ranges in JSON" || nok "split ranges: $r"
r1=$(echo "$r" | sed -n 2p) r2=$(echo "$r" | sed -n 3p)
expect "a table shows one range per line" "$(printf '%s\n' 'OWNER     LABEL RANGES' "ctl-split two   $r1" "                $r2")" \
        sh -c "'$ctl' --bus-address '$addr' -o owner,label,ranges list | awk 'NR == 1 { print; next } /^ctl-split/ { print; getline; print }'"
expect "--raw keeps a row on one line, ranges comma-separated" "ctl-split two 1073741824 no $r1,$r2" \
        sh -c "'$ctl' --bus-address '$addr' --raw --no-legend -o owner,label,size,transient,ranges list | grep '^ctl-split'"
expect "list --json=short -o: the chosen members, ranges as objects" \
        "{\"owner\":\"ctl-split\",\"label\":\"two\",\"size\":1073741824,\"transient\":false,\"ranges\":[{\"start\":$(( ${r1%-*} )),\"size\":$(( ${r1#*-} - ${r1%-*} + 1 ))},{\"start\":$(( ${r2%-*} )),\"size\":$(( ${r2#*-} - ${r2%-*} + 1 ))}]}" \
        sh -c "'$ctl' --bus-address '$addr' --json=short -o owner,label,size,transient,ranges list | python3 -c '
import json,sys
print(json.dumps(next(a for a in json.load(sys.stdin)[\"allocations\"] if a[\"owner\"] == \"ctl-split\"), separators=(\",\", \":\")))'"
out=$(c list -o id,bogus 2>&1); rc=$?
[ $rc = 2 ] && echo "$out" | grep -q "Unknown column 'bogus' for list; its columns are ID, PATH, OWNER, UID" \
        && ok "a bad column of list is a usage error naming list's columns" || nok "list -o bogus: rc=$rc $out"

# Bash completion: verbs, -o columns, pools and ids from the broker.
comp() { # WORDS...: the completions of the last word
        bash -c '
                daxbrokerctl() { "$CTL" --bus-address "$ADDR" "$@"; }
                _init_completion() { words=("${COMP_WORDS[@]}"); cword=$COMP_CWORD; cur=${words[cword]}; prev=${words[cword-1]}; }
                compopt() { :; }
                complete() { :; }
                . "$1"; shift
                COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _daxbrokerctl; echo "${COMPREPLY[*]}"' \
                _ "$(dirname "$0")/../../completion/daxbrokerctl.bash" daxbrokerctl "$@"
}
export CTL=$ctl ADDR=$addr
[ "$(comp re)" = "release release-owner return-to-host reclaim-from-host" ] && ok "completion: verbs" || nok "completion of re: $(comp re)"
[ "$(comp --pool '')" = "bounded open" ] && ok "completion: pool names from the broker" || nok "completion of --pool: $(comp --pool '')"
[ "$(comp list -o id,ow)" = "id,OWNER" ] && ok "completion: the columns of list after -o" || nok "completion of -o id,ow: $(comp list -o id,ow)"
[ "$(comp pools -o +LARG)" = "+LARGEST-FREE" ] && ok "completion: -o +LIST" || nok "completion of -o +LARG: $(comp pools -o +LARG)"
[ "$(comp pools --ra)" = "--raw" ] && ok "completion: --raw" || nok "completion of --ra: $(comp pools --ra)"
echo "$(comp show '')" | grep -qw "$split" && ok "completion: allocation ids from the broker" || nok "completion of show: $(comp show '')"
c release-owner ctl-map >/dev/null; c release-owner ctl-split >/dev/null
for _ in $(seq 600); do clean && break; sleep 0.1; done
out=$(c return-to-host open 1G 2>&1) && [ "$out" = "1 GiB" ] && [ "$(host)" = $((1 << 30)) ] \
        && ok "return-to-host prints the size returned and status shows it as host" || nok "return-to-host: $out"
# Host chunks sit as high in the region as they can.
out=$(COLUMNS=26 c status | tail -2 | head -1)
[ "$out" = "open    [........HHHHHHHH]" ] && ok "the map shows the upper half of open lent to the host" \
        || nok "map with host memory: $out"
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
assert d["state"] == "active" and d["state-message"] is None, d' \
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

# Class and colour options: checked before any call, then sent as they are
# (this sim publishes no HMAT and its pools have no colours).
for bad in "--colors 64" "--colors 1,,2" "--min-read-bandwidth 0" "--max-read-latency ten" "--tier 'a b'"; do
        out=$(eval c allocate ctl-class 64M "$bad" 2>&1); rc=$?
        [ $rc = 2 ] && ok "allocate $bad is a usage error" || nok "allocate $bad: rc=$rc $out"
done
out=$(c allocate ctl-class 64M --min-read-bandwidth 1000 2>&1); rc=$?
[ $rc = 1 ] && echo "$out" | grep -q "NoSuchPool" && echo "$out" | grep -q "read bandwidth of NUMA node 0 is unknown" \
        && ok "--min-read-bandwidth reaches the broker: no pool's bandwidth is known" || nok "--min-read-bandwidth: rc=$rc $out"
out=$(c allocate ctl-class 64M --cache-isolation 2>&1); rc=$?
[ $rc = 1 ] && echo "$out" | grep -q "has no cache colours" && ok "--cache-isolation reaches the broker" \
        || nok "--cache-isolation: rc=$rc $out"
out=$(c allocate ctl-class 64M --colors 0,3 --tier none 2>&1); rc=$?
[ $rc = 1 ] && echo "$out" | grep -q "has no Tier=" && ok "--colors and --tier reach the broker" \
        || nok "--colors --tier: rc=$rc $out"
out=$(c -o name,tier,read-bw,cache,colors pools 2>&1) && echo "$out" | grep -Eq '^open +- +- +- +-$' \
        && ok "pools -o TIER,READ-BW,CACHE,COLORS: unknown is -" || nok "pools perf columns: $out"

echo "1..$n"
[ $fail = 0 ]
