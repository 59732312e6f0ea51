// Host side of the kernels: picks the instantiation of kernels/kernel.cuh for an op at run
// time, and the tuning table. Plain C++: the kernels themselves are in kernels/*.cu.

#include <sstream>
#include <string>

#include "gather_scatter.h"

namespace flatgather {
namespace detail {

const char* kernel_op_name(KernelOp op) {
  switch (op) {
    case KernelOp::Gather: return "gather";
    case KernelOp::Scatter: return "scatter";
    default: return "scatter_add";
  }
}

Tuning tuning_for(int major, int minor) {
  (void)minor;
  Tuning t;
  t.block_threads = 256;
  t.max_blocks_per_sm = 8;  // 2048 threads: a full SM on sm_80 and sm_90
  t.copy_cost_bytes = 1024;
  // Hopper and later move about 1.6x the bytes per SM of Ampere: bigger tiles keep each warp
  // busy as long, with the same number of tiles per warp.
  t.tile_bytes = major >= 9 ? 32 * 1024 : 16 * 1024;
  t.streaming_min_bytes = 0;  // the device's L2 size
  return t;
}

std::string to_string(const Tuning& t) {
  std::ostringstream os;
  os << "block=" << t.block_threads << " blocks/SM<=" << t.max_blocks_per_sm << " tile=" << t.tile_bytes
     << "B copy_cost=" << t.copy_cost_bytes << "B streaming>=" << t.streaming_min_bytes << "B";
  return os.str();
}

cudaError_t kernel_occupancy(KernelOp op, bool streaming, int block_threads, int* blocks_per_sm) {
  switch (op) {
    case KernelOp::Gather:
      return OpKernels<KernelOp::Gather>::occupancy(streaming, block_threads, blocks_per_sm);
    case KernelOp::Scatter:
      return OpKernels<KernelOp::Scatter>::occupancy(streaming, block_threads, blocks_per_sm);
    default:
      return OpKernels<KernelOp::ScatterAdd>::occupancy(streaming, block_threads, blocks_per_sm);
  }
}

cudaError_t launch_kernel(KernelOp op, bool streaming, const KernelArgs& args, int grid,
                          int block_threads, cudaStream_t stream) {
  switch (op) {
    case KernelOp::Gather:
      return OpKernels<KernelOp::Gather>::launch(streaming, args, grid, block_threads, stream);
    case KernelOp::Scatter:
      return OpKernels<KernelOp::Scatter>::launch(streaming, args, grid, block_threads, stream);
    default:
      return OpKernels<KernelOp::ScatterAdd>::launch(streaming, args, grid, block_threads, stream);
  }
}

}  // namespace detail
}  // namespace flatgather
