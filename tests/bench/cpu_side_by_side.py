#!/usr/bin/env python3
"""sdbatch's CPU backend and diffusers / torch on the CPU, side by side in one run.

The same full-size SD 1.5-shaped random model (written by `sdbatch make-demo-model DIR
--full-size` when DIR does not hold one yet), 512x512: one UNet call at batch 2 (one denoising
step of one image with classifier-free guidance) and one VAE decode of one image. Rounds are
interleaved (sdbatch fp32, [sdbatch bf16,] torch fp32, then again) so that a load change on a
shared machine hits every contender alike; each round is one warm-up call and one timed call per
stage. sdbatch runs as `sdbatch bench --device cpu --no-pipeline --repeat 1` in a subprocess per
round (model load not timed); torch runs here, eager, SDPA attention,
torch.set_num_threads(threads), inference_mode, with the weights loaded as
tests/bench/diffusers_bench.py loads them. The table gives min and median over the rounds and
the ratios torch / sdbatch (above 1: sdbatch is faster), with the CPU model, the kernels sdbatch
chose and the load average before and after.

  python3 tests/bench/cpu_side_by_side.py --sdbatch build/sdbatch --model /tmp/sd15-full
  python3 tests/bench/cpu_side_by_side.py ... --rounds 3 --threads 2 --precisions fp32,bf16
  python3 tests/bench/cpu_side_by_side.py ... --baseline OLD/build/sdbatch --baseline-name openblas

--baseline adds another sdbatch program (an older build, another BLAS) as a contender at fp32,
interleaved with the others in every round.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from diffusers_bench import load_unet, load_vae, pattern  # noqa: E402

import torch  # noqa: E402
import diffusers  # noqa: E402
from diffusers.models.attention_processor import AttnProcessor2_0  # noqa: E402

STAGE = re.compile(r"^\s+(unet|vae decode)\s+batch \d+\s+[\d.]+ ms/call \(best ([\d.]+)\)")


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


def load_average():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def sdbatch_round(args, program, precision):
    """{"unet": ms, "vae": ms} of one timed call each (after a warm-up call), and the kernels
    line; one process (the text encoder runs too, briefly)."""
    cmd = [program, "bench", "--model", args.model, "--device", "cpu", "--threads",
           str(args.threads), "--width", "512", "--height", "512", "--no-pipeline", "--repeat",
           "1"]
    if precision != "fp32":
        cmd += ["--precision", precision]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"cpu_side_by_side: {' '.join(cmd)} failed:\n{run.stdout}{run.stderr}")
    best, kernels = {}, ""
    for line in run.stdout.splitlines():
        m = STAGE.match(line)
        if m:
            best["unet" if m.group(1) == "unet" else "vae"] = float(m.group(2))
        if line.strip().startswith("kernels:"):
            kernels = line.strip()[len("kernels:"):].strip()
    if len(best) != 2:
        sys.exit(f"cpu_side_by_side: no timings in the output of {' '.join(cmd)}:\n{run.stdout}")
    return best, kernels


def torch_call_ms(fn):
    """One warm-up call, then one timed call (ms)."""
    fn()
    start = time.perf_counter()
    fn()
    return 1e3 * (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sdbatch", default="build/sdbatch", help="the sdbatch program")
    parser.add_argument("--baseline", help="another sdbatch program to compare (fp32)")
    parser.add_argument("--baseline-name", default="baseline",
                        help="its name in the table (default baseline)")
    parser.add_argument("--model", default="/tmp/sdbatch-demo-full",
                        help="full-size demo model folder (made when absent)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2)")
    parser.add_argument("--threads", type=int, default=2, help="threads for both (default 2)")
    parser.add_argument("--precisions", default="fp32",
                        help="sdbatch precisions, comma-separated: fp32 and/or bf16 "
                             "(bf16 needs AVX512_BF16 or AMX; default fp32)")
    args = parser.parse_args()
    precisions = args.precisions.split(",")
    for p in precisions:
        if p not in ("fp32", "bf16"):
            sys.exit(f"cpu_side_by_side: --precisions: {p} is not fp32 or bf16")

    if not os.path.exists(os.path.join(args.model, "model_index.json")):
        print(f"writing the full-size demo model to {args.model}", flush=True)
        subprocess.run([args.sdbatch, "make-demo-model", args.model, "--full-size"], check=True)

    torch.set_num_threads(args.threads)
    # the demo model's files hold fp16 weights: computed in fp32 here, as sdbatch's CPU backend
    # holds them
    unet = load_unet(os.path.join(args.model, "unet")).to(torch.float32).eval()
    vae, _ = load_vae(os.path.join(args.model, "vae"))
    vae = vae.to(torch.float32).eval()
    unet.set_attn_processor(AttnProcessor2_0())
    vae.set_attn_processor(AttnProcessor2_0())
    sample = pattern((2, unet.config.in_channels, 64, 64), "cpu", torch.float32)
    context = pattern((2, 77, unet.config.cross_attention_dim), "cpu", torch.float32)
    timestep = torch.tensor(500.0)
    latent = pattern((1, vae.config.latent_channels, 64, 64), "cpu", torch.float32)

    load_before = load_average()
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs; {args.threads} threads each; "
          f"load average {load_before} at the start", flush=True)
    # (name, program, precision) of every sdbatch run
    runs = [(f"sdbatch {p}", args.sdbatch, p) for p in precisions]
    if args.baseline:
        runs.insert(0, (f"{args.baseline_name} fp32", args.baseline, "fp32"))
    contenders = [name for name, _, _ in runs] + ["torch fp32"]
    times = {(c, s): [] for c in contenders for s in ("unet", "vae")}
    kernels = {}
    for r in range(args.rounds):
        for name, program, p in runs:
            best, kernels[name] = sdbatch_round(args, program, p)
            for stage in ("unet", "vae"):
                times[(name, stage)].append(best[stage])
                print(f"  round {r + 1} {stage:<4} {name}: {best[stage] / 1e3:7.2f} s",
                      flush=True)
        for stage in ("unet", "vae"):
            with torch.inference_mode():
                if stage == "unet":
                    ms = torch_call_ms(lambda: unet(sample, timestep, context).sample)
                else:
                    ms = torch_call_ms(lambda: vae.decode(latent).sample)
            times[("torch fp32", stage)].append(ms)
            print(f"  round {r + 1} {stage:<4} torch fp32: {ms / 1e3:7.2f} s", flush=True)

    print()
    print(f"CPU: {cpu_model()}; {args.threads} threads; 512x512; {args.rounds} interleaved rounds; "
          f"load average {load_before} at the start, {load_average()} at the end")
    onednn = re.search(r"MKL-DNN v([\d.]+)", torch.__config__.show())
    print(f"torch {torch.__version__} (oneDNN {onednn.group(1) if onednn else '?'}, "
          f"MKL {'on' if torch.backends.mkl.is_available() else 'off'}), diffusers "
          f"{diffusers.__version__}")
    for name, _, _ in runs:
        print(f"{name} kernels: {kernels.get(name) or '(not printed by this build)'}")
    print()
    print(f"| {'':<16} | {'UNet call, batch 2: min / median':>34} | "
          f"{'VAE decode 512: min / median':>30} |")
    print(f"|{'-' * 18}|{'-' * 36}|{'-' * 32}|")
    for c in contenders:
        cells = []
        for stage, width in (("unet", 34), ("vae", 30)):
            t = times[(c, stage)]
            cells.append(f"{min(t) / 1e3:.2f} s / {statistics.median(t) / 1e3:.2f} s".rjust(width))
        print(f"| {c:<16} | {cells[0]} | {cells[1]} |")
    print()
    for name, _, _ in runs:
        ratios = []
        for stage in ("unet", "vae"):
            mine, theirs = times[(name, stage)], times[("torch fp32", stage)]
            ratios.append(f"{stage} {min(theirs) / min(mine):.2f}x (min) "
                          f"{statistics.median(theirs) / statistics.median(mine):.2f}x (median)")
        print(f"torch fp32 / {name}: " + ", ".join(ratios))


if __name__ == "__main__":
    main()
