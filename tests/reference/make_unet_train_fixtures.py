"""Writes tests/fixtures/unet-train-sd1.safetensors and unet-train-sd2.safetensors for
tests/test_unet_train.c: three optimizer steps of the UNet as diffusers' DreamBooth script
(examples/dreambooth/train_dreambooth.py, full fine-tune) takes them, with given latents, noise,
timesteps and text embeddings per step:

    noisy = noise_scheduler.add_noise(latents, noise, timesteps)       # DDPMScheduler
    pred = unet(noisy, timesteps, encoder_hidden_states).sample
    target = noise (epsilon) or noise_scheduler.get_velocity(latents, noise, timesteps)
    loss = F.mse_loss(pred.float(), target.float(), reduction="mean")
    loss.backward(); clip_grad_norm_(unet.parameters(), MAX_NORM)
    optimizer.step(); lr_scheduler.step(); optimizer.zero_grad()

with torch.optim.AdamW(lr LR, betas (0.9, 0.999), weight_decay 1e-2, eps 1e-8) and
get_scheduler("cosine", num_warmup_steps 1, num_training_steps 3). The models are the tiny
fixture UNets (tests/fixtures/tiny-sd1/unet, epsilon; tiny-sd2/unet, whose scheduler config says
v_prediction) loaded with from_pretrained, the scheduler DDPMScheduler.from_pretrained(model,
subfolder="scheduler") as the script loads it. Inputs from a seeded torch.Generator('cpu').

The loop runs twice on the same inputs: in float32 (what users run: loss, gradient norm and
learning rate of each step come from it) and in float64 (model, inputs and optimizer cast). The
parameters stored are the float64 run's rounded to float32, the more accurate reference, with
gap32.<name>: how far torch's own float32 run ended from them (max |p32 - p64| / max |p64| over
the stored values), so the C test can hold its error to what float32 arithmetic allows.

Tensors: for each step s in 0..2: latents.s, noise.s (B, 4, H, W), timesteps.s (B) I32,
context.s (B, 77, D); loss (3), grad_norm (3) (clip_grad_norm_'s total before clipping), lr (3);
then the parameters after the last step, each whole when it has at most FULL_LIMIT values, else
as evenly spaced whole rows (param.<name>, rows.<name>) plus stats.<name> = max |p - p0|, L2 of
p - p0 and two +-1 hash projections of p - p0 (the change, where an error would show) over the
whole tensor, in float64 (sign_of as in make_unet_grad_fixtures.py); gap32.<name> (1).

Run from anywhere: python3 tests/reference/make_unet_train_fixtures.py (about 30 s on 2 cores).
"""

import os

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DConditionModel
from diffusers.optimization import get_scheduler
from safetensors.torch import save_file

from make_unet_grad_fixtures import sign_of

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.normpath(os.path.join(HERE, "..", "fixtures"))
FULL_LIMIT = 2048
SIGN_SEEDS = (1, 2)
STEPS = 3
LR = 1e-3
MAX_NORM = 1.0

CASES = {"sd1": ((2, 4, 16, 16), 51), "sd2": ((2, 4, 16, 24), 52)}


def add_param(tensors, name, p, p0, p32):
    def gap(stored64, stored32):
        return (stored32.double() - stored64).abs().max() / stored64.abs().max().clamp_min(1e-12)

    if p.numel() <= FULL_LIMIT:
        tensors[f"param.{name}"] = p.float().contiguous()
        tensors[f"gap32.{name}"] = gap(p, p32).float().reshape(1)
        return
    rows = p.shape[0]
    cols = p.numel() // rows
    count = max(2, min(rows, FULL_LIMIT // cols))
    picked = np.unique(np.round(np.linspace(0, rows - 1, count)).astype(np.int64))
    index = torch.from_numpy(picked)
    tensors[f"param.{name}"] = p[index].float().contiguous()
    tensors[f"gap32.{name}"] = gap(p[index], p32[index]).float().reshape(1)
    tensors[f"rows.{name}"] = torch.from_numpy(picked.astype(np.int32))
    d = (p.double() - p0.double()).flatten().numpy()
    stats = [np.abs(d).max(), np.sqrt((d * d).sum())]
    stats += [(sign_of(d.size, seed) * d).sum() for seed in SIGN_SEEDS]
    tensors[f"stats.{name}"] = torch.tensor(stats, dtype=torch.float32)


def make_batches(gen, shape, cross, num_train_timesteps, count, tensors):
    """count batches (latents, noise, timesteps, context) drawn from gen, also put into tensors
    as latents.s, noise.s, timesteps.s (I32), context.s (shared with make_lora_train_fixtures)."""
    batches = []
    for s in range(count):
        latents = torch.randn(shape, generator=gen)
        noise = torch.randn(shape, generator=gen)
        timesteps = torch.randint(0, num_train_timesteps, (shape[0],), generator=gen)
        context = torch.randn((shape[0], 77, cross), generator=gen)
        batches.append((latents, noise, timesteps, context))
        tensors[f"latents.{s}"] = latents
        tensors[f"noise.{s}"] = noise
        tensors[f"timesteps.{s}"] = timesteps.to(torch.int32)
        tensors[f"context.{s}"] = context
    return batches


def train(family, batches, dtype):
    """The DreamBooth loop over the batches in dtype: the per-step figures and the parameters."""
    folder = os.path.join(FIXTURES, f"tiny-{family}")
    unet = UNet2DConditionModel.from_pretrained(os.path.join(folder, "unet")).to(dtype).train()
    noise_scheduler = DDPMScheduler.from_pretrained(folder, subfolder="scheduler")
    prediction = noise_scheduler.config.prediction_type
    optimizer = torch.optim.AdamW(
        unet.parameters(), lr=LR, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8
    )
    lr_scheduler = get_scheduler(
        "cosine", optimizer=optimizer, num_warmup_steps=1, num_training_steps=STEPS
    )
    losses, norms, lrs = [], [], []
    for latents, noise, timesteps, context in batches:
        latents, noise, context = latents.to(dtype), noise.to(dtype), context.to(dtype)
        noisy = noise_scheduler.add_noise(latents, noise, timesteps)
        pred = unet(noisy, timesteps, context).sample
        if prediction == "epsilon":
            target = noise
        else:
            target = noise_scheduler.get_velocity(latents, noise, timesteps)
        loss = F.mse_loss(pred, target, reduction="mean")
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(unet.parameters(), MAX_NORM)
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        norms.append(norm.item())
    params = {n: p.detach().clone() for n, p in unet.named_parameters()}
    return prediction, losses, norms, lrs, params


def make(family):
    shape, seed = CASES[family]
    folder = os.path.join(FIXTURES, f"tiny-{family}")
    start = {
        n: p.detach().clone()
        for n, p in UNet2DConditionModel.from_pretrained(os.path.join(folder, "unet"))
        .float()
        .named_parameters()
    }
    cross = UNet2DConditionModel.load_config(os.path.join(folder, "unet"))["cross_attention_dim"]
    steps = DDPMScheduler.load_config(folder, subfolder="scheduler")["num_train_timesteps"]
    gen = torch.Generator("cpu").manual_seed(seed)
    tensors = {}
    batches = make_batches(gen, shape, cross, steps, STEPS, tensors)
    prediction, losses, norms, lrs, params32 = train(family, batches, torch.float32)
    _, losses64, _, _, params64 = train(family, batches, torch.float64)
    tensors["loss"] = torch.tensor(losses, dtype=torch.float32)
    tensors["grad_norm"] = torch.tensor(norms, dtype=torch.float32)
    tensors["lr"] = torch.tensor(lrs, dtype=torch.float32)
    for name, p in params64.items():
        add_param(tensors, name, p, start[name], params32[name])
    worst = max((tensors[f"gap32.{n}"].item(), n) for n in params64)
    path = os.path.join(FIXTURES, f"unet-train-{family}.safetensors")
    save_file(tensors, path, metadata={"prediction_type": prediction})
    print(f"{family} ({prediction}): losses {losses} (float64 {losses64}), grad norms {norms}, "
          f"lr {lrs}; torch float32 vs float64 parameters: worst {worst[0]:.2e} ({worst[1]}); "
          f"{path}: {os.path.getsize(path)} bytes")


def main():
    torch.set_num_threads(2)
    for family in CASES:
        make(family)


if __name__ == "__main__":
    main()
