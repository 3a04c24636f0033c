#!/usr/bin/env bash
# Installs the Debian packages sdbatch builds against (skips apt when all are present).
# The CUDA toolkit (nvcc, cuBLAS, cuDNN, NCCL) is not a Debian package here: when nvcc is on the
# PATH the CUDA backend is built too, otherwise it is left out.
set -euo pipefail
# clang, libclang-rt-dev (libFuzzer, sanitizer runtimes) and libomp-dev (clang's OpenMP) build the
# fuzz harnesses (scripts/fuzz.sh); gcc's own sanitizers serve scripts/test.sh --sanitize.
packages=(build-essential cmake pkg-config libdnnl-dev libpng-dev zlib1g-dev libcjson-dev
          libyaml-dev libutf8proc-dev libjpeg62-turbo-dev libopenmpi-dev openmpi-bin libhdf5-dev
          hdf5-tools clang libclang-rt-dev libomp-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
  "${missing[@]}"
