#!/usr/bin/env python3
"""How far diffusers itself moves in fp16 and bf16 from its float32 results, on the tiny fixture
models: the scale against which tests/test_pipeline_cuda.c sets its reduced-precision tolerances.

Stages (the inputs of tests/fixtures/stages-*.safetensors, against their float32 outputs) and the
three txt2img cases of test_pipeline_cuda.c (against diffusers' own float32 renders), on the CPU.
Prints, per model and dtype: max |x - ref| / max |ref| for each stage and for the final latents,
and the mean / max absolute pixel difference (levels of 255). Writes nothing.

  python3 tests/reference/reduced_precision_error.py     # about 2 minutes on 2 cores
"""

import os

import numpy as np
import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from diffusers.utils import logging as diffusers_logging
from safetensors.torch import load_file
from transformers import CLIPTextModel

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}

# test_pipeline_cuda.c's render_cases: (name, scheduler, extra config, pipeline arguments, seeds)
CASES = [
    ("ddim batch 2", DDIMScheduler, {},
     dict(prompt=["a photo of an astronaut riding a horse", "a red cube on a table"],
          negative_prompt=["", "blurry"], guidance_scale=[7.5, 4.0], width=128, height=128),
     [0, 5]),
    ("euler_a no guidance 128x96", EulerAncestralDiscreteScheduler, {},
     dict(prompt=["an oil painting of a lighthouse"], guidance_scale=1.0, width=128, height=96),
     [7]),
    ("dpmpp_2m karras 96x128", DPMSolverMultistepScheduler,
     {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True},
     dict(prompt=["a bowl of fruit"], guidance_scale=5.0, width=96, height=128), [3]),
]


def rel(x, ref):
    return ((x.float() - ref.float()).abs().max() / ref.float().abs().max()).item()


def stage_errors(family, dtype):
    folder = os.path.join(FIXTURES, f"tiny-{family}")
    st = load_file(os.path.join(FIXTURES, f"stages-{family}.safetensors"))
    unet = UNet2DConditionModel.from_pretrained(os.path.join(folder, "unet"), torch_dtype=dtype)
    vae = AutoencoderKL.from_pretrained(os.path.join(folder, "vae"), torch_dtype=dtype)
    text = CLIPTextModel.from_pretrained(os.path.join(folder, "text_encoder"), dtype=dtype)
    out = {}
    with torch.no_grad():
        out["text.hidden"] = rel(text(st["text.ids"].long())[0], st["text.hidden"])
        for p in ("unet", "unet2"):
            got = unet(st[f"{p}.sample"].to(dtype), st[f"{p}.timestep"].float(),
                       st[f"{p}.context"].to(dtype)).sample
            out[f"{p}.out"] = rel(got, st[f"{p}.out"])
        for p in ("vae", "vae2"):
            out[f"{p}.image"] = rel(vae.decode(st[f"{p}.latent"].to(dtype)).sample,
                                    st[f"{p}.image"])
    return out


def render(pipe, case):
    name, scheduler, extra, kwargs, seeds = case
    pipe.scheduler = scheduler.from_config(pipe.scheduler.config, **extra)
    kwargs = dict(kwargs)
    guidance = kwargs.pop("guidance_scale")
    results = []
    # items one by one: diffusers takes one guidance scale per call
    for i, seed in enumerate(seeds):
        g = guidance[i] if isinstance(guidance, list) else guidance
        item = {k: ([v[i]] if isinstance(v, list) else v) for k, v in kwargs.items()}
        for output_type in ("latent", "np"):
            generator = torch.Generator("cpu").manual_seed(seed)
            r = pipe(**item, guidance_scale=g, num_inference_steps=10, generator=generator,
                     output_type=output_type).images
            results.append(r.float() if output_type == "latent"
                           else np.round(r * 255).astype(np.int32))
    return results[0::2], results[1::2]


def render_errors(family):
    folder = os.path.join(FIXTURES, f"tiny-{family}")
    renders = {}
    for key, dtype in [("fp32", torch.float32)] + list(DTYPES.items()):
        pipe = StableDiffusionPipeline.from_pretrained(folder, torch_dtype=dtype,
                                                       safety_checker=None,
                                                       requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        renders[key] = {case[0]: render(pipe, case) for case in CASES}
    for key in DTYPES:
        for case in CASES:
            (lat32, img32), (lat, img) = renders["fp32"][case[0]], renders[key][case[0]]
            for i in range(len(lat)):
                d = np.abs(img[i] - img32[i])
                print(f"{family} {key} {case[0]} item {i}: latents {rel(lat[i], lat32[i]):.4f}, "
                      f"pixels mean {d.mean():.3f} max {d.max()}")


def main():
    torch.manual_seed(0)
    diffusers_logging.set_verbosity_error()
    for family in ("sd1", "sd2"):
        for key, dtype in DTYPES.items():
            errors = stage_errors(family, dtype)
            print(f"{family} {key} stages: " +
                  ", ".join(f"{k} {v:.4f}" for k, v in errors.items()))
        render_errors(family)


if __name__ == "__main__":
    main()
