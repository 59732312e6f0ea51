#pragma once
// Helpers for the core tests, without LibTorch: a TensorRef over host memory (fgtest::ref) and
// EXPECT_THROW_MSG, which checks an error's message. Random tensors, references and bitwise
// compares for the LibTorch tests are in torch_util.h.
#include <gtest/gtest.h>

#include <cstdint>
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

/// float32 bit patterns where conversions go wrong: NaNs of both signs with several payloads
/// (quiet and signalling), infinities, zeros, float32 subnormals, the largest finite values and
/// the overflow boundaries of bfloat16 and float16, exact halfway cases of both, values that
/// round into (and out of) the subnormal ranges of both.
inline std::vector<std::uint32_t> float32_conversion_specials() {
  return {// NaNs: quiet and signalling, both signs, several payloads
          0x7FC00000u, 0xFFC00000u, 0x7F800001u, 0xFF800001u, 0x7FFFFFFFu, 0xFFFFFFFFu, 0x7FA5A5A5u,
          0xFFDEAD01u, 0x7F808000u, 0x7FC00001u, 0xFFBFFFFFu, 0x7F810000u,
          // infinities, zeros
          0x7F800000u, 0xFF800000u, 0x00000000u, 0x80000000u,
          // float32 subnormals (bfloat16 ties among them), the smallest normals
          0x00000001u, 0x80000001u, 0x007FFFFFu, 0x807FFFFFu, 0x00400000u, 0x00008000u, 0x00018000u,
          0x00010000u, 0x00800000u, 0x80800000u,
          // the largest finite float32 values and bfloat16's overflow boundary
          0x7F7FFFFFu, 0xFF7FFFFFu, 0x7F7F8000u, 0x7F7F7FFFu, 0x7F7F0000u, 0x7F7E8000u, 0x7F7F8001u,
          0xFF7F8000u,
          // float16's largest value, its overflow tie (65520) and beyond
          0x477FE000u, 0x477FEFFFu, 0x477FF000u, 0xC77FF000u, 0x477FF001u, 0x47800000u, 0x4F800000u,
          0xC7800000u,
          // ties to even: bfloat16, then float16
          0x3F808000u, 0x3F818000u, 0x3F808001u, 0xBF808000u, 0x3F801000u, 0x3F803000u, 0x3F801001u,
          0xBF803000u,
          // float16's normal/subnormal border, its smallest subnormal and the ties around it
          0x38800000u, 0x387FFFFFu, 0x387FE000u, 0x387FF000u, 0x33800000u, 0x33000000u, 0x33000001u,
          0xB3000000u, 0x33C00000u, 0x34200000u, 0x32FFFFFFu, 0x337FFFFFu,
          // ordinary values
          0x3F800000u, 0xC0490FDBu, 0x3DCCCCCDu, 0x42F6E979u};
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
