// The scatter_add kernels (both cache-hint flavours); see kernels/kernel.cuh.
#include "kernel.cuh"

namespace flatgather {
namespace detail {
template struct OpKernels<Op::ScatterAdd>;
}  // namespace detail
}  // namespace flatgather
