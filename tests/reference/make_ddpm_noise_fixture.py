"""Writes tests/fixtures/ddpm-noise.safetensors for tests/test_ddpm_noise.c: DDPMScheduler.add_noise
with the x4 upscaler's low_res_scheduler config (stabilityai/stable-diffusion-x4-upscaler:
scaled_linear 0.0001..0.02, 1000 steps; written as tests/fixtures/ddpm-noise.json and loaded back
with from_config as the pipeline does) on x (1, 3, 6, 5) and noise of the same shape (seeded
normal) at noise levels 0, 20, 350 and 999: tensors "x", "noise", "out.<level>", float32.

Run from anywhere: python3 tests/reference/make_ddpm_noise_fixture.py (a second).
"""

import json
import os

import torch
from diffusers import DDPMScheduler
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.normpath(os.path.join(HERE, "..", "fixtures"))
CONFIG = {
    "_class_name": "DDPMScheduler",
    "beta_end": 0.02,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.0001,
    "clip_sample": True,
    "num_train_timesteps": 1000,
    "trained_betas": None,
    "variance_type": "fixed_small",
}


def main():
    path = os.path.join(FIXTURES, "ddpm-noise.json")
    with open(path, "w") as f:
        json.dump(CONFIG, f, indent=2)
    with open(path) as f:
        sched = DDPMScheduler.from_config(json.load(f))
    gen = torch.Generator().manual_seed(4)
    x = torch.randn((1, 3, 6, 5), generator=gen)
    noise = torch.randn((1, 3, 6, 5), generator=gen)
    out = {"x": x, "noise": noise}
    for level in (0, 20, 350, 999):
        t = torch.tensor([level], dtype=torch.long)
        out[f"out.{level}"] = sched.add_noise(x, noise, t).contiguous()
    save_file(out, os.path.join(FIXTURES, "ddpm-noise.safetensors"))


if __name__ == "__main__":
    main()
