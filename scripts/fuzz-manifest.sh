#!/usr/bin/env bash
# Fuzzes the manifest parser (Layout::from_json) with libFuzzer, ASan and UBSan for N seconds.
#   scripts/fuzz-manifest.sh [SECONDS]      (default 30)
# Builds tests/fuzz/fuzz_manifest with clang in build-fuzz/, starts from tests/fuzz/corpus/
# and keeps what it discovers in build-fuzz/corpus/ (the checked-in corpus is only read).
# A failing input is written to build-fuzz/artifacts/ and the script exits non-zero; replay
# it with build-fuzz/tests/fuzz/fuzz_manifest <file>. Needs clang and libclang-rt-14-dev
# (Debian 12), installed here when missing and when running as root.
set -euo pipefail
seconds="${1:-30}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${root}/build-fuzz"

missing=()
command -v clang++ >/dev/null || missing+=(clang)
dpkg -s libclang-rt-14-dev >/dev/null 2>&1 || missing+=(libclang-rt-14-dev)
dpkg -s libomp-dev >/dev/null 2>&1 || missing+=(libomp-dev)  # find_package(OpenMP) under clang
dpkg -s nlohmann-json3-dev >/dev/null 2>&1 || missing+=(nlohmann-json3-dev)
command -v ninja >/dev/null || missing+=(ninja-build)
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]]; then
    apt-get update -qq && apt-get install -y -qq "${missing[@]}"
  else
    echo "fuzz-manifest: missing packages: ${missing[*]} (sudo apt-get install ${missing[*]})" >&2
    exit 2
  fi
fi

cmake -S "${root}" -B "${build}" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER=clang++ \
  -DFLATGATHER_FUZZERS=ON -DFLATGATHER_TORCH=OFF -DFLATGATHER_CUDA=OFF -DFLATGATHER_TESTS=OFF \
  -DFLATGATHER_BENCH=OFF -DFLATGATHER_EXAMPLES=OFF -DFLATGATHER_INSTALL=OFF >/dev/null
nice -n 5 cmake --build "${build}" --target fuzz_manifest -j "${FLATGATHER_JOBS:-2}"

mkdir -p "${build}/corpus" "${build}/artifacts"
echo "fuzz-manifest: ${seconds} s, corpus ${build}/corpus + tests/fuzz/corpus"
"${build}/tests/fuzz/fuzz_manifest" -max_total_time="${seconds}" -max_len=4096 -timeout=10 \
  -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="${build}/artifacts/" \
  "${build}/corpus" "${root}/tests/fuzz/corpus"
