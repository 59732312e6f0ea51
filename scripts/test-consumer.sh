#!/usr/bin/env bash
# Packaging check: flatgather used the two ways a downstream project would.
#   1. install an existing build to a temporary prefix (`cmake --install`) and build and run
#      tests/consumer/find-package against it (find_package(flatgather));
#   2. build and run tests/consumer/add-subdirectory, which vendors this repository.
# Both link flatgather::torch and run a gather/scatter round trip.
#
#   scripts/test-consumer.sh [BUILD_DIR]     (default: build/, configured with the CMake preset
#                                            "default" if missing; another folder must exist)
# Environment: JOBS (default 2) parallel build jobs; KEEP=1 keeps the temporary directory.
# Prints "N passed, N failed" last, one count per consumer program run.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-build}
[[ $build = /* ]] || build=$root/$build
jobs=${JOBS:-2}
generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi

tmp=$(mktemp -d /tmp/flatgather-consumer-XXXXXX)
cleanup() { if [[ ${KEEP:-0} = 1 ]]; then echo "kept $tmp"; else rm -rf "$tmp"; fi; }
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }
passed=0
# run_consumer PROGRAM: runs one consumer (set -e stops the script at the first that fails).
run_consumer() { "$1"; passed=$((passed + 1)); }

if [[ ! -f $build/CMakeCache.txt ]]; then
  if [[ $build != "$root/build" ]]; then
    echo "FAIL: $build is not a configured build folder" >&2
    exit 1
  fi
  step "configure $build (preset default)"
  (cd "$root" && cmake --preset default)
fi
cache_value() { sed -n "s/^$1:[A-Z]*=//p" "$build/CMakeCache.txt"; }
cuda=$(cache_value FLATGATHER_CUDA)
build_type=$(cache_value CMAKE_BUILD_TYPE)
if [[ $(cache_value FLATGATHER_TORCH) != ON ]]; then
  echo "FAIL: $build was configured with FLATGATHER_TORCH=OFF; the consumers need flatgather::torch" >&2
  exit 1
fi

step "build and install $build to $tmp/prefix"
nice -n 5 cmake --build "$build" --target flatgather flatgather_torch -j "$jobs"
cmake --install "$build" --prefix "$tmp/prefix" >"$tmp/install.log"
echo "installed $(wc -l <"$tmp/install.log") files"

step "find_package(flatgather) consumer"
cmake -S "$root/tests/consumer/find-package" -B "$tmp/find-package" "${generator[@]}" \
  -DCMAKE_BUILD_TYPE="${build_type:-Release}" -DCMAKE_PREFIX_PATH="$tmp/prefix"
nice -n 5 cmake --build "$tmp/find-package" -j "$jobs"
run_consumer "$tmp/find-package/core_consumer"
run_consumer "$tmp/find-package/consumer"

step "add_subdirectory(flatgather) consumer"
cmake -S "$root/tests/consumer/add-subdirectory" -B "$tmp/add-subdirectory" "${generator[@]}" \
  -DCMAKE_BUILD_TYPE="${build_type:-Release}" -DFLATGATHER_SOURCE_DIR="$root" \
  -DFLATGATHER_CUDA="${cuda:-OFF}"
nice -n 5 cmake --build "$tmp/add-subdirectory" -j "$jobs"
run_consumer "$tmp/add-subdirectory/core_consumer"
run_consumer "$tmp/add-subdirectory/consumer"

step "consumers passed"
echo "$passed passed, 0 failed"
