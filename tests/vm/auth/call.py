#!/usr/bin/python3
"""Calls one org.daxbroker.Broker1.Manager method on the system bus and
prints "ok RESULT" or "error NAME: MESSAGE" with the full D-Bus error name,
so a test can tell the bus policy's refusal
(org.freedesktop.DBus.Error.AccessDenied) from the daemon's
(org.daxbroker.Broker1.Error.AccessDenied). Exit status 0 or 1.

Usage: call.py allocate OWNER SIZE [KEY=u:N|KEY=s:TEXT|KEY=b:0|1 ...]
       call.py release|open PATH
       call.py release-owner OWNER
       call.py list-pools | list-allocations
       call.py get PROPERTY
       call.py pool-starts                 every pool's start, as this caller sees it
       call.py pool-foreign                every pool's ForeignSize
       call.py ranges                      PATH:number-of-ranges of every allocation
       call.py get-on PATH IFACE PROPERTY  one property of any object (Get)
       call.py getall-ranges PATH          the Ranges an allocation's GetAll gives
       call.py --serve FIFO                answer requests read from FIFO (below)

--serve: Python and dbus-python take seconds to start in the rig (TCG), and
the test makes some 70 calls. A server started once per user (with that
user's uid, gid and groups) reads one request per line from FIFO: the path
of a reply FIFO, then the arguments above, each ended by \x1f. For each
request it forks a child that opens its own, new bus connection, makes the
one call and writes what a separate call.py would print (stdout and stderr)
into the reply FIFO, so every call is still a fresh client of that user.
"""
import os
import signal
import sys
import traceback

import dbus

NAME = "org.daxbroker.Broker1"
PATH = "/org/daxbroker/Broker1"
IFACE = NAME + ".Manager"
TIMEOUT = 120


def option(arg):
    key, _, typed = arg.partition("=")
    kind, _, value = typed.partition(":")
    conv = {"u": dbus.UInt32, "i": dbus.Int32, "t": dbus.UInt64, "s": dbus.String,
            "b": lambda v, **kw: dbus.Boolean(v in ("1", "true"), **kw)}[kind]
    return key, conv(value, variant_level=1)


def main(argv):
    obj = dbus.SystemBus().get_object(NAME, PATH, introspect=False)
    mgr = dbus.Interface(obj, IFACE)
    verb, args = argv[1], argv[2:]
    if verb == "allocate":
        opts = dbus.Dictionary(dict(option(a) for a in args[2:]), signature="sv")
        path, fd = mgr.Allocate(args[0], dbus.UInt64(int(args[1])), opts, timeout=TIMEOUT)
        fd.take()
        return str(path)
    if verb == "release":
        mgr.Release(dbus.ObjectPath(args[0]), timeout=TIMEOUT)
        return ""
    if verb == "open":
        mgr.Open(dbus.ObjectPath(args[0]), timeout=TIMEOUT).take()
        return "fd"
    if verb == "release-owner":
        return str(int(mgr.ReleaseOwner(args[0], timeout=TIMEOUT)))
    if verb == "list-pools":
        return str(len(mgr.ListPools(timeout=TIMEOUT)))
    if verb == "list-allocations":
        return " ".join(f"{a[0]}:{int(a[3])}" for a in mgr.ListAllocations(timeout=TIMEOUT))
    if verb == "pool-starts":
        return " ".join(str(int(p[4])) for p in mgr.ListPools(timeout=TIMEOUT))
    if verb == "pool-foreign":
        return " ".join(str(int(p[12])) for p in mgr.ListPools(timeout=TIMEOUT))
    if verb == "ranges":
        return " ".join(f"{a[0]}:{len(a[11])}" for a in mgr.ListAllocations(timeout=TIMEOUT))
    if verb == "get-on":
        o = dbus.SystemBus().get_object(NAME, args[0], introspect=False)
        v = o.Get(args[1], args[2], dbus_interface=dbus.PROPERTIES_IFACE, timeout=TIMEOUT)
        if isinstance(v, dbus.Array):
            return " ".join(f"{int(r[0])}+{int(r[1])}" for r in v) or "[]"
        return str(v)
    if verb == "getall-ranges":
        o = dbus.SystemBus().get_object(NAME, args[0], introspect=False)
        props = o.GetAll(NAME + ".Allocation", dbus_interface=dbus.PROPERTIES_IFACE, timeout=TIMEOUT)
        return " ".join(f"{int(r[0])}+{int(r[1])}" for r in props["Ranges"]) or "[]"
    if verb == "get":
        return str(obj.Get(IFACE, args[0], dbus_interface=dbus.PROPERTIES_IFACE, timeout=TIMEOUT))
    raise SystemExit(f"unknown verb {verb}")


def call(argv):
    try:
        print("ok", main(argv))
    except dbus.exceptions.DBusException as e:
        print(f"error {e.get_dbus_name()}: {e.get_dbus_message()}")
        return 1
    return 0


def serve(fifo):
    # Children are not waited for: their answers go to the reply FIFOs.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    # Opened read-write, the FIFO never reads end-of-file between requests.
    requests = os.fdopen(os.open(fifo, os.O_RDWR), "r")
    print("serving", flush=True)
    for line in requests:
        fields = line.rstrip("\n").split("\x1f")[:-1]
        if not fields:
            continue
        if os.fork() != 0:
            continue
        status = 1
        try:
            requests.close()
            out = os.open(fields[0], os.O_WRONLY)
            os.dup2(out, 1)
            os.dup2(out, 2)
            os.close(out)
            status = call(["call.py"] + fields[1:])
        except BaseException:  # what an uncaught exception would print
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve(sys.argv[2])
    sys.exit(call(sys.argv))
