"""Writes tests/fixtures/vae-tiled-sd1.safetensors: diffusers' tiled VAE decode (enable_tiling) of
one latent by the tiny SD 1.x VAE (tests/fixtures/tiny-sd1/vae, fp16 weights loaded as float32),
for tests/test_vae_tiled.c.

The tiny VAE's sample_size (128) would tile only latents over 16 pixels; the tile is shrunk to
64 px (latent tile 8, stride 6, blend extent 16 px, 48 px kept per tile) so that a (1, 4, 13, 19)
latent decodes in 3 x 4 overlapping tiles, covering full tiles, a partial tile in the middle row
(7 latent rows), and edge tiles 8 px wide or high, narrower than the blend extent.

Tensors (float32): vae.latent (1, 4, 13, 19), already divided by scaling_factor;
vae.tiled_image (1, 3, 104, 152). Metadata: tile_sample_size, tile_latent_size.

Run from anywhere: python3 tests/reference/make_vae_tiling_fixture.py (deterministic, ~2 s).
"""

import os

import torch
from diffusers import AutoencoderKL
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
OUT = os.path.join(FIXTURES, "vae-tiled-sd1.safetensors")

TILE_SAMPLE, TILE_LATENT = 64, 8
LATENT_SHAPE = (1, 4, 13, 19)
SEED = 21


def main():
    torch.use_deterministic_algorithms(True)
    vae = AutoencoderKL.from_pretrained(os.path.join(FIXTURES, "tiny-sd1", "vae"),
                                        torch_dtype=torch.float32).eval()
    vae.enable_tiling()
    vae.tile_sample_min_size = TILE_SAMPLE
    vae.tile_latent_min_size = TILE_LATENT
    generator = torch.Generator("cpu").manual_seed(SEED)
    latent = torch.randn(LATENT_SHAPE, generator=generator, dtype=torch.float32)
    with torch.no_grad():
        tiled = vae.decode(latent).sample
        vae.disable_tiling()
        whole = vae.decode(latent).sample
    # the tiled decode must really differ from the whole one, or the fixture proves nothing
    assert (tiled - whole).abs().max().item() > 1e-2
    save_file({"vae.latent": latent.contiguous(), "vae.tiled_image": tiled.contiguous()}, OUT,
              metadata={"tile_sample_size": str(TILE_SAMPLE), "tile_latent_size": str(TILE_LATENT)})
    print(f"{os.path.relpath(OUT, ROOT)}: {os.path.getsize(OUT)} bytes, "
          f"tiled vs whole max |diff| {(tiled - whole).abs().max().item():.4f}")


if __name__ == "__main__":
    main()
