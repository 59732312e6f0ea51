#!/usr/bin/env bash
# The GPU check, on a machine with an NVIDIA GPU (by hand, in docker/Dockerfile, in GPU CI):
#   1. configure against the PyTorch of `python3` (or the LibTorch in $FLATGATHER_LIBTORCH),
#      with GoogleTest / Google Benchmark from the system or from .debs/ (dpkg -x);
#   2. build everything with all cores into build-gpu/;
#   3. run every CTest test, the `gpu` label included;
#   4. run a small subset of the GPU tests under compute-sanitizer memcheck and racecheck;
#   5. run flatgather-bench's CUDA suites (JSON) when the benchmark was built;
# and write every log, the benchmark JSON and the kernels' ptxas resource lines to $OUT
# (default build-gpu/gpu-check/). A summary table comes last. Budget: under 8 minutes on an
# H200 with 16 cores.
#
#   scripts/gpu-check.sh                         # PyTorch from python3
#   FLATGATHER_LIBTORCH=/opt/libtorch OUT=/tmp/r scripts/gpu-check.sh
#
# Variables: FLATGATHER_LIBTORCH (a LibTorch folder or its share/cmake), OUT, FLATGATHER_BUILD_DIR
# (default build-gpu), FLATGATHER_CUDA_ARCHITECTURES (default 80;90), JOBS (default: all cores).
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${FLATGATHER_BUILD_DIR:-$root/build-gpu}
out=${OUT:-$build/gpu-check}
jobs=${JOBS:-$(nproc)}
archs=${FLATGATHER_CUDA_ARCHITECTURES:-80;90}
# PyTorch's CMake config adds -gencode flags for every architecture it guesses when no GPU is
# visible at configure time; keep it to ours (see docker/Dockerfile).
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-8.0;9.0}
mkdir -p "$out" "$build"
t0=$(date +%s)

rows=()     # "step|result|seconds|detail"
failed=0

# run_step NAME LOG TIMEOUT_S COMMAND...: runs a step with a time limit, records its row.
run_step() {
  local name=$1 log=$2 limit=$3
  shift 3
  local start rc result
  start=$(date +%s)
  printf '==== %s (log: %s)\n' "$name" "$log"
  timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1
  rc=$?
  if [ "$rc" -eq 0 ]; then
    result=pass
  elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    result="TIMEOUT (${limit}s)"
    failed=1
  else
    result="FAIL (rc $rc)"
    failed=1
  fi
  rows+=("$name|$result|$(( $(date +%s) - start ))|$(basename "$log")")
  tail -n 5 "$log"
  return "$rc"
}

skip_step() {
  rows+=("$1|skipped|0|$2")
  printf '==== %s: skipped (%s)\n' "$1" "$2"
}

# ---- environment --------------------------------------------------------------------------
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: ${FLATGATHER_GIT_COMMIT:-$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)}"
  gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader 2>/dev/null) ||
    gpu="none (nvidia-smi failed or is missing)"
  echo "gpu: $gpu"
  nvcc --version 2>&1 | tail -n 1 | sed 's/^/nvcc: /'
  python3 -c 'import torch; print("torch:", torch.__version__, "cuda", torch.version.cuda)' 2>&1
  echo "cores: $(nproc), jobs: $jobs, architectures: $archs"
} >"$out/env.txt" 2>&1
cat "$out/env.txt"

# ---- LibTorch -----------------------------------------------------------------------------
prefix=()
if [ -n "${FLATGATHER_LIBTORCH:-}" ]; then
  if [ -d "$FLATGATHER_LIBTORCH/share/cmake" ]; then
    prefix+=("$FLATGATHER_LIBTORCH/share/cmake")
  else
    prefix+=("$FLATGATHER_LIBTORCH")
  fi
else
  torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>>"$out/env.txt") || torch_prefix=
  if [ -n "$torch_prefix" ]; then
    prefix+=("$torch_prefix")
  else
    echo "no PyTorch in python3 and no FLATGATHER_LIBTORCH: configuring with the system LibTorch" | tee -a "$out/env.txt"
  fi
fi

# ---- GoogleTest / Google Benchmark: the system's, else the .debs/ carried with the tree ----
have_cmake_package() {  # have_cmake_package GTest|benchmark
  local d
  for d in /usr/lib/x86_64-linux-gnu/cmake /usr/lib/aarch64-linux-gnu/cmake /usr/lib/cmake \
           /usr/lib64/cmake /usr/local/lib/cmake /usr/local/lib64/cmake /usr/share/cmake; do
    [ -f "$d/$1/$1Config.cmake" ] || [ -f "$d/$1/$(echo "$1" | tr '[:upper:]' '[:lower:]')-config.cmake" ] && return 0
  done
  return 1
}
deps=$build/deps
cmake_extra=()
if ! have_cmake_package GTest || ! have_cmake_package benchmark; then
  if compgen -G "$root/.debs/*.deb" >/dev/null; then
    mkdir -p "$deps"
    for deb in "$root"/.debs/*.deb; do dpkg -x "$deb" "$deps"; done
    libdir=$(dirname "$(find "$deps" -name 'GTestConfig.cmake' -print -quit)")
    [ -n "$libdir" ] && [ "$libdir" != . ] && cmake_extra+=("-DGTest_DIR=$libdir")
    libdir=$(dirname "$(find "$deps" -name 'benchmarkConfig.cmake' -print -quit)")
    [ -n "$libdir" ] && [ "$libdir" != . ] && cmake_extra+=("-Dbenchmark_DIR=$libdir")
    prefix+=("$deps/usr")
    # libbenchmark1debian ships a shared library.
    for l in "$deps"/usr/lib/*-linux-gnu; do
      [ -d "$l" ] && export LD_LIBRARY_PATH="$l${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    done
    echo "GoogleTest/Benchmark from .debs/: ${cmake_extra[*]}" | tee -a "$out/env.txt"
  else
    echo "GoogleTest or Google Benchmark missing and no .debs/ folder" | tee -a "$out/env.txt"
  fi
fi

# ---- configure, build ----------------------------------------------------------------------
prefix_path=$(IFS=';'; echo "${prefix[*]:-}")
if run_step configure "$out/configure.log" 300 \
    cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DFLATGATHER_CUDA=ON "-DFLATGATHER_CUDA_ARCHITECTURES=$archs" \
      -DFLATGATHER_TESTS=ON -DFLATGATHER_BENCH=ON -DFLATGATHER_INSTALL=OFF \
      "-DCMAKE_PREFIX_PATH=$prefix_path" "${cmake_extra[@]}"; then
  # Recompile the kernels every time so that their ptxas resource lines are in the log.
  rm -f "$build/CMakeFiles/flatgather.dir/kernels/gather_scatter.cu.o"
  run_step build "$out/build.log" 420 cmake --build "$build" -j "$jobs"
  built=$?
  grep -E 'ptxas info *: (Compiling entry|Used)|spill' "$out/build.log" | grep -A2 'gather_scatter_kernel' \
    >"$out/ptxas.txt" 2>/dev/null || true
else
  built=1
fi

if [ "$built" -eq 0 ]; then
  # ---- tests ---------------------------------------------------------------------------------
  run_step ctest "$out/ctest.log" 300 \
    ctest --test-dir "$build" --output-on-failure -j 4 --no-tests=error --output-junit "$out/ctest.xml"
  grep -E 'tests passed|tests failed|Total Test time|\*\*\*' "$out/ctest.log" | tail -n 20 >"$out/ctest-summary.txt" || true
  # The GPU test binary once more, verbose, so its skips and timings are in the logs.
  if [ -x "$build/tests/test_cuda" ]; then
    run_step test_cuda "$out/test_cuda.log" 240 "$build/tests/test_cuda" --gtest_color=no
  fi

  # ---- compute-sanitizer on a small subset -----------------------------------------------------
  sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  subset='CudaGatherScatter.OddAlignments:CudaGatherScatter.EmptyAndSingleTensors:CudaRebind.*:CudaGraph.*'
  if [ -x "$sanitizer" ] && [ -x "$build/tests/test_cuda" ]; then
    run_step memcheck "$out/memcheck.log" 240 "$sanitizer" --tool memcheck --error-exitcode 1 \
      --leak-check no "$build/tests/test_cuda" "--gtest_filter=$subset"
    run_step racecheck "$out/racecheck.log" 180 "$sanitizer" --tool racecheck --error-exitcode 1 \
      "$build/tests/test_cuda" '--gtest_filter=CudaGatherScatter.OddAlignments:CudaStreams.*'
  else
    skip_step memcheck "no compute-sanitizer or no test_cuda"
    skip_step racecheck "no compute-sanitizer or no test_cuda"
  fi

  # ---- benchmark -----------------------------------------------------------------------------
  bench=$build/flatgather-bench
  if [ -x "$bench" ]; then
    remaining=$(( 470 - ($(date +%s) - t0) ))
    if [ "$remaining" -gt 30 ]; then
      run_step bench "$out/bench.log" "$remaining" "$bench" --device cuda \
        --benchmark_format=json "--benchmark_out=$out/bench-cuda.json"
    else
      skip_step bench "no time left in the 8-minute budget"
    fi
  else
    skip_step bench "build-gpu/flatgather-bench was not built"
  fi
fi

# ---- summary (last) ------------------------------------------------------------------------
{
  echo
  echo "flatgather GPU check: $(grep -m1 '^gpu:' "$out/env.txt" | cut -c6-), $(grep -m1 '^commit:' "$out/env.txt")"
  printf '%-10s | %-16s | %7s | %s\n' step result seconds log
  printf -- '-----------+------------------+---------+-----------------\n'
  for row in "${rows[@]}"; do
    IFS='|' read -r name result secs log <<<"$row"
    printf '%-10s | %-16s | %7s | %s\n' "$name" "$result" "$secs" "$log"
  done
  [ -s "$out/ctest-summary.txt" ] && grep -E 'tests passed|tests failed' "$out/ctest-summary.txt" | tail -n 1
  if [ -s "$out/test_cuda.log" ]; then
    echo "test_cuda: $(grep -E '^\[ +(PASSED|FAILED|SKIPPED) +\] [0-9]+ test' "$out/test_cuda.log" | tr -s ' ' | paste -sd ';' -)"
  fi
  [ -s "$out/ptxas.txt" ] && echo "kernel registers: $(grep -o 'Used [0-9]* registers' "$out/ptxas.txt" | awk '{print $2}' | paste -sd ' ' -)"
  echo "total: $(( $(date +%s) - t0 )) s; logs and JSON in $out"
} | tee "$out/summary.txt"
exit "$failed"
