#!/usr/bin/env bash
# sdbatch run with rank groups (the job's ranks_per_image and cfg_parallel, docs/spatial.md):
#  - ranks_per_image: 2 on 5 ranks (2 groups of 2 bands) against the same job on 1 process:
#    every pixel within 1 level, >= 99.9 % exact (test_spatial_render's criterion);
#  - cfg_parallel with 2 ranks per image: bit for bit the one-process file; 4 ranks per image in
#    CFG halves of 2 bands: within the same tolerance;
#  - 6 ranks (one idle) with the null model: every item its pattern; too few ranks: refused
#    before the output file exists;
#  - faults: a group member, then a group leader, stopped (SIGSTOP) mid-image: after the group's
#    timeout its batch fails with the communicator's reason and goes to the other group, which
#    finishes the job (exit 0, every item done, no rerun needed); a member SIGKILLed
#    mid-run: Open MPI ends the whole run, the file stays readable, no done item goes back, and
#    the rerun completes it. Each faulted file ends equal, byte for byte, to an uninterrupted
#    grouped run. SIGTERM to the group members alone stops the run cleanly (143).
# Without MPI: only the refusal in a one-process world.
# Usage: test_run_groups.sh SDBATCH RUN_CHECK SOURCE_DIR [MPIEXEC]
SDBATCH=$1 RUN_CHECK=$2 SOURCE_DIR=$3 MPIEXEC=${4:-}
source "$SOURCE_DIR/tests/run_test_lib.sh"

scale=${SD_TEST_TIME_SCALE:-1}

# 2 prompts x 3 seeds x 2 guidance scales = 12 items of 64 x 80 (latent 8 x 10: the UNet's
# levels are 10, 5 and 3 rows high, so bands meet odd heights)
sweep=('prompts: ["a red cube", "a blue sphere on grass"]' 'seeds: [7, 8, 9]' 'steps: 3'
       'guidance_scale: [1.0, 7.5]' 'scheduler: euler' 'save_latents: true' 'batch_size: 2')
write_job ref.yaml ref.h5 "${sweep[@]}"
sed -i 's/^height: 64$/height: 80/' ref.yaml

# the same job with more keys: job NAME OUTPUT LINES...
job() {
  local name=$1 output=$2
  shift 2
  sed "s|^output: .*|output: $output|" ref.yaml >"$name"
  for line in "$@"; do echo "$line" >>"$name"; done
}

job refused.yaml refused.h5 'ranks_per_image: 2'
expect_status 1 "ranks_per_image 2 in one process" "$SDBATCH" run refused.yaml 2>refused.log
check "one process: refused with the ranks it needs" \
  grep -q "ranks_per_image: 2 needs at least 2 worker ranks besides rank 0 (mpirun -n 3 or more); this run has 0" \
  refused.log
check "one process: no output file" test ! -e refused.h5
if ! have_mpi; then
  note "built without MPI: the group runs are skipped"
  finish
  exit 0
fi

expect_status 0 "1 process" launch 1 run --quiet ref.yaml
check "reference complete" "$RUN_CHECK" counts ref.h5 12 0 0

expect_status 1 "ranks_per_image 2 on 2 ranks" launch 2 run refused.yaml 2>refused2.log
check "2 ranks: refused" grep -q "needs at least 2 worker ranks.*this run has 1" refused2.log
check "2 ranks: no output file" test ! -e refused.h5

job g2.yaml g2.h5 'ranks_per_image: 2'
expect_status 0 "ranks_per_image 2 on 5 ranks" launch 5 run g2.yaml 2>g2.log
check "5 ranks: 2 groups of 2 (rank 0 coordinates)" \
  grep -q "12 items to render on 2 groups of 2 ranks (ranks 1-2, ranks 3-4)" g2.log
check "5 ranks: the groups render in 2 bands" grep -q "group of ranks 3-4: 2 bands" g2.log
check "5 ranks: only the leaders return items" grep -q "per rank: 1:[0-9]* 2:0 3:[0-9]* 4:0" g2.log
check "5 ranks: within 1 level of one process, >= 99.9 % exact" \
  "$RUN_CHECK" close ref.h5 g2.h5 1 99.9

job cfg.yaml cfg.h5 'ranks_per_image: 2' 'cfg_parallel: true'
expect_status 0 "cfg_parallel on 5 ranks" launch 5 run cfg.yaml 2>cfg.log
check "cfg_parallel: groups of CFG halves" grep -q "group of ranks 1-2: CFG halves of 1 band" cfg.log
check "cfg_parallel: bit for bit one process" "$RUN_CHECK" same ref.h5 cfg.h5

job c4.yaml c4.h5 'ranks_per_image: 4' 'cfg_parallel: true'
expect_status 0 "4 per image in CFG halves on 5 ranks" launch 5 run c4.yaml 2>c4.log
check "4 per image: one group" grep -q "group of ranks 1-4: CFG halves of 2 bands" c4.log
check "4 per image: within 1 level, >= 99.9 % exact" "$RUN_CHECK" close ref.h5 c4.h5 1 99.9

# 6 ranks: 5 workers make 2 groups and leave rank 5 idle; the null model at the coordinator's
# speed (300 items, batches of 7)
write_job null.yaml null.h5 'prompts: ["a", "b", "c"]' 'seeds: {start: 0, count: 100}' \
  'steps: 1' 'batch_size: 7' 'save_latents: true' 'ranks_per_image: 2'
expect_status 0 "null model on 6 ranks" launch 6 run --null-model null.yaml 2>null.log
check "6 ranks: rank 5 idle" grep -q "(ranks 1-2, ranks 3-4); 1 rank in no group, idle" null.log
check "6 ranks: every item done" "$RUN_CHECK" counts null.h5 300 0 0
check "6 ranks: every item its pattern" "$RUN_CHECK" null null.h5

# ---- faults ----
# 3 prompts x 12 seeds, 8 steps: a few seconds on 2 groups, long enough to stop a rank mid-run
fault=('prompts: ["a lighthouse", "a red barn", "a tall ship"]' 'seeds: {start: 0, count: 12}'
       'steps: 8' 'save_latents: true' 'batch_size: 2' 'ranks_per_image: 2')
total=36
write_job faultref.yaml faultref.h5 "${fault[@]}"
expect_status 0 "uninterrupted grouped run" launch 5 run --quiet faultref.yaml
timeout=$((2 * scale))

# start_fault OUTPUT: `sdbatch run` of the fault job into OUTPUT on 5 ranks in the background
start_fault() {
  write_job "$1.yaml" "$1.h5" "${fault[@]}"
  "$MPIEXEC" --oversubscribe -n 5 "$SDBATCH" run --group-timeout "$timeout" "$1.yaml" \
    2>"$1.log" &
  launcher=$!
}

# wait_done FILE TARGET: until FILE has TARGET items done (or the run ended, or 60 s)
wait_done() {
  local tries=0
  while kill -0 "$launcher" 2>/dev/null && [ "$(done_count "$1")" -lt "$2" ] &&
    [ "$tries" -lt 3000 ]; do
    sleep 0.02
    tries=$((tries + 1))
  done
}

# stop_round NAME RANK: SIGSTOP the rank after 6 items, SIGCONT it after the group's timeout
# has passed and the loss has been reported. The lost batch fails with the communicator's
# reason and is handed to the other group (which is told to wait rather than stop while a group
# still renders), so the job finishes: exit 0, every item done, the file equal to the
# uninterrupted run; the run ends with MPI_Abort(0) since a rank was lost.
stop_round() {
  local name=$1 rank=$2 pid status=0
  start_fault "$name"
  wait_done "$name.h5" 6
  pid=$(rank_pid "$launcher" "$rank")
  if [ -z "$pid" ] || ! kill -0 "$launcher" 2>/dev/null; then
    fail "$name: the run ended before rank $rank could be stopped"
    wait "$launcher" || true
    return
  fi
  kill -STOP "$pid"
  local tries=0
  while kill -0 "$launcher" 2>/dev/null && ! grep -q "was lost" "$name.log" &&
    [ "$tries" -lt $((1500 * scale)) ]; do
    sleep 0.02
    tries=$((tries + 1))
  done
  kill -CONT "$pid" 2>/dev/null || true
  wait "$launcher" || status=$?
  note "$name: rank $rank (pid $pid) stopped: exit status $status, done failed pending:" \
    "$("$RUN_CHECK" status "$name.h5")"
  check "$name: exit status 0 (got $status)" test "$status" -eq 0
  check "$name: the group is reported lost" grep -q "the group of ranks 1-2 was lost" "$name.log"
  check "$name: the lost batch failed with the communicator's timeout" \
    grep -q "item [0-9]* failed.*no answer from the group after" "$name.log"
  check "$name: the lost batch went to the other group" \
    grep -q "of its batch failed (.*), to be rendered again by another group" "$name.log"
  check "$name: every item done" "$RUN_CHECK" counts "$name.h5" "$total" 0 0
  check "$name: equals the uninterrupted run" "$RUN_CHECK" same faultref.h5 "$name.h5"
}

stop_round stop_member 2
stop_round stop_leader 1

# SIGTERM to the members alone: the groups agree on it after their batch, the leaders tell rank 0
# and the run stops cleanly (143) with every returned item written; the rerun completes it
start_fault term_members
wait_done term_members.h5 6
pids=$(rank_pid "$launcher" 2; rank_pid "$launcher" 4)
if [ "$(echo $pids | wc -w)" -eq 2 ] && kill -0 "$launcher" 2>/dev/null; then
  kill -TERM $pids
  status=0
  wait "$launcher" || status=$?
  counts=$("$RUN_CHECK" status term_members.h5)
  note "term_members: exit status $status, done failed pending: $counts"
  check "term_members: exit status 143 (got $status)" test "$status" -eq 143
  check "term_members: the summary's pending count is the file's" \
    grep -q "interrupted by SIGTERM; ${counts##* } items left pending" term_members.log
  expect_status 0 "term_members: rerun" launch 5 run --quiet term_members.yaml
  check "term_members: equals the uninterrupted run" "$RUN_CHECK" same faultref.h5 term_members.h5
else
  fail "term_members: the run ended before the signal"
  wait "$launcher" || true
fi

# a member SIGKILLed mid-run: Open MPI ends every rank (mpirun's default); the rerun completes
start_fault kill_member
wait_done kill_member.h5 6
pid=$(rank_pid "$launcher" 4)
if [ -n "$pid" ] && kill -0 "$launcher" 2>/dev/null; then
  before=$(done_count kill_member.h5)
  kill -KILL "$pid"
  status=0
  wait "$launcher" || status=$?
  now=$(done_count kill_member.h5)
  note "kill_member: rank 4 (pid $pid) killed with $before done: exit status $status, $now done"
  check "kill_member: the run fails (status $status)" test "$status" -ne 0
  check "kill_member: file readable" "$RUN_CHECK" status kill_member.h5
  check "kill_member: no done item went back ($before -> $now)" test "$now" -ge "$before"
  expect_status 0 "kill_member: rerun" launch 5 run kill_member.yaml 2>kill_member.rerun.log
  check "kill_member: the rerun renders the rest" \
    grep -q "summary: $((total - now)) rendered, 0 failed, $now skipped" kill_member.rerun.log
  check "kill_member: equals the uninterrupted run" "$RUN_CHECK" same faultref.h5 kill_member.h5
else
  fail "kill_member: the run ended before rank 4 could be killed"
  wait "$launcher" || true
fi

finish
