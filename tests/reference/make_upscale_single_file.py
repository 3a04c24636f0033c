"""Writes the tiny x4 upscaler as an original single-file checkpoint, for tests/test_model_files.c
and tests/test_upscale.c:

tests/fixtures/tiny-upscaler.safetensors: tests/fixtures/tiny-upscaler's fp16 weights in the layout
  of Stability's x4-upscaler-ema.safetensors (ldm_keys.py; the UNet's class_embedding as
  label_emb.weight), the text encoder as OpenCLIP keys with an unused last resblock,
  text_projection and logit_scale exactly as make_fixtures.py writes tiny-sd2.safetensors (same
  seed: the same tensors).
tests/fixtures/tiny-upscaler.yaml: configs/stable-diffusion/x4-upscaling.yaml with the tiny
  sizes.

Checked here with diffusers: its own converters turn the file back into the folder's tensors
bit for bit, StableDiffusionUpscalePipeline.from_single_file(config=folder) loads the folder's
UNet, VAE and text encoder and the folder's low-res scheduler betas, and diffusers' LDM-config
readers turn the YAML into the folder's UNet config.

Run from anywhere after make_upscale_fixtures.py and make_fixtures.py:
python3 tests/reference/make_upscale_single_file.py (deterministic, a few seconds).
"""

import json
import os
import sys

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_fixtures  # noqa: E402

ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
FOLDER = os.path.join(FIXTURES, "tiny-upscaler")
CKPT = os.path.join(FIXTURES, "tiny-upscaler.safetensors")
YAML = os.path.join(FIXTURES, "tiny-upscaler.yaml")
SD2_SEED = 200  # make_fixtures.MODELS' seed of tiny-sd2, whose text encoder the upscaler shares

# x4-upscaling.yaml with the tiny sizes. The main model's betas are the folder's scheduler
# (tiny-sd2's) so that the single file with this YAML equals the folder; the real file states
# linear_start 0.0001, linear_end 0.02.
TINY_UPSCALER_YAML = """\
# Stability's configs/stable-diffusion/x4-upscaling.yaml with the sizes of
# tests/fixtures/tiny-upscaler (written by tests/reference/make_upscale_single_file.py).
# linear_start / linear_end are the folder's scheduler (the real file: 0.0001, 0.02).
# attention_resolutions lists downsampling factors: level 0 has attention, and its attn1
# attends to the context (disable_self_attentions) -- its 32 channels equal context_dim, so the
# checkpoint's shapes cannot tell.
model:
  base_learning_rate: 1.0e-04
  target: ldm.models.diffusion.ddpm.LatentUpscaleDiffusion
  params:
    parameterization: "v"
    low_scale_key: "lr"
    linear_start: 0.00085
    linear_end: 0.012
    num_timesteps_cond: 1
    log_every_t: 200
    timesteps: 1000
    first_stage_key: "jpg"
    cond_stage_key: "txt"
    image_size: 16
    channels: 4
    cond_stage_trainable: false
    conditioning_key: "hybrid-adm"
    monitor: val/loss_simple_ema
    scale_factor: 0.08333
    use_ema: False

    low_scale_config:
      target: ldm.modules.diffusionmodules.upscaling.ImageConcatWithNoiseAugmentation
      params:
        noise_schedule_config: # image space
          linear_start: 0.0001
          linear_end: 0.02
        max_noise_level: 350

    unet_config:
      target: ldm.modules.diffusionmodules.openaimodel.UNetModel
      params:
        use_checkpoint: True
        num_classes: 1000
        image_size: 16
        in_channels: 7
        out_channels: 4
        model_channels: 32
        attention_resolutions: [ 1 ]
        num_res_blocks: 1
        channel_mult: [ 1, 2 ]
        disable_self_attentions: [True, False]
        disable_middle_self_attn: False
        num_heads: 4
        use_spatial_transformer: True
        transformer_depth: 1
        context_dim: 32
        legacy: False
        use_linear_in_transformer: True

    first_stage_config:
      target: ldm.models.autoencoder.AutoencoderKL
      params:
        embed_dim: 4
        ddconfig:
          double_z: True
          z_channels: 4
          resolution: 32
          in_channels: 3
          out_ch: 3
          ch: 16
          ch_mult: [ 1, 2, 2 ]
          num_res_blocks: 1
          attn_resolutions: [ ]
          dropout: 0.0
          # not an LDM key (LDM's VAE always has 32 groups): sdbatch reads it for test VAEs
          # narrower than 32 channels
          norm_num_groups: 8

        lossconfig:
          target: torch.nn.Identity

    cond_stage_config:
      target: ldm.modules.encoders.modules.FrozenOpenCLIPEmbedder
      params:
        freeze: True
        layer: "penultimate"
        # not an LDM key: the tiny text encoder's heads (see tiny-sd1.yaml)
        num_attention_heads: 4
"""


def verify_pipeline(path):
    """StableDiffusionUpscalePipeline.from_single_file loads the folder's weights (in float32: the
    UNet and text encoder are fp16, the VAE fp32; every value exact) and builds the folder's
    low-res noise schedule."""
    from diffusers import StableDiffusionUpscalePipeline

    pipe = StableDiffusionUpscalePipeline.from_single_file(
        path, config=FOLDER, local_files_only=True, torch_dtype=torch.float32
    )
    for sub in ("unet", "vae", "text_encoder"):
        name = (
            "model.safetensors" if sub == "text_encoder" else "diffusion_pytorch_model.safetensors"
        )
        want = make_fixtures.folder_state(FOLDER, sub, name)
        if sub == "text_encoder":
            want = {k.removeprefix("text_model."): v for k, v in want.items()}
        want = {k: v.float() for k, v in want.items()}
        make_fixtures.assert_same(f"from_single_file {sub}", getattr(pipe, sub).state_dict(), want)
    with open(os.path.join(FOLDER, "low_res_scheduler", "scheduler_config.json")) as f:
        want = json.load(f)
    got = pipe.low_res_scheduler.config
    for key in ("beta_start", "beta_end", "beta_schedule", "num_train_timesteps", "clip_sample"):
        if got[key] != want[key]:
            raise AssertionError(f"low_res_scheduler {key} = {got[key]}, folder has {want[key]}")


def verify_yaml(path, ckpt_path):
    """diffusers' LDM-config reader turns the YAML into the folder's UNet config (it takes
    sample_size from image_size // VAE factor: pass the folder's)."""
    import yaml
    from diffusers.loaders import single_file_utils as sfu
    from safetensors.torch import load_file

    with open(path) as f:
        original = yaml.safe_load(f)
    ckpt = load_file(ckpt_path)
    want = make_fixtures.folder_config(FOLDER, "unet")
    got = sfu.create_unet_diffusers_config_from_ldm(original, ckpt, image_size=16 * 4)
    for k, v in got.items():
        if (list(v) if isinstance(v, tuple) else v) != want[k]:
            raise AssertionError(f"{path}: unet {k} = {v}, folder has {want[k]}")


def main():
    torch.set_num_threads(2)
    state = make_fixtures.single_file_state(FOLDER, True, SD2_SEED)
    save_file(state, CKPT)
    make_fixtures.verify_single_file(CKPT, FOLDER, True)
    verify_pipeline(CKPT)
    with open(YAML, "w") as f:
        f.write(TINY_UPSCALER_YAML)
    verify_yaml(YAML, CKPT)
    for path in (CKPT, YAML):
        print(f"{os.path.getsize(path):>10}  {os.path.relpath(path, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
