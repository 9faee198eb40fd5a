#!/bin/bash
# daxbroker-libvirt-hook against the daemon on the sim backend over a real
# dbus-daemon, fed the sample domain XMLs in domains/. A dbus-monitor
# records every method call to the broker, so each case checks which calls
# the hook made, not only its exit code and message.
# Usage: hook-test.sh HOOK BUS_ADDRESS RUNTIME_DIR
set -u
hook=$1 addr=$2 run=$3
dir=$(cd "$(dirname "$0")" && pwd)/domains
tmp=$(mktemp -d /tmp/daxbroker-hook.XXXXXX)
mon_pid=
trap '[ -n "$mon_pid" ] && kill "$mon_pid" 2>/dev/null; rm -rf "$tmp"' EXIT
n=0 fail=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
nok() { n=$((n + 1)); fail=$((fail + 1)); echo "not ok $n - $*"; }
export DAXBROKER_BUS_ADDRESS=$addr

command -v dbus-monitor >/dev/null || { echo "1..0 # SKIP dbus-monitor is not installed"; exit 77; }
dbus-monitor --address "$addr" "type='method_call'" >"$tmp/monitor" 2>&1 &
mon_pid=$!
echo 0 >"$tmp/mark"
# Waits until the monitor has seen everything up to now; prints the broker
# methods called since the last sync, one per line. The mark counter is a
# file so that subshells count too.
sync_calls() {
        local mark=$(($(cat "$tmp/mark") + 1))
        echo $mark >"$tmp/mark"
        busctl --address="$addr" call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus \
                NameHasOwner s "hook-test-mark-$mark" >/dev/null
        for _ in $(seq 400); do grep -q "hook-test-mark-$mark\"" "$tmp/monitor" && break; sleep 0.025; done
        awk -v prev="\"hook-test-mark-$((mark - 1))\"" -v cur="\"hook-test-mark-$mark\"" '
                $0 ~ prev { on = 1; next } $0 ~ cur { exit }
                (on || prev == "\"hook-test-mark-0\"") && /interface=org.daxbroker.Broker1.Manager/ {
                        sub(/.*member=/, ""); print }' "$tmp/monitor"
}
for _ in $(seq 200); do grep -q "NameAcquired\|method call" "$tmp/monitor" 2>/dev/null && break; sleep 0.025; done
sync_calls >/dev/null

# hook XML OP SUB: runs the hook; sets rc, out (stdout), err (stderr), calls.
run_hook() {
        "$hook" "$(basename "$1" .xml)" "$2" "$3" - <"$1" >"$tmp/out" 2>"$tmp/err"
        rc=$?
        out=$(cat "$tmp/out") err=$(cat "$tmp/err")
        sync_calls >"$tmp/calls"
        calls=$(tr '\n' ' ' <"$tmp/calls")
}
# owner -> "label size pool align" lines, sorted
allocs() {
        busctl --address="$addr" --json=short call org.daxbroker.Broker1 /org/daxbroker/Broker1 \
                org.daxbroker.Broker1.Manager ListAllocations | python3 -c '
import json, sys
owner = sys.argv[1]
for a in sorted(json.load(sys.stdin)["data"][0], key=lambda a: a[4]):
    if a[2] == owner:
        print(a[4], a[6], a[5], a[7], a[8])' "$1"
        sync_calls >/dev/null # the test's own calls are not the hook's
}
uuid_of() { sed -n 's:.*<uuid>\(.*\)</uuid>.*:\1:p' "$1" | tr A-F a-f; }

# --- domains that are none of daxbroker's business
for f in no-metadata foreign-namespace; do
        run_hook "$dir/$f.xml" prepare begin
        [ $rc = 0 ] && [ -z "$err" ] && [ -z "$calls" ] && ok "$f: prepare exits 0 without a single broker call" \
                || nok "$f: rc=$rc err=$err calls=$calls"
        run_hook "$dir/$f.xml" release end
        [ $rc = 0 ] && [ -z "$calls" ] && ok "$f: release makes no broker call" || nok "$f release: rc=$rc calls=$calls"
done

# --- one region
f=$dir/one-region.xml u=$(uuid_of "$f")
run_hook "$f" prepare begin
got=$(allocs "$u")
[ $rc = 0 ] && [ "$calls" = "ListAllocations Allocate " ] && [ "$(echo "$got" | cut -d' ' -f1-4)" = "pmem0 536870912 bounded 2097152" ] \
        && ok "one region: one Allocate of 512 MiB from pool bounded, owner = the domain UUID" \
        || nok "one region: rc=$rc err=$err calls=$calls allocs=$got"
dev=$(echo "$got" | cut -d' ' -f5)
[ -n "$dev" ] && [ "$(readlink "$run/owners/$u/pmem0")" = "$dev" ] && ok "the stable path owners/UUID/pmem0 points at $dev" \
        || nok "stable path: $(ls -l "$run/owners/$u" 2>&1 | tr '\n' ' ')"
run_hook "$f" prepare begin
got2=$(allocs "$u")
[ $rc = 0 ] && [ "$calls" = "ListAllocations ReleaseOwner Allocate " ] && [ "$(echo "$got2" | wc -l)" = 1 ] &&
        echo "$err" | grep -q "released 1 allocations left from an earlier run" \
        && ok "a start after a missed release frees the leftover first and allocates again" \
        || nok "restart: rc=$rc err=$err calls=$calls allocs=$got2"
run_hook "$f" reconnect begin
[ $rc = 0 ] && [ -z "$err" ] && [ "$calls" = "ListAllocations " ] && ok "reconnect: allocations present, silent" \
        || nok "reconnect: rc=$rc err=$err calls=$calls"
run_hook "$f" release end
[ $rc = 0 ] && [ "$calls" = "ReleaseOwner " ] && [ -z "$(allocs "$u")" ] && ok "release end: ReleaseOwner, nothing left" \
        || nok "release: rc=$rc err=$err calls=$calls left=$(allocs "$u")"
[ ! -e "$run/owners/$u/pmem0" ] && ok "the stable path is gone" || nok "stable path left: $(ls -l "$run/owners/$u" | tr '\n' ' ')"
run_hook "$f" release end
[ $rc = 0 ] && [ "$calls" = "ReleaseOwner " ] && ok "release end again (libvirt also runs it after a failed start): exit 0" \
        || nok "second release: rc=$rc err=$err"

# --- several regions, every option
f=$dir/several-regions.xml u=$(uuid_of "$f")
run_hook "$f" prepare begin
got=$(allocs "$u" | cut -d' ' -f1-4 | tr '\n' ';')
want="pmem0 536870912 bounded 2097152;pmem1 2097152 open 2097152;ram 1073741824 open 1073741824;"
[ $rc = 0 ] && [ "$calls" = "ListAllocations Allocate Allocate Allocate " ] && [ "$got" = "$want" ] \
        && ok "several regions: three Allocates with pool, node and align (upper-case UUID owned in lower case)" \
        || nok "several: rc=$rc err=$err calls=$calls got=$got want=$want"
path=$(busctl --address="$addr" --json=short call org.daxbroker.Broker1 /org/daxbroker/Broker1 \
        org.daxbroker.Broker1.Manager ListAllocations | python3 -c '
import json, sys
print(next(a[0] for a in json.load(sys.stdin)["data"][0] if a[2] == sys.argv[1] and a[4] == "pmem1"))' "$u")
busctl --address="$addr" call org.daxbroker.Broker1 /org/daxbroker/Broker1 org.daxbroker.Broker1.Manager Release o "$path" >/dev/null
sync_calls >/dev/null
run_hook "$f" reconnect begin
[ $rc = 0 ] && [ "$(echo "$err" | wc -l)" = 1 ] && echo "$err" | grep -q "region 'pmem1' has no allocation" \
        && ok "reconnect names the region whose allocation is gone (and leaves the guest running: exit 0)" \
        || nok "reconnect after loss: rc=$rc err=$err"
for op in migrate save restore; do
        "$hook" hook-several $op begin - <"$f" >"$tmp/out" 2>"$tmp/err"; rc=$?
        sync_calls >"$tmp/calls"
        calls=$(tr '\n' ' ' <"$tmp/calls")
        [ $rc = 0 ] && cmp -s "$f" "$tmp/out" && [ -z "$calls" ] && ok "$op begin prints the XML unchanged" \
                || nok "$op begin: rc=$rc calls=$calls $(diff "$f" "$tmp/out" | head -3)"
done
"$hook" hook-malformed migrate begin - <"$dir/malformed.xml" >"$tmp/out" 2>/dev/null
[ $? = 0 ] && cmp -s "$dir/malformed.xml" "$tmp/out" && ok "the filter passes even XML it cannot parse through unchanged" \
        || nok "malformed through the filter"
for op in "start begin" "started begin" "stopped end" "prepare end" "release begin" "migrate end"; do
        run_hook "$f" $op
        [ $rc = 0 ] && [ -z "$out$err$calls" ] || { nok "$op: rc=$rc out=$out err=$err calls=$calls"; continue; }
        ok "$op: exit 0 at once, no output, no call"
done
run_hook "$f" release end
[ $rc = 0 ] && [ -z "$(allocs "$u")" ] && ok "several regions: all released" || nok "several release: $(allocs "$u")"

# --- invalid metadata: one line, exit 1, not a single Allocate
check_invalid() {
        local f=$dir/$1.xml what=$2
        run_hook "$f" prepare begin
        if [ $rc = 1 ] && [ "$(echo "$err" | wc -l)" = 1 ] && echo "$err" | grep -q "^daxbroker: domain '$1': .*$what" &&
                [ -z "$calls" ]; then
                ok "$1: exit 1, one line '$err', no broker call"
        else
                nok "$1: rc=$rc calls=$calls err=$err"
        fi
}
check_invalid malformed "not well-formed"
check_invalid absurd-size "size 99999999999999 TiB is larger than any host's memory"
check_invalid duplicate-labels "label 'ram' is used twice"
check_invalid unknown-unit "unit 'MeB' is not a libvirt unit"
check_invalid unknown-attribute "unknown attribute 'numa'"
check_invalid unaligned-size "not a multiple of 2 MiB"
check_invalid future-namespace "namespace 'https://daxbroker.org/libvirt/2' is not supported"

# --- the daemon refuses the second region: the first is released again
for c in "too-big second larger.than.any.pool" "no-such-pool pmem nosuch"; do
        set -- $c
        f=$dir/$1.xml u=$(uuid_of "$f")
        run_hook "$f" prepare begin
        if [ $rc = 1 ] && [ "$(echo "$err" | wc -l)" = 1 ] && echo "$err" | grep -q "region '$2'" &&
                echo "$err" | grep -qi "$3" && [ "$calls" = "ListAllocations Allocate Allocate Release " ] &&
                [ -z "$(allocs "$u")" ]; then
                ok "$1: the daemon's refusal in one line ($err); the region allocated before it is released"
        else
                nok "$1: rc=$rc err=$err calls=$calls left=$(allocs "$u")"
        fi
done

# --- no daemon
DAXBROKER_BUS_ADDRESS=unix:path=$tmp/nobus "$hook" hook-one prepare begin - <"$dir/one-region.xml" 2>"$tmp/err"; rc=$?
[ $rc = 1 ] && [ "$(wc -l <"$tmp/err")" = 1 ] && grep -q "daxbrokerd" "$tmp/err" && ok "no bus: exit 1, says daxbrokerd cannot be reached" \
        || nok "no bus: rc=$rc $(cat "$tmp/err")"
"$hook" hook-one prepare 2>/dev/null; [ $? = 2 ] && ok "too few arguments: usage, exit 2" || nok "usage"

echo "1..$n"
[ $fail = 0 ]
