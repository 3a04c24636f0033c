#!/usr/bin/env bash
# Kills and resumes: a multi-rank run is SIGKILLed at several points (a worker, rank 0, rank 0
# at startup, another worker) and stopped once with SIGTERM on every rank (as Slurm does);
# after each, the same command resumes. Every kill must leave a readable file whose done items
# never go back; SIGTERM must leave every returned item flushed and exit with 143; the last run
# must render exactly the items not done (nothing twice) and the final file must equal an
# uninterrupted run's, item for item, byte for byte. Without MPI the one process is killed.
# Usage: test_run_kill.sh SDBATCH RUN_CHECK SOURCE_DIR [MPIEXEC]
SDBATCH=$1 RUN_CHECK=$2 SOURCE_DIR=$3 MPIEXEC=${4:-}
source "$SOURCE_DIR/tests/run_test_lib.sh"

n=1
have_mpi && n=3
prompts='prompts: ["a lighthouse", "a red barn", "a tall ship", "an old mill", "a bridge", "a kite"]'

# The kills wait for progress the file shows, which it does at its flushes (about every second):
# the job is sized to this machine's speed so that a run lasts about 12 s and every round
# ends mid-run (at least 240 items).
write_job calibrate.yaml calibrate.h5 "$prompts" 'seeds: {start: 0, count: 8}' 'steps: 8' \
  'batch_size: 2'
expect_status 0 "calibration run" launch "$n" run calibrate.yaml 2>calibrate.log
rate=$(sed -n 's/.* s wall, \([0-9.]*\) images\/s.*/\1/p' calibrate.log)
seeds=$(awk -v r="${rate:-0}" 'BEGIN { s = int(r * 12 / 6) + 1; print (s < 40 ? 40 : s) }')
total=$((6 * seeds))
note "calibration: ${rate:-?} images/s: $total items"
sweep=("$prompts" "seeds: {start: 100, count: $seeds}" 'steps: 8' 'save_latents: true')
write_job kill.yaml out.h5 "${sweep[@]}" 'batch_size: 2'
write_job ref.yaml ref.h5 "${sweep[@]}" 'batch_size: 3'
expect_status 0 "uninterrupted reference run" launch "$n" run --quiet ref.yaml

# start_run: `sdbatch run kill.yaml` in the background; $launcher is its pid (mpirun's, or the
# one process's)
start_run() {
  if [ "$n" -eq 1 ]; then
    "$SDBATCH" run kill.yaml 2>>run.log &
  else
    "$MPIEXEC" --oversubscribe -n "$n" "$SDBATCH" run kill.yaml 2>>run.log &
  fi
  launcher=$!
}

# pid_of RANK: the rank's process ("" when not there)
pid_of() {
  if [ "$n" -eq 1 ]; then
    echo "$launcher"
  else
    rank_pid "$launcher" "$1"
  fi
}

# wait_for TARGET RANK: until the rank's process exists and the file has TARGET items done;
# prints the pid, or nothing when the run ended first or 60 s passed
wait_for() {
  local target=$1 rank=$2 tries=0 pid=""
  while kill -0 "$launcher" 2>/dev/null && [ "$tries" -lt 1200 ]; do
    [ -n "$pid" ] || pid=$(pid_of "$rank")
    if [ -n "$pid" ] && [ "$(done_count out.h5)" -ge "$target" ]; then
      echo "$pid"
      return
    fi
    sleep 0.02
    tries=$((tries + 1))
  done
}

done_before=0
mid_run_kills=0
# kill_round WHAT MORE RANK: SIGKILL the rank once MORE items are done than before the round
# (MORE 0: as soon as the rank is there), then check the file
kill_round() {
  local what=$1 more=$2 rank=$3 pid status=0 now
  start_run
  pid=$(wait_for $((done_before + more)) "$rank")
  if [ -n "$pid" ]; then
    kill -KILL "$pid"
  else
    fail "$what: the run ended before the kill"
  fi
  wait "$launcher" || status=$?
  now=$(done_count out.h5)
  note "$what: killed pid ${pid:-none}, exit status $status, $now of $total done"
  if [ "$now" -lt "$done_before" ]; then
    fail "$what: done items went from $done_before to $now"
  fi
  if [ -n "$pid" ] && [ "$now" -gt "$done_before" ] && [ "$now" -lt "$total" ]; then
    mid_run_kills=$((mid_run_kills + 1))
  fi
  check "$what: file readable" "$RUN_CHECK" status out.h5
  done_before=$now
}

worker1=$((n > 1 ? 1 : 0))
worker2=$((n > 1 ? 2 : 0))
kill_round "SIGKILL rank $worker1 mid-run" 15 "$worker1"
kill_round "SIGKILL rank 0 mid-run" 20 0
kill_round "SIGKILL rank 0 at startup" 0 0
kill_round "SIGKILL rank $worker2 mid-run" 20 "$worker2"
check "3 kills landed mid-run ($mid_run_kills did)" test "$mid_run_kills" -ge 3

# SIGTERM to every rank, as Slurm's preemption or time limit sends it: a clean stop
: >run.log
start_run
pid=$(wait_for $((done_before + 15)) 0)
if [ -n "$pid" ]; then
  for rank in $(seq 0 $((n - 1))); do
    p=$(pid_of "$rank")
    [ -n "$p" ] && kill -TERM "$p"
  done
else
  fail "SIGTERM: the run ended before the signal"
fi
status=0
wait "$launcher" || status=$?
check "SIGTERM: exit status 143 (got $status)" test "$status" -eq 143
pending=$("$RUN_CHECK" status out.h5 | cut -d' ' -f3)
check "SIGTERM: the summary's pending count is the file's ($pending)" \
  grep -q "interrupted by SIGTERM; $pending items left pending" run.log
done_before=$(done_count out.h5)
note "SIGTERM: $done_before of $total done"

# the resume renders exactly what is not done
: >run.log
expect_status 0 "final resume" launch "$n" run kill.yaml 2>run.log
check "resume renders only the items not done" grep -q \
  "summary: $((total - done_before)) rendered, 0 failed, $done_before skipped" run.log
check "final file complete" "$RUN_CHECK" counts out.h5 "$total" 0 0
check "final file equals the uninterrupted run" "$RUN_CHECK" same ref.h5 out.h5

finish
