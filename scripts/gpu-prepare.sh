#!/usr/bin/env bash
# Run HERE, on a machine that reaches the Debian and PyPI registries, before a GPU session: fills
# .devcarry/ (ignored by git) with what the GPU machine lacks, for scripts/gpu-check.sh to use
# there (docs/cuda.md, "GPU session checklist"). It calls the shared
# ../shared/device/prepare-carry.sh (libyaml, cJSON, the diffusers wheel, on-device.sh) with this
# project's extra Debian packages: libutf8proc (the tokenizer), oneDNN (the CPU backend's GEMM and
# convolutions, with the OpenCL loader its library links) and pkgconf (used there only if the
# machine has no pkg-config). Then it checks that pkg-config finds the carried libraries and
# that a program runs on them.
#
#   scripts/gpu-prepare.sh            # then carry .devcarry with the run: carry=[".devcarry"]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
prepare=${SDBATCH_PREPARE_CARRY:-$root/../shared/device/prepare-carry.sh}
if [ ! -x "$prepare" ]; then
  echo "gpu-prepare: $prepare not found (set SDBATCH_PREPARE_CARRY)" >&2
  exit 1
fi
"$prepare" libutf8proc2 libutf8proc-dev libdnnl2 libdnnl-dev ocl-icd-libopencl1 pkgconf-bin \
  libpkgconf3

for deb in libyaml-0-2 libyaml-dev libcjson1 libcjson-dev libutf8proc2 libutf8proc-dev libdnnl2 \
  libdnnl-dev ocl-icd-libopencl1 pkgconf-bin libpkgconf3; do
  if ! ls .devcarry/debs/"${deb}"_*.deb > /dev/null 2>&1; then
    echo "gpu-prepare: .devcarry/debs lacks $deb" >&2
    exit 1
  fi
done
if ! ls .devcarry/wheels/diffusers-*.whl > /dev/null 2>&1; then
  echo "gpu-prepare: .devcarry/wheels lacks the diffusers wheel" >&2
  exit 1
fi

# The carried libraries as the GPU machine will use them: unpacked under a scratch prefix,
# pkg-config finds them through PKG_CONFIG_PATH alone (PKG_CONFIG_LIBDIR empties its system search
# path), and a program linked against the carried .so files runs on them through LD_LIBRARY_PATH.
# (There, CMake's pkg_check_modules first looks in the .pc files' libdir, /usr/lib/<arch>, where
# the machine has no copies, then in CMAKE_PREFIX_PATH, which on-device.sh points at the carried
# prefix; here the system's own copies would answer first, so that part is not re-checked.)
check=$(mktemp -d)
trap 'rm -rf "$check"' EXIT
for f in .devcarry/debs/*.deb; do dpkg -x "$f" "$check"; done
lib=$check/usr/lib/x86_64-linux-gnu
modules=(libcjson libutf8proc yaml-0.1)
if ! PKG_CONFIG_LIBDIR="" PKG_CONFIG_PATH=$lib/pkgconfig pkg-config --exists "${modules[@]}"; then
  echo "gpu-prepare: pkg-config does not find ${modules[*]} in the carried packages" >&2
  exit 1
fi
cat > "$check/carry_check.c" << 'C'
#include <cjson/cJSON.h>
#include <stdio.h>
#include <utf8proc.h>
#include <yaml.h>
int main(void) {
  printf("cJSON %s, libyaml %s, utf8proc %s\n", cJSON_Version(), yaml_get_version_string(),
         utf8proc_version());
  return 0;
}
C
cc -o "$check/carry_check" "$check/carry_check.c" -I"$check/usr/include" \
  "$lib/libcjson.so" "$lib/libyaml.so" "$lib/libutf8proc.so"
linked=$(LD_LIBRARY_PATH=$lib ldd "$check/carry_check" | grep -cF "$lib")
if [ "$linked" -ne 3 ] || ! LD_LIBRARY_PATH=$lib "$check/carry_check"; then
  LD_LIBRARY_PATH=$lib ldd "$check/carry_check" >&2
  echo "gpu-prepare: the check program does not run on the carried libraries" >&2
  exit 1
fi
echo "gpu-prepare: .devcarry ready ($(du -sh .devcarry | cut -f1)); on the GPU machine run"
echo "  bash scripts/gpu-check.sh     (device tool: carry [\".devcarry\"], timeout_s 560)"
