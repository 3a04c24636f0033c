#!/usr/bin/env bash
# Fuzzes every parser of untrusted bytes (tests/fuzz, docs/security.md): builds the libFuzzer
# harnesses with clang, AddressSanitizer and UBSan into build-fuzz/, then runs each for SECONDS
# (default 60) from its committed corpus tests/fuzz/corpus/<name>/ (read only; what the fuzzer
# adds goes to build-fuzz/corpus/<name>/). Prints executions and coverage per harness. A crash,
# sanitizer report, leak, timeout or out-of-memory stops that harness, leaves the input in
# build-fuzz/artifacts/ and makes the script exit 1 after the others have run; add the input to
# the corpus as regress-<what> once fixed.
# Usage: scripts/fuzz.sh [SECONDS [HARNESS...]]   (FUZZ_ARGS: extra libFuzzer flags)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
jobs=$(nproc 2>/dev/null || echo 2)
scripts/install-deps.sh
cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Release -DSDBATCH_FUZZ=ON \
  -DSDBATCH_CUDA=OFF -DSDBATCH_MPI=OFF >/dev/null
cmake --build build-fuzz -j"$jobs" --target fuzzers >/dev/null
harnesses=("$@")
if [ ${#harnesses[@]} -eq 0 ]; then
  for corpus in tests/fuzz/corpus/*/; do
    harnesses+=("$(basename "$corpus")")
  done
fi
mkdir -p build-fuzz/artifacts build-fuzz/logs
failed=()
printf '%-16s %10s %8s %8s %6s  %s\n' harness executions exec/s coverage corpus result
for name in "${harnesses[@]}"; do
  binary=build-fuzz/tests/fuzz/fuzz_$name
  [ -x "$binary" ] || { echo "fuzz.sh: no harness '$name' ($binary)" >&2; exit 2; }
  mkdir -p "build-fuzz/corpus/$name"
  dict=()
  [ -f "tests/fuzz/dict/$name.dict" ] && dict=(-dict="tests/fuzz/dict/$name.dict")
  log=build-fuzz/logs/$name.log
  status=0
  # shellcheck disable=SC2086
  "$binary" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="build-fuzz/artifacts/$name-" "${dict[@]}" ${FUZZ_ARGS:-} \
    "build-fuzz/corpus/$name" "tests/fuzz/corpus/$name" >"$log" 2>&1 || status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
  units=$(grep -oE 'corp: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
  result=ok
  if [ "$status" -ne 0 ]; then
    result="FAILED (exit $status): $(grep -m1 -oE 'ERROR: [A-Za-z]+: [^ ]+.*|SUMMARY: .*' "$log" | head -1)"
    failed+=("$name")
  fi
  printf '%-16s %10s %8s %8s %6s  %s\n' "$name" "${runs:-?}" "${speed:-?}" "${cov:-?}" \
    "${units:-?}" "$result"
done
if [ ${#failed[@]} -gt 0 ]; then
  for name in "${failed[@]}"; do
    echo "--- $name: build-fuzz/logs/$name.log (inputs in build-fuzz/artifacts/)"
    grep -A30 -m1 -E '^==[0-9]+==ERROR|runtime error|^SUMMARY' "build-fuzz/logs/$name.log" | head -40
  done
  exit 1
fi
