"""Writes tests/fixtures/lora-train-sd1.safetensors and lora-train-sd2.safetensors for
tests/test_lora_train.c: three optimizer steps of LoRA fine-tuning of the UNet as diffusers'
DreamBooth-LoRA script (examples/dreambooth/train_dreambooth_lora.py) takes them, with given
latents, noise, timesteps and text embeddings per step:

    unet.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=RANK, lora_alpha=ALPHA, init_lora_weights="gaussian",
                                target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)       # DDPMScheduler
    pred = unet(noisy, timesteps, encoder_hidden_states).sample
    target = noise (epsilon) or noise_scheduler.get_velocity(latents, noise, timesteps)
    loss = F.mse_loss(pred.float(), target.float(), reduction="mean")
    loss.backward(); clip_grad_norm_(lora parameters, MAX_NORM)
    optimizer.step(); lr_scheduler.step(); optimizer.zero_grad()

with torch.optim.AdamW over the LoRA parameters (lr LR, betas (0.9, 0.999), weight_decay 1e-2,
eps 1e-8) and get_scheduler("linear", num_warmup_steps 1, num_training_steps 3). The pipeline is
the tiny fixture folder (tests/fixtures/tiny-sd1, epsilon; tiny-sd2, v_prediction) loaded with
StableDiffusionPipeline.from_pretrained, the noise scheduler DDPMScheduler.from_config(
pipe.scheduler.config). Before training, lora_A and lora_B are set to given values:
  sd1: rank 4, alpha 4 (scale 1): A ~ N(0, 1/r) (the script's "gaussian" init), B = 0 (so the
       first step's gradient of A is exactly 0, as in a real run);
  sd2: rank 2, alpha 5 (scale 2.5): A ~ U(-1/sqrt(in), 1/sqrt(in)) (peft's default init),
       B ~ N(0, 0.05^2) (a run under way: both gradients non-zero from the first step).
Inputs and initial values from a seeded torch.Generator('cpu').

The loop runs twice on the same inputs: in float32 (what users run: loss, gradient norm and
learning rate of each step come from it) and in float64 (a deep copy of the adapted model cast
to float64, inputs cast), and a third time in float32 with each item's forward and backward on
its own (sdbatch's order: the gradients of the two items added). The final A and B stored are the
float64 run's rounded to float32, with gap32.<key>: how far torch's own float32 runs ended from
them (max over the two runs of max |p32 - p64| / max |p64|) and gapchange32.<key>: the same over
the change from the start (max |p32 - p64| / max |p64 - p0|). AdamW divides each gradient by its
own root mean square, so where B starts at 0 (sd1) B's values are normalised gradients and the
float32 noise of small gradient elements shows in full: torch's own gaps are ~1e-4 there.

Tensors (keys <m> = the diffusers module name, e.g.
down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q): for each step s in 0..2: latents.s,
noise.s (B, 4, H, W), timesteps.s (B) I32, context.s (B, 77, D); loss (3), grad_norm (3)
(clip_grad_norm_'s total before clipping), lr (3); rank (1) I32, alpha (1); init.<m>.lora_A.weight,
init.<m>.lora_B.weight; final.<m>.lora_A.weight, final.<m>.lora_B.weight; gap32.<m>.lora_A.weight
etc. (1); gapchange32.<m>... (1); grad0.<m>.lora_A.weight, grad0.<m>.lora_B.weight: the
float64 run's gradients of the first step (before clipping), gradgap32.<m>... (1): torch float32's
own distance from them (max over both float32 runs of max |g32 - g64| / max |g64|; 0 where the
gradient is 0: sd1's A, since B = 0).

The script also saves the float32 run's LoRA as the script does (convert_state_dict_to_diffusers(
get_peft_model_state_dict(unet)): keys unet.<m>.lora.down.weight / .lora.up.weight) with
save_lora_weights (alpha metadata where alpha !=
rank, as diffusers' newer scripts pass unet_lora_adapter_metadata) and loads it back with
pipe.load_lora_weights, checking names, values and scale.

--check DIR FAMILY: loads DIR/pytorch_lora_weights.safetensors (written by sdbatch's LoRA
trainer, e.g. by test_lora_train with SD_TEST_KEEP_DIR=DIR, which writes DIR/sd1/ and DIR/sd2/)
into the tiny pipeline with pipe.load_lora_weights(DIR) and checks that every adapted layer got
the file's A and B with scale alpha / rank, and that the pipeline renders with it.

Run from anywhere: python3 tests/reference/make_lora_train_fixtures.py (about 20 s on 2 cores).
"""

import copy
import json
import math
import os
import sys
import tempfile

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, StableDiffusionPipeline
from diffusers.optimization import get_scheduler
from diffusers.utils import convert_state_dict_to_diffusers
from peft import LoraConfig
from peft.tuners.lora import LoraLayer
from peft.utils import get_peft_model_state_dict
from safetensors import safe_open
from safetensors.torch import save_file

from make_unet_train_fixtures import make_batches

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.normpath(os.path.join(HERE, "..", "fixtures"))
STEPS = 3
LR = 5e-4
MAX_NORM = 1.0
TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]

# family: (latent shape, seed, rank, alpha, init)
CASES = {
    "sd1": ((2, 4, 16, 16), 61, 4, 4.0, "gaussian_b0"),
    "sd2": ((2, 4, 16, 24), 62, 2, 5.0, "kaiming_b"),
}


def load_pipe(family):
    folder = os.path.join(FIXTURES, f"tiny-{family}")
    return StableDiffusionPipeline.from_pretrained(
        folder, safety_checker=None, dtype=torch.float32
    )


def lora_layers(unet):
    """(diffusers module name, peft LoRA layer) in module order."""
    return [(n, m) for n, m in unet.named_modules() if isinstance(m, LoraLayer)]


def adapt(unet, rank, alpha):
    unet.requires_grad_(False)
    unet.add_adapter(
        LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=TARGETS)
    )


def train(unet, noise_scheduler, batches, dtype, per_item=False):
    """The DreamBooth-LoRA loop over the batches in dtype: per-step figures, final A and B.
    per_item: the same loss and gradients with each item's forward and backward on its own
    (loss = sum over items of their mean squared error / batch), as sdbatch computes them: the
    same arithmetic in float32 in another order."""
    unet.train()
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=LR, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
    lr_scheduler = get_scheduler(
        "linear", optimizer=optimizer, num_warmup_steps=1, num_training_steps=STEPS
    )
    prediction = noise_scheduler.config.prediction_type
    losses, norms, lrs, grads0 = [], [], [], {}
    for latents, noise, timesteps, context in batches:
        latents, noise, context = latents.to(dtype), noise.to(dtype), context.to(dtype)
        noisy = noise_scheduler.add_noise(latents, noise, timesteps)
        if prediction == "epsilon":
            target = noise
        else:
            target = noise_scheduler.get_velocity(latents, noise, timesteps)
        if per_item:
            loss = 0.0
            for b in range(latents.shape[0]):
                pred = unet(noisy[b : b + 1], timesteps[b : b + 1], context[b : b + 1]).sample
                item = F.mse_loss(pred, target[b : b + 1], reduction="mean") / latents.shape[0]
                item.backward()
                loss = loss + item.detach()
        else:
            pred = unet(noisy, timesteps, context).sample
            loss = F.mse_loss(pred, target, reduction="mean")
            loss.backward()
        if not grads0:
            for name, layer in lora_layers(unet):
                for part, mod in (("lora_A", layer.lora_A), ("lora_B", layer.lora_B)):
                    grads0[f"{name}.{part}.weight"] = mod["default"].weight.grad.detach().clone()
        norm = torch.nn.utils.clip_grad_norm_(params, MAX_NORM)
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        norms.append(norm.item())
    final = {}
    for name, layer in lora_layers(unet):
        final[f"{name}.lora_A.weight"] = layer.lora_A["default"].weight.detach().clone()
        final[f"{name}.lora_B.weight"] = layer.lora_B["default"].weight.detach().clone()
    return losses, norms, lrs, final, grads0


def check_saved(family, unet, rank, alpha, final):
    """save_lora_weights then load_lora_weights: the diffusers format sdbatch writes."""
    state = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    meta = None
    if alpha != rank:
        meta = {"r": rank, "lora_alpha": alpha, "target_modules": TARGETS}
    with tempfile.TemporaryDirectory() as tmp:
        StableDiffusionPipeline.save_lora_weights(
            tmp, unet_lora_layers=state, unet_lora_adapter_metadata=meta
        )
        path = os.path.join(tmp, "pytorch_lora_weights.safetensors")
        with safe_open(path, "pt") as f:
            keys = sorted(f.keys())
            metadata = f.metadata()
        # convert_state_dict_to_diffusers names them <module>.lora.down / .lora.up
        assert all(k.startswith("unet.") and (".lora.down." in k or ".lora.up." in k) for k in keys)
        print(f"  save_lora_weights: {len(keys)} tensors, e.g. {keys[0]}; metadata {metadata}")
        check_file(family, tmp, rank, alpha, final)


def check_file(family, folder, rank, alpha, want=None):
    """Loads folder's pytorch_lora_weights.safetensors into a fresh tiny pipeline."""
    pipe = load_pipe(family)
    pipe.load_lora_weights(folder)
    layers = lora_layers(pipe.unet)
    path = os.path.join(folder, "pytorch_lora_weights.safetensors")
    with safe_open(path, "pt") as f:
        file = {k: f.get_tensor(k) for k in f.keys()}
    assert len(file) == 2 * len(layers), (len(file), len(layers))
    worst = 0.0
    for name, layer in layers:
        adapter = list(layer.lora_A.keys())[0]
        scale = layer.scaling[adapter]
        assert math.isclose(scale, alpha / rank), (name, scale, alpha / rank)
        parts = (("lora_A", "lora.down", layer.lora_A), ("lora_B", "lora.up", layer.lora_B))
        for part, old, mod in parts:
            got = mod[adapter].weight.detach()
            saved = file.get(f"unet.{name}.{part}.weight", file.get(f"unet.{name}.{old}.weight"))
            assert saved.dtype == torch.float32 and got.shape == saved.shape
            worst = max(worst, (got - saved).abs().max().item())
            if want is not None:
                ref = want[f"{name}.{part}.weight"]
                worst = max(worst, (got - ref).abs().max().item())
    gen = torch.Generator("cpu").manual_seed(0)
    image = pipe(
        "a photo", num_inference_steps=2, height=32, width=32, generator=gen, output_type="np"
    ).images
    assert image.shape[0] == 1 and bool((image == image).all())
    print(
        f"  load_lora_weights({folder}): {len(layers)} layers, scale {alpha / rank}, "
        f"max |loaded - saved| {worst}; renders"
    )
    return worst


def make(family):
    shape, seed, rank, alpha, init = CASES[family]
    pipe = load_pipe(family)
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    unet = pipe.unet
    adapt(unet, rank, alpha)
    cross = unet.config.cross_attention_dim
    steps = noise_scheduler.config.num_train_timesteps
    gen = torch.Generator("cpu").manual_seed(seed)
    tensors = {"rank": torch.tensor([rank], dtype=torch.int32)}
    tensors["alpha"] = torch.tensor([alpha], dtype=torch.float32)
    start = {}
    with torch.no_grad():
        for name, layer in lora_layers(unet):
            a = layer.lora_A["default"].weight
            b = layer.lora_B["default"].weight
            fan_in = a.shape[1]
            if init == "gaussian_b0":
                a.copy_(torch.randn(a.shape, generator=gen) / rank)
                b.zero_()
            else:
                bound = 1.0 / math.sqrt(fan_in)
                a.copy_((torch.rand(a.shape, generator=gen) * 2 - 1) * bound)
                b.copy_(torch.randn(b.shape, generator=gen) * 0.05)
            start[f"{name}.lora_A.weight"] = a.detach().clone()
            start[f"{name}.lora_B.weight"] = b.detach().clone()
    for key, value in start.items():
        tensors[f"init.{key}"] = value.contiguous()
    batches = make_batches(gen, shape, cross, steps, STEPS, tensors)
    unet64 = copy.deepcopy(unet).to(torch.float64)
    unet_items = copy.deepcopy(unet)
    _, _, _, items32, gitems32 = train(
        unet_items, noise_scheduler, batches, torch.float32, per_item=True
    )
    losses, norms, lrs, final32, g32 = train(unet, noise_scheduler, batches, torch.float32)
    losses64, _, _, final64, g64 = train(unet64, noise_scheduler, batches, torch.float64)
    tensors["loss"] = torch.tensor(losses, dtype=torch.float32)
    tensors["grad_norm"] = torch.tensor(norms, dtype=torch.float32)
    tensors["lr"] = torch.tensor(lrs, dtype=torch.float32)
    worst = worst_change = worst_grad = (0.0, "")
    for key, p64 in final64.items():
        p0 = start[key].double()
        diff = max((p[key].double() - p64).abs().max() for p in (final32, items32))
        gap = (diff / p64.abs().max().clamp_min(1e-12)).item()
        gapc = (diff / (p64 - p0).abs().max().clamp_min(1e-30)).item()
        tensors[f"final.{key}"] = p64.float().contiguous()
        tensors[f"gap32.{key}"] = torch.tensor([gap], dtype=torch.float32)
        tensors[f"gapchange32.{key}"] = torch.tensor([gapc], dtype=torch.float32)
        worst = max(worst, (gap, key))
        ref = g64[key]
        gdiff = max((g[key].double() - ref).abs().max() for g in (g32, gitems32))
        tensors[f"grad0.{key}"] = ref.float().contiguous()
        tensors[f"gradgap32.{key}"] = torch.tensor(
            [(gdiff / ref.abs().max().clamp_min(1e-30)).item() if ref.abs().max() > 0 else 0.0],
            dtype=torch.float32,
        )
        worst_grad = max(worst_grad, (tensors[f"gradgap32.{key}"].item(), key))
        worst_change = max(worst_change, (gapc, key))
    path = os.path.join(FIXTURES, f"lora-train-{family}.safetensors")
    save_file(tensors, path, metadata={"prediction_type": noise_scheduler.config.prediction_type})
    print(
        f"{family} ({noise_scheduler.config.prediction_type}, rank {rank}, alpha {alpha}): "
        f"{len(final64) // 2} layers; losses {losses} (float64 {losses64}), grad norms {norms}, "
        f"lr {lrs}; torch float32 vs float64: worst {worst[0]:.2e} ({worst[1]}), of the change "
        f"{worst_change[0]:.2e} ({worst_change[1]}), step 0's gradients {worst_grad[0]:.2e} "
        f"({worst_grad[1]}); {path}: {os.path.getsize(path)} bytes"
    )
    check_saved(family, unet, rank, alpha, final32)


def main():
    torch.set_num_threads(2)
    if len(sys.argv) == 4 and sys.argv[1] == "--check":
        folder, family = sys.argv[2], sys.argv[3]
        path = os.path.join(folder, "pytorch_lora_weights.safetensors")
        with safe_open(path, "pt") as f:
            meta = f.metadata() or {}
            down = next(k for k in f.keys() if ".lora_A." in k or ".lora.down." in k)
            rank = f.get_tensor(down).shape[0]
        alpha = float(rank)
        if "lora_adapter_metadata" in meta:
            alpha = float(json.loads(meta["lora_adapter_metadata"])["unet.lora_alpha"])
        check_file(family, folder, rank, alpha)
        return
    for family in CASES:
        make(family)


if __name__ == "__main__":
    main()
