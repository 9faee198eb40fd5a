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
meminfo_total() { awk '/^MemTotal:/ {print $2 * 1024}' /proc/meminfo; }
online_blocks() { grep -l '^online' /sys/devices/system/memory/memory*/state | wc -l; }

# --- the package ------------------------------------------------------------
# The configuration is in place before the package starts the daemon.
mkdir -p /etc/daxbroker
# One zeroing thread leaves the guest's other CPU to systemd and the test.
cat >/etc/daxbroker/daxbroker.conf <<CONF
[Broker]
ScrubThreads=1

[Pool fast]
Region=0

[Pool lend]
Region=1
HostReturn=yes
HostChunk=512M
HostReturnDelay=1h
CONF
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
# CAP_CHOWN (0), CAP_DAC_READ_SEARCH (2), CAP_SYS_PTRACE (19)
[ "$caps" = 0000000000080005 ] && ok "the daemon runs with exactly CAP_CHOWN CAP_DAC_READ_SEARCH CAP_SYS_PTRACE" \
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
out=$(daxbrokerctl allocate vm1 256M --pool fast --label ram0 2>&1) && ok "allocate 256M under the hardened unit" \
        || die "allocate: $out"
path=$(echo "$out" | grep -o "$M/allocation/[0-9a-f]*" | head -1)
dev=$(busctl get-property $B "$path" $B.Allocation Device | awk '{print $2}' | tr -d '"')
[ -c "$dev" ] && ok "allocation $path is $dev" || nok "no device node $dev"
ranges=$(busctl get-property $B "$path" $B.Allocation Ranges)
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
out=$(daxbrokerctl release "$path" 2>&1) && [ ! -e "$dev" ] && ok "release: $dev is gone" || nok "release: $out"
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

errs=$(journalctl -b --no-pager -u daxbrokerd -p err 2>&1 | grep -v '^-- ')
[ -z "$errs" ] && ok "the daemon logged no errors" || nok "errors in the journal: $errs"
[ $failed = 0 ] || diag
echo "1..$n"
[ $failed = 0 ]
