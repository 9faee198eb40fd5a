#!/usr/bin/python3
"""Every allocation event is one structured journal entry with its fields,
and the metrics file's counters move by exactly the operations done.

The daemon runs with DAXBROKER_TEST_JOURNAL_FILE: it appends each entry it
sends to the journal to that file, in the journal export format, with the
same fields. The metrics file parses with python3-prometheus-client.

Usage: check-events.py run BUS_ADDRESS JOURNAL METRICS CATALOG CONFIG DAEMON_PID DAEMON_LOG
       check-events.py restored BUS_ADDRESS JOURNAL ALLOCATION_ID
  run       allocations, refusals, a release and its zeroing, a return to
            the host and a reclaim; then JournalRanges=yes and SIGHUP and one
            more allocation, whose id is printed as "# keep ID"
  restored  after a reboot of the sim: the allocation's restore entry"""
import json, os, signal, subprocess, sys, time

try:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
except ImportError:
    print("Bail out! python3-prometheus-client is not installed for /usr/bin/python3")
    sys.exit(1)

B = "org.daxbroker.Broker1"
M = "/org/daxbroker/Broker1"
ERR = "org.daxbroker.Broker1.Error."
mode, addr, journal = sys.argv[1:4]

# One TAP stream over both phases: the first ends without a plan and
# prints its count, the second continues from it.
n = int(os.environ.get("TAP_DONE", "0"))
bad = 0


def plan():
    if os.environ.get("TAP_PLAN", "yes") == "yes":
        print(f"1..{n}")
    else:
        print(f"# done {n}")


def check(cond, what):
    global n, bad
    n += 1
    print(("ok" if cond else "not ok") + f" {n} - {what}")
    bad |= not cond
    return cond


def busctl(*args, check=True):
    r = subprocess.run(["busctl", f"--address={addr}", "--json=short", "call", B, M, f"{B}.Manager", *args],
                       capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"busctl {args}: {r.stderr}")
    return (json.loads(r.stdout)["data"] if r.stdout.strip() else None), r.stderr.strip()


def list_pools():
    keys = ["path", "name", "region", "node", "start", "size", "align", "boundary", "free",
            "allocated", "host", "dirty", "foreign", "largest"]
    return {p[1]: dict(zip(keys, p)) for p in busctl("ListPools")[0][0]}


def list_allocations():
    keys = ["path", "id", "owner", "uid", "label", "pool", "size", "align", "device", "transient",
            "created", "ranges"]
    return {a[1]: dict(zip(keys, a)) for a in busctl("ListAllocations")[0][0]}


def wait_clean():
    """Bounded only so that a daemon that never zeroes ends the test."""
    for _ in range(6000):
        if all(p["dirty"] == 0 for p in list_pools().values()):
            return True
        time.sleep(0.1)
    return False


def entries():
    """Parses the export file: NAME=value lines, or NAME\\n + le64 length +
    bytes + \\n for values with a newline; a blank line ends an entry."""
    data = open(journal, "rb").read() if os.path.exists(journal) else b""
    out, cur, i = [], {}, 0
    while i < len(data):
        j = data.index(b"\n", i)
        line = data[i:j]
        if not line:
            if cur:
                out.append(cur)
            cur = {}
            i = j + 1
            continue
        if b"=" in line:
            k, v = line.split(b"=", 1)
            cur[k.decode()] = v.decode()
            i = j + 1
        else:
            size = int.from_bytes(data[j + 1:j + 9], "little")
            cur[line.decode()] = data[j + 9:j + 9 + size].decode()
            i = j + 9 + size + 1
    if cur:
        out.append(cur)
    return out


def ranges_text(ranges):
    return " ".join(f"{s:#x}-{s + z - 1:#x}" for s, z in ranges)


IDS = {}  # event name -> MESSAGE_ID, as the catalog has them


def new_entries(seen):
    all_ = entries()
    return all_[seen:], len(all_)


if mode == "restored":
    alloc = sys.argv[4]
    a = list_allocations().get(alloc)
    check(a is not None, f"allocation {alloc} is back after the reboot")
    got = [e for e in entries() if e.get("DAXBROKER_EVENT") == "restored" and e.get("DAXBROKER_ALLOCATION") == alloc]
    check(len(got) == 1, f"one restored entry for {alloc} ({len(got)})")
    if got and a:
        e = got[0]
        check(e.get("MESSAGE_ID") == "2ac512c1aae142a7a34c5fb569079ea2", "restored: its MESSAGE_ID")
        check(e.get("DAXBROKER_OWNER") == a["owner"] and e.get("DAXBROKER_POOL") == a["pool"] and
              e.get("DAXBROKER_SIZE") == str(a["size"]) and e.get("DAXBROKER_DEVICE") == a["device"],
              f"restored: owner, pool, size and device {e.get('DAXBROKER_DEVICE')} as ListAllocations says")
        check(e.get("DAXBROKER_RANGES") == ranges_text(a["ranges"]),
              f"restored: DAXBROKER_RANGES {e.get('DAXBROKER_RANGES')} are the recorded ranges (JournalRanges=yes)")
    plan()
    sys.exit(1 if bad else 0)

metrics_path, catalog, config, pid, daemon_log = sys.argv[4:9]
pid = int(pid)
for block in open(catalog).read().split("\n-- ")[1:]:
    mid = block.split("\n", 1)[0].strip()
    IDS[mid] = block

# ---- metrics ----


def read_metrics(after):
    """The file as first rewritten after time `after` (a rewrite follows a
    counter change within a second; bounded only so a broken daemon ends the
    test)."""
    for _ in range(3000):
        if os.path.exists(metrics_path) and os.stat(metrics_path).st_mtime > after:
            break
        time.sleep(0.1)
    text = open(metrics_path).read()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    vals = {}
    for f in fams.values():
        for s in f.samples:
            vals[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return fams, vals


def pool_key(name, pool):
    p = pools_now[pool]
    return (name, (("node", str(p["node"])), ("pool", pool), ("region", str(p["region"]))))


def fail_key(method, error):
    return ("daxbroker_failures_total", (("error", error), ("method", method)))


def hist_count(kind):
    return (f"daxbroker_{kind}_duration_seconds_count", ())


def delta(before, after):
    keys = set(before) | set(after)
    return {k: after.get(k, 0) - before.get(k, 0) for k in keys
            if after.get(k, 0) != before.get(k, 0) and not k[0].endswith("_sum") and "_bucket" not in k[0]
            and not k[0].startswith("daxbroker_pool_")
            # What the state costs the disk moves with every save; the
            # warm-burst bus test counts it.
            and not k[0].startswith("daxbroker_state_")}


def expect_delta(before, after, want, what):
    got = delta(before, after)
    want = {k: v for k, v in want.items() if v}
    ok = check(got == want, f"metrics: {what} moved exactly the expected counters")
    if not ok:
        print(f"#   expected {sorted(want.items())}")
        print(f"#   got      {sorted(got.items())}")


pools_now = list_pools()
check(wait_clean(), "the first start zeroed every pool")
t0 = time.time()
time.sleep(0.05)
fams, m0 = read_metrics(t0)
check(all(fams.get(f) is not None and fams[f].type == "counter" for f in
          ["daxbroker_allocations", "daxbroker_releases", "daxbroker_zeroed_bytes", "daxbroker_returned_bytes",
           "daxbroker_reclaimed_bytes", "daxbroker_failures", "daxbroker_state_directory_syncs",
           "daxbroker_state_file_syncs"]), "counter families present, typed counter")
check(all(fams.get(f) is not None and fams[f].type == "histogram" and fams[f].unit == "seconds" for f in
          ["daxbroker_allocate_duration_seconds", "daxbroker_release_duration_seconds"]),
      "latency histograms of Allocate and Release, in seconds")

ev, seen = new_entries(0)
for name, p in pools_now.items():
    z = sum(int(e["DAXBROKER_SIZE"]) for e in ev
            if e.get("DAXBROKER_EVENT") == "scrubbed" and e.get("DAXBROKER_POOL") == name)
    check(z == p["size"], f"start-up: scrubbed entries of pool {name} add up to its size ({z})")
    check(m0.get(pool_key("daxbroker_zeroed_bytes_total", name)) == p["size"],
          f"start-up: daxbroker_zeroed_bytes_total{{pool={name}}} is its size")
check(all(e.get("MESSAGE_ID") in IDS for e in ev), "every MESSAGE_ID is in systemd/daxbroker.catalog")
check(not any("DAXBROKER_RANGES" in e for e in ev), "no DAXBROKER_RANGES without JournalRanges=yes")


def one(ev, kind, what):
    got = [e for e in ev if e.get("DAXBROKER_EVENT") == kind]
    check(len(got) == 1, f"{what}: one {kind} entry ({len(got)})")
    return got[0] if got else {}


def fields(e, want, what):
    diff = {k: (e.get(k), v) for k, v in want.items() if e.get(k) != v}
    check(not diff, f"{what}: fields {sorted(want)}" + (f" differ: {diff}" if diff else ""))


# ---- allocate ----
out, _ = busctl("Allocate", "sta{sv}", "vm-ev", str(512 << 20), "2", "pool", "s", "bounded", "label", "s", "ram0")
path = out[0]
aid = path.rsplit("/", 1)[1]
a = list_allocations()[aid]
t = time.time()
ev, seen = new_entries(seen)
e = one(ev, "allocated", "Allocate")
fields(e, {"MESSAGE_ID": "dc1ff1efe526449b92f1361fbc7e2b62", "PRIORITY": "6", "DAXBROKER_OWNER": "vm-ev",
           "DAXBROKER_ALLOCATION": aid, "DAXBROKER_POOL": "bounded", "DAXBROKER_SIZE": str(512 << 20),
           "DAXBROKER_DEVICE": a["device"], "DAXBROKER_LABEL": "ram0", "DAXBROKER_UID": str(os.getuid()),
           "DAXBROKER_ZEROED": "0"}, "allocated")
check("DAXBROKER_RANGES" not in e and "vm-ev" in e.get("MESSAGE", ""), "allocated: a MESSAGE, no ranges")
_, m1 = read_metrics(t)
expect_delta(m0, m1, {pool_key("daxbroker_allocations_total", "bounded"): 1, hist_count("allocate"): 1},
             "one Allocate")

# ---- refusals ----
_, err = busctl("Allocate", "sta{sv}", "vm-ev", str(4 << 30), "1", "pool", "s", "bounded", check=False)
check(bool(err), f"Allocate 4G fails ({err})")
_, err = busctl("Allocate", "sta{sv}", "vm ev\x01", str(2 << 20), "0", check=False)
check(bool(err), f"Allocate with a control character in the owner fails ({err})")
_, err = busctl("Release", "o", f"{M}/allocation/0000000000000000", check=False)
check(bool(err), f"Release of no allocation fails ({err})")
_, err = busctl("ReturnToHost", "st", "nosuchpool", str(1 << 30), check=False)
check(bool(err), f"ReturnToHost to no pool fails ({err})")
t = time.time()
ev, seen = new_entries(seen)
ref = [e for e in ev if e.get("DAXBROKER_EVENT") == "refused"]
check(len(ref) == 4 and len(ev) == 4, f"four refused entries and nothing else ({len(ref)} of {len(ev)})")
if len(ref) == 4:
    fields(ref[0], {"MESSAGE_ID": "fa248b8407f341d6a3e6bbfd12e31984", "DAXBROKER_METHOD": "Allocate",
                    "DAXBROKER_ERROR": ERR + "NoSpace", "DAXBROKER_OWNER": "vm-ev", "DAXBROKER_POOL": "bounded",
                    "DAXBROKER_SIZE": str(4 << 30), "DAXBROKER_CALLER_UID": str(os.getuid())}, "refused NoSpace")
    fields(ref[1], {"DAXBROKER_METHOD": "Allocate", "DAXBROKER_ERROR": ERR + "InvalidArgument",
                    "DAXBROKER_OWNER": "vm ev\\001"}, "refused InvalidArgument (the owner escaped)")
    check("\x01" not in ref[1].get("MESSAGE", ""), "no control character reaches the log")
    fields(ref[2], {"DAXBROKER_METHOD": "Release", "DAXBROKER_ERROR": ERR + "NoSuchAllocation"},
           "refused NoSuchAllocation")
    fields(ref[3], {"DAXBROKER_METHOD": "ReturnToHost", "DAXBROKER_ERROR": ERR + "NoSuchPool",
                    "DAXBROKER_POOL": "nosuchpool", "DAXBROKER_SIZE": str(1 << 30)}, "refused NoSuchPool")
_, m2 = read_metrics(t)
expect_delta(m1, m2, {fail_key("Allocate", "NoSpace"): 1, fail_key("Allocate", "InvalidArgument"): 1,
                      fail_key("Release", "NoSuchAllocation"): 1, fail_key("ReturnToHost", "NoSuchPool"): 1},
             "four refused calls")

# ---- release and its zeroing ----
busctl("Release", "o", path)
check(wait_clean(), "the released memory was zeroed")
t = time.time()
ev, seen = new_entries(seen)
e = one(ev, "released", "Release")
fields(e, {"MESSAGE_ID": "6b43207153874c69b54eb639b229f4ce", "DAXBROKER_OWNER": "vm-ev", "DAXBROKER_ALLOCATION": aid,
           "DAXBROKER_POOL": "bounded", "DAXBROKER_SIZE": str(512 << 20), "DAXBROKER_DEVICE": a["device"]},
       "released")
sc = [e for e in ev if e.get("DAXBROKER_EVENT") == "scrubbed"]
check(len(sc) >= 1 and all(e.get("MESSAGE_ID") == "5fdce8400aff498ba28a68e8840d6b37" and
                           e.get("DAXBROKER_POOL") == "bounded" and e.get("DAXBROKER_DEVICE", "").startswith("/dev/dax")
                           for e in sc) and sum(int(e["DAXBROKER_SIZE"]) for e in sc) == 512 << 20,
      f"scrubbed entries for exactly the released 512 MiB ({len(sc)})")
_, m3 = read_metrics(t)
expect_delta(m2, m3, {pool_key("daxbroker_releases_total", "bounded"): 1, hist_count("release"): 1,
                      pool_key("daxbroker_zeroed_bytes_total", "bounded"): 512 << 20},
             "one Release and its zeroing")

# ---- host return and reclaim ----
out, _ = busctl("ReturnToHost", "st", "host", str(1 << 30))
check(out == [1 << 30], f"ReturnToHost host 1G returned {out}")
t = time.time()
ev, seen = new_entries(seen)
e = one(ev, "host-returned", "ReturnToHost")
fields(e, {"MESSAGE_ID": "b28087928d5041c1b1ec8a059ff30d56", "DAXBROKER_POOL": "host",
           "DAXBROKER_SIZE": str(1 << 30)}, "host-returned")
check(e.get("DAXBROKER_DEVICE", "").startswith("/dev/dax") and "0x" not in e.get("MESSAGE", "x"),
      f"host-returned: the chunk's device, no address in the message ({e.get('MESSAGE')})")
dev = e.get("DAXBROKER_DEVICE")
_, m4 = read_metrics(t)
expect_delta(m3, m4, {pool_key("daxbroker_returned_bytes_total", "host"): 1 << 30}, "a return of 1 GiB")
out, _ = busctl("ReclaimFromHost", "st", "host", str(1 << 30))
check(out == [1 << 30], f"ReclaimFromHost host 1G reclaimed {out}")
check(wait_clean(), "the reclaimed memory was zeroed")
t = time.time()
ev, seen = new_entries(seen)
e = one(ev, "host-reclaimed", "ReclaimFromHost")
fields(e, {"MESSAGE_ID": "36a350d22e0941e78232c7354b072511", "DAXBROKER_POOL": "host",
           "DAXBROKER_SIZE": str(1 << 30), "DAXBROKER_DEVICE": dev}, "host-reclaimed")
_, m5 = read_metrics(t)
expect_delta(m4, m5, {pool_key("daxbroker_reclaimed_bytes_total", "host"): 1 << 30,
                      pool_key("daxbroker_zeroed_bytes_total", "host"): 1 << 30},
             "a reclaim of 1 GiB and its zeroing")

# ---- JournalRanges=yes ----
with open(config, "a") as f:
    f.write("\n[Broker]\nJournalRanges=yes\n")
def reloads():
    return open(daemon_log, errors="replace").read().count("Configuration reloaded")


r0 = reloads()
os.kill(pid, signal.SIGHUP)
for _ in range(3000):  # bounded only so that a daemon that never reloads ends the test
    if reloads() > r0:
        break
    time.sleep(0.1)
check(reloads() > r0, "SIGHUP reloaded the configuration")
out, _ = busctl("Allocate", "sta{sv}", "vm-keep", str(512 << 20), "1", "pool", "s", "host")
kid = out[0].rsplit("/", 1)[1]
k = list_allocations()[kid]
ev, seen = new_entries(seen)
e = one(ev, "allocated", "Allocate after JournalRanges=yes")
fields(e, {"DAXBROKER_ALLOCATION": kid, "DAXBROKER_RANGES": ranges_text(k["ranges"])},
       "allocated with JournalRanges=yes: DAXBROKER_RANGES are the allocation's ranges")
print(f"# keep {kid}")
plan()
sys.exit(1 if bad else 0)
