#!/usr/bin/env bash
# sdbatch convert: the tiny SD 1.x, SD 2.x and x4 upscaler folders written as original single
# files load in diffusers' from_single_file (StableDiffusionPipeline, StableDiffusionUpscalePipeline;
# config= the folder) with every tensor equal to the folder's, and render the folder's pixels there
# (tests/reference/check_single_file.py); sdbatch renders the same pixels from the single file (with
# the fixture's LDM YAML) as from the folder (SD 1.x: 20 DDIM steps; the upscaler: 4 steps of a
# 16x12 image, exact); bad arguments give one error and no file. Skipped (77) where Python, torch,
# diffusers or PIL are missing.
# Usage: test_convert_cmd.sh SDBATCH SOURCE_DIR
set -euo pipefail
SDBATCH=$(readlink -f "$1")
SOURCE_DIR=$(readlink -f "$2")
FIXTURES=$SOURCE_DIR/tests/fixtures
if ! python3 -c "import torch, diffusers, transformers, PIL" 2> /dev/null; then
  echo "test: skipped: python3 with torch, diffusers, transformers and PIL is needed"
  exit 77
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sdbatch-convert.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
export OMP_NUM_THREADS=1
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# The same pixels (PNG metadata names the model, so the files differ).
same_pixels() {
  python3 "$SOURCE_DIR/tests/reference/same_pixels.py" "$1" "$2"
}

for family in sd1 sd2 upscaler; do
  "$SDBATCH" convert --model "$FIXTURES/tiny-$family" --output "tiny-$family.safetensors"
  python3 "$SOURCE_DIR/tests/reference/check_single_file.py" "tiny-$family.safetensors" \
    "$FIXTURES/tiny-$family" --render || fail "$family: diffusers' from_single_file disagrees"
done

# sdbatch from the single file = sdbatch from the folder (SD 1.x: the fixture's YAML gives the
# heads the tiny shapes cannot tell)
render=(--prompt "a red circle" --steps 20 --seed 3 --scheduler ddim --threads 2)
"$SDBATCH" render --model "$FIXTURES/tiny-sd1" "${render[@]}" --out folder.png > /dev/null
"$SDBATCH" render --model tiny-sd1.safetensors --model-config "$FIXTURES/tiny-sd1.yaml" \
  "${render[@]}" --out single.png > /dev/null
same_pixels folder.png single.png || fail "sdbatch renders the single file differently"

# The x4 upscaler likewise (its YAML gives the heads, groups and only_cross_attention of level 0,
# which the tiny shapes cannot tell)
upscale=(--prompt "a red barn" --init-image "$FIXTURES/upscale/low-16x12.png" --noise-level 20
  --steps 4 --seed 5 --threads 2)
"$SDBATCH" render --model "$FIXTURES/tiny-upscaler" "${upscale[@]}" --out up-folder.png > /dev/null
"$SDBATCH" render --model tiny-upscaler.safetensors --model-config "$FIXTURES/tiny-upscaler.yaml" \
  "${upscale[@]}" --out up-single.png > /dev/null
same_pixels up-folder.png up-single.png || fail "sdbatch upscales with the single file differently"
"$SDBATCH" convert --model tiny-upscaler.safetensors --model-config \
  "$FIXTURES/tiny-upscaler.yaml" --output up-again.safetensors
cmp tiny-upscaler.safetensors up-again.safetensors || fail "a second upscaler conversion differs"

# A converted single file converts again to the same bytes.
"$SDBATCH" convert --model tiny-sd1.safetensors --model-config "$FIXTURES/tiny-sd1.yaml" \
  --output again.safetensors
cmp tiny-sd1.safetensors again.safetensors || fail "a second conversion differs"

# Bad arguments: one error line, exit status 1 or 2, no file written.
refused() {
  local want=$1 status=0
  shift
  "$SDBATCH" convert "$@" > out.txt 2> err.txt || status=$?
  [ "$status" = 1 ] || [ "$status" = 2 ] || fail "convert $*: exit status $status"
  grep -q -- "$want" err.txt || fail "convert $*: expected '$want' in: $(cat err.txt)"
}
refused "exists" --model "$FIXTURES/tiny-sd1" --output tiny-sd1.safetensors
refused "must end in .safetensors" --model "$FIXTURES/tiny-sd1" --output model.ckpt
refused "no-such-folder" --model no-such-folder --output x.safetensors
refused "output" --model "$FIXTURES/tiny-sd1"
mkdir -p missing-dir
refused "cannot" --model "$FIXTURES/tiny-sd1" --output missing-dir/nope/x.safetensors
[ ! -e x.safetensors ] && [ ! -e model.ckpt ] || fail "a refused conversion left a file"
ls missing-dir | grep -q . && fail "a failed write left a temporary file"
echo "test_convert_cmd: ok"
