# SPDX-License-Identifier: LGPL-2.1-or-later
# Reliability cases of tests/bus/harness.sh, sourced by it with the daemon
# running: uses its $build $src $tmp $addr $what $daemon_pid, start_daemon
# and ${scn[@]}, and sets rc.
#   corrupt-state   every kind of bad state file (corrupt-state.py)
#   stress          32 clients, random allocate/open/release (stress.c)
#   busfuzz         every method with mutated arguments (busfuzz.c)
# REL_STRESS_OPS, REL_STRESS_PHASES, REL_FUZZ_ITERATIONS, REL_FUZZ_SEED
# override the sizes of the short runs; REL_REPORT=FILE appends the
# summary lines that scripts/reliability.sh collects.

rel=$build/tests/reliability
sim=$tmp/sim-kernel.json
state=$tmp/state/state
inv=("$rel/invariant" --bus-address "$addr" --sim-state "$sim")
REL_BUS="org.daxbroker.Broker1 /org/daxbroker/Broker1 org.daxbroker.Broker1.Manager"

stop_daemon() {
        kill -TERM "$daemon_pid"; wait "$daemon_pid"; daemon_pid=
}

# The kernel's device layout; scrubbing only adds and removes short-lived
# devices in free memory, so compare it when the daemon is clean.
devices() {
        jq -S '[.regions[] | {id, devices}]' "$sim"
}

report() {
        [ -n "${REL_REPORT:-}" ] && echo "$*" >>"$REL_REPORT"
        return 0
}

case_corrupt_state() {
        local n=0 failed=0 kinds kind base lines log expect target want_aside want_allocs devs
        kinds="$(python3 "$src/tests/reliability/corrupt-state.py" list) empty@reboot garbage@reboot"
        [ -n "${REL_CORRUPT_KINDS:-}" ] && kinds=$REL_CORRUPT_KINDS
        # Three allocations (two in the bounded pool, one in the other) are
        # the good state every kind starts from. The regions are barely
        # larger than them: every recovering start zeroes all memory that
        # no device holds, and that is what makes the test slow.
        stop_daemon
        rm -rf "$state" "$tmp/state/"state.json* "$sim"
        backend="sim:0:4G:1G:0,1:8G:260M:1;boot=devdax;state=$sim"
        start_daemon || { rc=1; return; }
        "${scn[@]}" setup-persist "$tmp/persist" >/dev/null || { echo "# setting up allocations failed"; rc=1; return; }
        "${inv[@]}" --wait-clean --allocations 3 --what "good state" >"$tmp/out" || { cat "$tmp/out"; rc=1; return; }
        stop_daemon
        rm -rf "$tmp/good-state"; cp -a "$state" "$tmp/good-state"; cp "$sim" "$tmp/good-sim"
        mkdir "$tmp/bad-files"
        python3 "$src/tests/reliability/corrupt-state.py" make "$tmp/good-state" "$tmp/bad-files" ||
                { echo "# cannot make the bad files"; rc=1; return; }
        for kind in $kinds; do
                n=$((n + 1)) base=${kind%@reboot}
                local bad= aside=() where
                fail() { echo "# $kind: $*"; bad=1; }
                check_inv() { local out; out=$("$@") || fail "invariant: $(grep '^#' <<<"$out" | head -5)"; }

                rm -rf "$state" "$tmp/state/"state.json*
                cp "$tmp/good-sim" "$sim"
                # A host reboot: the kernel is back to its boot layout.
                [ "$kind" != "$base" ] && rm -f "$sim"

                expect=$(cat "$tmp/bad-files/$base.expect")
                target=$(cat "$tmp/bad-files/$base.target")
                want_aside=$(cat "$tmp/bad-files/$base.aside")
                want_allocs=$(cat "$tmp/bad-files/$base.allocations")
                if [ "$target" = state.json ]; then
                        # An earlier release's file, upgraded on this start.
                        where=$tmp/state/state.json
                else
                        cp -a "$tmp/good-state" "$state"
                        where=$state/$target
                fi
                cp "$tmp/bad-files/$base" "$where"
                cp "$where" "$tmp/bad"
                [ -f "$sim" ] && devices >"$tmp/dev-0"
                lines=$(wc -l <"$tmp/daemon.log")
                start_daemon || { echo "not ok $n - $kind: the daemon did not start"; failed=$((failed + 1)); continue; }
                log=$(tail -n +$((lines + 1)) "$tmp/daemon.log")
                grep "Invalid state file: " <<<"$log" | grep -qF "$where: " ||
                        fail "no 'Invalid state file' message naming $where"
                grep -qF -- "$expect" <<<"$log" || fail "the message does not say '$expect'"
                aside=("$tmp/state/"state.json.corrupt-* "$state/"*.corrupt-*)
                for a in "${aside[@]}"; do
                        [ -f "$a" ] || continue
                        grep -qF "$a" <<<"$log" || fail "the message does not name $a"
                done
                aside=($(ls -d "$tmp/state/"state.json.corrupt-* "$state/"*.corrupt-* 2>/dev/null))
                if [ ${#aside[@]} != "$want_aside" ]; then
                        fail "not exactly $want_aside file(s) set aside: ${aside[*]}"
                elif ! ls "$where".corrupt-* >/dev/null 2>&1 || ! cmp -s "$where".corrupt-* "$tmp/bad"; then
                        fail "$where was not kept byte for byte as $(basename "$where").corrupt-*"
                fi
                if [ "$kind" = "$base" ]; then
                        check_inv "${inv[@]}" --wait-clean --allocations "$want_allocs" --what "$kind"
                        # The three allocations' devices are still there, untouched.
                        [ "$(jq '[.regions[].devices[] | select((.ranges | length) > 0)] | length' "$sim")" = 3 ] ||
                                fail "not exactly the three devices with memory left"
                        cmp -s <(devices) "$tmp/dev-0" || fail "devices changed: $(diff <(devices) "$tmp/dev-0" | head -20)"
                else
                        # The boot layout (daxR.0 spanning each region, bound) is
                        # left as it is, and all of it is foreign.
                        [ "$(jq '[.regions[].devices | length == 1 and .[0].instance == 0 and
                                  .[0].driver == "device_dax" and (.[0].ranges | length) == 1] | all' "$sim")" = true ] ||
                                fail "the kernel's boot layout was changed: $(devices)"
                        check_inv "$rel/invariant" --bus-address "$addr" --allocations 0 --what "$kind"
                        [ "$(busctl --address="$addr" --json=short call $REL_BUS ListPools |
                             jq '[.data[0][] | select(.[12] != .[5])] | length')" = 0 ] ||
                                fail "not every pool is wholly foreign"
                fi
                devices >"$tmp/dev-before"
                # The next start trusts the state now written and still touches nothing.
                stop_daemon
                start_daemon || { echo "not ok $n - $kind: the daemon did not start again"; failed=$((failed + 1)); continue; }
                cmp -s "$tmp/dev-before" <(devices) ||
                        fail "devices changed on the next start: $(diff "$tmp/dev-before" <(devices) | head -20)"
                if [ "$kind" = "$base" ]; then
                        check_inv "${inv[@]}" --wait-clean --allocations "$want_allocs" --what "$kind: restart"
                else
                        check_inv "$rel/invariant" --bus-address "$addr" --allocations 0 --what "$kind: restart"
                fi
                [ "$(tail -n +$((lines + 1)) "$tmp/daemon.log" | grep -c "Invalid state file")" = 1 ] ||
                        fail "the state written by the recovering start was refused"
                stop_daemon
                if [ -n "$bad" ]; then
                        failed=$((failed + 1)); echo "not ok $n - $kind"
                else
                        echo "ok $n - $kind: refused, named ('$expect'), $want_aside file(s) kept aside, $want_allocs allocation(s) kept, no device touched"
                fi
        done
        echo "1..$n"
        report "corrupt-state: kinds=$n failed=$failed"
        [ $failed = 0 ] || rc=1
}

case_stress() {
        local out
        # ASan's quarantine holds freed memory back on purpose; without it
        # the daemon's memory can return to its baseline, as it does in
        # production.
        stop_daemon
        export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=0"
        # The sim copies a device's bytes when it is first opened, so the
        # regions and boundaries are small enough for thousands of devices.
        cat >"$tmp/daxbroker.conf" <<CONF
[Pool bounded]
Region=0
Boundary=8M

[Pool open]
Region=1
CONF
        # The phases measure the clients' work, not the first-boot scrub:
        # a first start of this sim boot zeroes everything, then the
        # measured daemon starts in the same boot with nothing to zero.
        rm -rf "$sim" "$state"
        mkdir -m 0700 "$state"
        backend="sim:0:4G:1G:0,1:8G:1G:1;boot=idle;state=$sim"
        start_daemon || { rc=1; return; }
        "${scn[@]}" wait-clean >/dev/null || { echo "# the first start did not zero the pools"; rc=1; return; }
        stop_daemon
        start_daemon || { rc=1; return; }
        "$rel/stress" --bus-address "$addr" --sim-state "$sim" --daemon-pid "$daemon_pid" \
                --clients "${REL_STRESS_CLIENTS:-32}" --phases "${REL_STRESS_PHASES:-3}" \
                --ops "${REL_STRESS_OPS:-3}" --seed "${REL_STRESS_SEED:-1}" | tee "$tmp/stress.out" |
                sed 's/^stress:/# stress:/'
        [ "${PIPESTATUS[0]}" = 0 ] || rc=1
        report "$(grep '^stress:' "$tmp/stress.out")"
        kill -0 "$daemon_pid" 2>/dev/null || { echo "# the daemon died"; rc=1; }
}

case_busfuzz() {
        "$rel/busfuzz" --bus-address "$addr" --sim-state "$sim" --daemon-pid "$daemon_pid" \
                --iterations "${REL_FUZZ_ITERATIONS:-300}" --seed "${REL_FUZZ_SEED:-1}" | tee "$tmp/fuzz.out" |
                sed 's/^busfuzz:/# busfuzz:/'
        [ "${PIPESTATUS[0]}" = 0 ] || rc=1
        report "$(grep '^busfuzz:' "$tmp/fuzz.out")"
        kill -0 "$daemon_pid" 2>/dev/null || { echo "# the daemon died"; rc=1; }
}

case "$what" in
corrupt-state) case_corrupt_state ;;
stress) case_stress ;;
busfuzz) case_busfuzz ;;
esac
