#!/bin/bash
# Runs inside the rig with systemd as PID 1 (run-vm.sh --systemd): installs
# the Debian package and drives daxbrokerd through systemd and its hardened
# unit. Usage: systemd-payload.sh DEB
set -u
deb=$1
n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
nok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $*"; }
die() { nok "$*"; diag; echo "1..$n"; exit 1; }
diag() {
        systemctl status daxbrokerd --no-pager -n 0 2>&1 | sed 's/^/# /'
        journalctl -b --no-pager -u daxbrokerd -u dbus -n 40 2>&1 | sed 's/^/# /'
}
B=org.daxbroker.Broker1
M=/org/daxbroker/Broker1
prop() { busctl get-property $B "$1" "$2" "$3" | awk '{print $2}'; } # PATH IFACE NAME
pool_prop() { prop "$M/pool/$1" $B.Pool "$2"; }
main_pid() { systemctl show -p MainPID --value daxbrokerd; }
restarts() { systemctl show -p NRestarts --value daxbrokerd; }
# A restart is done when systemd has a new main process and the daemon
# answers on the bus. Bounded only so that a broken restart ends the test.
wait_restarted() { # OLD_PID
        local i
        for i in $(seq 1200); do
                local p; p=$(main_pid)
                if [ "$p" != 0 ] && [ "$p" != "$1" ] && [ "$(systemctl is-active daxbrokerd)" = active ] &&
                        busctl get-property $B $M $B.Manager Version >/dev/null 2>&1; then
                        return 0
                fi
                sleep 0.5
        done
        return 1
}
# In bash: awk prints large products in exponent notation.
meminfo_total() { echo $(($(awk '/^MemTotal:/ {print $2}' /proc/meminfo) * 1024)); }
online_blocks() { grep -l '^online' /sys/devices/system/memory/memory*/state | wc -l; }

# --- the package ------------------------------------------------------------
# The configuration is in place before the package starts the daemon.
mkdir -p /etc/daxbroker
# One zeroing thread leaves the guest's other CPU to systemd and the test.
cat >/etc/daxbroker/daxbroker.conf <<CONF
[Broker]
ScrubThreads=1
JournalRanges=yes

[Pool fast]
Region=0

[Pool lend]
Region=1
HostReturn=yes
HostChunk=512M
HostReturnDelay=1h
CONF
# The metrics file, where the hardened unit may write (its runtime directory).
metrics=/run/daxbroker/daxbroker.prom
mkdir -p /etc/systemd/system/daxbrokerd.service.d
printf '[Service]\nEnvironment=DAXBROKER_METRICS_FILE=%s\n' "$metrics" \
        >/etc/systemd/system/daxbrokerd.service.d/metrics.conf
# Rebuilding the whole man-db index (the trigger of the man pages) takes
# minutes in the rig and tells nothing about daxbroker.
rm -f /var/lib/man-db/auto-update
echo "# dpkg -i $deb"
dpkg -i "$deb" 2>&1 | sed 's/^/# /'
[ "${PIPESTATUS[0]}" = 0 ] && ok "dpkg -i installs the package (no network)" || die "dpkg -i failed"
getent group daxbroker >/dev/null && ok "the package created the group daxbroker (sysusers.d)" \
        || nok "no group daxbroker"
[ "$(systemctl is-enabled daxbrokerd)" = enabled ] && ok "daxbrokerd.service is enabled" \
        || nok "daxbrokerd.service is $(systemctl is-enabled daxbrokerd)"
[ "$(systemctl is-active daxbrokerd)" = active ] && ok "the package started daxbrokerd.service" \
        || nok "daxbrokerd.service is $(systemctl is-active daxbrokerd) after installation"
man_opt=--man=no
command -v man >/dev/null && man_opt=--man=yes
out=$(systemd-analyze verify $man_opt daxbrokerd.service 2>&1) && ok "systemd-analyze verify $man_opt passes on the installed unit" \
        || nok "systemd-analyze verify: $out"
journalctl -b --no-pager -u dbus | grep -q -i 'reload' && ok "dbus reloaded its configuration" \
        || nok "dbus was not reloaded after the package's policy arrived"
journalctl --list-catalog 2>/dev/null | grep -q '^dc1ff1efe526449b92f1361fbc7e2b62 daxbroker:' &&
        ok "the journal catalog knows the daemon's events (journalctl --update-catalog ran)" \
        || nok "the daxbroker catalog is not in journalctl --list-catalog"


# --- bus activation ---------------------------------------------------------
systemctl stop daxbrokerd
[ "$(systemctl is-active daxbrokerd)" = inactive ] && ok "stopped" || nok "not stopped: $(systemctl is-active daxbrokerd)"
out=$(busctl call $B $M $B.Manager ListPools 2>&1) && ok "busctl call $B ListPools answers" || die "ListPools: $out"
[ "$(systemctl is-active daxbrokerd)" = active ] && ok "the call activated daxbrokerd.service" \
        || nok "daxbrokerd is $(systemctl is-active daxbrokerd) after the call"
journalctl -b --no-pager -u dbus | grep -q "Activating via systemd: service name='$B'" \
        && ok "dbus-daemon activated it through systemd" || nok "no activation message from dbus-daemon"

out=$(systemctl status daxbrokerd --no-pager 2>&1)
echo "$out" | sed 's/^/# /'
echo "$out" | grep -q 'Status: "Serving 2 pools"' && ok "systemctl status shows the STATUS= summary" \
        || nok "no STATUS= summary in systemctl status"
echo "# capabilities"
caps=$(grep '^CapEff:' "/proc/$(main_pid)/status" | awk '{print $2}')
# CAP_CHOWN (0), CAP_DAC_READ_SEARCH (2), CAP_SYS_PTRACE (19),
# CAP_CHECKPOINT_RESTORE (40)
[ "$caps" = 0000010000080005 ] &&
        ok "the daemon runs with exactly CAP_CHOWN CAP_DAC_READ_SEARCH CAP_SYS_PTRACE CAP_CHECKPOINT_RESTORE" \
        || nok "effective capabilities $caps"

# --- kill -9: systemd restarts it, allocations intact -----------------------
# The first start after boot zeroes all free memory; wait for it so that the
# steps below do not wait for the zeroing in turn.
echo "# waiting for the first zeroing to finish"
for _ in $(seq 3600); do
        [ "$(pool_prop fast DirtySize)" = 0 ] && [ "$(pool_prop lend DirtySize)" = 0 ] && break
        sleep 1
done
echo "# allocate"
out=$(daxbrokerctl allocate vm1 256M --pool fast --label ram0 --device-uid 65534 2>&1) && ok "allocate 256M under the hardened unit" \
        || die "allocate: $out"
path=$(echo "$out" | grep -o "$M/allocation/[0-9a-f]*" | head -1)
dev=$(busctl get-property $B "$path" $B.Allocation Device | awk '{print $2}' | tr -d '"')
[ -c "$dev" ] && ok "allocation $path is $dev" || nok "no device node $dev"
[ "$(stat -c %u "$dev")" = 65534 ] && ok "$dev belongs to its device owner (uid 65534)" \
        || nok "$dev belongs to uid $(stat -c %u "$dev"), not 65534"
ranges=$(busctl get-property $B "$path" $B.Allocation Ranges)
id=${path##*/}
# The journal entry of the allocation, as journald stored it.
ev=$(journalctl -b -o json --no-pager DAXBROKER_OWNER=vm1 MESSAGE_ID=dc1ff1efe526449b92f1361fbc7e2b62)
echo "$ev" | sed 's/^/# /'
echo "$ev" | /usr/bin/python3 -c '
import json, sys
id, dev, ranges = sys.argv[1:4]
# busctl prints a(tt) as: a(tt) N start size ...
v = ranges.split()[2:]
want = " ".join("%#x-%#x" % (int(v[i]), int(v[i]) + int(v[i + 1]) - 1) for i in range(0, len(v), 2))
e = [json.loads(l) for l in sys.stdin if l.strip()]
assert len(e) == 1, e
e = e[0]
exp = {"DAXBROKER_ALLOCATION": id, "DAXBROKER_POOL": "fast", "DAXBROKER_SIZE": str(256 << 20),
       "DAXBROKER_DEVICE": dev, "DAXBROKER_LABEL": "ram0", "DAXBROKER_RANGES": want,
       "_SYSTEMD_UNIT": "daxbrokerd.service"}
bad = {k: (e.get(k), v) for k, v in exp.items() if e.get(k) != v}
assert not bad, bad
' "$id" "$dev" "$ranges" && ok "journalctl DAXBROKER_OWNER=vm1 finds the allocation with its fields" \
        || nok "the allocation's journal entry is missing or wrong"
pid=$(main_pid) nr=$(restarts)
echo "# kill -9 $pid"
kill -9 "$pid"
wait_restarted "$pid" && ok "after kill -9 systemd restarted the daemon ($pid -> $(main_pid))" || die "no restart after kill -9"
[ "$(restarts)" -gt "$nr" ] && ok "NRestarts went up" || nok "NRestarts $(restarts), was $nr"
[ "$(busctl get-property $B "$path" $B.Allocation Ranges 2>&1)" = "$ranges" ] && [ -c "$dev" ] &&
        ok "the allocation survived with its device and ranges" || nok "allocation lost or changed after kill -9"

# --- watchdog ---------------------------------------------------------------
echo "# watchdog"
mkdir -p /run/systemd/system/daxbrokerd.service.d
printf '[Service]\nEnvironment=DAXBROKER_TEST_STALL=1\nWatchdogSec=10s\n' \
        >/run/systemd/system/daxbrokerd.service.d/stall.conf
systemctl daemon-reload
systemctl restart daxbrokerd
pid=$(main_pid) nr=$(restarts)
kill -USR1 "$pid"
wait_restarted "$pid" && ok "a stalled daemon was restarted ($pid -> $(main_pid))" || die "stalled daemon not restarted"
journalctl -b --no-pager -u daxbrokerd | grep -q "Watchdog timeout" && ok "by the watchdog (journal: Watchdog timeout)" \
        || nok "no watchdog timeout in the journal"
[ "$(restarts)" -gt "$nr" ] && ok "NRestarts went up" || nok "NRestarts $(restarts), was $nr"
[ "$(busctl get-property $B "$path" $B.Allocation Ranges 2>&1)" = "$ranges" ] &&
        ok "the allocation survived the watchdog restart" || nok "allocation lost after the watchdog restart"
rm -rf /run/systemd/system/daxbrokerd.service.d
systemctl daemon-reload
systemctl restart daxbrokerd

# --- the work, under the hardened unit --------------------------------------
echo "# release, zeroing, host return, reclaim"
# Release replies once the caller's access is revoked (the node is root's
# 0600 again); the device goes, and its memory is zeroed, after the reply.
if out=$(daxbrokerctl release "$path" 2>&1); then
        st=$(stat -c '%u:%g %a' "$dev" 2>/dev/null || echo gone)
        case $st in
        "0:0 600" | gone) ok "release replied with $dev closed to the owner ($st)" ;;
        *) nok "release replied with $dev still $st" ;;
        esac
        for _ in $(seq 600); do
                [ -e "$dev" ] || break
                sleep 0.5
        done
        [ ! -e "$dev" ] && ok "release: $dev is gone after the reply" || nok "release: $dev is still there"
else
        nok "release: $out"
fi
journalctl -b -o json --no-pager DAXBROKER_OWNER=vm1 | /usr/bin/python3 -c '
import json, sys
kinds = [json.loads(l).get("DAXBROKER_EVENT") for l in sys.stdin if l.strip()]
assert kinds == ["allocated", "released"], kinds
' && ok "journalctl DAXBROKER_OWNER=vm1: allocated, then released" \
        || nok "journalctl DAXBROKER_OWNER=vm1 does not show the allocation and its release"
for _ in $(seq 1200); do
        [ "$(pool_prop fast DirtySize)" = 0 ] && break
        sleep 0.5
done
[ "$(pool_prop fast DirtySize)" = 0 ] && [ "$(pool_prop fast FreeSize)" = "$(pool_prop fast Size)" ] &&
        ok "released memory was zeroed (DirtySize 0) and the pool is whole again" \
        || nok "pool fast: dirty $(pool_prop fast DirtySize), free $(pool_prop fast FreeSize)"

mem0=$(meminfo_total) on0=$(online_blocks)
out=$(daxbrokerctl return-to-host lend 1G 2>&1) && ok "return-to-host lend 1G: $out" || nok "return-to-host: $out"
mem1=$(meminfo_total) on1=$(online_blocks)
[ "$(pool_prop lend HostSize)" = $((1 << 30)) ] && [ $((on1 - on0)) = 8 ] && [ $((mem1 - mem0)) = $((1 << 30)) ] &&
        ok "1 GiB is host memory: HostSize, 8 more blocks online, MemTotal +1 GiB" \
        || nok "host $(pool_prop lend HostSize), blocks $on0 -> $on1, MemTotal $mem0 -> $mem1"
out=$(daxbrokerctl reclaim-from-host lend 1G 2>&1) && ok "reclaim-from-host lend 1G: $out" || nok "reclaim-from-host: $out"
[ "$(pool_prop lend HostSize)" = 0 ] && [ "$(online_blocks)" = "$on0" ] && [ "$(meminfo_total)" = "$mem0" ] &&
        ok "the memory is back from the host" || nok "host $(pool_prop lend HostSize), blocks $(online_blocks), MemTotal $(meminfo_total)"
out=$(daxbrokerctl allocate vm2 2G --pool lend 2>&1) && ok "the whole reclaimed pool can be allocated (zeroed first)" \
        || nok "allocate 2G from lend: $out"
daxbrokerctl release-owner vm2 >/dev/null || nok "release-owner vm2"
for k in scrubbed host-returned host-reclaimed; do
        if [ -n "$(journalctl -b -o cat --no-pager DAXBROKER_EVENT=$k)" ]; then
                ok "the journal has $k entries"
        else
                nok "no $k entry in the journal"
        fi
done

# --- metrics ----------------------------------------------------------------
# Since the last restart: release vm1, return 1G, reclaim 1G, allocate and
# release vm2 (2G). The file follows a counter change within a second.
t=$(date +%s.%N)
for _ in $(seq 600); do
        [ "$(stat -c %.9Y "$metrics" 2>/dev/null | tr -d .)" \> "$(echo "$t" | tr -d .)" ] && break
        sleep 0.5
done
# The file is a snapshot of the gauges, rewritten within a second of a
# change; background work (zeroing, the warm set) may move them between the
# two reads, so compare until they agree.
metrics_check() {
busctl --json=short call $B $M $B.Manager ListPools | /usr/bin/python3 -c '
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
pools = {p[1]: p for p in json.load(sys.stdin)["data"][0]}
f = {x.name: x for x in text_string_to_metric_families(open(sys.argv[1]).read())}
def by_pool(name):
    return {s.labels["pool"]: s.value for s in f[name].samples if s.name.startswith(name)}
fields = {"size": 5, "free": 8, "allocated": 9, "host": 10, "dirty": 11, "foreign": 12, "largest_free_extent": 13}
for k, i in fields.items():
    got = by_pool("daxbroker_pool_%s_bytes" % k)
    assert got == {n: p[i] for n, p in pools.items()}, (k, got)
    assert sum(got.values()) == sum(p[i] for p in pools.values())
tot = lambda n: sum(by_pool(n).values())
want = {"daxbroker_allocations": 1, "daxbroker_releases": 2, "daxbroker_returned_bytes": 1 << 30,
        "daxbroker_reclaimed_bytes": 1 << 30}
got = {n: tot(n) for n in want}
assert got == want, got
assert tot("daxbroker_zeroed_bytes") >= (256 << 20) + (1 << 30), tot("daxbroker_zeroed_bytes")
h = {s.name: s.value for s in f["daxbroker_allocate_duration_seconds"].samples}
assert h["daxbroker_allocate_duration_seconds_count"] == 1, h
' "$metrics"
}
for _ in $(seq 30); do
        metrics_check 2>/dev/null && break
        sleep 1
done
metrics_check && ok "the metrics file parses (prometheus_client), equals ListPools, counters match the work done" \
        || nok "metrics file $metrics: $(head -c 300 "$metrics" 2>&1)"

# The daemon's own entries: systemd's about the stall it was made to
# have (watchdog timeout, the kill) are expected.
errs=$(journalctl -b --no-pager -u daxbrokerd -p err _COMM=daxbrokerd 2>&1 | grep -v '^-- ')
n_all=$(journalctl -b --no-pager -u daxbrokerd _COMM=daxbrokerd 2>&1 | grep -vc '^-- ')
if [ -z "$errs" ] && [ "$n_all" -gt 0 ]; then
        ok "the daemon logged no errors ($n_all entries of its own)"
else
        nok "errors in the journal (of $n_all entries of its own): $errs"
fi
[ $failed = 0 ] || diag
echo "1..$n"
[ $failed = 0 ]
