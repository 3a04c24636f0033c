"""Replays the first steps of an `sdbatch train` run with diffusers + torch as train_dreambooth.py
runs them, and compares the losses (loss.csv) and the trained UNet (output_dir/unet) with it.

Run in the run's folder: replay_dreambooth_steps.py MODEL SEED STEPS LR. The run must use: the
instance pictures shapes/*.png (square, at the resolution: no crop draws), train_batch_size 2 with
2 pictures (one micro-batch an epoch), lr_scheduler constant_with_warmup with 1 warmup step,
max_grad_norm 1, AdamW defaults, no flips. sdbatch's streams (docs/training.md): the order is
torch.Generator().manual_seed(seed) (torch.randperm at every epoch), the draws
torch.Generator().manual_seed(seed + 1) (per micro-batch latent_dist.sample()'s randn, the noise
randn, torch.randint timesteps). Exit status 1 unless every loss agrees within 1e-4 relative and
99.9% of the weights within 1% of the learning rate (AdamW moves weights whose gradients are
rounding noise, zero in exact arithmetic, by the full step in the direction of that noise, so a
few elements differ by up to the learning rate: docs/training.md).
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
tok = CLIPTokenizer.from_pretrained(model, subfolder="tokenizer")
te = CLIPTextModel.from_pretrained(model, subfolder="text_encoder", torch_dtype=torch.float32)
vae = AutoencoderKL.from_pretrained(model, subfolder="vae", torch_dtype=torch.float32)
unet = UNet2DConditionModel.from_pretrained(model, subfolder="unet", torch_dtype=torch.float32)
noise_scheduler = DDPMScheduler.from_pretrained(model, subfolder="scheduler")
files = sorted(glob.glob("shapes/*.png"))
pixels = torch.stack([(torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1).float().div(255) - 0.5) / 0.5 for f in files])
ids = tok("a photo of sks shape", padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt").input_ids
with torch.no_grad():
    ctx = te(ids)[0]
opt = torch.optim.AdamW(unet.parameters(), lr=lr, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8, foreach=False)
sched = get_scheduler("constant_with_warmup", optimizer=opt, num_warmup_steps=1, num_training_steps=steps)
order_g = torch.Generator().manual_seed(seed)
draw_g = torch.Generator().manual_seed(seed + 1)
order = torch.randperm(len(files), generator=order_g)
losses = []
for step in range(steps):
    batch = order[:2]
    with torch.no_grad():
        dist = vae.encode(pixels[batch]).latent_dist
        latents = dist.sample(generator=draw_g) * vae.config.scaling_factor
    noise = torch.randn(latents.shape, generator=draw_g)
    t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (latents.shape[0],), generator=draw_g).long()
    noisy = noise_scheduler.add_noise(latents, noise, t)
    pred = unet(noisy, t, ctx.repeat(latents.shape[0], 1, 1)).sample
    loss = F.mse_loss(pred.float(), noise.float(), reduction="mean")
    loss.backward()
    torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
    opt.step(); sched.step(); opt.zero_grad()
    losses.append(loss.item())
    order = torch.randperm(len(files), generator=order_g)  # one epoch per step (2 pictures, batch 2)
got = [float(l.split(",")[2]) for l in open("out/loss.csv").read().split("\n")[1:] if l]
print("losses torch  ", ["%.7f" % l for l in losses])
print("losses sdbatch", ["%.7f" % l for l in got])
loss_err = max(abs(a - b) / abs(b) for a, b in zip(got, losses))
written = load_file("out/unet/diffusion_pytorch_model.safetensors")
pre = load_file(os.path.join(model, "unet/diffusion_pytorch_model.safetensors"))
sd = unet.state_dict()
worst, worst_name, n_close, n_all = 0, "", 0, 0
for k, w in written.items():
    ref = sd[k].detach()
    change = (ref - pre[k].float()).abs().max().item()
    err = (w - ref).abs().max().item() / max(ref.abs().max().item(), 1e-12)
    n_close += int(((w - ref).abs() <= 1e-2 * lr + 1e-7).sum()); n_all += w.numel()
    if err > worst:
        worst, worst_name = err, k
print(f"loss: worst relative difference {loss_err:.2e}")
print(f"weights after {steps} steps: worst max|sdbatch - torch| / max|torch| {worst:.2e} ({worst_name}); "
      f"{n_close / n_all * 100:.4f}% of {n_all} values within 1% of the learning rate")
sys.exit(0 if loss_err < 1e-4 and n_close / n_all > 0.999 else 1)
