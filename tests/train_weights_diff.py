#!/usr/bin/env python3
"""Largest |a - b| over the float32 tensors of two safetensors files with the same names and
shapes, and the mean |a - b| (tests/test_train_ranks_cmd.sh; no third-party modules). Other
dtypes must be byte-equal. Usage: train_weights_diff.py A.safetensors B.safetensors
-> prints "MAX MEAN NAME-OF-MAX"."""
import array
import json
import struct
import sys


def read(path):
    with open(path, "rb") as f:
        data = f.read()
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size])
    header.pop("__metadata__", None)
    body = data[8 + size :]
    return {k: (v["dtype"], v["shape"], body[v["data_offsets"][0] : v["data_offsets"][1]])
            for k, v in header.items()}


def main():
    a, b = read(sys.argv[1]), read(sys.argv[2])
    if a.keys() != b.keys():
        sys.exit("tensor names differ: %s" % sorted(set(a) ^ set(b)))
    worst, where, total, count = 0.0, "", 0.0, 0
    for name in sorted(a):
        (da, sa, ba), (db, sb, bb) = a[name], b[name]
        if da != db or sa != sb:
            sys.exit("%s: %s %s vs %s %s" % (name, da, sa, db, sb))
        if da != "F32":
            if ba != bb:
                sys.exit("%s (%s) differs" % (name, da))
            continue
        xa, xb = array.array("f"), array.array("f")
        xa.frombytes(ba)
        xb.frombytes(bb)
        for x, y in zip(xa, xb):
            d = abs(x - y)
            total += d
            count += 1
            if not d <= worst:  # NaN counts as a difference
                worst, where = (d if d == d else float("inf")), name
    print("%.3g %.3g %s" % (worst, total / max(count, 1), where))


main()
