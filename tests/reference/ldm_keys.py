"""Diffusers -> original (LDM / CompVis / OpenCLIP) state-dict conversion for SD 1.x and 2.x.

The inverse of diffusers' loaders/single_file_utils.py converters (convert_ldm_unet_checkpoint,
convert_ldm_vae_checkpoint, convert_ldm_clip_checkpoint, convert_open_clip_checkpoint), written
from the key layouts those functions read. Used by make_fixtures.py to write the single-file
checkpoints tests/fixtures/tiny-sd{1,2}.safetensors and by make_upscale_single_file.py for
tests/fixtures/tiny-upscaler.safetensors.
"""

import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."
OPEN_CLIP_PREFIX = "cond_stage_model.model."

# diffusers ResnetBlock2D (UNet) -> LDM ResBlock sub-names
_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}

# diffusers VAE Attention -> LDM AttnBlock sub-names
_VAE_ATTN = {
    "group_norm": "norm",
    "to_q": "q",
    "to_k": "k",
    "to_v": "v",
    "to_out.0": "proj_out",
}


def _take(sd, out, src_prefix, dst_prefix, rename=None):
    """Moves every sd key under src_prefix to dst_prefix in out, renaming the first dotted
    component after the prefix through `rename` when given. Returns the number of keys moved."""
    moved = 0
    for key in [k for k in sd if k.startswith(src_prefix)]:
        rest = key[len(src_prefix) :]
        if rename is not None:
            for old, new in rename.items():
                if rest.startswith(old + "."):
                    rest = new + rest[len(old) :]
                    break
            else:
                raise KeyError(f"ldm_keys: no LDM name for '{key}'")
        out[dst_prefix + rest] = sd.pop(key)
        moved += 1
    return moved


def unet_to_ldm(sd, config):
    """diffusers UNet2DConditionModel state dict -> LDM UNetModel keys (without prefix)."""
    sd = dict(sd)
    out = {}
    levels = len(config["block_out_channels"])
    lpb = config["layers_per_block"]
    for src, dst in [
        ("time_embedding.linear_1.", "time_embed.0."),
        ("time_embedding.linear_2.", "time_embed.2."),
        ("conv_in.", "input_blocks.0.0."),
        ("conv_norm_out.", "out.0."),
        ("conv_out.", "out.2."),
        # the x4 upscaler's nn.Embedding of noise levels (num_class_embeds; LDM's num_classes)
        ("class_embedding.", "label_emb."),
    ]:
        _take(sd, out, src, dst)

    for b in range(levels):
        for j in range(lpb):
            i = 1 + b * (lpb + 1) + j
            _take(sd, out, f"down_blocks.{b}.resnets.{j}.", f"input_blocks.{i}.0.", _UNET_RESNET)
            _take(sd, out, f"down_blocks.{b}.attentions.{j}.", f"input_blocks.{i}.1.")
        if b < levels - 1:
            i = 1 + b * (lpb + 1) + lpb
            _take(sd, out, f"down_blocks.{b}.downsamplers.0.conv.", f"input_blocks.{i}.0.op.")

    _take(sd, out, "mid_block.resnets.0.", "middle_block.0.", _UNET_RESNET)
    _take(sd, out, "mid_block.attentions.0.", "middle_block.1.")
    _take(sd, out, "mid_block.resnets.1.", "middle_block.2.", _UNET_RESNET)

    for b in range(levels):
        for j in range(lpb + 1):
            i = b * (lpb + 1) + j
            _take(sd, out, f"up_blocks.{b}.resnets.{j}.", f"output_blocks.{i}.0.", _UNET_RESNET)
            has_attn = _take(sd, out, f"up_blocks.{b}.attentions.{j}.", f"output_blocks.{i}.1.") > 0
            if j == lpb and b < levels - 1:
                slot = 2 if has_attn else 1
                _take(sd, out, f"up_blocks.{b}.upsamplers.0.", f"output_blocks.{i}.{slot}.")
    if sd:
        raise KeyError(f"ldm_keys: unconverted UNet keys {sorted(sd)}")
    return out


def _vae_resnet_names(sd, out, src, dst):
    _take(
        sd,
        out,
        src,
        dst,
        {
            "norm1": "norm1",
            "conv1": "conv1",
            "norm2": "norm2",
            "conv2": "conv2",
            "conv_shortcut": "nin_shortcut",
        },
    )


def _vae_attention(sd, out, src, dst):
    """Linear (C, C) attention projections become 1x1 convs (C, C, 1, 1) as in LDM's AttnBlock."""
    moved = {}
    _take(sd, moved, src, dst, _VAE_ATTN)
    for key, value in moved.items():
        if value.ndim == 2:
            value = value[:, :, None, None]
        out[key] = value


def vae_to_ldm(sd, config):
    """diffusers AutoencoderKL state dict -> LDM AutoencoderKL keys (without prefix)."""
    sd = dict(sd)
    out = {}
    levels = len(config["block_out_channels"])
    for side in ("encoder", "decoder"):
        _take(sd, out, f"{side}.conv_in.", f"{side}.conv_in.")
        _take(sd, out, f"{side}.conv_out.", f"{side}.conv_out.")
        _take(sd, out, f"{side}.conv_norm_out.", f"{side}.norm_out.")
        for r in range(2):
            _vae_resnet_names(
                sd, out, f"{side}.mid_block.resnets.{r}.", f"{side}.mid.block_{r + 1}."
            )
        _vae_attention(sd, out, f"{side}.mid_block.attentions.0.", f"{side}.mid.attn_1.")
    _take(sd, out, "quant_conv.", "quant_conv.")
    _take(sd, out, "post_quant_conv.", "post_quant_conv.")
    for i in range(levels):
        for j in range(config["layers_per_block"]):
            _vae_resnet_names(
                sd, out, f"encoder.down_blocks.{i}.resnets.{j}.", f"encoder.down.{i}.block.{j}."
            )
        _take(
            sd,
            out,
            f"encoder.down_blocks.{i}.downsamplers.0.conv.",
            f"encoder.down.{i}.downsample.conv.",
        )
    for i in range(levels):
        ldm = levels - 1 - i  # LDM numbers decoder levels from the lowest resolution's opposite end
        for j in range(config["layers_per_block"] + 1):
            _vae_resnet_names(
                sd, out, f"decoder.up_blocks.{i}.resnets.{j}.", f"decoder.up.{ldm}.block.{j}."
            )
        _take(
            sd, out, f"decoder.up_blocks.{i}.upsamplers.0.conv.", f"decoder.up.{ldm}.upsample.conv."
        )
    if sd:
        raise KeyError(f"ldm_keys: unconverted VAE keys {sorted(sd)}")
    return out


def clip_to_ldm(sd):
    """transformers CLIPTextModel state dict -> FrozenCLIPEmbedder keys (without prefix): the same
    names (text_model.*) under cond_stage_model.transformer."""
    return dict(sd)


_OPEN_CLIP_LAYER = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
    "self_attn.out_proj": "attn.out_proj",
}


def clip_to_open_clip(sd, num_layers, extra_layer, text_projection, logit_scale):
    """transformers CLIPTextModel state dict (num_layers layers) -> OpenCLIP text tower keys
    (without prefix). q/k/v projections are stacked into attn.in_proj_{weight,bias} (3C, C).
    extra_layer: state dict of one more resblock (OpenCLIP names: ln_1.weight, attn.in_proj_weight,
    ...) appended as resblocks.<num_layers>, the last layer SD 2.x skips (it takes the penultimate
    layer's output)."""
    sd = dict(sd)
    out = {
        "token_embedding.weight": sd.pop("text_model.embeddings.token_embedding.weight"),
        "positional_embedding": sd.pop("text_model.embeddings.position_embedding.weight"),
        "ln_final.weight": sd.pop("text_model.final_layer_norm.weight"),
        "ln_final.bias": sd.pop("text_model.final_layer_norm.bias"),
        "text_projection": text_projection,
        "logit_scale": logit_scale,
    }
    for n in range(num_layers):
        src = f"text_model.encoder.layers.{n}."
        dst = f"transformer.resblocks.{n}."
        for kind in ("weight", "bias"):
            qkv = [sd.pop(f"{src}self_attn.{p}_proj.{kind}") for p in ("q", "k", "v")]
            out[f"{dst}attn.in_proj_{kind}"] = torch.cat(qkv, dim=0)
        _take(sd, out, src, dst, _OPEN_CLIP_LAYER)
    for key, value in extra_layer.items():
        out[f"transformer.resblocks.{num_layers}.{key}"] = value
    if sd:
        raise KeyError(f"ldm_keys: unconverted OpenCLIP keys {sorted(sd)}")
    return out
