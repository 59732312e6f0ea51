#pragma once
// Helpers for the core tests, without LibTorch: a TensorRef over host memory (fgtest::ref) and
// EXPECT_THROW_MSG, which checks an error's message. Random tensors, references and bitwise
// compares for the LibTorch tests are in torch_util.h.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "flatgather/error.h"
#include "flatgather/tensor_ref.h"

namespace fgtest {

/// A CPU tensor descriptor for the core API (strides empty: contiguous).
inline flatgather::TensorRef ref(void* data, flatgather::DType dtype, std::vector<std::int64_t> sizes,
                                 std::string name, std::vector<std::int64_t> strides = {}) {
  flatgather::TensorRef t;
  t.data = data;
  t.dtype = dtype;
  t.sizes = std::move(sizes);
  t.strides = std::move(strides);
  t.name = std::move(name);
  return t;
}

}  // namespace fgtest

/// Expects `statement` to throw flatgather::Error whose message contains every one of the
/// given substrings.
#define EXPECT_THROW_MSG(statement, ...)                                              \
  do {                                                                                \
    bool fg_thrown_ = false;                                                          \
    try {                                                                             \
      statement;                                                                      \
    } catch (const flatgather::Error& e) {                                            \
      fg_thrown_ = true;                                                              \
      for (const char* fg_part_ : {__VA_ARGS__}) {                                    \
        EXPECT_NE(std::string(e.what()).find(fg_part_), std::string::npos)            \
            << "message \"" << e.what() << "\" lacks \"" << fg_part_ << "\"";         \
      }                                                                               \
    }                                                                                 \
    EXPECT_TRUE(fg_thrown_) << #statement " did not throw flatgather::Error";          \
  } while (false)
