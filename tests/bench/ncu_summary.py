#!/usr/bin/env python3
"""Sums `ncu --csv --page raw --metrics gpu__time_duration.sum` output per kernel name.

    python3 tests/bench/ncu_summary.py NCU.csv [TOP]

Prints the kernels by total GPU time: calls, total ms, share, mean us; names shortened to their
first 90 characters (template arguments kept). Used by scripts/gpu-check.sh's profile stage.
"""
import csv
import sys


def main():
    path = sys.argv[1]
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    with open(path, newline="", errors="replace") as f:
        lines = [line for line in f if line.startswith('"')]
    rows = list(csv.reader(lines))
    if not rows:
        print(f"{path}: no ncu rows")
        return 1
    header = rows[0]
    try:
        name_col = header.index("Kernel Name")
        time_col = header.index("gpu__time_duration.sum")
    except ValueError:
        print(f"{path}: columns not found in {header[:12]}")
        return 1
    unit = rows[1][time_col] if len(rows) > 1 else ""
    scale = {"nsecond": 1e-6, "usecond": 1e-3, "msecond": 1.0, "second": 1e3}.get(unit, None)
    data = rows[2:] if scale is not None else rows[1:]
    scale = scale or 1e-6
    totals = {}
    for row in data:
        if len(row) <= max(name_col, time_col):
            continue
        try:
            ms = float(row[time_col].replace(",", "")) * scale
        except ValueError:
            continue
        name = row[name_col][:90]
        calls, total = totals.get(name, (0, 0.0))
        totals[name] = (calls + 1, total + ms)
    grand = sum(t for _, t in totals.values())
    print(f"{len(data)} kernel launches, {grand:.2f} ms of GPU time in all")
    print(f"{'total ms':>10} {'share':>6} {'calls':>6} {'mean us':>9}  kernel")
    for name, (calls, total) in sorted(totals.items(), key=lambda kv: -kv[1][1])[:top]:
        print(f"{total:10.3f} {100 * total / grand:5.1f}% {calls:6d} {1e3 * total / calls:9.1f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
