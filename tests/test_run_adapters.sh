#!/usr/bin/env bash
# sdbatch run with adapters: a job sweeping a LoRA's scale (with a second LoRA and a three-vector
# embedding) on 3 ranks gives, item for item, the bytes of `sdbatch render` with the same
# adapters; the output records the files' SHA-256; a resume refuses once an adapter file changed;
# a LoRA that does not fit the model stops the job before the output exists.
# Usage: test_run_adapters.sh SDBATCH RUN_CHECK SOURCE_DIR [MPIEXEC]
SDBATCH=$1 RUN_CHECK=$2 SOURCE_DIR=$3 MPIEXEC=${4:-}
source "$SOURCE_DIR/tests/run_test_lib.sh"

ADAPTERS="$SOURCE_DIR/tests/fixtures/adapters"
cp "$ADAPTERS/lora_kohya.safetensors" kohya.safetensors
cp "$ADAPTERS/lora_peft.safetensors" peft.safetensors
cp "$ADAPTERS/style.safetensors" style.safetensors

# 3 kohya scales x 2 seeds = 6 items; the LoRA set is the outermost index:
# item 0 (scale 0, seed 3), 1 (0, 4), 2 (0.5, 3), 3 (0.5, 4), 4 (-0.8, 3), 5 (-0.8, 4)
sweep=('prompts: "a <style> house"' 'seeds: [3, 4]' 'steps: 2' 'scheduler: ddim'
       'loras:' '  - {file: kohya.safetensors, scale: [0.0, 0.5, -0.8]}' '  - peft.safetensors'
       'embeddings:' '  - {file: style.safetensors, token: "<style>"}' 'batch_size: 2')
n=1
have_mpi && n=3
write_job job.yaml out.h5 "${sweep[@]}"
expect_status 0 "$n ranks, LoRA scale sweep" launch "$n" run --quiet job.yaml
check "all items done" "$RUN_CHECK" counts out.h5 6 0 0

# render SCALE SEED OUT: the LoRAs in the job's order (the order of the merges sets the rounding)
render() {
  "$SDBATCH" render --model "$FIXTURE_MODEL" --width 64 --height 64 --steps 2 --scheduler ddim \
    --device cpu --quiet --prompt "a <style> house" --lora "kohya.safetensors:$1" \
    --lora peft.safetensors --embedding "style.safetensors:<style>" --seed "$2" --out "$3"
}
render 0 3 item0.png
render 0.5 4 item3.png
render -0.8 3 item4.png
check "item 0 equals sdbatch render" "$RUN_CHECK" png out.h5 0 item0.png
check "item 3 equals sdbatch render" "$RUN_CHECK" png out.h5 3 item3.png
check "item 4 equals sdbatch render" "$RUN_CHECK" png out.h5 4 item4.png

kohya_sha=$(sha256sum kohya.safetensors | cut -d' ' -f1)
"$SDBATCH" inspect out.h5 >inspect.txt
check "the output records the adapters' SHA-256" \
  grep -q "adapters .*kohya.safetensors.*$kohya_sha.*scales.*0.5,-0.8" inspect.txt

# the same job after an adapter file changed: refused, the output untouched
cp out.h5 before.h5
cp "$ADAPTERS/lora_old.safetensors" peft.safetensors
expect_status 1 "resume after an adapter changed" launch 1 run --quiet job.yaml 2>changed.log
check "refusal names the adapters" grep -q "adapter file changed" changed.log
check "output untouched" cmp -s out.h5 before.h5

# a LoRA for another architecture: stopped before any output
cp "$ADAPTERS/lora_kohya.safetensors" peft.safetensors
write_job bad.yaml bad.h5 'prompts: "a cat"' 'seeds: 1' 'steps: 2' 'loras:' \
  "  - $FIXTURE_MODEL.safetensors"
expect_status 1 "LoRA that is a whole checkpoint" launch 1 run --quiet bad.yaml 2>bad.log
check "error names the file and key" grep -q "tiny-sd1.safetensors: key .*not a LoRA key" bad.log
check "no output written" test ! -e bad.h5

finish
