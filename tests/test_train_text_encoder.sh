#!/usr/bin/env bash
# sdbatch train with train_text_encoder: true (train_dreambooth.py --train_text_encoder) on the
# tiny SD1 model at 64 x 64, 2 pictures, batch 2:
#  - a 3-step run replayed with diffusers + torch as the script runs it (the encoder run on every
#    step with gradients, one AdamW over the chain of the UNet's and the encoder's parameters,
#    clip_grad_norm_ over that chain; tests/reference/replay_dreambooth_steps.py ... text_encoder):
#    losses within 1e-4 relative, 99.9 % of each model's weights within 1 % of the learning rate
#    (the frozen-encoder replay of the same run fails: 72 % of the UNet's weights);
#  - StableDiffusionPipeline.from_pretrained(output_dir) loads the output in float32 (the text
#    encoder's config says float32), its text encoder equals the written
#    text_encoder/model.safetensors exactly and differs from the pretrained one, the VAE is the
#    pretrained one; the validation image of step 3 is diffusers' log_validation's with the
#    trained encoder and UNet (within 1 of 255);
#  - a run killed with SIGKILL after its first checkpoint and resumed ends with the same
#    loss.csv, UNet and text encoder files, byte for byte, as an uninterrupted run;
#  - single_file: the output folder also as an original single file, which diffusers'
#    from_single_file (config= the output folder) loads equal to the folder, rendering its pixels
#    (tests/reference/check_single_file.py), and a resumed run writes byte for byte again;
#  - resuming a frozen-encoder run's checkpoint with train_text_encoder: true is refused.
# Skipped (77) where Python, torch, diffusers or safetensors are missing.
# Usage: test_train_text_encoder.sh SDBATCH SOURCE_DIR
set -euo pipefail
SDBATCH=$(readlink -f "$1")
SOURCE_DIR=$(readlink -f "$2")
# shellcheck source=train_test_lib.sh
source "$SOURCE_DIR/tests/train_test_lib.sh"
require_python torch diffusers safetensors transformers
MODEL="$SOURCE_DIR/tests/fixtures/tiny-sd1"
CONFIG_BASE=("resolution: 64" "learning_rate: 1.0e-4" "lr_scheduler: constant_with_warmup" "lr_warmup_steps: 1" "seed: 5")
train_test_begin sdbatch-train-te

"$SDBATCH" make-shapes shapes --count 2 --size 64 --quiet
# 1. against torch, and the output in diffusers
config train.yaml out "max_train_steps: 3" "train_batch_size: 2" "train_text_encoder: true" \
  "validation_prompt: a photo of sks shape" "num_validation_images: 2" "validation_steps: 3" \
  "single_file: trained.safetensors"
"$SDBATCH" train train.yaml --quiet
if python3 "$SOURCE_DIR/tests/reference/check_single_file.py" out/trained.safetensors out --render \
  > single.log 2>&1; then
  grep -e "tensors" -e "render" single.log | sed 's/^/test: single file: /'
else
  cat single.log
  fail "out/trained.safetensors in diffusers' from_single_file differs from the output folder"
fi
if python3 "$SOURCE_DIR/tests/reference/replay_dreambooth_steps.py" "$MODEL" 5 3 1e-4 text_encoder \
  > replay.log 2>&1; then
  grep -v -i -e warn -e "Loading weights" replay.log | sed 's/^/test: /'
else
  cat replay.log
  fail "the torch replay disagrees"
fi
PRETRAINED="$MODEL" python3 - << 'PY' || fail "the output in diffusers"
import os, sys, warnings
warnings.filterwarnings("ignore")
import numpy as np, torch
from PIL import Image
from diffusers import StableDiffusionPipeline, DPMSolverMultistepScheduler
from diffusers.utils import logging
from safetensors.torch import load_file
logging.set_verbosity_error()
pipe = StableDiffusionPipeline.from_pretrained("out", safety_checker=None, requires_safety_checker=False)
pre = StableDiffusionPipeline.from_pretrained(os.environ["PRETRAINED"], safety_checker=None,
                                              requires_safety_checker=False, torch_dtype=torch.float32)
failures = 0
te = {k if k.startswith("text_model.") else "text_model." + k: v for k, v in pipe.text_encoder.state_dict().items()}
written = load_file("out/text_encoder/model.safetensors")
same = sum(1 for k in written if k in te and te[k].dtype == torch.float32 and torch.equal(written[k], te[k]))
print(f"test: {same} of {len(written)} text encoder tensors loaded by diffusers (dtype {pipe.text_encoder.dtype}) equal the file's")
failures += same != len(written) or set(written) != set(te)
moved = max((written[k] - pre.text_encoder.state_dict()[k.removeprefix("text_model.")].float()).abs().max().item()
            for k in written)
print(f"test: largest change from the pretrained text encoder: {moved:.3g}")
failures += not moved > 0
a, b = pipe.vae.state_dict(), pre.vae.state_dict()
ok = set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
print(f"test: the VAE equals the pretrained one: {ok}")
failures += not ok
pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
pipe.set_progress_bar_config(disable=True)
val = pipe("a photo of sks shape", num_inference_steps=25,
           generator=torch.Generator().manual_seed(5), output_type="np").images[0]
want = (val * 255).round().astype(np.int16)
got = np.asarray(Image.open("out/validation/step-000003-0.png")).astype(np.int16)
diff = np.abs(got - want).max() if got.shape == want.shape else 999
print(f"test: validation image 0 of step 3 against diffusers' log_validation of the output: max |diff| {diff}")
failures += not diff <= 1
sys.exit(1 if failures else 0)
PY

# 2. SIGKILL after the first checkpoint, --resume: byte-equal to an uninterrupted run
KILL=("max_train_steps: 12" "checkpointing_steps: 2" "train_batch_size: 1" "random_flip: true"
  "train_text_encoder: true" "single_file: trained.safetensors")
config whole.yaml whole "${KILL[@]}"
config killed.yaml killed "${KILL[@]}"
"$SDBATCH" train whole.yaml --quiet
kill_after_checkpoint killed checkpoint-2 text_encoder/model.safetensors
"$SDBATCH" train killed.yaml --quiet --resume
same_files whole killed loss.csv unet/diffusion_pytorch_model.safetensors \
  text_encoder/model.safetensors text_encoder/config.json trained.safetensors

# 3. a frozen-encoder run's checkpoint resumed with train_text_encoder: true
config frozen.yaml frozen "max_train_steps: 2" "checkpointing_steps: 1" "train_batch_size: 1"
"$SDBATCH" train frozen.yaml --quiet
rm -rf frozen/unet frozen/text_encoder
echo "train_text_encoder: true" >> frozen.yaml
status=0
"$SDBATCH" train frozen.yaml --quiet --resume 2> stderr.txt || status=$?
if [ "$status" -eq 1 ] && grep -q "the checkpoint is of a full fine-tune of the UNet" stderr.txt; then
  note "refused as expected: $(cat stderr.txt)"
else
  fail "resume with train_text_encoder of a frozen run's checkpoint: status $status, $(cat stderr.txt)"
fi

finish
