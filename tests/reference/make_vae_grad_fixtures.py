"""Writes tests/fixtures/vae-grad-sd1.safetensors for tests/test_vae_backward.c: torch autograd's
gradients of the tiny SD1 VAE's two halves (tests/fixtures/tiny-sd1/vae, loaded with
AutoencoderKL.from_pretrained as users load models, cast to float32), each through a loss
sum(w * output) with a fixed random w, so that d(loss)/d(output) = w:

  decoder  image = vae.decode(z).sample (post_quant_conv, decoder), loss_dec = sum(w_dec * image)
           -> dz and the gradients of post_quant_conv.* and decoder.*
  encoder  moments = vae.quant_conv(vae.encoder(image)) (latent_dist's parameters),
           loss_enc = sum(w_enc * moments) -> dimage and the gradients of encoder.* and quant_conv.*

The image is 2 x 3 x 32 x 40 (the latent 4 x 5: an odd latent width, up-sampled 5 -> 10 -> 20 ->
40, and an encoder whose downsamplers see 40 -> 20 -> 10 -> 5 columns). Inputs from a seeded
torch.Generator('cpu'); rerunning gives the same file byte for byte on the same package
versions. The forward outputs stored are torch's float32 ones; the gradients are torch's in
float64 (model and inputs cast) rounded to float32, and the script bounds torch's float32
gradients' gap to them (max |g32 - g64| / max |g64| per tensor, at most 1e-5), as
make_unet_grad_fixtures.py does, whose storage rules (whole gradients up to 2048 values, larger
ones as evenly spaced rows plus four whole-tensor figures) and helpers this script uses.

Gradients zero in exact arithmetic: the tiny VAE's levels 0 and 1 have 32 channels in 32 groups,
so each GroupNorm there normalizes one channel, and a per-channel constant added just before one
(the bias of a conv whose output goes straight into a GroupNorm: resnets' conv1 at those levels,
conv_in of the encoder, ...) has no effect on the loss. They are counted (float64 max below 1e-9
of the model's largest gradient) and torch's float32 values bounded by 1e-6 of that instead.

Run from anywhere: python3 tests/reference/make_vae_grad_fixtures.py (a few seconds).

Tensors:
  z (2, 4, 4, 5), w_dec (2, 3, 32, 40), image_dec (2, 3, 32, 40)   decoder input, weight, output
  image (2, 3, 32, 40), w_enc (2, 8, 4, 5), moments (2, 8, 4, 5)   encoder input, weight, output
  dz, dimage                                                       input gradients
  grad.<param>, rows.<param>, stats.<param>                         as make_unet_grad_fixtures.py
"""

import os
import sys

import torch
from diffusers import AutoencoderKL
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_unet_grad_fixtures import FIXTURES, GAP_LIMIT, add_gradient, gap  # noqa: E402

SEED = 51
IMAGE = (2, 3, 32, 40)


def run(vae, z, image, w_dec, w_enc, dtype):
    vae = vae.to(dtype)
    vae.zero_grad(set_to_none=True)
    zz = z.detach().to(dtype).requires_grad_(True)
    x = image.detach().to(dtype).requires_grad_(True)
    decoded = vae.decode(zz).sample
    moments = vae.quant_conv(vae.encoder(x))
    loss = (decoded * w_dec.to(dtype)).sum() + (moments * w_enc.to(dtype)).sum()
    loss.backward()
    grads = {name: p.grad.detach().clone() for name, p in vae.named_parameters()}
    return decoded.detach(), moments.detach(), zz.grad.detach(), x.grad.detach(), grads


def main():
    torch.set_num_threads(2)
    vae = AutoencoderKL.from_pretrained(os.path.join(FIXTURES, "tiny-sd1", "vae")).float().train()
    gen = torch.Generator("cpu").manual_seed(SEED)
    b, _, h, w = IMAGE
    lc = vae.config.latent_channels
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    z = torch.randn((b, lc, h // factor, w // factor), generator=gen)
    image = torch.rand(IMAGE, generator=gen) * 2 - 1
    w_dec = torch.randn(IMAGE, generator=gen)
    w_enc = torch.randn((b, 2 * lc, h // factor, w // factor), generator=gen)

    decoded, moments, dz, dimage, grads = run(vae, z, image, w_dec, w_enc, torch.float32)
    _, _, dz64, dimage64, grads64 = run(vae, z, image, w_dec, w_enc, torch.float64)
    unused = [n for n, g in grads64.items() if g is None]
    if unused:
        raise SystemExit(f"parameters without gradient: {unused}")
    scale = max(g.abs().max().item() for g in grads64.values())
    zero = [n for n in grads if grads64[n].abs().max().item() < 1e-9 * scale]
    worst = max(
        [(gap(dz, dz64), "dz"), (gap(dimage, dimage64), "dimage")]
        + [(gap(grads[n], grads64[n]), n) for n in grads if n not in zero]
    )
    worst_zero = max(grads[n].abs().max().item() / scale for n in zero) if zero else 0.0
    print(
        f"float32 vs float64 gap {worst[0]:.2e} ({worst[1]}); {len(zero)} gradients zero in exact "
        f"arithmetic ({', '.join(zero)}), float32 at most {worst_zero:.1e} of the largest "
        f"gradient {scale:.3f}"
    )
    if worst[0] > GAP_LIMIT or worst_zero > 1e-6:
        raise SystemExit("float32 gradients too far from float64")

    tensors = {
        "z": z,
        "w_dec": w_dec,
        "image_dec": decoded.contiguous(),
        "image": image,
        "w_enc": w_enc,
        "moments": moments.contiguous(),
        "dz": dz64.float().contiguous(),
        "dimage": dimage64.float().contiguous(),
    }
    for name, g in grads64.items():
        add_gradient(tensors, name, g)
    path = os.path.join(FIXTURES, "vae-grad-sd1.safetensors")
    save_file(tensors, path, metadata={"params": str(len(grads))})
    print(f"{path}: {os.path.getsize(path)} bytes, {len(grads)} parameter gradients")


if __name__ == "__main__":
    main()
