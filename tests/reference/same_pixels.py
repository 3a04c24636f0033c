"""Compares two PNG files' pixels (PNG metadata, which names the model and settings, is ignored).

Usage: same_pixels.py A.png B.png [--max-levels N] [--min-exact F] [--label TEXT]
Prints "test: LABEL: max |diff| D level(s), E% exact" and exits 0 when the shapes agree, no value
differs by more than N levels (default 0) and at least the fraction F of values is exact (default
1.0), 1 otherwise.
"""

import argparse
import sys

import numpy as np
from PIL import Image


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--max-levels", type=int, default=0)
    parser.add_argument("--min-exact", type=float, default=1.0)
    parser.add_argument("--label", default=None)
    args = parser.parse_args()
    a, b = (np.asarray(Image.open(p)).astype(np.int16) for p in (args.a, args.b))
    label = args.label or f"{args.a} against {args.b}"
    if a.shape != b.shape:
        print(f"test: {label}: shapes {a.shape} and {b.shape} differ")
        sys.exit(1)
    diff = np.abs(a - b)
    exact = float((diff == 0).mean())
    print(f"test: {label}: max |diff| {int(diff.max())} level(s), {100 * exact:.3f}% exact")
    sys.exit(0 if diff.max() <= args.max_levels and exact >= args.min_exact else 1)


if __name__ == "__main__":
    main()
