#!/usr/bin/env bash
# The sdbatch program's behaviour on good and bad input: every bad flag, prompt or model gets
# one clear error and a non-zero exit, never a crash; --help works everywhere.
# Usage: test_cli.sh SDBATCH FIXTURES_DIR
set -u
sdbatch=$1
fixtures=$2
model=$fixtures/tiny-sd1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0

# expect STATUS PATTERN -- command...: the exit status and a pattern that stderr+stdout must match
expect() {
  local want_status=$1 pattern=$2
  shift 3
  local output status
  "$@" >"$work/output" 2>&1
  status=$?
  output=$(tr -d '\000' <"$work/output")
  if [ "$status" -eq "$want_status" ] &&
    { [ -z "$pattern" ] || printf '%s\n' "$output" | grep -qE -- "$pattern"; }; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    local command_line="$*"
    printf 'FAIL: %s\n  exit %s (want %s); output:\n%s\n  (wanted /%s/)\n' "${command_line:0:300}" "$status" \
      "$want_status" "$output" "$pattern"
  fi
}

render=("$sdbatch" render --model "$model" --steps 2 --width 64 --height 64 --quiet)

# help and usage
for command in render tokenize make-demo-model make-shapes bench run inspect export train train-demo; do
  expect 0 "Usage: sdbatch $command" -- "$sdbatch" "$command" --help
done
expect 2 "the training config \(CONFIG.yaml\) is required" -- "$sdbatch" train
expect 1 "missing.yaml: cannot read the training config" -- "$sdbatch" train "$work/missing.yaml"
expect 2 "unknown or ambiguous option '--frobnicate'" -- "$sdbatch" train x.yaml --frobnicate
expect 0 "Commands:" -- "$sdbatch" --help
expect 2 "unknown command 'frobnicate'" -- "$sdbatch" frobnicate
expect 2 "Usage: sdbatch" -- "$sdbatch"

# tokenize: the ids of transformers' CLIPTokenizer
expect 0 "^49406 320 1125 539 550 18376 6765 320 4558 49407 49407" -- \
  "$sdbatch" tokenize --model "$model" --prompt "a photo of an astronaut riding a horse"
expect 2 "--prompt is required" -- "$sdbatch" tokenize --model "$model"

# bad flags
expect 2 "--prompt is required" -- "${render[@]}" --out "$work/x.png"
expect 2 "--out is required" -- "${render[@]}" --prompt "a cat"
expect 2 "--steps: expected an integer from 1 to 1000, got 'ten'" -- \
  "${render[@]}" --prompt "a cat" --steps ten --out "$work/x.png"
expect 2 "--guidance-scale: expected a number, got 'nan'" -- \
  "${render[@]}" --prompt "a cat" --guidance-scale nan --out "$work/x.png"
expect 2 "--seed: expected a non-negative integer, got '-1'" -- \
  "${render[@]}" --prompt "a cat" --seed -1 --out "$work/x.png"
expect 2 "unknown scheduler 'foo'.*ddim" -- \
  "${render[@]}" --prompt "a cat" --scheduler foo --out "$work/x.png"
expect 2 "--rng" -- "${render[@]}" --prompt "a cat" --rng gpu --out "$work/x.png"
expect 2 "--device: expected cpu, cuda or auto, got 'tpu'" -- \
  "${render[@]}" --prompt "a cat" --device tpu --out "$work/x.png"
expect 2 "--precision" -- "${render[@]}" --prompt "a cat" --precision fp8 --out "$work/x.png"
expect 2 "unknown or ambiguous option '--colour'" -- \
  "${render[@]}" --prompt "a cat" --colour red --out "$work/x.png"

# the option parser (apps/sdbatch/cli_options.c), the same for every command
expect 2 "--steps: a value \(N\) is required" -- "${render[@]}" --prompt "a cat" --out x.png --steps
expect 2 "--karras takes no value, got '--karras=yes'" -- \
  "${render[@]}" --prompt "a cat" --karras=yes --out "$work/x.png"
expect 2 "unknown or ambiguous option '--s'" -- "${render[@]}" --prompt "a cat" --s 3 --out x.png
expect 2 "--steps: expected an integer from 1 to 1000, got '0'" -- \
  "${render[@]}" --prompt "a cat" --steps=0 --out "$work/x.png"
expect 2 "--steps: expected an integer from 1 to 1000, got '99999999999999999999'" -- \
  "${render[@]}" --prompt "a cat" --steps 99999999999999999999 --out "$work/x.png"
expect 2 "--width: expected an integer from 8 to 8192, got '64px'" -- \
  "${render[@]}" --prompt "a cat" --width 64px --out "$work/x.png"
expect 2 "--threads: expected an integer from 1 to 1024, got ''" -- \
  "${render[@]}" --prompt "a cat" --threads "" --out "$work/x.png"
expect 2 "--vae-tiling: .*maybe" -- "${render[@]}" --prompt "a cat" --vae-tiling maybe --out x.png
expect 2 "--model is required" -- "$sdbatch" render --prompt "a cat" --out "$work/x.png"
expect 2 "unexpected argument 'stray'" -- "${render[@]}" --prompt "a cat" stray --out x.png
expect 2 "--only: expected text, unet, vae, vae-encoder, pipeline or depth, got 'all'" -- \
  "$sdbatch" bench --model "$model" --only all
expect 1 "has no depth_estimator/ folder; give --depth-estimator DIR" -- \
  "$sdbatch" bench --model "$model" --device cpu --only depth
expect 0 "depth estimator .*tiny-dpt-hybrid at 64x64" -- \
  "$sdbatch" bench --model "$model" --device cpu --only depth --repeat 1 \
  --depth-estimator "$fixtures/depth/tiny-dpt-hybrid"
expect 2 "--batch: expected an integer from 1 to 1024, got '0'" -- \
  "$sdbatch" bench --model "$model" --batch 0
expect 2 "--seed: expected a non-negative integer, got '1e3'" -- \
  "$sdbatch" make-demo-model "$work/never" --seed 1e3
expect 2 "the folder \(DIR\) is required" -- "$sdbatch" make-demo-model --seed 1
expect 2 "unexpected argument 'b'" -- "$sdbatch" make-demo-model a b
expect 2 "the output file \(OUT.h5\) is required" -- "$sdbatch" inspect
expect 2 "unexpected argument 'b.h5'" -- "$sdbatch" inspect a.h5 b.h5
expect 2 "--rows: .*'colour'" -- "$sdbatch" export a.h5 --grid g.png --rows colour
expect 2 "--max-side: expected an integer from 64 to 65535, got '10'" -- \
  "$sdbatch" export a.h5 --grid g.png --max-side 10
expect 2 "nothing to do" -- "$sdbatch" export a.h5
expect 2 "--device: expected auto, cpu or cuda, got 'gpu'" -- "$sdbatch" run job.yaml --device gpu
expect 2 "a job file is required" -- "$sdbatch" run --quiet
expect 2 "--help takes no value" -- "$sdbatch" tokenize --help=yes
expect 0 "--model-config FILE  LDM-style YAML" -- "$sdbatch" tokenize --help
# --name=value, unambiguous prefixes and operands anywhere, as GNU getopt reads them
expect 0 "^49406 320 1125 539" -- "$sdbatch" tokenize --prom="a photo of" --model "$model"
expect 2 "unknown or ambiguous option .--mod." -- "$sdbatch" tokenize --mod "$model" --prompt a
expect 1 "width and height must be positive multiples of 8 \(got 100x64\)" -- \
  "${render[@]}" --prompt "a cat" --width 100 --out "$work/x.png"
expect 0 "" -- "${render[@]}" --prompt "a cat" --width 72 --out "$work/w72.png"
expect 1 "scheduler euler_a has no Karras sigma schedule" -- \
  "${render[@]}" --prompt "a cat" --scheduler euler_a --karras --out "$work/x.png"
expect 1 "invalid UTF-8" -- "${render[@]}" --prompt $'a \xff cat' --out "$work/x.png"
[ ! -e "$work/x.png" ] && passed=$((passed + 1)) || {
  failed=$((failed + 1))
  echo "FAIL: a failed render left $work/x.png"
}

# bad models
expect 1 "$work/nowhere" -- "${render[@]}" --model "$work/nowhere" --prompt "a cat" \
  --out "$work/x.png"
head -c 1000 "$fixtures/tiny-sd1.safetensors" >"$work/truncated.safetensors"
expect 1 "truncated.safetensors" -- "${render[@]}" --model "$work/truncated.safetensors" \
  --prompt "a cat" --out "$work/x.png"
mkdir -p "$work/broken"
cp -r "$model"/. "$work/broken/"
sed -i 's/"cross_attention_dim"/"cross_attention_dimension"/' "$work/broken/unet/config.json"
expect 1 "cross_attention_dim" -- "${render[@]}" --model "$work/broken" --prompt "a cat" \
  --out "$work/x.png"

# good renders: empty and 1000-word prompts, PNG with parameters
expect 0 "" -- "${render[@]}" --prompt "" --out "$work/empty.png"
long_prompt=$(for i in $(seq 1000); do printf 'word%d ' "$i"; done)
expect 0 "" -- "${render[@]}" --prompt "$long_prompt" --out "$work/long.png"
expect 0 "" -- "${render[@]}" --prompt "a red cube" --negative-prompt "blurry" --seed 7 \
  --out "$work/cube.png"
expect 0 "Negative prompt: blurry" -- grep -a "Negative prompt" "$work/cube.png"
expect 0 "Seed: 7, Size: 64x64" -- grep -a "Seed: 7" "$work/cube.png"
# PNG signature, then IHDR: width 64, height 64, bit depth 8, colour type 2 (RGB)
expect 0 "89 50 4e 47 0d 0a 1a 0a 00 00 00 0d 49 48 44 52 00 00 00 40 00 00 00 40 08 02" -- \
  od -An -tx1 -w26 -N26 "$work/cube.png"

# adapters: LoRA and embedding files recorded with their SHA-256; bad ones named in the error
adapters=$fixtures/adapters
kohya_sha=$(sha256sum "$adapters/lora_kohya.safetensors" | cut -d' ' -f1)
style_sha=$(sha256sum "$adapters/style.safetensors" | cut -d' ' -f1)
expect 0 "" -- "${render[@]}" --prompt "a <style> house" --lora "$adapters/lora_kohya.safetensors:0.8" \
  --lora "$adapters/lora_peft.safetensors" --embedding "$adapters/style.safetensors:<style>" \
  --out "$work/adapters.png"
expect 0 "LoRA 1: $adapters/lora_kohya.safetensors, LoRA 1 scale: 0.8, LoRA 1 SHA-256: $kohya_sha" -- \
  grep -a "LoRA 1" "$work/adapters.png"
expect 0 "LoRA 2 scale: 1, LoRA 2 SHA-256" -- grep -a "LoRA 2" "$work/adapters.png"
expect 0 "Embedding 1 token: <style>, Embedding 1 SHA-256: $style_sha" -- \
  grep -a "Embedding 1" "$work/adapters.png"
expect 2 "--lora: the scale after .:. must be a finite number, got .strong." -- \
  "${render[@]}" --prompt "a cat" --lora "$adapters/lora_kohya.safetensors:strong" --out "$work/x.png"
expect 1 "$work/missing.safetensors" -- \
  "${render[@]}" --prompt "a cat" --lora "$work/missing.safetensors" --out "$work/x.png"
expect 0 "loaded in" -- "$sdbatch" bench --model "$model" --device cpu --steps 1 --repeat 1 \
  --width 64 --height 64 --no-pipeline --lora "$adapters/lora_kohya.safetensors:0.5"
expect 1 "pickle" -- \
  "${render[@]}" --prompt "a cat" --embedding "$work/learned_embeds.bin" --out "$work/x.png"
expect 1 "tiny-sd1.safetensors: key .*not a LoRA key" -- \
  "${render[@]}" --prompt "a cat" --lora "$fixtures/tiny-sd1.safetensors:0.5" --out "$work/x.png"

# image-to-image and inpainting (docs/images.md)
images=$fixtures/img2img
expect 2 "--strength needs --init-image" -- "${render[@]}" --prompt "a cat" --strength 0.5 --out x.png
expect 2 "--mask needs --init-image" -- "${render[@]}" --prompt "a cat" --mask "$images/mask-hard.png" \
  --out x.png
expect 2 "--width and --height do not apply" -- \
  "${render[@]}" --prompt "a cat" --init-image "$images/init.png" --out x.png
expect 2 "--strength: expected a number from 0 to 1, got '1.5'" -- \
  "$sdbatch" render --model "$model" --prompt "a cat" --init-image "$images/init.png" \
  --strength 1.5 --out x.png
printf 'not an image\n' >"$work/text.png"
expect 1 "$work/text.png: not a PNG or JPEG file" -- "$sdbatch" render --model "$model" \
  --prompt "a cat" --init-image "$work/text.png" --out "$work/x.png"
head -c 300 "$images/init.jpg" >"$work/cut.jpg"
expect 1 "$work/cut.jpg: truncated JPEG" -- "$sdbatch" render --model "$model" \
  --prompt "a cat" --init-image "$work/cut.jpg" --out "$work/x.png"
expect 1 "needs an init image and a mask" -- "$sdbatch" render --model "$fixtures/tiny-sd1-inpaint" \
  --prompt "a cat" --init-image "$images/init.png" --steps 2 --quiet --out "$work/x.png"
expect 1 "runs no step" -- "$sdbatch" render --model "$model" --prompt "a cat" \
  --init-image "$images/init.png" --strength 0.2 --steps 2 --quiet --out "$work/x.png"
[ ! -e "$work/x.png" ] && passed=$((passed + 1)) || {
  failed=$((failed + 1))
  echo "FAIL: a refused img2img render left $work/x.png"
}
expect 0 "" -- "$sdbatch" render --model "$model" --prompt "a cat" --init-image "$images/init.png" \
  --strength 0.5 --steps 4 --quiet --out "$work/img2img.png"
expect 0 "Pipeline: img2img, Init image: .*init.png \(70x45\), Strength: 0.5" -- \
  grep -a "Pipeline" "$work/img2img.png"
# 70x45 renders at 64x40: IHDR width 64, height 40
expect 0 "00 00 00 40 00 00 00 28 08 02" -- od -An -tx1 -j16 -N10 "$work/img2img.png"
expect 0 "" -- "$sdbatch" render --model "$fixtures/tiny-sd1-inpaint" --prompt "a cat" \
  --init-image "$images/init.jpg" --mask "$images/mask-soft.png" --width 64 --height 40 \
  --steps 2 --quiet --out "$work/inpaint.png"
expect 0 "Pipeline: inpaint.*Strength: 1, Mask: .*mask-soft.png" -- \
  grep -a "Pipeline" "$work/inpaint.png"

# depth-to-image with a given depth map (docs/depth.md)
depth_model=$fixtures/tiny-sd2-depth
expect 2 "--depth-map needs --init-image" -- "$sdbatch" render --model "$depth_model" \
  --prompt "a house" --depth-map "$fixtures/depth2img/depth-a.npy" --out "$work/x.png"
# the depth model without its depth_estimator/: a depth map is needed
mkdir -p "$work/no-estimator"
for part in model_index.json text_encoder tokenizer unet vae scheduler; do
  ln -s "$depth_model/$part" "$work/no-estimator/$part"
done
expect 1 "needs an init image and a depth map" -- "$sdbatch" render --model "$work/no-estimator" \
  --prompt "a house" --init-image "$images/init.png" --steps 2 --quiet --out "$work/x.png"
# with a depth map the model's estimator is never loaded: a broken one does not matter
mkdir -p "$work/broken-estimator/depth_estimator"
for part in model_index.json text_encoder tokenizer unet vae scheduler feature_extractor; do
  ln -s "$depth_model/$part" "$work/broken-estimator/$part"
done
expect 0 "" -- "$sdbatch" render --model "$work/broken-estimator" --prompt "a house" \
  --init-image "$images/init.png" --depth-map "$fixtures/depth2img/depth-a.npy" --steps 2 \
  --quiet --out "$work/broken-estimator.png"
expect 1 "depth_estimator" -- "$sdbatch" render --model "$work/broken-estimator" \
  --prompt "a house" --init-image "$images/init.png" --steps 2 --quiet --out "$work/x.png"
expect 2 "--dpt-preprocess: expected pil or torchvision, got 'PIL'" -- "$sdbatch" render \
  --model "$depth_model" --prompt "a house" --init-image "$images/init.png" --dpt-preprocess PIL \
  --out "$work/x.png"
expect 2 "--dpt-preprocess needs --init-image" -- "$sdbatch" render --model "$depth_model" \
  --prompt "a house" --dpt-preprocess torchvision --out "$work/x.png"
expect 2 "--dpt-preprocess is for the depth estimator; --depth-map is used as is" -- \
  "$sdbatch" render --model "$depth_model" --prompt "a house" --init-image "$images/init.png" \
  --depth-map "$fixtures/depth2img/depth-a.npy" --dpt-preprocess torchvision --out "$work/x.png"
expect 1 "--dpt-preprocess is for depth models" -- "$sdbatch" render --model "$model" \
  --prompt "a house" --init-image "$images/init.png" --dpt-preprocess torchvision --steps 2 \
  --quiet --out "$work/x.png"
expect 1 "a depth map is for depth-to-image models" -- "$sdbatch" render --model "$model" \
  --prompt "a house" --init-image "$images/init.png" --depth-map "$fixtures/depth2img/depth-a.npy" \
  --steps 2 --quiet --out "$work/x.png"
expect 1 "bad_float64.npy" -- "$sdbatch" render --model "$depth_model" --prompt "a house" \
  --init-image "$images/init.png" --depth-map "$fixtures/depth/npy/bad_float64.npy" --steps 2 \
  --quiet --out "$work/x.png"
expect 1 "takes no mask" -- "$sdbatch" render --model "$depth_model" --prompt "a house" \
  --init-image "$images/init.png" --mask "$images/mask-hard.png" --width 64 --height 40 \
  --depth-map "$fixtures/depth2img/depth-a.npy" --steps 2 --quiet --out "$work/x.png"
[ ! -e "$work/x.png" ] && passed=$((passed + 1)) || {
  failed=$((failed + 1))
  echo "FAIL: a refused depth2img render left $work/x.png"
}
expect 0 "" -- "$sdbatch" render --model "$depth_model" --prompt "a house" \
  --init-image "$images/init.png" --depth-map "$fixtures/depth2img/depth-b.npy" --steps 4 \
  --quiet --out "$work/depth.png"
expect 0 "Pipeline: depth2img, Init image: .*init.png \(70x45\), Strength: 0.8, Depth map: .*depth-b.npy" -- \
  grep -a "Pipeline" "$work/depth.png"
expect 0 "00 00 00 40 00 00 00 28 08 02" -- od -An -tx1 -j16 -N10 "$work/depth.png"
expect 0 "" -- "$sdbatch" render --model "$depth_model" --prompt "a house" \
  --init-image "$images/init.jpg" --strength 0.5 --steps 4 --quiet --out "$work/estimated.png"
expect 0 "Pipeline: depth2img, .*Strength: 0.5, Depth map: the model's depth estimator" -- \
  grep -a "Pipeline" "$work/estimated.png"

# the x4 upscaler (docs/depth.md): 18x13 -> 16x12 -> 64x48
upscaler=$fixtures/tiny-upscaler
low=$fixtures/upscale/low-18x13.png
expect 0 "" -- "$sdbatch" render --model "$upscaler" --prompt "a barn" --init-image "$low" \
  --steps 2 --quiet --out "$work/upscaled.png"
expect 0 "Pipeline: upscale, Init image: .*low-18x13.png \(18x13\), Strength: 1, Noise level: 20" -- \
  grep -a "Pipeline" "$work/upscaled.png"
expect 0 "00 00 00 40 00 00 00 30 08 02" -- od -An -tx1 -j16 -N10 "$work/upscaled.png"
expect 1 "noise level 351: this upscaler takes 0 to 350" -- "$sdbatch" render --model "$upscaler" \
  --prompt "a barn" --init-image "$low" --noise-level 351 --steps 2 --quiet --out "$work/x.png"
expect 1 "--noise-level is for x4 upscalers" -- "$sdbatch" render --model "$model" \
  --prompt "a barn" --init-image "$low" --noise-level 20 --steps 2 --quiet --out "$work/x.png"
expect 1 "--strength does not apply" -- "$sdbatch" render --model "$upscaler" --prompt "a barn" \
  --init-image "$low" --strength 0.5 --steps 2 --quiet --out "$work/x.png"
expect 1 "the x4 upscaler takes no mask" -- "$sdbatch" render --model "$upscaler" \
  --prompt "a barn" --init-image "$low" --mask "$images/mask-hard.png" --width 64 --height 48 \
  --steps 2 --quiet --out "$work/x.png"
expect 1 "it needs the low-resolution image" -- "$sdbatch" render --model "$upscaler" \
  --prompt "a barn" --steps 2 --quiet --out "$work/x.png"
[ ! -e "$work/x.png" ] && passed=$((passed + 1)) || {
  failed=$((failed + 1))
  echo "FAIL: a refused upscale left $work/x.png"
}

# bench on image-conditioned models: their stages (the upscaler's UNet with its noise level as
# class label, the depth model's estimator), no text-to-image pipeline stage
expect 0 "depth estimator .*depth_estimator at 64x64" -- "$sdbatch" bench --model "$depth_model" \
  --device cpu --steps 1 --repeat 1 --width 64 --height 64
expect 0 "pipeline      skipped: .*takes 5 input channels" -- "$sdbatch" bench \
  --model "$depth_model" --device cpu --steps 1 --repeat 1 --width 64 --height 64
expect 0 "unet " -- "$sdbatch" bench --model "$upscaler" --device cpu --steps 1 --repeat 1 \
  --width 64 --height 48 --no-pipeline
expect 1 "--only pipeline times text-to-image" -- "$sdbatch" bench --model "$upscaler" \
  --device cpu --steps 1 --repeat 1 --only pipeline

# demo model: refuses a non-empty folder, writes a model that renders
expect 1 "exists and is not an empty folder" -- "$sdbatch" make-demo-model "$work"
expect 0 "its pictures are noise" -- "$sdbatch" make-demo-model "$work/demo"
expect 0 "" -- "$sdbatch" render --model "$work/demo" --prompt "a cat" --steps 2 --quiet \
  --out "$work/demo.png"

# the shapes dataset: the same bytes every time, any range on its own, one caption a picture
expect 0 "wrote 12 pictures of 32x32" -- "$sdbatch" make-shapes "$work/shapes" --count 12 \
  --size 32 --seed 5
expect 0 "wrote 4 pictures" -- "$sdbatch" make-shapes "$work/part" --count 4 --start 8 \
  --size 32 --seed 5
same=1
for i in 08 09 10 11; do cmp -s "$work/shapes/0000$i.png" "$work/part/0000$i.png" || same=0; done
[ "$same" = 1 ] && [ "$(wc -l <"$work/shapes/metadata.jsonl")" = 12 ] &&
  grep -q '^{"file_name": "000011.png", "text": "[a-z][a-z ,:]*"}$' "$work/shapes/metadata.jsonl" &&
  passed=$((passed + 1)) || {
  failed=$((failed + 1))
  echo "FAIL: make-shapes: a range differs from the whole, or metadata.jsonl is not one line a picture"
}
expect 2 "--size: expected an integer from 16" -- "$sdbatch" make-shapes "$work/x" --size 8

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
