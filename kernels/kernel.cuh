#pragma once
// The one kernel template and its per-op launchers (OpKernels). Each op's instantiations live
// in their own translation unit (kernels/gather.cu, scatter.cu, scatter_add.cu) so that nvcc
// compiles them in parallel; kernels/launch.cpp picks one at run time. Thin: a warp takes
// tiles (NOTE: [tiles]), finds the copy pieces in each and hands each piece to process_piece
// (NOTE: [vector split]). No allocation, no LibTorch.

#include <cuda_runtime.h>

#include <cstdint>

#include "copy.cuh"
#include "gather_scatter.h"
#include "tiles.cuh"

namespace flatgather {
namespace detail {

/// One kernel for every plan: warps stride over the tiles (NOTE: [tiles]).
template <KernelOp kOp, bool Streaming>
__global__ void __launch_bounds__(kMaxBlockThreads, kMinBlocksPerSm)
    gather_scatter_kernel(const KernelArgs args) {
  constexpr int kWarp = CopyPolicy::kWarpThreads;
  const int lane = static_cast<int>(threadIdx.x) % kWarp;
  const std::int64_t thread = static_cast<std::int64_t>(blockIdx.x) * blockDim.x +
                              static_cast<std::int64_t>(threadIdx.x);
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * blockDim.x / kWarp;
  const PieceFn<kOp, Streaming> piece{args, lane};
  for (std::int64_t t = thread / kWarp; t < args.num_tiles; t += warps) {
    for_each_piece(args.tiles, t, args.copies, args.num_copies, piece);
  }
}

template <KernelOp kOp>
cudaError_t OpKernels<kOp>::occupancy(bool streaming, int block_threads, int* blocks_per_sm) {
  const void* kernel = streaming
                           ? reinterpret_cast<const void*>(&gather_scatter_kernel<kOp, true>)
                           : reinterpret_cast<const void*>(&gather_scatter_kernel<kOp, false>);
  return cudaOccupancyMaxActiveBlocksPerMultiprocessor(blocks_per_sm, kernel, block_threads, 0);
}

template <KernelOp kOp>
cudaError_t OpKernels<kOp>::launch(bool streaming, const KernelArgs& args, int grid,
                                   int block_threads, cudaStream_t stream) {
  if (streaming) {
    gather_scatter_kernel<kOp, true><<<grid, block_threads, 0, stream>>>(args);
  } else {
    gather_scatter_kernel<kOp, false><<<grid, block_threads, 0, stream>>>(args);
  }
  return cudaGetLastError();
}

}  // namespace detail
}  // namespace flatgather
