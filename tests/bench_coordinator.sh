#!/usr/bin/env bash
# The coordinator benchmark: what rank 0's dispatch and the HDF5 writer sustain, measured with
# `sdbatch run --null-model` (workers return each item's pattern at once, no model loaded).
# Prints items/s for 1, 2 and 4 worker ranks (batch_size 1 and 8, 64x64 images), then rank 0's
# peak memory on a 1,000,000-item job (stopped with SIGTERM after a while, as a preempted job
# is, and resumed once).
# Usage: tests/bench_coordinator.sh [SDBATCH [MPIEXEC]]   (defaults: build/sdbatch, mpiexec)
# BENCH_DIR: where the output files go (default: a fresh folder under $TMPDIR or /tmp).
set -euo pipefail
cd "$(dirname "$0")/.."
SDBATCH=$(readlink -f "${1:-build/sdbatch}")
MPIEXEC=${2:-mpiexec}
MODEL=$(pwd)/tests/fixtures/tiny-sd1
ITEMS=${BENCH_ITEMS:-60000}
export OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
dir=${BENCH_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/sdbatch-bench.XXXXXX")}
mkdir -p "$dir"
trap 'rm -f "$dir"/bench*.h5 "$dir"/bench*.yaml "$dir"/bench*.log' EXIT

job() { # job FILE OUTPUT SEEDS BATCH
  printf 'model: %s\noutput: %s\nprompts: ["a", "b"]\nseeds: {start: 0, count: %d}\nsteps: 1\nwidth: 64\nheight: 64\nbatch_size: %d\n' \
    "$MODEL" "$2" "$3" "$4" >"$1"
}
field() { sed -n "$2" "$1" | tail -1; }

echo "sdbatch run --null-model: $ITEMS items of 64x64 each, output in $dir ($(getconf _NPROCESSORS_ONLN) cores)"
printf '%-8s %-6s %-9s %-9s %-10s %s\n' workers batch seconds items/s "rank0 MiB" "items per worker"
for batch in 1 8; do
  for workers in 1 2 4; do
    job "$dir/bench.yaml" "$dir/bench.h5" $((ITEMS / 2)) "$batch"
    rm -f "$dir/bench.h5"
    "$MPIEXEC" --oversubscribe -n $((workers + 1)) "$SDBATCH" run --null-model "$dir/bench.yaml" \
      2>"$dir/bench.log"
    wall=$(field "$dir/bench.log" 's/.*pending; \([0-9.]*\) s wall.*/\1/p')
    rate=$(field "$dir/bench.log" 's/.* s wall, \([0-9.]*\) images\/s.*/\1/p')
    ranks=$(field "$dir/bench.log" 's/.*per rank: \(.*\); rank 0.*/\1/p')
    mem=$(field "$dir/bench.log" 's/.*rank 0 peak memory \([0-9.]*\) MiB.*/\1/p')
    printf '%-8s %-6s %-9s %-9s %-10s %s\n' "$workers" "$batch" "$wall" "$rate" "$mem" "$ranks"
  done
done
rm -f "$dir/bench.h5"

# 1,000,000 items: rank 0 keeps one status byte per item and nothing else per item
seconds=${BENCH_MILLION_SECONDS:-8}
job "$dir/bench_million.yaml" "$dir/bench_million.h5" 500000 8
for pass in "first run" "resume"; do
  "$MPIEXEC" --oversubscribe -n 3 "$SDBATCH" run --null-model "$dir/bench_million.yaml" \
    2>"$dir/bench_million.log" &
  launcher=$!
  sleep "$seconds"
  kill -TERM "$launcher"
  wait "$launcher" || true
  summary=$(field "$dir/bench_million.log" 's/.*summary: \(.*\)/\1/p')
  mem=$(field "$dir/bench_million.log" 's/.*rank 0 peak memory \([0-9.]*\) MiB.*/\1/p')
  echo "1,000,000-item job, $pass, 2 workers, SIGTERM after ${seconds} s: rank 0 peak memory" \
    "$mem MiB; $summary"
done
echo "file: $(du -h --apparent-size "$dir/bench_million.h5" | cut -f1) apparent," \
  "$(du -h "$dir/bench_million.h5" | cut -f1) on disk"
