"""Replays the first steps of an `sdbatch train` run with prior preservation with diffusers + torch
as train_dreambooth.py --with_prior_preservation runs them, and compares the losses (loss.csv) and
the trained UNet (output_dir/unet) with it (the sibling of replay_dreambooth_steps.py).

Run in the run's folder: replay_dreambooth_prior_steps.py MODEL SEED STEPS LR WEIGHT NUM_CLASS
[RANK]. With RANK, the run is LoRA mode's (`lora: true`, `rank: RANK`) and the replay is
train_dreambooth_lora.py's: peft LoRA (r = lora_alpha = RANK, gaussian init) on to_k, to_q, to_v
and to_out.0, A set to sdbatch's init (one torch.randn over all layers' A, the modules sorted by
name, from torch.Generator().manual_seed(seed + 2), divided by RANK), B 0; AdamW and clipping over
the LoRA parameters; compared with output_dir/pytorch_lora_weights.safetensors.
The run must use: the instance pictures shapes/*.png (square, at the resolution), the class
images class/*.png (square; the first NUM_CLASS by name, resized to the resolution as the
script's Resize does), instance_prompt "a photo of sks shape", class_prompt "a photo of a shape",
prior_loss_weight WEIGHT, train_batch_size 2, no accumulation, lr_scheduler constant_with_warmup
with 1 warmup step, max_grad_norm 1, AdamW defaults, no flips, no crops (center_crop or square
images). The dataset has max(instances, classes) items; item i is instance i % instances and
class i % classes; a micro-batch's rows are its instance items then its class items; the loss
is mse(instance half) + WEIGHT x mse(class half). sdbatch's streams (docs/training.md): the order
is torch.Generator().manual_seed(seed) (torch.randperm at every epoch), the draws
torch.Generator().manual_seed(seed + 1) (per micro-batch latent_dist.sample()'s randn over all
rows, the noise randn, torch.randint timesteps). Exit status 1 unless every loss agrees within
1e-4 relative and 99.9% of the weights within 1% of the learning rate (docs/training.md).
"""
import os, sys, glob, warnings
warnings.filterwarnings("ignore")
import numpy as np, torch, torch.nn.functional as F
from PIL import Image
from diffusers import AutoencoderKL, UNet2DConditionModel, DDPMScheduler
from diffusers.optimization import get_scheduler
from transformers import CLIPTextModel, CLIPTokenizer
from safetensors.torch import load_file
model, seed, steps, lr = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
weight, num_class = float(sys.argv[5]), int(sys.argv[6])
rank = int(sys.argv[7]) if len(sys.argv) > 7 else 0
tok = CLIPTokenizer.from_pretrained(model, subfolder="tokenizer")
te = CLIPTextModel.from_pretrained(model, subfolder="text_encoder", torch_dtype=torch.float32)
vae = AutoencoderKL.from_pretrained(model, subfolder="vae", torch_dtype=torch.float32)
unet = UNet2DConditionModel.from_pretrained(model, subfolder="unet", torch_dtype=torch.float32)
noise_scheduler = DDPMScheduler.from_pretrained(model, subfolder="scheduler")
instances = sorted(glob.glob("shapes/*.png"))
classes = sorted(glob.glob("class/*.png"))[:num_class]
size = Image.open(instances[0]).size[0]

def load(f):
    img = Image.open(f).convert("RGB")
    if img.size != (size, size):  # torchvision's Resize(size, BILINEAR) on a square PIL image
        img = img.resize((size, size), resample=Image.BILINEAR)
    return (torch.from_numpy(np.array(img)).permute(2, 0, 1).float().div(255) - 0.5) / 0.5

inst_px = torch.stack([load(f) for f in instances])
class_px = torch.stack([load(f) for f in classes])

def embed(prompt):
    ids = tok(prompt, padding="max_length", max_length=tok.model_max_length, truncation=True,
              return_tensors="pt").input_ids
    with torch.no_grad():
        return te(ids)[0]

inst_ctx, class_ctx = embed("a photo of sks shape"), embed("a photo of a shape")
length = max(len(instances), len(classes))
batches = (length + 1) // 2
params = list(unet.parameters())
if rank:
    from peft import LoraConfig
    unet.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
                                target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
    lora_modules = sorted((name, m) for name, m in unet.named_modules() if hasattr(m, "lora_A") and "default" in m.lora_A)
    total = sum(m.lora_A["default"].weight.numel() for _, m in lora_modules)
    z = torch.randn(total, generator=torch.Generator().manual_seed(seed + 2))
    at = 0
    with torch.no_grad():
        for _, m in lora_modules:
            a = m.lora_A["default"].weight
            a.copy_(z[at:at + a.numel()].view_as(a) / rank)
            at += a.numel()
            m.lora_B["default"].weight.zero_()
    params = [p for p in unet.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8, foreach=False)
sched = get_scheduler("constant_with_warmup", optimizer=opt, num_warmup_steps=1, num_training_steps=steps)
order_g = torch.Generator().manual_seed(seed)
draw_g = torch.Generator().manual_seed(seed + 1)
order = torch.randperm(length, generator=order_g)
batch_index, losses = 0, []
for step in range(steps):
    items = order[2 * batch_index:2 * batch_index + 2].tolist()
    n = len(items)
    pixels = torch.cat([inst_px[[i % len(instances) for i in items]],
                        class_px[[i % len(classes) for i in items]]])  # collate_fn: instance, then class
    with torch.no_grad():
        latents = vae.encode(pixels).latent_dist.sample(generator=draw_g) * vae.config.scaling_factor
    noise = torch.randn(latents.shape, generator=draw_g)
    t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (latents.shape[0],), generator=draw_g).long()
    noisy = noise_scheduler.add_noise(latents, noise, t)
    ctx = torch.cat([inst_ctx.repeat(n, 1, 1), class_ctx.repeat(n, 1, 1)])
    pred = unet(noisy, t, ctx).sample
    pred, pred_prior = torch.chunk(pred, 2, dim=0)
    target, target_prior = torch.chunk(noise, 2, dim=0)
    loss = F.mse_loss(pred.float(), target.float(), reduction="mean")
    prior_loss = F.mse_loss(pred_prior.float(), target_prior.float(), reduction="mean")
    loss = loss + weight * prior_loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step(); sched.step(); opt.zero_grad()
    losses.append(loss.item())
    batch_index += 1
    if batch_index == batches:
        batch_index = 0
        order = torch.randperm(length, generator=order_g)
got = [float(l.split(",")[2]) for l in open("out/loss.csv").read().split("\n")[1:] if l]
print("losses torch  ", ["%.7f" % l for l in losses])
print("losses sdbatch", ["%.7f" % l for l in got])
if len(got) != len(losses):
    print("FAIL: loss.csv has %d steps, the replay %d" % (len(got), len(losses)))
    sys.exit(1)
loss_err = max(abs(a - b) / abs(b) for a, b in zip(got, losses))
if rank:
    written = load_file("out/pytorch_lora_weights.safetensors")
    sd = {}
    for name, m in lora_modules:
        sd[f"unet.{name}.lora.down.weight"] = m.lora_A["default"].weight
        sd[f"unet.{name}.lora.up.weight"] = m.lora_B["default"].weight
    if set(sd) != set(written):
        print("FAIL: the LoRA file's names differ:", sorted(set(sd) ^ set(written))[:4])
        sys.exit(1)
else:
    written = load_file("out/unet/diffusion_pytorch_model.safetensors")
    sd = unet.state_dict()
worst, worst_name, n_close, n_all = 0, "", 0, 0
for k, w in written.items():
    ref = sd[k].detach()
    err = (w - ref).abs().max().item() / max(ref.abs().max().item(), 1e-12)
    n_close += int(((w - ref).abs() <= 1e-2 * lr + 1e-7).sum()); n_all += w.numel()
    if err > worst:
        worst, worst_name = err, k
print(f"loss: worst relative difference {loss_err:.2e}")
print(f"weights after {steps} steps: worst max|sdbatch - torch| / max|torch| {worst:.2e} ({worst_name}); "
      f"{n_close / n_all * 100:.4f}% of {n_all} values within 1% of the learning rate")
sys.exit(0 if loss_err < 1e-4 and n_close / n_all > 0.999 else 1)
