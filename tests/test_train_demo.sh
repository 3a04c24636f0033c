#!/usr/bin/env bash
# sdbatch train-demo --quick (docs/demo-model.md):
#  - the losses fall: the mean loss of the last 10 % of steps is below that of the first 10 %,
#    for the VAE by at least 10 % and for the UNet by at least a fifth (its v-prediction loss
#    starts near E[v^2] = 1 and falls to about 0.71 x in these 40 steps; an epsilon loss falls
#    faster at first, since predicting the noise of a mostly-noise input is easy);
#  - crash safety: a run killed with SIGKILL at random moments and resumed with --resume each
#    time ends with the same weight files and loss logs, byte for byte, as an uninterrupted run;
#  - the model renders with `sdbatch render` at 64 x 64 and holds fp16 weights only;
#  - the text encoder trains with the UNet (its file differs from the untrained model's, its
#    gradient norm is logged, every step's finite); with --text-encoder-learning-rate 0
#    --caption-templates 5 (the first shipped recipe) it stays the untrained model's file, the
#    recipe is written without those keys and the log without the encoder's column;
#  - refusals: a folder holding files without --resume, a resume with another recipe, a bad
#    option: one error each, and the run's files untouched (as by a resume of a finished run).
# Usage: test_train_demo.sh SDBATCH
set -euo pipefail
SDBATCH=$(readlink -f "$1")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sdbatch-train-demo.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
export OMP_WAIT_POLICY=passive
FAILURES=0
note() { echo "test: $*"; }
fail() {
  echo "test: FAIL: $*" >&2
  FAILURES=$((FAILURES + 1))
}

note "an uninterrupted quick run"
"$SDBATCH" train-demo whole --quick --threads 2 2> whole.log || {
  cat whole.log
  fail "the quick run failed"
  exit 1
}
tail -7 whole.log

# mean_loss CSV FIRST|LAST: the mean of column 2 over the first or last 10 % of the steps
mean_loss() {
  awk -F, -v part="$2" 'NR > 1 { loss[NR - 1] = $2; n = NR - 1 }
    END { w = int(n / 10); if (w < 1) w = 1; s = 0;
          for (i = 1; i <= w; i++) s += (part == "first") ? loss[i] : loss[n - w + i];
          printf "%.6f", s / w }' "$1"
}
for phase in vae unet; do
  csv=whole/train/loss-$phase.csv
  first=$(mean_loss "$csv" first)
  last=$(mean_loss "$csv" last)
  ratio=$([ $phase = vae ] && echo 0.9 || echo 0.8)
  note "$phase loss: first 10 % $first, last 10 % $last (must be below $ratio x first)"
  awk -v a="$first" -v b="$last" -v r="$ratio" 'BEGIN { exit !(b < r * a) }' ||
    fail "$phase: the loss did not fall enough ($first -> $last)"
  steps=$(($(wc -l < "$csv") - 1))
  [ "$steps" = 40 ] || fail "$phase: $steps lines in $csv, expected 40"
done

note "the model renders"
"$SDBATCH" render --model whole/model --prompt "a red circle on a white background" \
  --steps 4 --out red.png --quiet || fail "render of the trained model failed"
python3 - red.png << 'PY' || fail "red.png is not a 64 x 64 RGB PNG"
import struct, sys
head = open(sys.argv[1], "rb").read(32)
assert head[:8] == b"\x89PNG\r\n\x1a\n"
w, h, depth, color = struct.unpack(">IIBB", head[16:26])
assert (w, h, depth, color) == (64, 64, 8, 2), (w, h, depth, color)
PY
for f in whole/model/unet/diffusion_pytorch_model.safetensors \
  whole/model/vae/diffusion_pytorch_model.safetensors; do
  python3 - "$f" << 'PY' || fail "$f: not all fp16"
import json, struct, sys
data = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", data[:8])[0]
header = json.loads(data[8:8 + n])
dtypes = {v["dtype"] for k, v in header.items() if k != "__metadata__"}
assert dtypes == {"F16"}, dtypes
PY
done
grep -q '"scaling_factor"' whole/model/vae/config.json || fail "no scaling_factor in vae config"

note "killed at random moments and resumed"
RANDOM=11
kills=0
status=1
args=(train-demo killed --quick --threads 2 --quiet)
while [ $status -ne 0 ]; do
  "$SDBATCH" "${args[@]}" 2> killed.log &
  pid=$!
  # later and later: each resume must get past its start and a few steps to progress
  sleep "$((2 + kills / 2 + RANDOM % 4)).$((RANDOM % 10))"
  if kill -KILL $pid 2> /dev/null; then
    kills=$((kills + 1))
    wait $pid || true
  else
    wait $pid && status=0 || {
      cat killed.log
      fail "a resumed run failed"
      break
    }
  fi
  args=(train-demo killed --quick --threads 2 --quiet --resume)
  [ $kills -lt 40 ] || {
    fail "no end after 40 kills"
    break
  }
done
note "$kills kills"
[ $kills -ge 1 ] || fail "the run was never killed (it ended within the first sleep)"
for f in model/unet/diffusion_pytorch_model.safetensors model/vae/diffusion_pytorch_model.safetensors \
  model/text_encoder/model.safetensors model/vae/config.json train/loss-vae.csv train/loss-unet.csv train/sha256.txt; do
  cmp -s "whole/$f" "killed/$f" || fail "$f differs between the uninterrupted and the killed run"
done
[ -z "$(find killed -name '*.tmp*')" ] || fail "temporary files left: $(find killed -name '*.tmp*')"

note "the text encoder trains with the UNet; frozen with the first recipe's options"
cmp -s whole/model/text_encoder/model.safetensors whole/train/init/text_encoder/model.safetensors &&
  fail "the trained text encoder is the untrained model's"
head -1 whole/train/loss-unet.csv | grep -q ',text_encoder_grad_norm$' ||
  fail "loss-unet.csv has no text_encoder_grad_norm column: $(head -1 whole/train/loss-unet.csv)"
awk -F, 'NR > 1 && !($5 > 0 && $5 < 1e30) { bad++ } END { exit bad > 0 }' \
  whole/train/loss-unet.csv || fail "a text encoder gradient norm is not finite and positive"
"$SDBATCH" train-demo frozen --quick --threads 2 --quiet --vae-steps 2 --unet-steps 2 \
  --text-encoder-learning-rate 0 --caption-templates 5 || fail "the frozen-encoder run failed"
cmp -s frozen/model/text_encoder/model.safetensors frozen/train/init/text_encoder/model.safetensors ||
  fail "the frozen text encoder changed"
grep -q 'text_encoder\|caption_templates' frozen/train/recipe.json &&
  fail "the first recipe's recipe.json names the new keys: $(cat frozen/train/recipe.json)"
[ "$(head -1 frozen/train/loss-unet.csv)" = "step,loss,grad_norm,learning_rate" ] ||
  fail "the frozen run's log header: $(head -1 frozen/train/loss-unet.csv)"

# refused EXPECTED_STATUS PATTERN ARGS...: one error line matching PATTERN
refused() {
  local want=$1 pattern=$2
  shift 2
  local got=0
  "$SDBATCH" "$@" > out.txt 2> err.txt || got=$?
  [ "$got" = "$want" ] || fail "$*: exit status $got, expected $want"
  grep -q -- "$pattern" err.txt || fail "$*: no error matching '$pattern': $(cat err.txt)"
}
note "refusals"
before=$(cd whole && find . -type f -exec sha256sum {} + | sort | sha256sum)
refused 1 "already holds files; continue its run with --resume" train-demo whole --quick --quiet
refused 1 "started with another recipe" train-demo whole --quick --seed 2 --resume --quiet
"$SDBATCH" train-demo whole --quick --resume 2> again.log || fail "resuming a finished run failed"
# its summary reads the losses back from the logs: the same as the run's own
summary() { grep -o 'VAE loss .*' "$1"; }
[ -n "$(summary whole.log)" ] && [ "$(summary whole.log)" = "$(summary again.log)" ] ||
  fail "a finished run resumed reports '$(summary again.log)', the run itself '$(summary whole.log)'"
refused 2 "seed" train-demo fresh --seed x
refused 2 "the output folder (DIR) is required" train-demo --quick
after=$(cd whole && find . -type f -exec sha256sum {} + | sort | sha256sum)
[ "$before" = "$after" ] || fail "a refused run changed the run's files"
[ ! -e fresh ] || fail "a refused run made its folder"

if [ $FAILURES -ne 0 ]; then
  echo "test_train_demo: $FAILURES failure(s)" >&2
  exit 1
fi
echo "test_train_demo: all checks passed"
