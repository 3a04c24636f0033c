#!/usr/bin/env bash
# sdbatch train's LoRA mode against diffusers: a 20-step LoRA run on the tiny SD1 model (64 x 64,
# 2 pictures, batch 2, learning rate 1e-2 so that the LoRA changes the picture), then
# StableDiffusionPipeline.from_pretrained(pretrained) + pipe.load_lora_weights(output_dir) must
# render the same pixels as `sdbatch render --model pretrained --lora
# output_dir/pytorch_lora_weights.safetensors --rng cpu` (4 PNDM steps, guidance 7.5): at most 1
# level apart, at least 99.9% exactly equal; the same without the LoRA; and the LoRA must change
# the picture. The same for a run with train_text_encoder: true, whose file also holds the text
# encoder's LoRA (diffusers' load_lora_weights loads it into pipe.text_encoder: its embedding of
# the prompt must change). Skipped (77) where Python, torch, diffusers, transformers, peft or PIL
# are missing.
# Usage: test_train_lora_diffusers.sh SDBATCH SOURCE_DIR
set -euo pipefail
SDBATCH=$(readlink -f "$1")
SOURCE_DIR=$(readlink -f "$2")
MODEL="$SOURCE_DIR/tests/fixtures/tiny-sd1"
if ! python3 -c "import torch, diffusers, transformers, peft, PIL, numpy" 2> /dev/null; then
  echo "test: skipped: python3 with torch, diffusers, transformers, peft, PIL and numpy is needed"
  exit 77
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sdbatch-train-lora-diffusers.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
export OMP_NUM_THREADS=1
"$SDBATCH" make-shapes shapes --count 2 --size 64 --quiet
render=(render --model "$MODEL" --prompt "a photo of sks shape" --seed 3 --steps 4 --width 64
  --height 64 --device cpu --rng cpu --threads 1)
"$SDBATCH" "${render[@]}" --out base.png 2> render.log || { cat render.log; exit 1; }

# check OUTPUT_DIR [EXTRA YAML LINE]: train, render with the LoRA, compare with diffusers
check() {
  local out=$1
  shift
  cat > "$out.yaml" << YAML
pretrained_model: $MODEL
instance_data_dir: shapes
instance_prompt: a photo of sks shape
output_dir: $out
resolution: 64
train_batch_size: 2
max_train_steps: 20
learning_rate: 1.0e-2
lr_warmup_steps: 0
seed: 5
lora: true
YAML
  for line in "$@"; do echo "$line" >> "$out.yaml"; done
  "$SDBATCH" train "$out.yaml" --quiet
  "$SDBATCH" "${render[@]}" --lora "$out/pytorch_lora_weights.safetensors" --out "$out.png" \
    2> render.log || { cat render.log; exit 1; }
  PRETRAINED="$MODEL" OUT="$out" python3 - << 'PY'
import os, sys, warnings
warnings.filterwarnings("ignore")
import numpy as np
import torch
from PIL import Image
from diffusers import StableDiffusionPipeline
from diffusers.utils import logging
logging.set_verbosity_error()
out = os.environ["OUT"]
pipe = StableDiffusionPipeline.from_pretrained(os.environ["PRETRAINED"], safety_checker=None,
                                               requires_safety_checker=False,
                                               torch_dtype=torch.float32)
pipe.set_progress_bar_config(disable=True)


def render():
    image = pipe("a photo of sks shape", num_inference_steps=4, height=64, width=64,
                 generator=torch.Generator("cpu").manual_seed(3), output_type="np").images[0]
    return (image * 255).round().astype(np.int16)


def embedding():
    ids = pipe.tokenizer("a photo of sks shape", padding="max_length", return_tensors="pt").input_ids
    with torch.no_grad():
        return pipe.text_encoder(ids)[0]


base, base_embedding = render(), embedding()
pipe.load_lora_weights(out)
lora = render()
failures = 0
for name, want in (("base.png", base), (out + ".png", lora)):
    got = np.asarray(Image.open(name).convert("RGB")).astype(np.int16)
    diff = np.abs(got - want)
    exact = float((diff == 0).mean())
    ok = got.shape == want.shape and diff.max() <= 1 and exact >= 0.999
    print(f"test: {name} vs diffusers{' + load_lora_weights' if name != 'base.png' else ''}: "
          f"max {diff.max()} level(s), {100 * exact:.2f}% exact: {'ok' if ok else 'FAIL'}")
    failures += not ok
changed = float((lora != base).mean())
print(f"test: {out}: the LoRA changes {100 * changed:.1f}% of diffusers' values "
      f"(max {np.abs(lora - base).max()} levels)")
failures += not changed > 0.5
moved = (embedding() - base_embedding).abs().max().item()
with_te = out == "out-te"
print(f"test: {out}: diffusers' text embedding after load_lora_weights moved by {moved:.3g}")
failures += (moved > 1e-3) != with_te
sys.exit(1 if failures else 0)
PY
}
check out
check out-te "train_text_encoder: true"
echo "test: all checks passed"
