#!/usr/bin/env python3
"""`meson install` into a DESTDIR puts exactly the files of the table
"Installed files" in docs/architecture.md where the table says.
Usage: install-check.py BUILD_ROOT SOURCE_ROOT"""
import json, os, re, subprocess, sys, tempfile

build, src = sys.argv[1], sys.argv[2]
opts = {o["name"]: o["value"] for o in json.loads(subprocess.check_output(
    ["meson", "introspect", "--buildoptions", build]))}
prefix = opts["prefix"]
unitdir = opts.get("systemdsystemunitdir") or ""
sysconfdir = os.path.join(prefix, opts["sysconfdir"])

doc = open(os.path.join(src, "docs", "architecture.md")).read()
section = doc.split("## Installed files", 1)[1].split("\n## ", 1)[0]
want = set()
for row in re.findall(r"^\| `(/[^`]+)` \|", section, re.M):
    if row.startswith("/usr/lib/systemd/system/") and unitdir:
        row = unitdir + row[len("/usr/lib/systemd/system"):]
    elif row.startswith("/etc/"):
        row = sysconfdir + row[len("/etc"):]
    elif row.startswith("/usr/"):
        row = prefix + row[len("/usr"):]
    want.add(row)
if not want:
    sys.exit("no rows in the table 'Installed files' of docs/architecture.md")

with tempfile.TemporaryDirectory() as dest:
    subprocess.run(["meson", "install", "-C", build, "--destdir", dest, "--no-rebuild",
                    "--quiet"], check=True, stdout=subprocess.DEVNULL)
    got = set()
    for d, _, files in os.walk(dest):
        for f in files:
            got.add("/" + os.path.relpath(os.path.join(d, f), dest))

bad = 0
for f in sorted(got - want):
    print(f"installed but not in docs/architecture.md: {f}")
    bad = 1
for f in sorted(want - got):
    print(f"in docs/architecture.md but not installed: {f}")
    bad = 1
for f in sorted(got & want):
    print(f"ok {f}")
sys.exit(bad)
