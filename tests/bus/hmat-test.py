#!/usr/bin/env python3
"""Pools that know how fast they are, and cache-isolated owners (issue 12),
against a running daxbrokerd. Used by the bus suite (sim backend, expected
values given as JSON) and by the rig (values read from sysfs).
Usage: hmat-test.py STEP BUS_ADDRESS DAXBROKERCTL STATE_FILE [--sysfs ROOT] [--expect JSON]
  props   Pool properties (Access, MemorySideCaches) equal what the kernel
          (or the sim) publishes; unknown is -1, never 0; daxbrokerctl pools
          and the metrics agree
  place   requests by bandwidth, latency and tier land in the right pool;
          one nobody meets is NoSuchPool naming why
  colors  two cache-isolated owners hold disjoint colours (checked on their
          ranges mod the cache size, and on sysfs mappingN in the rig); a
          third gets NoSpace saying why; a pinned owner cannot take a held
          colour; STATE_FILE keeps what they hold
  check   after a restart or reboot: the same colours and ranges
  reclaim (a pool with HostReturn=yes, HostChunk= one colour slice) memory
          lent to the host comes back for colour requests that need it:
          only chunks of the colours they can use, never an isolated
          owner's; one that cannot fit even with all of it is NoSpace
          naming colours and takes nothing back
  hotplug POOL  (a pool of a node of soft-reserved memory alone) its
          Access is empty until memory of it is lent to the host; then it
          is what the node publishes, with PropertiesChanged, and it stays
          after the memory is taken back"""
import argparse, json, os, subprocess, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("step")
ap.add_argument("addr")
ap.add_argument("ctl")
ap.add_argument("state")
ap.add_argument("--sysfs")
ap.add_argument("--expect")
ap.add_argument("--metrics")
ap.add_argument("--pool", help="hotplug: the pool of the node of soft-reserved memory alone")
ap.add_argument("--host-return", action="store_true",
                help="the coloured pool lends 128 MiB chunks to the host: check which colours they take")
args = ap.parse_args()

n = 0
bad = 0
def check(cond, what):
    global n, bad
    n += 1
    print(("ok" if cond else "not ok") + f" {n} - {what}", flush=True)
    bad |= not cond

BUS = ["busctl", f"--address={args.addr}"] if args.addr != "system" else ["busctl", "--system"]
def call(*a, fail=False):
    p = subprocess.run(BUS + ["--json=short", "call", "org.daxbroker.Broker1", "/org/daxbroker/Broker1",
                              "org.daxbroker.Broker1.Manager"] + [str(x) for x in a], capture_output=True, text=True)
    if fail:
        return p.returncode, p.stdout + p.stderr
    if p.returncode != 0:
        raise SystemExit(f"Bail out! {a}: {p.stderr}")
    return json.loads(p.stdout)["data"]

def prop(path, iface, name):
    out = subprocess.check_output(BUS + ["--json=short", "get-property", "org.daxbroker.Broker1", path,
                                         f"org.daxbroker.Broker1.{iface}", name], text=True)
    return json.loads(out)["data"]

def pools():
    keys = ["path", "name", "region", "node", "start", "size", "align", "boundary", "free",
            "allocated", "host", "dirty", "foreign", "largest"]
    return {p[1]: dict(zip(keys, p)) for p in call("ListPools")[0]}

def gvariant(t, v):
    if t == "t":
        return f"<uint64 {v}>"
    if t == "s":
        return "<'" + v + "'>"
    if t == "b":
        return f"<{v}>"
    if t == "au":
        return "<@au [" + ", ".join(f"uint32 {x}" for x in v[1:]) + "]>"
    raise ValueError(t)

def allocate(owner, size, opts, fail=False):
    if fail:
        # gdbus names the error (busctl prints only its message).
        where = ["--address", args.addr] if args.addr != "system" else ["--system"]
        d = "{" + ", ".join(f"'{k}': {gvariant(t, v)}" for k, (t, v) in opts.items()) + "}"
        p = subprocess.run(["gdbus", "call"] + where + ["--dest", "org.daxbroker.Broker1", "--object-path",
                           "/org/daxbroker/Broker1", "--method", "org.daxbroker.Broker1.Manager.Allocate",
                           owner, str(size), "@a{sv} " + d], capture_output=True, text=True)
        return p.returncode, p.stdout + p.stderr
    flat = []
    for k, (t, v) in opts.items():
        flat += [k, t] + (v if isinstance(v, list) else [v])
    return call("Allocate", "sta{sv}", owner, size, len(opts), *flat, fail=fail)

def allocations():
    return call("ListAllocations")[0]

def sysfs_read(path):
    try:
        return int(open(path).read().strip(), 0)
    except FileNotFoundError:
        return -1

def expected_perf(node):
    """(access list, cache list) as the Pool properties should have them."""
    if args.sysfs:
        base = f"{args.sysfs}/devices/system/node/node{node}"
        acc = []
        for k in (0, 1):
            d = f"{base}/access{k}/initiators"
            if os.path.isdir(d):
                acc.append([k] + [sysfs_read(f"{d}/{a}") for a in
                                  ("read_bandwidth", "write_bandwidth", "read_latency", "write_latency")])
        caches = []
        cdir = f"{base}/memory_side_cache"
        idx = {0: "direct-mapped", 1: "indexed", 2: "other", -1: "unknown"}
        pol = {0: "write-back", 1: "write-through", 2: "other", -1: "unknown"}
        if os.path.isdir(cdir):
            for e in sorted(os.listdir(cdir)):
                if e.startswith("index"):
                    d = f"{cdir}/{e}"
                    caches.append([int(e[5:]), sysfs_read(f"{d}/size"), sysfs_read(f"{d}/line_size"),
                                   idx.get(sysfs_read(f"{d}/indexing"), "other"),
                                   pol.get(sysfs_read(f"{d}/write_policy"), "other")])
        return acc, caches
    e = json.loads(args.expect)[str(node)]
    return e["access"], e["caches"]

def class_of(acc):
    """What placement compares: access1 if present, else access0."""
    by = {a[0]: a for a in acc}
    return by.get(1) or by.get(0)

P = pools()

if args.step == "props":
    for name, p in sorted(P.items()):
        acc, caches = expected_perf(p["node"])
        got_acc = prop(p["path"], "Pool", "Access")
        got_caches = prop(p["path"], "Pool", "MemorySideCaches")
        check(got_acc == acc, f"pool {name} (node {p['node']}): Access {got_acc} equals {acc}")
        check(got_caches == caches, f"pool {name}: MemorySideCaches {got_caches} equals {caches}")
        check(all(v != 0 for a in got_acc for v in a[1:]), f"pool {name}: no attribute reads 0")
    # daxbrokerctl pools shows the class placement compares.
    where = ["--bus-address", args.addr] if args.addr != "system" else []
    rows = {r["name"]: r for r in json.loads(subprocess.check_output(
        [args.ctl] + where + ["--json", "pools"], text=True))["pools"]}
    for name, p in sorted(P.items()):
        acc, caches = expected_perf(p["node"])
        c = class_of(acc) or [None, -1, -1, -1, -1]
        r = rows[name]
        got = [r["read-bw"], r["write-bw"], r["read-lat"], r["write-lat"]]
        check(got == c[1:], f"daxbrokerctl pools {name}: {got} equals {c[1:]}")
        cache = next((x[1] for x in caches if x[1] >= 0), -1)
        check(r["cache"] == cache, f"daxbrokerctl pools {name}: CACHE {r['cache']} equals {cache}")
    if args.metrics:
        from prometheus_client.openmetrics.parser import text_string_to_metric_families
        fams = {f.name: f for f in text_string_to_metric_families(open(args.metrics).read())}
        for i, attr in enumerate(["read_bandwidth_megabytes_per_second", "write_bandwidth_megabytes_per_second",
                                  "read_latency_nanoseconds", "write_latency_nanoseconds"]):
            f = fams.get(f"daxbroker_pool_{attr}")
            got = sorted((s.labels["pool"], int(s.labels["access"]), int(s.value)) for s in f.samples) if f else None
            want = sorted((name, a[0], a[1 + i]) for name, p in P.items() for a in expected_perf(p["node"])[0]
                          if a[1 + i] >= 0)
            check(got == want, f"metrics daxbroker_pool_{attr}: {got} equals {want} (unknown: no sample)")

elif args.step == "place":
    perf = {name: class_of(expected_perf(p["node"])[0]) for name, p in P.items()}
    known = {k: v for k, v in perf.items() if v and v[1] > 0 and v[3] > 0}
    check(len(known) >= 1, f"a pool with known read bandwidth and latency: {sorted(known)}")
    unknown = sorted(set(P) - set(known))
    fast = max(known, key=lambda k: known[k][1])
    low = min(known, key=lambda k: known[k][3])
    def pool_of(path):
        return prop(path, "Allocation", "Pool").rsplit("/", 1)[1]
    path = allocate("hmat-bw", 512 << 20, {"min-read-bandwidth": ("t", known[fast][1])})[0]
    check(pool_of(path) == fast, f"min-read-bandwidth={known[fast][1]} lands in {fast}: {pool_of(path)}")
    path = allocate("hmat-lat", 512 << 20, {"max-read-latency": ("t", known[low][3])})[0]
    check(pool_of(path) == low, f"max-read-latency={known[low][3]} lands in {low}: {pool_of(path)}")
    if len(known) >= 2:
        # Both qualify: the closest to the bound (the slower one) is taken.
        slow = min(known, key=lambda k: known[k][1])
        path = allocate("hmat-any", 512 << 20, {"min-read-bandwidth": ("t", known[slow][1])})[0]
        check(pool_of(path) == slow, f"min-read-bandwidth={known[slow][1]}: both qualify, the closest ({slow}) wins: {pool_of(path)}")
    if unknown:
        # The lowest bound: every pool with a known bandwidth meets it,
        # one whose bandwidth is unknown never does.
        path = allocate("hmat-any", 512 << 20, {"min-read-bandwidth": ("t", 1), "pool": ("s", unknown[0])}, fail=True)
        check(path[0] != 0 and "NoSuchPool" in path[1] and "unknown" in path[1],
              f"pool {unknown[0]} with unknown bandwidth does not qualify: {path[1].strip()}")
    rc, out = allocate("hmat-none", 512 << 20, {"min-read-bandwidth": ("t", known[fast][1] + 1)}, fail=True)
    check(rc != 0 and "NoSuchPool" in out or "No pool has the memory" in out and "below" in out,
          f"a bound nobody meets is NoSuchPool naming why: {out.strip()}")
    rc, out = allocate("hmat-none", 512 << 20, {"max-read-latency": ("t", 0)}, fail=True)
    check(rc != 0 and "must be from 1" in out, f"max-read-latency=0 is refused: {out.strip()}")
    tiers = {name: prop(p["path"], "Pool", "Tier") for name, p in P.items()}
    for name, t in sorted(tiers.items()):
        if t:
            path = allocate("hmat-tier", 512 << 20, {"tier": ("s", t)})[0]
            check(pool_of(path) == name, f"tier={t} lands in {name}")
    rc, out = allocate("hmat-tier", 512 << 20, {"tier": ("s", "nonesuch")}, fail=True)
    check(rc != 0 and "nonesuch" not in out or "tier" in out, f"an unknown tier is refused: {out.strip()}")
    for o in ("hmat-bw", "hmat-lat", "hmat-any", "hmat-tier"):
        call("ReleaseOwner", "s", o, fail=True)

def held():
    """owner -> {"colors": [...], "ranges": [[start, size], ...], "device": ...} of the isolated owners."""
    out = {}
    for a in allocations():
        path, aid, owner = a[0], a[1], a[2]
        if owner.startswith("iso-"):
            o = out.setdefault(owner, {"colors": [], "ranges": [], "devices": []})
            o["colors"] = sorted(set(o["colors"]) | set(prop(path, "Allocation", "Colors")))
            o["ranges"] += [list(r) for r in a[11]]
            o["devices"].append(prop(path, "Allocation", "Device"))
    return out

def colors_of(ranges, c, n):
    slice_ = c // n
    s = set()
    for start, size in ranges:
        a = start
        while a < start + size:
            s.add((a % c) // slice_)
            a = a - a % slice_ + slice_
    return s

def sysfs_ranges(device):
    name = device.rsplit("/", 1)[1]
    d = f"{args.sysfs}/bus/dax/devices/{name}"
    r = []
    for e in sorted(os.listdir(d)):
        if e.startswith("mapping") and e[7:].isdigit():
            s, t = sysfs_read(f"{d}/{e}/start"), sysfs_read(f"{d}/{e}/end")
            r.append([s, t - s + 1])
    return sorted(r)

def colored_pool():
    for name, p in P.items():
        if prop(p["path"], "Pool", "Colors"):
            return name, p
    raise SystemExit("Bail out! no pool has cache colours: " +
                     "; ".join(prop(p["path"], "Pool", "ColorsMessage") for p in P.values()))

def mod_intervals(ranges, c):
    """The ranges folded onto [0, C): the cache lines they use."""
    out = []
    for start, size in ranges:
        a, end = start, start + size
        while a < end:
            nxt = min(end, a - a % c + c)
            out.append((a % c, (a % c) + (nxt - a)))
            a = nxt
    return out

def check_disjoint(h, c, ncol):
    owners = sorted(h)
    for o in owners:
        derived = colors_of(h[o]["ranges"], c, ncol)
        check(derived <= set(h[o]["colors"]) and derived,
              f"{o}: its ranges lie in colours {sorted(derived)} of its Colors {h[o]['colors']}")
        if args.sysfs:
            for dev in h[o]["devices"]:
                sr = sysfs_ranges(dev)
                check(colors_of(sr, c, ncol) <= set(h[o]["colors"]),
                      f"{o}: sysfs mappingN of {dev} {[[hex(s), hex(z)] for s, z in sr]} lie in its colours")
    for i, a in enumerate(owners):
        for b in owners[i + 1:]:
            ra = h[a]["ranges"] + ([r for d in h[a]["devices"] for r in sysfs_ranges(d)] if args.sysfs else [])
            rb = h[b]["ranges"] + ([r for d in h[b]["devices"] for r in sysfs_ranges(d)] if args.sysfs else [])
            # Congruent mod C: some cache line both would use.
            clash = [(x, y) for x in mod_intervals(ra, c) for y in mod_intervals(rb, c)
                     if x[0] < y[1] and y[0] < x[1]]
            check(not clash, f"{a} and {b} hold no ranges congruent mod the cache size {c:#x}")

if args.step == "colors":
    name, p = colored_pool()
    ncol = prop(p["path"], "Pool", "Colors")
    c = prop(p["path"], "Pool", "CacheSize")
    per_color = p["size"] // ncol
    # Each takes a colour and a half: two whole colours.
    size = per_color + per_color // 2
    a = allocate("iso-a", size, {"pool": ("s", name), "cache-isolation": ("b", "true")})
    if args.host_return:
        # Memory lent to the host takes a colour no allocation touches
        # first: not iso-a's, and not the top colour, which a pinned
        # allocation touches (the highest window would be there).
        held_a = set(held()["iso-a"]["colors"])
        allocate("pin-h", 2 << 20, {"pool": ("s", name), "colors": ("au", [1, ncol - 1])})
        start = prop(p["path"], "Pool", "Start")
        call("ReturnToHost", "st", name, 128 << 20)
        host = [[start + o, z] for o, z, use in prop(p["path"], "Pool", "Extents") if use == "host"]
        hc = colors_of(host, c, ncol)
        free_colors = set(range(ncol)) - held_a - {ncol - 1}
        check(host and hc <= free_colors,
              f"the host chunk {[[hex(x), hex(z)] for x, z in host]} lies in colours {sorted(hc)}, of the untouched {sorted(free_colors)}")
        call("ReleaseOwner", "s", "pin-h")
        call("ReclaimFromHost", "st", name, 128 << 20)
    b = allocate("iso-b", size, {"pool": ("s", name), "cache-isolation": ("b", "true")})
    h = held()
    check(len(h.get("iso-a", {}).get("colors", [])) == 2 and len(h.get("iso-b", {}).get("colors", [])) == 2,
          f"each isolated owner holds two whole colours: {[(o, v['colors']) for o, v in sorted(h.items())]}")
    check(not set(h["iso-a"]["colors"]) & set(h["iso-b"]["colors"]), "their colours are disjoint")
    check_disjoint(h, c, ncol)
    # A second allocation of iso-a goes into its own colours.
    allocate("iso-a", per_color // 4, {"pool": ("s", name), "cache-isolation": ("b", "true")})
    h2 = held()
    check(h2["iso-a"]["colors"] == h["iso-a"]["colors"], f"iso-a's second allocation stays in its colours {h2['iso-a']['colors']}")
    iso = prop(p["path"], "Pool", "IsolatedColors")
    check(sorted(iso) == sorted([[k, o] for o, v in h2.items() for k in v["colors"]]),
          f"IsolatedColors {iso} lists who holds each colour")
    if ncol == 4:
        rc, out = allocate("iso-c", 2 << 20, {"pool": ("s", name), "cache-isolation": ("b", "true")}, fail=True)
        check(rc != 0 and "NoSpace" in out and "no free cache colour" in out and "iso-a" in out and "iso-b" in out,
              f"a third isolated owner gets NoSpace saying why: {out.strip()}")
        rc, out = allocate("pin-d", 2 << 20, {"pool": ("s", name), "colors": ("au", [2, 1, h["iso-a"]["colors"][0]])}, fail=True)
        check(rc != 0 and "NoSpace" in out and "held by cache-isolated owners" in out,
              f"pinning to a held colour is NoSpace naming the holder: {out.strip()}")
        rc, out = allocate("plain-e", 2 << 20, {"pool": ("s", name)}, fail=True)
        check(rc != 0 and "NoSpace" in out and "held by cache-isolated owners" in out, f"a plain allocation does not touch the held colours: {out.strip()}")
        rc, out = allocate("pin-d", 2 << 20, {"pool": ("s", name), "colors": ("au", [1, ncol])}, fail=True)
        check(rc != 0 and "NoSuchPool" in out and "colours 0 to" in out, f"a colour the pool does not have: {out.strip()}")
    if args.host_return:
        p2 = subprocess.run(BUS + ["call", "org.daxbroker.Broker1", "/org/daxbroker/Broker1",
                                   "org.daxbroker.Broker1.Manager", "ReturnToHost", "st", name, str(128 << 20)],
                            capture_output=True, text=True)
        check(p2.returncode != 0, f"no memory goes to the host in colours isolated owners hold: {p2.stderr.strip()}")
    rc, out = allocate("iso-x", 2 << 20, {"pool": ("s", name), "cache-isolation": ("b", "true"),
                                          "colors": ("au", [1, 0])}, fail=True)
    check(rc != 0 and "exclude each other" in out, f"cache-isolation with colors is refused: {out.strip()}")
    json.dump(h2, open(args.state, "w"))

elif args.step == "reclaim":
    name, p = colored_pool()
    ncol = prop(p["path"], "Pool", "Colors")
    c = prop(p["path"], "Pool", "CacheSize")
    start = prop(p["path"], "Pool", "Start")
    slice_ = c // ncol
    per_color = p["size"] // ncol
    def host_ranges():
        """Host memory cut at colour edges (Extents joins neighbours)."""
        out = []
        for o, z, use in prop(p["path"], "Pool", "Extents"):
            a = start + o
            while use == "host" and a < start + o + z:
                nxt = min(start + o + z, a - a % slice_ + slice_)
                out.append([a, nxt - a])
                a = nxt
        return sorted(out)
    def fmt(r):
        return [[hex(x), hex(z)] for x, z in r]
    check(ncol == 4, f"pool {name} has 4 colours of {slice_ >> 20} MiB")
    allocate("iso-a", per_color // 2, {"pool": ("s", name), "cache-isolation": ("b", "true")})
    allocate("iso-b", per_color // 2, {"pool": ("s", name), "cache-isolation": ("b", "true")})
    h0 = held()
    check(h0["iso-a"]["colors"] == [0] and h0["iso-b"]["colors"] == [1],
          f"iso-a and iso-b hold colours 0 and 1: {[(o, v['colors']) for o, v in sorted(h0.items())]}")
    # Every colour no allocation touches goes to the host, once the first
    # start has zeroed it.
    for _ in range(600):
        if pools()[name]["dirty"] == 0:
            break
        time.sleep(0.1)
    call("ReturnToHost", "st", name, 2 * per_color)
    lent = host_ranges()
    check(sum(z for _, z in lent) == 2 * per_color and colors_of(lent, c, ncol) == {2, 3},
          f"colours 2 and 3 are lent to the host whole: {fmt(lent)}")
    # An isolated owner that only fits in colours held by the host.
    r = allocate("iso-r", per_color, {"pool": ("s", name), "cache-isolation": ("b", "true")})
    h1 = held()
    check("iso-r" in h1 and h1["iso-r"]["colors"] == [2],
          f"iso-r gets colour 2 alone, taken back from the host: {h1.get('iso-r', {}).get('colors')}")
    check(colors_of(h1.get("iso-r", {}).get("ranges", []), c, ncol) == {2},
          f"iso-r's ranges lie in colour 2: {fmt(h1.get('iso-r', {}).get('ranges', []))}")
    after = host_ranges()
    check(after == [x for x in lent if colors_of([x], c, ncol) == {3}],
          f"only the chunks of colour 2 came back; colour 3 is still the host's: {fmt(after)}")
    for o in ("iso-a", "iso-b"):
        check(sorted(h1[o]["ranges"]) == sorted(h0[o]["ranges"]) and h1[o]["colors"] == h0[o]["colors"],
              f"{o} keeps its ranges and colours")
    check_disjoint(h1, c, ncol)
    # Too big even with every free colour back from the host: NoSpace
    # naming colours, and nothing comes back.
    rc, out = allocate("iso-x", 2 * per_color, {"pool": ("s", name), "cache-isolation": ("b", "true")}, fail=True)
    check(rc != 0 and "NoSpace" in out and "colour" in out, f"a request too big even with reclaim is NoSpace naming colours: {out.strip()}")
    check(host_ranges() == after, f"and no chunk came back: {fmt(host_ranges())}")
    rc, out = allocate("pin-x", per_color // 2, {"pool": ("s", name), "colors": ("au", [1, 0])}, fail=True)
    check(rc != 0 and "NoSpace" in out and "held by cache-isolated owners" in out,
          f"pinned to held colours: NoSpace naming the holders: {out.strip()}")
    check(host_ranges() == after, f"and no chunk came back: {fmt(host_ranges())}")
    # Pinned to colour 3 and a plain allocation (kept out of isolated
    # colours): one chunk of colour 3 each.
    allocate("pin-d", slice_, {"pool": ("s", name), "colors": ("au", [1, 3])})
    check(len(host_ranges()) == len(after) - 1, f"a pinned allocation takes one chunk of colour 3 back: {fmt(host_ranges())}")
    allocate("plain-e", slice_, {"pool": ("s", name)})
    left = host_ranges()
    check(len(left) == len(after) - 2 and colors_of(left, c, ncol) == {3},
          f"a plain one takes one more, of colour 3: {fmt(left)}")
    mine = {a[2]: colors_of([list(r) for r in a[11]], c, ncol) for a in allocations() if a[2] in ("pin-d", "plain-e")}
    check(mine == {"pin-d": {3}, "plain-e": {3}}, f"both lie in colour 3: {mine}")
    h2 = held()
    for o in ("iso-a", "iso-b", "iso-r"):
        check(sorted(h2[o]["ranges"]) == sorted(h1[o]["ranges"]), f"{o} keeps its ranges")
    json.dump(h2, open(args.state, "w"))

elif args.step == "hotplug":
    p = P[args.pool]
    if args.sysfs:
        pre = expected_perf(p["node"])
        check(pre == ([], []), f"sysfs publishes nothing for node {p['node']} before memory of it is online: {pre}")
    check(prop(p["path"], "Pool", "Access") == [] and prop(p["path"], "Pool", "MemorySideCaches") == [],
          f"pool {args.pool}: nothing is published before memory of node {p['node']} is online")
    where = ["--address", args.addr] if args.addr != "system" else ["--system"]
    mon = subprocess.Popen(["gdbus", "monitor"] + where + ["--dest", "org.daxbroker.Broker1", "--object-path", p["path"]],
                           stdout=subprocess.PIPE, text=True)
    # It prints this once its match rule is in place.
    while "Monitoring" not in mon.stdout.readline():
        pass
    # The first start zeroes the pool; what is lent to the host is clean.
    while pools()[args.pool]["dirty"] != 0:
        time.sleep(0.1)
    chunk = 256 << 20
    call("ReturnToHost", "st", args.pool, chunk)
    acc, caches = expected_perf(p["node"])
    check(acc, f"node {p['node']} publishes its HMAT now: {acc}")
    got = prop(p["path"], "Pool", "Access")
    check(got == acc, f"after ReturnToHost onlined memory of node {p['node']}: Access {got} equals {acc}")
    check(prop(p["path"], "Pool", "MemorySideCaches") == caches, f"and MemorySideCaches equals {caches}")
    # The chunk counts in HostSize once online, signalled after the node
    # was read again: by then any change of Access has been signalled.
    seen = ""
    while f"'HostSize': <uint64 {chunk}>" not in seen:
        line = mon.stdout.readline()
        if not line:
            break
        if "PropertiesChanged" in line:
            seen += line
    mon.kill()
    call("ReclaimFromHost", "st", args.pool, chunk)
    check("'Access': <[(uint32 " in seen, f"PropertiesChanged named the new Access: {seen.strip()[:300]}")
    got = prop(p["path"], "Pool", "Access")
    if args.sysfs:
        print(f"# sysfs of node {p['node']} once the memory is back: {expected_perf(p['node'])}")
    check(got == acc, f"after the memory came back (the node may stop publishing): Access stays {got}")
    if args.sysfs:
        rows = {r["name"]: r for r in json.loads(subprocess.check_output(
            [args.ctl] + ["--json", "pools"], text=True))["pools"]}
    else:
        rows = {r["name"]: r for r in json.loads(subprocess.check_output(
            [args.ctl, "--bus-address", args.addr, "--json", "pools"], text=True))["pools"]}
    c = class_of(acc)
    r = rows[args.pool]
    check([r["read-bw"], r["write-bw"], r["read-lat"], r["write-lat"]] == c[1:],
          f"daxbrokerctl pools {args.pool} shows it: {[r['read-bw'], r['write-bw'], r['read-lat'], r['write-lat']]}")

elif args.step == "check":
    name, p = colored_pool()
    ncol = prop(p["path"], "Pool", "Colors")
    c = prop(p["path"], "Pool", "CacheSize")
    before = json.load(open(args.state))
    after = held()
    for o in sorted(before):
        check(o in after and after[o]["colors"] == before[o]["colors"] and
              sorted(after[o]["ranges"]) == sorted(before[o]["ranges"]),
              f"{o} has the same colours {before[o]['colors']} and ranges: {after.get(o, {}).get('colors')}")
    states = [prop(a[0], "Allocation", "State") for a in allocations() if a[2].startswith("iso-")]
    check(all(s == "active" for s in states), f"every isolated allocation is active: {states}")
    if all(s == "active" for s in states):
        check_disjoint(after, c, ncol)
    rc, out = allocate("iso-c", 2 << 20, {"pool": ("s", name), "cache-isolation": ("b", "true")}, fail=True)
    check(rc != 0 and "no free cache colour" in out, f"the colours are still held: {out.strip()}")

print(f"1..{n}")
sys.exit(1 if bad else 0)
