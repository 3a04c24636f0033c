"""Writes tests/fixtures/vae-train-sd1.safetensors for tests/test_vae_train.c: three optimizer
steps of the tiny SD1 VAE (tests/fixtures/tiny-sd1/vae, AutoencoderKL.from_pretrained) on the LDM
autoencoder loss without discriminator and LPIPS, with given images and posterior noise per step:
    posterior = vae.encode(x).latent_dist          # DiagonalGaussianDistribution(moments)
    z = posterior.mean + posterior.std * eps       # posterior.sample() with the given eps
    x_rec = vae.decode(z).sample
    rec = (x - x_rec).abs().mean()   (case "l1")   or F.mse_loss(x_rec, x)   (case "mse")
    kl = posterior.kl().sum() / B                  # LDM's torch.sum(kl_loss) / kl_loss.shape[0]
    loss = rec + KL_WEIGHT kl
    loss.backward(); clip_grad_norm_(vae.parameters(), MAX_NORM)
    optimizer.step(); lr_scheduler.step(); optimizer.zero_grad()
with torch.optim.AdamW(lr LR, betas (0.5, 0.9), weight_decay 1e-2, eps 1e-8) (LDM's betas; a
weight decay so that it is exercised) and get_scheduler("cosine", num_warmup_steps 1,
num_training_steps 3). KL_WEIGHT is 1e-2 here, not LDM's 1e-6, so that the KL term's gradient
shows in the parameters.

As make_unet_train_fixtures.py (whose add_param this uses): the loop runs in float32 (the
per-step loss, its two terms, the gradient norm and the learning rate come from it) and in float64
(model, inputs and optimizer cast); the parameters stored are the float64 run's, with gap32.<name>
the float32 run's distance from them.

Tensors, each under "<case>." (l1, mse, l1_sat): images.s (2, 3, 32, 40) in [-1, 1], eps.s (2, 4, 4, 5)
for steps s = 0..2; loss, rec, kl, grad_norm, lr (3 each); param.<name>, rows.<name>,
stats.<name>, gap32.<name> after the last step.

Run from anywhere: python3 tests/reference/make_vae_train_fixtures.py (about 20 s).
"""

import os
import sys

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from diffusers.optimization import get_scheduler
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_unet_grad_fixtures import FIXTURES  # noqa: E402
from make_unet_train_fixtures import add_param  # noqa: E402

STEPS = 3
LR = 1e-3
MAX_NORM = 1.0
KL_WEIGHT = 1e-2
SAT_WEIGHT = 3.0
IMAGE = (2, 3, 32, 40)
SEED = 61


def load(dtype):
    return AutoencoderKL.from_pretrained(os.path.join(FIXTURES, "tiny-sd1", "vae")).to(dtype).train()


def train(case, batches, dtype):
    vae = load(dtype)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=LR, betas=(0.5, 0.9), weight_decay=1e-2,
                                  eps=1e-8)
    lr_scheduler = get_scheduler("cosine", optimizer=optimizer, num_warmup_steps=1,
                                 num_training_steps=STEPS)
    figures = {k: [] for k in ("loss", "rec", "kl", "grad_norm", "lr")}
    for images, eps in batches:
        x, eps = images.to(dtype), eps.to(dtype)
        posterior = vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * eps
        x_rec = vae.decode(z).sample
        if case == "l1":
            rec = (x - x_rec).abs().mean()
        elif case == "mse":
            rec = F.mse_loss(x_rec, x)
        else:
            weight = 1 + SAT_WEIGHT * ((x.amax(1, keepdim=True) - x.amin(1, keepdim=True)) / 2)
            rec = ((x - x_rec).abs() * weight).mean()
        kl = posterior.kl().sum() / x.shape[0]
        loss = rec + KL_WEIGHT * kl
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(vae.parameters(), MAX_NORM)
        figures["lr"].append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad()
        for k, v in (("loss", loss), ("rec", rec), ("kl", kl), ("grad_norm", norm)):
            figures[k].append(v.item())
    return figures, {n: p.detach().clone() for n, p in vae.named_parameters()}


def main():
    torch.set_num_threads(2)
    start = {n: p.detach().clone() for n, p in load(torch.float32).named_parameters()}
    lc = 4
    gen = torch.Generator("cpu").manual_seed(SEED)
    tensors = {}
    for case in ("l1", "mse", "l1_sat"):
        batches = []
        for s in range(STEPS):
            images = torch.rand(IMAGE, generator=gen) * 2 - 1
            eps = torch.randn((IMAGE[0], lc, IMAGE[2] // 8, IMAGE[3] // 8), generator=gen)
            batches.append((images, eps))
            tensors[f"{case}.images.{s}"] = images
            tensors[f"{case}.eps.{s}"] = eps
        figures, params32 = train(case, batches, torch.float32)
        figures64, params64 = train(case, batches, torch.float64)
        for k, v in figures.items():
            tensors[f"{case}.{k}"] = torch.tensor(v, dtype=torch.float32)
        stored = {}
        for name, p in params64.items():
            add_param(stored, name, p, start[name], params32[name])
        tensors.update({f"{case}.{k}": v for k, v in stored.items()})
        worst = max((stored[f"gap32.{n}"].item(), n) for n in params64)
        print(f"{case}: losses {figures['loss']} (float64 {figures64['loss']}), rec "
              f"{figures['rec']}, kl {figures['kl']}, grad norms {figures['grad_norm']}, lr "
              f"{figures['lr']}; torch float32 vs float64 parameters: worst {worst[0]:.2e} "
              f"({worst[1]})")
    path = os.path.join(FIXTURES, "vae-train-sd1.safetensors")
    save_file(tensors, path)
    print(f"{path}: {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
