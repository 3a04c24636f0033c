#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs the whole ctest suite.
# With --sanitize: builds into build-sanitize/ with AddressSanitizer and UBSan (gcc, every
# report fatal; no CUDA, no MPI: the `sdbatch run` tests then run as one process) and runs the
# CPU suite there (ctest -L cpu), so that memory errors are caught when written. Further
# arguments go to ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)
scripts/install-deps.sh
if [ "${1:-}" = "--sanitize" ]; then
  shift
  cmake -S . -B build-sanitize -DCMAKE_BUILD_TYPE=Release -DSDBATCH_SANITIZE=ON \
    -DSDBATCH_CUDA=OFF -DSDBATCH_MPI=OFF
  cmake --build build-sanitize -j"$jobs"
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1
  export LSAN_OPTIONS=suppressions=$PWD/tests/sanitizer/lsan.supp:print_suppressions=0
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  ctest --test-dir build-sanitize --output-on-failure -j"$jobs" -L cpu "$@"
  exit
fi
scripts/install-slurm.sh # the one-node Slurm of tests/test_slurm.sh (skipped without it)
scripts/build.sh
ctest --test-dir build --output-on-failure -j"$jobs" "$@"
