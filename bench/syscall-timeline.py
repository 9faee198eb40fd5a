#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Turns an ftrace of syscall events (bench/guest-bench.sh --trace) into a
timeline: one line per finished syscall with its start (ms after --since),
its duration, the task and the call.

  syscall-timeline.py ftrace-daemon-6.1.txt [--since SECONDS] [--until SECONDS]
                      [--task REGEX] [--min-ms MS]

Find a cycle by the client's sendmsg (task bus-bench), then read which
daemon thread (daxbrokerd: main loop; pool: kernel work) spent the time.
"""

import argparse
import re
import signal

LINE = re.compile(r'^\s*(?P<task>.+?)-(?P<pid>\d+)\s+\[\d+\]\s+\S+\s+(?P<ts>[\d.]+): '
                  r'(?P<name>sys_\w+)(?P<args>\(.*\))?(?: -> (?P<ret>\S+))?\s*$')


def main():
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('trace')
    ap.add_argument('--since', type=float, default=None)
    ap.add_argument('--until', type=float, default=None)
    ap.add_argument('--task', default=None)
    ap.add_argument('--min-ms', type=float, default=0.0)
    a = ap.parse_args()
    task_re = re.compile(a.task) if a.task else None

    entered = {}
    rows = []
    with open(a.trace, errors='replace') as f:
        for line in f:
            m = LINE.match(line)
            if not m:
                continue
            ts = float(m['ts'])
            if m['ret'] is None:
                entered[m['pid']] = (ts, m['name'], m['args'] or '')
                continue
            start = entered.pop(m['pid'], None)
            if not start or start[1] != m['name']:
                continue
            rows.append((start[0], ts - start[0], m['task'].strip(), m['pid'], start[1], start[2], m['ret']))

    rows.sort()
    since = a.since if a.since is not None else (rows[0][0] if rows else 0.0)
    for s, d, task, pid, name, args, ret in rows:
        if s < since or (a.until is not None and s > a.until):
            continue
        if task_re and not task_re.search(task):
            continue
        if d * 1000 < a.min_ms:
            continue
        print(f'{(s - since) * 1000:10.3f} {d * 1000:9.3f} ms  {task}-{pid}  {name}{args} = {ret}')


if __name__ == '__main__':
    main()
