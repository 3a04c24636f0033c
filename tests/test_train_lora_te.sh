#!/usr/bin/env bash
# sdbatch train with lora: true and train_text_encoder: true (train_dreambooth_lora.py
# --train_text_encoder) on the tiny SD1 model at 64 x 64, 2 pictures, batch 2:
#  - a 4-step run replayed from its first checkpoint with diffusers + torch + peft as the script
#    runs it (peft LoRA on the UNet's to_q/k/v/out.0 and the encoder's q/k/v/out_proj, the
#    encoder run on every step, one AdamW over both LoRAs clipped together;
#    tests/reference/replay_dreambooth_lora_steps.py ... text_encoder): losses of steps 2-4
#    within 1e-4 relative, 99.9 % of both LoRAs' values within 1 % of the learning rate (the same
#    run without the encoder's backward fails: 51 % / 0.1 %);
#  - the saved file holds the encoder's LoRA under diffusers' names
#    (text_encoder.<module>.lora_linear_layer.down/up.weight, 16 tensors for 2 layers);
#  - a run killed with SIGKILL after its second checkpoint and resumed ends with the same loss.csv
#    and pytorch_lora_weights.safetensors, byte for byte, as an uninterrupted run;
#  - a LoRA run's checkpoint without the encoder resumed with train_text_encoder: true is refused.
# Skipped (77) where Python, torch, diffusers, peft or safetensors are missing.
# Usage: test_train_lora_te.sh SDBATCH SOURCE_DIR
set -euo pipefail
SDBATCH=$(readlink -f "$1")
SOURCE_DIR=$(readlink -f "$2")
# shellcheck source=train_test_lib.sh
source "$SOURCE_DIR/tests/train_test_lib.sh"
require_python torch diffusers safetensors transformers peft
MODEL="$SOURCE_DIR/tests/fixtures/tiny-sd1"
CONFIG_BASE=("resolution: 64" "learning_rate: 1.0e-3" "lr_scheduler: constant_with_warmup" "lr_warmup_steps: 1" "seed: 5" "lora: true")
train_test_begin sdbatch-train-lora-te

"$SDBATCH" make-shapes shapes --count 2 --size 64 --quiet
# 1. against torch + peft, from checkpoint-1
config train.yaml out "max_train_steps: 4" "train_batch_size: 2" "train_text_encoder: true" \
  "checkpointing_steps: 1"
"$SDBATCH" train train.yaml --quiet
if python3 "$SOURCE_DIR/tests/reference/replay_dreambooth_lora_steps.py" "$MODEL" 5 4 1e-3 \
  text_encoder > replay.log 2>&1; then
  grep -e "^loss" -e "LoRA (" replay.log | sed 's/^/test: /'
else
  cat replay.log
  fail "the torch replay disagrees"
fi
python3 - << 'PY' || fail "the saved LoRA's text encoder names"
import sys
from safetensors import safe_open
keys = list(safe_open("out/pytorch_lora_weights.safetensors", "pt").keys())
te = [k for k in keys if k.startswith("text_encoder.")]
good = [k for k in te if k.startswith("text_encoder.text_model.encoder.layers.")
        and k.endswith((".lora_linear_layer.down.weight", ".lora_linear_layer.up.weight"))]
print(f"test: {len(te)} text encoder tensors, {len(good)} under diffusers' names; "
      f"{len(keys) - len(te)} UNet tensors")
sys.exit(0 if len(te) == 16 and len(good) == 16 else 1)
PY

# 2. SIGKILL after the second checkpoint, --resume: byte-equal to an uninterrupted run
KILL=("max_train_steps: 12" "checkpointing_steps: 2" "train_batch_size: 1" "random_flip: true"
  "train_text_encoder: true")
config whole.yaml whole "${KILL[@]}"
config killed.yaml killed "${KILL[@]}"
"$SDBATCH" train whole.yaml --quiet
kill_after_checkpoint killed checkpoint-4 pytorch_lora_weights.safetensors
"$SDBATCH" train killed.yaml --quiet --resume
same_files whole killed loss.csv pytorch_lora_weights.safetensors

# 3. a UNet-only LoRA run's checkpoint resumed with train_text_encoder: true
config unet.yaml unet "max_train_steps: 2" "checkpointing_steps: 1" "train_batch_size: 1"
"$SDBATCH" train unet.yaml --quiet
rm -f unet/pytorch_lora_weights.safetensors
echo "train_text_encoder: true" >> unet.yaml
status=0
"$SDBATCH" train unet.yaml --quiet --resume 2> stderr.txt || status=$?
if [ "$status" -eq 1 ] && grep -q "the checkpoint is of a LoRA run of the UNet" stderr.txt; then
  note "refused as expected: $(cat stderr.txt)"
else
  fail "resume with train_text_encoder of a UNet LoRA run's checkpoint: status $status, $(cat stderr.txt)"
fi

finish
