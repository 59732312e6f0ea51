// The scatter kernels (both cache-hint flavours); see kernels/kernel.cuh.
#include "kernel.cuh"

namespace flatgather {
namespace detail {
template struct OpKernels<Op::Scatter>;
}  // namespace detail
}  // namespace flatgather
