#!/usr/bin/env bash
# sdbatch train in LoRA mode (`lora: true`, docs/training.md "LoRA mode") on the tiny SD1 model
# at 64 x 64:
#  - refusals: rank without lora: true, the LoRA keys of other scripts (lora_alpha, lora_rank,
#    target_modules, use_lora, lora_dropout other than 0), a bad rank, resuming a LoRA run's
#    output_dir with a full fine-tune's config (and the other way round): each one error naming
#    the file and key, exit status 1, and no output_dir left behind;
#  - `sdbatch train --help` mentions LoRA mode;
#  - the defaults: learning rate 5e-4 unless given (loss.csv);
#  - the output: pytorch_lora_weights.safetensors (the script's key names, float32, rank 4) and
#    loss.csv, no model copy;
#  - crash safety: a run killed with SIGKILL right after a checkpoint, then at random moments,
#    resumed each time with --resume, ends with the same pytorch_lora_weights.safetensors and
#    loss.csv, byte for byte, as an uninterrupted run;
#  - `sdbatch render --model PRETRAINED --lora output_dir/pytorch_lora_weights.safetensors`;
#  - validation renders use the merged LoRA (equal to render --lora of the output).
# Usage: test_train_lora_cmd.sh SDBATCH SOURCE_DIR
set -euo pipefail
SDBATCH=$(readlink -f "$1")
SOURCE_DIR=$(readlink -f "$2")
# shellcheck source=train_test_lib.sh
source "$SOURCE_DIR/tests/train_test_lib.sh"
MODEL="$SOURCE_DIR/tests/fixtures/tiny-sd1"
CONFIG_BASE=("resolution: 64" "train_batch_size: 1" "lr_warmup_steps: 0" "seed: 7")
train_test_begin sdbatch-train-lora-test

"$SDBATCH" make-shapes shapes --count 3 --size 64 --quiet
"$SDBATCH" train --help > help.txt
grep -q "LoRA mode (train_dreambooth_lora.py): \`lora: true\`" help.txt ||
  fail "sdbatch train --help does not mention LoRA mode"

# refused CONFIG OUTPUT PATTERN [ARGS...]: exit status 1, one error line matching PATTERN, no
# output folder (when OUTPUT is given)

config norank.yaml out-norank "rank: 8"
refused norank.yaml out-norank "norank.yaml:9:1: rank: only LoRA mode has a rank; add \`lora: true\`"
config alpha.yaml out-alpha "lora: true" "lora_alpha: 8"
refused alpha.yaml out-alpha "alpha.yaml:10:1: lora_alpha: not supported yet by sdbatch train \(lora_alpha is rank"
config lrank.yaml out-lrank "lora: true" "lora_rank: 8"
refused lrank.yaml out-lrank "lrank.yaml:10:1: lora_rank: not supported yet .*its rank \`rank\`"
config targets.yaml out-targets "lora: true" "target_modules: to_q"
refused targets.yaml out-targets "targets.yaml:10:1: target_modules: not supported yet"
config uselora.yaml out-uselora "use_lora: true"
refused uselora.yaml out-uselora "uselora.yaml:9:1: use_lora: not supported yet .*LoRA mode is \`lora: true\`"
config dropout.yaml out-dropout "lora: true" "lora_dropout: 0.1"
refused dropout.yaml out-dropout "dropout.yaml:10:1: lora_dropout: not supported yet"
config badrank.yaml out-badrank "lora: true" "rank: 0"
refused badrank.yaml out-badrank "badrank.yaml:10:7: rank: expected an integer from 1 to 1024, got '0'"
config badlora.yaml out-badlora "lora: yes"
refused badlora.yaml out-badlora "badlora.yaml:9:7: lora: expected true or false, got 'yes'"
config twice.yaml out-twice "lora: true" "lora: true"
refused twice.yaml out-twice "twice.yaml:10:1: lora: given twice"

# the neutral values of the refused keys pass; learning_rate defaults to 5e-4 in LoRA mode
config short.yaml short "lora: true" "max_train_steps: 2" "lora_dropout: 0.0" "use_lora: false" \
  "train_text_encoder: false"
"$SDBATCH" train short.yaml --quiet || fail "short.yaml: $(cat stderr.txt)"
lr=$(sed -n 2p short/loss.csv | cut -d, -f5)
[ "$lr" = "0.0005" ] || fail "LoRA mode's default learning rate: $lr, expected 0.0005"
outputs=$(cd short && ls | tr '\n' ' ')
[ "$outputs" = "loss.csv pytorch_lora_weights.safetensors " ] ||
  fail "LoRA mode's output_dir holds: $outputs"

# a LoRA run's output_dir resumed as a full fine-tune, and a full fine-tune's as LoRA
config lorack.yaml lorack "lora: true" "max_train_steps: 2" "checkpointing_steps: 1"
"$SDBATCH" train lorack.yaml --quiet
config tofull.yaml lorack "max_train_steps: 4" "checkpointing_steps: 1"
refused tofull.yaml "" "tofull.yaml: --resume: resuming from lorack/checkpoint-2: .*checkpoint-2/training_state.safetensors: the checkpoint is of a LoRA run of the UNet \(lora: true\), the config now asks for a full fine-tune" --resume
config fullck.yaml fullck "max_train_steps: 1" "checkpointing_steps: 1" "learning_rate: 1.0e-4"
"$SDBATCH" train fullck.yaml --quiet
config tolora.yaml fullck "lora: true" "max_train_steps: 4" "checkpointing_steps: 1"
refused tolora.yaml "" "tolora.yaml: --resume: .*the checkpoint is of a full fine-tune of the UNet \(no lora: true, no train_text_encoder: true\), the config now asks for a LoRA run" --resume

# the uninterrupted run: 30 steps, a checkpoint every 5, random crops and flips, rank 2
STEPS=30
LORA_KEYS=("lora: true" "rank: 2" "max_train_steps: $STEPS" "checkpointing_steps: 5"
  "random_flip: true" "learning_rate: 1.0e-3")
config full.yaml full "${LORA_KEYS[@]}"
"$SDBATCH" train full.yaml --quiet
[ -f full/pytorch_lora_weights.safetensors ] || fail "no pytorch_lora_weights.safetensors"
[ -e full/unet ] && fail "LoRA mode wrote a unet/ folder"
[ -e full/model_index.json ] && fail "LoRA mode copied the model"
[ "$(wc -l < full/loss.csv)" -eq $((STEPS + 1)) ] || fail "loss.csv has $(wc -l < full/loss.csv) lines"
[ -d full/checkpoint-$STEPS ] || fail "no checkpoint-$STEPS"
# the file: 88 layers x (down, up), the script's names, rank 2
if command -v python3 > /dev/null; then
  python3 - full/pytorch_lora_weights.safetensors << 'PY' || fail "pytorch_lora_weights.safetensors' header"
import json, struct, sys
with open(sys.argv[1], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
meta = header.pop("__metadata__", {})
downs = [k for k in header if k.endswith(".lora.down.weight")]
ups = [k for k in header if k.endswith(".lora.up.weight")]
assert len(downs) == len(ups) == len(header) // 2 and len(header) % 2 == 0, len(header)
assert all(k.startswith("unet.") for k in header)
assert all(header[k]["dtype"] == "F32" and header[k]["shape"][0] == 2 for k in downs)
assert all(header[k]["shape"][1] == 2 for k in ups)
assert meta.get("format") == "pt", meta
print(f"test: pytorch_lora_weights.safetensors: {len(downs)} layers, rank 2, float32, e.g. {sorted(downs)[0]}")
PY
fi

# killed right after its first checkpoint, then at random moments, resumed each time
config killed.yaml killed "${LORA_KEYS[@]}" "checkpoints_total_limit: 2"
kill_after_checkpoint killed checkpoint-5 pytorch_lora_weights.safetensors
kills=1
for k in 3 5 1 7 4 6 2; do
  [ -f killed/pytorch_lora_weights.safetensors ] && break
  latest=$(cd killed && ls -d checkpoint-* | sed 's/checkpoint-//' | sort -n | tail -1)
  "$SDBATCH" train killed.yaml --quiet --resume &
  pid=$!
  while kill -0 $pid 2> /dev/null &&
    [ "$(wc -l < killed/loss.csv)" -le $((latest + 1 + k)) ]; do
    sleep 0.001
  done
  if kill -9 $pid 2> /dev/null; then
    kills=$((kills + 1))
  fi
  wait $pid 2> /dev/null || true
  note "killed at $(($(wc -l < killed/loss.csv) - 1)) steps logged: $(ls killed | tr '\n' ' ')"
done
"$SDBATCH" train killed.yaml --quiet --resume
note "$kills kills, then resumed to the end"
if cmp full/pytorch_lora_weights.safetensors killed/pytorch_lora_weights.safetensors; then
  note "resumed LoRA equals the uninterrupted run's, byte for byte"
else
  fail "the resumed run's LoRA differs from the uninterrupted run's"
fi
cmp full/loss.csv killed/loss.csv || fail "the resumed run's loss.csv differs"
checkpoints=$(cd killed && ls -d checkpoint-* | sort -t- -k2 -n | tr '\n' ' ')
[ "$checkpoints" = "checkpoint-25 checkpoint-30 " ] ||
  fail "checkpoints_total_limit 2 left: $checkpoints"
if ls -a killed | grep -q '^\.checkpoint\|\.tmp$'; then fail "temporary files left: $(ls -a killed)"; fi

# the LoRA renders on the pretrained model
"$SDBATCH" render --model "$MODEL" --lora full/pytorch_lora_weights.safetensors \
  --prompt "a photo of sks shape" --seed 1 --steps 2 --width 64 --height 64 --device cpu \
  --threads 1 --out render.png 2> render.log || fail "render --lora: $(cat render.log)"
[ -s render.png ] || fail "no render.png"

# validation renders in LoRA mode use the merged LoRA: step 2's picture is what render --lora
# draws from the output with the same settings
config val.yaml val "lora: true" "max_train_steps: 2" "validation_prompt: a photo of sks shape" \
  "num_validation_images: 1" "validation_steps: 2"
"$SDBATCH" train val.yaml --quiet || fail "the LoRA run with validation renders failed"
"$SDBATCH" render --model "$MODEL" --lora val/pytorch_lora_weights.safetensors \
  --prompt "a photo of sks shape" --seed 7 --steps 25 --guidance-scale 7.5 --scheduler dpmpp_2m \
  --rng cpu --device cpu --threads 1 --out val-render.png --quiet || fail "render --lora of val"
if python3 -c "import numpy, PIL" 2> /dev/null; then
  python3 "$SOURCE_DIR/tests/reference/same_pixels.py" val/validation/step-000002-0.png \
    val-render.png --label "LoRA validation picture against render --lora" ||
    fail "the LoRA validation picture is not render --lora's"
else
  note "skipped: comparing the validation picture needs python3 with numpy and PIL"
fi

finish
