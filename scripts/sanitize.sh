#!/usr/bin/env bash
# Builds tests with a sanitizer CMake preset and runs them (docs/reliability.md, "Sanitizers"):
#   asan  the CPU tests under AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/)
#   tsan  only the threaded CPU tests (test_concurrency, test_plan) and tsan_race_pin, a real
#         race that TSan must report, under ThreadSanitizer (build-tsan/); the preset's build
#         names just those targets
# LibTorch (and libgomp) are not instrumented; suppressions, each with its reason, are in
# tests/sanitizers/ and docs/reliability.md.
#   scripts/sanitize.sh [asan|tsan]     configure, build, test (default asan)
# Environment: FLATGATHER_JOBS (build jobs, default 2), FLATGATHER_FUZZ_SECONDS (budget of
# test_fuzz, default 10 here).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"
preset="${1:-asan}"
case "${preset}" in
  asan | tsan) ;;
  *) echo "sanitize.sh: unknown preset '${preset}'; use asan or tsan" >&2; exit 2 ;;
esac
scripts/deps.sh
jobs="${FLATGATHER_JOBS:-2}"
start=$(date +%s)
cmake --preset "${preset}" >/dev/null
nice -n 5 cmake --build --preset "${preset}" -j "${jobs}"
built=$(date +%s)
export FLATGATHER_FUZZ_SECONDS="${FLATGATHER_FUZZ_SECONDS:-10}"
ctest --preset "${preset}" -j "${jobs}"
end=$(date +%s)
echo "sanitize ${preset}: build $((built - start)) s, tests $((end - built)) s"
