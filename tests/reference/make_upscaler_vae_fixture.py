"""Writes tests/fixtures/upscaler-vae/ (config.json + diffusion_pytorch_model.safetensors, decoder
and encoder) and upscaler-vae/stages.safetensors for tests/test_vae_x4.c: a tiny AutoencoderKL
shaped like the x4 upscaler's VAE — three levels, so the decoder upsamples by 4, and
scaling_factor 0.08333 — with latent (1, 4, 6, 5) (seeded normal, the value given to decode, i.e.
already divided by the scaling factor) and image = vae.decode(latent).sample (1, 3, 24, 20),
float32 on the CPU. Norm weights 1 + 0.25 N(0, 1), everything else N(0, 0.1).

Run from anywhere: python3 tests/reference/make_upscaler_vae_fixture.py (a second).
"""

import os

import torch
from diffusers import AutoencoderKL
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.normpath(os.path.join(HERE, "..", "fixtures", "upscaler-vae"))


def main():
    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=32,
        scaling_factor=0.08333,
    ).eval()
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, p in vae.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            is_norm = p.ndim == 1 and "norm" in name and name.endswith("weight")
            p.copy_(1.0 + 0.25 * noise if is_norm else 0.1 * noise)
    vae.save_pretrained(OUT, safe_serialization=True)
    vae = AutoencoderKL.from_pretrained(OUT).eval()
    latent = torch.randn((1, 4, 6, 5), generator=gen)
    with torch.no_grad():
        image = vae.decode(latent).sample
    save_file({"latent": latent, "image": image.contiguous()}, os.path.join(OUT, "stages.safetensors"))


if __name__ == "__main__":
    main()
