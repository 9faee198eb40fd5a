#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Bad state files, made from a good state directory.

  corrupt-state.py list                      the kinds, one per line
  corrupt-state.py make GOOD_STATE_DIR OUT   writes, for every kind,
      OUT/KIND         the bad file
      OUT/KIND.target  where it goes: "state.json" (an earlier release's
                       single file, next to the state directory: the
                       upgrade refuses it as a whole) or a file name in the
                       state directory (that record alone is refused)
      OUT/KIND.expect  text the daemon's message must contain
      OUT/KIND.aside   how many files the daemon must set aside
      OUT/KIND.allocations  how many allocations it must still list

A bad state.json is built from the good directory's records (version 2).
Every kind is refused: the daemon must name what is wrong, keep the bad
file(s) aside byte for byte and act on no device. The edits are
deterministic, so a failure reproduces.
"""
import glob
import json
import os
import sys

GiB = 1 << 30


def load(text):
    return json.loads(text)


def dump(doc):
    return json.dumps(doc, indent=1).encode()


def first(doc):
    return doc["allocations"][0]


def k_truncated(text, doc):
    # A write cut short (a power cut without fsync): the first half.
    return text[: len(text) // 2], "Parse error"


def k_empty(text, doc):
    # XFS after a power cut between rename and flush: zero length.
    return b"", "top level must be an object"


def k_garbage(text, doc):
    data = bytes((i * 131 + 17) % 256 for i in range(4096))
    return data, "state.json: "


def k_not_json_object(text, doc):
    return b'["version", 1]\n', "top level must be an object"


def k_wrong_version(text, doc):
    doc["version"] = 99
    return dump(doc), "version: unsupported version 99"


def k_version_string(text, doc):
    doc["version"] = "1"
    return dump(doc), "version: must be an integer"


def k_overlap(text, doc):
    # Two allocations claiming the same memory.
    a, b = doc["allocations"][0], doc["allocations"][1]
    b["region"] = a["region"]
    b["device"] = a["device"]
    b["ranges"] = [dict(a["ranges"][0])]
    return dump(doc), "overlaps ranges[0] of allocation 0"


def k_overlap_within(text, doc):
    a = first(doc)
    r = a["ranges"][0]
    a["ranges"] = [dict(r), dict(r)]
    return dump(doc), "overlaps ranges[0]"


def k_unaligned_range(text, doc):
    first(doc)["ranges"][0]["start"] += 4096
    return dump(doc), "ranges[0].start: must be a multiple of"


def k_zero_size(text, doc):
    first(doc)["ranges"][0]["size"] = 0
    return dump(doc), "ranges[0].size: must not be 0"


def k_negative_size(text, doc):
    first(doc)["ranges"][0]["size"] = -2 * 1024 * 1024
    return dump(doc), "ranges[0].size: must be between 0 and"


def k_huge_size(text, doc):
    # A multiple of every granule, far beyond any region; in the allocation
    # that lies highest, so that it overlaps no other.
    top = max(doc["allocations"], key=lambda a: a["ranges"][-1]["start"])
    top["ranges"][-1]["size"] = 1 << 62
    return dump(doc), "lies outside region"


def k_too_big_for_int64(text, doc):
    text = dump(doc).replace(b'"created_usec": ', b'"created_usec": 99999999999999999999', 1)
    return text, "created_usec: must be between 0 and"


def k_out_of_region(text, doc):
    a = first(doc)
    a["ranges"][0]["start"] += 64 * GiB
    return dump(doc), "lies outside region"


def k_below_region(text, doc):
    first(doc)["ranges"][0]["start"] = 0
    return dump(doc), "lies outside region"


def k_dirty_out_of_region(text, doc):
    a = first(doc)
    doc["dirty"] = [{"region": a["region"], "start": a["ranges"][0]["start"] + 64 * GiB, "size": 2 << 20}]
    return dump(doc), "dirty 0: "


def k_host_over_allocation(text, doc):
    a = first(doc)
    doc["host"] = [{"region": a["region"], "start": a["ranges"][0]["start"], "size": a["ranges"][0]["size"]}]
    return dump(doc), "host 0: overlaps another host chunk or an allocation"


def k_unknown_key(text, doc):
    first(doc)["colour"] = "blue"
    return dump(doc), "colour: unknown member"


def k_unknown_top_key(text, doc):
    doc["comment"] = "edited by hand"
    return dump(doc), "comment: unknown member"


def k_missing_key(text, doc):
    del first(doc)["owner"]
    return dump(doc), "owner: is missing"


def k_duplicate_id(text, doc):
    doc["allocations"][1]["id"] = first(doc)["id"]
    return dump(doc), "id: duplicates allocation 0"


def k_bad_state(text, doc):
    first(doc)["state"] = "zombie"
    return dump(doc), "state: must be"


def k_bad_device(text, doc):
    a = first(doc)
    a["device"] = "dax%d.1" % (a["region"] + 7)
    return dump(doc), "device: must be a device name daxR.N of region"


def k_bad_align(text, doc):
    first(doc)["align"] = 3 << 20
    return dump(doc), "align: must be 4096, 2097152 or 1073741824"


def k_bad_owner(text, doc):
    # Invalid UTF-8 in a string: json-glib refuses it while parsing.
    data = dump(doc)
    owner = first(doc)["owner"].encode()
    return data.replace(b'"' + owner + b'"', b'"\xff\xfe' + owner + b'"', 1), "state.json: "


def k_deep(text, doc):
    return b'{"version": 1, "allocations": ' + b"[" * 100 + b"]" * 100 + b"}", "nested deeper than"


KINDS = {name[2:].replace("_", "-"): f for name, f in sorted(globals().items()) if name.startswith("k_")}


def legacy_text(state_dir):
    """The directory as the state.json of an earlier release."""
    doc = {"version": 2, "allocations": [], "owners": {}}
    for path in sorted(glob.glob(os.path.join(state_dir, "allocation-*.json"))):
        doc["allocations"].append(json.load(open(path)))
    for path in sorted(glob.glob(os.path.join(state_dir, "owner[-=]*.json"))):
        o = json.load(open(path))
        doc["owners"][o["owner"]] = o["uid"]
    meta = json.load(open(os.path.join(state_dir, "meta.json")))
    if "boot_id" in meta:
        doc["boot_id"] = meta["boot_id"]
    for kind in ("dirty", "host"):
        files = sorted(glob.glob(os.path.join(state_dir, kind + "-*.json")))
        if files:
            doc[kind] = [json.load(open(f)) for f in files]
    return dump(doc)


# Record kinds: (file name, bad content, expect, files set aside,
# allocations lost), from the records of the good directory.


def allocs(state_dir):
    return [(os.path.basename(p), json.load(open(p)))
            for p in sorted(glob.glob(os.path.join(state_dir, "allocation-*.json")))]


def r_truncated(d):
    name, _ = allocs(d)[0]
    text = open(os.path.join(d, name), "rb").read()
    return name, text[: len(text) // 2], "Parse error", 1, 1


def r_empty(d):
    name, _ = allocs(d)[0]
    return name, b"", "top level must be an object", 1, 1


def r_garbage(d):
    name, _ = allocs(d)[0]
    return name, bytes((i * 131 + 17) % 256 for i in range(4096)), name + ": ", 1, 1


def rec(doc):
    return json.dumps(doc, separators=(",", ":")).encode() + b"\n"


def r_unknown_key(d):
    name, a = allocs(d)[0]
    a["colour"] = "blue"
    return name, rec(a), "colour: unknown member", 1, 1


def r_missing_key(d):
    name, a = allocs(d)[0]
    del a["owner"]
    return name, rec(a), "owner: is missing", 1, 1


def r_out_of_region(d):
    name, a = allocs(d)[0]
    a["ranges"][0]["start"] += 64 * GiB
    return name, rec(a), "lies outside region", 1, 1


def r_wrong_file(d):
    name, a = allocs(d)[0]
    a["id"] = "not-" + a["id"]
    return name, rec(a), "holds allocation 'not-", 1, 1


def r_overlap(d):
    # Two allocations claiming the same memory: neither is believed.
    (_, a), (name, b) = allocs(d)[:2]
    b["region"], b["device"], b["ranges"] = a["region"], a["device"], [dict(a["ranges"][0])]
    return name, rec(b), "overlaps the memory of", 2, 2


def r_host_over_allocation(d):
    _, a = allocs(d)[0]
    r = a["ranges"][0]
    name = "host-%d-%#x.json" % (a["region"], r["start"])
    return name, rec({"region": a["region"], "start": r["start"], "size": r["size"]}), \
        "overlaps the memory of", 2, 1


def r_meta_version(d):
    return "meta.json", b'{"version": 99}\n', "version: unsupported version 99", 1, 0


def r_owner_uid(d):
    name = sorted(os.path.basename(p) for p in glob.glob(os.path.join(d, "owner[-=]*.json")))[0]
    o = json.load(open(os.path.join(d, name)))
    o["uid"] = -1
    return name, rec(o), "uid: must be an integer", 1, 0


def r_stray_file(d):
    return "notes.txt", b"edited by hand\n", "not a file of the state directory", 1, 0


RECORD_KINDS = {"record-" + name[2:].replace("_", "-"): f
                for name, f in sorted(globals().items()) if name.startswith("r_")}


def write(out, kind, data, target, expect, aside, allocations):
    with open(os.path.join(out, kind), "wb") as f:
        f.write(data)
    for ext, value in (("target", target), ("expect", expect), ("aside", aside), ("allocations", allocations)):
        with open(os.path.join(out, kind + "." + ext), "w") as f:
            f.write("%s\n" % value)


def main():
    if sys.argv[1:] == ["list"]:
        print("\n".join(list(KINDS) + list(RECORD_KINDS)))
        return 0
    if len(sys.argv) != 4 or sys.argv[1] != "make":
        print(__doc__, file=sys.stderr)
        return 2
    state_dir, out = sys.argv[2], sys.argv[3]
    text = legacy_text(state_dir)
    n = len(load(text)["allocations"])
    if n < 2:
        print("the state needs at least two allocations", file=sys.stderr)
        return 2
    for kind, make in KINDS.items():
        data, expect = make(text, load(text))
        write(out, kind, data, "state.json", expect, 1, 0)
    for kind, make in RECORD_KINDS.items():
        name, data, expect, aside, lost = make(state_dir)
        write(out, kind, data, name, expect, aside, n - lost)
    return 0


if __name__ == "__main__":
    sys.exit(main())
