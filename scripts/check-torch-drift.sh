#!/usr/bin/env bash
# Compiles every object of the project (CUDA on) against the headers and CMake config of the
# PyTorch the GPU machine runs, so API drift shows up before GPU time is spent. Nothing is
# linked or run: the wheel's CUDA libraries are not installed here.
#   scripts/check-torch-drift.sh [TORCH_VERSION=2.11.0]
# Downloads the wheel once (about 530 MB) into ${XDG_CACHE_HOME:-~/.cache}/flatgather.
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:-2.11.0}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/flatgather/torch-$version
build=build-t${version//./}

if [ ! -f "$cache/torch/share/cmake/Torch/TorchConfig.cmake" ]; then
  mkdir -p "$cache"
  /usr/bin/python3 -m pip download --no-deps --only-binary=:all: --python-version 3.11 \
    --platform manylinux_2_28_x86_64 -d "$cache" "torch==$version"
  (cd "$cache" && unzip -q -o torch-*.whl 'torch/include/*' 'torch/share/*' && rm -f torch-*.whl)
fi
# Only headers and CMake files are unpacked (the libraries are gigabytes and nothing is linked),
# but the wheel's exported targets check at configure time that every imported library file
# exists. Empty stand-ins at those paths satisfy that check; linking against them would fail
# loudly, and this script never links.
mapfile -t libraries < <(grep -ohE '[$][{]_IMPORT_PREFIX[}]/lib/[A-Za-z0-9_.+-]+' \
  "$cache"/torch/share/cmake/Caffe2/*.cmake | sed 's|^[$][{]_IMPORT_PREFIX[}]/||' | sort -u)
for library in "${libraries[@]}"; do
  [ -e "$cache/torch/$library" ] || { mkdir -p "$cache/torch/lib" && : >"$cache/torch/$library"; }
done
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDACXX=/usr/local/cuda/bin/nvcc
fi
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLATGATHER_CUDA=ON \
  -DCMAKE_PREFIX_PATH="$cache/torch/share/cmake" -DTorch_DIR="$cache/torch/share/cmake/Torch" >/dev/null
mapfile -t objects < <(ninja -C "$build" -t targets all | grep -oE '^[^:]+\.(cpp|cu)\.o' | grep -v fuzz)
ninja -C "$build" -j "$(nproc)" "${objects[@]}"
echo "torch $version: ${#objects[@]} objects compile"
