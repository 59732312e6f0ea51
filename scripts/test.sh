#!/usr/bin/env bash
# Every test: installs what is missing, builds into build/, runs the C++ tests (CTest), the
# Python tests (pytest), the packaging consumers, the sanitizer build and a short fuzz run.
# GPU tests (label gpu) skip with a reason where no device is present.
#   scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh

stage() { printf '\n==== %s ====\n' "$*"; }
start=$(date +%s)

stage "build"
scripts/build.sh

stage "C++ tests (ctest)"
ctest --test-dir build --output-on-failure -j 2 --no-tests=error

stage "Python tests (pytest)"
PYTHONPATH=python FLATGATHER_LIBRARY="$PWD/build/libflatgather_torch.so" FLATGATHER_REQUIRE_LIBRARY=1 \
  /usr/bin/python3 -m pytest -q tests/python

for extra in scripts/test-consumer.sh scripts/sanitize.sh scripts/fuzz-manifest.sh; do
  if [ -x "$extra" ]; then
    stage "$extra"
    "$extra"
  fi
done

stage "all tests passed in $(( $(date +%s) - start )) s"
