#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Bad state.json files, made from a good one.

  corrupt-state.py list                 the kinds, one per line
  corrupt-state.py make GOOD.JSON DIR   writes DIR/KIND (the bad file) and
                                        DIR/KIND.expect (text the daemon's
                                        message must contain) for every kind

Every kind is a file the daemon must refuse as a whole: it must name what
is wrong, keep the file aside and act on no device. The edits are
deterministic, so a failure reproduces.
"""
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


def main():
    if sys.argv[1:] == ["list"]:
        print("\n".join(KINDS))
        return 0
    if len(sys.argv) != 4 or sys.argv[1] != "make":
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[2], "rb") as f:
        text = f.read()
    if len(load(text).get("allocations", [])) < 2:
        print("the state needs at least two allocations", file=sys.stderr)
        return 2
    for kind, make in KINDS.items():
        data, expect = make(text, load(text))
        with open(os.path.join(sys.argv[3], kind), "wb") as f:
            f.write(data)
        with open(os.path.join(sys.argv[3], kind + ".expect"), "w") as f:
            f.write(expect + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
