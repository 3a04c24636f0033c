#!/usr/bin/env bash
# ctest (label slurm): slurm/submit and the batch script it writes, without a Slurm. Checks the
# #SBATCH lines --dry-run fills in for GPU and CPU allocations, the option errors, that paths
# with spaces and quotes survive the shell quoting, and runs the filled script with stand-ins
# for srun, mpirun, scancel and scontrol (on the PATH) to check what it launches and what it
# does on the time-limit warning (SIGUSR1: stop the ranks, requeue up to --max-restarts) and on
# SIGTERM (wait for the ranks to flush).
#
#   tests/test_slurm_submit.sh SOURCE_DIR
set -uo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 SOURCE_DIR" >&2
  exit 2
fi
submit="$1/slurm/submit"
work=$(mktemp -d "${TMPDIR:-/tmp}/sdbatch-submit-test.XXXXXX")
trap 'rm -rf "$work"' EXIT
failures=0
checks=0

fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}
# expect_line FILE LINE: FILE has LINE exactly.
expect_line() {
  checks=$((checks + 1))
  grep -qxF -- "$2" "$1" || fail "$(basename "$1"): no line '$2'"
}
# expect_has FILE TEXT: a line of FILE contains TEXT.
expect_has() {
  checks=$((checks + 1))
  grep -qF -- "$2" "$1" || fail "$(basename "$1"): nothing says '$2'"
}
# expect_no FILE REGEX: no line of FILE matches REGEX.
expect_no() {
  checks=$((checks + 1))
  ! grep -qE -- "$2" "$1" || fail "$(basename "$1"): unexpected '$(grep -E -- "$2" "$1" | head -n 1)'"
}
# expect_error STATUS MESSAGE_PART ARGS...: slurm/submit ARGS exits STATUS saying MESSAGE_PART.
expect_error() {
  local want=$1 part=$2 status=0
  shift 2
  checks=$((checks + 1))
  "$submit" "$@" >"$work/out" 2>"$work/err" || status=$?
  if [ "$status" -ne "$want" ] || ! grep -qF -- "$part" "$work/err"; then
    fail "submit $*: expected status $want and '$part', got $status: $(cat "$work/err")"
  fi
}

job_dir="$work/my jobs/it's here"
mkdir -p "$job_dir"
job="$job_dir/render set.yaml"
echo "model: m" >"$job"
fake_sdbatch="$work/bin dir/sdbatch"
mkdir -p "$(dirname "$fake_sdbatch")"
printf '#!/bin/sh\nexit 0\n' >"$fake_sdbatch"
chmod +x "$fake_sdbatch"

# --help
checks=$((checks + 1))
"$submit" --help >"$work/help" || fail "--help exited non-zero"
for option in --nodes --gpus-per-node --gpu-binding --tasks-per-node --cpus-per-task --time \
  --partition --account --log-dir --log-name --launcher --srun-mpi --sdbatch --signal-seconds \
  --requeue-at-time-limit --max-restarts --sbatch-arg --dry-run; do
  expect_line <(grep -oE -- "$option\b" "$work/help" | head -n 1) "$option"
done

# GPUs, one per task.
"$submit" --dry-run -N 2 -G 4 -c 8 -t 02:00:00 -p gpu -A proj --log-dir "$work/logs" \
  --sdbatch "$fake_sdbatch" "$job" -- --parsable --qos=high >"$work/gpu.sh" 2>"$work/gpu.err" ||
  fail "gpu dry run failed: $(cat "$work/gpu.err")"
for line in '#SBATCH --job-name=sdbatch-render_set' '#SBATCH --nodes=2' \
  '#SBATCH --ntasks-per-node=4' '#SBATCH --cpus-per-task=8' '#SBATCH --gpus-per-task=1' \
  '#SBATCH --time=02:00:00' '#SBATCH --partition=gpu' '#SBATCH --account=proj' \
  "#SBATCH --output=$work/logs/%x-%j.out" '#SBATCH --open-mode=append' '#SBATCH --requeue' \
  '#SBATCH --signal=B:USR1@120' 'launcher=srun' 'srun_mpi=pmix' 'requeue_at_time_limit=0'; do
  expect_line "$work/gpu.sh" "$line"
done
expect_no "$work/gpu.sh" '--gres'
expect_no "$work/gpu.sh" '@[A-Z_]+@'
checks=$((checks + 1))
grep -q "would run: sbatch --parsable --qos=high <" "$work/gpu.err" ||
  fail "dry run does not show the sbatch arguments: $(cat "$work/gpu.err")"
checks=$((checks + 1))
[ ! -e "$work/logs" ] || fail "a dry run created the log folder"
checks=$((checks + 1))
bash -n "$work/gpu.sh" || fail "the filled script is not valid bash"
# The shell-quoted paths read back as they were.
checks=$((checks + 1))
eval "$(grep -E '^(sdbatch|job_file)=' "$work/gpu.sh")"
[ "$job_file" = "$job" ] && [ "$sdbatch" = "$fake_sdbatch" ] ||
  fail "quoted paths read back as '$job_file' and '$sdbatch'"

# GPUs through --gres, more ranks than GPUs.
"$submit" --dry-run -G 8 --gpu-binding gres --tasks-per-node 9 --launcher mpirun \
  --sdbatch "$fake_sdbatch" "$job" >"$work/gres.sh" 2>/dev/null || fail "gres dry run failed"
expect_line "$work/gres.sh" '#SBATCH --gres=gpu:8'
expect_line "$work/gres.sh" '#SBATCH --ntasks-per-node=9'
expect_line "$work/gres.sh" 'launcher=mpirun'
expect_no "$work/gres.sh" '--gpus-per-task'

# CPU ranks: no GPU, time, partition or account lines; one task per node by default.
"$submit" --dry-run --sdbatch "$fake_sdbatch" -J my-job --log-name 'run-%j.log' \
  --signal-seconds 300 "$job" >"$work/cpu.sh" 2>/dev/null || fail "cpu dry run failed"
expect_line "$work/cpu.sh" '#SBATCH --ntasks-per-node=1'
expect_line "$work/cpu.sh" '#SBATCH --job-name=my-job'
expect_line "$work/cpu.sh" "#SBATCH --output=$(pwd)/run-%j.log"
expect_line "$work/cpu.sh" '#SBATCH --signal=B:USR1@300'
expect_no "$work/cpu.sh" '^#SBATCH --(gpus-per-task|gres|time|partition|account|cpus-per-task)'

expect_error 2 "both must be equal" --dry-run -G 4 --tasks-per-node 2 "$job"
expect_error 2 "unknown option '--gpus'" --dry-run --gpus 4 "$job"
expect_error 2 "no job file given" --dry-run
expect_error 2 "not a readable file" --dry-run "$work/missing.yaml"
expect_error 2 "contains whitespace" --dry-run -t "1 00:00:00" "$job"
expect_error 2 "expected an integer >= 1" --dry-run -N 0 "$job"
expect_error 2 "expected srun or mpirun" --dry-run --launcher mpiexec "$job"
expect_error 2 "--partition needs a value" --dry-run "$job" --partition
expect_error 2 "not found or not executable" --sdbatch "$work/nothing" "$job"

# The filled script, run with stand-ins for Slurm's and Open MPI's commands.
fake_bin="$work/fake-bin"
mkdir -p "$fake_bin"
# srun / mpirun: record their arguments and pid, then run until SIGTERM (exit 143) or for
# FAKE_RUN_SECONDS (exit 0); with FAKE_CRASHES=K, the first K launches end with status 137 (a
# rank killed), counted in $work/launches.
for launcher in srun mpirun; do
  cat >"$fake_bin/$launcher" <<EOF
#!/bin/bash
# the trap first: the test signals as soon as launcher.pid exists
trap 'echo "$launcher: SIGTERM" >>"$work/events"; exit 143' TERM
echo "\$*" >"$work/$launcher.args"
echo \$\$ >"$work/launcher.pid"
echo launch >>"$work/launches"
if [ "\$(wc -l <"$work/launches")" -le "\${FAKE_CRASHES:-0}" ]; then exit 137; fi
for ((i = 0; i < \${FAKE_RUN_SECONDS:-30} * 10; i++)); do sleep 0.1; done
EOF
done
# scancel --signal=TERM ID: what the script uses to stop srun's ranks.
cat >"$fake_bin/scancel" <<EOF
#!/bin/bash
echo "scancel \$*" >>"$work/events"
kill -TERM "\$(cat "$work/launcher.pid")"
EOF
cat >"$fake_bin/scontrol" <<EOF
#!/bin/bash
echo "scontrol \$*" >>"$work/events"
EOF
chmod +x "$fake_bin"/*

# run_script NAME SIGNAL RESTARTS SUBMIT_OPTIONS...: fills the script with the options, runs it
# as Slurm would (SLURM_* variables set), sends SIGNAL (or none) once the launcher runs, and
# sets $status to the script's exit status and $work/events to what the stand-ins saw.
run_script() {
  local name=$1 signal=$2 restarts=$3
  shift 3
  "$submit" --dry-run --sdbatch "$fake_sdbatch" "$@" "$job" >"$work/$name.sh" 2>/dev/null ||
    fail "$name: dry run failed"
  rm -f "$work/events" "$work"/*.args "$work/launcher.pid" "$work/launches"
  PATH="$fake_bin:$PATH" SLURM_JOB_ID=42 SLURM_JOB_NODELIST=node1 SLURM_NTASKS=2 \
    SLURM_CPUS_PER_TASK=3 SLURM_RESTART_COUNT=$restarts FAKE_RUN_SECONDS=${FAKE_RUN_SECONDS:-30} \
    bash "$work/$name.sh" >"$work/$name.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do
    [ -s "$work/launcher.pid" ] && break
    sleep 0.1
  done
  if [ "$signal" != none ]; then
    kill "-$signal" "$pid"
    if [ "$signal" = TERM ]; then
      # Slurm signals the ranks too: the script must wait for them, not exit.
      sleep 0.5
      checks=$((checks + 1))
      kill -0 "$pid" 2>/dev/null || fail "$name: the script exited on SIGTERM before its ranks"
      kill -TERM "$(cat "$work/launcher.pid")"
    fi
  fi
  wait "$pid"
  status=$?
  touch "$work/events"
}
expect_status() {
  checks=$((checks + 1))
  [ "$status" -eq "$2" ] || fail "$1: exit status $status, expected $2; log: $(cat "$work/$1.log")"
}

FAKE_RUN_SECONDS=0 run_script plain-srun none 0 -c 3
expect_status plain-srun 0
expect_line "$work/srun.args" "--mpi=pmix --kill-on-bad-exit=1 --cpus-per-task=3 $fake_sdbatch run $job --threads 3"
expect_no "$work/events" .

run_script limit-srun USR1 0 --requeue-at-time-limit
expect_status limit-srun 143
expect_line "$work/events" "scancel --signal=TERM 42"
expect_line "$work/events" "srun: SIGTERM"
expect_line "$work/events" "scontrol requeue 42"

run_script limit-mpirun USR1 0 --launcher mpirun
expect_status limit-mpirun 143
expect_line "$work/mpirun.args" "--bind-to none $fake_sdbatch run $job --threads 3"
expect_line "$work/events" "mpirun: SIGTERM"
expect_no "$work/events" "scancel|scontrol"

run_script limit-max USR1 10 --launcher mpirun --requeue-at-time-limit --max-restarts 10
expect_status limit-max 143
expect_no "$work/events" "scontrol"
expect_has "$work/limit-max.log" "not requeueing: already restarted 10 times (limit 10)"

run_script preempt-srun TERM 0 --requeue-at-time-limit
expect_status preempt-srun 143
expect_no "$work/events" "scancel|scontrol"

# a rank killed (launcher status 137): relaunched to resume, up to --relaunches times
FAKE_RUN_SECONDS=0 FAKE_CRASHES=1 run_script crash-once none 0 --launcher mpirun
expect_status crash-once 0
expect_has "$work/crash-once.log" "a rank crashed or was killed (status 137): relaunching sdbatch run to resume (1 of 2)"
checks=$((checks + 1))
[ "$(wc -l <"$work/launches")" -eq 2 ] || fail "crash-once: $(wc -l <"$work/launches") launches, expected 2"
FAKE_RUN_SECONDS=0 FAKE_CRASHES=9 run_script crash-always none 0 --relaunches 3
expect_status crash-always 137
checks=$((checks + 1))
[ "$(wc -l <"$work/launches")" -eq 4 ] || fail "crash-always: $(wc -l <"$work/launches") launches, expected 4"
FAKE_RUN_SECONDS=0 FAKE_CRASHES=1 run_script crash-never none 0 --relaunches 0
expect_status crash-never 137
expect_no "$work/crash-never.log" "relaunching"
expect_error 2 "--relaunches: expected an integer >= 0" --dry-run --relaunches -1 "$job"

echo "$checks checks, $failures failed"
[ "$failures" -eq 0 ]
