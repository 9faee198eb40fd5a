#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Checks that a running daxbrokerd exports exactly the D-Bus contract.

Introspects the Manager object, the first pool object and an allocation
object (the one given with --allocation-path, else the first one found, else
the Allocation interface is skipped) and compares, per interface of the
contract XML, the methods (argument names, types and directions), the
signals (argument names and types) and the properties (type and access).
Annotations and org.freedesktop.* interfaces are ignored. Every difference is
printed, as a TAP comment so that a TAP harness can wrap the script; the exit
status is 0 when there are none, 1 otherwise, and 77 (skip) when busctl is not
available.
"""

import argparse
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

BUS_NAME = "org.daxbroker.Broker1"
MANAGER_PATH = "/org/daxbroker/Broker1"
POOL_PARENT = MANAGER_PATH + "/pool"
ALLOCATION_PARENT = MANAGER_PATH + "/allocation"

# Which object carries each interface of the contract.
INTERFACE_OBJECTS = {
    "org.daxbroker.Broker1.Manager": "manager",
    "org.daxbroker.Broker1.Pool": "pool",
    "org.daxbroker.Broker1.Allocation": "allocation",
}

EXIT_SKIP = 77


class CheckError(Exception):
    """The check could not be made (as opposed to finding a difference)."""


def busctl(bus_args, *args):
    cmd = ["busctl", "--no-pager", *bus_args, *args]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise CheckError(f"{' '.join(cmd)} failed: {result.stderr.strip()}")
    return result.stdout


def busctl_introspect(bus_args, path):
    try:
        return ET.fromstring(busctl(bus_args, "introspect", "--xml-interface", BUS_NAME, path))
    except ET.ParseError as e:
        raise CheckError(f"introspection of {path} is not valid XML: {e}") from e


def first_child(objects, parent):
    """Path of the first object directly below parent, or None."""
    children = sorted(
        o for o in objects if o.startswith(parent + "/") and "/" not in o[len(parent) + 1 :]
    )
    return children[0] if children else None


def describe_interface(iface):
    """The comparable shape of an <interface> element; annotations left out."""
    methods = {}
    for m in iface.findall("method"):
        methods[m.get("name")] = tuple(
            (a.get("direction", "in"), a.get("type"), a.get("name")) for a in m.findall("arg")
        )
    signals = {}
    for s in iface.findall("signal"):
        signals[s.get("name")] = tuple((a.get("type"), a.get("name")) for a in s.findall("arg"))
    properties = {}
    for p in iface.findall("property"):
        properties[p.get("name")] = (p.get("type"), p.get("access"))
    return {"method": methods, "signal": signals, "property": properties}


def format_member(kind, shape):
    if kind == "method":
        return "(" + ", ".join(f"{d} {t} {n}" for d, t, n in shape) + ")"
    if kind == "signal":
        return "(" + ", ".join(f"{t} {n}" for t, n in shape) + ")"
    return f"type {shape[0]}, access {shape[1]}"


def compare_interface(name, contract, exported):
    differences = []
    for kind in ("method", "signal", "property"):
        want, have = contract[kind], exported[kind]
        for member in sorted(want.keys() - have.keys()):
            differences.append(f"{name}: {kind} {member} is in the contract but not exported")
        for member in sorted(have.keys() - want.keys()):
            differences.append(f"{name}: {kind} {member} is exported but not in the contract")
        for member in sorted(want.keys() & have.keys()):
            if want[member] != have[member]:
                differences.append(
                    f"{name}: {kind} {member}: exported {format_member(kind, have[member])}, "
                    f"contract {format_member(kind, want[member])}"
                )
    return differences


def own_interfaces(node):
    """The non-org.freedesktop interfaces of an introspected object."""
    return {
        i.get("name"): i
        for i in node.findall("interface")
        if not i.get("name", "").startswith("org.freedesktop.")
    }


def check(args):
    bus_args = [f"--address={args.bus_address}"] if args.bus_address else ["--system"]
    contract = {i.get("name"): i for i in ET.parse(args.xml).getroot().findall("interface")}
    differences = []

    objects = busctl(bus_args, "tree", "--list", BUS_NAME).split()
    paths = {"manager": MANAGER_PATH, "pool": first_child(objects, POOL_PARENT)}
    if not paths["pool"]:
        raise CheckError(f"no pool object under {POOL_PARENT}; start the daemon with at least one pool")
    paths["allocation"] = args.allocation_path or first_child(objects, ALLOCATION_PARENT)

    exported = {}
    for role, path in paths.items():
        if path:
            exported[role] = own_interfaces(busctl_introspect(bus_args, path))

    for name in sorted(contract.keys() - INTERFACE_OBJECTS.keys()):
        differences.append(f"{name}: in the contract, but this script does not know which object carries it")

    for name, role in INTERFACE_OBJECTS.items():
        if name not in contract:
            differences.append(f"{name}: missing from the contract {args.xml}")
            continue
        if role not in exported:
            print(f"# SKIP {name}: no object under {ALLOCATION_PARENT} to check")
            continue
        if name not in exported[role]:
            differences.append(f"{name}: not exported on {paths[role]}")
            continue
        print(f"# checking {name} on {paths[role]}")
        differences += compare_interface(
            name, describe_interface(contract[name]), describe_interface(exported[role][name])
        )

    for role, interfaces in exported.items():
        for name in sorted(interfaces):
            if INTERFACE_OBJECTS.get(name) != role:
                differences.append(f"{name}: exported on {paths[role]} but not part of its contract")

    return differences


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--xml", required=True, help="the contract, dbus/org.daxbroker.Broker1.xml")
    parser.add_argument("--bus-address", help="bus of the daemon (default: the system bus)")
    parser.add_argument(
        "--allocation-path",
        help="allocation object to check (default: the first one found, if any)",
    )
    args = parser.parse_args()

    if not shutil.which("busctl"):
        print("SKIP: busctl not found", file=sys.stderr)
        return EXIT_SKIP

    try:
        differences = check(args)
    except (CheckError, OSError, ET.ParseError) as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1

    for d in differences:
        print(f"# DIFF {d}")
    if differences:
        print(f"# {len(differences)} difference(s) between {args.xml} and the exported API")
        return 1
    print("# exported API matches the contract")
    return 0


if __name__ == "__main__":
    sys.exit(main())
