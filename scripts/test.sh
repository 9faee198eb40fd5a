#!/bin/bash
# The whole test suite, as run by CI: installs what it needs, builds with
# warnings as errors, runs the unit and D-Bus suites under AddressSanitizer
# and UBSan, the fuzzers' smoke runs under clang, and the real-kernel suites
# in the QEMU rig on Debian's 6.1 and 6.12 kernels. Ends with one line
# "N passed, N failed, N skipped" summing every suite.
set -u
cd "$(dirname "$0")/.."
root=$(pwd)
./scripts/install-deps.sh || { echo "dependency installation failed"; echo "0 passed, 1 failed"; exit 1; }

builds=()
status=0
run_build() { # NAME SUITES MESON-OPTIONS...
        local name=$1 suites=$2; shift 2
        local dir="$root/build-test-$name"
        builds+=("$dir")
        echo "==> [$name] configure"
        if [ ! -f "$dir/build.ninja" ]; then
                meson setup "$dir" -Dwerror=true "$@" >"$dir.setup.log" 2>&1 \
                        || { cat "$dir.setup.log"; status=1; return; }
        fi
        echo "==> [$name] build"
        ninja -C "$dir" || { status=1; return; }
        local args=()
        for s in $suites; do args+=(--suite "$s"); done
        echo "==> [$name] test: $suites"
        meson test -C "$dir" --print-errorlogs --num-processes 2 "${args[@]}" || status=1
}

# Unit and D-Bus suites under the sanitizers.
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        run_build asan "unit bus" -Db_sanitize=address,undefined -Db_lundef=false
# Fuzzer smoke runs need clang's libFuzzer.
CC=clang run_build clang "fuzz"
# Real kernels in QEMU.
run_build release "vm" --prefix=/usr --sysconfdir=/etc --localstatedir=/var

python3 - "${builds[@]}" <<'PY'
import json, sys, os
p = f = s = 0
for d in sys.argv[1:]:
    log = os.path.join(d, "meson-logs", "testlog.json")
    if not os.path.exists(log):
        continue
    for line in open(log):
        r = json.loads(line).get("result")
        if r in ("OK", "EXPECTEDFAIL"): p += 1
        elif r == "SKIP": s += 1
        else: f += 1
print(f"{p} passed, {f} failed, {s} skipped")
PY
exit $status
