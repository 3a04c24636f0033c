"""Checks a single-file checkpoint sdbatch wrote (sdbatch convert, or sdbatch train's
single_file) the way users load one: diffusers' StableDiffusionPipeline.from_single_file with
config= the diffusers folder it came from (StableDiffusionUpscalePipeline when the folder's
model_index.json names it). Every UNet, VAE and text encoder tensor must equal the folder's, as
from_pretrained loads it (float32 values, exactly). Optionally renders one image with both
pipelines (the upscaler: a 16x12 gradient upscaled) and checks the pixels are identical.

Usage: check_single_file.py FILE.safetensors FOLDER [--render]
Exit status 0 when all equal, 1 otherwise (the differing tensors printed)."""

import json
import os
import sys

import numpy as np
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionUpscalePipeline
from PIL import Image


def is_upscaler(folder):
    with open(os.path.join(folder, "model_index.json")) as f:
        return json.load(f)["_class_name"] == "StableDiffusionUpscalePipeline"


def load(path, folder, upscaler):
    common = dict(dtype=torch.float32, safety_checker=None, local_files_only=True)
    if upscaler:
        cls = StableDiffusionUpscalePipeline
    else:
        cls = StableDiffusionPipeline
        common["requires_safety_checker"] = False
    if folder is None:
        pipe = cls.from_pretrained(path, **common)
    else:
        pipe = cls.from_single_file(path, config=folder, **common)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def main():
    path, folder = sys.argv[1], sys.argv[2]
    upscaler = is_upscaler(folder)
    single, reference = load(path, folder, upscaler), load(folder, None, upscaler)
    bad = 0
    for sub in ("unet", "vae", "text_encoder"):
        got = getattr(single, sub).state_dict()
        want = getattr(reference, sub).state_dict()
        keys = sorted(set(got) | set(want))
        for k in keys:
            if k not in got or k not in want:
                print(f"{sub}: '{k}' only in the {'folder' if k in want else 'single file'}")
                bad += 1
            elif got[k].shape != want[k].shape or not torch.equal(got[k], want[k]):
                print(f"{sub}: '{k}' differs")
                bad += 1
        print(f"{sub}: {len(want)} tensors, {bad} differences so far")
    if "--render" in sys.argv[3:]:
        images = []
        for pipe in (single, reference):
            generator = torch.Generator("cpu").manual_seed(7)
            extra = {}
            if upscaler:
                ramp = np.linspace(0, 255, 16 * 12 * 3).reshape(12, 16, 3).astype(np.uint8)
                extra["image"] = Image.fromarray(ramp)
            out = pipe(
                "a red circle",
                num_inference_steps=3,
                guidance_scale=5.0,
                generator=generator,
                output_type="np",
                **extra,
            )
            images.append(torch.from_numpy(out.images))
        same = torch.equal(images[0], images[1])
        print(f"render: single file and folder images {'identical' if same else 'DIFFER'}")
        bad += 0 if same else 1
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
