"""Checks a single-file checkpoint sdbatch wrote (sdbatch convert, or sdbatch train's
single_file) the way users load one: diffusers' StableDiffusionPipeline.from_single_file with
config= the diffusers folder it came from. Every UNet, VAE and text encoder tensor must equal the
folder's, as from_pretrained loads it (float32 values, exactly). Optionally renders one image with
both pipelines and checks the pixels are identical.

Usage: check_single_file.py FILE.safetensors FOLDER [--render]
Exit status 0 when all equal, 1 otherwise (the differing tensors printed)."""

import sys

import torch
from diffusers import StableDiffusionPipeline


def load(path, folder):
    common = dict(
        dtype=torch.float32,
        safety_checker=None,
        requires_safety_checker=False,
        local_files_only=True,
    )
    if folder is None:
        pipe = StableDiffusionPipeline.from_pretrained(path, **common)
    else:
        pipe = StableDiffusionPipeline.from_single_file(path, config=folder, **common)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def main():
    path, folder = sys.argv[1], sys.argv[2]
    single, reference = load(path, folder), load(folder, None)
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
            out = pipe(
                "a red circle",
                num_inference_steps=3,
                guidance_scale=5.0,
                generator=generator,
                output_type="np",
            )
            images.append(torch.from_numpy(out.images))
        same = torch.equal(images[0], images[1])
        print(f"render: single file and folder images {'identical' if same else 'DIFFER'}")
        bad += 0 if same else 1
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
