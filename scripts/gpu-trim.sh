#!/usr/bin/env bash
# The device tool sends the working tree (tracked and untracked files, carried paths) only when it
# is under 64 MiB, and the tree is more than that, mostly test fixtures the GPU checks never read
# (the gpu tests read tests/fixtures/tiny-sd{1,2}/ and stages-sd{1,2}.safetensors). Run here
# before the device call and after it:
#
#   scripts/gpu-trim.sh out     # moves the other big fixtures to $SDBATCH_TRIM_DIR
#   ... run(command="bash scripts/gpu-check.sh", carry=[".devcarry"]) ...
#   scripts/gpu-trim.sh back    # puts them back (git status is clean again)
#
# `out` refuses when something is already moved out; `back` refuses to overwrite. Prints the
# bytes that will travel (tracked files present + .devcarry).
set -euo pipefail
cd "$(dirname "$0")/.."
stash=${SDBATCH_TRIM_DIR:-/tmp/sdbatch-gpu-trim}
paths=(tests/fixtures/tiny-sd1.safetensors tests/fixtures/tiny-sd2.safetensors
  tests/fixtures/unet-train-sd1.safetensors tests/fixtures/unet-train-sd2.safetensors
  tests/fixtures/unet-grad-sd1.safetensors tests/fixtures/unet-grad-sd2.safetensors
  tests/fixtures/clip-grad-sd1.safetensors tests/fixtures/clip-grad-sd2.safetensors
  tests/fixtures/upscaler-unet tests/fixtures/upscaler-vae tests/fixtures/tiny-upscaler
  tests/fixtures/adapters tests/fixtures/depth tests/fixtures/tiny-sd1-inpaint
  tests/fixtures/tiny-sd2-depth tests/fixtures/output)

travelling() {
  local tracked carry=0
  tracked=$(git ls-files -z | xargs -0 du -cb 2> /dev/null | tail -n 1 | cut -f 1 || true)
  [ -d .devcarry ] && carry=$(du -sb .devcarry | cut -f 1)
  echo "gpu-trim: $((tracked + carry)) bytes travel (tracked $tracked + .devcarry $carry; limit $((64 << 20)))"
}

case "${1:-}" in
  out)
    if [ -e "$stash" ]; then
      echo "gpu-trim: $stash exists (already trimmed?): run '$0 back' first" >&2
      exit 1
    fi
    for p in "${paths[@]}"; do
      [ -e "$p" ] || [ -L "$p" ] || continue
      mkdir -p "$stash/$(dirname "$p")"
      mv "$p" "$stash/$p"
    done
    travelling
    ;;
  back)
    [ -d "$stash" ] || { echo "gpu-trim: nothing to put back ($stash absent)"; exit 0; }
    for p in "${paths[@]}"; do
      [ -e "$stash/$p" ] || [ -L "$stash/$p" ] || continue
      if [ -e "$p" ] || [ -L "$p" ]; then
        echo "gpu-trim: $p exists here and in $stash: not overwritten" >&2
        exit 1
      fi
      mv "$stash/$p" "$p"
    done
    rm -rf "$stash"
    git status --short -- tests/fixtures
    travelling
    ;;
  *)
    echo "usage: $0 out|back" >&2
    exit 2
    ;;
esac
