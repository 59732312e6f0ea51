#!/usr/bin/env bash
# Fuzzes the manifest parser (Layout::from_json) with libFuzzer, ASan and UBSan for N seconds.
#   scripts/fuzz-manifest.sh [SECONDS]      (default 30)
# Builds tests/fuzz/fuzz_manifest with clang (CMake preset "fuzz", build-fuzz/), starts from
# tests/fuzz/corpus/ and keeps what it discovers in build-fuzz/corpus/ (the checked-in corpus is
# only read). A failing input is written to build-fuzz/artifacts/ and the script exits non-zero;
# replay it with build-fuzz/tests/fuzz/fuzz_manifest <file>. Needs clang and libclang-rt-14-dev
# (scripts/deps.sh installs them).
set -euo pipefail
seconds="${1:-30}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${root}/build-fuzz"
cd "${root}"

scripts/deps.sh
cmake --preset fuzz >/dev/null
nice -n 5 cmake --build --preset fuzz -j "${FLATGATHER_JOBS:-2}"

mkdir -p "${build}/corpus" "${build}/artifacts"
echo "fuzz-manifest: ${seconds} s, corpus ${build}/corpus + tests/fuzz/corpus"
"${build}/tests/fuzz/fuzz_manifest" -max_total_time="${seconds}" -max_len=4096 -timeout=10 \
  -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="${build}/artifacts/" \
  "${build}/corpus" "${root}/tests/fuzz/corpus"
