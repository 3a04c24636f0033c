"""Writes tests/fixtures/odd-size-sd1.safetensors: diffusers' handling of latent sides that are not
multiples of the UNet's 2^(levels - 1) (there the up blocks resize to the skips' sizes,
upsample_size, instead of doubling), for tests/test_odd_size.c. Model: tests/fixtures/tiny-sd1
(3 UNet levels, so latent sides must be multiples of 4 to halve cleanly), loaded in float32.

Tensors:
  unet.sample (1, 4, 18, 14) float32, seed 31; unet.timestep (1,) = 981;
  unet.context (1, 77, 32): the tiny text encoder's output for PROMPT; unet.out (1, 4, 18, 14).
  image (1, 144, 112, 3) float16 holding the uint8 values (img * 255).round() of
  StableDiffusionPipeline(PROMPT, height=144, width=112, 4 steps, DDIM, guidance 7.5,
  generator cpu seed 5, output_type="np"); image.latents (1, 4, 18, 14) float32: the same call
  with output_type="latent".
Metadata "case": the pipeline call's settings as JSON.

Run from anywhere: python3 tests/reference/make_odd_size_fixture.py (deterministic, ~15 s).
"""

import json
import os

import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
MODEL = os.path.join(FIXTURES, "tiny-sd1")
OUT = os.path.join(FIXTURES, "odd-size-sd1.safetensors")

PROMPT = "a photo of an astronaut riding a horse"
UNET_SHAPE, UNET_SEED, TIMESTEP = (1, 4, 18, 14), 31, 981.0
CASE = {
    "prompt": PROMPT,
    "height": 144,
    "width": 112,
    "steps": 4,
    "scheduler": "ddim",
    "guidance_scale": 7.5,
    "seed": 5,
}


def main():
    pipe = StableDiffusionPipeline.from_pretrained(
        MODEL,
        torch_dtype=torch.float32,
        safety_checker=None,
        requires_safety_checker=False,
        local_files_only=True,
    )
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    factor = 2 ** (len(pipe.unet.config.block_out_channels) - 1)
    if UNET_SHAPE[2] % factor == 0 or CASE["height"] // 8 % factor == 0:
        raise AssertionError("the sizes must exercise diffusers' upsample_size path")
    out = {}
    with torch.no_grad():
        ids = pipe.tokenizer(
            [PROMPT], padding="max_length", max_length=77, truncation=True, return_tensors="pt"
        ).input_ids
        context = pipe.text_encoder(ids).last_hidden_state
        sample = torch.randn(
            UNET_SHAPE, generator=torch.Generator("cpu").manual_seed(UNET_SEED), dtype=torch.float32
        )
        t = torch.tensor([TIMESTEP])
        out["unet.sample"], out["unet.timestep"], out["unet.context"] = sample, t, context
        out["unet.out"] = pipe.unet(sample, t, encoder_hidden_states=context).sample

    def call(output_type):
        return pipe(
            CASE["prompt"],
            height=CASE["height"],
            width=CASE["width"],
            num_inference_steps=CASE["steps"],
            guidance_scale=CASE["guidance_scale"],
            generator=torch.Generator("cpu").manual_seed(CASE["seed"]),
            output_type=output_type,
        ).images

    image = call("np")
    out["image"] = torch.from_numpy((image * 255).round()).to(torch.float16)
    out["image.latents"] = call("latent")
    out = {k: v.detach().clone().contiguous() for k, v in out.items()}
    save_file(out, OUT, metadata={"case": json.dumps(CASE, sort_keys=True)})
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
