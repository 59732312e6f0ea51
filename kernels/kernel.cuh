#pragma once
// The one kernel template and its per-op launchers (OpKernels). Each op's instantiations live
// in their own translation unit (kernels/gather.cu, scatter.cu, scatter_add.cu) so that nvcc
// compiles them in parallel; kernels/launch.cpp picks one at run time. Thin: a warp takes
// tiles (NOTE: [tiles]), walks the copy pieces in each (NOTE: [descriptor fetch]) and hands
// each piece to process_piece (NOTE: [vector split]). No allocation, no LibTorch.

#include <cuda_runtime.h>

#include <cstdint>

#include "copy.cuh"
#include "device_table.h"
#include "launch.h"
#include "op.h"
#include "tile_walk.cuh"
#include "tiles.cuh"
#include "tuning.h"

namespace flatgather {
namespace detail {

/// One kernel for every plan: warps stride over the tiles (NOTE: [tiles]).
template <Op kOp, bool Streaming>
__global__ void __launch_bounds__(kMaxBlockThreads, kMinBlocksPerSm)
    gather_scatter_kernel(const KernelArgs args) {
  const WarpPlace w = warp_place();
  const FetchedPieceFn<kOp, Streaming> piece{args, w.lane};
  // Uniform across the grid: one walk, one process_piece site (NOTE: [descriptor fetch]).
  const bool across_lanes = args.descriptor_path == CopyPath::New;
  // Each warp's 32 staged descriptors; uint4 words, as a __shared__ array cannot have
  // DeviceCopy's default member initializers.
  __shared__ uint4 staging[kMaxBlockThreads * kCopyWords];
  DeviceCopy* const warp_staging =
      reinterpret_cast<DeviceCopy*>(staging) +
      threadIdx.x / CopyPolicy::kWarpThreads * CopyPolicy::kWarpThreads;
  for (std::int64_t t = w.warp; t < args.num_tiles; t += w.warps) {
    walk_tile(args, t, across_lanes, warp_staging, w.lane, piece);
  }
}

template <Op kOp, bool Streaming>
const void* kernel_address() {
  return reinterpret_cast<const void*>(&gather_scatter_kernel<kOp, Streaming>);
}

/// Dynamic shared memory of a launch of `block_threads` threads whose warps each take a tile
/// of `tile_bytes` (warp_tile; NOTE: [shared transposes]).
inline std::size_t shared_bytes(int block_threads, int tile_bytes) {
  return static_cast<std::size_t>(block_threads / CopyPolicy::kWarpThreads) *
         static_cast<std::size_t>(tile_bytes);
}

template <Op kOp>
cudaError_t OpKernels<kOp>::occupancy(bool streaming, int block_threads, int tile_bytes,
                                      int* blocks_per_sm) {
  const void* kernel = streaming ? kernel_address<kOp, true>() : kernel_address<kOp, false>();
  const std::size_t shared = shared_bytes(block_threads, tile_bytes);
  // Above 48 KB a block must opt in (8-byte tiles of 8 warps: 66 KB); set at plan build.
  if (shared > 48 * 1024) {
    const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               static_cast<int>(shared));
    if (e != cudaSuccess) return e;
  }
  return cudaOccupancyMaxActiveBlocksPerMultiprocessor(blocks_per_sm, kernel, block_threads,
                                                       shared);
}

// NOTE: [launch errors]
// A launch with <<<>>> reports its failure only through cudaGetLastError, which also returns
// (and clears) an error left by someone else's earlier call, so flatgather would be blamed for
// it and its owner would never see it. cudaLaunchKernel returns the launch's own result. On
// failure the runtime also records that result as the thread's last error, which we clear:
// the caller gets it as a flatgather::Error. On success the last-error state is untouched.
// A sticky error (a kernel of anyone's faulted and the context is lost) fails every launch;
// that is reported, as it must be, since our kernel did not run.
template <Op kOp>
cudaError_t OpKernels<kOp>::launch(bool streaming, const KernelArgs& args, int grid,
                                   int block_threads, cudaStream_t stream) {
  const void* kernel = streaming ? kernel_address<kOp, true>() : kernel_address<kOp, false>();
  KernelArgs by_value = args;
  void* params[] = {&by_value};
  const cudaError_t result = cudaLaunchKernel(
      kernel, dim3(static_cast<unsigned>(grid)), dim3(static_cast<unsigned>(block_threads)), params,
      shared_bytes(block_threads, args.transpose_tile_bytes), stream);
  if (result != cudaSuccess) (void)cudaGetLastError();  // ours: reported through the result
  return result;
}

}  // namespace detail
}  // namespace flatgather
