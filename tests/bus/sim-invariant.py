#!/usr/bin/env python3
# After a crash and restart on the sim backend: checks the broker's view
# against the sim's kernel state (sim-kernel.json) and the state directory.
#   - every recorded active allocation has exactly one device, bound to
#     device_dax, with exactly its ranges; a restoring/failed one has none
#   - no device is left that nobody records (orphan), no zero-size device
#     other than daxR.0 (seed)
#   - every memory block of a kmem device is online: nothing is left
#     offline (host memory lost to everyone) by an operation cut short
#   - every byte of every pool is exactly one of allocated, free, host,
#     foreign: the sums equal the pool size, and the kernel's devices
#     cover exactly allocated + host + foreign + warm (warm devices are
#     free memory held by a device; their records are not listed)
# Usage: sim-invariant.py SIM_JSON STATE_DIR BUS_ADDRESS
import glob
import json
import os
import subprocess
import sys
import time

sim_path, state_path, address = sys.argv[1:4]


def warm_size(path):
    out = subprocess.run(['busctl', '--address=' + address, 'get-property', 'org.daxbroker.Broker1', path,
                          'org.daxbroker.Broker1.Pool', 'WarmSize'], check=True, capture_output=True, text=True).stdout
    return int(out.split()[1])


def check():
    sim = json.load(open(sim_path))
    problems = []
    state = {'allocations': [], 'host': []}
    for f in sorted(glob.glob(os.path.join(state_path, 'allocation-*.json'))):
        state['allocations'].append(json.load(open(f)))
    for f in sorted(glob.glob(os.path.join(state_path, 'host-*.json'))):
        state['host'].append(json.load(open(f)))


    def busctl(*args):
        out = subprocess.run(['busctl', '--address=' + address, '--json=short', 'call', 'org.daxbroker.Broker1',
                              '/org/daxbroker/Broker1', 'org.daxbroker.Broker1.Manager'] + list(args),
                             check=True, capture_output=True, text=True).stdout
        return json.loads(out)['data'][0]


    pools = busctl('ListPools')
    allocs = busctl('ListAllocations')
    listed = {a[1]: a for a in allocs}

    devices = {}
    for r in sim['regions']:
        for d in r['devices']:
            name = 'dax%d.%d' % (r['id'], d['instance'])
            ranges = [(x['start'], x['size']) for x in d.get('ranges', [])]
            devices[name] = (r['id'], d['driver'], ranges)

    BLOCK = 128 << 20  # the sim's memory block size
    online_blocks = {r['id']: {b['start'] for b in r.get('blocks', []) if b.get('online')} for r in sim['regions']}

    recorded_devices = set()
    for rec in state.get('allocations', []):
        rid = rec['id']
        if rid not in listed and not rec.get('warm'):
            problems.append('allocation %s is in the state directory but not listed' % rid)
        dev = rec.get('device')
        want = [tuple(x) if isinstance(x, list) else (x['start'], x['size']) for x in rec.get('ranges', [])]
        if rec.get('state', 'active') != 'active':
            problems.append('allocation %s is still %s after start-up' % (rid, rec.get('state')))
            continue
        if not dev:
            continue  # restoring or failed: listed without a device
        recorded_devices.add(dev)
        if dev not in devices:
            problems.append('allocation %s: device %s does not exist' % (rid, dev))
            continue
        _, drv, ranges = devices[dev]
        if drv != 'device_dax':
            problems.append('allocation %s: device %s is bound to %s' % (rid, dev, drv))
        if sorted(ranges) != sorted(want):
            problems.append('allocation %s: device %s has ranges %s, recorded %s' % (rid, dev, ranges, want))

    host_ranges = set()
    for h in state.get('host', []):
        host_ranges.add((h[0], h[1], h[2]) if isinstance(h, list) else (h['region'], h['start'], h['size']))

    for name, (region, drv, ranges) in devices.items():
        size = sum(s for _, s in ranges)
        instance0 = name.endswith('.0')
        if size == 0:
            if not instance0:
                problems.append('seed device %s (size 0) left behind' % name)
            continue
        if name in recorded_devices:
            continue
        if drv == 'kmem':
            # host memory (a recorded chunk or adopted host capacity): whole
            for start, sz in ranges:
                for b in range(start, start + sz, BLOCK):
                    if b not in online_blocks.get(region, set()):
                        problems.append('kmem device %s: memory block at %#x is offline' % (name, b))
                        break
            continue
        problems.append('orphan device %s (%s, %d MiB) belongs to no allocation' % (name, drv, size >> 20))

    for p in pools:
        name, size = p[1], p[5]
        free, allocated, host, dirty, foreign = p[8], p[9], p[10], p[11], p[12]
        warm = warm_size(p[0])
        if allocated + free + host + foreign != size:
            problems.append('pool %s: allocated %d + free %d + host %d + foreign %d != size %d MiB' %
                            (name, allocated >> 20, free >> 20, host >> 20, foreign >> 20, size >> 20))
        region = p[2]
        held = sum(sum(s for _, s in rg) for n, (r, drv, rg) in devices.items() if r == region)
        if held + free != size + warm:
            problems.append('pool %s: devices in the kernel hold %d MiB, the broker says %d MiB free (%d MiB of it '
                            'warm devices) of %d MiB' % (name, held >> 20, free >> 20, warm >> 20, size >> 20))


    return problems


# Warm devices are made in the background after start-up: the books and
# the kernel may differ by one being made. Look again a little later.
for attempt in range(100):
    try:
        problems = check()
    except (OSError, ValueError, subprocess.CalledProcessError) as e:
        problems = ['cannot read the state: %s' % e]
    if not problems:
        break
    time.sleep(0.1)
for p in problems:
    print('# INCONSISTENT: ' + p)
sys.exit(1 if problems else 0)
