// The gather, scatter and scatter_add kernels and their launchers. Thin: a warp takes tiles
// (NOTE: [tiles]), finds the copy pieces in each, picks the element types of each piece and
// hands it to copy_piece (NOTE: [vector split]). No allocation, no LibTorch.

#include <cuda_runtime.h>

#include <cstdint>
#include <sstream>
#include <string>

#include "copy.cuh"
#include "gather_scatter.h"
#include "tiles.cuh"

namespace flatgather {
namespace detail {
namespace {

/// One kernel for every plan: warps stride over the tiles (NOTE: [tiles]).
template <KernelOp kOp, bool Streaming>
__global__ void __launch_bounds__(kMaxBlockThreads, kMinBlocksPerSm) gather_scatter_kernel(const KernelArgs args) {
  constexpr int kWarp = CopyPolicy::kWarpThreads;
  const int lane = static_cast<int>(threadIdx.x) % kWarp;
  const std::int64_t thread =
      static_cast<std::int64_t>(blockIdx.x) * blockDim.x + static_cast<std::int64_t>(threadIdx.x);
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * blockDim.x / kWarp;
  const PieceFn<kOp, Streaming> piece{args, lane};
  for (std::int64_t t = thread / kWarp; t < args.num_tiles; t += warps) {
    for_each_piece(args.tiles, t, args.copies, args.num_copies, piece);
  }
}

template <bool Streaming>
const void* kernel_for(KernelOp op) {
  switch (op) {
    case KernelOp::Gather: return reinterpret_cast<const void*>(&gather_scatter_kernel<KernelOp::Gather, Streaming>);
    case KernelOp::Scatter: return reinterpret_cast<const void*>(&gather_scatter_kernel<KernelOp::Scatter, Streaming>);
    default: return reinterpret_cast<const void*>(&gather_scatter_kernel<KernelOp::ScatterAdd, Streaming>);
  }
}

template <KernelOp kOp>
void launch_op(bool streaming, const KernelArgs& args, int grid, int block, cudaStream_t stream) {
  if (streaming) {
    gather_scatter_kernel<kOp, true><<<grid, block, 0, stream>>>(args);
  } else {
    gather_scatter_kernel<kOp, false><<<grid, block, 0, stream>>>(args);
  }
}

}  // namespace

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
  const void* kernel = streaming ? kernel_for<true>(op) : kernel_for<false>(op);
  return cudaOccupancyMaxActiveBlocksPerMultiprocessor(blocks_per_sm, kernel, block_threads, 0);
}

cudaError_t launch_kernel(KernelOp op, bool streaming, const KernelArgs& args, int grid,
                          int block_threads, cudaStream_t stream) {
  switch (op) {
    case KernelOp::Gather: launch_op<KernelOp::Gather>(streaming, args, grid, block_threads, stream); break;
    case KernelOp::Scatter: launch_op<KernelOp::Scatter>(streaming, args, grid, block_threads, stream); break;
    default: launch_op<KernelOp::ScatterAdd>(streaming, args, grid, block_threads, stream); break;
  }
  return cudaGetLastError();
}

}  // namespace detail
}  // namespace flatgather
