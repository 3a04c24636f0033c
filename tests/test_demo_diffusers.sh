#!/usr/bin/env bash
# The demo model in diffusers (docs/demo-model.md): StableDiffusionPipeline.from_pretrained(folder)
# as users load it (no dtype given) renders the same pixels as `sdbatch render --rng cpu` for the
# same prompts, seeds and settings: at most 1 level apart, at least 99.9 % exact, as the other
# parity tests. On a model from `sdbatch train-demo --quick` (the architecture and the written
# folder) and on the shipped models/shapes-demo when it exists. Skipped (77) without python3,
# torch, diffusers and transformers.
# Usage: test_demo_diffusers.sh SDBATCH SOURCE_DIR
set -euo pipefail
SDBATCH=$(readlink -f "$1")
SOURCE_DIR=$(readlink -f "$2")
if ! python3 -c "import torch, diffusers, transformers, PIL" 2> /dev/null; then
  echo "test: skipped: python3 with torch, diffusers, transformers and PIL is needed"
  exit 77
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sdbatch-demo-diffusers.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
export OMP_WAIT_POLICY=passive
FAILURES=0

"$SDBATCH" train-demo quick --quick --quiet
models=(quick/model)
[ -d "$SOURCE_DIR/models/shapes-demo" ] && models+=("$SOURCE_DIR/models/shapes-demo")

# prompt|seed|steps|guidance|scheduler
cases=("a red circle|0|20|7.5|" "a small blue star in the top left corner|3|12|4|euler"
  "|5|8|1|ddim")
for model in "${models[@]}"; do
  n=0
  for c in "${cases[@]}"; do
    IFS='|' read -r prompt seed steps guidance scheduler <<< "$c"
    extra=()
    [ -n "$scheduler" ] && extra=(--scheduler "$scheduler")
    "$SDBATCH" render --model "$model" --prompt "$prompt" --seed "$seed" --steps "$steps" \
      --guidance-scale "$guidance" --rng cpu --out "sdbatch-$n.png" --quiet "${extra[@]}"
    n=$((n + 1))
  done
  python3 - "$model" "${cases[@]}" << 'PY' || FAILURES=$((FAILURES + 1))
import sys, warnings
warnings.filterwarnings("ignore")
import numpy as np, torch
from PIL import Image
from diffusers import StableDiffusionPipeline, EulerDiscreteScheduler, DDIMScheduler
from diffusers.utils import logging
logging.set_verbosity_error()
model = sys.argv[1]
pipe = StableDiffusionPipeline.from_pretrained(model, safety_checker=None, requires_safety_checker=False)
pipe.set_progress_bar_config(disable=True)
default = pipe.scheduler
failures = 0
for n, case in enumerate(sys.argv[2:]):
    prompt, seed, steps, guidance, scheduler = case.split("|")
    pipe.scheduler = {"": default, "euler": EulerDiscreteScheduler.from_config(default.config),
                      "ddim": DDIMScheduler.from_config(default.config)}[scheduler]
    image = pipe(prompt, num_inference_steps=int(steps), guidance_scale=float(guidance),
                 generator=torch.Generator().manual_seed(int(seed))).images[0]
    want = np.asarray(image).astype(int)
    got = np.asarray(Image.open(f"sdbatch-{n}.png").convert("RGB")).astype(int)
    diff = np.abs(want - got)
    exact = (diff == 0).mean()
    ok = want.shape == got.shape and diff.max() <= 1 and exact >= 0.999
    failures += not ok
    print(f"test: {model.split('/')[-2] if model.endswith('/model') else model.split('/')[-1]}: "
          f"'{prompt}' seed {seed}, {steps} steps, guidance {guidance} {scheduler or 'default'}: "
          f"{got.shape}, max diff {diff.max()}, {100 * exact:.2f} % exact {'ok' if ok else 'FAIL'}")
sys.exit(1 if failures else 0)
PY
done
if [ $FAILURES -ne 0 ]; then
  echo "test_demo_diffusers: $FAILURES model(s) differ" >&2
  exit 1
fi
echo "test_demo_diffusers: all checks passed"
