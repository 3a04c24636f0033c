"""Writes tests/fixtures/backward/*.safetensors for tests/test_backward_cpu.c: the inputs, an
upstream gradient dy and torch autograd's gradients of every op with a backward pass
(kernels/ops.h), plus AdamW steps with gradient clipping and diffusers' learning-rate schedules.

Everything is float32 on the CPU from seeded torch.Generator('cpu')s, so rerunning gives the same
files byte for byte on the same package versions. Each op's float32 gradients are also computed
in float64 from the same inputs; the script prints the gap (max |g32 - g64| / max |g64|) and fails
when it exceeds 1e-5, so the fixtures are themselves accurate to well within the C test's 1e-4.

Run from anywhere: python3 tests/reference/make_backward_fixtures.py (a few seconds).

Files (tensor names "<case>.<what>"; see tests/reference/README.md):
  linear       x, w, b, dy -> dx, dw, db (cases "linear" (2, 5, 7) x (9, 7)^T with bias,
               "linear2d" (3, 6) x (4, 6)^T without)
  activation   "<act>.x", "<act>.dy" -> "<act>.dx" for silu, gelu, gelu_tanh, quick_gelu, relu
  conv2d       "s1" 3x3 pad 1 stride 1, "s2" 3x3 pad 1 stride 2 (7x6 input), "k1" 1x1:
               x, w, b, dy -> dx, dw, db
  norm         "gn" / "gn_silu" GroupNorm(2 groups, eps 1e-5) x (2, 6, 3, 5) without / with
               SiLU; "ln" LayerNorm(12, eps 1e-5) on (2, 5, 12): x, gamma, beta, dy -> dx,
               dgamma, dbeta
  attention    "cross" B 2, heads 2, Lq 5, Lk 7, D 4; "causal" Lq = Lk = 6: q, k, v, dout ->
               dq, dk, dv (scale 1 / sqrt(D))
  misc         geglu (x, dy -> dx), upsample (2x: x, dy -> dx), concat (a, b, dy -> da, db),
               transpose (x, dy -> dx), bias (add_channel_bias: x, v, dy -> dv),
               embedding (table, ids I32, dy -> dtable), mse (x, target -> loss, dx of the
               mean loss), pad (F.pad left 2, right 1, top 1, bottom 3: x, dy -> dx)
  adamw        three parameters, 5 steps of clip_grad_norm_(max_norm 1) + AdamW(lr 1e-2,
               betas (0.9, 0.999), eps 1e-8, weight_decay 1e-2, foreach=False) with the lr from
               diffusers' get_scheduler("cosine", num_warmup_steps 2, num_training_steps 5),
               stepped after each optimizer step as diffusers' training scripts do
  schedules    lr multipliers of constant, constant_with_warmup, linear and cosine (warmup 3,
               training steps 10) at steps 0 .. 11
"""

import math
import os

import torch
import torch.nn.functional as F
from diffusers.optimization import get_scheduler
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.normpath(os.path.join(HERE, "..", "fixtures", "backward"))
GAP_LIMIT = 1e-5


def randn(gen, *shape, scale=1.0):
    return torch.randn(shape, generator=gen, dtype=torch.float32) * scale


def grads(fn, inputs, dy):
    """torch autograd gradients of fn(*inputs) . dy with respect to each input, in float32, and the
    largest relative gap to the same computed in float64."""
    def run(dtype):
        leaves = [t.detach().to(dtype).requires_grad_(True) for t in inputs]
        y = fn(*leaves)
        y.backward(dy.to(dtype))
        return [t.grad for t in leaves]

    g32, g64 = run(torch.float32), run(torch.float64)
    gap = max(
        ((a.double() - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()
        for a, b in zip(g32, g64)
    )
    return g32, gap


class Writer:
    def __init__(self):
        self.files = {}
        self.gaps = []

    def add(self, file, name, tensors):
        for key, t in tensors.items():
            self.files.setdefault(file, {})[f"{name}.{key}"] = t.detach().contiguous()

    def gap(self, what, value):
        self.gaps.append((what, value))
        print(f"  {what:28s} float32 vs float64 gap {value:.2e}")
        if value > GAP_LIMIT:
            raise SystemExit(f"{what}: float32 gradients {value:.2e} away from float64")

    def save(self):
        os.makedirs(OUT, exist_ok=True)
        total = 0
        for file, tensors in self.files.items():
            path = os.path.join(OUT, f"{file}.safetensors")
            save_file(tensors, path)
            total += os.path.getsize(path)
            print(f"{path}: {os.path.getsize(path)} bytes")
        print(f"total {total} bytes")


def linear_cases(w, gen):
    for name, x_shape, n, bias in (("linear", (2, 5, 7), 9, True), ("linear2d", (3, 6), 4, False)):
        x = randn(gen, *x_shape)
        weight = randn(gen, n, x_shape[-1], scale=0.4)
        b = randn(gen, n)
        dy = randn(gen, *x_shape[:-1], n)
        inputs = [x, weight, b] if bias else [x, weight]
        (gx, gw, *gb), gap = grads(lambda *t: F.linear(*t), inputs, dy)
        w.gap(name, gap)
        out = {"x": x, "w": weight, "dy": dy, "dx": gx, "dw": gw}
        if bias:
            out.update(b=b, db=gb[0])
        w.add("linear", name, out)


def quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


def activation_cases(w, gen):
    acts = {
        "silu": F.silu,
        "gelu": F.gelu,
        "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
        "quick_gelu": quick_gelu,
        "relu": F.relu,
    }
    for name, fn in acts.items():
        x = randn(gen, 2, 5, 9, scale=2.0)
        dy = randn(gen, 2, 5, 9)
        (gx,), gap = grads(fn, [x], dy)
        w.gap(name, gap)
        w.add("activation", name, {"x": x, "dy": dy, "dx": gx})


def conv_cases(w, gen):
    for name, hw, k, stride, pad in (
        ("s1", (7, 7), 3, 1, 1),
        ("s2", (7, 6), 3, 2, 1),
        ("k1", (7, 7), 1, 1, 0),
    ):
        x = randn(gen, 2, 3, *hw)
        weight = randn(gen, 5, 3, k, k, scale=0.3)
        b = randn(gen, 5)
        y = F.conv2d(x, weight, b, stride=stride, padding=pad)
        dy = randn(gen, *y.shape)
        (gx, gw, gb), gap = grads(
            lambda x, wt, bb: F.conv2d(x, wt, bb, stride=stride, padding=pad), [x, weight, b], dy
        )
        w.gap(f"conv2d {name}", gap)
        w.add("conv2d", name, {"x": x, "w": weight, "b": b, "dy": dy, "dx": gx, "dw": gw, "db": gb})


def norm_cases(w, gen):
    for name, silu in (("gn", False), ("gn_silu", True)):
        x = randn(gen, 2, 6, 3, 5, scale=1.5) + 0.5
        gamma = 1.0 + randn(gen, 6, scale=0.25)
        beta = randn(gen, 6, scale=0.25)
        dy = randn(gen, 2, 6, 3, 5)

        def fn(x, g, b, silu=silu):
            y = F.group_norm(x, 2, g, b, eps=1e-5)
            return F.silu(y) if silu else y

        (gx, gg, gb), gap = grads(fn, [x, gamma, beta], dy)
        w.gap(name, gap)
        w.add("norm", name, {"x": x, "gamma": gamma, "beta": beta, "dy": dy, "dx": gx, "dgamma": gg,
                             "dbeta": gb})
    x = randn(gen, 2, 5, 12, scale=1.5) - 0.3
    gamma = 1.0 + randn(gen, 12, scale=0.25)
    beta = randn(gen, 12, scale=0.25)
    dy = randn(gen, 2, 5, 12)
    (gx, gg, gb), gap = grads(lambda x, g, b: F.layer_norm(x, (12,), g, b, eps=1e-5),
                              [x, gamma, beta], dy)
    w.gap("ln", gap)
    w.add("norm", "ln", {"x": x, "gamma": gamma, "beta": beta, "dy": dy, "dx": gx, "dgamma": gg,
                         "dbeta": gb})


def attention(q, k, v, heads, causal):
    """o (B, Lq, H*D) = softmax(q k^T / sqrt(D) [causal]) v per head, as sd_op_attention."""
    b, lq, width = q.shape
    d = width // heads

    def split(t):
        return t.reshape(b, t.shape[1], heads, d).transpose(1, 2)

    o = F.scaled_dot_product_attention(split(q), split(k), split(v), is_causal=causal)
    return o.transpose(1, 2).reshape(b, lq, width)


def attention_cases(w, gen):
    for name, lq, lk, causal in (("cross", 5, 7, False), ("causal", 6, 6, True)):
        q = randn(gen, 2, lq, 8)
        k = randn(gen, 2, lk, 8)
        v = randn(gen, 2, lk, 8)
        dout = randn(gen, 2, lq, 8)
        (gq, gk, gv), gap = grads(lambda q, k, v: attention(q, k, v, 2, causal), [q, k, v], dout)
        w.gap(f"attention {name}", gap)
        w.add("attention", name, {"q": q, "k": k, "v": v, "dout": dout, "dq": gq, "dk": gk,
                                  "dv": gv})


def misc_cases(w, gen):
    x = randn(gen, 2, 5, 12, scale=1.5)
    dy = randn(gen, 2, 5, 6)

    def geglu(x):
        hidden, gate = x.chunk(2, dim=-1)
        return hidden * F.gelu(gate)

    (gx,), gap = grads(geglu, [x], dy)
    w.gap("geglu", gap)
    w.add("misc", "geglu", {"x": x, "dy": dy, "dx": gx})

    x = randn(gen, 2, 3, 3, 4)
    dy = randn(gen, 2, 3, 6, 8)
    (gx,), gap = grads(lambda x: F.interpolate(x, scale_factor=2.0, mode="nearest"), [x], dy)
    w.gap("upsample", gap)
    w.add("misc", "upsample", {"x": x, "dy": dy, "dx": gx})

    a, b = randn(gen, 2, 3, 4, 5), randn(gen, 2, 2, 4, 5)
    dy = randn(gen, 2, 5, 4, 5)
    (ga, gb), _ = grads(lambda a, b: torch.cat([a, b], dim=1), [a, b], dy)
    w.add("misc", "concat", {"a": a, "b": b, "dy": dy, "da": ga, "db": gb})

    x = randn(gen, 2, 4, 6)
    dy = randn(gen, 2, 6, 4)
    (gx,), _ = grads(lambda x: x.transpose(1, 2), [x], dy)
    w.add("misc", "transpose", {"x": x, "dy": dy, "dx": gx})

    x, v = randn(gen, 2, 3, 4, 5), randn(gen, 2, 3)
    dy = randn(gen, 2, 3, 4, 5)
    (_, gv), gap = grads(lambda x, v: x + v[:, :, None, None], [x, v], dy)
    w.gap("add_channel_bias", gap)
    w.add("misc", "bias", {"x": x, "v": v, "dy": dy, "dv": gv})

    table = randn(gen, 10, 6)
    ids = torch.tensor([[3, 7, 3, 0, 9], [1, 3, 3, 8, 0]], dtype=torch.int32)
    dy = randn(gen, 2, 5, 6)
    (gt,), gap = grads(lambda t: F.embedding(ids.long(), t), [table], dy)
    w.gap("embedding", gap)
    w.add("misc", "embedding", {"table": table, "ids": ids, "dy": dy, "dtable": gt})

    x, target = randn(gen, 2, 4, 3, 3), randn(gen, 2, 4, 3, 3)
    xg = x.clone().requires_grad_(True)
    loss = F.mse_loss(xg, target)
    loss.backward()
    w.add("misc", "mse", {"x": x, "target": target, "loss": loss.detach().reshape(1),
                          "dx": xg.grad})


def adamw_case(w, gen):
    shapes = [(4, 3), (5,), (2, 2, 3)]
    params = [torch.nn.Parameter(randn(gen, *s)) for s in shapes]
    out = {f"p{i}.init": p.detach().clone() for i, p in enumerate(params)}
    opt = torch.optim.AdamW(params, lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                            foreach=False)
    sched = get_scheduler("cosine", opt, num_warmup_steps=2, num_training_steps=5)
    # gradient scales: clipping acts on steps 0, 2, 3 (total norm > 1), not on 1, 4
    scales = [1.0, 0.05, 2.0, 0.5, 0.02]
    lrs, norms = [], []
    for step, scale in enumerate(scales):
        for i, p in enumerate(params):
            g = randn(gen, *p.shape, scale=scale)
            out[f"p{i}.grad.{step}"] = g
            p.grad = g.clone()
        lrs.append(opt.param_groups[0]["lr"])
        norms.append(torch.nn.utils.clip_grad_norm_(params, max_norm=1.0).item())
        opt.step()
        sched.step()
        for i, p in enumerate(params):
            out[f"p{i}.after.{step}"] = p.detach().clone()
    out["lr"] = torch.tensor(lrs, dtype=torch.float32)
    out["total_norm"] = torch.tensor(norms, dtype=torch.float32)
    print(f"  adamw lr {lrs}, total norms {[round(n, 4) for n in norms]}")
    w.add("adamw", "adamw", out)


def schedule_cases(w):
    steps = 12
    for name in ("constant", "constant_with_warmup", "linear", "cosine"):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        sched = get_scheduler(name, opt, num_warmup_steps=3, num_training_steps=10)
        values = []
        for _ in range(steps):
            values.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        w.add("schedules", name, {"lr": torch.tensor(values, dtype=torch.float32)})


def pad_case(w, gen):
    """F.pad as the VAE encoder's downsampler uses it, with padding on all four sides here
    (left 2, right 1, top 1, bottom 3) so that both offsets are exercised."""
    x = randn(gen, 2, 3, 4, 5)
    dy = randn(gen, 2, 3, 8, 8)
    (gx,), _ = grads(lambda x: F.pad(x, (2, 1, 1, 3)), [x], dy)
    w.add("misc", "pad", {"x": x, "dy": dy, "dx": gx})


def main():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(20261204)
    w = Writer()
    linear_cases(w, gen)
    activation_cases(w, gen)
    conv_cases(w, gen)
    norm_cases(w, gen)
    attention_cases(w, gen)
    misc_cases(w, gen)
    adamw_case(w, gen)
    schedule_cases(w)
    pad_case(w, gen)
    w.save()
    assert math.isfinite(max(g for _, g in w.gaps))


if __name__ == "__main__":
    main()
