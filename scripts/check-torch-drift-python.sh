#!/usr/bin/env bash
# Builds the operators (CPU only) against the PyTorch the GPU machine runs and runs the Python
# tests with it, so that drift between LibTorch versions in what the operators do (not only
# in what compiles: scripts/check-torch-drift.sh) shows up before GPU time is spent. Two such
# drifts were first seen on the H200 (2026-11-30): LibTorch 2.11 writes a bfloat16 NaN cast
# to float16 with other bits than 1.13, and a pip torch on a machine with Debian's
# libtorch-dev linked the operators to Debian's libc10 (NOTE: [torch's own libraries]).
#
#   scripts/check-torch-drift-python.sh [TORCH_VERSION=2.11.0] [pytest args...]
#
# Installs torch (with its CUDA libraries: about 5 GB, once), numpy and pytest into a virtual
# environment under ${XDG_CACHE_HOME:-~/.cache}/flatgather/venv-TORCH_VERSION, builds into
# build-pTORCH_VERSION/, then runs tests/python on the CPU. Needs network the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:-2.11.0}
[ $# -gt 0 ] && shift
venv=${XDG_CACHE_HOME:-$HOME/.cache}/flatgather/venv-$version
build=build-p${version//./}

if ! "$venv/bin/python" -c "import torch, numpy, pytest" >/dev/null 2>&1; then
  echo "check-torch-drift-python: installing torch $version into $venv (about 5 GB, once)"
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q "torch==$version" numpy pytest
fi
prefix=$("$venv/bin/python" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDACXX=/usr/local/cuda/bin/nvcc  # a CUDA build of torch's CMake config looks for it
fi
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLATGATHER_CUDA=OFF \
  -DFLATGATHER_TESTS=OFF -DFLATGATHER_BENCH=OFF -DFLATGATHER_EXAMPLES=OFF \
  -DFLATGATHER_INSTALL=OFF -DFLATGATHER_WERROR=OFF "-DCMAKE_PREFIX_PATH=$prefix" \
  "-DPython3_EXECUTABLE=$venv/bin/python" "${launcher[@]}" >/dev/null
ninja -C "$build" flatgather_torch
PYTHONPATH=python FLATGATHER_LIBRARY="$PWD/$build/libflatgather_torch.so" \
  FLATGATHER_REQUIRE_LIBRARY=1 PYTHONDONTWRITEBYTECODE=1 \
  "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/python "$@"
echo "torch $version: the Python tests pass against it (CPU)"
