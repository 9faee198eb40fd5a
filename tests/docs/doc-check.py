#!/usr/bin/env python3
"""Every D-Bus member (method, property, signal of every interface in the
contract XML) appears in org.daxbroker.Broker1(5), and every verb and option
that `daxbrokerctl --help` lists appears in daxbrokerctl(1).
Usage: doc-check.py SOURCE_ROOT DAXBROKERCTL"""
import re, subprocess, sys
import xml.etree.ElementTree as ET

src, ctl = sys.argv[1], sys.argv[2]
bad = 0
n = 0

def check(cond, what):
    global bad, n
    n += 1
    print(("ok" if cond else "not ok") + f" {n} - {what}")
    if not cond:
        bad = 1

api = open(f"{src}/man/org.daxbroker.Broker1.5.scd").read()
for iface in ET.parse(f"{src}/dbus/org.daxbroker.Broker1.xml").getroot().iter("interface"):
    check(iface.get("name") in api, f"interface {iface.get('name')} in org.daxbroker.Broker1(5)")
    for kind in ("method", "property", "signal"):
        for m in iface.iter(kind):
            name = m.get("name")
            check(re.search(r"\b" + re.escape(name) + r"\b", api) is not None,
                  f"{kind} {iface.get('name')}.{name} in org.daxbroker.Broker1(5)")

man = open(f"{src}/man/daxbrokerctl.1.scd").read()
help_text = subprocess.run([ctl, "--help"], capture_output=True, text=True, check=True).stdout
verbs = re.findall(r"^  ([a-z][a-z-]+)\b", help_text.split("Verbs:", 1)[1].split("\n\n", 1)[0], re.M)
options = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*|-[a-zA-Z])\b", help_text.split("Verbs:", 1)[1]))
if not verbs or not options:
    sys.exit("could not find verbs and options in daxbrokerctl --help")
for v in verbs:
    check(f"*{v}*" in man, f"verb {v} in daxbrokerctl(1)")
for o in sorted(options):
    check(f"*{o}*" in man, f"option {o} in daxbrokerctl(1)")
print(f"1..{n}")
sys.exit(bad)
