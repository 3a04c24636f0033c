"""Checks the committed fixtures under tests/fixtures/ against diffusers in a fresh process.

- the tokenizer folders load with transformers.CLIPTokenizer and give CLIP's known ids;
- every stage tensor, recomputed from the diffusers folders (from_pretrained, float32), matches
  stages-sd{1,2}.safetensors; bitwise on the versions that wrote them, otherwise within
  max|a-b| <= 1e-4 * max(1, max|ref|) (text, UNet, VAE, latents) and 1 (image uint8 values);
- the single-file checkpoints, loaded with StableDiffusionPipeline.from_single_file (float32),
  render the "ddim" case to the same latents and image.

Run: python3 tests/reference/verify_fixtures.py   (exit status 1 on any mismatch)
"""

import json
import os
import sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file

import make_fixtures as mf

# "a photo of an astronaut riding a horse" with CLIP's vocabulary (openai/clip-vit-large-patch14)
KNOWN_IDS = [49406, 320, 1125, 539, 550, 18376, 6765, 320, 4558, 49407]


def compare(label, got, ref, failures):
    if got.shape != ref.shape or got.dtype != ref.dtype:
        failures.append(
            f"{label}: {tuple(got.shape)} {got.dtype} vs stored {tuple(ref.shape)} {ref.dtype}"
        )
        return
    if torch.equal(got, ref):
        return
    diff = (got.double() - ref.double()).abs().max().item()
    is_image = label.split(":")[-1].startswith("image.") and not label.endswith(".latents")
    tol = 1.0 if is_image else 1e-4 * max(1.0, ref.double().abs().max().item())
    status = "ok" if diff <= tol else "FAIL"
    print(f"  {label}: max|diff| {diff:.3g} (tolerance {tol:.3g}) {status}")
    if diff > tol:
        failures.append(f"{label}: max|diff| {diff:.3g} > {tol:.3g}")


def main():
    from transformers import CLIPTokenizer

    torch.set_num_threads(2)
    failures = []
    for name, _, _, cases in mf.MODELS:
        folder = os.path.join(mf.FIXTURES, f"tiny-{name}")
        stages_path = os.path.join(mf.FIXTURES, f"stages-{name}.safetensors")

        tok = CLIPTokenizer.from_pretrained(os.path.join(folder, "tokenizer"))
        ids = tok(mf.PROMPT).input_ids
        if ids != KNOWN_IDS:
            failures.append(f"tiny-{name} tokenizer: ids {ids}, expected {KNOWN_IDS}")

        with safe_open(stages_path, "pt") as f:
            stored_cases = json.loads(f.metadata()["cases"])
        if stored_cases != cases:
            failures.append(f"{stages_path}: metadata cases differ from make_fixtures.py's")
        stored = load_file(stages_path)
        fresh = mf.compute_stages(folder, cases)
        if sorted(fresh) != sorted(stored):
            failures.append(f"{stages_path}: tensor names differ")
        for key in sorted(set(fresh) & set(stored)):
            compare(f"stages-{name}:{key}", fresh[key], stored[key], failures)

        ckpt = os.path.join(mf.FIXTURES, f"tiny-{name}.safetensors")
        pipe = mf.load_single_file_pipeline(ckpt, folder, torch.float32)
        with open(os.path.join(folder, "scheduler", "scheduler_config.json")) as f:
            scheduler_config = json.load(f)
        image, latents = mf.run_case(pipe, scheduler_config, cases["ddim"])
        compare(f"tiny-{name}.safetensors:image.ddim", image, stored["image.ddim"], failures)
        compare(
            f"tiny-{name}.safetensors:image.ddim.latents",
            latents,
            stored["image.ddim.latents"],
            failures,
        )
        print(
            f"tiny-{name}: checked tokenizer, {len(stored)} stage tensors, single-file ddim render"
        )

    for failure in failures:
        print("FAIL", failure)
    print("all fixtures verified" if not failures else f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
