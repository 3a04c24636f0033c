#!/usr/bin/env python3
"""The work of `sdbatch bench`, done by diffusers, printed in the same format: the baseline for
sdbatch's side-by-side ratios (scripts/gpu-check.sh, tests/bench/bench_ratio.py).

For a model folder that `sdbatch make-demo-model DIR [--full-size]` wrote, it builds
UNet2DConditionModel, AutoencoderKL and CLIPTextModel from the folders' config.json files and loads
their safetensors weights (no hub access). The demo VAE holds only the decoder (and
post_quant_conv): the VAE is loaded with strict=False, the absent encoder / quant_conv weights keep
their random initialisation (decoding never uses them), and any other missing or unexpected key is
an error. Attention is PyTorch SDPA (AttnProcessor2_0 in the UNet and VAE, attn_implementation
"sdpa" in CLIP); eager unless --compile.

Per batch size B it times, like sdbatch bench: the text encoder on 2B sequences (B without
guidance), one UNet call on 2B latents, one VAE decode of B latents (one warm-up call, then
--repeat timed calls, torch.cuda.synchronize around each) with GFLOP/call from torch's
FlopCounterMode (counted on the eager modules), then the whole StableDiffusionPipeline for B
images (a 2-step warm-up run first, then one timed run).

  python3 tests/bench/diffusers_bench.py --model /tmp/sd15 --batch 1,8        # GPU, fp16
  python3 tests/bench/diffusers_bench.py --model /tmp/tiny --device cpu --dtype fp32 --steps 4
"""

import argparse
import json
import math
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import diffusers  # noqa: E402
from diffusers import (  # noqa: E402
    AutoencoderKL,
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from diffusers.models.attention_processor import AttnProcessor2_0  # noqa: E402
import transformers  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer  # noqa: E402

PROMPT = "a photo of an astronaut riding a horse on mars"  # sdbatch bench's prompt

SCHEDULERS = {
    "ddim": (DDIMScheduler, {}),
    "pndm": (PNDMScheduler, {}),
    "lms": (LMSDiscreteScheduler, {}),
    "euler": (EulerDiscreteScheduler, {}),
    "euler_a": (EulerAncestralDiscreteScheduler, {}),
    "heun": (HeunDiscreteScheduler, {}),
    "dpmpp_2m": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++"}),
}

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def read_json(path):
    with open(path) as f:
        return json.load(f)


def fail(message):
    sys.exit(f"diffusers_bench: error: {message}")


def load_unet(folder):
    config = read_json(os.path.join(folder, "config.json"))
    weights = load_file(os.path.join(folder, "diffusion_pytorch_model.safetensors"))
    # Built on the meta device (no random initialisation of ~860M parameters), then every
    # parameter is assigned from the file; strict: a missing or extra key is an error.
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config)
    unet.load_state_dict(weights, strict=True, assign=True)
    left = [n for n, t in list(unet.named_parameters()) + list(unet.named_buffers()) if t.is_meta]
    if left:
        fail(f"{folder}: no weights for {left[:5]}")
    return unet


def load_vae(folder):
    config = read_json(os.path.join(folder, "config.json"))
    weights = load_file(os.path.join(folder, "diffusion_pytorch_model.safetensors"))
    vae = AutoencoderKL.from_config(config)
    # strict=False: the demo VAE has no encoder weights (txt2img only decodes); those keep their
    # random initialisation. Anything else missing, or any unexpected key, is an error.
    missing, unexpected = vae.load_state_dict(weights, strict=False)
    bad = [k for k in missing if not k.startswith(("encoder.", "quant_conv."))]
    if bad or unexpected:
        fail(f"{folder}: missing decoder keys {bad[:5]}, unexpected keys {unexpected[:5]}")
    return vae, len(missing)


def load_text_encoder(folder):
    config = CLIPTextConfig.from_dict(read_json(os.path.join(folder, "config.json")))
    config._attn_implementation = "sdpa"
    model = CLIPTextModel(config)
    weights = load_file(os.path.join(folder, "model.safetensors"))
    # Checkpoints name the tensors "text_model.…"; some transformers versions save them without
    # the prefix. Match the file to the model's own naming.
    want = set(model.state_dict().keys())
    if not (set(weights) & want):
        if all(k.startswith("text_model.") for k in weights):
            weights = {k[len("text_model."):]: v for k, v in weights.items()}
        else:
            weights = {"text_model." + k: v for k, v in weights.items()}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]  # a buffer, not a weight
    if missing or unexpected:
        fail(f"{folder}: missing keys {missing[:5]}, unexpected keys {unexpected[:5]}")
    return model


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def pattern(shape, device, dtype):
    """sdbatch bench's inputs: sin(0.37 i) * 0.9 over the flattened tensor."""
    n = math.prod(shape)
    x = torch.sin(0.37 * torch.arange(n, dtype=torch.float32)) * 0.9
    return x.reshape(shape).to(device=device, dtype=dtype)


def count_flops(fn):
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def time_stage(fn, repeats, device):
    """One warm-up call, then `repeats` timed calls; returns (mean ms, best ms)."""
    fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(1e3 * (time.perf_counter() - start))
    return sum(times) / len(times), min(times)


def print_stage(name, rows, ms, best, flops):
    gflop = flops * 1e-9
    tflops = gflop / best if best > 0 else 0.0
    print(f"  {name:<13} batch {rows:<3d} {ms:10.2f} ms/call (best {best:.2f})  "
          f"{gflop:9.1f} GFLOP/call  {tflops:7.3f} TFLOP/s", flush=True)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="folder from sdbatch make-demo-model")
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp16")
    p.add_argument("--batch", default="1", help="batch sizes, comma-separated (default 1)")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--guidance-scale", type=float, default=7.5)
    p.add_argument("--scheduler", choices=sorted(SCHEDULERS), default="ddim")
    p.add_argument("--width", type=int, default=0, help="default: the model's native size")
    p.add_argument("--height", type=int, default=0)
    p.add_argument("--repeat", type=int, default=3, help="timed calls per stage (default 3)")
    p.add_argument("--only", choices=["text", "unet", "vae", "pipeline"],
                   help="time this stage alone")
    p.add_argument("--no-pipeline", action="store_true", help="time the stages only")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the UNet and the VAE decoder (default: eager)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's)")
    args = p.parse_args()
    try:
        args.batches = [int(b) for b in args.batch.split(",")]
    except ValueError:
        p.error(f"--batch: expected comma-separated integers, got '{args.batch}'")
    if any(b < 1 for b in args.batches) or args.steps < 1 or args.repeat < 1:
        p.error("--batch, --steps and --repeat must be >= 1")
    return args


def main():
    args = parse_args()
    diffusers.utils.logging.set_verbosity_error()
    transformers.utils.logging.set_verbosity_error()
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype]
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda" and not torch.cuda.is_available():
        fail("CUDA is not available to torch (use --device cpu)")

    load_start = time.perf_counter()
    unet = load_unet(os.path.join(args.model, "unet"))
    vae, vae_missing = load_vae(os.path.join(args.model, "vae"))
    text_encoder = load_text_encoder(os.path.join(args.model, "text_encoder"))
    tokenizer = CLIPTokenizer.from_pretrained(os.path.join(args.model, "tokenizer"))
    scheduler_class, scheduler_extra = SCHEDULERS[args.scheduler]
    scheduler = scheduler_class.from_config(
        read_json(os.path.join(args.model, "scheduler", "scheduler_config.json")),
        **scheduler_extra)
    unet.set_attn_processor(AttnProcessor2_0())
    vae.set_attn_processor(AttnProcessor2_0())
    for m in (unet, vae, text_encoder):
        m.to(device=device, dtype=dtype).eval().requires_grad_(False)
    synchronize(device)
    load_s = time.perf_counter() - load_start
    if vae_missing:
        print(f"note: the VAE file has no encoder: {vae_missing} encoder/quant_conv tensors keep "
              "their random initialisation (decode does not use them)", file=sys.stderr)

    # Eager references for FLOP counting; the pipeline and the timed calls use the compiled ones.
    eager_unet, eager_decoder = unet, vae.decoder
    if args.compile:
        unet = torch.compile(unet)
        vae.decoder = torch.compile(vae.decoder)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                   unet=unet, scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)

    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    width = args.width or unet.config.sample_size * factor
    height = args.height or unet.config.sample_size * factor
    if width % (8 * factor) or height % (8 * factor):
        fail(f"width and height must be multiples of {8 * factor} (got {width}x{height})")
    lh, lw = height // factor, width // factor
    length = tokenizer.model_max_length
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"{torch.get_num_threads()} threads"
    mode = "compiled" if args.compile else "eager"
    stages = {args.only} if args.only else {"text", "unet", "vae", "pipeline"}
    if args.no_pipeline:
        stages.discard("pipeline")

    print(f"diffusers bench: model {args.model} (loaded in {load_s:.1f} s)")
    for batch in args.batches:
        rows = 2 * batch if args.guidance_scale > 1.0 else batch
        print(f"  device {device.type}: {name} ({args.dtype}, sdpa, {mode}; torch "
              f"{torch.__version__}, diffusers {diffusers.__version__}), {width}x{height}, "
              f"batch {batch}, guidance {args.guidance_scale:g}, {args.steps} steps "
              f"({args.scheduler})", flush=True)
        with torch.inference_mode():
            if "text" in stages:
                ids = tokenizer([PROMPT] * rows, padding="max_length", max_length=length,
                                truncation=True, return_tensors="pt").input_ids.to(device)
                def run_text():
                    return text_encoder(ids)[0]
                flops = count_flops(run_text)
                print_stage("text encoder", rows, *time_stage(run_text, args.repeat, device),
                            flops)
            if "unet" in stages:
                sample = pattern((rows, unet.config.in_channels, lh, lw), device, dtype)
                context = pattern((rows, length, unet.config.cross_attention_dim), device,
                                  dtype)
                t = torch.tensor(500.0, device=device)
                flops = count_flops(lambda: eager_unet(sample, t, context).sample)
                ms, best = time_stage(lambda: unet(sample, t, context).sample, args.repeat,
                                      device)
                print_stage("unet", rows, ms, best, flops)
            if "vae" in stages:
                latent = pattern((batch, vae.config.latent_channels, lh, lw), device, dtype)
                def run_decoder(decoder):
                    return decoder(vae.post_quant_conv(latent))
                flops = count_flops(lambda: run_decoder(eager_decoder))
                ms, best = time_stage(lambda: vae.decode(latent).sample, args.repeat, device)
                print_stage("vae decode", batch, ms, best, flops)
            if "pipeline" in stages:
                def run_pipeline(steps):
                    generators = [torch.Generator(device).manual_seed(i) for i in range(batch)]
                    return pipe(prompt=[PROMPT] * batch, height=height, width=width,
                                num_inference_steps=steps, guidance_scale=args.guidance_scale,
                                generator=generators, output_type="pil").images
                run_pipeline(min(2, args.steps))
                synchronize(device)
                start = time.perf_counter()
                images = run_pipeline(args.steps)
                synchronize(device)
                elapsed = time.perf_counter() - start
                if len(images) != batch:
                    fail(f"pipeline returned {len(images)} images, expected {batch}")
                print(f"  pipeline      {batch} image(s), {args.steps} steps: {elapsed:.3f} s, "
                      f"{batch / elapsed:.3f} images/s", flush=True)


if __name__ == "__main__":
    main()
