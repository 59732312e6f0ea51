#!/usr/bin/env bash
# The core library without LibTorch: configures build-core/ with -DFLATGATHER_TORCH=OFF and the
# tests on (no CUDA: the core's CPU path), builds it and runs its CTest suite. Proves that the
# core neither needs LibTorch to build nor to be tested.
#   scripts/test-core-only.sh
# Environment: FLATGATHER_JOBS (build jobs, default 2). Uses ccache when it is installed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"
jobs="${FLATGATHER_JOBS:-2}"
launcher=()
if command -v ccache >/dev/null 2>&1; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
cmake -S . -B build-core -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLATGATHER_TORCH=OFF \
  -DFLATGATHER_CUDA=OFF -DFLATGATHER_TESTS=ON -DFLATGATHER_BENCH=OFF \
  -DFLATGATHER_EXAMPLES=OFF -DFLATGATHER_INSTALL=OFF "${launcher[@]}" >/dev/null
nice -n 5 cmake --build build-core -j "${jobs}"
ctest --test-dir build-core --output-on-failure -j "${jobs}" --no-tests=error
