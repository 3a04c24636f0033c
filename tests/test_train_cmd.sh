#!/usr/bin/env bash
# sdbatch train (docs/training.md, "sdbatch train") on the tiny SD1 model at 64 x 64:
#  - refusals: an unknown key (with the closest known one), a key not supported yet, a bad value,
#    a missing key, an empty instance folder, an image file that is not an image, an output_dir
#    holding files without --resume, a single-file model's full fine-tune without single_file,
#    pretrained_model_config with a folder: each one error naming the file and place, exit
#    status 1, and no output_dir left behind;
#  - a single-file pretrained model (with its LDM YAML): full and LoRA fine-tunes write the same
#    single file / LoRA and loss.csv, byte for byte, as from the diffusers folder;
#  - crash safety: a run killed with SIGKILL right after a checkpoint, then at random moments
#    (during steps and checkpoint writes), resumed each time with --resume, ends with the same
#    UNet file and loss.csv, byte for byte, as an uninterrupted run; checkpoints_total_limit
#    keeps the newest ones; no temporary folder is left;
#  - num_train_epochs and gradient_accumulation_steps: the steps and epochs of loss.csv;
#  - validation renders: the files of every validation_steps steps, equal to `sdbatch render` of
#    the output with the same settings at the last step; their keys' refusals;
#  - the output folder renders with `sdbatch render --model`.
# Usage: test_train_cmd.sh SDBATCH SOURCE_DIR
set -euo pipefail
SDBATCH=$(readlink -f "$1")
SOURCE_DIR=$(readlink -f "$2")
# shellcheck source=train_test_lib.sh
source "$SOURCE_DIR/tests/train_test_lib.sh"
MODEL="$SOURCE_DIR/tests/fixtures/tiny-sd1"
CONFIG_BASE=("resolution: 64" "train_batch_size: 1" "learning_rate: 1.0e-4" "lr_warmup_steps: 0" "seed: 7")
train_test_begin sdbatch-train-test

"$SDBATCH" make-shapes shapes --count 3 --size 64 --quiet
mkdir empty notimage
cp shapes/000000.png notimage/
echo "not a picture" > notimage/000001.png

# refused CONFIG OUTPUT PATTERN [ARGS...]: exit status 1, one error line matching PATTERN, no
# output folder

config unknown.yaml out-unknown "max_train_step: 5"
refused unknown.yaml out-unknown "unknown.yaml:10:1: unknown key 'max_train_step' \(did you mean 'max_train_steps'\?\)"
config unsupported.yaml out-unsupported "max_train_steps: 5" "use_dora: true"
refused unsupported.yaml out-unsupported "unsupported.yaml:11:1: use_dora: not supported yet"
config single_lora.yaml out-single-lora "single_file: model.safetensors" "lora: true"
refused single_lora.yaml out-single-lora "single_lora.yaml:10:1: single_file: only a full fine-tune writes a model"
config single_name.yaml out-single-name "single_file: ../model.safetensors"
refused single_name.yaml out-single-name "single_name.yaml:10:1: single_file: '../model.safetensors' is not a file name ending in .safetensors"
config single_ckpt.yaml out-single-ckpt "single_file: model.ckpt"
refused single_ckpt.yaml out-single-ckpt "single_ckpt.yaml:10:1: single_file: 'model.ckpt' is not a file name"
config prior.yaml out-prior "prior_generation_precision: fp16"
refused prior.yaml out-prior "prior.yaml:10:1: prior_generation_precision: not supported yet"
config val1.yaml out-val1 "max_train_steps: 2" "num_validation_images: 2"
refused val1.yaml out-val1 "val1.yaml:11:1: num_validation_images: only validation renders use it"
config val2.yaml out-val2 "validation_prompt: a sks shape" "validation_scheduler: DDPMScheduler"
refused val2.yaml out-val2 "val2.yaml:11:1: validation_scheduler: only DPMSolverMultistepScheduler"
config val3.yaml out-val3 "validation_epochs: 1"
refused val3.yaml out-val3 "val3.yaml:10:1: validation_epochs: not supported yet"
config neutral.yaml out-neutral "train_text_encoder: false" "mixed_precision: no" "max_train_steps: 0"
refused neutral.yaml out-neutral "neutral.yaml:12:18: max_train_steps: expected an integer from 1 to"
config badlr.yaml out-badlr
sed -i 's/^learning_rate: .*/learning_rate: fast/' badlr.yaml
refused badlr.yaml out-badlr "badlr.yaml:7:16: learning_rate: expected a number from 0 to 1000, got 'fast'"
config sched.yaml out-sched "lr_scheduler: polynomial"
refused sched.yaml out-sched "sched.yaml:10:15: lr_scheduler: 'polynomial' is not supported yet"
grep -v instance_prompt unknown.yaml | grep -v max_train_step > missing.yaml
refused missing.yaml out-unknown "missing.yaml: missing key 'instance_prompt'"
config res.yaml out-res
sed -i 's/^resolution: .*/resolution: 60/' res.yaml
refused res.yaml out-res "res.yaml: resolution: 60 is not a multiple of 8"
config res2.yaml out-res2
sed -i 's/^resolution: .*/resolution: 48/' res2.yaml
refused res2.yaml out-res2 "resolution: 48 is not a multiple of 32 \(the VAE's factor 8 times the UNet's 2 downsamplings\)"
config emptydir.yaml out-empty "max_train_steps: 2"
sed -i 's/^instance_data_dir: shapes/instance_data_dir: empty/' emptydir.yaml
refused emptydir.yaml out-empty "instance_data_dir empty: no instance images"
config notimage.yaml out-notimage "max_train_steps: 2"
sed -i 's/^instance_data_dir: shapes/instance_data_dir: notimage/' notimage.yaml
refused notimage.yaml out-notimage "notimage/000001.png"
# a single-file pretrained model: a full fine-tune needs single_file; its LDM YAML is
# pretrained_model_config, which a folder refuses
SINGLE="$SOURCE_DIR/tests/fixtures/tiny-sd1.safetensors"
config single.yaml out-single "max_train_steps: 2"
sed -i "s#^pretrained_model: .*#pretrained_model: $SINGLE#" single.yaml
refused single.yaml out-single "single.yaml: pretrained_model .*tiny-sd1.safetensors is a single file: a full fine-tune of it is written as a single file only; add single_file"
config yamlfolder.yaml out-yamlfolder "pretrained_model_config: $SOURCE_DIR/tests/fixtures/tiny-sd1.yaml"
refused yamlfolder.yaml out-yamlfolder "yamlfolder.yaml: pretrained_model_config: only for a single-file pretrained_model"
# trained from the single file = trained from the folder: the single file written, loss.csv and
# the LoRA byte for byte (the fixture's file holds the folder's tensors; its YAML the configs)
for mode in full lora; do
  extra=("max_train_steps: 3" "single_file: trained.safetensors")
  [ $mode = lora ] && extra=("max_train_steps: 3" "lora: true")
  config "from-folder-$mode.yaml" "from-folder-$mode" "${extra[@]}"
  config "from-file-$mode.yaml" "from-file-$mode" "${extra[@]}" \
    "pretrained_model_config: $SOURCE_DIR/tests/fixtures/tiny-sd1.yaml"
  sed -i "s#^pretrained_model: .*#pretrained_model: $SINGLE#" "from-file-$mode.yaml"
  "$SDBATCH" train "from-folder-$mode.yaml" --quiet
  "$SDBATCH" train "from-file-$mode.yaml" --quiet
  file=trained.safetensors
  [ $mode = lora ] && file=pytorch_lora_weights.safetensors
  if cmp -s "from-folder-$mode/$file" "from-file-$mode/$file" &&
    cmp -s "from-folder-$mode/loss.csv" "from-file-$mode/loss.csv"; then
    note "$mode fine-tune of the single file = of the folder: $file and loss.csv byte for byte"
  else
    fail "$mode fine-tune of the single file differs from the folder's ($file, loss.csv)"
  fi
done
[ ! -e from-file-full/unet ] || fail "a single-file pretrained model's run wrote a diffusers folder"
mkdir busy && touch busy/something
config busy.yaml busy "max_train_steps: 2"
status=0
"$SDBATCH" train busy.yaml --quiet 2> stderr.txt || status=$?
if [ "$status" -ne 1 ] || ! grep -q "already holds files; continue its run with --resume" stderr.txt; then
  fail "an output_dir holding files: status $status, $(cat stderr.txt)"
elif [ "$(ls busy)" != "something" ]; then
  fail "the refused run changed busy/: $(ls busy)"
else
  note "refused as expected: $(cat stderr.txt)"
fi

# epochs without max_train_steps, gradient accumulation: 3 pictures in micro-batches of 1, 2 per
# step, make 2 steps an epoch (the second has the epoch's last micro-batch alone), 2 epochs
config accum.yaml accum "num_train_epochs: 2" "gradient_accumulation_steps: 2" "center_crop: true"
"$SDBATCH" train accum.yaml --quiet
epochs=$(tail -n +2 accum/loss.csv | cut -d, -f1,2 | tr '\n' ' ')
[ "$epochs" = "1,0 2,0 3,1 4,1 " ] || fail "accumulation: steps and epochs of loss.csv: $epochs"

# validation renders every 2 steps, 2 images each; the last step's are what `sdbatch render`
# draws from the output with the same settings (DPM++ 2M, 25 steps, guidance 7.5, CPU generator,
# seeds 7 and 8)
config val.yaml val "max_train_steps: 4" "validation_prompt: a photo of sks shape" \
  "num_validation_images: 2" "validation_steps: 2"
"$SDBATCH" train val.yaml --quiet
got=$(ls val/validation | tr '\n' ' ')
[ "$got" = "step-000002-0.png step-000002-1.png step-000004-0.png step-000004-1.png " ] ||
  fail "validation renders: $got"
for k in 0 1; do
  "$SDBATCH" render --model val --prompt "a photo of sks shape" --seed $((7 + k)) --steps 25 \
    --guidance-scale 7.5 --scheduler dpmpp_2m --rng cpu --device cpu --threads 1 \
    --out "val-render-$k.png" --quiet || fail "render of the validation run's output"
done
if python3 -c "import numpy, PIL" 2> /dev/null; then
  for k in 0 1; do
    python3 "$SOURCE_DIR/tests/reference/same_pixels.py" "val/validation/step-000004-$k.png" \
      "val-render-$k.png" --label "validation image $k of step 4 against sdbatch render" ||
      fail "validation image $k is not sdbatch render's picture"
  done
else
  note "skipped: comparing the validation renders needs python3 with numpy and PIL"
fi

# the uninterrupted run: 30 steps, a checkpoint every 5, random crops and flips
STEPS=30
config full.yaml full "max_train_steps: $STEPS" "checkpointing_steps: 5" "random_flip: true"
"$SDBATCH" train full.yaml --quiet
for f in model_index.json unet/config.json unet/diffusion_pytorch_model.safetensors \
  vae/diffusion_pytorch_model.safetensors text_encoder/model.safetensors loss.csv; do
  [ -f "full/$f" ] || fail "the output lacks $f"
done
[ "$(wc -l < full/loss.csv)" -eq $((STEPS + 1)) ] || fail "loss.csv has $(wc -l < full/loss.csv) lines"
[ -d full/checkpoint-$STEPS ] || fail "no checkpoint-$STEPS"

# killed right after its first checkpoint, then at random moments, resumed each time
config killed.yaml killed "max_train_steps: $STEPS" "checkpointing_steps: 5" "random_flip: true" \
  "checkpoints_total_limit: 2"
kill_after_checkpoint killed checkpoint-5 unet/diffusion_pytorch_model.safetensors
# each resumed run is killed once it has logged K more steps than its checkpoint (K = 1..7, so
# kills land in steps and in checkpoint writes, which happen every 5 steps)
kills=1
for k in 3 5 1 7 4 6 2; do
  [ -f killed/unet/diffusion_pytorch_model.safetensors ] && break
  latest=$(cd killed && ls -d checkpoint-* | sed 's/checkpoint-//' | sort -n | tail -1)
  "$SDBATCH" train killed.yaml --quiet --resume &
  pid=$!
  while kill -0 $pid 2> /dev/null &&
    [ "$(wc -l < killed/loss.csv)" -le $((latest + 1 + k)) ]; do
    sleep 0.002
  done
  if kill -9 $pid 2> /dev/null; then
    kills=$((kills + 1))
  fi
  wait $pid 2> /dev/null || true
  note "killed at $(($(wc -l < killed/loss.csv) - 1)) steps logged: $(ls killed | tr '\n' ' ')"
done
"$SDBATCH" train killed.yaml --quiet --resume
note "$kills kills, then resumed to the end"
if cmp full/unet/diffusion_pytorch_model.safetensors killed/unet/diffusion_pytorch_model.safetensors; then
  note "resumed UNet equals the uninterrupted run's, byte for byte"
else
  fail "the resumed run's UNet differs from the uninterrupted run's"
fi
cmp full/loss.csv killed/loss.csv || fail "the resumed run's loss.csv differs"
checkpoints=$(cd killed && ls -d checkpoint-* | sort -t- -k2 -n | tr '\n' ' ')
[ "$checkpoints" = "checkpoint-25 checkpoint-30 " ] ||
  fail "checkpoints_total_limit 2 left: $checkpoints"
if ls -a killed | grep -q '^\.checkpoint'; then fail "temporary folders left: $(ls -a killed)"; fi

# the output renders
"$SDBATCH" render --model full --prompt "a photo of sks shape" --seed 1 --steps 2 --width 64 \
  --height 64 --device cpu --threads 1 --out render.png 2> render.log || fail "render: $(cat render.log)"
[ -s render.png ] || fail "no render.png"

finish
