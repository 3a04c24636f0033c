# Shared by the tests/test_train_*.sh scripts; sourced after SDBATCH and SOURCE_DIR are set.
# Provides the scratch folder, the check counting (note, fail, finish: check_lib.sh), the skip
# when Python modules are missing, the configs on the shapes folder (config, refused) and the
# crash checks (kill_after_checkpoint, same_files).

# require_python MODULE...: exits 77 (ctest's skip) unless python3 imports every module.
require_python() {
  local list
  list=$(IFS=,; echo "$*")
  if ! python3 -c "import $list" 2> /dev/null; then
    echo "test: skipped: python3 with $* is needed"
    exit 77
  fi
}

# shellcheck source=check_lib.sh
source "$SOURCE_DIR/tests/check_lib.sh"

# train_test_begin NAME: a scratch folder (removed at exit) as the working directory, one
# OpenMP thread per process.
train_test_begin() {
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
  trap 'rm -rf "$WORK"' EXIT
  cd "$WORK"
  export OMP_NUM_THREADS=1
}

# config NAME OUTPUT [EXTRA YAML LINES...]: a config of $MODEL on the folder `shapes` with the
# instance prompt "a photo of sks shape", then the lines of the CONFIG_BASE array, then the extra
# lines (so that the first extra line is line 5 + ${#CONFIG_BASE[@]}).
config() {
  local name=$1 out=$2
  shift 2
  {
    echo "pretrained_model: $MODEL"
    echo "instance_data_dir: shapes"
    echo "instance_prompt: a photo of sks shape"
    echo "output_dir: $out"
    for line in "${CONFIG_BASE[@]}" "$@"; do echo "$line"; done
  } > "$name"
}

# refused CONFIG OUTPUT PATTERN [TRAIN ARGS...]: `sdbatch train CONFIG` must exit with status 1
# and one error line matching PATTERN (grep -E), leaving OUTPUT (unless empty) absent.
refused() {
  local cfg=$1 out=$2 pattern=$3
  shift 3
  local status=0
  "$SDBATCH" train "$cfg" --quiet "$@" > stdout.txt 2> stderr.txt || status=$?
  if [ "$status" -ne 1 ]; then
    fail "$cfg: exit status $status, expected 1 ($(cat stderr.txt))"
  elif [ "$(wc -l < stderr.txt)" -ne 1 ] || ! grep -qE "$pattern" stderr.txt; then
    fail "$cfg: expected one error matching '$pattern', got: $(cat stderr.txt)"
  elif [ -n "$out" ] && [ -e "$out" ]; then
    fail "$cfg: the refused run left $out behind"
  else
    note "refused as expected: $(cat stderr.txt)"
  fi
}

# kill_after_checkpoint OUTPUT CHECKPOINT DONE_FILE: starts `sdbatch train OUTPUT.yaml`, kills it
# with SIGKILL as soon as OUTPUT/CHECKPOINT exists, and fails when OUTPUT/DONE_FILE (written at
# the end of a run) is there: the run ended before the kill.
kill_after_checkpoint() {
  local out=$1 checkpoint=$2 done_file=$3
  "$SDBATCH" train "$out.yaml" --quiet &
  local pid=$!
  while [ ! -d "$out/$checkpoint" ] && kill -0 $pid 2> /dev/null; do sleep 0.002; done
  kill -9 $pid 2> /dev/null || true
  wait $pid 2> /dev/null || true
  if [ -f "$out/$done_file" ]; then
    fail "the run ended before the kill; the test did not kill it"
  fi
  note "killed after $checkpoint: $(ls "$out" | tr '\n' ' ')"
}

# same_files WHOLE RESUMED FILE...: each FILE byte for byte equal in the two output folders.
same_files() {
  local whole=$1 resumed=$2 f
  shift 2
  for f in "$@"; do
    if cmp -s "$whole/$f" "$resumed/$f"; then
      note "resumed = uninterrupted: $f byte for byte"
    else
      fail "resumed run's $f differs from the uninterrupted run's"
    fi
  done
}
