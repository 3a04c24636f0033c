"""Replays an `sdbatch train` LoRA run (lora: true) with diffusers + torch + peft as
train_dreambooth_lora.py runs it, from the run's first checkpoint on, and compares the losses
(loss.csv) and the trained LoRA (out/pytorch_lora_weights.safetensors) with it.

Run in the run's folder: replay_dreambooth_lora_steps.py MODEL SEED STEPS LR [text_encoder].
With text_encoder the run had train_text_encoder: true: peft LoRA on the text encoder's q_proj,
k_proj, v_proj, out_proj too (the script's text_lora_config), the encoder run on every step's ids
with gradients, one AdamW over the UNet's LoRA parameters and then the encoder's, clipped over
both (the script's params_to_optimize / params_to_clip).

sdbatch draws A from its own generators (peft draws from torch's global one), so the replay
starts from out/checkpoint-1/training_state.safetensors: every A and B and AdamW's two moments
after step 1, AdamW's step count 1, the schedule one step on; step 1's random draws are made and
dropped, then steps 2..STEPS run. The run must use: the instance pictures shapes/*.png (square, at
the resolution), train_batch_size 2 with 2 pictures (one micro-batch an epoch), rank 4,
lr_scheduler constant_with_warmup with 1 warmup step, max_grad_norm 1, AdamW defaults, no flips,
checkpointing_steps 1. Exit status 1 unless every loss of steps 2.. agrees within 1e-4 relative
and 99.9% of the LoRA values within 1% of the learning rate (docs/training.md).
"""
import glob
import sys
import warnings

warnings.filterwarnings("ignore")
import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from diffusers.optimization import get_scheduler
from peft import LoraConfig, inject_adapter_in_model
from PIL import Image
from safetensors.torch import load_file
from transformers import CLIPTextModel, CLIPTokenizer

model, seed, steps, lr = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
train_te = len(sys.argv) > 5 and sys.argv[5] == "text_encoder"
RANK = 4
tok = CLIPTokenizer.from_pretrained(model, subfolder="tokenizer")
te = CLIPTextModel.from_pretrained(model, subfolder="text_encoder", dtype=torch.float32)
vae = AutoencoderKL.from_pretrained(model, subfolder="vae", dtype=torch.float32)
unet = UNet2DConditionModel.from_pretrained(model, subfolder="unet", dtype=torch.float32)
noise_scheduler = DDPMScheduler.from_pretrained(model, subfolder="scheduler")
for net in (te, vae, unet):
    net.requires_grad_(False)
unet.add_adapter(
    LoraConfig(r=RANK, lora_alpha=RANK, init_lora_weights="gaussian",
               target_modules=["to_k", "to_q", "to_v", "to_out.0"])
)
nets = {"unet": unet}
if train_te:
    # peft itself (transformers' add_adapter wants a newer peft; the layers are the same)
    inject_adapter_in_model(
        LoraConfig(r=RANK, lora_alpha=RANK, init_lora_weights="gaussian",
                   target_modules=["q_proj", "k_proj", "v_proj", "out_proj"]),
        te,
    )
    nets["text_encoder"] = te


def lora_param(name, parts):
    """The peft parameter of a saved name '<model>.<module>.<down part>.weight'."""
    prefix, rest = name.split(".", 1)
    for down, up in parts:
        for part, kind in ((down, "lora_A"), (up, "lora_B")):
            suffix = f".{part}.weight"
            if rest.endswith(suffix):
                path = rest[: -len(suffix)]
                if prefix == "text_encoder":  # transformers >= 5: no text_model. module level
                    path = path.removeprefix("text_model.")
                module = nets[prefix].get_submodule(path)
                return getattr(module, kind)["default"].weight
    raise KeyError(name)


params = [p for net in nets.values() for p in net.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8, foreach=False)
sched = get_scheduler("constant_with_warmup", optimizer=opt, num_warmup_steps=1, num_training_steps=steps)
state = load_file("out/checkpoint-1/training_state.safetensors")
restored = 0
with torch.no_grad():
    for name, value in state.items():
        if not name.startswith(("unet.", "text_encoder.")):  # moments, data order, streams
            continue
        p = lora_param(name, [("lora.down", "lora.up")])
        p.copy_(value)
        opt.state[p] = {
            "step": torch.tensor(1.0),
            "exp_avg": state["adamw.exp_avg." + name].clone(),
            "exp_avg_sq": state["adamw.exp_avg_sq." + name].clone(),
        }
        restored += 1
if restored != len(params):
    print(f"FAIL: the checkpoint holds {restored} LoRA parameters, the peft models {len(params)}")
    sys.exit(1)
sched.step()  # step 1 taken
files = sorted(glob.glob("shapes/*.png"))
pixels = torch.stack([(torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1).float().div(255) - 0.5) / 0.5 for f in files])
ids = tok("a photo of sks shape", padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt").input_ids
with torch.no_grad():
    frozen_ctx = te(ids)[0]  # B = 0: the adapter adds nothing yet
order_g = torch.Generator().manual_seed(seed)
draw_g = torch.Generator().manual_seed(seed + 1)
order = torch.randperm(len(files), generator=order_g)
losses = []
for step in range(steps):
    batch = order[:2]
    with torch.no_grad():
        latents = vae.encode(pixels[batch]).latent_dist.sample(generator=draw_g) * vae.config.scaling_factor
    noise = torch.randn(latents.shape, generator=draw_g)
    t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (latents.shape[0],), generator=draw_g).long()
    order = torch.randperm(len(files), generator=order_g)  # one epoch per step (2 pictures, batch 2)
    if step == 0:
        continue  # taken by sdbatch; its state is the checkpoint's
    noisy = noise_scheduler.add_noise(latents, noise, t)
    ctx = te(ids.repeat(latents.shape[0], 1))[0] if train_te else frozen_ctx.repeat(latents.shape[0], 1, 1)
    pred = unet(noisy, t, ctx).sample
    loss = F.mse_loss(pred.float(), noise.float(), reduction="mean")
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step(); sched.step(); opt.zero_grad()
    losses.append(loss.item())
got = [float(l.split(",")[2]) for l in open("out/loss.csv").read().split("\n")[1:] if l][1:]
print("losses torch  ", ["%.7f" % l for l in losses])
print("losses sdbatch", ["%.7f" % l for l in got])
loss_err = max(abs(a - b) / abs(b) for a, b in zip(got, losses))
print(f"loss of steps 2..{steps}: worst relative difference {loss_err:.2e}")
ok = loss_err < 1e-4 and len(got) == len(losses)
written = load_file("out/pytorch_lora_weights.safetensors")
for prefix in nets:
    keys = [k for k in written if k.startswith(prefix + ".")]
    worst, worst_name, n_close, n_all, moved = 0.0, "", 0, 0, 0.0
    for k in keys:
        ref = lora_param(k, [("lora.down", "lora.up"), ("lora_linear_layer.down", "lora_linear_layer.up")]).detach()
        start = state[k.replace("lora_linear_layer.", "lora.")]
        moved = max(moved, (ref - start).abs().max().item())
        w = written[k]
        err = (w - ref).abs().max().item() / max(ref.abs().max().item(), 1e-12)
        n_close += int(((w - ref).abs() <= 1e-2 * lr + 1e-7).sum()); n_all += w.numel()
        if err > worst:
            worst, worst_name = err, k
    print(f"{prefix} LoRA ({len(keys)} tensors) after step {steps}: worst max|sdbatch - torch| / "
          f"max|torch| {worst:.2e} ({worst_name}); {n_close / max(n_all, 1) * 100:.4f}% of {n_all} "
          f"values within 1% of the learning rate; torch moved them by up to {moved:.3g} from step 1")
    ok = ok and len(keys) > 0 and n_close / n_all > 0.999 and moved > 0
sys.exit(0 if ok else 1)
