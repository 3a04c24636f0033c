#!/usr/bin/env bash
# Untrusted input files at the command line (docs/security.md): crafted checkpoints and configs,
# FIFOs and device files where files are expected, absurd sizes, bad output paths. Each gets one
# clear error and a non-zero exit within seconds: never a crash, a hang or a runaway allocation.
# Under the sanitizer build (scripts/test.sh --sanitize) a memory error fails the command too.
# Usage: test_untrusted.sh SDBATCH FIXTURES_DIR
set -u
sdbatch=$1
fixtures=$2
untrusted=$fixtures/untrusted
model=$fixtures/tiny-sd1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0
# every command gets this long: a FIFO opened for reading would block forever
limit=60
# a runaway allocation fails instead of filling the machine (ASan reserves address space itself)
[ -z "${ASAN_OPTIONS+x}" ] && ulimit -v 4000000

# expect STATUS PATTERN -- command...: the exit status and a pattern that the output must match
expect() {
  local want_status=$1 pattern=$2
  shift 3
  local output status
  timeout "$limit" "$@" >"$work/output" 2>&1
  status=$?
  output=$(tr -d '\000' <"$work/output")
  if [ "$status" -eq "$want_status" ] && printf '%s\n' "$output" | grep -qE -- "$pattern"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    local command_line="$*"
    printf 'FAIL: %s\n  exit %s (want %s); output:\n%s\n  (wanted /%s/)\n' "${command_line:0:300}" \
      "$status" "$want_status" "${output:0:2000}" "$pattern"
  fi
}

render=("$sdbatch" render --steps 2 --width 64 --height 64 --quiet --prompt "a cat")
out=$work/x.png

# safetensors: a second __metadata__ object (heap overflow before), an empty second one (leak
# and a NULL strcmp before)
for name in overflow leak; do
  expect 1 "safetensors_dup_metadata_$name.safetensors: \"__metadata__\" appears twice" -- \
    "${render[@]}" --model "$untrusted/safetensors_dup_metadata_$name.safetensors" --out "$out"
done

# a diffusers folder with one file replaced
# broken NAME FILE: copies the model to $work/NAME; FILE (relative) is then to be replaced
broken() {
  rm -rf "${work:?}/$1"
  cp -r "$model" "$work/$1"
  rm -f "$work/$1/$2"
}
broken fifo_config unet/config.json
mkfifo "$work/fifo_config/unet/config.json"
expect 1 "unet/config.json: not a regular file \(a FIFO\)" -- \
  "${render[@]}" --model "$work/fifo_config" --out "$out"
broken zero_config text_encoder/config.json
ln -s /dev/zero "$work/zero_config/text_encoder/config.json"
expect 1 "text_encoder/config.json: not a regular file \(a character device\)" -- \
  "${render[@]}" --model "$work/zero_config" --out "$out"
broken zero_vocab tokenizer/vocab.json
ln -s /dev/zero "$work/zero_vocab/tokenizer/vocab.json"
expect 1 "tokenizer/vocab.json: not a regular file" -- \
  "$sdbatch" tokenize --model "$work/zero_vocab" --prompt "a cat"
broken fifo_weights unet/diffusion_pytorch_model.safetensors
mkfifo "$work/fifo_weights/unet/diffusion_pytorch_model.safetensors"
expect 1 "diffusion_pytorch_model.safetensors: not a regular file \(a FIFO\)" -- \
  "${render[@]}" --model "$work/fifo_weights" --out "$out"
broken big_config unet/config.json
{ printf '{"_pad": "'; head -c $((17 << 20)) /dev/zero | tr '\0' ' '; printf '"}'; } \
  >"$work/big_config/unet/config.json"
expect 1 "unet/config.json: .*larger than the limit of 16777216" -- \
  "${render[@]}" --model "$work/big_config" --out "$out"

# config values beyond what the architectures use: refused before anything is allocated
broken positions text_encoder/config.json
sed 's/"max_position_embeddings": *[0-9]*/"max_position_embeddings": 2147483647/' \
  "$model/text_encoder/config.json" >"$work/positions/text_encoder/config.json"
expect 1 "text_encoder/config.json: text encoder max_position_embeddings = 2147483647 is outside" -- \
  "${render[@]}" --model "$work/positions" --out "$out"
broken timesteps scheduler/scheduler_config.json
sed 's/"num_train_timesteps": *[0-9]*/"num_train_timesteps": 2147483647/' \
  "$model/scheduler/scheduler_config.json" >"$work/timesteps/scheduler/scheduler_config.json"
expect 1 "scheduler num_train_timesteps = 2147483647 is outside" -- \
  "${render[@]}" --model "$work/timesteps" --out "$out"
broken channels unet/config.json
# the second entry of block_out_channels (one per line) made 2^31 - 32
sed '0,/^    64,$/s//    2147483616,/' "$model/unet/config.json" >"$work/channels/unet/config.json"
expect 1 "unet/config.json: UNet block_out_channels\[1\] = 2147483616 is outside" -- "${render[@]}" --model "$work/channels" --out "$out"

# single files: a FIFO as checkpoint or as LDM YAML; LDM YAML sizes that overflowed ints before
single=$fixtures/tiny-sd1.safetensors
mkfifo "$work/fifo.safetensors" "$work/fifo.yaml"
expect 1 "fifo.safetensors: not a regular file \(a FIFO\)" -- \
  "${render[@]}" --model "$work/fifo.safetensors" --out "$out"
expect 1 "fifo.yaml: not a regular file \(a FIFO\)" -- \
  "${render[@]}" --model "$single" --model-config "$work/fifo.yaml" --out "$out"
expect 1 "ldm_image_size_max.yaml: line 15: image_size = 2147483647 is outside" -- \
  "${render[@]}" --model "$single" --model-config "$untrusted/ldm_image_size_max.yaml" \
  --out "$out"
expect 1 "ldm_channel_mult_max.yaml: line 32: channel_mult = 2147483647 is outside" -- \
  "${render[@]}" --model "$single" --model-config "$untrusted/ldm_channel_mult_max.yaml" \
  --out "$out"

# a FIFO as LoRA file (hashed for the PNG before it is read)
expect 1 "fifo.safetensors: not a regular file \(a FIFO\)" -- \
  "${render[@]}" --model "$model" --lora "$work/fifo.safetensors" --out "$out"

# render --out is checked before the model is even opened (the model here does not exist)
expect 2 "--out: output path is empty" -- "${render[@]}" --model "$work/none" --out ""
expect 2 "--out: $work/missing/x.png: folder '$work/missing': No such file" -- \
  "${render[@]}" --model "$work/none" --out "$work/missing/x.png"
expect 2 "--out: $work: exists and is not a regular file \(a folder\)" -- \
  "${render[@]}" --model "$work/none" --out "$work"
expect 2 "--out: $work/sub/: names a folder" -- "${render[@]}" --model "$work/none" \
  --out "$work/sub/"
expect 2 "--out: /dev/full: exists and is not a regular file \(a character device\)" -- \
  "${render[@]}" --model "$work/none" --out /dev/full
ln -s "$work/target.png" "$work/link.png"
expect 2 "--out: $work/link.png: is a symbolic link" -- "${render[@]}" --model "$work/none" \
  --out "$work/link.png"
[ -c /dev/full ] && [ ! -e "$work/target.png" ] && passed=$((passed + 1)) || {
  failed=$((failed + 1))
  echo "FAIL: /dev/full or the link's target was touched"
}

# job files: a FIFO as job file or prompts_file, /dev/zero as prompts_file
mkfifo "$work/job.yaml" "$work/prompts.txt"
expect 1 "job.yaml: cannot read the job file: not a regular file \(a FIFO\)" -- \
  "$sdbatch" run "$work/job.yaml"
printf 'model: %s\noutput: %s/out.h5\nprompts_file: prompts.txt\nseeds: 1\n' "$model" "$work" \
  >"$work/fifo_prompts.yaml"
expect 1 "fifo_prompts.yaml:3:15: prompts_file: cannot read '$work/prompts.txt': not a regular" -- \
  "$sdbatch" run "$work/fifo_prompts.yaml"
sed "s|prompts.txt|/dev/zero|" "$work/fifo_prompts.yaml" >"$work/zero_prompts.yaml"
expect 1 "prompts_file: cannot read '/dev/zero': not a regular file \(a character device\)" -- \
  "$sdbatch" run "$work/zero_prompts.yaml"
[ ! -e "$work/out.h5" ] && passed=$((passed + 1)) || {
  failed=$((failed + 1))
  echo "FAIL: a refused job left $work/out.h5"
}

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
