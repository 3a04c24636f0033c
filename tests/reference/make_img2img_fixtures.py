"""Writes the image-to-image and inpainting references for tests/test_img2img.c:

tests/fixtures/tiny-sd1-inpaint/: a tiny 9-channel inpainting model in diffusers layout
  (StableDiffusionInpaintPipeline; its text encoder, tokenizer, VAE and scheduler are symlinks to
  tiny-sd1's, its UNet is a small random one with in_channels 9, fp16).
tests/fixtures/img2img/: the inputs (init.png 70x45 RGB, init16.png the same picture as 16-bit
  RGB, init.jpg, mask-soft.png, mask-hard.png) and img2img.safetensors:
  stage.image (1, 3, 40, 64): VaeImageProcessor.preprocess(load_image(init.png)) (70x45 is not a
    multiple of 8: diffusers resizes to 64x40);
  stage.moments (1, 8, 5, 8): tiny-sd1's vae.encode(stage.image).latent_dist.parameters;
  stage.latents (1, 4, 5, 8): latent_dist.sample(Generator('cpu').manual_seed(5)) * scaling;
  case.<k>.image (40, 64, 3) float16 holding uint8 values and case.<k>.latents (1, 4, 5, 8): the
    pipeline's output (output_type "np", and "latent") for case k of the "cases" metadata (JSON):
    StableDiffusionImg2ImgPipeline and StableDiffusionInpaintPipeline (9-channel model, and the
    4-channel tiny-sd1 with per-step blending), schedulers ddim, pndm, lms, euler, euler_a, heun,
    dpmpp_2m, strengths 0.3 / 0.75 / 1.0, soft and hard masks, PNG, 16-bit PNG and JPEG inputs,
    generators "cpu" (torch.Generator('cpu')) and "cuda".

The "cuda" cases need torch.Generator('cuda') numbers without a GPU: every diffusers randn_tensor
is replaced, for those cases, by the numpy emulation of torch's CUDA Philox randn in
make_rng_fixtures.py (checked there against torch's own numbers), drawn call after call as one
generator would.

Run from anywhere: python3 tests/reference/make_img2img_fixtures.py (deterministic, ~1 min).
"""

import json
import math
import os
import sys

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_rng_fixtures  # noqa: E402

import diffusers  # noqa: E402
from diffusers import (  # noqa: E402
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionInpaintPipeline,
    UNet2DConditionModel,
)
from diffusers.image_processor import VaeImageProcessor  # noqa: E402
from diffusers.utils import load_image  # noqa: E402

ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
SD1 = os.path.join(FIXTURES, "tiny-sd1")
INPAINT = os.path.join(FIXTURES, "tiny-sd1-inpaint")
OUT_DIR = os.path.join(FIXTURES, "img2img")
OUT = os.path.join(OUT_DIR, "img2img.safetensors")

PROMPT = "a photo of a cat on a red sofa"
WIDTH, HEIGHT = 64, 40
SCHEDULERS = {
    "ddim": DDIMScheduler,
    "pndm": PNDMScheduler,
    "lms": LMSDiscreteScheduler,
    "euler": EulerDiscreteScheduler,
    "euler_a": EulerAncestralDiscreteScheduler,
    "heun": HeunDiscreteScheduler,
    "dpmpp_2m": DPMSolverMultistepScheduler,
}
# pipeline, model, scheduler, strength, init file, mask file, generator, seed
CASES = [
    ("img2img", "tiny-sd1", "ddim", 0.75, "init.png", None, "cpu", 1),
    ("img2img", "tiny-sd1", "euler_a", 0.3, "init.jpg", None, "cpu", 2),
    ("img2img", "tiny-sd1", "dpmpp_2m", 1.0, "init16.png", None, "cpu", 3),
    ("img2img", "tiny-sd1", "lms", 0.75, "init.png", None, "cuda", 4),
    ("img2img", "tiny-sd1", "heun", 0.75, "init.png", None, "cpu", 5),
    ("img2img", "tiny-sd1", "pndm", 0.75, "init.jpg", None, "cuda", 6),
    ("inpaint", "tiny-sd1-inpaint", "ddim", 1.0, "init.png", "mask-hard.png", "cpu", 7),
    ("inpaint", "tiny-sd1-inpaint", "euler_a", 0.75, "init.png", "mask-soft.png", "cuda", 8),
    ("inpaint", "tiny-sd1-inpaint", "dpmpp_2m", 0.3, "init.jpg", "mask-hard.png", "cpu", 9),
    ("inpaint", "tiny-sd1", "ddim", 0.75, "init.png", "mask-hard.png", "cpu", 10),
    ("inpaint", "tiny-sd1", "euler", 1.0, "init.png", "mask-soft.png", "cuda", 11),
    ("inpaint", "tiny-sd1", "heun", 0.75, "init16.png", "mask-hard.png", "cpu", 12),
    ("inpaint", "tiny-sd1", "euler_a", 1.0, "init.png", "mask-hard.png", "cpu", 13),
]
STEPS, GUIDANCE = 5, 7.5


class PhiloxGenerator:
    """torch.Generator('cuda').manual_seed(seed) as make_rng_fixtures emulates it."""

    def __init__(self, seed):
        self.seed = seed
        self.calls = 0

    def randn(self, shape):
        n = math.prod(shape)
        values = [make_rng_fixtures.cuda_randn_value(self.seed, self.calls, i) for i in range(n)]
        self.calls += 1
        return torch.tensor(np.array(values, dtype=np.float32)).reshape(shape)


def install_philox_randn():
    """Every diffusers module's randn_tensor draws from a PhiloxGenerator when given one."""
    original = diffusers.utils.torch_utils.randn_tensor

    def randn_tensor(shape, generator=None, device=None, dtype=None, layout=None, **kwargs):
        gen = generator[0] if isinstance(generator, list) and len(generator) == 1 else generator
        if isinstance(gen, PhiloxGenerator):
            return gen.randn(tuple(shape)).to(dtype=dtype or torch.float32)
        return original(shape, generator=generator, device=device, dtype=dtype, layout=layout, **kwargs)

    for name, module in list(sys.modules.items()):
        if name.startswith("diffusers") and getattr(module, "randn_tensor", None) is original:
            module.randn_tensor = randn_tensor


def picture(h, w, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / (w - 1), y * 255 / (h - 1), 128 + 100 * np.sin(x / 5.0 + y / 7.0)], -1)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255)


def write_inputs():
    os.makedirs(OUT_DIR, exist_ok=True)
    pic = picture(45, 70, 3)
    Image.fromarray(pic.astype(np.uint8)).save(os.path.join(OUT_DIR, "init.png"))
    Image.fromarray(pic.astype(np.uint8)).save(os.path.join(OUT_DIR, "init.jpg"), quality=90)
    # 16-bit RGB: PIL keeps the high byte, so the picture's 8-bit values times 257 plus noise
    # in the low byte
    low = np.random.default_rng(4).integers(0, 256, pic.shape)
    sixteen = (pic.astype(np.uint16) * 256 + low).astype(">u2")
    write_png16(os.path.join(OUT_DIR, "init16.png"), sixteen)
    y, x = np.mgrid[0:45, 0:70]
    soft = np.clip((x - 20) * 6 + y * 2, 0, 255).astype(np.uint8)
    Image.fromarray(soft).convert("RGB").save(os.path.join(OUT_DIR, "mask-soft.png"))
    hard = np.zeros((45, 70), np.uint8)
    hard[10:35, 15:50] = 255
    Image.fromarray(hard).save(os.path.join(OUT_DIR, "mask-hard.png"))


def write_png16(path, rgb16):
    import struct
    import zlib

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    h, w, _ = rgb16.shape
    raw = b"".join(b"\x00" + rgb16[r].tobytes() for r in range(h))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def write_inpaint_model():
    """tiny-sd1-inpaint: tiny-sd1's parts (symlinked) and a small 9-channel UNet."""
    sys.path.insert(0, HERE)
    import make_fixtures

    os.makedirs(INPAINT, exist_ok=True)
    for part in ("text_encoder", "tokenizer", "vae", "scheduler"):
        link = os.path.join(INPAINT, part)
        if not os.path.islink(link):
            os.symlink(os.path.join("..", "tiny-sd1", part), link)
    torch.manual_seed(77)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=9,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=32,
    )
    make_fixtures.spread_weights(unet, 78)
    unet.eval().half().save_pretrained(os.path.join(INPAINT, "unet"), safe_serialization=True)
    with open(os.path.join(SD1, "model_index.json")) as f:
        index = json.load(f)
    index["_class_name"] = "StableDiffusionInpaintPipeline"
    with open(os.path.join(INPAINT, "model_index.json"), "w") as f:
        json.dump(index, f, indent=2, sort_keys=True)
        f.write("\n")


def load(folder, cls):
    pipe = cls.from_pretrained(folder, torch_dtype=torch.float32, safety_checker=None,
                               requires_safety_checker=False, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run_case(pipes, case):
    kind, model, sched, strength, init, mask, gen_kind, seed = case
    pipe = pipes[(kind, model)]
    pipe.scheduler = SCHEDULERS[sched].from_config(pipe.scheduler.config)
    outs = {}
    for output_type in ("np", "latent"):
        gen = PhiloxGenerator(seed) if gen_kind == "cuda" else torch.Generator("cpu").manual_seed(seed)
        kwargs = dict(prompt=PROMPT, image=load_image(os.path.join(OUT_DIR, init)), strength=strength,
                      num_inference_steps=STEPS, guidance_scale=GUIDANCE, generator=gen,
                      output_type=output_type)
        if kind == "inpaint":
            kwargs.update(mask_image=load_image(os.path.join(OUT_DIR, mask)), height=HEIGHT, width=WIDTH)
        with torch.no_grad():
            outs[output_type] = pipe(**kwargs).images
    pixels = torch.from_numpy((outs["np"][0] * 255).round().astype("uint8")).to(torch.float16)
    return pixels, outs["latent"].float()


def main():
    write_inputs()
    write_inpaint_model()
    install_philox_randn()
    tensors = {}
    img2img = load(SD1, StableDiffusionImg2ImgPipeline)
    with torch.no_grad():
        image = VaeImageProcessor(vae_scale_factor=8).preprocess(load_image(os.path.join(OUT_DIR, "init.png")))
        dist = img2img.vae.encode(image).latent_dist
        tensors["stage.image"] = image
        tensors["stage.moments"] = dist.parameters
        gen = torch.Generator("cpu").manual_seed(5)
        tensors["stage.latents"] = dist.sample(gen) * img2img.vae.config.scaling_factor
    pipes = {
        ("img2img", "tiny-sd1"): img2img,
        ("inpaint", "tiny-sd1"): load(SD1, StableDiffusionInpaintPipeline),
        ("inpaint", "tiny-sd1-inpaint"): load(INPAINT, StableDiffusionInpaintPipeline),
    }
    cases = []
    for k, case in enumerate(CASES):
        pixels, latents = run_case(pipes, case)
        tensors[f"case.{k}.image"] = pixels
        tensors[f"case.{k}.latents"] = latents
        kind, model, sched, strength, init, mask, gen_kind, seed = case
        cases.append(dict(pipeline=kind, model=model, scheduler=sched, strength=strength, init=init,
                          mask=mask, rng=gen_kind, seed=seed, prompt=PROMPT, steps=STEPS,
                          guidance_scale=GUIDANCE, width=WIDTH, height=HEIGHT))
        print(f"case {k}: {kind} {model} {sched} strength {strength} {gen_kind}", flush=True)
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    save_file(tensors, OUT, metadata={"cases": json.dumps(cases)})
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
