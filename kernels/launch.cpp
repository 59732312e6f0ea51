// Host side of the kernels: picks the instantiation of kernels/kernel.cuh for an op at run
// time. Plain C++: the kernels themselves are in kernels/*.cu.

#include "launch.h"

namespace flatgather {
namespace detail {

cudaError_t kernel_occupancy(Op op, bool streaming, bool fetch, int block_threads, int tile_bytes,
                             int* blocks_per_sm) {
  switch (op) {
    case Op::Gather:
      return OpKernels<Op::Gather>::occupancy(streaming, fetch, block_threads, tile_bytes,
                                              blocks_per_sm);
    case Op::Scatter:
      return OpKernels<Op::Scatter>::occupancy(streaming, fetch, block_threads, tile_bytes,
                                               blocks_per_sm);
    default:
      return OpKernels<Op::ScatterAdd>::occupancy(streaming, fetch, block_threads, tile_bytes,
                                                  blocks_per_sm);
  }
}

cudaError_t launch_kernel(Op op, bool streaming, const KernelArgs& args, int grid,
                          int block_threads, cudaStream_t stream) {
  switch (op) {
    case Op::Gather:
      return OpKernels<Op::Gather>::launch(streaming, args, grid, block_threads, stream);
    case Op::Scatter:
      return OpKernels<Op::Scatter>::launch(streaming, args, grid, block_threads, stream);
    default: return OpKernels<Op::ScatterAdd>::launch(streaming, args, grid, block_threads, stream);
  }
}

}  // namespace detail
}  // namespace flatgather
