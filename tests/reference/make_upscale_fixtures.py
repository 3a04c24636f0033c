"""Writes the x4 upscaler references for tests/test_upscale.c:

tests/fixtures/tiny-upscaler/: a tiny StableDiffusionUpscalePipeline in diffusers layout: its text
  encoder, tokenizer and scheduler are symlinks to tiny-sd2's (DDIM, v-prediction), its VAE the
  three-level factor-4 one of make_upscaler_vae_fixture.py (symlink), low_res_scheduler/ the real
  upscaler's DDPMScheduler config, max_noise_level 350 in model_index.json, and a small random
  UNet with the upscaler's features (7 input channels: the latents and the noised low-res image;
  1000 class embeddings for the noise level; only_cross_attention per block), fp16.
tests/fixtures/upscale/upscale.safetensors: case.<k>.image (4h, 4w, 3) float16 holding uint8
  values and case.<k>.latents (1, 4, h, w), the pipeline's output (output_type "np", and
  "latent") for case k of the "cases" metadata (JSON): low-res inputs of 16 x 12 (a multiple of
  4) and 18 x 13 (resized down to 16 x 12 with bicubic, as diffusers' VaeImageProcessor does),
  noise levels 0, 20 and 350, guidance 9 (diffusers' default), 4 and 1 (no CFG), schedulers ddim,
  euler_a and dpmpp_2m, cpu and cuda generators (emulated as make_img2img_fixtures.py does).

Run from anywhere after make_upscaler_vae_fixture.py:
python3 tests/reference/make_upscale_fixtures.py (deterministic, ~10 s).
"""

import json
import os
import sys

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_img2img_fixtures as img2img  # noqa: E402

from diffusers import DDPMScheduler, StableDiffusionUpscalePipeline, UNet2DConditionModel  # noqa: E402
from diffusers.utils import load_image  # noqa: E402

ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
SD2 = os.path.join(FIXTURES, "tiny-sd2")
MODEL = os.path.join(FIXTURES, "tiny-upscaler")
OUT_DIR = os.path.join(FIXTURES, "upscale")
OUT = os.path.join(OUT_DIR, "upscale.safetensors")

PROMPT = "a sharp photo of a red barn"
# input file, noise level, guidance, scheduler, generator, seed
CASES = [
    ("low-16x12.png", 20, 9.0, "ddim", "cpu", 41),
    ("low-18x13.png", 350, 4.0, "euler_a", "cuda", 42),
    ("low-16x12.png", 0, 1.0, "dpmpp_2m", "cpu", 43),
    ("low-18x13.jpg", 100, 9.0, "ddim", "cuda", 44),
]
STEPS = 4


def write_model():
    os.makedirs(MODEL, exist_ok=True)
    links = {part: os.path.join("..", "tiny-sd2", part) for part in ("text_encoder", "tokenizer", "scheduler")}
    links["vae"] = os.path.join("..", "upscaler-vae")
    for part, target in links.items():
        link = os.path.join(MODEL, part)
        if not os.path.islink(link):
            os.symlink(target, link)
    # the real stabilityai/stable-diffusion-x4-upscaler low_res_scheduler
    DDPMScheduler(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="scaled_linear",
                  clip_sample=True, variance_type="fixed_small").save_pretrained(
        os.path.join(MODEL, "low_res_scheduler"))
    import make_fixtures

    torch.manual_seed(51)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=7,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=32,
        use_linear_projection=True,
        num_class_embeds=1000,
        only_cross_attention=[True, False],
    )
    make_fixtures.spread_weights(unet, 52)
    unet.eval().half().save_pretrained(os.path.join(MODEL, "unet"), safe_serialization=True)
    with open(os.path.join(SD2, "model_index.json")) as f:
        index = json.load(f)
    index["_class_name"] = "StableDiffusionUpscalePipeline"
    index["low_res_scheduler"] = ["diffusers", "DDPMScheduler"]
    index["max_noise_level"] = 350
    index["watermarker"] = [None, None]
    for key in ("requires_safety_checker", "image_encoder"):
        index.pop(key, None)
    with open(os.path.join(MODEL, "model_index.json"), "w") as f:
        json.dump(index, f, indent=2, sort_keys=True)
        f.write("\n")


def write_inputs():
    os.makedirs(OUT_DIR, exist_ok=True)
    pic = img2img.picture(12, 16, 7).astype(np.uint8)
    Image.fromarray(pic).save(os.path.join(OUT_DIR, "low-16x12.png"))
    pic = img2img.picture(13, 18, 8).astype(np.uint8)
    Image.fromarray(pic).save(os.path.join(OUT_DIR, "low-18x13.png"))
    Image.fromarray(pic).save(os.path.join(OUT_DIR, "low-18x13.jpg"), quality=90)


def main():
    write_model()
    write_inputs()
    img2img.install_philox_randn()
    pipe = StableDiffusionUpscalePipeline.from_pretrained(MODEL, torch_dtype=torch.float32, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    tensors, cases = {}, []
    for k, (name, level, guidance, sched, gen_kind, seed) in enumerate(CASES):
        pipe.scheduler = img2img.SCHEDULERS[sched].from_config(pipe.scheduler.config)
        outs = {}
        for output_type in ("np", "latent"):
            gen = (img2img.PhiloxGenerator(seed) if gen_kind == "cuda"
                   else torch.Generator("cpu").manual_seed(seed))
            with torch.no_grad():
                outs[output_type] = pipe(prompt=PROMPT, image=load_image(os.path.join(OUT_DIR, name)),
                                         noise_level=level, num_inference_steps=STEPS,
                                         guidance_scale=guidance, generator=gen,
                                         output_type=output_type).images
        image = outs["np"][0]
        tensors[f"case.{k}.image"] = torch.from_numpy((image * 255).round().astype("uint8")).to(torch.float16)
        tensors[f"case.{k}.latents"] = outs["latent"].float()
        cases.append(dict(input=name, noise_level=level, guidance_scale=guidance, scheduler=sched, rng=gen_kind,
                          seed=seed, prompt=PROMPT, steps=STEPS, width=image.shape[1], height=image.shape[0]))
        print(f"case {k}: {name} level {level} cfg {guidance} {sched} {gen_kind} -> {image.shape}", flush=True)
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    save_file(tensors, OUT, metadata={"cases": json.dumps(cases)})
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
