#!/usr/bin/env bash
# Builds the CPU tests with AddressSanitizer + UndefinedBehaviorSanitizer (CMake preset
# "asan", build-asan/) and runs them. LibTorch is not instrumented; suppressions, each with
# its reason, are in tests/sanitizers/ and docs/reliability.md.
#   scripts/sanitize.sh            configure, build, test
# Environment: FLATGATHER_JOBS (build jobs, default 2), FLATGATHER_FUZZ_SECONDS (budget of
# test_fuzz, default 10 here).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"
scripts/deps.sh
jobs="${FLATGATHER_JOBS:-2}"
start=$(date +%s)
cmake --preset asan >/dev/null
nice -n 5 cmake --build --preset asan -j "${jobs}"
built=$(date +%s)
export FLATGATHER_FUZZ_SECONDS="${FLATGATHER_FUZZ_SECONDS:-10}"
ctest --preset asan -j "${jobs}"
end=$(date +%s)
echo "sanitize: build $((built - start)) s, tests $((end - built)) s"
