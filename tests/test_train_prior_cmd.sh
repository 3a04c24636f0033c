#!/usr/bin/env bash
# sdbatch train with prior preservation (docs/training.md, "Prior preservation") on the tiny SD1
# model at 64 x 64, full and LoRA mode:
#  - refusals: with_prior_preservation without class_prompt or class_data_dir, a bad
#    prior_loss_weight, a class key without with_prior_preservation, a class_data_dir that is a
#    file: each one error naming the file (and place), exit status 1, no output_dir left behind;
#  - class images: an empty class_data_dir gets num_class_images PNGs (the model's default size,
#    RGB), rendered before training; a rerun renders none (files unchanged); a folder short of
#    images gets only the missing ones; leftovers of a killed write are deleted;
#  - crash safety: full and LoRA runs killed with SIGKILL (after a checkpoint, then at random
#    moments) and resumed with --resume end with the same output and loss.csv, byte for byte, as
#    uninterrupted runs; a checkpoint refuses a resume with another number of class images.
# Usage: test_train_prior_cmd.sh SDBATCH SOURCE_DIR
set -euo pipefail
SDBATCH=$(readlink -f "$1")
SOURCE_DIR=$(readlink -f "$2")
# shellcheck source=train_test_lib.sh
source "$SOURCE_DIR/tests/train_test_lib.sh"
MODEL="$SOURCE_DIR/tests/fixtures/tiny-sd1"
CONFIG_BASE=("resolution: 64" "train_batch_size: 2" "learning_rate: 1.0e-4" "lr_warmup_steps: 0" "seed: 7")
train_test_begin sdbatch-train-prior

"$SDBATCH" make-shapes shapes --count 3 --size 64 --quiet

# refused CONFIG OUTPUT PATTERN: exit status 1, one error line matching PATTERN, no output folder

config noprompt.yaml out-np "with_prior_preservation: true" "class_data_dir: class-np"
refused noprompt.yaml out-np "noprompt.yaml: missing key 'class_prompt' \(required with with_prior_preservation: true\)"
config nodir.yaml out-nd "with_prior_preservation: true" "class_prompt: a photo of a shape"
refused nodir.yaml out-nd "nodir.yaml: missing key 'class_data_dir' \(required with with_prior_preservation: true\)"
config badweight.yaml out-bw "with_prior_preservation: true" "class_prompt: a shape" \
  "class_data_dir: class-bw" "prior_loss_weight: -1"
refused badweight.yaml out-bw "badweight.yaml:13:20: prior_loss_weight: expected a number from 0 to 1e\+06, got '-1'"
config badweight2.yaml out-bw "with_prior_preservation: true" "class_prompt: a shape" \
  "class_data_dir: class-bw" "prior_loss_weight: heavy"
refused badweight2.yaml out-bw "badweight2.yaml:13:20: prior_loss_weight: expected a number"
config nocount.yaml out-nc "with_prior_preservation: true" "class_prompt: a shape" \
  "class_data_dir: class-bw" "num_class_images: 0"
refused nocount.yaml out-nc "nocount.yaml:13:19: num_class_images: expected an integer from 1 to"
config stray.yaml out-stray "class_prompt: a photo of a shape"
refused stray.yaml out-stray "stray.yaml:10:1: class_prompt: only prior preservation uses it; add .with_prior_preservation: true."
[ -e class-np ] || [ -e class-bw ] && fail "a refused config made its class_data_dir"
echo "not a folder" > classfile
config classfile.yaml out-cf "with_prior_preservation: true" "class_prompt: a shape" \
  "class_data_dir: classfile" "max_train_steps: 1"
refused classfile.yaml out-cf "classfile.yaml: class_data_dir classfile: cannot read the folder"

# class images: 5 rendered into an empty folder before training
PRIOR=("with_prior_preservation: true" "class_prompt: a photo of a shape" "class_data_dir: class"
  "num_class_images: 5" "sample_batch_size: 2" "prior_loss_weight: 0.5")
config gen.yaml gen "max_train_steps: 2" "${PRIOR[@]}"
"$SDBATCH" train gen.yaml --quiet
count=$(ls class | grep -c '\.png$' || true)
[ "$count" -eq 5 ] || fail "class_data_dir holds $count images, expected 5: $(ls class)"
for f in class/*.png; do
  kind=$(file -b "$f")
  case "$kind" in
  "PNG image data, 128 x 128, 8-bit/color RGB"*) ;;
  *) fail "$f: $kind (expected a 128 x 128 RGB PNG: the tiny model's default size)" ;;
  esac
done
note "class images: $(ls class | tr '\n' ' ')($(file -b class/class-000000.png | cut -d, -f1-3))"
[ "$(ls -a class | grep -c tmp)" -eq 0 ] || fail "temporary files left: $(ls -a class)"
sums=$(md5sum class/* | sort)
sleep 1.1
touch -d '2000-01-01' class/*
rm -rf gen
"$SDBATCH" train gen.yaml --quiet
[ "$(md5sum class/* | sort)" = "$sums" ] || fail "a rerun changed the class images"
[ -z "$(find class -newer gen.yaml -type f)" ] || fail "a rerun rewrote class images: $(find class -newer gen.yaml)"
note "a rerun rendered no class image"
# a folder short of two images (and a killed write's leftover) gets the missing ones only, with
# the seeds an uninterrupted generation gives them
mkdir class2
cp class/class-000000.png class/class-000001.png class/class-000002.png class2/
echo partial > class2/class-000003.png.tmp.AbC123
sed 's/^class_data_dir: class$/class_data_dir: class2/' gen.yaml | sed 's/^output_dir: gen$/output_dir: gen2/' > gen2.yaml
"$SDBATCH" train gen2.yaml --quiet
[ "$(ls -a class2 | grep -c tmp)" -eq 0 ] || fail "the leftover temporary file stayed: $(ls -a class2)"
if (cd class && md5sum class-*.png) | (cd class2 && md5sum -c --quiet -) > /dev/null 2>&1; then
  note "a folder with 3 of 5 images got the other 2, equal to an uninterrupted generation's"
else
  fail "class2 differs from class: $(ls class2)"
fi
cmp gen/loss.csv gen2/loss.csv || fail "the same class images trained differently"

# a run killed with SIGKILL while it renders class images leaves whole PNGs only; the rerun renders
# the rest, the same images as an uninterrupted generation (the first 5 equal class/'s)
sed 's/^class_data_dir: class$/class_data_dir: class3/; s/^output_dir: gen$/output_dir: gen3/; s/^num_class_images: 5/num_class_images: 8/' gen.yaml > gen3.yaml
"$SDBATCH" train gen3.yaml --quiet &
pid=$!
while kill -0 $pid 2> /dev/null && [ "$(ls class3 2> /dev/null | grep -c '^class-.*\.png$' || true)" -lt 1 ]; do
  sleep 0.002
done
kill -9 $pid 2> /dev/null || true
wait $pid 2> /dev/null || true
got=$(ls class3 | grep -c '^class-.*\.png$' || true)
[ -e gen3/unet ] && fail "the generation ended before the kill"
for f in class3/class-*.png; do
  file -b "$f" | grep -q "PNG image data, 128 x 128" || fail "$f after the kill: $(file -b "$f")"
done
"$SDBATCH" train gen3.yaml --quiet
count=$(ls class3 | grep -c '\.png$' || true)
[ "$count" -eq 8 ] || fail "class3 holds $count images after the rerun: $(ls -a class3)"
[ "$(ls -a class3 | grep -c tmp)" -eq 0 ] || fail "temporary files left: $(ls -a class3)"
if (cd class && md5sum class-*.png) | (cd class3 && md5sum -c --quiet -) > /dev/null 2>&1; then
  note "killed with $got of 8 class images written; the rerun rendered the rest, equal to an uninterrupted generation's"
else
  fail "class3 differs from class after a killed generation"
fi

# crash safety, full and LoRA: 5 class images and 3 instance images make 5 items (3 micro-batches
# of 2, 2, 1 items an epoch; LoRA with gradient accumulation 2)
STEPS=12
for mode in full lora; do
  extra=()
  want="0 0 0 1 1 1 2 2 2 3 3 3 "
  if [ "$mode" = lora ]; then
    # accumulation 2: micro-batches (2, 2) then (1) make 2 steps an epoch
    extra=("lora: true" "learning_rate: 1.0e-3" "gradient_accumulation_steps: 2")
    want="0 0 1 1 2 2 3 3 4 4 5 5 "
  fi
  config $mode.yaml $mode "max_train_steps: $STEPS" "checkpointing_steps: 4" "random_flip: true" \
    "${PRIOR[@]}" "${extra[@]}"
  sed -i '/^learning_rate: 1.0e-4$/d' $mode.yaml
  "$SDBATCH" train $mode.yaml --quiet
  config $mode-k.yaml $mode-k "max_train_steps: $STEPS" "checkpointing_steps: 4" "random_flip: true" \
    "checkpoints_total_limit: 2" "${PRIOR[@]}" "${extra[@]}"
  sed -i '/^learning_rate: 1.0e-4$/d' $mode-k.yaml
  "$SDBATCH" train $mode-k.yaml --quiet &
  pid=$!
  while [ ! -d $mode-k/checkpoint-4 ] && kill -0 $pid 2> /dev/null; do sleep 0.005; done
  kill -9 $pid 2> /dev/null || true
  wait $pid 2> /dev/null || true
  kills=1
  for k in 2 5 1 3; do
    [ -e $mode-k/loss.csv ] && [ "$(wc -l < $mode-k/loss.csv)" -gt $STEPS ] && break
    latest=$(cd $mode-k && ls -d checkpoint-* | sed 's/checkpoint-//' | sort -n | tail -1)
    "$SDBATCH" train $mode-k.yaml --quiet --resume &
    pid=$!
    while kill -0 $pid 2> /dev/null && [ "$(wc -l < $mode-k/loss.csv)" -le $((latest + 1 + k)) ]; do
      sleep 0.002
    done
    kill -9 $pid 2> /dev/null && kills=$((kills + 1))
    wait $pid 2> /dev/null || true
  done
  "$SDBATCH" train $mode-k.yaml --quiet --resume
  if [ $mode = full ]; then out=unet/diffusion_pytorch_model.safetensors; else out=pytorch_lora_weights.safetensors; fi
  if cmp $mode/$out $mode-k/$out && cmp $mode/loss.csv $mode-k/loss.csv; then
    note "$mode: $kills kills + --resume: $out and loss.csv equal the uninterrupted run's, byte for byte"
  else
    fail "$mode: the resumed run's $out or loss.csv differs from the uninterrupted run's"
  fi
  epochs=$(tail -n +2 $mode/loss.csv | cut -d, -f2 | tr '\n' ' ')
  [ "$epochs" = "$want" ] || fail "$mode: epochs of loss.csv: $epochs, expected $want"
done

# a checkpoint refuses a resume with another number of class images
sed 's/^num_class_images: 5/num_class_images: 4/' full-k.yaml > fewer.yaml
status=0
"$SDBATCH" train fewer.yaml --quiet --resume 2> stderr.txt || status=$?
if [ "$status" -eq 1 ] && grep -q "class_images 5, the config now gives 4" stderr.txt; then
  note "refused as expected: $(cat stderr.txt)"
else
  fail "a resume with fewer class images: status $status, $(cat stderr.txt)"
fi

finish
