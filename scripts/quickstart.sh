#!/usr/bin/env bash
# The quick start: installs what is missing, builds, writes the random-weight demo model and
# renders with it. The demo model's pictures are noise; see README.md for real checkpoints.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
mkdir -p out
[ -d out/demo-model ] || build/sdbatch make-demo-model out/demo-model
build/sdbatch render --model out/demo-model --prompt "a photo of an astronaut riding a horse" \
  --seed 42 --steps 20 --out out/demo.png
echo "quickstart: wrote $(pwd)/out/demo.png"
