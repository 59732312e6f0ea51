// The gather kernels (both cache-hint flavours); see kernels/kernel.cuh.
#include "kernel.cuh"

namespace flatgather {
namespace detail {
template struct OpKernels<Op::Gather>;
}  // namespace detail
}  // namespace flatgather
