#pragma once
// Element-wise references computed by LibTorch, behind an interface free of LibTorch types, so
// that tests which cannot include LibTorch (test_tiles: its emulated CUDA intrinsics) check the
// library's casts and scatter_add against an independent implementation, not its own
// convert/add_scaled. Implemented in tests/torch_reference.cpp.
#include <cstdint>
#include <vector>

#include "flatgather/dtype.h"

namespace fgtest {

/// `n` elements of `from` at `src` (contiguous), cast with LibTorch's `.to(to)`.
std::vector<char> torch_cast(const void* src, std::int64_t n, flatgather::DType from,
                             flatgather::DType to);

/// `t + alpha * v` element by element, rounded once: LibTorch casts both operands to the compute
/// type (float64 when either side is float64, float32 otherwise; alpha rounded to it), one
/// std::fma, and LibTorch casts the result back to `t_dtype` (plan.h, scatter_add).
std::vector<char> torch_add_scaled(const void* t, flatgather::DType t_dtype, const void* v,
                                   flatgather::DType v_dtype, std::int64_t n, double alpha);

}  // namespace fgtest
