#!/usr/bin/env bash
# ctest (label slurm): sdbatch under a real one-node Slurm. Starts a private Slurm
# (slurm/local/start), submits jobs on the tiny fixture model with slurm/submit and checks their
# HDF5 outputs with `sdbatch inspect` (and h5dump when installed):
#   1. 2 prompts x 2 seeds, 64x64, 3 steps, 2 ranks launched by srun --mpi=pmix: all 4 done;
#   2. the same job launched by mpirun: all 4 done, images identical to run 1 (with h5dump);
#   3. a longer job (120 items) requeued with `scontrol requeue` once items are done, as a
#      preemption would: the same job id runs again, resumes into the same file (the restart
#      skips at least the items seen done) and finishes every item.
# Stops the Slurm it started (nothing is left running) and prints Slurm's and the jobs' logs on
# failure. Exits 77 (skipped) when Slurm or munge is not installed (scripts/install-slurm.sh) or
# when not root.
#
#   tests/test_slurm.sh SDBATCH SOURCE_DIR
set -uo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 SDBATCH SOURCE_DIR" >&2
  exit 2
fi
sdbatch=$1
src=$2
SUBMIT_TIMEOUT=30 # seconds for one sbatch call
JOB_TIMEOUT=300   # seconds for one job to finish

say() { echo "test_slurm: [${SECONDS}s] $*"; }
skip() {
  say "skipped: $*"
  exit 77
}

[ "$(id -u)" -eq 0 ] || skip "needs root (the local Slurm runs slurmd as root)"
for tool in munged slurmctld slurmd sbatch scontrol mpirun; do
  command -v "$tool" >/dev/null || skip "'$tool' not installed (scripts/install-slurm.sh)"
done
[ -x "$sdbatch" ] || {
  say "FAIL: sdbatch program '$sdbatch' not found"
  exit 1
}

work=$(mktemp -d "${TMPDIR:-/tmp}/sdbatch-slurm-test.XXXXXX")
slurm_dir="$work/slurm"
failures=0
slurm_started=0

cleanup() {
  local status=$?
  [ "$failures" -eq 0 ] || status=1
  if [ "$status" -ne 0 ]; then
    for f in "$work"/logs/*; do
      [ -f "$f" ] || continue
      echo "===== job log $f ====="
      cat "$f"
    done
  fi
  if [ "$slurm_started" -eq 1 ]; then
    local stop_args=("$slurm_dir")
    [ "$status" -eq 0 ] || stop_args=(--logs "$slurm_dir")
    if ! timeout 120 "$src/slurm/local/stop" "${stop_args[@]}" 2>&1; then
      say "FAIL: slurm/local/stop did not stop everything"
      status=1
    fi
  fi
  if [ "$status" -eq 0 ]; then
    rm -rf "$work"
    say "passed"
  else
    say "FAILED (files kept in $work)"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 1' INT TERM

fail() {
  say "FAIL: $*"
  failures=$((failures + 1))
}

# start_slurm: the local Slurm, SLURM_CONF exported.
if ! env_line=$(timeout 120 "$src/slurm/local/start" "$slurm_dir"); then
  slurm_started=1
  say "FAIL: slurm/local/start failed"
  exit 1
fi
slurm_started=1
eval "$env_line"
say "Slurm: $(sinfo --version), $SLURM_CONF"

# write_job NAME SEED_COUNT: a job file on the tiny model, 2 prompts, 64x64, 3 steps.
write_job() {
  cat >"$work/$1.yaml" <<EOF
model: $src/tests/fixtures/tiny-sd1
output: $work/$1.h5
prompts: ["a red cube on a table", "a blue sphere in the sky"]
seeds: {start: 1, count: $2}
steps: 3
width: 64
height: 64
guidance_scale: 7.5
batch_size: 2
device: cpu
EOF
}

# submit NAME SUBMIT_OPTIONS...: prints the job id.
submit() {
  local name=$1
  shift
  timeout "$SUBMIT_TIMEOUT" "$src/slurm/submit" --nodes 1 --tasks-per-node 2 --cpus-per-task 1 \
    --time 10 --log-dir "$work/logs" --sdbatch "$sdbatch" "$@" "$work/$name.yaml" -- --parsable
}

job_field() {
  scontrol show job --oneliner "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p"
}

# wait_job ID: waits for COMPLETED (0) or another end state or JOB_TIMEOUT (1).
wait_job() {
  local id=$1 state='' deadline=$((SECONDS + JOB_TIMEOUT))
  while [ "$SECONDS" -lt "$deadline" ]; do
    state=$(job_field "$id" JobState)
    case "$state" in
    COMPLETED) return 0 ;;
    FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE | PREEMPTED)
      fail "job $id ended $state (exit code $(job_field "$id" ExitCode))"
      return 1
      ;;
    esac
    sleep 1
  done
  fail "job $id not done after $JOB_TIMEOUT s (state '${state:-unknown}')"
  scancel "$id" 2>/dev/null
  return 1
}

# items_line H5: the "items N total: D done, F failed, P pending" line of sdbatch inspect.
items_line() {
  "$sdbatch" inspect "$1" 2>/dev/null | sed -n 's/^items *//p'
}

# check_all_done H5 N: every one of the N items done, by inspect and, with h5dump, /status.
check_all_done() {
  local line
  line=$(items_line "$1")
  if [[ $line != "$2 total: $2 done, 0 failed, 0 pending"* ]]; then
    fail "$1: expected all $2 items done, inspect says '${line:-nothing}'"
    return 1
  fi
  if command -v h5dump >/dev/null; then
    local statuses
    statuses=$(h5dump -d /status -y -w 0 "$1" | sed -n '/DATA {/,/}/p' | grep -o '[0-9]\+' |
      sort | uniq -c | tr -s ' ')
    [ "$statuses" = " $2 1" ] || {
      fail "$1: /status is not $2 x done (1): $statuses"
      return 1
    }
  fi
  say "$1: $line"
}

# Run 1 and 2: the small job through both launchers.
for launcher in srun mpirun; do
  write_job "small-$launcher" 2
  if ! id=$(submit "small-$launcher" --launcher "$launcher"); then
    fail "submitting small-$launcher failed"
    continue
  fi
  say "job $id: small-$launcher submitted"
  wait_job "$id" && check_all_done "$work/small-$launcher.h5" 4
done
if command -v h5dump >/dev/null && [ -f "$work/small-srun.h5" ] && [ -f "$work/small-mpirun.h5" ]; then
  h5dump -d /images -b LE -o "$work/images-srun.bin" "$work/small-srun.h5" >/dev/null
  h5dump -d /images -b LE -o "$work/images-mpirun.bin" "$work/small-mpirun.h5" >/dev/null
  if [ -s "$work/images-srun.bin" ] && cmp -s "$work/images-srun.bin" "$work/images-mpirun.bin"; then
    say "srun and mpirun runs wrote identical images ($(stat -c %s "$work/images-srun.bin") bytes)"
  else
    fail "the srun and mpirun runs' images differ"
  fi
fi

# Run 3: a requeue in the middle of a job (what preemption does with PreemptMode=REQUEUE).
write_job requeue 60
total=120
if id=$(submit requeue --launcher srun); then
  say "job $id: requeue submitted ($total items)"
  seen_done=0
  deadline=$((SECONDS + JOB_TIMEOUT))
  while [ "$SECONDS" -lt "$deadline" ]; do
    state=$(job_field "$id" JobState)
    if [ "$state" = RUNNING ] && [ -f "$work/requeue.h5" ]; then
      line=$(items_line "$work/requeue.h5")
      seen_done=$(sed -n 's/^[0-9]* total: \([0-9]*\) done.*/\1/p' <<<"$line")
      [ "${seen_done:-0}" -gt 0 ] && break
    fi
    case "$state" in COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL) break ;; esac
    sleep 0.2
  done
  seen_done=${seen_done:-0}
  say "job $id: $seen_done items done, state $state: scontrol requeue"
  if scontrol requeue "$id"; then
    # A requeued job waits a while before it may start again (its BeginTime): not here.
    for _ in $(seq 120); do
      [ "$(job_field "$id" JobState)" = PENDING ] && break
      sleep 0.5
    done
    say "job $id: $(job_field "$id" JobState) after the requeue"
    if [ "$(job_field "$id" JobState)" = PENDING ]; then
      scontrol update JobId="$id" StartTime=now || fail "scontrol update StartTime=now failed"
    fi
    if wait_job "$id"; then
      check_all_done "$work/requeue.h5" "$total"
      restarts=$(job_field "$id" Restarts)
      [ "$restarts" = 1 ] || fail "job $id: Restarts=$restarts, expected 1"
      log="$work/logs/sdbatch-requeue-$id.out"
      summary=$(grep 'summary:' "$log" | tail -n 1)
      grep -q "(restart 1)" "$log" || fail "job $id: its log shows no restart"
      rendered=$(sed -n 's/.*summary: \([0-9]*\) rendered.*/\1/p' <<<"$summary")
      skipped=$(sed -n 's/.* \([0-9]*\) skipped (already done).*/\1/p' <<<"$summary")
      say "job $id after the restart: ${summary#*summary: }"
      if [ -z "$rendered" ] || [ -z "$skipped" ]; then
        fail "job $id: no summary line after the restart in $log"
      elif [ "$skipped" -lt "$seen_done" ] || [ $((rendered + skipped)) -ne "$total" ]; then
        fail "job $id: restart rendered $rendered and skipped $skipped of $total, but" \
          "$seen_done were done before the requeue"
      fi
    fi
  else
    fail "scontrol requeue $id failed"
  fi
else
  fail "submitting the requeue job failed"
fi

[ "$failures" -eq 0 ] || exit 1
