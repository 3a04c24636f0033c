"""Writes tests/fixtures/rng/torch_randn.json, the reference numbers for tests/test_rng.c.

cpu: torch.randn drawn by torch itself from torch.Generator('cpu').manual_seed(seed), including a
second call on the same generator, sizes that are not multiples of 16 and a seed above 2^32.

cuda: there is no GPU here, so the values come from an independent numpy emulation of torch's
CUDA randn as /work/shared/docs/RNG.md states it (Philox4x32-10 in exact integer arithmetic,
curand's Box-Muller in float64 from the float32 u and v).
Seeds are strings (JSON numbers would lose 64-bit seeds). These check the counter, key and offset
handling; the four values torch printed on a GPU are asserted in test_rng.c itself.

Run: python3 tests/reference/make_rng_fixtures.py (torch on the CPU, numpy)."""

import json
import math
import os

import numpy as np
import torch

OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "rng", "torch_randn.json")

M0, M1 = 0xD2511F53, 0xCD9E8D57
W0, W1 = 0x9E3779B9, 0xBB67AE85
MASK32 = 0xFFFFFFFF


def philox4x32_10(counter, key):
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for _ in range(10):
        p0 = M0 * c0
        p1 = M1 * c2
        c0, c1, c2, c3 = ((p1 >> 32) ^ c1 ^ k0) & MASK32, p1 & MASK32, ((p0 >> 32) ^ c3 ^ k1) & MASK32, p0 & MASK32
        k0 = (k0 + W0) & MASK32
        k1 = (k1 + W1) & MASK32
    return c0, c1, c2, c3


def cuda_randn_value(seed, call, index):
    """Element `index` of the `call`-th (0-based) torch.randn on a fresh cuda generator."""
    x0, x1, _, _ = philox4x32_10((call & MASK32, call >> 32, index & MASK32, index >> 32),
                                 (seed & MASK32, seed >> 32))
    inv = np.float32(2.3283064e-10)
    inv_2pi = np.float32(inv * np.float32(6.2831855))
    u = np.float32(float(np.float32(x0)) * float(inv) + float(inv) / 2)
    v = np.float32(float(np.float32(x1)) * float(inv_2pi) + float(inv_2pi) / 2)
    return math.sqrt(-2.0 * math.log(float(u))) * math.sin(float(v))


def f32_list(values):
    """float32 values as the shortest decimals that read back to the same float32."""
    return [float(np.format_float_positional(np.float32(v), unique=True)) for v in values]


def main():
    cpu_cases = []
    for seed, sizes in [(42, [1024, 1024]), (0, [252, 252]), (2**32 + 3, [64]), (1234, [16, 512])]:
        g = torch.Generator("cpu").manual_seed(seed)
        draws = [f32_list(torch.randn(n, generator=g, dtype=torch.float32).tolist()) for n in sizes]
        cpu_cases.append({"seed": str(seed), "draws": draws})

    cuda_cases = []
    for seed, call, indices in [
        (42, 0, [0, 1, 2, 3, 4, 5, 6, 7, 100, 1023, 16383]),
        (42, 1, [0, 1, 2, 3, 511]),
        (42, 3, [0, 7]),
        (2**32 + 7, 0, [0, 1, 2, 3, 255]),
        (0, 0, [0, 1, 2, 3]),
        (18446744073709551557, 2, [0, 9, 65535]),
    ]:
        values = [float(f"{cuda_randn_value(seed, call, i):.12g}") for i in indices]
        cuda_cases.append({"seed": str(seed), "call": call, "indices": indices, "values": values})

    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump({"torch_version": torch.__version__, "cpu": cpu_cases, "cuda": cuda_cases}, f)
        f.write("\n")
    print(f"wrote {os.path.normpath(OUT)} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
