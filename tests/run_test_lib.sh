# Shared by the `sdbatch run` tests (test_run_*.sh), sourced after
#   SDBATCH=... RUN_CHECK=... SOURCE_DIR=... MPIEXEC=... (empty: built without MPI)
# Gives a scratch folder ($WORK, removed on exit), a launcher for N ranks, job files on the tiny
# fixture model, and what the kill tests need to find a rank's process.
set -euo pipefail

SDBATCH=$(readlink -f "$SDBATCH")
RUN_CHECK=$(readlink -f "$RUN_CHECK")
SOURCE_DIR=$(readlink -f "$SOURCE_DIR")

FIXTURE_MODEL="$SOURCE_DIR/tests/fixtures/tiny-sd1"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sdbatch-run-test.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

# one thread per rank: ranks share the machine's cores
export OMP_NUM_THREADS=1
# CI runs as root; Open MPI refuses that unless told
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# no network interfaces to probe on a CI machine: shared memory and loopback do
export OMPI_MCA_btl_base_warn_component_unused=0

# shellcheck source=check_lib.sh
source "$SOURCE_DIR/tests/check_lib.sh"

have_mpi() { [ -n "$MPIEXEC" ]; }

# launch N ARGS...: `sdbatch ARGS...` as N ranks (one process without a launcher when N is 1)
launch() {
  local n=$1
  shift
  if [ "$n" -eq 1 ]; then
    "$SDBATCH" "$@"
  else
    "$MPIEXEC" --oversubscribe -n "$n" "$SDBATCH" "$@"
  fi
}

# expect_status WANT WHAT CMD...: runs CMD, checks its exit status
expect_status() {
  local want=$1 what=$2
  shift 2
  local got=0
  "$@" || got=$?
  if [ "$got" -ne "$want" ]; then
    fail "$what: exit status $got, expected $want"
  else
    note "$what: exit status $got as expected"
  fi
}

# write_job FILE OUTPUT [extra YAML lines...]: a job on the tiny fixture model, 64x64
write_job() {
  local file=$1 output=$2
  shift 2
  {
    echo "model: $FIXTURE_MODEL"
    echo "output: $output"
    echo "width: 64"
    echo "height: 64"
    for line in "$@"; do echo "$line"; done
  } >"$file"
}

# rank_pid LAUNCHER_PID RANK: the pid of that rank among the launcher's children (Open MPI sets
# OMPI_COMM_WORLD_RANK in each rank's environment); empty when not (yet) there
rank_pid() {
  local parent=$1 rank=$2 stat pid ppid
  for stat in /proc/[0-9]*/stat; do
    pid=${stat#/proc/}
    pid=${pid%/stat}
    ppid=$(cut -d' ' -f4 "$stat" 2>/dev/null) || continue
    [ "$ppid" = "$parent" ] || continue
    if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$rank"; then
      echo "$pid"
      return 0
    fi
  done
}

# done_count FILE: items done in an output file (0 while it does not exist or cannot be read)
done_count() {
  local counts
  counts=$("$RUN_CHECK" status "$1" 2>/dev/null) || counts=0
  echo "${counts%% *}"
}

# check WHAT CMD...: CMD must succeed
check() {
  local what=$1
  shift
  if "$@"; then
    note "$what: ok"
  else
    fail "$what"
  fi
}
