"""Replays the first steps of an `sdbatch train` run with diffusers + torch as train_dreambooth.py
runs them, and compares the losses (loss.csv) and the trained UNet (output_dir/unet) with it.

Run in the run's folder: replay_dreambooth_steps.py MODEL SEED STEPS LR [text_encoder]. With
text_encoder the run trained the text encoder too (train_text_encoder: true): the replay runs the
encoder on every step with gradients, one AdamW over itertools.chain(unet.parameters(),
text_encoder.parameters()) clipped over that chain, as the script does, and compares
out/text_encoder/model.safetensors as well. The run must use: the
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
import itertools
model, seed, steps, lr = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
train_te = len(sys.argv) > 5 and sys.argv[5] == "text_encoder"
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
te.train(train_te)
params = lambda: itertools.chain(unet.parameters(), te.parameters()) if train_te else unet.parameters()
opt = torch.optim.AdamW(params(), lr=lr, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8, foreach=False)
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
    if train_te:  # the script's encode_prompt: text_encoder(input_ids)[0] on the batch's ids
        ctx = te(ids.repeat(latents.shape[0], 1))[0]
        pred = unet(noisy, t, ctx).sample
    else:
        pred = unet(noisy, t, ctx.repeat(latents.shape[0], 1, 1)).sample
    loss = F.mse_loss(pred.float(), noise.float(), reduction="mean")
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params(), 1.0)
    opt.step(); sched.step(); opt.zero_grad()
    losses.append(loss.item())
    order = torch.randperm(len(files), generator=order_g)  # one epoch per step (2 pictures, batch 2)
got = [float(l.split(",")[2]) for l in open("out/loss.csv").read().split("\n")[1:] if l]
print("losses torch  ", ["%.7f" % l for l in losses])
print("losses sdbatch", ["%.7f" % l for l in got])
loss_err = max(abs(a - b) / abs(b) for a, b in zip(got, losses))
print(f"loss: worst relative difference {loss_err:.2e}")
ok = loss_err < 1e-4
parts = [("unet", "unet/diffusion_pytorch_model.safetensors", unet)]
if train_te:
    parts.append(("text_encoder", "text_encoder/model.safetensors", te))
for part, file, net in parts:
    written = load_file(os.path.join("out", file))
    pre = load_file(os.path.join(model, file))
    sd = net.state_dict()
    if part == "text_encoder":  # transformers >= 5: the module's names lack the file's text_model.
        sd = {k if k.startswith("text_model.") else "text_model." + k: v for k, v in sd.items()}
    if set(written) != set(sd):
        print(f"FAIL: {file}'s tensors are not the {part}'s parameters: {sorted(set(written) ^ set(sd))[:5]}")
        ok = False
        continue
    worst, worst_name, n_close, n_all, moved = 0, "", 0, 0, 0.0
    for k, w in written.items():
        ref = sd[k].detach()
        moved = max(moved, (ref - pre[k].float()).abs().max().item())
        err = (w - ref).abs().max().item() / max(ref.abs().max().item(), 1e-12)
        n_close += int(((w - ref).abs() <= 1e-2 * lr + 1e-7).sum()); n_all += w.numel()
        if err > worst:
            worst, worst_name = err, k
    print(f"{part} after {steps} steps: worst max|sdbatch - torch| / max|torch| {worst:.2e} ({worst_name}); "
          f"{n_close / n_all * 100:.4f}% of {n_all} values within 1% of the learning rate; "
          f"torch moved it by up to {moved:.3g}")
    ok = ok and n_close / n_all > 0.999 and moved > 0
sys.exit(0 if ok else 1)
