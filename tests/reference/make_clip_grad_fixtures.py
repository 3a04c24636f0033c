"""Writes tests/fixtures/clip-grad-sd1.safetensors and clip-grad-sd2.safetensors for
tests/test_clip_backward.c: torch autograd's gradients of loss = sum(hidden * R), hidden the
last_hidden_state (after final_layer_norm: the conditioning SD 1.x and 2.x pipelines take), with
respect to every parameter of the tiny fixture text encoders (tests/fixtures/tiny-sd1/text_encoder:
quick_gelu; tiny-sd2/text_encoder: gelu; loaded with CLIPTextModel.from_pretrained as users load
them, cast to float32). R is seeded torch.randn of hidden's shape, so d(loss)/d(hidden) = R.

The token ids are two prompts through the family's own tokenizer as StableDiffusionPipeline
tokenizes them (padding="max_length", max_length 77, truncation): SD1's pads with <|endoftext|>,
SD2's with "!" (id 0). The forward (hidden) is torch's float32 one; the gradients are computed in
float32 and in float64 (model cast); the files hold the float64 ones rounded to float32 and the
script bounds torch's float32 gap to them (max |g32 - g64| / max |g64| per tensor, at most 1e-5).
The k_proj biases' gradients are zero in exact arithmetic (q . b_k is the same for every key of a
query, and softmax ignores a constant): float64 gives ~1e-18, float32 rounding noise; the script
counts such gradients (max |g64| below 1e-9 of the largest) and checks torch's float32 ones
against 1e-6 of the largest gradient instead.

Size: every gradient is stored whole except the token embedding's (49408 x 32, 6.3 MB in
float32, non-zero only in the rows of the ids used): it is stored as rows, the distinct ids used
plus 16 evenly spaced rows (zero there), with the four whole-tensor figures of
make_unet_grad_fixtures.py (max |g|, L2 norm, two +-1 projections; its sign_of).

Run from anywhere: python3 tests/reference/make_clip_grad_fixtures.py (a few seconds); rerunning
gives the same files byte for byte on the same package versions.

Tensors of each file:
  ids (2, 77) I32, dhidden (2, 77, C) = R     the inputs
  hidden (2, 77, C), loss (1)                 torch float32's forward
  grad.<param>   the whole gradient, or the chosen rows of it
  rows.<param>   I32 the rows stored (the token embedding only)
  stats.<param>  F32 (4) max |g|, ||g||_2, sum s1 g, sum s2 g of the whole gradient
"""

import os
import sys

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import CLIPTextModel, CLIPTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_unet_grad_fixtures import FIXTURES, SIGN_SEEDS, gap, sign_of  # noqa: E402

GAP_LIMIT = 1e-5
SPREAD_ROWS = 16
PROMPTS = ["a photo of an astronaut riding a horse on mars", "sks dog, oil painting"]
SEEDS = {"sd1": 51, "sd2": 61}
TOKEN_EMBEDDING = "text_model.embeddings.token_embedding.weight"


def run(model, ids, r, dtype):
    model = model.to(dtype)
    model.zero_grad(set_to_none=True)
    hidden = model(input_ids=ids).last_hidden_state
    loss = (hidden * r.to(dtype)).sum()
    loss.backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters()}
    return hidden.detach(), loss.detach(), grads


def add_sampled(tensors, name, g, ids):
    spread = np.round(np.linspace(0, g.shape[0] - 1, SPREAD_ROWS)).astype(np.int64)
    picked = np.unique(np.concatenate([np.unique(ids.numpy()).astype(np.int64), spread]))
    tensors[f"grad.{name}"] = g[torch.from_numpy(picked)].float().contiguous()
    tensors[f"rows.{name}"] = torch.from_numpy(picked.astype(np.int32))
    flat = g.double().flatten().numpy()
    stats = [np.abs(flat).max(), np.sqrt((flat * flat).sum())]
    stats += [(sign_of(flat.size, seed) * flat).sum() for seed in SIGN_SEEDS]
    tensors[f"stats.{name}"] = torch.tensor(stats, dtype=torch.float32)


def make(family):
    root = os.path.join(FIXTURES, f"tiny-{family}")
    tokenizer = CLIPTokenizer.from_pretrained(os.path.join(root, "tokenizer"))
    model = CLIPTextModel.from_pretrained(os.path.join(root, "text_encoder")).float().train()
    ids = tokenizer(
        PROMPTS,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids
    gen = torch.Generator("cpu").manual_seed(SEEDS[family])
    r = torch.randn((ids.shape[0], ids.shape[1], model.config.hidden_size), generator=gen)

    hidden, loss, grads = run(model, ids, r, torch.float32)
    _, _, grads64 = run(model, ids, r, torch.float64)
    scale = max(g.abs().max().item() for g in grads64.values())
    zero = [n for n in grads if grads64[n].abs().max().item() < 1e-9 * scale]
    worst = max((gap(grads[n], grads64[n]), n) for n in grads if n not in zero)
    worst_zero = max(grads[n].abs().max().item() / scale for n in zero) if zero else 0.0
    print(
        f"{family}: loss {loss.item():.6f}; float32 vs float64 gap {worst[0]:.2e} ({worst[1]}); "
        f"{len(zero)} gradients zero in exact arithmetic ({', '.join(zero)}), float32 at most "
        f"{worst_zero:.1e} of the largest gradient {scale:.3f}"
    )
    if worst[0] > GAP_LIMIT or worst_zero > 1e-6:
        raise SystemExit(f"{family}: float32 gradients too far from float64")

    tensors = {
        "ids": ids.to(torch.int32).contiguous(),
        "dhidden": r,
        "hidden": hidden,
        "loss": loss.reshape(1),
    }
    for name, g in grads64.items():
        key = name if name.startswith("text_model.") else f"text_model.{name}"
        if key == TOKEN_EMBEDDING:
            add_sampled(tensors, key, g, ids)
        else:
            tensors[f"grad.{key}"] = g.float().contiguous()
    path = os.path.join(FIXTURES, f"clip-grad-{family}.safetensors")
    save_file(tensors, path, metadata={"params": str(len(grads))})
    print(f"{path}: {os.path.getsize(path)} bytes, {len(grads)} parameter gradients")


def main():
    torch.set_num_threads(1)
    for family in SEEDS:
        make(family)


if __name__ == "__main__":
    main()
