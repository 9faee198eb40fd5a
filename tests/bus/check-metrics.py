#!/usr/bin/env python3
"""The metrics file (daxbrokerd --metrics-file) parses with a real OpenMetrics
parser (python3-prometheus-client) and its per-pool numbers equal ListPools.
Usage: check-metrics.py BUS_ADDRESS METRICS_FILE DAXBROKERCTL"""
import json, os, subprocess, sys, time

addr, path, ctl = sys.argv[1:4]
try:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
except ImportError:
    # scripts/packages.txt installs it: a missing parser is a broken set-up,
    # not a reason to pass without checking.
    print("Bail out! python3-prometheus-client is not installed for /usr/bin/python3")
    sys.exit(1)

n = 0
bad = 0
def check(cond, what):
    global n, bad
    n += 1
    print(("ok" if cond else "not ok") + f" {n} - {what}")
    bad |= not cond

def list_pools():
    out = subprocess.check_output(["busctl", f"--address={addr}", "--json=short", "call",
                                   "org.daxbroker.Broker1", "/org/daxbroker/Broker1",
                                   "org.daxbroker.Broker1.Manager", "ListPools"])
    keys = ["path", "name", "region", "node", "start", "size", "align", "boundary", "free",
            "allocated", "host", "dirty", "foreign", "largest"]
    return {p[1]: dict(zip(keys, p)) for p in json.loads(out)["data"][0]}

subprocess.run([ctl, "--bus-address", addr, "allocate", "metrics-vm", "512M", "--pool", "bounded"],
               check=True, stdout=subprocess.DEVNULL)
# Wait for the numbers to settle (zeroing done), then for a rewrite of the
# file after that (every 15 s).
for _ in range(3000):
    pools = list_pools()
    if all(p["dirty"] == 0 for p in pools.values()):
        break
    time.sleep(0.1)
settled = time.time()
for _ in range(600):
    if os.path.exists(path) and os.stat(path).st_mtime > settled + 0.01:
        break
    time.sleep(0.1)
check(os.path.exists(path) and os.stat(path).st_mtime > settled, "the metrics file was rewritten")
pools = list_pools()
text = open(path).read()
families = {f.name: f for f in text_string_to_metric_families(text)}
check(True, "the OpenMetrics parser accepts the file")
leftovers = [f for f in os.listdir(os.path.dirname(path)) if f.startswith(os.path.basename(path) + ".")]
check(not leftovers, f"no temporary files left next to it {leftovers}")

field = {"size": "size", "allocated": "allocated", "free": "free", "host": "host", "dirty": "dirty",
         "foreign": "foreign", "largest_free_extent": "largest"}
for fam, key in field.items():
    f = families.get(f"daxbroker_pool_{fam}_bytes")
    check(f is not None and f.type == "gauge" and f.unit == "bytes", f"family daxbroker_pool_{fam}_bytes, gauge, bytes")
    if f is None:
        continue
    got = {s.labels["pool"]: (s.value, s.labels) for s in f.samples}
    check(set(got) == set(pools), f"{fam}: one sample per pool {sorted(got)}")
    for name, p in pools.items():
        if name in got:
            v, labels = got[name]
            check(v == p[key] and labels["region"] == str(p["region"]) and labels["node"] == str(p["node"]),
                  f"{fam}{{pool={name}}} = {v}, ListPools says {p[key]}")
alloc = families.get("daxbroker_pool_allocated_bytes")
check(alloc is not None and sum(s.value for s in alloc.samples) == 512 << 20,
      "the allocated bytes sum to the one allocation")
subprocess.run([ctl, "--bus-address", addr, "release-owner", "metrics-vm"], check=True, stdout=subprocess.DEVNULL)
print(f"1..{n}")
sys.exit(1 if bad else 0)
