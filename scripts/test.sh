#!/usr/bin/env bash
# Every test, as CI runs it (.ci/run): installs what is missing (scripts/deps.sh), then runs
# the stages listed at the bottom, in order. Each stage's full output goes to
# build/logs/<stage>.log; the console gets one line per stage and, last, a table (stage,
# result, passed/failed/skipped, time, log), the tail of each failing stage's log, and the
# totals as "N passed, N failed, N skipped". A stage that fails does not stop the later ones;
# the exit status is 1 if any failed.
#   scripts/test.sh
# Environment: FLATGATHER_JOBS (build jobs, default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh

logs=build/logs
mkdir -p "$logs"
export FLATGATHER_JOBS=${FLATGATHER_JOBS:-2}
# Seven stages compile overlapping sources (build/, build-asan/, the consumers, the wheel, the
# GPU rehearsal...): ccache (scripts/deps.sh) turns the repeats, and reruns, into cache hits.
# CMake reads these variables when it configures a new build folder.
if command -v ccache >/dev/null 2>&1; then
  export CMAKE_CXX_COMPILER_LAUNCHER=ccache CMAKE_CUDA_COMPILER_LAUNCHER=ccache
fi
rows=()      # "name|result|passed|failed|skipped|seconds|log"
failures=()  # logs of the stages that failed
total_passed=0 total_failed=0 total_skipped=0
start=$(date +%s)

# counts LOG: "passed failed skipped" from the last test summary in LOG: CTest's "N% tests
# passed, F tests failed out of T" (with "(Skipped)" lines), pytest's "N passed, N skipped in
# 3.2s", or a plain "N passed, N failed" line; "- - -" when there is none.
counts() {
  awk '
    /tests passed, [0-9]+ tests? failed out of [0-9]+/ {
      # Fields counted from the match, so a prefix ("ctest: 100% tests passed, ...") is fine.
      line = $0; sub(/.*tests passed, /, "", line); n = split(line, w, " ")
      kind = "ctest"; failed = w[1]; total = w[n]; skipped = 0; next
    }
    kind == "ctest" && /\(Skipped\)$/ { skipped++; next }
    /^(=+ )?[0-9]+ (passed|failed|skipped|error)/ && ($0 ~ / in [0-9.]+s/ || $0 ~ /passed, [0-9]+ failed/) {
      kind = "plain"; p = f = s = 0
      n = split($0, w, /[ ,]+/)
      for (i = 2; i <= n; i++) {
        if (w[i] ~ /^passed/) p = w[i - 1]
        if (w[i] ~ /^(failed|errors?)/) f += w[i - 1]
        if (w[i] ~ /^skipped/) s = w[i - 1]
      }
      passed = p; failed = f; skipped = s
    }
    END {
      if (kind == "ctest") print total - failed - skipped, failed, skipped
      else if (kind == "plain") print passed, failed, skipped
      else print "- - -"
    }' "$1"
}

# stage NAME COMMAND...: runs one stage, its output to $logs/NAME.log, and records its row.
stage() {
  local name=$1 log="$logs/$1.log" t0 rc=0 result passed failed skipped
  shift
  printf '%-10s ' "$name"
  t0=$(date +%s)
  "$@" >"$log" 2>&1 || rc=$?
  read -r passed failed skipped < <(counts "$log")
  if ((rc == 0)); then
    result=ok
  else
    result="FAIL($rc)"
    failures+=("$log")
    # A stage that failed without a test count (a build, a script) counts as one failure.
    [[ $failed == - || $failed == 0 ]] && failed=1
  fi
  [[ $passed == - ]] || total_passed=$((total_passed + passed))
  [[ $failed == - ]] || total_failed=$((total_failed + failed))
  [[ $skipped == - ]] || total_skipped=$((total_skipped + skipped))
  rows+=("$name|$result|$passed|$failed|$skipped|$(($(date +%s) - t0))|$log")
  local tally=""
  [[ $passed == - ]] || tally="$passed passed, $failed failed, $skipped skipped, "
  printf '%-9s %s%s s\n' "$result" "$tally" "$(($(date +%s) - t0))"
}

# The stages, in order; a missing script is a failing stage, never a silent skip. Adding a
# stage is one line here.
stage build scripts/build.sh
stage ctest ctest --preset default -j "$FLATGATHER_JOBS"
stage pytest env PYTHONPATH=python FLATGATHER_LIBRARY="$PWD/build/libflatgather_torch.so" \
  FLATGATHER_REQUIRE_LIBRARY=1 /usr/bin/python3 -m pytest -q -rs tests/python
stage lint scripts/lint.sh
stage consumer scripts/test-consumer.sh
stage asan scripts/sanitize.sh
# Only the threaded tests (test_concurrency, test_plan) and the race pin, under TSan.
stage tsan scripts/sanitize.sh tsan
stage fuzz scripts/fuzz-manifest.sh 30
# The core alone (no LibTorch, no CUDA): configures, builds and passes its tests.
stage core-only scripts/test-core-only.sh
# The installed package, as pip users get it; one CUDA architecture keeps the wheel's build short.
stage py-package scripts/test-python-package.sh \
  --config-settings=cmake.define.FLATGATHER_CUDA_ARCHITECTURES=90
# The GPU check's rehearsal: its build against the carried packages only, its CPU steps.
stage gpu-rehearsal scripts/ci-gpu-rehearsal.sh

echo
printf '%-10s %-9s %7s %7s %8s %7s  %s\n' stage result passed failed skipped time log
for row in "${rows[@]}"; do
  IFS='|' read -r name result passed failed skipped seconds log <<<"$row"
  printf '%-10s %-9s %7s %7s %8s %6ss  %s\n' "$name" "$result" "$passed" "$failed" "$skipped" \
    "$seconds" "$log"
done
for log in "${failures[@]}"; do
  printf '\n---- the last 40 lines of %s\n' "$log"
  tail -n 40 "$log"
done
printf '\n%d stages in %d s; why a test skipped: "(Skipped)" and "SKIPPED" in the logs\n' \
  "${#rows[@]}" "$(($(date +%s) - start))"
echo "$total_passed passed, $total_failed failed, $total_skipped skipped"
((${#failures[@]} == 0))
