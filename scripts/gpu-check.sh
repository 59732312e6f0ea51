#!/usr/bin/env bash
# shellcheck disable=SC2317 # the steps are functions that run_step calls indirectly
# The GPU check: build, test, sanitize and benchmark the CUDA path on a machine with an NVIDIA
# GPU, in at most 7.5 minutes on 16 cores. The same script runs by hand, in docker/Dockerfile,
# in .github/workflows/gpu.yml and from the device tool (docs/perf.md "GPU results").
#
#   scripts/gpu-deps.sh                 # first, on a networked machine: .debs into .deps/
#   scripts/gpu-check.sh                # device mode: a GPU is required
#   scripts/gpu-check.sh --rehearse     # no GPU: every step that needs none (CI, see
#                                       # scripts/ci-gpu-rehearsal.sh); the rest "skipped"
#
# GoogleTest, Google Benchmark and nlohmann-json come ONLY from the .debs in .deps/ (the GPU
# machine has none and no network): they are unpacked with `dpkg -x` into a private prefix
# and CMake is pointed at it (GTest_DIR, benchmark_DIR, nlohmann_json_DIR). The step `deps`
# then proves it: CMake's cache, every object's header dependencies (ninja -t deps) and the
# benchmark's shared library must come from the prefix, never from /usr. The rehearsal also
# hides the system copies in a mount namespace (unshare -m, as root), so a build that still
# reaches for them fails to configure or compile.
#
# Steps and budgets (seconds). "limit" is each step's timeout in device mode, and every
# limit is also cut to what is left of the 440 s total. On the H200 machine (16 cores,
# 2026-11-30, docs/perf.md "GPU results") a full pass took 220 s: env 3, configure 7, build
# 56, ctest 19, pytest 38, memcheck 1, initcheck 1, synccheck 2, racecheck 7, bench 42,
# bench-llama 3, bench-ab 31. "rehearsal" is what scripts/ci-gpu-rehearsal.sh
# took on 2026-11-30 on the 2-core machine without GPU, shared with five other builds:
# "cold" with ccache warm for the core library only, "warm" rerun with every object cached.
# In a rehearsal the limits are 8x longer and the total is not enforced.
#
#   step              what                                          limit  rehearsal (2 cores)
#   env               GPU, driver, CUDA, sanitizer, torch versions       5   3
#   deps              unpack .deps/ into the prefix (rehearsal: hide     5   1-3
#                     the system copies first)
#   configure         sm_XX only (nvidia-smi compute_cap), no -Werror,  45   14
#                     no examples, no install rules
#   provenance-cmake  GTest/benchmark/nlohmann_json_DIR in the prefix    2   0
#   build             libs, the `gpu`-labelled tests, the benchmark,   170   642-711 cold, 8-12 warm
#                     all cores (kernel objects rebuilt: ptxas lines)
#   provenance-build  headers (ninja -t deps), link lines, ldd of the    3   1
#                     benchmark: the prefix's, never /usr's
#   ctest             ctest -L gpu: test_cuda, test_errors, test_fuzz   35   10 (CUDA cases
#                     (FLATGATHER_FUZZ_SECONDS=5)                           skip: no GPU)
#   pytest            tests/python on every device present (cpu, cuda)  60   12 (cpu only)
#   python-diag       only after a failed pytest: the libraries loaded,  120  -
#                     a probe of the operators, cuda-gdb's backtrace
#   memcheck          compute-sanitizer memcheck, a subset of test_cuda 20   skipped (no GPU)
#                     PYTORCH_NO_CUDA_MEMORY_CACHING=1 (no blocks to hide in)
#   initcheck         the same subset, uninitialised device reads       15   skipped (no GPU)
#   synccheck         the same subset, illegal barriers                 10   skipped (no GPU)
#   racecheck         shared-memory hazards of the shared transposes    30   skipped (no GPU)
#                     (test_cuda SharedTransposesMatchTheCpuExecutor,
#                     transpose=new only: 15 s did not finish all five)
#   bench             gpt2-small, many-tiny, mixed-cast, strided,       60   21 (cpu stand-in)
#                     resnet50; 0.02 s min time (rehearsal: many-tiny on the CPU)
#   bench-llama       llama-7b gather only (its own JSON, so a timeout  15   skipped (no GPU)
#                     there loses nothing else)
#   bench-ab          issue 19's suites (misaligned, plan-4mb,          45   skipped (no GPU)
#                     gpt2-bf16, gpt2-uint8, gpt2-to-bf16) with the A/B
#                     methods flatgather_{misaligned,tiles,unroll,convert,
#                     descriptors}_old/new (those and flatgather_{strided,
#                     transpose}_old/new also run in `bench` on the
#                     suites above; convert on mixed-cast, descriptors
#                     on many-tiny)
#   summary           summary.md, logs.tar.gz                            5   <1
#   total                                                              440   654-772 cold, 50-67 warm
# racecheck runs only the shared transposes' test. The descriptor staging of descriptors=new
# (NOTE: [descriptor fetch]), not the default, is not under racecheck: its barriers are
# checked on the CPU in lockstep (tests/warp_lockstep.h), and test_cuda's
# DescriptorFetchManyTinyTensors runs it on the GPU.
#
# What comes back in $OUT (default build-gpu/gpu-check): summary.md (printed last on stdout
# too), bench.json and bench-llama.json (the benchmark's JSON) and logs.tar.gz (every log,
# ptxas.txt, env.txt).
#
# Variables: OUT; FLATGATHER_BUILD_DIR (default build-gpu); FLATGATHER_REBUILD_KERNELS (default
# 1; 0 keeps the kernels' objects of an earlier run on the same machine); FLATGATHER_DEPS (the .debs, default
# .deps); FLATGATHER_CUDA_ARCHITECTURES (default: the GPU's compute_cap; 90 in a rehearsal);
# FLATGATHER_PYTHON (default: the first of python3, /usr/bin/python3 that imports torch);
# FLATGATHER_LIBTORCH (a LibTorch folder instead of python's PyTorch); JOBS (default all cores).
# Device mode exports FLATGATHER_REQUIRE_GPU=1 to every step: a CUDA test that would skip, the
# fuzz test's CUDA branch and a benchmark with nothing to run then fail instead.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mode=device
case "${1:-}" in
  "") ;;
  --rehearse) mode=rehearse ;;
  -h | --help) sed -n '3,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) echo "usage: scripts/gpu-check.sh [--rehearse]" >&2; exit 2 ;;
esac

build=${FLATGATHER_BUILD_DIR:-$root/build-gpu}
# The rehearsal's system copies to hide (see hide_system_copies); globbed inside the namespace.
hidden_globs=(
  /usr/include/gtest /usr/include/gmock /usr/include/benchmark /usr/include/nlohmann
  /usr/local/include/gtest /usr/local/include/gmock /usr/local/include/benchmark
  /usr/local/include/nlohmann /usr/src/googletest /usr/src/gtest
  '/usr/lib/*-linux-gnu/cmake/GTest' '/usr/lib/*-linux-gnu/cmake/benchmark'
  '/usr/lib/*-linux-gnu/cmake/nlohmann_json' '/usr/share/cmake*/nlohmann_json'
  '/usr/lib/cmake/GTest' '/usr/lib/cmake/benchmark' '/usr/lib/cmake/nlohmann_json'
  '/usr/lib/*-linux-gnu/libgtest*' '/usr/lib/*-linux-gnu/libgmock*'
  '/usr/lib/*-linux-gnu/libbenchmark*' '/usr/lib/*-linux-gnu/pkgconfig/gtest*'
  '/usr/lib/*-linux-gnu/pkgconfig/gmock*' '/usr/lib/*-linux-gnu/pkgconfig/benchmark*'
  '/usr/share/pkgconfig/nlohmann_json*'
)

# The rehearsal re-runs itself in a private mount namespace where the system copies are
# hidden. FLATGATHER_REHEARSAL_HIDDEN: 1 inside it; 0 where unshare is refused (not root, a
# container without CAP_SYS_ADMIN): then the `provenance` step alone guards the prefix.
if [ "$mode" = rehearse ] && [ -z "${FLATGATHER_REHEARSAL_HIDDEN:-}" ]; then
  if unshare -m --propagation private true 2>/dev/null; then
    FLATGATHER_REHEARSAL_HIDDEN=1 exec unshare -m --propagation private \
      bash "${BASH_SOURCE[0]}" --rehearse
  fi
  echo "gpu-check: unshare -m refused: system copies stay visible; the provenance step guards" >&2
  export FLATGATHER_REHEARSAL_HIDDEN=0
fi

hide_system_copies() {  # bind-mounts an empty folder / empty file over each system copy
  local empty_dir=$build/.hidden-dir empty_file=$build/.hidden-file glob path
  mkdir -p "$empty_dir" && : >"$empty_file"
  for glob in "${hidden_globs[@]}"; do
    # shellcheck disable=SC2086 # globbed here, on purpose
    for path in $glob; do
      [ -e "$path" ] || continue
      if [ -d "$path" ]; then
        mount --bind "$empty_dir" "$path" || return 1
      else
        mount --bind "$empty_file" "$path" || return 1
      fi
      echo "hidden: $path"
    done
  done
  [ ! -e /usr/include/gtest/gtest.h ] && [ ! -e /usr/include/nlohmann/json.hpp ]
}

out=${OUT:-$build/gpu-check}
work=$build/gpu-check-work  # logs before they are packed into logs.tar.gz
deps_dir=${FLATGATHER_DEPS:-$root/.deps}
prefix=$build/deps-prefix
jobs=${JOBS:-$(nproc)}
total_budget=440
slow=1
[ "$mode" = rehearse ] && slow=8
rm -rf "$work"
mkdir -p "$out" "$work" "$build"
t0=$(date +%s)

# Each step's budget in seconds in device mode: the header's table.
declare -A budget=([env]=5 [deps]=5 [configure]=45 [provenance-cmake]=2 [build]=170
  [provenance-build]=3 [ctest]=35 [pytest]=60 [python-diag]=120 [memcheck]=20 [initcheck]=15 [synccheck]=10
  [racecheck]=30 [bench]=60 [bench-llama]=15 [bench-ab]=45)  # + 5 = 500, cut to 440
rows=()  # "step|result|seconds|budget"
failed=0

# run_step NAME COMMAND...: runs a step with a time limit (its budget, cut to what is left of
# the total in device mode), its output in $work/NAME.log; records its row. A shell function
# (the short local steps: env, deps, provenance-*) runs in a subshell, untimed.
run_step() {
  local name=$1 log=$work/$1.log
  shift
  local step_budget=${budget[$name]} start rc result
  local limit=$((step_budget * slow))
  if [ "$mode" = device ]; then
    local left=$((total_budget - 5 - ($(date +%s) - t0)))  # 5 s kept for the summary
    [ "$left" -lt "$limit" ] && limit=$left
    if [ "$limit" -lt 1 ]; then
      rows+=("$name|TIMEOUT (no time left)|0|$step_budget")
      failed=1
      return 124
    fi
  fi
  start=$(date +%s)
  printf '==== %s (limit %ss, log %s)\n' "$name" "$limit" "$(basename "$log")"
  if declare -F "$1" >/dev/null; then
    ("$@") >"$log" 2>&1
  else
    timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1
  fi
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
  rows+=("$name|$result|$(($(date +%s) - start))|$step_budget")
  tail -n 5 "$log"
  return "$rc"
}

skip_step() {  # skip_step NAME REASON
  rows+=("$1|skipped: $2|0|${budget[$1]}")
  printf '==== %s: skipped (%s)\n' "$1" "$2"
}

# ---- env ------------------------------------------------------------------------------------
if [ "$mode" = device ]; then
  export FLATGATHER_REQUIRE_GPU=1
else
  unset FLATGATHER_REQUIRE_GPU
fi
export FLATGATHER_FUZZ_SECONDS=${FLATGATHER_FUZZ_SECONDS:-5}

find_python() {  # the python that imports torch
  local p
  # shellcheck disable=SC2086 # a list of candidates
  for p in ${FLATGATHER_PYTHON:-python3 /usr/bin/python3}; do
    if "$p" -c 'import torch' >/dev/null 2>&1; then
      echo "$p"
      return 0
    fi
  done
  return 1
}
python=$(find_python) || python=
sanitizer=$(command -v compute-sanitizer) || sanitizer=/usr/local/cuda/bin/compute-sanitizer
[ -x "$sanitizer" ] || sanitizer=/usr/local/cuda/compute-sanitizer/compute-sanitizer

env_step() {
  echo "mode: $mode"
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  local commit
  commit=${FLATGATHER_GIT_COMMIT:-$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)}
  echo "commit: $commit"
  echo "cores: $(nproc), jobs: $jobs"
  local gpu ok=0
  if ! command -v nvidia-smi >/dev/null; then
    echo "gpu: none (no nvidia-smi)"
    [ "$mode" = device ] && ok=1
  elif gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap \
               --format=csv,noheader 2>&1); then
    echo "gpu: $gpu"
  else
    echo "gpu: none (nvidia-smi: $(echo "$gpu" | head -n 1))"
    [ "$mode" = device ] && ok=1
  fi
  echo "nvcc: $(nvcc --version 2>&1 | grep -m1 -o 'release [0-9.]*, V[0-9.]*' || echo missing)"
  echo "compute-sanitizer: $("$sanitizer" --version 2>&1 | grep -m1 -o 'Version .*' ||
    echo missing)"
  echo "cmake: $(cmake --version | head -n 1)"
  echo "c++: $(c++ --version 2>&1 | head -n 1)"
  if [ -n "$python" ]; then
    "$python" -c 'import sys, torch; print("python:", sys.executable, sys.version.split()[0])
print("torch:", torch.__version__, "cuda", torch.version.cuda, "devices",
      torch.cuda.device_count(), "cxx11 abi", torch._C._GLIBCXX_USE_CXX11_ABI)'
  else
    echo "python: no python3 imports torch"
    ok=1
  fi
  return "$ok"
}
run_step env env_step
cp "$work/env.log" "$work/env.txt"
cat "$work/env.txt"

# The architecture: the GPU's (compute_cap 9.0 -> 90), else 90 in a rehearsal.
if [ -n "${FLATGATHER_CUDA_ARCHITECTURES:-}" ]; then
  arch=$FLATGATHER_CUDA_ARCHITECTURES
elif [ "$mode" = device ]; then
  arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 |
    tr -d ' .')
  arch=${arch:-90}
else
  arch=90
fi
# LibTorch's CMake config adds -gencode flags for TORCH_CUDA_ARCH_LIST: the same one.
TORCH_CUDA_ARCH_LIST=$(sed -E 's/([0-9]+)([0-9])/\1.\2/g' <<<"$arch")
export TORCH_CUDA_ARCH_LIST

# ---- deps: .deps/*.deb -> a private prefix ---------------------------------------------------
deps_step() {
  if [ "${FLATGATHER_REHEARSAL_HIDDEN:-}" = 1 ]; then
    hide_system_copies || { echo "could not hide the system copies"; return 1; }
  fi
  compgen -G "$deps_dir/*.deb" >/dev/null || {
    echo "no .debs in $deps_dir: run scripts/gpu-deps.sh first (and carry .deps)"
    return 1
  }
  rm -rf "$prefix" && mkdir -p "$prefix"
  local deb tmp
  for deb in "$deps_dir"/*.deb; do
    echo "unpack: $(basename "$deb")"
    if command -v dpkg >/dev/null; then
      dpkg -x "$deb" "$prefix" || return 1
    else  # a .deb is an ar archive holding data.tar.{xz,zst,gz}
      tmp=$(mktemp -d) && (cd "$tmp" && ar x "$deb") && tar -xf "$tmp"/data.tar.* -C "$prefix" ||
        return 1
      rm -rf "$tmp"
    fi
  done
}
run_step deps deps_step
config_dir() { find "$prefix" -name "$1" -printf '%h\n' -quit 2>/dev/null; }
gtest_dir=$(config_dir GTestConfig.cmake)
benchmark_dir=$(config_dir benchmarkConfig.cmake)
json_dir=$(config_dir nlohmann_jsonConfig.cmake)

# ---- configure, build -----------------------------------------------------------------------
cmake_prefix=()
if [ -n "${FLATGATHER_LIBTORCH:-}" ]; then
  cmake_prefix+=("$FLATGATHER_LIBTORCH")
elif [ -n "$python" ]; then
  torch_cmake=$("$python" -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null)
  [ -f "$torch_cmake/Torch/TorchConfig.cmake" ] && cmake_prefix+=("$torch_cmake")
fi
configure=(cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release
  -DFLATGATHER_CUDA=ON "-DFLATGATHER_CUDA_ARCHITECTURES=$arch" -DFLATGATHER_WERROR=OFF
  -DFLATGATHER_TESTS=ON -DFLATGATHER_BENCH=ON -DFLATGATHER_EXAMPLES=OFF -DFLATGATHER_INSTALL=OFF
  "-DCMAKE_PREFIX_PATH=$(IFS=';'; echo "${cmake_prefix[*]:-}")"
  "-DGTest_DIR=$gtest_dir" "-Dbenchmark_DIR=$benchmark_dir" "-Dnlohmann_json_DIR=$json_dir")
# provenance_configure / provenance_build: the three packages came from the prefix only.
provenance_configure() {
  local var value bad=0
  for var in GTest_DIR benchmark_DIR nlohmann_json_DIR; do
    value=$(sed -n "s/^$var:[A-Z]*=//p" "$build/CMakeCache.txt")
    echo "$var = $value"
    case "$value" in "$prefix"/*) ;; *) echo "  ^ not in $prefix"; bad=1 ;; esac
  done
  return "$bad"
}
provenance_build() {
  local deps bad=0 pkg ours
  deps=$(cd "$build" && ninja -t deps) || return 1
  ours="($prefix|${prefix#"$build"/})"  # ninja writes paths below the build folder relative
  for pkg in gtest benchmark nlohmann; do
    if grep -E "^ +/usr/(local/)?include/$pkg/" <<<"$deps" | sort -u | head -n 3 | grep .; then
      echo "  ^ $pkg headers from the system"
      bad=1
    fi
    if grep -q -E "^ +$ours/usr/include/$pkg/" <<<"$deps"; then
      echo "$pkg headers: from $prefix"
    else
      echo "$pkg headers: none from $prefix"
      bad=1
    fi
  done
  if grep -E -o "(^|[ :=])/usr/(local/)?lib[^ ]*/lib(gtest|gmock|benchmark)[^ ]*" \
       "$build/build.ninja" | sort -u; then
    echo "  ^ linked from the system"
    bad=1
  fi
  # The operators' library must load the shared C++ runtime, not carry a static copy of its
  # own (NOTE: [shared libstdc++] in cmake/FlatgatherSharedStdcxx.cmake).
  if readelf -d "$build/libflatgather_torch.so" | grep -q 'NEEDED.*libstdc++'; then
    echo "libflatgather_torch.so: links the shared libstdc++"
  else
    echo "libflatgather_torch.so: no libstdc++.so.6 among its NEEDED (a static copy inside)"
    bad=1
  fi
  local lib
  lib=$(ldd "$build/flatgather-bench" | grep -m1 libbenchmark)
  echo "flatgather-bench loads:$lib"
  case "$lib" in *"$prefix"/*) ;; *) echo "  ^ not from $prefix"; bad=1 ;; esac
  return "$bad"
}

built=1
if run_step configure "${configure[@]}" && run_step provenance-cmake provenance_configure; then
  # The targets the steps run: the libraries, the `gpu`-labelled tests' executables (from
  # CTest, so no test name is written here) and the benchmark.
  targets=(flatgather flatgather_torch flatgather-bench)
  # A test whose name is a build target (fg_add_test) is a program of ours to build.
  while read -r t; do
    (cd "$build" && ninja -t query "$t") >/dev/null 2>&1 && targets+=("$t")
  done < <(ctest --test-dir "$build" -L gpu --show-only=json-v1 |
    python3 -c 'import json, sys
print("\n".join(t["name"] for t in json.load(sys.stdin)["tests"]))')
  echo "targets: ${targets[*]}" >>"$work/env.txt"
  # Rebuild the kernels' objects every time, so their ptxas lines are in build.log (a rerun on
  # a warm machine may keep them: FLATGATHER_REBUILD_KERNELS=0).
  if [ "${FLATGATHER_REBUILD_KERNELS:-1}" != 0 ]; then
    find "$build/CMakeFiles/flatgather.dir" -name '*.cu.o' -delete 2>/dev/null
  fi
  run_step build cmake --build "$build" -j "$jobs" --target "${targets[@]}" &&
    run_step provenance-build provenance_build
  built=$?
  # ptxas lines of the library's kernels: the output ninja prints under each of its CUDA objects.
  awk '/^\[[0-9]+\/[0-9]+\]/ { keep = /CUDA object CMakeFiles\/flatgather\.dir\// }
       keep && (/ptxas info/ || /bytes stack frame/)' "$work/build.log" >"$work/ptxas.txt"
fi

# ---- tests ----------------------------------------------------------------------------------
subset='CudaGatherScatter.OddAlignments:CudaGatherScatter.MixedDtypesOneLaunch'
subset+=':CudaGatherScatter.EmptyAndSingleTensors:CudaRebind.*:CudaGraph.*'
test_cuda=$build/tests/test_cuda
pytest_env=(env "PYTHONPATH=$root/python" "FLATGATHER_LIBRARY=$build/libflatgather_torch.so"
  FLATGATHER_REQUIRE_LIBRARY=1 PYTHONDONTWRITEBYTECODE=1)
# python_diagnosis: after a failed pytest, what one round trip can tell: the libraries the
# operators' library names and the process holds (two copies of c10, OpenMP or the CUDA
# runtime?), the first calls into it, and cuda-gdb's backtrace of a crash there.
python_probe='import sys, torch
torch.ops.load_library(sys.argv[1])
held = sorted({l.split()[-1] for l in open("/proc/self/maps") if ".so" in l})
keys = ("c10", "torch", "gomp", "cudart", "stdc++", "flatgather", "benchmark")
print("\n".join(m for m in held if any(k in m for k in keys)), flush=True)
print("build_info:", torch.ops.flatgather.build_info(), flush=True)
print("cuda_available:", torch.ops.flatgather.cuda_available(), flush=True)
t = [torch.randn(3, 4), torch.randn(5)]
print("gather matches cat:", bool(torch.equal(torch.ops.flatgather.gather(t, None, 0),
      torch.cat([x.reshape(-1) for x in t]))), flush=True)'
python_diagnosis() {
  local lib=$build/libflatgather_torch.so gdb
  echo "## readelf -d $(basename "$lib")"
  readelf -d "$lib" | grep -E 'NEEDED|RUNPATH|RPATH'
  echo "## libraries in CMakeCache.txt"
  grep -E '^[A-Za-z0-9_]+_LIBRARY[A-Z_]*:FILEPATH=' "$build/CMakeCache.txt"
  echo "## probe"
  "${pytest_env[@]}" timeout 60 "$python" -X faulthandler -c "$python_probe" "$lib"
  echo "probe exit: $?"
  gdb=$(command -v cuda-gdb || echo /usr/local/cuda/bin/cuda-gdb)
  [ -x "$gdb" ] || { echo "no cuda-gdb"; return 1; }
  echo "## cuda-gdb: the probe's backtrace"
  "${pytest_env[@]}" timeout 120 "$gdb" -q -batch -ex run -ex bt -ex 'info sharedlibrary' \
    --args "$python" -c "$python_probe" "$lib" 2>&1 | grep -v -E '^\[(New|Thread)'
  return 1  # a diagnosis, not a pass
}
bench_json=$out/bench.json
llama_json=$out/bench-llama.json
ab_json=$out/bench-ab.json
rm -f "$bench_json" "$llama_json" "$ab_json"
if [ "$built" -eq 0 ]; then
  run_step ctest ctest --test-dir "$build" -L gpu --output-on-failure --no-tests=error \
    --output-junit "$work/ctest.xml"
  if [ -n "$python" ]; then
    run_step pytest "${pytest_env[@]}" "$python" -m pytest -q -p no:cacheprovider -rs \
      "$root/tests/python" || run_step python-diag python_diagnosis
  else
    skip_step pytest "no python imports torch"
  fi
  if [ "$mode" = rehearse ]; then
    for s in memcheck initcheck synccheck racecheck; do skip_step "$s" "needs a GPU"; done
  elif [ ! -x "$sanitizer" ]; then
    for s in memcheck initcheck synccheck racecheck; do
      run_step "$s" sh -c 'echo "no compute-sanitizer on PATH or in /usr/local/cuda"; exit 1'
    done
  else
    sanitize=("$sanitizer" --error-exitcode 1 --print-limit 20)
    run_step memcheck env PYTORCH_NO_CUDA_MEMORY_CACHING=1 "${sanitize[@]}" --tool memcheck \
      --leak-check no "$test_cuda" "--gtest_filter=$subset"
    run_step initcheck env PYTORCH_NO_CUDA_MEMORY_CACHING=1 "${sanitize[@]}" --tool initcheck \
      "$test_cuda" "--gtest_filter=$subset"
    run_step synccheck "${sanitize[@]}" --tool synccheck "$test_cuda" "--gtest_filter=$subset"
    run_step racecheck env FLATGATHER_TEST_TRANSPOSE_SPECS=transpose=new \
      "${sanitize[@]}" --tool racecheck "$test_cuda" \
      --gtest_filter=CudaGatherScatter.SharedTransposesMatchTheCpuExecutor
  fi

  # ---- benchmark ----------------------------------------------------------------------------
  suites='(gpt2-small|many-tiny|mixed-cast|strided|resnet50)'
  if [ "$mode" = device ]; then
    run_step bench "$build/flatgather-bench" --device cuda \
      "--benchmark_filter=^(gather|scatter|scatter_add)/cuda/$suites/" \
      --benchmark_min_time=0.02 "--benchmark_out=$bench_json" --benchmark_out_format=json
    run_step bench-llama "$build/flatgather-bench" --device cuda \
      --benchmark_filter=^gather/cuda/llama-7b/ \
      --benchmark_min_time=0.02 "--benchmark_out=$llama_json" --benchmark_out_format=json
    run_step bench-ab "$build/flatgather-bench" --device cuda \
      "--benchmark_filter=^(gather|scatter|scatter_add)/cuda/(misaligned|plan-4mb|gpt2-bf16|gpt2-uint8|gpt2-to-bf16)/" \
      --benchmark_min_time=0.02 "--benchmark_out=$ab_json" --benchmark_out_format=json
  else
    # No GPU: the same binary and JSON path on the CPU's smallest suite, so the summary's
    # tables are exercised too.
    run_step bench "$build/flatgather-bench" --device cpu \
      "--benchmark_filter=^(gather|scatter|scatter_add)/cpu/many-tiny/" \
      --benchmark_min_time=0.01 --benchmark_repetitions=3 \
      "--benchmark_out=$bench_json" --benchmark_out_format=json
    skip_step bench-llama "needs a GPU (llama-7b is a GPU-only suite)"
    skip_step bench-ab "needs a GPU (issue 19's suites are GPU only)"
  fi
else
  for s in ctest pytest memcheck initcheck synccheck racecheck bench bench-llama bench-ab; do
    skip_step "$s" "no build"
  done
fi

# ---- summary (last) -------------------------------------------------------------------------
summary=$out/summary.md
{
  echo "# flatgather GPU check ($mode)"
  echo
  grep -E '^(gpu|commit|date|nvcc|torch|compute-sanitizer):' "$work/env.txt" | sed 's/^/- /'
  echo "- architectures: $arch; jobs: $jobs;" \
    "FLATGATHER_REQUIRE_GPU=${FLATGATHER_REQUIRE_GPU:-unset}"
  case "${FLATGATHER_REHEARSAL_HIDDEN:-}" in
    1) echo "- system GoogleTest/Benchmark/nlohmann-json hidden (mount namespace)" ;;
    0) echo "- system copies NOT hidden (unshare refused): the provenance step guards" ;;
  esac
  echo
  echo "| step | result | seconds | budget |"
  echo "|---|---|---:|---:|"
  for row in "${rows[@]}"; do
    IFS='|' read -r name result secs budget <<<"$row"
    echo "| $name | $result | $secs | $budget |"
  done
  verdict=pass
  [ "$failed" -eq 0 ] || verdict=FAIL
  echo "| total | $verdict | $(($(date +%s) - t0)) | $total_budget |"
  echo
  if [ -s "$work/ctest.log" ]; then
    echo "ctest: $(grep -m1 -E 'tests passed' "$work/ctest.log" || echo 'no result line')"
  fi
  # CTest calls a binary "Skipped" when any one of its tests skipped (NOTE: [skip exit code]):
  # each binary's own counts, and the reasons of its skips, say how much ran.
  if [ -s "$work/ctest.xml" ]; then
    python3 - "$work/ctest.xml" <<'PY' || echo "(ctest.xml unreadable)"
import re, sys, xml.etree.ElementTree as ET
for case in ET.parse(sys.argv[1]).getroot().iter("testcase"):
    out = case.findtext("system-out") or ""
    passed = re.search(r"\[  PASSED  \] (\d+) test", out)
    skipped = re.findall(r"\[  SKIPPED \] (\S+) \(", out)
    reasons = re.findall(r"^(?:.*: )?Skipped\n(.+)$", out, re.M)
    print("- %s (%s): %s passed, %d skipped%s" % (
        case.get("name"), case.get("status"), passed.group(1) if passed else "?",
        len(skipped), (": " + "; ".join(f"{n} ({r.strip()})" for n, r in
                                       zip(skipped, reasons + [""] * len(skipped))))
        if skipped else ""))
PY
  fi
  if [ -s "$work/pytest.log" ]; then
    echo "pytest: $(grep -E '(passed|failed|error)' "$work/pytest.log" | tail -n 1)"
  fi
  if [ -s "$work/ptxas.txt" ]; then
    registers=$(grep -o 'Used [0-9]* registers' "$work/ptxas.txt" | awk '{print $2}' |
      paste -sd ' ' -)
    spills=$(grep -o '[0-9]* bytes spill' "$work/ptxas.txt" | awk '{s += $1} END {print s + 0}')
    echo "kernel registers (ptxas, sm_$arch): $registers; spill bytes: $spills"
  fi
  echo
  jsons=()
  for f in "$bench_json" "$llama_json" "$ab_json"; do [ -s "$f" ] && jsons+=("$f"); done
  if [ ${#jsons[@]} -gt 0 ]; then
    python3 "$root/scripts/bench-summary.py" "${jsons[@]}" || echo "(bench-summary.py failed)"
  else
    echo "No benchmark JSON."
  fi
  # The end of each failed step's log, so one round trip tells what to fix.
  for row in "${rows[@]}"; do
    IFS='|' read -r name result _ _ <<<"$row"
    case "$result" in FAIL* | TIMEOUT*) ;; *) continue ;; esac
    echo
    echo "### $name: $result (last lines of $name.log)"
    echo '```'
    grep -v '^ *$' "$work/$name.log" 2>/dev/null | tail -n 25
    echo '```'
  done
} >"$summary" 2>&1
cp "$summary" "$work/summary.md"
tar -czf "$out/logs.tar.gz" -C "$work" . 2>/dev/null
echo
cat "$summary"
exit "$failed"
