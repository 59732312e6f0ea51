#pragma once
// Helpers for the core tests, without LibTorch: a TensorRef over host memory (fgtest::ref) and
// EXPECT_THROW_MSG, which checks an error's message. Random tensors, references and bitwise
// compares for the LibTorch tests are in torch_util.h.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "flatgather/error.h"
#include "flatgather/tensor_ref.h"

namespace fgtest {

/// The exit code of a test binary in which nothing failed and something skipped
/// (NOTE: [skip exit code] in tests/gtest_main.cpp); CTest's SKIP_RETURN_CODE.
constexpr int kSkipExitCode = 77;

/// True when FLATGATHER_REQUIRE_GPU=1: the run demands a GPU (the GPU check sets it), so a
/// test that would skip for want of a CUDA device fails instead.
inline bool gpu_required() {
  const char* v = std::getenv("FLATGATHER_REQUIRE_GPU");
  return v != nullptr && std::string(v) == "1";
}

/// A CPU tensor descriptor for the core API (strides empty: contiguous).
inline flatgather::TensorRef ref(void* data, flatgather::DType dtype,
                                 std::vector<std::int64_t> sizes, std::string name,
                                 std::vector<std::int64_t> strides = {}) {
  flatgather::TensorRef t;
  t.data = data;
  t.dtype = dtype;
  t.sizes = std::move(sizes);
  t.strides = std::move(strides);
  t.name = std::move(name);
  return t;
}

}  // namespace fgtest

/// Skips the current test with `reason` (anything streamable) for want of a CUDA device, or
/// fails it when the run demands a GPU (fgtest::gpu_required()). Use in a void function.
#define FG_SKIP_WITHOUT_GPU(reason)                        \
  do {                                                     \
    if (::fgtest::gpu_required()) {                        \
      FAIL() << "FLATGATHER_REQUIRE_GPU=1 but " << reason; \
    } else {                                               \
      GTEST_SKIP() << reason;                              \
    }                                                      \
  } while (false)

/// Expects `statement` to throw flatgather::Error whose message contains every one of the
/// given substrings.
#define EXPECT_THROW_MSG(statement, ...)                                      \
  do {                                                                        \
    bool fg_thrown_ = false;                                                  \
    try {                                                                     \
      statement;                                                              \
    } catch (const flatgather::Error& e) {                                    \
      fg_thrown_ = true;                                                      \
      for (const char* fg_part_ : {__VA_ARGS__}) {                            \
        EXPECT_NE(std::string(e.what()).find(fg_part_), std::string::npos)    \
            << "message \"" << e.what() << "\" lacks \"" << fg_part_ << "\""; \
      }                                                                       \
    }                                                                         \
    EXPECT_TRUE(fg_thrown_) << #statement " did not throw flatgather::Error"; \
  } while (false)
