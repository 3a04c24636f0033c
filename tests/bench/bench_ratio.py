#!/usr/bin/env python3
"""Side-by-side table of `sdbatch bench` and tests/bench/diffusers_bench.py outputs.

  python3 tests/bench/bench_ratio.py sdbatch-b1.log sdbatch-b8.log diffusers.log

Each log is recognised by its first line ("sdbatch bench:" or "diffusers bench:"); a log may hold
several "device ..." blocks (diffusers_bench.py --batch 1,8). Stages are matched by name, image
size and batch; the ratio is sdbatch's time over diffusers' time (best ms/call for the stages,
seconds per run for the pipeline): above 1, sdbatch is slower. Exits 1 when no stage matched.
"""

import re
import sys

DEVICE = re.compile(r"^\s+device .*, (\d+)x(\d+), batch (\d+),")
STAGE = re.compile(r"^\s+(text encoder|unet|vae decode)\s+batch (\d+)\s+([\d.]+) ms/call "
                   r"\(best ([\d.]+)\)\s+([\d.]+) GFLOP/call")
PIPELINE = re.compile(r"^\s+pipeline\s+(\d+) image\(s\), (\d+) steps: ([\d.]+) s, "
                      r"([\d.]+) images/s")


def parse(path):
    """Returns (tool, {(stage, size, batch): (ms, gflop)})."""
    tool, size, results = None, None, {}
    with open(path, errors="replace") as f:
        for line in f:
            if tool is None and line.startswith(("sdbatch bench:", "diffusers bench:")):
                tool = line.split()[0]
            m = DEVICE.match(line)
            if m:
                size = f"{m.group(1)}x{m.group(2)}"
                continue
            m = STAGE.match(line)
            if m and size:
                results[(m.group(1), size, int(m.group(2)))] = (float(m.group(4)),
                                                                float(m.group(5)))
                continue
            m = PIPELINE.match(line)
            if m and size:
                key = (f"pipeline {m.group(2)} steps", size, int(m.group(1)))
                results[key] = (1e3 * float(m.group(3)), None)
    return tool, results


def main(paths):
    tables = {"sdbatch": {}, "diffusers": {}}
    for path in paths:
        try:
            tool, results = parse(path)
        except OSError as e:
            print(f"bench_ratio: {path}: {e.strerror}")
            continue
        if tool is None:
            print(f"bench_ratio: {path}: no 'sdbatch bench:' or 'diffusers bench:' line "
                  "(run failed or timed out?)")
            continue
        tables[tool].update(results)
    print(f"{'stage':<20} {'size':>9} {'batch':>5} {'sdbatch ms':>11} {'diffusers ms':>13} "
          f"{'sdbatch/diffusers':>18}  GFLOP sdbatch/diffusers")
    matched = 0
    for key in sorted(set(tables["sdbatch"]) | set(tables["diffusers"])):
        ours, theirs = tables["sdbatch"].get(key), tables["diffusers"].get(key)
        ms = [f"{r[0]:.2f}" if r else "-" for r in (ours, theirs)]
        ratio = f"{ours[0] / theirs[0]:.2f}" if ours and theirs and theirs[0] > 0 else "-"
        flops = ""
        if ours and theirs and ours[1] is not None:
            flops = f"{ours[1]:.1f} / {theirs[1]:.1f}"
        matched += ratio != "-"
        print(f"{key[0]:<20} {key[1]:>9} {key[2]:>5} {ms[0]:>11} {ms[1]:>13} {ratio:>18}  {flops}")
    return 0 if matched else 1


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1:]))
