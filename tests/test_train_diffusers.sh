#!/usr/bin/env bash
# sdbatch train against diffusers: a 3-step run on the tiny SD1 model (64 x 64, 2 pictures, batch 2)
# replayed with diffusers + torch as train_dreambooth.py runs it, with sdbatch's streams
# (tests/reference/replay_dreambooth_steps.py: losses within 1e-4, weights within 1% of the
# learning rate); then StableDiffusionPipeline.from_pretrained(output_dir) must load the output, its UNet's weights must equal
# the written unet/diffusion_pytorch_model.safetensors exactly (float32), differ from the
# pretrained ones, and its text encoder and VAE equal the pretrained model's; the first validation
# image (validation_prompt every 3 steps) must be diffusers' log_validation's (DPMSolverMultistep,
# 25 steps, CPU generator; within 1 of 255). Skipped (77) where
# Python, torch, diffusers or safetensors are missing.
# Usage: test_train_diffusers.sh SDBATCH SOURCE_DIR
set -euo pipefail
SDBATCH=$(readlink -f "$1")
SOURCE_DIR=$(readlink -f "$2")
if ! python3 -c "import torch, diffusers, safetensors, transformers" 2> /dev/null; then
  echo "test: skipped: python3 with torch, diffusers, transformers and safetensors is needed"
  exit 77
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sdbatch-train-diffusers.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
export OMP_NUM_THREADS=1
"$SDBATCH" make-shapes shapes --count 2 --size 64 --quiet
cat > train.yaml << YAML
pretrained_model: $SOURCE_DIR/tests/fixtures/tiny-sd1
instance_data_dir: shapes
instance_prompt: a photo of sks shape
output_dir: out
resolution: 64
train_batch_size: 2
max_train_steps: 3
learning_rate: 1.0e-4
lr_scheduler: constant_with_warmup
lr_warmup_steps: 1
seed: 5
validation_prompt: a photo of sks shape
num_validation_images: 2
validation_steps: 3
YAML
"$SDBATCH" train train.yaml --quiet
python3 "$SOURCE_DIR/tests/reference/replay_dreambooth_steps.py" "$SOURCE_DIR/tests/fixtures/tiny-sd1" \
  5 3 1e-4 > replay.log 2>&1 || { cat replay.log; echo "test: FAIL: the replay disagrees" >&2; exit 1; }
grep -v -i -e warn -e "Loading weights" replay.log | sed 's/^/test: /'
PRETRAINED="$SOURCE_DIR/tests/fixtures/tiny-sd1" python3 - << 'PY'
import os, sys, warnings
warnings.filterwarnings("ignore")
import torch
from diffusers import StableDiffusionPipeline
from diffusers.utils import logging
from safetensors.torch import load_file
logging.set_verbosity_error()
pipe = StableDiffusionPipeline.from_pretrained("out", safety_checker=None, requires_safety_checker=False,
                                    torch_dtype=torch.float32)
pre = StableDiffusionPipeline.from_pretrained(os.environ["PRETRAINED"], safety_checker=None, requires_safety_checker=False,
                                    torch_dtype=torch.float32)
written = load_file("out/unet/diffusion_pytorch_model.safetensors")
unet = pipe.unet.state_dict()
failures = 0
if set(written) != set(unet):
    print("FAIL: the file's tensors and the UNet's parameters differ:", sorted(set(written) ^ set(unet))[:5])
    failures += 1
same = sum(1 for k in written if k in unet and written[k].dtype == torch.float32 and torch.equal(written[k], unet[k]))
print(f"test: {same} of {len(written)} UNet tensors loaded by diffusers equal the file's (float32, exactly)")
failures += same != len(written)
moved = max((written[k] - pre.unet.state_dict()[k].float()).abs().max().item() for k in written)
print(f"test: largest change from the pretrained UNet: {moved:.3g}")
failures += not moved > 0
for name in ("text_encoder", "vae"):
    a, b = getattr(pipe, name).state_dict(), getattr(pre, name).state_dict()
    ok = set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    print(f"test: {name} equals the pretrained one: {ok}")
    failures += not ok
# validation renders as log_validation makes them: DPMSolverMultistepScheduler from the model's
# config, 25 steps, guidance 7.5, the model's default size, one CPU generator from the seed for
# all images (sdbatch seeds image k with seed + k: the first image is the same)
import numpy as np
from PIL import Image
from diffusers import DPMSolverMultistepScheduler
pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
pipe.set_progress_bar_config(disable=True)
val = pipe("a photo of sks shape", num_inference_steps=25,
           generator=torch.Generator().manual_seed(5), output_type="np").images[0]
want = (val * 255).round().astype(np.int16)
got = np.asarray(Image.open("out/validation/step-000003-0.png")).astype(np.int16)
diff = np.abs(got - want).max() if got.shape == want.shape else 999
print(f"test: validation image 0 of step 3 {got.shape} against diffusers' log_validation: max |diff| {diff}")
failures += not diff <= 1
image = pipe("a photo of sks shape", num_inference_steps=2, height=64, width=64,
             generator=torch.Generator().manual_seed(0), output_type="np").images[0]
print(f"test: diffusers rendered the trained model: {image.shape}, finite {bool(torch.isfinite(torch.tensor(image)).all())}")
sys.exit(1 if failures else 0)
PY
echo "test: all checks passed"
