"""Builds the diffusers reference fixtures under tests/fixtures/ (see tests/reference/README.md).

Two tiny random-weight Stable Diffusion models with the real SD 1.x / SD 2.x block structure,
saved as diffusers folders (fp16 weights) and as original-layout single-file checkpoints, plus
per-stage float32 references (text encoder, UNet, VAE decoder, whole pipeline images) computed by
diffusers on the CPU from the fp16 folders loaded as float32.

Run from anywhere: python3 tests/reference/make_fixtures.py
Deterministic: every model and every random input comes from a seeded CPU generator.
"""

import json
import os
import shutil
import sys

import torch
from safetensors.torch import load_file, save_file

import ldm_keys
import tokenizer_files

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
BPE_PATH = os.path.join(ROOT, "third_party", "clip", "bpe_simple_vocab_16e6.txt.gz")

PROMPT = "a photo of an astronaut riding a horse"
SIZE = 128  # image side; 16x16 latents

# Stage-reference inputs: seeds of torch.Generator('cpu') for torch.randn
UNET_SEED, UNET2_SEED, VAE_SEED, VAE2_SEED = 1, 11, 2, 12

CLIP_SIZES = dict(
    vocab_size=49408,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=77,
    layer_norm_eps=1e-5,
    bos_token_id=49406,
    eos_token_id=49407,
    pad_token_id=1,
)

UNET_SIZES = dict(
    sample_size=16,
    in_channels=4,
    out_channels=4,
    layers_per_block=2,
    block_out_channels=(32, 64, 64),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=32,
    norm_num_groups=32,
)

VAE_SIZES = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    block_out_channels=(32, 32, 64, 64),
    layers_per_block=1,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    norm_num_groups=32,
    sample_size=SIZE,
    scaling_factor=0.18215,
)

# scheduler_config.json as the real model repos state it: only these fields, so that a scheduler
# of another class made with from_config takes its own defaults for the rest (diffusers'
# _use_default_values). SD 1.5 (runwayml) states no prediction_type / timestep_spacing.
SCHEDULER_SD1 = {
    "_class_name": "PNDMScheduler",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}
SCHEDULER_SD2 = {
    "_class_name": "DDIMScheduler",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "trained_betas": None,
}


def case(scheduler, seed=0, steps=10, guidance=7.5, negative="", karras=False):
    return {
        "prompt": PROMPT,
        "negative_prompt": negative,
        "seed": seed,
        "steps": steps,
        "guidance_scale": guidance,
        "scheduler": scheduler,
        "karras": karras,
        "width": SIZE,
        "height": SIZE,
        "rng": "cpu",
    }


CASES_SD1 = {
    "pndm": case("pndm"),
    "ddim": case("ddim"),
    "euler_a": case("euler_a"),
    "dpmpp_2m_karras": case("dpmpp_2m", karras=True),
    "euler": case("euler"),
    "lms": case("lms"),
    "heun": case("heun"),
    "nocfg": case("ddim", seed=3, guidance=1.0),
    "negative": case("ddim", seed=4, negative="blurry"),
}
CASES_SD2 = {
    "ddim": case("ddim"),
    "euler_a": case("euler_a"),
}


def randn(shape, seed):
    return torch.randn(
        shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32
    )


def spread_weights(model, seed):
    """Gives every normalization layer non-trivial affine parameters (random init leaves them at
    weight 1, bias 0, which would hide a swapped or ignored gamma/beta) and every all-zero
    parameter small random values."""
    gen = torch.Generator("cpu").manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if (
                isinstance(module, (torch.nn.GroupNorm, torch.nn.LayerNorm))
                and module.weight is not None
            ):
                module.weight.copy_(1 + 0.25 * torch.randn(module.weight.shape, generator=gen))
                module.bias.copy_(0.25 * torch.randn(module.bias.shape, generator=gen))
        for param in model.parameters():
            if not param.any():
                param.copy_(0.05 * torch.randn(param.shape, generator=gen))


def build_text_encoder(hidden_act, seed):
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    model = CLIPTextModel(CLIPTextConfig(hidden_act=hidden_act, **CLIP_SIZES))
    spread_weights(model, seed + 1)
    return model.eval()


def build_unet(sd2, seed):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    if sd2:
        extra = dict(
            attention_head_dim=(2, 4, 4), use_linear_projection=True, upcast_attention=True
        )
    else:
        extra = dict(attention_head_dim=4)
    model = UNet2DConditionModel(**UNET_SIZES, **extra)
    spread_weights(model, seed + 1)
    return model.eval()


def build_vae(seed):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    model = AutoencoderKL(**VAE_SIZES)
    spread_weights(model, seed + 1)
    return model.eval()


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def save_folder(folder, sd2, seed):
    """Saves a tiny SD pipeline in diffusers layout with fp16 weights."""
    from diffusers import DDIMScheduler, PNDMScheduler, StableDiffusionPipeline
    from transformers import CLIPTokenizer

    if os.path.isdir(folder):
        shutil.rmtree(folder)
    sched_config = SCHEDULER_SD2 if sd2 else SCHEDULER_SD1
    sched_cls = DDIMScheduler if sd2 else PNDMScheduler
    scheduler = sched_cls.from_config({k: v for k, v in sched_config.items() if k != "_class_name"})
    pad = "!" if sd2 else "<|endoftext|>"
    tok_dir = folder + ".tok-tmp"
    tokenizer_files.write_tokenizer(tok_dir, BPE_PATH, pad)
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
    shutil.rmtree(tok_dir)

    pipe = StableDiffusionPipeline(
        vae=build_vae(seed + 20).half(),
        text_encoder=build_text_encoder("gelu" if sd2 else "quick_gelu", seed).half(),
        tokenizer=tokenizer,
        unet=build_unet(sd2, seed + 10).half(),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)

    # transformers >= 5.6 saves CLIPTextModel without the "text_model." level; SD repos (and
    # older transformers) have it, and transformers still loads that layout: keep the real one.
    te_path = os.path.join(folder, "text_encoder", "model.safetensors")
    te = load_file(te_path)
    te = {k if k.startswith("text_model.") else "text_model." + k: v for k, v in te.items()}
    save_file(te, te_path, metadata={"format": "pt"})

    # Own tokenizer files (vocab.json + merges.txt, no tokenizer.json) and the scheduler config
    # with only the fields the real model states.
    shutil.rmtree(os.path.join(folder, "tokenizer"))
    tokenizer_files.write_tokenizer(os.path.join(folder, "tokenizer"), BPE_PATH, pad)
    sched_json = dict(sched_config)
    sched_json["_diffusers_version"] = pipe.config["_diffusers_version"]
    write_json(os.path.join(folder, "scheduler", "scheduler_config.json"), sched_json)


def folder_state(folder, sub, name):
    return load_file(os.path.join(folder, sub, name))


def folder_config(folder, sub):
    with open(os.path.join(folder, sub, "config.json")) as f:
        return json.load(f)


def open_clip_extra_layer(hidden, inner, seed):
    """One random OpenCLIP resblock (fp16), the last layer SD 2.x does not use."""
    gen = torch.Generator("cpu").manual_seed(seed)

    def r(*shape, scale=0.1, base=0.0):
        return (base + scale * torch.randn(shape, generator=gen)).half()

    return {
        "ln_1.weight": r(hidden, scale=0.25, base=1.0),
        "ln_1.bias": r(hidden, scale=0.25),
        "attn.in_proj_weight": r(3 * hidden, hidden),
        "attn.in_proj_bias": r(3 * hidden),
        "attn.out_proj.weight": r(hidden, hidden),
        "attn.out_proj.bias": r(hidden),
        "ln_2.weight": r(hidden, scale=0.25, base=1.0),
        "ln_2.bias": r(hidden, scale=0.25),
        "mlp.c_fc.weight": r(inner, hidden),
        "mlp.c_fc.bias": r(inner),
        "mlp.c_proj.weight": r(hidden, inner),
        "mlp.c_proj.bias": r(hidden),
    }


def single_file_state(folder, sd2, seed):
    """The folder's fp16 weights in original single-file layout."""
    unet = folder_state(folder, "unet", "diffusion_pytorch_model.safetensors")
    vae = folder_state(folder, "vae", "diffusion_pytorch_model.safetensors")
    text = folder_state(folder, "text_encoder", "model.safetensors")
    out = {}
    for k, v in ldm_keys.unet_to_ldm(unet, folder_config(folder, "unet")).items():
        out[ldm_keys.UNET_PREFIX + k] = v
    for k, v in ldm_keys.vae_to_ldm(vae, folder_config(folder, "vae")).items():
        out[ldm_keys.VAE_PREFIX + k] = v
    if sd2:
        gen = torch.Generator("cpu").manual_seed(seed + 30)
        hidden = CLIP_SIZES["hidden_size"]
        converted = ldm_keys.clip_to_open_clip(
            text,
            CLIP_SIZES["num_hidden_layers"],
            open_clip_extra_layer(hidden, CLIP_SIZES["intermediate_size"], seed + 31),
            text_projection=(0.1 * torch.randn((hidden, hidden), generator=gen)).half(),
            logit_scale=torch.tensor(4.6052, dtype=torch.float16),
        )
        for k, v in converted.items():
            out[ldm_keys.OPEN_CLIP_PREFIX + k] = v
    else:
        for k, v in ldm_keys.clip_to_ldm(text).items():
            out[ldm_keys.CLIP_PREFIX + k] = v
        # real SD 1.x files carry the text model's position_ids buffer (int64)
        out[ldm_keys.CLIP_PREFIX + "text_model.embeddings.position_ids"] = torch.arange(
            77, dtype=torch.int64
        )[None]
    return {k: v.contiguous() for k, v in out.items()}


def assert_same(name, got, want):
    """Same keys, and every tensor bitwise equal with the same dtype."""
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    if missing or extra:
        raise AssertionError(f"{name}: missing {missing[:5]} extra {extra[:5]}")
    for k in want:
        if (
            got[k].shape != want[k].shape
            or got[k].dtype != want[k].dtype
            or not torch.equal(got[k], want[k])
        ):
            raise AssertionError(f"{name}: tensor '{k}' differs")


def verify_single_file(path, folder, sd2):
    """Converts the single file back with diffusers' own converters and compares every tensor with
    the folder's (bitwise)."""
    from diffusers.loaders import single_file_utils as sfu
    from transformers import CLIPTextConfig, CLIPTextModel

    ckpt = load_file(path)
    unet_cfg = folder_config(folder, "unet")
    vae_cfg = folder_config(folder, "vae")
    assert_same(
        "unet",
        sfu.convert_ldm_unet_checkpoint(ckpt, unet_cfg),
        folder_state(folder, "unet", "diffusion_pytorch_model.safetensors"),
    )
    assert_same(
        "vae",
        sfu.convert_ldm_vae_checkpoint(ckpt, vae_cfg),
        folder_state(folder, "vae", "diffusion_pytorch_model.safetensors"),
    )
    text = folder_state(folder, "text_encoder", "model.safetensors")
    if sd2:
        # diffusers drops only resblocks.23 (full-size SD 2.x); the tiny file's skipped layer is
        # resblocks.2, so its converted keys (text_model.encoder.layers.2.*) must be the only extra
        cfg = CLIPTextConfig.from_pretrained(os.path.join(folder, "text_encoder"))
        got = sfu.convert_open_clip_checkpoint(CLIPTextModel(cfg), ckpt)
        last = f"text_model.encoder.layers.{CLIP_SIZES['num_hidden_layers']}."
        dropped = [k for k in got if k.startswith(last)]
        if len(dropped) != 16:  # q,k,v,out_proj, ln_1, ln_2, fc1, fc2: weight + bias each
            raise AssertionError(f"open_clip: skipped layer gave {len(dropped)} keys, expected 16")
        got = {k: v for k, v in got.items() if not k.startswith(last)}
        assert_same("open_clip", got, text)
    else:
        got = sfu.convert_ldm_clip_checkpoint(ckpt)
        got.pop("text_model.embeddings.position_ids")
        assert_same("clip", got, text)


def verify_single_file_pipeline(path, folder):
    """The whole single file through StableDiffusionPipeline.from_single_file (for SD 2.x it drops
    the converted keys of the skipped last OpenCLIP layer, which the tiny model does not have)."""
    pipe = load_single_file_pipeline(path, folder, torch.float16)
    for sub in ("unet", "vae", "text_encoder"):
        name = (
            "model.safetensors" if sub == "text_encoder" else "diffusion_pytorch_model.safetensors"
        )
        want = folder_state(folder, sub, name)
        if sub == "text_encoder":
            want = {k.removeprefix("text_model."): v for k, v in want.items()}
        assert_same(f"from_single_file {sub}", getattr(pipe, sub).state_dict(), want)


TINY_SD1_YAML = """\
# LDM v1-inference.yaml with the sizes of tests/fixtures/tiny-sd1 (written by
# tests/reference/make_fixtures.py). attention_resolutions lists downsampling factors
# (1 = full latent resolution): levels 0 and 1 have cross-attention.
model:
  base_learning_rate: 1.0e-04
  target: ldm.models.diffusion.ddpm.LatentDiffusion
  params:
    linear_start: 0.00085
    linear_end: 0.0120
    num_timesteps_cond: 1
    log_every_t: 200
    timesteps: 1000
    first_stage_key: "jpg"
    cond_stage_key: "txt"
    image_size: 16
    channels: 4
    cond_stage_trainable: false
    conditioning_key: crossattn
    monitor: val/loss_simple_ema
    scale_factor: 0.18215
    use_ema: False

    unet_config:
      target: ldm.modules.diffusionmodules.openaimodel.UNetModel
      params:
        image_size: 16
        in_channels: 4
        out_channels: 4
        model_channels: 32
        attention_resolutions: [ 2, 1 ]
        num_res_blocks: 2
        channel_mult: [ 1, 2, 2 ]
        num_heads: 4
        use_spatial_transformer: True
        transformer_depth: 1
        context_dim: 32
        use_checkpoint: True
        legacy: False

    first_stage_config:
      target: ldm.models.autoencoder.AutoencoderKL
      params:
        embed_dim: 4
        monitor: val/rec_loss
        ddconfig:
          double_z: true
          z_channels: 4
          resolution: 128
          in_channels: 3
          out_ch: 3
          ch: 32
          ch_mult:
          - 1
          - 1
          - 2
          - 2
          num_res_blocks: 1
          attn_resolutions: []
          dropout: 0.0
        lossconfig:
          target: torch.nn.Identity

    cond_stage_config:
      target: ldm.modules.encoders.modules.FrozenCLIPEmbedder
      params:
        # not an LDM key: sdbatch reads it where the text encoder's width does not reveal its
        # heads (real CLIP/OpenCLIP encoders have 64-wide heads; this tiny one does not)
        num_attention_heads: 4
"""


def verify_yaml(path, folder, ckpt_path):
    """diffusers' own LDM-config readers must turn the YAML into the folder's UNet / VAE sizes
    (diffusers takes sample_size from the model type it guesses, not from the YAML: pass it)."""
    import yaml
    from diffusers.loaders import single_file_utils as sfu

    with open(path) as f:
        original = yaml.safe_load(f)
    ckpt = load_file(ckpt_path)
    unet_want = folder_config(folder, "unet")
    unet_got = sfu.create_unet_diffusers_config_from_ldm(original, ckpt, image_size=SIZE)
    for k, v in unet_got.items():
        want = unet_want[k]
        if (list(v) if isinstance(v, tuple) else v) != want:
            raise AssertionError(f"{path}: unet {k} = {v}, folder has {want}")
    vae_want = folder_config(folder, "vae")
    vae_got = sfu.create_vae_diffusers_config_from_ldm(original, ckpt, image_size=SIZE)
    for k, v in vae_got.items():
        want = vae_want[k]
        if (list(v) if isinstance(v, tuple) else v) != want:
            raise AssertionError(f"{path}: vae {k} = {v}, folder has {want}")


def make_scheduler(pipe_config, name, karras):
    import diffusers

    classes = {
        "ddim": diffusers.DDIMScheduler,
        "pndm": diffusers.PNDMScheduler,
        "lms": diffusers.LMSDiscreteScheduler,
        "euler": diffusers.EulerDiscreteScheduler,
        "euler_a": diffusers.EulerAncestralDiscreteScheduler,
        "heun": diffusers.HeunDiscreteScheduler,
        "dpmpp_2m": diffusers.DPMSolverMultistepScheduler,
    }
    extra = {"use_karras_sigmas": True} if karras else {}
    return classes[name].from_config(pipe_config, **extra)


def load_single_file_pipeline(path, folder, dtype):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_single_file(
        path,
        config=folder,
        local_files_only=True,
        torch_dtype=dtype,
        safety_checker=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_pipeline(folder):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(
        folder,
        torch_dtype=torch.float32,
        safety_checker=None,
        requires_safety_checker=False,
        local_files_only=True,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run_case(pipe, scheduler_config, params):
    """One txt2img run. Returns (image as float32 uint8 values (1, H, W, 3), final latents
    (1, 4, H/8, W/8) before the VAE's 1/scaling_factor)."""
    pipe.scheduler = make_scheduler(scheduler_config, params["scheduler"], params["karras"])
    final = {}

    def keep_latents(p, step, timestep, kwargs):
        final["latents"] = kwargs["latents"].clone()
        return kwargs

    image = pipe(
        params["prompt"],
        negative_prompt=params["negative_prompt"] or None,
        height=params["height"],
        width=params["width"],
        num_inference_steps=params["steps"],
        guidance_scale=params["guidance_scale"],
        generator=torch.Generator("cpu").manual_seed(params["seed"]),
        output_type="np",
        callback_on_step_end=keep_latents,
    ).images
    pixels = torch.from_numpy((image * 255).round().astype("uint8")).float()
    # the kept latents must be what the pipeline decoded
    with torch.no_grad():
        decoded = pipe.vae.decode(final["latents"] / pipe.vae.config.scaling_factor).sample
    redo = (decoded / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1)
    if (redo.numpy() - image).__abs__().max() > 1e-6:
        raise AssertionError("kept latents do not decode to the pipeline's image")
    return pixels, final["latents"]


def compute_stages(folder, cases):
    """All stage references of one model, computed from its diffusers folder."""
    pipe = load_pipeline(folder)
    scheduler_config = pipe.scheduler.config
    out = {}
    with torch.no_grad():
        ids = pipe.tokenizer(
            ["", PROMPT], padding="max_length", max_length=77, truncation=True, return_tensors="pt"
        ).input_ids
        hidden = pipe.text_encoder(ids).last_hidden_state
        cond, uncond = pipe.encode_prompt(PROMPT, "cpu", 1, True)
        if not (torch.equal(cond[0], hidden[1]) and torch.equal(uncond[0], hidden[0])):
            raise AssertionError(f"{folder}: text.hidden is not the pipeline's prompt embeddings")
        out["text.ids"] = ids.to(torch.int32)
        out["text.hidden"] = hidden

        sample = randn((2, 4, 16, 16), UNET_SEED)
        t = torch.tensor([981.0])
        out["unet.sample"], out["unet.timestep"], out["unet.context"] = sample, t, hidden
        out["unet.out"] = pipe.unet(sample, t, encoder_hidden_states=hidden).sample

        sample = randn((1, 4, 24, 16), UNET2_SEED)
        t = torch.tensor([500.5])
        out["unet2.sample"], out["unet2.timestep"], out["unet2.context"] = sample, t, hidden[1:2]
        out["unet2.out"] = pipe.unet(sample, t, encoder_hidden_states=hidden[1:2]).sample

        for name, shape, seed in (
            ("vae", (1, 4, 16, 16), VAE_SEED),
            ("vae2", (1, 4, 8, 12), VAE2_SEED),
        ):
            latent = randn(shape, seed)
            out[f"{name}.latent"] = latent
            out[f"{name}.image"] = pipe.vae.decode(latent).sample

    for name, params in cases.items():
        image, latents = run_case(pipe, scheduler_config, params)
        out[f"image.{name}"] = image
        out[f"image.{name}.latents"] = latents
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


def stages_metadata(cases):
    """One key only: safetensors writes several __metadata__ keys in a random order, and the files
    should be the same byte for byte on every run. The inputs are described in README.md."""
    return {"cases": json.dumps(cases, sort_keys=True)}


MODELS = (
    # name, sd2, seed, cases
    ("sd1", False, 100, CASES_SD1),
    ("sd2", True, 200, CASES_SD2),
)


def output_files():
    """Every file this script writes (tests/fixtures also holds other generators' files)."""
    paths = [os.path.join(FIXTURES, "tiny-sd1.yaml")]
    for name, _, _, _ in MODELS:
        paths += [
            os.path.join(FIXTURES, f"tiny-{name}.safetensors"),
            os.path.join(FIXTURES, f"stages-{name}.safetensors"),
        ]
        for dirpath, _, files in os.walk(os.path.join(FIXTURES, f"tiny-{name}")):
            paths += [os.path.join(dirpath, fn) for fn in files]
    return sorted(paths)


def main():
    import diffusers
    import transformers

    torch.set_num_threads(2)
    os.makedirs(FIXTURES, exist_ok=True)
    versions = (torch.__version__, diffusers.__version__, transformers.__version__)
    print("torch %s, diffusers %s, transformers %s" % versions)
    for name, sd2, seed, cases in MODELS:
        folder = os.path.join(FIXTURES, f"tiny-{name}")
        save_folder(folder, sd2, seed)
        ckpt = os.path.join(FIXTURES, f"tiny-{name}.safetensors")
        save_file(single_file_state(folder, sd2, seed), ckpt)
        verify_single_file(ckpt, folder, sd2)
        verify_single_file_pipeline(ckpt, folder)
        if not sd2:
            yaml_path = os.path.join(FIXTURES, "tiny-sd1.yaml")
            with open(yaml_path, "w") as f:
                f.write(TINY_SD1_YAML)
            verify_yaml(yaml_path, folder, ckpt)
        print(f"tiny-{name}: folder + single file written and verified")
        stages = compute_stages(folder, cases)
        save_file(
            stages,
            os.path.join(FIXTURES, f"stages-{name}.safetensors"),
            metadata=stages_metadata(cases),
        )
        print(f"stages-{name}: {len(stages)} tensors")

    total = 0
    for path in output_files():
        size = os.path.getsize(path)
        total += size
        print(f"{size:>10}  {os.path.relpath(path, ROOT)}")
    print(f"{total:>10}  total")
    return 0


if __name__ == "__main__":
    sys.exit(main())
