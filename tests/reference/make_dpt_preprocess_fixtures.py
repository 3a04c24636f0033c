"""Writes tests/fixtures/dpt-preprocess/ for tests/test_dpt_preprocess.c: what transformers 5's
DPTImageProcessor computes with its torchvision backend (the default where torchvision is
installed), to check sdbatch's `--dpt-preprocess torchvision` exactly.

  <config>.json   preprocessor configs: tiny (tests/fixtures/tiny-sd2-depth's, 64x64), sd2 (the
                  stable-diffusion-2-depth feature_extractor's: 384x384 bicubic, mean/std 0.5),
                  imagenet (80x96, ImageNet mean/std), bilinear (48x64, resample 2),
                  rescale-only, normalize-only, odd (47x33, rescale_factor 0.004, odd mean/std).
  levels.safetensors  level.<config> (3, 256) float32: pixel_values of every uint8 level per
                  channel (the processor with do_resize off on a 1x256 image of all levels).
  <case>.png      the image the processor resizes to (torchvision's antialiased resize on the
                  uint8 (3, H, W) tensor), 8-bit RGB.
  cases.json      [{"name", "config", "input"}]; input is a file under tests/fixtures
                  ("images/rgb8.png", converted with PIL's convert("RGB") as diffusers' load_image
                  does) or "synthetic:HxW:SEED" (synthetic() below; the C test builds the same).

For every case the script asserts that the processor's pixel_values equal level[c, resized[c]]
exactly, so the PNG and the table together are the processor's output. It also prints how far
the PIL backend (DPTImageProcessorPil, what sdbatch's default follows) is from it.

Needs torchvision (it refuses to run without it, since transformers would silently fall back to
the PIL backend): python3 -m venv --system-site-packages /work/venv-tv &&
/work/venv-tv/bin/pip install torchvision, then /work/venv-tv/bin/python
tests/reference/make_dpt_preprocess_fixtures.py (deterministic, a few seconds). Written with torch
2.15.0, torchvision 0.29.2, transformers 5.25.
"""

import json
import os
import sys

import numpy as np

try:
    import torch
    import torchvision
    from torchvision.transforms.v2 import functional as tvF
except ImportError:
    sys.exit("make_dpt_preprocess_fixtures.py needs torchvision (see its docstring)")

from PIL import Image
from safetensors.torch import save_file
from transformers import DPTImageProcessor
from transformers.models.dpt.image_processing_pil_dpt import DPTImageProcessorPil

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
FIX = os.path.join(ROOT, "tests", "fixtures")
OUT = os.path.join(FIX, "dpt-preprocess")

with open(os.path.join(FIX, "tiny-sd2-depth", "feature_extractor", "preprocessor_config.json")) as f:
    TINY = json.load(f)


def config(**changes):
    c = {
        "do_normalize": True,
        "do_pad": False,
        "do_rescale": True,
        "do_resize": True,
        "ensure_multiple_of": 1,
        "image_mean": [0.5, 0.5, 0.5],
        "image_processor_type": "DPTImageProcessor",
        "image_std": [0.5, 0.5, 0.5],
        "keep_aspect_ratio": False,
        "resample": 3,
        "rescale_factor": 0.00392156862745098,
        "size": {"height": 384, "width": 384},
    }
    c.update(changes)
    return c


CONFIGS = {
    "tiny": TINY,
    "sd2": config(),
    "imagenet": config(size={"height": 80, "width": 96}, image_mean=[0.485, 0.456, 0.406],
                       image_std=[0.229, 0.224, 0.225]),
    "bilinear": config(size={"height": 48, "width": 64}, resample=2),
    "rescale-only": config(size={"height": 64, "width": 64}, do_normalize=False),
    "normalize-only": config(size={"height": 32, "width": 32}, do_rescale=False,
                             image_mean=[100.5, 120.0, 140.0], image_std=[50.0, 60.25, 70.0]),
    "odd": config(size={"height": 47, "width": 33}, rescale_factor=0.004,
                  image_mean=[0.3, 0.6, 0.1], image_std=[0.7, 0.2, 0.9]),
}

FILES = ["images/rgb8.png", "images/photo420.jpg", "images/photo444.jpg", "images/gray8.png",
         "images/rgba8.png", "images/palette8.png", "images/rgb16.png", "images/gray-alpha16.png",
         "img2img/init.png"]
SYNTHETIC = ["synthetic:333x500:1", "synthetic:17x1000:2", "synthetic:64x64:3",
             "synthetic:2x3:4", "synthetic:131x97:5", "synthetic:1x1:6", "synthetic:384x384:7"]

CASES = (
    [("tiny", i) for i in FILES + SYNTHETIC[:-1]]
    + [("sd2", i) for i in ["img2img/init.png", "synthetic:333x500:1", "synthetic:131x97:5",
                            "synthetic:384x384:7"]]
    + [("imagenet", i) for i in ["images/photo420.jpg", "synthetic:131x97:5",
                                 "synthetic:17x1000:2"]]
    + [("bilinear", i) for i in ["img2img/init.png", "synthetic:333x500:1", "synthetic:2x3:4"]]
    + [("rescale-only", i) for i in ["images/rgb8.png", "synthetic:131x97:5"]]
    + [("normalize-only", i) for i in ["synthetic:131x97:5"]]
    + [("odd", i) for i in ["images/photo420.jpg", "synthetic:1x1:6"]]
)


def synthetic(h, w, seed):
    """(h, w, 3) uint8: a diagonal ramp plus hashed noise in [-32, 31], inverted on a 7x5 checker
    (hard edges that make the cubic's negative lobes clamp); tests/test_dpt_preprocess.c computes
    the same with uint32 arithmetic."""
    y, x, c = np.meshgrid(np.arange(h), np.arange(w), np.arange(3), indexing="ij")
    i = ((y * w + x) * 3 + c + seed * 7919).astype(np.uint64)
    m = (i * 2654435761) & 0xFFFFFFFF
    m = m ^ (m >> 15)
    noise = ((m >> 8) & 63).astype(np.int64) - 32
    ramp = (x * 255 // max(w, 1) + y * 255 // max(h, 1)) // 2
    v = np.clip(ramp + noise, 0, 255)
    v = np.where(((x // 7 + y // 5) % 4) == 0, 255 - v, v)
    return v.astype(np.uint8)


def load(spec):
    if spec.startswith("synthetic:"):
        _, size, seed = spec.split(":")
        h, w = map(int, size.split("x"))
        return Image.fromarray(synthetic(h, w, int(seed)), "RGB")
    return Image.open(os.path.join(FIX, spec)).convert("RGB")


def main():
    os.makedirs(OUT, exist_ok=True)
    levels, cases = {}, []
    all_levels = Image.fromarray(np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, 2))
    processors = {}
    for name, cfg in CONFIGS.items():
        with open(os.path.join(OUT, name + ".json"), "w") as f:
            json.dump(cfg, f, indent=2)
            f.write("\n")
        p = DPTImageProcessor.from_json_file(os.path.join(OUT, name + ".json"))
        if p.backend != "torchvision":
            sys.exit(f"DPTImageProcessor is the {p.backend} backend, not torchvision")
        pil = DPTImageProcessorPil.from_json_file(os.path.join(OUT, name + ".json"))
        processors[name] = (p, pil)
        table = p(images=all_levels, do_resize=False, return_tensors="pt").pixel_values[0, :, 0]
        levels["level." + name] = table.to(torch.float32).contiguous()
    level_values = ulp_values = total = 0
    worst = 0.0
    for k, (name, spec) in enumerate(CASES):
        p, pil = processors[name]
        image = load(spec)
        want = p(images=image, return_tensors="pt").pixel_values[0]
        x = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).contiguous()
        size = [p.size["height"], p.size["width"]]
        resized = tvF.resize(x, size, interpolation=tvF.InterpolationMode.BICUBIC
                             if p.resample == 3 else tvF.InterpolationMode.BILINEAR,
                             antialias=True)
        table = levels["level." + name]
        rebuilt = torch.stack([table[c][resized[c].long()] for c in range(3)])
        assert torch.equal(rebuilt, want.to(torch.float32)), (name, spec)
        case = f"{k:02d}-{name}-{spec.replace('/', '-').replace(':', '-')}"
        if case.endswith((".png", ".jpg")):
            case = case[:-4]
        Image.fromarray(resized.permute(1, 2, 0).numpy(), "RGB").save(
            os.path.join(OUT, case + ".png"), optimize=True)
        cases.append({"name": case, "config": name, "input": spec})
        other = pil(images=image, return_tensors="pt").pixel_values[0]
        step = table[:, 1:].sub(table[:, :-1]).abs().min(dim=1).values.view(3, 1, 1)
        levels_apart = ((other - want).abs() / step).round()
        level_values += int((levels_apart > 0).sum())
        ulp_values += int(((other != want) & (levels_apart == 0)).sum())
        total += want.numel()
        worst = max(worst, float(levels_apart.max()))
    save_file(levels, os.path.join(OUT, "levels.safetensors"))
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump(cases, f, indent=1)
        f.write("\n")
    print(f"{len(cases)} cases written to {OUT}")
    print(f"PIL backend vs torchvision: {level_values} of {total} values "
          f"({100.0 * level_values / total:.2f} %) a different input level, at most {worst:.0f}; "
          f"{ulp_values} more ({100.0 * ulp_values / total:.2f} %) float32 rounding apart")


if __name__ == "__main__":
    main()
