#pragma once
// Internal: validation of Plan::build's input (src/validate.cpp).

#include <cstdint>
#include <vector>

#include "flatgather/plan.h"

namespace flatgather {
namespace detail {

/// Largest byte size of a tensor, a flat buffer or a stride reach: 2^62, so that every byte
/// offset fits in int64 with room for sums.
constexpr std::int64_t kMaxBytes = std::int64_t{1} << 62;

/// True when `p` is a multiple of the element size of `dtype`. Element-typed access to a
/// misaligned pointer is undefined behaviour on the host and a sticky "misaligned address"
/// error in a CUDA kernel.
bool is_aligned(const void* p, DType dtype);

/// Throws, naming `t`, when `data` is not memory a kernel on t's CUDA device can use (no-op
/// for CPU tensors and null data). `context` prefixes the message ("rebind: ").
void check_device_memory(const TensorRef& t, const void* data, const char* context);

/// Checks `tensors` and `options`, names unnamed tensors "tensor[i]" and fills in default
/// (row-major) strides. Throws flatgather::Error naming the offending tensor.
void validate(std::vector<TensorRef>& tensors, const PlanOptions& options);

}  // namespace detail
}  // namespace flatgather
