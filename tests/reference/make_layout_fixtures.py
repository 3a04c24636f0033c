"""Full-size Stable Diffusion checkpoint layouts (key names, dtypes, shapes; no weights) for the
C loader's test of architecture inference on real-size models.

For SD 1.5 and SD 2.1 (768-v), builds the diffusers UNet2DConditionModel / AutoencoderKL and the
transformers CLIPTextModel from the published configs on torch's meta device (no memory, no
download), converts the state dicts to the original single-file layout with ldm_keys.py (the
OpenCLIP tower gets its 24th resblock and CLIP training heads, SD 1.x its int64 position_ids
buffer, both the LDM training buffers real files carry), and writes
tests/fixtures/layouts/<model>.json:

  {"ldm": [[name, dtype, shape], ...],                  the single file's header, in order
   "diffusers": {"unet": [[name, shape], ...], "vae": ..., "text_encoder": ...},
   "config": {"unet": {...}, "vae": {...}, "text_encoder": {...}}}   the config.json contents

test_model_files.c turns "ldm" into a sparse safetensors file and checks that the loader infers
"config" and maps every key to exactly the "diffusers" names and shapes.

Rerun: python3 tests/reference/make_layout_fixtures.py
"""

import json
import os
import sys

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ldm_keys  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "layouts")

UNET_COMMON = dict(
    in_channels=4,
    out_channels=4,
    layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    norm_num_groups=32,
)
VAE = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    norm_num_groups=32,
    scaling_factor=0.18215,
)
MODELS = {
    "sd15": dict(
        unet=dict(UNET_COMMON, sample_size=64, cross_attention_dim=768, attention_head_dim=8),
        vae=dict(VAE, sample_size=512),
        text=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                  hidden_act="quick_gelu"),
    ),
    "sd21-v": dict(
        unet=dict(UNET_COMMON, sample_size=96, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20),
                  use_linear_projection=True, upcast_attention=True),
        vae=dict(VAE, sample_size=768),
        text=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16,
                  hidden_act="gelu"),
    ),
}

# Buffers of LDM's LatentDiffusion that real single files carry (float32, 1000 timesteps).
LDM_BUFFERS = ["betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
               "posterior_variance", "posterior_mean_coef1", "posterior_mean_coef2"]


def meta(*shape):
    return torch.empty(shape, dtype=torch.float16, device="meta")


def shapes(state):
    return [[k, list(v.shape)] for k, v in state.items()]


def dtype_name(t):
    return {torch.float16: "F16", torch.float32: "F32", torch.int64: "I64"}[t.dtype]


def build(spec):
    with torch.device("meta"):
        unet = UNet2DConditionModel(**spec["unet"]).half()
        vae = AutoencoderKL(**spec["vae"]).half()
        text = CLIPTextModel(CLIPTextConfig(vocab_size=49408, max_position_embeddings=77, **spec["text"])).half()
    text_state = {k if k.startswith("text_model.") else "text_model." + k: v for k, v in text.state_dict().items()}
    text_state.pop("text_model.embeddings.position_ids", None)
    return unet, vae, text, text_state


def ldm_state(spec, unet, vae, text_state):
    out = {}
    for k, v in ldm_keys.unet_to_ldm(unet.state_dict(), dict(unet.config)).items():
        out[ldm_keys.UNET_PREFIX + k] = v
    for k, v in ldm_keys.vae_to_ldm(vae.state_dict(), dict(vae.config)).items():
        out[ldm_keys.VAE_PREFIX + k] = v
    hidden, inner = spec["text"]["hidden_size"], spec["text"]["intermediate_size"]
    if spec["text"]["hidden_act"] == "gelu":
        extra = {
            "ln_1.weight": meta(hidden), "ln_1.bias": meta(hidden),
            "attn.in_proj_weight": meta(3 * hidden, hidden), "attn.in_proj_bias": meta(3 * hidden),
            "attn.out_proj.weight": meta(hidden, hidden), "attn.out_proj.bias": meta(hidden),
            "ln_2.weight": meta(hidden), "ln_2.bias": meta(hidden),
            "mlp.c_fc.weight": meta(inner, hidden), "mlp.c_fc.bias": meta(inner),
            "mlp.c_proj.weight": meta(hidden, inner), "mlp.c_proj.bias": meta(hidden),
        }
        converted = ldm_keys.clip_to_open_clip(text_state, spec["text"]["num_hidden_layers"], extra,
                                               text_projection=meta(hidden, hidden), logit_scale=meta())
        for k, v in converted.items():
            out[ldm_keys.OPEN_CLIP_PREFIX + k] = v
    else:
        for k, v in ldm_keys.clip_to_ldm(text_state).items():
            out[ldm_keys.CLIP_PREFIX + k] = v
        out[ldm_keys.CLIP_PREFIX + "text_model.embeddings.position_ids"] = torch.empty(
            (1, 77), dtype=torch.int64, device="meta")
    for name in LDM_BUFFERS:
        out[name] = torch.empty((1000,), dtype=torch.float32, device="meta")
    out["model_ema.decay"] = torch.empty((), dtype=torch.float32, device="meta")
    return out


def config_json(model, extra=None):
    cfg = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(model.config).items()
           if not k.startswith("_")}
    cfg.update(extra or {})
    return cfg


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, spec in MODELS.items():
        unet, vae, text, text_state = build(spec)
        ldm = ldm_state(spec, unet, vae, text_state)
        doc = {
            "ldm": [[k, dtype_name(v), list(v.shape)] for k, v in ldm.items()],
            "diffusers": {"unet": shapes(unet.state_dict()), "vae": shapes(vae.state_dict()),
                          "text_encoder": shapes(text_state)},
            "config": {"unet": config_json(unet), "vae": config_json(vae),
                       "text_encoder": json.loads(text.config.to_json_string())},
        }
        path = os.path.join(OUT, name + ".json")
        with open(path, "w") as f:
            json.dump(doc, f, separators=(",", ":"))
            f.write("\n")
        print(f"{path}: {len(doc['ldm'])} single-file keys, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
