"""Writes tests/fixtures/unet-grad-sd1.safetensors and unet-grad-sd2.safetensors for
tests/test_unet_backward.c: torch autograd's gradients of
loss = F.mse_loss(unet(sample, t, context).sample, target) with respect to the sample, the context
and every parameter of the tiny fixture UNets (tests/fixtures/tiny-sd1/unet, tiny-sd2/unet,
loaded with UNet2DConditionModel.from_pretrained as users load models, cast to float32).

Inputs from seeded torch.Generator('cpu')s; rerunning gives the same files byte for byte on the
same package versions. The forward (out, loss) is torch's float32 one. The gradients are computed
twice, in float32 and in float64 (the model and inputs cast); the files hold the float64 ones
rounded to float32, the more accurate reference, and the script prints and bounds the gap of
torch's float32 gradients to them (max |g32 - g64| / max |g64| per tensor, at most 1e-5 allowed),
so the C test's 1e-4 compares against torch's float32 as much as against the exact values.

Some gradients are zero in exact arithmetic: with 32 channels in 32 groups at level 0, each
GroupNorm normalizes every channel alone, so a per-channel constant added before it (conv1 and
time_emb_proj biases, the time_emb_proj weight of the level-0 resnets, biases that reach only
conv_norm_out) has no effect on the loss. float64 gives them as ~1e-18, float32 as rounding noise
~1e-9 (relative to 0.12, the largest gradient); the script counts them (max |g64| below 1e-9 of
the largest gradient of the model) and checks torch's float32 values against 1e-6 of that largest
gradient instead.

Size: each tiny UNet has 2.16M parameters (8.7 MB of float32 gradients), over this fixture's
budget of ~1.5 MB per model. So a parameter gradient of at most FULL_LIMIT elements is stored
whole; a larger one (a conv or linear weight) is stored as whole rows (its first dim; a row of a
conv weight is one output channel's (C, kh, kw) kernel, so it spans every input channel and tap),
at most FULL_LIMIT values of rows evenly spaced from the first to the last, plus four figures of
the whole tensor computed in float64: max |g|, the L2 norm, and two projections sum_i s_i g_i
onto +-1 signs s_i from a hash of the flat index i (sign_of below; the C test computes the same).

Run from anywhere: python3 tests/reference/make_unet_grad_fixtures.py (about 20 s on 2 cores).

Tensors of each file:
  sample (B, 4, H, W), timestep (1), context (B, 77, 32), target (B, 4, H, W)  the inputs
  out (B, 4, H, W), loss (1)                                                     the forward
  dsample, dcontext                                                              input gradients
  grad.<param>   the whole gradient, or the chosen rows (R', cols...) of it
  rows.<param>   I32 (R') the rows stored, only for a sampled gradient
  stats.<param>  F32 (4) max |g|, ||g||_2, sum s1 g, sum s2 g of the whole gradient (sampled only)
"""

import os

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.normpath(os.path.join(HERE, "..", "fixtures"))
GAP_LIMIT = 1e-5
FULL_LIMIT = 2048
SIGN_SEEDS = (1, 2)

# family: (sample shape, timestep, seed). sd2's latent is not square, so a swapped H and W shows.
CASES = {
    "sd1": ((2, 4, 16, 16), 981.0, 31),
    "sd2": ((2, 4, 24, 16), 500.5, 41),
}

M64 = (1 << 64) - 1


def sign_of(n, seed):
    """+-1 for flat indices 0 .. n-1: the top bit of splitmix64's finalizer of
    (i + 1) * 0x9E3779B97F4A7C15 ^ seed (all mod 2^64); 1 -> -1."""
    with np.errstate(over="ignore"):
        z = (np.arange(1, n + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)) ^ np.uint64(seed)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return np.where((z >> np.uint64(63)) == 1, -1.0, 1.0)


def randn(gen, shape):
    return torch.randn(shape, generator=gen, dtype=torch.float32)


def run(unet, sample, t, context, target, dtype):
    unet = unet.to(dtype)
    unet.zero_grad(set_to_none=True)
    x = sample.detach().to(dtype).requires_grad_(True)
    c = context.detach().to(dtype).requires_grad_(True)
    out = unet(x, t, encoder_hidden_states=c).sample
    loss = F.mse_loss(out, target.to(dtype))
    loss.backward()
    grads = {name: p.grad.detach().clone() for name, p in unet.named_parameters()}
    return out.detach(), loss.detach(), x.grad.detach(), c.grad.detach(), grads


def gap(a, b):
    return ((a.double() - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


def add_gradient(tensors, name, g):
    if g.numel() <= FULL_LIMIT:
        tensors[f"grad.{name}"] = g.float().contiguous()
        return
    rows = g.shape[0]
    cols = g.numel() // rows
    count = max(2, min(rows, FULL_LIMIT // cols))
    picked = np.unique(np.round(np.linspace(0, rows - 1, count)).astype(np.int64))
    tensors[f"grad.{name}"] = g[torch.from_numpy(picked)].float().contiguous()
    tensors[f"rows.{name}"] = torch.from_numpy(picked.astype(np.int32))
    flat = g.double().flatten().numpy()
    stats = [np.abs(flat).max(), np.sqrt((flat * flat).sum())]
    stats += [(sign_of(flat.size, seed) * flat).sum() for seed in SIGN_SEEDS]
    tensors[f"stats.{name}"] = torch.tensor(stats, dtype=torch.float32)


def make(family):
    shape, timestep, seed = CASES[family]
    unet = UNet2DConditionModel.from_pretrained(os.path.join(FIXTURES, f"tiny-{family}", "unet"))
    unet = unet.float().train()
    gen = torch.Generator("cpu").manual_seed(seed)
    sample = randn(gen, shape)
    context = randn(gen, (shape[0], 77, unet.config.cross_attention_dim))
    target = randn(gen, shape)
    t = torch.tensor([timestep])

    out, loss, dsample, dcontext, grads = run(unet, sample, t, context, target, torch.float32)
    out64, loss64, dsample64, dcontext64, grads64 = run(
        unet, sample, t, context, target, torch.float64
    )
    scale = max(g.abs().max().item() for g in grads64.values())
    zero = [n for n in grads if grads64[n].abs().max().item() < 1e-9 * scale]
    worst = max(
        [(gap(dsample, dsample64), "dsample"), (gap(dcontext, dcontext64), "dcontext")]
        + [(gap(grads[n], grads64[n]), n) for n in grads if n not in zero]
    )
    worst_zero = max(grads[n].abs().max().item() / scale for n in zero) if zero else 0.0
    print(
        f"{family}: loss {loss.item():.6f}; float32 vs float64 gap {worst[0]:.2e} ({worst[1]}); "
        f"{len(zero)} gradients zero in exact arithmetic, float32 at most {worst_zero:.1e} of "
        f"the largest gradient {scale:.3f}"
    )
    if worst[0] > GAP_LIMIT or worst_zero > 1e-6:
        raise SystemExit(f"{family}: float32 gradients too far from float64")

    tensors = {
        "sample": sample,
        "timestep": t,
        "context": context,
        "target": target,
        "out": out,
        "loss": loss.reshape(1),
        "dsample": dsample64.float(),
        "dcontext": dcontext64.float(),
    }
    for name, g in grads64.items():
        add_gradient(tensors, name, g)
    path = os.path.join(FIXTURES, f"unet-grad-{family}.safetensors")
    save_file(tensors, path, metadata={"params": str(len(grads))})
    print(f"{path}: {os.path.getsize(path)} bytes, {len(grads)} parameter gradients")


def main():
    torch.set_num_threads(2)
    for family in CASES:
        make(family)


if __name__ == "__main__":
    main()
