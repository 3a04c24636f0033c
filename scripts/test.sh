#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs the whole ctest suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/install-slurm.sh # the one-node Slurm of tests/test_slurm.sh (skipped without it)
scripts/build.sh
ctest --test-dir build --output-on-failure -j"$(nproc 2>/dev/null || echo 2)" "$@"
