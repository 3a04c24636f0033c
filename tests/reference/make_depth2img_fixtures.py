"""Writes the depth-to-image references for tests/test_depth2img.c:

tests/fixtures/tiny-sd2-depth/: a tiny depth model in diffusers layout
  (StableDiffusionDepth2ImgPipeline): its text encoder, tokenizer, VAE and scheduler are symlinks
  to tiny-sd2's (v-prediction), its UNet a small random one with in_channels 5 (the latents and
  the depth), fp16; depth_estimator/ the tiny DPT-hybrid of make_dpt_fixtures.py (symlink) and
  feature_extractor/ a DPTImageProcessor at its 64 x 64 size.
tests/fixtures/depth2img/: the depth maps (depth-a.npy float32 (1, 30, 52), depth-b.npy float32
  (45, 70), depth-c16.png a 16-bit and depth-d8.png an 8-bit grayscale PNG, whose samples as
  float32 are what diffusers is given) and depth2img.safetensors: case.<k>.image (40, 64, 3) float16 holding uint8 values and
  case.<k>.latents (1, 4, 5, 8), the pipeline's output (output_type "np", and "latent") for case k
  of the "cases" metadata (JSON), with the depth map given (depth_map=): schedulers ddim, euler_a,
  dpmpp_2m, pndm, strengths 0.3 / 0.75 / 1.0, guidance 7.5 and 1 (no CFG), generators "cpu" and
  "cuda" (emulated as make_img2img_fixtures.py does); and two cases without a depth map, where
  the pipeline runs the model's depth estimator. Stages of that path for init.png:
  stage.pixel_values (1, 3, 64, 64) the feature extractor's output and stage.predicted_depth
  (1, 64, 64) the estimator's. The init images are make_img2img_fixtures'. Without torchvision,
  transformers 5's DPTImageProcessor is its PIL backend (PIL's resize, NumPy's arithmetic).

Run from anywhere after make_img2img_fixtures.py and make_dpt_fixtures.py:
python3 tests/reference/make_depth2img_fixtures.py (deterministic, ~20 s).
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

from diffusers import StableDiffusionDepth2ImgPipeline, UNet2DConditionModel  # noqa: E402
from diffusers.utils import load_image  # noqa: E402
from transformers import DPTImageProcessor  # noqa: E402

ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
SD2 = os.path.join(FIXTURES, "tiny-sd2")
MODEL = os.path.join(FIXTURES, "tiny-sd2-depth")
OUT_DIR = os.path.join(FIXTURES, "depth2img")
OUT = os.path.join(OUT_DIR, "depth2img.safetensors")
INIT_DIR = img2img.OUT_DIR

PROMPT = "a wooden house by a lake"
# scheduler, strength, init file, depth file, generator, seed, guidance
CASES = [
    ("ddim", 0.75, "init.png", "depth-a.npy", "cpu", 21, 7.5),
    ("euler_a", 0.3, "init.jpg", "depth-b.npy", "cpu", 22, 7.5),
    ("dpmpp_2m", 1.0, "init.png", "depth-a.npy", "cuda", 23, 7.5),
    ("pndm", 0.75, "init16.png", "depth-b.npy", "cpu", 24, 1.0),
    ("euler", 0.75, "init.png", "depth-b.npy", "cuda", 25, 4.0),
    # no depth map: the model's depth estimator (DPTImageProcessor, then DPTForDepthEstimation)
    ("ddim", 0.75, "init.png", None, "cpu", 26, 7.5),
    ("euler_a", 1.0, "init.jpg", None, "cuda", 27, 7.5),
    # gray PNG maps, given to diffusers as the float32 tensor of their samples
    ("ddim", 0.75, "init.png", "depth-c16.png", "cpu", 28, 7.5),
    ("euler", 0.5, "init.jpg", "depth-d8.png", "cpu", 29, 7.5),
]
STEPS = 5


def write_model():
    os.makedirs(MODEL, exist_ok=True)
    links = {part: os.path.join("..", "tiny-sd2", part)
             for part in ("text_encoder", "tokenizer", "vae", "scheduler")}
    links["depth_estimator"] = os.path.join("..", "depth", "tiny-dpt-hybrid")
    for part, target in links.items():
        link = os.path.join(MODEL, part)
        if not os.path.islink(link):
            os.symlink(target, link)
    DPTImageProcessor(size={"height": 64, "width": 64}, keep_aspect_ratio=False,
                      do_resize=True, do_rescale=True, do_normalize=True,
                      image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]).save_pretrained(
        os.path.join(MODEL, "feature_extractor"))
    import make_fixtures

    torch.manual_seed(91)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=5,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=32,
        use_linear_projection=True,
        upcast_attention=True,
    )
    make_fixtures.spread_weights(unet, 92)
    unet.eval().half().save_pretrained(os.path.join(MODEL, "unet"), safe_serialization=True)
    with open(os.path.join(SD2, "model_index.json")) as f:
        index = json.load(f)
    index["_class_name"] = "StableDiffusionDepth2ImgPipeline"
    index["depth_estimator"] = ["transformers", "DPTForDepthEstimation"]
    index["feature_extractor"] = ["transformers", "DPTImageProcessor"]
    for key in ("safety_checker", "requires_safety_checker", "image_encoder"):
        index.pop(key, None)
    with open(os.path.join(MODEL, "model_index.json"), "w") as f:
        json.dump(index, f, indent=2, sort_keys=True)
        f.write("\n")


def write_depth_maps():
    os.makedirs(OUT_DIR, exist_ok=True)
    rng = np.random.default_rng(31)
    y, x = np.mgrid[0:30, 0:52]
    a = (3.0 + np.sin(x / 6.0) + 0.05 * y + rng.normal(0, 0.1, x.shape)).astype(np.float32)
    np.save(os.path.join(OUT_DIR, "depth-a.npy"), a[None])
    y, x = np.mgrid[0:45, 0:70]
    b = (100.0 * np.exp(-((x - 30) ** 2 + (y - 20) ** 2) / 300.0) + rng.normal(0, 2, x.shape))
    np.save(os.path.join(OUT_DIR, "depth-b.npy"), b.astype(np.float32))
    # 16-bit and 8-bit grayscale PNG maps (PIL modes I;16 and L)
    c = np.round((b - b.min()) / (b.max() - b.min()) * 65535).astype(np.uint16)
    Image.fromarray(c).save(os.path.join(OUT_DIR, "depth-c16.png"))
    d = np.round((a - a.min()) / (a.max() - a.min()) * 255).astype(np.uint8)
    Image.fromarray(d).save(os.path.join(OUT_DIR, "depth-d8.png"))


def main():
    write_model()
    write_depth_maps()
    img2img.install_philox_randn()
    pipe = StableDiffusionDepth2ImgPipeline.from_pretrained(MODEL, torch_dtype=torch.float32,
                                                            local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    tensors, cases = {}, []
    with torch.no_grad():
        pixels = pipe.feature_extractor(images=load_image(os.path.join(INIT_DIR, "init.png")),
                                        return_tensors="pt").pixel_values
        tensors["stage.pixel_values"] = pixels
        tensors["stage.predicted_depth"] = pipe.depth_estimator(pixels).predicted_depth
    for k, (sched, strength, init, depth, gen_kind, seed, guidance) in enumerate(CASES):
        pipe.scheduler = img2img.SCHEDULERS[sched].from_config(pipe.scheduler.config)
        depth_map = None
        if depth is not None and depth.endswith(".png"):
            samples = np.array(Image.open(os.path.join(OUT_DIR, depth))).astype(np.float32)
            depth_map = torch.from_numpy(samples)[None]
        elif depth is not None:
            depth_map = torch.from_numpy(np.load(os.path.join(OUT_DIR, depth)))
            if depth_map.ndim == 2:
                depth_map = depth_map[None]
        outs = {}
        for output_type in ("np", "latent"):
            gen = (img2img.PhiloxGenerator(seed) if gen_kind == "cuda"
                   else torch.Generator("cpu").manual_seed(seed))
            with torch.no_grad():
                outs[output_type] = pipe(prompt=PROMPT, image=load_image(os.path.join(INIT_DIR, init)),
                                         depth_map=depth_map, strength=strength,
                                         num_inference_steps=STEPS, guidance_scale=guidance,
                                         generator=gen, output_type=output_type).images
        tensors[f"case.{k}.image"] = torch.from_numpy(
            (outs["np"][0] * 255).round().astype("uint8")).to(torch.float16)
        tensors[f"case.{k}.latents"] = outs["latent"].float()
        cases.append(dict(scheduler=sched, strength=strength, init=init, depth=depth, rng=gen_kind,
                          seed=seed, prompt=PROMPT, steps=STEPS, guidance_scale=guidance,
                          width=img2img.WIDTH, height=img2img.HEIGHT))
        print(f"case {k}: {sched} strength {strength} {init} {depth} {gen_kind} cfg {guidance}",
              flush=True)
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    save_file(tensors, OUT, metadata={"cases": json.dumps(cases)})
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
