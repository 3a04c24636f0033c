"""Writes the depth-estimation fixtures under tests/fixtures/depth/ for tests/test_dpt.c:

  tiny-dpt-hybrid/      DPTForDepthEstimation, DPT-hybrid with a BiT backbone (layer_type
                        "bottleneck", "same" padding, dynamic padding in the stem) as the SD 2
                        depth checkpoint's depth_estimator/ ships it, shrunk: 64x64 input,
                        BiT depths [1, 1, 1], hidden 32, 4 layers.
  tiny-dpt-vit/         plain ViT DPT (readout "project", reassemble factors 4, 2, 1, 0.5,
                        batch norm in the fusion residual units), 64x64 input, patch 16.
  stages-hybrid.safetensors, stages-vit.safetensors: per model, the input pixel_values
                        (1, 3, 64, 64) (seeded normal values) and every stage's output
                        (names below), float32; for the ViT also pixel_values.48 (1, 3, 48, 48)
                        and its predicted_depth.48 (position embeddings resized to 3x3).
  resize.safetensors    torch's F.interpolate on odd sizes (bilinear / bicubic, both
                        align_corners), the ops' reference; depth_map.in (1, 37, 45) and
                        depth_map.out (1, 1, 4, 5): prepare_depth_map's resize and min-max.
  npy/                  the depth map as .npy, (H, W) and (1, H, W), and files the reader must
                        refuse (float64, Fortran order, (2, H, W), 1-D, big-endian, NaN,
                        truncated, wrong magic).

Both folders are written with save_pretrained and the stage outputs computed from the model that
DPTForDepthEstimation.from_pretrained loads back, in float32 on the CPU. Every parameter and
batch-norm statistic is randomized (norm weights 1 + 0.25 N(0, 1), the rest N(0, 0.2), running
variances in [0.5, 1.5]) so that none can be ignored unnoticed.

Run from anywhere: python3 tests/reference/make_dpt_fixtures.py (deterministic, a few seconds).
"""

import os

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import BitConfig, DPTConfig, DPTForDepthEstimation

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "depth")


def hybrid_config():
    backbone = BitConfig(
        layer_type="bottleneck",
        global_padding="same",
        embedding_dynamic_padding=True,
        depths=[1, 1, 1],
        hidden_sizes=[16, 32, 64],
        embedding_size=8,
        num_groups=4,
        out_features=["stage1", "stage2", "stage3"],
    )
    return DPTConfig(
        is_hybrid=True,
        backbone_config=backbone,
        backbone_featmap_shape=[1, 64, 4, 4],
        image_size=64,
        patch_size=16,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=64,
        neck_hidden_sizes=[16, 32, 24, 32],
        reassemble_factors=[1, 1, 1, 0.5],
        backbone_out_indices=[0, 1, 2, 3],
        fusion_hidden_size=16,
        readout_type="project",
        neck_ignore_stages=[0, 1],
    )


def vit_config():
    return DPTConfig(
        is_hybrid=False,
        image_size=64,
        patch_size=16,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=64,
        neck_hidden_sizes=[8, 16, 24, 32],
        reassemble_factors=[4, 2, 1, 0.5],
        backbone_out_indices=[0, 1, 2, 3],
        fusion_hidden_size=16,
        readout_type="project",
        use_batch_norm_in_fusion_residual=True,
    )


def randomize(model, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            is_norm_weight = name.endswith("weight") and p.ndim == 1 and "norm" in name
            p.copy_(1.0 + 0.25 * noise if is_norm_weight else 0.2 * noise)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.2 * torch.randn(b.shape, generator=gen))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=gen))


def stages(model, pixel_values):
    """Module outputs by fixture name, captured with forward hooks."""
    captured = {}

    def keep(name):
        def hook(module, inputs, output):
            if isinstance(output, torch.Tensor):
                captured[name] = output.detach().clone().contiguous()
            elif name.startswith("dpt.embeddings"):
                captured[name] = output.last_hidden_states.detach().clone().contiguous()

        return hook

    cfg = model.config
    names = {}
    if cfg.is_hybrid:
        bit = model.dpt.embeddings.backbone.bit
        names["bit.stem"] = bit.embedder
        for i, stage in enumerate(bit.encoder.stages):
            names[f"bit.stage{i}"] = stage
    names["dpt.embeddings"] = model.dpt.embeddings
    for i, layer in enumerate(model.dpt.encoder.layer):
        names[f"vit.layer{i}"] = layer
    for i, layer in enumerate(model.neck.reassemble_stage.layers):
        names[f"neck.reassemble{i}"] = layer
    for i, conv in enumerate(model.neck.convs):
        names[f"neck.conv{i}"] = conv
    for i, layer in enumerate(model.neck.fusion_stage.layers):
        names[f"neck.fusion{i}"] = layer
    hooks = [m.register_forward_hook(keep(n)) for n, m in names.items()]
    with torch.no_grad():
        depth = model(pixel_values).predicted_depth
    for h in hooks:
        h.remove()
    captured["predicted_depth"] = depth.contiguous()
    captured["pixel_values"] = pixel_values
    return captured


def make_model(config, folder, seed):
    torch.manual_seed(seed)
    model = DPTForDepthEstimation(config).eval()
    randomize(model, seed)
    path = os.path.join(OUT, folder)
    model.save_pretrained(path)
    loaded = DPTForDepthEstimation.from_pretrained(path).eval()
    for (na, a), (nb, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        if na != nb or not torch.equal(a, b):
            raise AssertionError(f"{folder}: {na} does not load back")
    return loaded


def resize_cases():
    gen = torch.Generator().manual_seed(7)
    out = {}
    x = torch.randn((2, 3, 13, 17), generator=gen)
    for mode in ("bilinear", "bicubic"):
        for ac in (False, True):
            for size in ((26, 34), (5, 7), (13, 17), (31, 9)):
                key = f"{mode}.{int(ac)}.{size[0]}x{size[1]}"
                out[key] = F.interpolate(x, size=size, mode=mode, align_corners=ac).contiguous()
    out["x"] = x
    return out


def depth_map_cases():
    """StableDiffusionDepth2ImgPipeline.prepare_depth_map's arithmetic on a user depth map of
    37x45 for a 45x37 image (latents 4x5, vae_scale_factor 8), and .npy files for the reader."""
    gen = torch.Generator().manual_seed(21)
    depth = (torch.rand((1, 37, 45), generator=gen) * 10.0 + 2.0).contiguous()
    height, width = 37, 45
    out = torch.nn.functional.interpolate(
        depth.unsqueeze(1), size=(height // 8, width // 8), mode="bicubic", align_corners=False
    )
    depth_min = torch.amin(out, dim=[1, 2, 3], keepdim=True)
    depth_max = torch.amax(out, dim=[1, 2, 3], keepdim=True)
    out = 2.0 * (out - depth_min) / (depth_max - depth_min) - 1.0
    npy = os.path.join(OUT, "npy")
    os.makedirs(npy, exist_ok=True)
    arr = depth[0].numpy()
    np.save(os.path.join(npy, "depth_hw.npy"), arr)
    np.save(os.path.join(npy, "depth_1hw.npy"), arr[None])
    np.save(os.path.join(npy, "bad_float64.npy"), arr.astype(np.float64))
    np.save(os.path.join(npy, "bad_fortran.npy"), np.asfortranarray(arr))
    np.save(os.path.join(npy, "bad_2hw.npy"), np.stack([arr, arr]))
    np.save(os.path.join(npy, "bad_1d.npy"), arr[0])
    np.save(os.path.join(npy, "bad_bigendian.npy"), arr.astype(">f4"))
    nan = arr.copy()
    nan[3, 4] = np.nan
    np.save(os.path.join(npy, "bad_nan.npy"), nan)
    with open(os.path.join(npy, "depth_hw.npy"), "rb") as f:
        whole = f.read()
    with open(os.path.join(npy, "bad_truncated.npy"), "wb") as f:
        f.write(whole[:-6])
    with open(os.path.join(npy, "bad_magic.npy"), "wb") as f:
        f.write(b"PK" + whole[2:])
    return {"depth_map.in": depth, "depth_map.out": out.contiguous()}


def main():
    os.makedirs(OUT, exist_ok=True)
    for folder, config, seed in (("tiny-dpt-hybrid", hybrid_config(), 11),
                                 ("tiny-dpt-vit", vit_config(), 12)):
        model = make_model(config, folder, seed)
        gen = torch.Generator().manual_seed(seed + 100)
        pixels = torch.randn((1, 3, 64, 64), generator=gen)
        tensors = stages(model, pixels)
        if not config.is_hybrid:
            # another grid than the position embeddings': _resize_pos_embed interpolates them
            other = torch.randn((1, 3, 48, 48), generator=gen)
            with torch.no_grad():
                tensors["predicted_depth.48"] = model(other).predicted_depth.contiguous()
            tensors["pixel_values.48"] = other
        name = "stages-" + folder.split("-")[-1] + ".safetensors"
        save_file(tensors, os.path.join(OUT, name))
        print(name, {k: tuple(v.shape) for k, v in tensors.items()})
    resize = resize_cases()
    resize.update(depth_map_cases())
    save_file(resize, os.path.join(OUT, "resize.safetensors"))


if __name__ == "__main__":
    main()
