#!/usr/bin/env bash
# sdbatch train with prior preservation against diffusers: a 3-step run on the tiny SD1 model
# (64 x 64, 2 instance pictures, 3 class images rendered by sdbatch at the model's 128 x 128 and
# resized, batch 2: micro-batches of 2 and 1 items, 4 and 2 rows; prior_loss_weight 0.5) replayed
# with diffusers + torch as train_dreambooth.py --with_prior_preservation runs it, with sdbatch's
# streams (tests/reference/replay_dreambooth_prior_steps.py: losses within 1e-4 relative, 99.9%
# of the weights within 1% of the learning rate); then the same in LoRA mode (rank 2, learning
# rate 1e-3) against peft as train_dreambooth_lora.py runs it (that part skipped without peft).
# Skipped (77) where Python, torch, diffusers,
# transformers or safetensors are missing.
# Usage: test_train_prior_diffusers.sh SDBATCH SOURCE_DIR
set -euo pipefail
SDBATCH=$(readlink -f "$1")
SOURCE_DIR=$(readlink -f "$2")
if ! python3 -c "import torch, diffusers, safetensors, transformers" 2> /dev/null; then
  echo "test: skipped: python3 with torch, diffusers, transformers and safetensors is needed"
  exit 77
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sdbatch-train-prior-diffusers.XXXXXX")
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
with_prior_preservation: true
class_data_dir: class
class_prompt: a photo of a shape
num_class_images: 3
prior_loss_weight: 0.5
YAML
"$SDBATCH" train train.yaml --quiet
python3 "$SOURCE_DIR/tests/reference/replay_dreambooth_prior_steps.py" \
  "$SOURCE_DIR/tests/fixtures/tiny-sd1" 5 3 1e-4 0.5 3 > replay.log 2>&1 ||
  { cat replay.log; echo "test: FAIL: the replay disagrees" >&2; exit 1; }
grep -v -i -e warn -e "Loading weights" replay.log | sed 's/^/test: /'
# LoRA mode (rank 2, learning rate 1e-3) replayed with peft as train_dreambooth_lora.py runs it
if ! python3 -c "import peft" 2> /dev/null; then
  echo "test: LoRA mode's replay skipped: peft is not installed"
  echo "test: all checks passed"
  exit 0
fi
rm -rf out
sed -i 's/^learning_rate: .*/learning_rate: 1.0e-3/' train.yaml
printf 'lora: true\nrank: 2\n' >> train.yaml
"$SDBATCH" train train.yaml --quiet
python3 "$SOURCE_DIR/tests/reference/replay_dreambooth_prior_steps.py" \
  "$SOURCE_DIR/tests/fixtures/tiny-sd1" 5 3 1e-3 0.5 3 2 > replay-lora.log 2>&1 ||
  { cat replay-lora.log; echo "test: FAIL: LoRA mode's replay disagrees" >&2; exit 1; }
grep -v -i -e warn -e "Loading weights" replay-lora.log | sed 's/^/test: LoRA: /'
echo "test: all checks passed"
