#!/usr/bin/env bash
# sdbatch run on 1, 2 and 4 ranks with different batch sizes: every item's image and latents are
# the same byte for byte whatever the rank count and whatever batch the item lands in, and equal
# `sdbatch render` with the same parameters. Also: a rerun of a finished job renders nothing;
# items with NaN output are marked failed and the run ends with status 3; the null model gives
# each item its pattern.
# Usage: test_run_ranks.sh SDBATCH RUN_CHECK SOURCE_DIR [MPIEXEC]
SDBATCH=$1 RUN_CHECK=$2 SOURCE_DIR=$3 MPIEXEC=${4:-}
source "$SOURCE_DIR/tests/run_test_lib.sh"

# 2 schedulers x 2 prompts x 3 seeds x 2 guidance scales = 24 items; index order: scheduler,
# prompt, seed, guidance (the last fastest)
sweep=('prompts: ["a red cube", "a blue sphere on grass"]' 'seeds: [7, 8, 9]' 'steps: 3'
       'guidance_scale: [1.0, 7.5]' 'scheduler: [ddim, euler]' 'save_latents: true')

write_job ref.yaml ref.h5 "${sweep[@]}" 'batch_size: 1'
expect_status 0 "1 rank, batches of 1" launch 1 run --quiet ref.yaml
check "reference file complete" "$RUN_CHECK" counts ref.h5 24 0 0

ranks=(1)
have_mpi && ranks+=(2 4)
for n in "${ranks[@]}"; do
  batch=$((6 - n)) # 5, 4 and 2 items a batch: the items land in different batches each time
  write_job "r$n.yaml" "r$n.h5" "${sweep[@]}" "batch_size: $batch"
  expect_status 0 "$n ranks, batches of $batch" launch "$n" run --quiet "r$n.yaml"
  check "$n ranks equal the reference" "$RUN_CHECK" same ref.h5 "r$n.h5"
done
last=r${ranks[-1]}.h5

# items 0 (ddim, "a red cube", seed 7, 1.0) and 23 (euler, "a blue sphere on grass", seed 9, 7.5)
render() {
  "$SDBATCH" render --model "$FIXTURE_MODEL" --width 64 --height 64 --steps 3 --device cpu \
    --quiet "$@"
}
render --prompt "a red cube" --seed 7 --guidance-scale 1.0 --scheduler ddim --out item0.png
render --prompt "a blue sphere on grass" --seed 9 --guidance-scale 7.5 --scheduler euler \
  --out item23.png
check "item 0 equals sdbatch render" "$RUN_CHECK" png "$last" 0 item0.png
check "item 23 equals sdbatch render" "$RUN_CHECK" png "$last" 23 item23.png

# a finished job: nothing to render, status 0
n=${ranks[-1]}
expect_status 0 "rerun of a finished job" launch "$n" run "r$n.yaml" 2>rerun.log
check "rerun renders nothing" grep -q "are done already" rerun.log

# a guidance scale of 1e38 overflows to NaN: those items fail with a reason, the others are done
write_job nan.yaml nan.h5 'prompts: "a cat"' 'seeds: [1, 2]' 'steps: 3' 'scheduler: ddim' \
  'guidance_scale: [7.5, 1e38]' 'batch_size: 4'
expect_status 3 "items with NaN output" launch "$n" run nan.yaml 2>nan.log
check "NaN items failed, the others done" "$RUN_CHECK" counts nan.h5 2 2 0
check "failure reason reported" grep -q "item 1 failed.*non-finite" nan.log
check "a new output's creation is announced with its size" \
  grep -q "creating .*nan.h5 (schema 3, 4 items, about .*, written in full now)" nan.log
check "a finished output is not created again" test "$(grep -c "creating" rerun.log)" -eq 0

# the null model: 300 items at the coordinator's speed, each its index's pattern
write_job null.yaml null.h5 'prompts: ["a", "b", "c"]' 'seeds: {start: 0, count: 100}' \
  'steps: 1' 'batch_size: 7' 'save_latents: true'
expect_status 0 "null model" launch "$n" run --quiet --null-model null.yaml
check "null model items complete" "$RUN_CHECK" counts null.h5 300 0 0
check "null model patterns" "$RUN_CHECK" null null.h5

finish
