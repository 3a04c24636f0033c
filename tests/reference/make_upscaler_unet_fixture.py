"""Writes tests/fixtures/upscaler-unet/ (config.json + diffusion_pytorch_model.safetensors): a tiny
UNet2DConditionModel with what the x4 upscaler's UNet has beyond SD 2's — 7 input channels, a
class embedding (num_class_embeds; the pipeline passes the noise level as the label) and
only_cross_attention per down block (the up blocks take the list reversed; the mid block ignores
it) — and tests/fixtures/upscaler-unet/stages.safetensors for tests/test_unet.c:

  sample (2, 7, 12, 10) seeded normal, timestep (1,) = 777, labels (2,) int32 = [20, 99],
  context (2, 5, 24) seeded normal, out (2, 4, 12, 10) = unet(sample, t, context,
  class_labels=labels).sample, float32 on the CPU.

All parameters randomized (norm weights 1 + 0.25 N(0, 1), the rest N(0, 0.1)).
Run from anywhere: python3 tests/reference/make_upscaler_unet_fixture.py (a few seconds).
"""

import os

import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "upscaler-unet")


def main():
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=7,
        out_channels=4,
        block_out_channels=(16, 32, 32),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=24,
        attention_head_dim=4,
        norm_num_groups=8,
        use_linear_projection=True,
        num_class_embeds=100,
        only_cross_attention=[True, True, False],
    ).eval()
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in unet.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            is_norm = p.ndim == 1 and "norm" in name and name.endswith("weight")
            p.copy_(1.0 + 0.25 * noise if is_norm else 0.1 * noise)
    unet.save_pretrained(OUT, safe_serialization=True)
    unet = UNet2DConditionModel.from_pretrained(OUT).eval()
    sample = torch.randn((2, 7, 12, 10), generator=gen)
    context = torch.randn((2, 5, 24), generator=gen)
    labels = torch.tensor([20, 99], dtype=torch.long)
    t = torch.tensor([777.0])
    with torch.no_grad():
        out = unet(sample, t, encoder_hidden_states=context, class_labels=labels).sample
    save_file(
        {
            "sample": sample,
            "timestep": t,
            "labels": labels.to(torch.int32),
            "context": context,
            "out": out.contiguous(),
        },
        os.path.join(OUT, "stages.safetensors"),
    )
    print({k: tuple(v.shape) for k, v in unet.state_dict().items() if "class" in k or "attn1.to_k" in k})


if __name__ == "__main__":
    main()
