#!/usr/bin/env bash
# sdbatch train under mpirun (docs/training.md, "Data parallel") on the tiny SD1 model at 64 x 64,
# 3 instance images, 4 items a step (train_batch_size 2 x gradient_accumulation_steps 2; every
# step is an epoch's 3 items, shared 1 + 2 between two ranks):
#  - full and LoRA mode, 5 steps: one rank against mpirun -n 2: loss.csv's losses within 1e-5
#    relative, the output weights within the tolerances below (the ranks' gradient sums add in
#    another order; AdamW's first steps turn the last-bit differences of near-zero gradients
#    into differences of up to a learning rate on a few weights);
#  - full mode, 3 ranks with train_batch_size 1 (ranks with no item in some steps);
#  - train_text_encoder with prior preservation on 2 ranks, and on 3 ranks with train_batch_size 1,
#    against one rank (the UNet's and the text encoder's files); LoRA with the text encoder's
#    LoRA on 3 ranks against one;
#  - a 2-rank run killed with SIGKILL after a checkpoint and resumed on 2 ranks ends with the
#    same loss.csv and UNet file, byte for byte, as an uninterrupted 2-rank run.
# Usage: test_train_ranks_cmd.sh SDBATCH SOURCE_DIR MPIEXEC
set -euo pipefail
SDBATCH=$(readlink -f "$1")
SOURCE_DIR=$(readlink -f "$2")
# shellcheck source=train_test_lib.sh
source "$SOURCE_DIR/tests/train_test_lib.sh"
MPIEXEC=$3
MODEL="$SOURCE_DIR/tests/fixtures/tiny-sd1"
DIFF="$SOURCE_DIR/tests/train_weights_diff.py"
LR=1.0e-4
CONFIG_BASE=("resolution: 64" "learning_rate: $LR" "lr_warmup_steps: 0" "seed: 7")
train_test_begin sdbatch-train-ranks-test
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

"$SDBATCH" make-shapes shapes --count 3 --size 64 --quiet

ranks() {
  local n=$1
  shift
  "$MPIEXEC" -n "$n" --oversubscribe "$SDBATCH" "$@"
}

# same_losses A.csv B.csv: the same steps, losses within 1e-5 relative
same_losses() {
  python3 - "$1" "$2" << 'PY'
import csv, sys
a, b = (list(csv.DictReader(open(p))) for p in sys.argv[1:3])
assert len(a) == len(b) and len(a) > 0, "%d vs %d steps" % (len(a), len(b))
worst = 0.0
for x, y in zip(a, b):
    assert x["step"] == y["step"] and x["epoch"] == y["epoch"], (x, y)
    worst = max(worst, abs(float(x["loss"]) - float(y["loss"])) / abs(float(x["loss"])))
print("max relative loss difference %.3g" % worst)
sys.exit(0 if worst <= 1e-5 else 1)
PY
}

# close A B MAX MEAN: the weight files' max |diff| <= MAX and mean |diff| <= MEAN
close() {
  local got max mean
  got=$(python3 "$DIFF" "$1" "$2")
  read -r max mean _ <<< "$got"
  note "weights $1 vs $2: max |diff| $max, mean |diff| $mean (limits $3, $4)"
  python3 -c "import sys; sys.exit(0 if $max <= $3 and $mean <= $4 else 1)" ||
    fail "weights differ beyond the tolerance: $got"
}

compare() { # NAME ONE TWO FILE MAX MEAN
  local what=$1 one=$2 two=$3 file=$4
  if same_losses "$one/loss.csv" "$two/loss.csv"; then
    note "$what: losses agree"
  else
    fail "$what: loss.csv differs: $(paste -d' ' "$one/loss.csv" "$two/loss.csv")"
  fi
  close "$one/$file" "$two/$file" "$5" "$6"
}

UNET=unet/diffusion_pytorch_model.safetensors
LORA=pytorch_lora_weights.safetensors
BATCH=("train_batch_size: 2" "gradient_accumulation_steps: 2" "max_train_steps: 5")

# full fine-tuning: a few weights by up to a learning rate (measured 2.9e-5 with lr 1e-4),
# the mean by 1e-3 of it (measured 3.9e-9)
config full1.yaml full1 "${BATCH[@]}"
config full2.yaml full2 "${BATCH[@]}"
"$SDBATCH" train full1.yaml --quiet
ranks 2 train full2.yaml --quiet
[ -f full2/$UNET ] || fail "the 2-rank run wrote no UNet"
compare "full, 1 vs 2 ranks" full1 full2 $UNET 1e-4 1e-7

# LoRA: max |diff| <= 1e-6 (measured 6.0e-8), mean 1e-8 (measured 4.7e-10)
config lora1.yaml lora1 "${BATCH[@]}" "lora: true"
config lora2.yaml lora2 "${BATCH[@]}" "lora: true"
"$SDBATCH" train lora1.yaml --quiet
ranks 2 train lora2.yaml --quiet
compare "LoRA, 1 vs 2 ranks" lora1 lora2 $LORA 1e-6 1e-8

# 3 ranks, 2 items a step (ranks without items in a step)
SMALL=("train_batch_size: 1" "gradient_accumulation_steps: 2" "max_train_steps: 5")
config small1.yaml small1 "${SMALL[@]}"
config small3.yaml small3 "${SMALL[@]}"
"$SDBATCH" train small1.yaml --quiet
ranks 3 train small3.yaml --quiet
compare "full, 1 vs 3 ranks" small1 small3 $UNET 1e-4 1e-7

# train_text_encoder with prior preservation (instance and class prompts through the encoder), 1
# vs 2 ranks, and 1 vs 3 ranks with ranks without items: the UNet as above; the text encoder
# max |diff| <= 1e-5 (measured 4.3e-7 and 8.1e-7), mean 1e-9 (measured 6.8e-12, 7.0e-12; without
# the encoder's gradient sum over the ranks 8.9e-4 and 2.5e-6)
TEXT=text_encoder/model.safetensors
PRIOR=("with_prior_preservation: true" "class_data_dir: classes" "class_prompt: a photo of a shape"
  "num_class_images: 2" "train_text_encoder: true")
config te1.yaml te1 "${BATCH[@]}" "${PRIOR[@]}"
config te2.yaml te2 "${BATCH[@]}" "${PRIOR[@]}"
"$SDBATCH" train te1.yaml --quiet
ranks 2 train te2.yaml --quiet
compare "text encoder + prior preservation, 1 vs 2 ranks" te1 te2 $UNET 1e-4 1e-7
close te1/$TEXT te2/$TEXT 1e-5 1e-9
config tesmall1.yaml tesmall1 "${SMALL[@]}" "train_text_encoder: true"
config tesmall3.yaml tesmall3 "${SMALL[@]}" "train_text_encoder: true"
"$SDBATCH" train tesmall1.yaml --quiet
ranks 3 train tesmall3.yaml --quiet
compare "text encoder, 1 vs 3 ranks" tesmall1 tesmall3 $UNET 1e-4 1e-7
close tesmall1/$TEXT tesmall3/$TEXT 1e-5 1e-9

# LoRA with the text encoder's LoRA, 1 vs 3 ranks (ranks without items encode nothing): the
# LoRA file (UNet and text encoder parts) max |diff| <= 5e-6 (measured 6.2e-7), mean 1e-8
# (measured 5.9e-10)
config telora1.yaml telora1 "${SMALL[@]}" "lora: true" "train_text_encoder: true"
config telora3.yaml telora3 "${SMALL[@]}" "lora: true" "train_text_encoder: true"
"$SDBATCH" train telora1.yaml --quiet
ranks 3 train telora3.yaml --quiet
compare "LoRA with the text encoder, 1 vs 3 ranks" telora1 telora3 $LORA 5e-6 1e-8

# SIGKILL after checkpoint-3 of a 2-rank run, --resume on 2 ranks: byte-equal to uninterrupted
KILL=("train_batch_size: 2" "gradient_accumulation_steps: 2" "max_train_steps: 10"
  "checkpointing_steps: 3" "random_flip: true")
config whole.yaml whole "${KILL[@]}"
config killed.yaml killed "${KILL[@]}"
ranks 2 train whole.yaml --quiet
# in a session of its own, so that the kill reaches mpirun and its ranks
setsid "$MPIEXEC" -n 2 --oversubscribe "$SDBATCH" train killed.yaml --quiet &
pid=$!
while [ ! -d killed/checkpoint-3 ] && kill -0 $pid 2> /dev/null; do sleep 0.005; done
kill -9 -- -$pid 2> /dev/null || true
wait $pid 2> /dev/null || true
if [ -f killed/$UNET ]; then
  fail "the run ended before the kill; the test did not kill it"
fi
note "killed after checkpoint-3: $(ls killed | tr '\n' ' ')"
sleep 0.5 # the ranks' exits
ranks 2 train killed.yaml --quiet --resume
if cmp whole/$UNET killed/$UNET && cmp whole/loss.csv killed/loss.csv; then
  note "killed and resumed on 2 ranks: UNet and loss.csv byte-equal to the uninterrupted run"
else
  fail "the resumed 2-rank run differs from the uninterrupted one"
fi

finish
