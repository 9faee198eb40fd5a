#!/bin/sh
# fetch-kernels.sh - download and unpack Debian kernels for the QEMU test rig.
#
# Usage: fetch-kernels.sh CACHE_DIR [FLAVOUR...]
#
#   FLAVOUR is "6.1" (the kernel Debian 12's linux-image-amd64 currently
#   depends on) and/or "6.12" (the kernel linux-image-6.12-amd64 depends on;
#   shipped in bookworm-security/bookworm-backports).  Default: both.
#
# For each flavour the versioned package name (linux-image-<KVER>) is resolved
# at run time with apt-cache, because old point releases disappear from the
# archive.  The .deb is fetched with `apt-get download` and unpacked with
# `dpkg -x` into CACHE_DIR/<KVER>/; depmod is run on the unpacked tree so that
# modules.dep exists.  CACHE_DIR/<FLAVOUR> becomes a symlink to <KVER>.
# Everything is reused when already present (idempotent).
#
# If the package cannot be resolved and the cache holds an earlier download
# of the flavour, that one is used.  If apt-cache knows no 6.12 kernel and
# bookworm-backports is not configured, the script (as root) adds
# /etc/apt/sources.list.d/daxbroker-rig-backports.sources and runs
# `apt-get update` once.  Set DAXRIG_NO_APT_CHANGES=1 to forbid that.
#
# Output: one line per flavour: "<FLAVOUR> <KVER> <CACHE_DIR>/<KVER>".
# Exit status: 0 ok, 1 on errors. A kernel that cannot be resolved or
# downloaded (nor reused from the cache) is an error too, unless
# DAXBROKER_ALLOW_SKIP=1 and CI is not "true": then the exit status is 77
# (skip).

set -eu

SKIP=77
msg() { echo "fetch-kernels: $*" >&2; }
skip() {
    if [ "${DAXBROKER_ALLOW_SKIP:-0}" = 1 ] && [ "${CI:-}" != true ]; then
        msg "SKIP: $*"; exit $SKIP
    fi
    msg "FAIL: $* (DAXBROKER_ALLOW_SKIP=1 allows skipping outside CI)"; exit 1
}

[ $# -ge 1 ] || { echo "usage: $0 CACHE_DIR [6.1] [6.12]" >&2; exit 2; }
CACHE=$1; shift
[ $# -gt 0 ] || set -- 6.1 6.12

mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)

# Serialise concurrent callers (parallel meson tests share one cache).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$CACHE/.fetch.lock"
    flock 9
fi

have() { command -v "$1" >/dev/null 2>&1; }
have apt-cache || skip "apt-cache not available"
have apt-get || skip "apt-get not available"
have dpkg || skip "dpkg not available"

meta_pkg() {
    case $1 in
    6.1) echo linux-image-amd64 ;;
    6.12) echo linux-image-6.12-amd64 ;;
    *) msg "unknown flavour '$1' (want 6.1 or 6.12)"; exit 2 ;;
    esac
}

# Print the versioned image package a meta package depends on, or nothing.
resolve() {
    apt-cache depends "$1" 2>/dev/null |
        awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }'
}

# A candidate version exists?
has_candidate() {
    c=$(apt-cache policy "$1" 2>/dev/null | awk '$1 == "Candidate:" { print $2 }')
    [ -n "$c" ] && [ "$c" != "(none)" ]
}

APT_UPDATED=0
apt_update() {
    [ "$APT_UPDATED" = 0 ] || return 1
    [ "$(id -u)" = 0 ] || return 1
    APT_UPDATED=1
    msg "running apt-get update"
    apt-get update -qq >&2 || true
}

add_backports() {
    [ "${DAXRIG_NO_APT_CHANGES:-0}" = 0 ] || return 1
    [ "$(id -u)" = 0 ] || return 1
    if apt-cache policy 2>/dev/null | grep -q 'bookworm-backports'; then
        return 1
    fi
    f=/etc/apt/sources.list.d/daxbroker-rig-backports.sources
    msg "adding bookworm-backports ($f)"
    cat >"$f" <<EOF
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    APT_UPDATED=0
    apt_update
}

fetch_one() {
    flavour=$1
    meta=$(meta_pkg "$flavour")
    pkg=""
    if has_candidate "$meta"; then
        pkg=$(resolve "$meta")
    fi
    if [ -z "$pkg" ] && [ "$flavour" = 6.12 ]; then
        add_backports || true
        has_candidate "$meta" && pkg=$(resolve "$meta")
    fi
    if [ -z "$pkg" ]; then
        if [ -e "$CACHE/$flavour/.complete" ]; then
            kver=$(basename "$(readlink "$CACHE/$flavour")")
            msg "cannot resolve $meta; reusing cached $kver"
            echo "$flavour $kver $CACHE/$kver"
            return 0
        fi
        skip "cannot resolve $meta with apt-cache (no such package?)"
    fi
    kver=${pkg#linux-image-}
    kver=${kver%-unsigned}
    dir=$CACHE/$kver
    if [ ! -e "$dir/.complete" ]; then
        tmp=$(mktemp -d "$CACHE/.dl.XXXXXX")
        chmod 0755 "$tmp"   # apt's _apt sandbox user must be able to write here
        msg "downloading $pkg"
        if ! (cd "$tmp" && apt-get download -q "$pkg" >&2); then
            if apt_update && (cd "$tmp" && apt-get download -q "$pkg" >&2); then
                :
            else
                rm -rf "$tmp"
                if [ -e "$CACHE/$flavour/.complete" ]; then
                    kver=$(basename "$(readlink "$CACHE/$flavour")")
                    msg "download of $pkg failed; reusing cached $kver"
                    echo "$flavour $kver $CACHE/$kver"
                    return 0
                fi
                skip "apt-get download $pkg failed"
            fi
        fi
        rm -rf "$dir"
        mkdir -p "$dir"
        for deb in "$tmp"/*.deb; do
            dpkg -x "$deb" "$dir"
        done
        rm -rf "$tmp"
        [ -f "$dir/boot/vmlinuz-$kver" ] || { msg "no vmlinuz in $pkg"; exit 1; }
        moddir=$(find_moddir "$dir" "$kver")
        [ -n "$moddir" ] || { msg "no modules in $pkg"; exit 1; }
        # modules.dep is generated at install time, not shipped: make it.
        if have depmod; then
            depmod -b "${moddir%/lib/modules/$kver}" "$kver" ||
                msg "warning: depmod failed"
        elif have /sbin/depmod; then
            /sbin/depmod -b "${moddir%/lib/modules/$kver}" "$kver" ||
                msg "warning: depmod failed"
        fi
        touch "$dir/.complete"
    fi
    ln -sfn "$kver" "$CACHE/$flavour"
    echo "$flavour $kver $dir"
}

# The module tree is under lib/modules or usr/lib/modules.
find_moddir() {
    for m in "$1/lib/modules/$2" "$1/usr/lib/modules/$2"; do
        [ -d "$m/kernel" ] && { echo "$m"; return 0; }
    done
    return 0
}

PATH=$PATH:/usr/sbin:/sbin
for f in "$@"; do
    fetch_one "$f"
done
