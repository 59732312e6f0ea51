#!/usr/bin/env bash
# Configures and builds flatgather into build/ with the CMake preset "default" (Release; the
# CUDA executor when a toolkit is found, nvcc on PATH or in /usr/local/cuda).
#   scripts/build.sh [extra cmake configure args...]
# Environment: FLATGATHER_JOBS (build jobs, default: every core).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDACXX=/usr/local/cuda/bin/nvcc
fi
if [ ! -f build/build.ninja ] || [ $# -gt 0 ]; then
  cmake --preset default "$@"
fi
cmake --build --preset default -j "${FLATGATHER_JOBS:-$(nproc)}"
