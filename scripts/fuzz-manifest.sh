#!/usr/bin/env bash
# Fuzzes the two parsers of untrusted input with libFuzzer, ASan and UBSan, N seconds each:
# the manifest (Layout::from_json) and the safetensors header (parse_safetensors).
#   scripts/fuzz-manifest.sh [SECONDS]      (default 30)
# Builds tests/fuzz/fuzz_manifest and fuzz_safetensors with clang (CMake preset "fuzz",
# build-fuzz/), starts from tests/fuzz/corpus/ (corpus_safetensors/) and keeps what it
# discovers in build-fuzz/corpus/ (corpus_safetensors/; the checked-in corpora are only
# read). A failing input is written to build-fuzz/artifacts/ and the script exits non-zero;
# replay it with build-fuzz/tests/fuzz/<target> <file>. Needs clang and libclang-rt-14-dev
# (scripts/deps.sh installs them).
set -euo pipefail
seconds="${1:-30}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${root}/build-fuzz"
cd "${root}"

scripts/deps.sh
cmake --preset fuzz >/dev/null
nice -n 5 cmake --build --preset fuzz -j "${FLATGATHER_JOBS:-2}"

mkdir -p "${build}/corpus" "${build}/corpus_safetensors" "${build}/artifacts"
for target in manifest:corpus safetensors:corpus_safetensors; do
  name=${target%%:*}
  corpus=${target#*:}
  echo "fuzz-${name}: ${seconds} s, corpus ${build}/${corpus} + tests/fuzz/${corpus}"
  "${build}/tests/fuzz/fuzz_${name}" -max_total_time="${seconds}" -max_len=4096 -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="${build}/artifacts/" \
    "${build}/${corpus}" "${root}/tests/fuzz/${corpus}"
done
