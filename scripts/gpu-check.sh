#!/usr/bin/env bash
# The GPU session's checks in one run (docs/cuda.md, "GPU session checklist"): build with CUDA,
# the gpu-labelled tests, then `sdbatch bench --device cuda` and diffusers on the same work, with
# the ratio, and a 2048x2048 VAE decode. Run it on the GPU machine from the repository root,
# with .devcarry/ (made here by scripts/gpu-prepare.sh) carried along:
#
#   bash scripts/gpu-check.sh [STAGE ...]      # default stages: parity bench vae2048
#
# Stages: parity (ctest -L gpu), bench (full-size demo model; sdbatch bench batch 1 and 8 at
# 512x512, 50 steps, CFG 7.5; tests/bench/diffusers_bench.py on the same; the ratio table),
# vae2048 (VAE decode at 2048x2048 on both), profile (GPU time per kernel of one UNet call and one
# VAE decode, with ncu; profile.txt), sanitize (compute-sanitizer memcheck of test_ops_cuda).
# profile and sanitize are not in the default set. The build always runs first.
#
# Every step runs under `timeout`, and the whole run keeps within GPU_CHECK_BUDGET_S seconds
# (default 480): a step gets what is left, and a step that cannot get its minimum is skipped.
# Logs go to $OUT (or ./gpu-check-out): summary.txt (one line per step and the ratio table),
# build.log, ctest.log, ctest-detail.log, sdbatch-bench.log, diffusers-bench.log, sanitize.log —
# at most 8 files, written as the run goes, so a run cut short still returns what it did.
#
# A dry run without a GPU (CPU backend, tiny demo model, small sizes) checks the script itself:
#   GPU_CHECK_DEVICE=cpu GPU_CHECK_FULL_SIZE=0 GPU_CHECK_SIZE=128 GPU_CHECK_STEPS=4 \
#   GPU_CHECK_VAE_SIZE=256 GPU_CHECK_DIFFUSERS_DTYPE=fp32 GPU_CHECK_JOBS=2 \
#   GPU_CHECK_BUILD=/tmp/gc-b GPU_CHECK_MODEL=/tmp/gc-m bash scripts/gpu-check.sh
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
root=$PWD
out=${OUT:-$root/gpu-check-out}
mkdir -p "$out"
budget=${GPU_CHECK_BUDGET_S:-480}
build=${GPU_CHECK_BUILD:-/tmp/b}
model=${GPU_CHECK_MODEL:-/tmp/sdbatch-demo-full}
device=${GPU_CHECK_DEVICE:-cuda}
size=${GPU_CHECK_SIZE:-512}
steps=${GPU_CHECK_STEPS:-50}
vae_size=${GPU_CHECK_VAE_SIZE:-2048}
ddtype=${GPU_CHECK_DIFFUSERS_DTYPE:-fp16}
demo_flags=()
[ "${GPU_CHECK_FULL_SIZE:-1}" = 1 ] && demo_flags=(--full-size)
summary=$out/summary.txt
started=$(date +%s)
stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(parity bench vae2048)

note() { echo "$*" | tee -a "$summary"; }
remaining() { echo $((budget - ($(date +%s) - started))); }
wants() {
  local s
  for s in "${stages[@]}"; do [ "$s" = "$1" ] && return 0; done
  return 1
}

# step NAME LOG MIN MAX COMMAND...: runs COMMAND under timeout (MAX seconds, or what is left of
# the budget), appending its output to LOG; skipped when less than MIN seconds are left.
# Returns the command's status (124 on timeout, 125 when skipped).
step() {
  local name=$1 log=$2 min=$3 max=$4
  shift 4
  local left limit t0 rc
  left=$(remaining)
  if [ "$left" -lt "$min" ]; then
    note "$(printf '%-24s skipped: %ds of the budget left, needs %ds' "$name" "$left" "$min")"
    return 125
  fi
  limit=$((max < left ? max : left))
  echo "=== $name (limit ${limit}s): $*" >> "$log"
  t0=$(date +%s)
  timeout -k 10 "$limit" "$@" >> "$log" 2>&1
  rc=$?
  local verdict=ok
  [ $rc -eq 0 ] || verdict="FAILED (exit $rc)"
  [ $rc -eq 124 ] && verdict="TIMED OUT after ${limit}s"
  note "$(printf '%-24s %s in %ds' "$name" "$verdict" $(($(date +%s) - t0)))"
  return $rc
}

: > "$summary"
note "gpu-check: $(date -u +%FT%TZ), stages: ${stages[*]}, budget ${budget}s, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"

# ---- environment: carried packages (libyaml, cJSON, utf8proc, diffusers), cuDNN ----
if [ -f .devcarry/on-device.sh ]; then
  # shellcheck disable=SC1091
  source .devcarry/on-device.sh >> "$out/build.log" 2>&1
  # The carried .pc files name /usr (libcjson.pc: -I/usr/include/cjson, which CMake rejects when
  # it does not exist there): point them at the prefix they were unpacked to.
  sed -i -E 's#^(prefix|exec_prefix|libdir|includedir)=/usr#\1=/tmp/devdeps/usr#' \
    /tmp/devdeps/usr/lib/x86_64-linux-gnu/pkgconfig/*.pc
else
  note "no .devcarry/ (run scripts/gpu-prepare.sh here and carry .devcarry): the build may miss libyaml/cJSON/utf8proc"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >> "$summary" 2>&1
# The machine's pkg-config, else the carried pkgconf (named explicitly: CMake would otherwise
# prefer the one under CMAKE_PREFIX_PATH)
pkg_config=$(command -v pkg-config || echo /tmp/devdeps/usr/bin/pkgconf)
cmake_extra=("-DPKG_CONFIG_EXECUTABLE=$pkg_config")
# cuDNN: next to the toolkit or in the system include path, else the pip wheel beside torch
have_cudnn=no
for h in /usr/include/cudnn.h /usr/include/x86_64-linux-gnu/cudnn.h /usr/local/cuda/include/cudnn.h \
  /usr/local/cuda/targets/x86_64-linux/include/cudnn.h; do
  [ -f "$h" ] && have_cudnn=$h
done
if [ "$have_cudnn" = no ]; then
  cudnn=$(python3 -c 'import nvidia.cudnn as m; print(list(m.__path__)[0])' 2>/dev/null)
  cudnn_libs=("$cudnn"/lib/libcudnn.so*)
  cudnn_lib=${cudnn_libs[0]}
  if [ -n "$cudnn" ] && [ -f "$cudnn/include/cudnn.h" ] && [ -f "$cudnn_lib" ]; then
    cmake_extra+=("-DSDBATCH_CUDNN_INCLUDE_DIR=$cudnn/include" "-DSDBATCH_CUDNN_LIBRARY=$cudnn_lib")
    export LD_LIBRARY_PATH=$cudnn/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    note "cuDNN from the Python wheel: $cudnn_lib"
  fi
fi
{
  echo "PKG_CONFIG_PATH=${PKG_CONFIG_PATH:-}"
  echo "cuDNN header: $have_cudnn; cmake extra: ${cmake_extra[*]}"
  for m in openblas libcjson libutf8proc yaml-0.1; do
    echo "$pkg_config $m: $("$pkg_config" --modversion $m 2>&1) $("$pkg_config" --libs $m 2>&1)"
  done
  nvcc --version | tail -n 2
} >> "$out/build.log" 2>&1

# ---- build ----
configure=(cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DSDBATCH_CUDA=ON
  -DCMAKE_CUDA_ARCHITECTURES=90 "${cmake_extra[@]}")
if ! step configure "$out/build.log" 20 90 "${configure[@]}"; then
  # MPI is not needed for the GPU checks: try once more without it
  rm -rf "$build"
  if ! step "configure (no MPI)" "$out/build.log" 20 90 "${configure[@]}" -DSDBATCH_MPI=OFF; then
    note "configure failed: see build.log"
    grep -m 20 -E -A3 'CMake Error' "$out/build.log" >> "$summary"
    exit 1
  fi
fi
targets=(sdbatch test_ops_cuda test_pipeline_cuda)
# the NCCL communicator's test, where CMake found NCCL (one rank on one GPU here)
grep -q '^SDBATCH_NCCL:BOOL=ON' "$build/CMakeCache.txt" 2>/dev/null && targets+=(test_comm_nccl)
if ! step build "$out/build.log" 60 300 \
  cmake --build "$build" -j"${GPU_CHECK_JOBS:-16}" --target "${targets[@]}"; then
  note "no build, nothing more to run: see build.log"
  grep -m 20 -E 'error|Error' "$out/build.log" >> "$summary"
  exit 1
fi
sdbatch=$build/sdbatch

# ---- parity: the gpu-labelled tests (op parity, pipeline parity) ----
if wants parity; then
  step "ctest -L gpu" "$out/ctest.log" 30 180 \
    ctest --test-dir "$build" -L gpu --output-on-failure --timeout 170
  cp "$build/Testing/Temporary/LastTest.log" "$out/ctest-detail.log" 2>/dev/null
  grep -E '^[0-9]+% tests passed|tests failed|\*\*\*|Passed|Failed|Skipped' "$out/ctest.log" \
    >> "$summary"
fi

# ---- bench: sdbatch and diffusers on the same work ----
make_model() {
  [ -f "$model/unet/diffusion_pytorch_model.safetensors" ] && return 0
  step "make-demo-model" "$out/sdbatch-bench.log" 20 90 \
    "$sdbatch" make-demo-model "$model" "${demo_flags[@]}"
}
bench_common=(--model "$model" --device "$device" --width "$size" --height "$size"
  --steps "$steps" --guidance-scale 7.5 --scheduler ddim)
if wants bench && make_model; then
  step "sdbatch bench batch 1" "$out/sdbatch-bench.log" 30 90 \
    "$sdbatch" bench "${bench_common[@]}" --batch 1 --repeat 3
  step "diffusers bench 1,8" "$out/diffusers-bench.log" 40 150 \
    env PYTHONUNBUFFERED=1 python3 tests/bench/diffusers_bench.py "${bench_common[@]}" \
    --batch 1,8 --repeat 3 --dtype "$ddtype"
  step "sdbatch bench batch 8" "$out/sdbatch-bench.log" 40 150 \
    "$sdbatch" bench "${bench_common[@]}" --batch 8 --repeat 2
fi

# ---- a 2048x2048 VAE decode (the chunked attention path on 65536 tokens; 1 GiB activations) ----
vae_common=(--model "$model" --device "$device" --width "$vae_size" --height "$vae_size"
  --only vae --repeat 1)
if wants vae2048 && make_model; then
  step "sdbatch vae $vae_size" "$out/sdbatch-bench.log" 20 60 "$sdbatch" bench "${vae_common[@]}"
  step "diffusers vae $vae_size" "$out/diffusers-bench.log" 30 60 \
    env PYTHONUNBUFFERED=1 python3 tests/bench/diffusers_bench.py "${vae_common[@]}" \
    --dtype "$ddtype"
fi

if [ -f "$out/sdbatch-bench.log" ] || [ -f "$out/diffusers-bench.log" ]; then
  note ""
  note "sdbatch on $device (default precision) vs diffusers ($ddtype, SDPA, eager):"
  python3 tests/bench/bench_ratio.py "$out/sdbatch-bench.log" "$out/diffusers-bench.log" \
    2>&1 | tee -a "$summary"
fi

# ---- profile (on request): GPU time per kernel of one UNet call and one VAE decode (ncu) ----
profile_run() { # profile_run NAME ARGS...: ncu over `sdbatch bench ARGS`, summed per kernel
  local name=$1
  shift
  step "ncu $name" "$out/profile.log" 30 150 ncu --clock-control none --csv --page raw \
    --metrics gpu__time_duration.sum --log-file "$out/ncu-$name.csv" "$sdbatch" bench "$@"
  echo "== $name: sdbatch bench $*" >> "$out/profile.txt"
  python3 tests/bench/ncu_summary.py "$out/ncu-$name.csv" 30 >> "$out/profile.txt" 2>&1
  rm -f "$out/ncu-$name.csv"
}
if wants profile && make_model; then
  profile_run unet --model "$model" --device "$device" --width "$size" --height "$size" \
    --only unet --batch 1 --repeat 1
  profile_run vae --model "$model" --device "$device" --width "${GPU_CHECK_PROFILE_VAE:-1024}" \
    --height "${GPU_CHECK_PROFILE_VAE:-1024}" --only vae --repeat 1
  head -n 40 "$out/profile.txt" >> "$summary"
fi

# ---- sanitize (on request): memory errors in the CUDA ops ----
if wants sanitize; then
  step "memcheck test_ops_cuda" "$out/sanitize.log" 60 300 \
    compute-sanitizer --tool memcheck --error-exitcode 1 "$build/tests/test_ops_cuda"
fi

note "gpu-check: done in $(($(date +%s) - started))s"
