# Training-loop examples (issue 7), included from examples/CMakeLists.txt. Each runs as a test.
#
#   train_loop      clipping, EMA and checkpoint from flat buffers, checked against
#                   per-parameter LibTorch code
#   data_parallel   data-parallel SGD over c10d: one flat all-reduce per bucket; its test
#                   launches 2 ranks on 127.0.0.1 and checks them against one process

fg_add_example(train_loop train_loop.cpp "all checks passed")

# ---- data_parallel: needs LibTorch's c10d, with Gloo (CPU) and/or NCCL (CUDA) ---------------
# LibTorch's CMake config does not say which c10d backends it was built with, and the c10d
# headers hide each backend behind USE_C10D_<BACKEND>. Define a backend only when its headers
# are present and LibTorch exports its process group.
include(CheckCXXSourceCompiles)
set(_fg_torch_include "")
foreach(dir IN LISTS TORCH_INCLUDE_DIRS)
  if(EXISTS ${dir}/torch/csrc/distributed/c10d/ProcessGroup.hpp)
    set(_fg_torch_include ${dir})
  endif()
endforeach()

set(_fg_c10d_defs "")
if(_fg_torch_include)
  find_path(FLATGATHER_GLOO_INCLUDE_DIR gloo/context.h)
  if(FLATGATHER_GLOO_INCLUDE_DIR AND EXISTS ${_fg_torch_include}/torch/csrc/distributed/c10d/ProcessGroupGloo.hpp)
    list(APPEND _fg_c10d_defs USE_C10D_GLOO)
  endif()
  # NCCL: a CUDA build of LibTorch (torch_cuda exists) and nccl.h (set FLATGATHER_NCCL_INCLUDE_DIR
  # where it is not on the default paths, e.g. a wheel's nvidia/nccl/include).
  if(TARGET torch_cuda OR TORCH_CUDA_LIBRARIES)
    find_path(FLATGATHER_NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS})
    if(FLATGATHER_NCCL_INCLUDE_DIR)
      list(APPEND _fg_c10d_defs USE_C10D_NCCL)
    endif()
  endif()
endif()

set(_fg_c10d_ok OFF)
if(_fg_c10d_defs)
  # Does LibTorch really carry the distributed code (USE_DISTRIBUTED)? Link a TCPStore.
  # The check links LibTorch's library files rather than its imported targets: a PyTorch
  # wheel's targets name others (protobuf::libprotobuf) that a check project cannot see,
  # which would stop the configuration instead of failing the check.
  get_filename_component(_fg_torch_libdir "${TORCH_LIBRARY}" DIRECTORY)
  find_library(FLATGATHER_TORCH_CPU_LIBRARY torch_cpu HINTS ${_fg_torch_libdir} NO_DEFAULT_PATH)
  find_library(FLATGATHER_C10_LIBRARY c10 HINTS ${_fg_torch_libdir} NO_DEFAULT_PATH)
  set(CMAKE_REQUIRED_INCLUDES ${TORCH_INCLUDE_DIRS} ${FLATGATHER_GLOO_INCLUDE_DIR})
  set(CMAKE_REQUIRED_LIBRARIES ${TORCH_LIBRARY} ${FLATGATHER_TORCH_CPU_LIBRARY} ${FLATGATHER_C10_LIBRARY})
  set(CMAKE_REQUIRED_LINK_OPTIONS "-Wl,-rpath-link,${_fg_torch_libdir}")
  set(CMAKE_REQUIRED_FLAGS "${TORCH_CXX_FLAGS}")
  check_cxx_source_compiles("
    #include <torch/csrc/distributed/c10d/TCPStore.hpp>
    int main() { c10d::TCPStoreOptions o; c10d::TCPStore s(\"127.0.0.1\", o); return s.getPort() == 0; }"
    FLATGATHER_HAVE_C10D)
  unset(CMAKE_REQUIRED_INCLUDES)
  unset(CMAKE_REQUIRED_LIBRARIES)
  unset(CMAKE_REQUIRED_LINK_OPTIONS)
  unset(CMAKE_REQUIRED_FLAGS)
  set(_fg_c10d_ok ${FLATGATHER_HAVE_C10D})
endif()

if(_fg_c10d_ok)
  message(STATUS "flatgather: data_parallel example with c10d backends: ${_fg_c10d_defs}")
  add_executable(data_parallel data_parallel.cpp)
  target_link_libraries(data_parallel PRIVATE flatgather_torch)
  target_compile_definitions(data_parallel PRIVATE ${_fg_c10d_defs})
  if(FLATGATHER_GLOO_INCLUDE_DIR)
    target_include_directories(data_parallel SYSTEM PRIVATE ${FLATGATHER_GLOO_INCLUDE_DIR})
  endif()
  if(FLATGATHER_NCCL_INCLUDE_DIR)
    target_include_directories(data_parallel SYSTEM PRIVATE ${FLATGATHER_NCCL_INCLUDE_DIR})
  endif()
  flatgather_warnings(data_parallel)
  if(FLATGATHER_TESTS AND "USE_C10D_GLOO" IN_LIST _fg_c10d_defs)
    # The binary is its own launcher: it starts 2 ranks as processes and stops them within
    # --deadline seconds; `timeout` is the last resort should the launcher itself hang.
    fg_add_expect_test(example_data_parallel EXPECT_RC 0 EXPECT_REGEX "all checks passed"
      COMMAND timeout --kill-after=5 120 $<TARGET_FILE:data_parallel> --launch 2 --deadline 90)
    fg_add_expect_test(example_data_parallel_buckets EXPECT_RC 0 EXPECT_REGEX "all checks passed"
      COMMAND timeout --kill-after=5 120 $<TARGET_FILE:data_parallel> --launch 2 --deadline 90
              --bucket-bytes 4096)
    # A rank that dies mid-run: the launcher must say so and fail, not hang.
    fg_add_expect_test(example_data_parallel_rank_dies EXPECT_RC 1
      EXPECT_REGEX "launcher: FAIL: rank 1 died"
      COMMAND timeout --kill-after=5 120 $<TARGET_FILE:data_parallel> --launch 2 --deadline 90
              --die-rank 1 --die-step 3)
    set_tests_properties(example_data_parallel example_data_parallel_buckets
                         example_data_parallel_rank_dies
      PROPERTIES LABELS "cpu;example;distributed" TIMEOUT 150 RUN_SERIAL ON)
  endif()
endif()
if(NOT _fg_c10d_ok OR NOT "USE_C10D_GLOO" IN_LIST _fg_c10d_defs)
  # The README promises the data-parallel example and its tests: a LibTorch without c10d and
  # Gloo does not drop them quietly, it gets a test that fails with the reason.
  string(CONCAT _fg_c10d_reason "data_parallel needs LibTorch's c10d with Gloo (c10d backends "
    "found: '${_fg_c10d_defs}', Gloo headers: '${FLATGATHER_GLOO_INCLUDE_DIR}'): install "
    "libgloo-dev (scripts/deps.sh) or use a LibTorch built with USE_DISTRIBUTED")
  message(WARNING "flatgather: ${_fg_c10d_reason}; its test example_data_parallel will fail")
  if(FLATGATHER_TESTS)
    add_test(NAME example_data_parallel COMMAND ${CMAKE_COMMAND} "-DFAIL_REASON=${_fg_c10d_reason}"
             -P ${PROJECT_SOURCE_DIR}/tests/expect_exit.cmake)
    set_tests_properties(example_data_parallel PROPERTIES LABELS "cpu;example;distributed")
  endif()
endif()
