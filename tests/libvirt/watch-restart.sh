#!/bin/bash
# The libvirt watcher against a real libvirtd that is killed and started
# again: a private session daemon (as user nobody, its own runtime
# directory and socket, the test driver served over it), so the host's
# libvirt is not touched. Runs test-libvirt-watch's restart case.
# Usage: watch-restart.sh TEST-BINARY
set -u
bin=$1
command -v libvirtd >/dev/null || { echo "1..0 # SKIP libvirtd is not installed"; exit 77; }
[ "$(id -u)" = 0 ] || { echo "1..0 # SKIP needs root to run libvirtd as another user"; exit 77; }
id nobody >/dev/null 2>&1 || { echo "1..0 # SKIP no user nobody"; exit 77; }
d=$(mktemp -d /tmp/daxbroker-libvirtd.XXXXXX)
chmod 755 "$d"
mkdir -p "$d/rt" "$d/cfg" "$d/cache" "$d/home"
chown nobody "$d/rt" "$d/cfg" "$d/cache" "$d/home"
cleanup() {
        [ -f "$d/rt/pid" ] && kill "$(cat "$d/rt/pid")" 2>/dev/null
        sleep 0.2
        rm -rf "$d"
}
trap cleanup EXIT
cat >"$d/start.sh" <<SH
#!/bin/sh
rm -f "$d/rt/pid"
runuser -u nobody -- env -i PATH=/usr/sbin:/usr/bin XDG_RUNTIME_DIR="$d/rt" XDG_CONFIG_HOME="$d/cfg" \\
        XDG_CACHE_HOME="$d/cache" HOME="$d/home" libvirtd --daemon --pid-file "$d/rt/pid" || exit 1
# ready when it answers
while ! virsh -q -c "test+unix:///default?socket=$d/rt/libvirt/libvirt-sock" list >/dev/null 2>&1; do sleep 0.2; done
SH
chmod +x "$d/start.sh"
"$d/start.sh" || { echo "1..0 # SKIP libvirtd does not start here"; exit 77; }
export LIBVIRT_WATCH_RESTART_URI="test+unix:///default?socket=$d/rt/libvirt/libvirt-sock"
export LIBVIRT_WATCH_RESTART_PIDFILE="$d/rt/pid"
export LIBVIRT_WATCH_RESTART_CMD="$d/start.sh"
"$bin" -p /libvirt-watch/restart
