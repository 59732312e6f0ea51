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

// NOTE: [kernel flavours]
// Each op has four instantiations of the kernel: the two cache-hint flavours (NOTE: [cache
// hints] in kernels/copy.cuh) times the two tile walks (NOTE: [descriptor fetch] in
// kernels/tile_walk.cuh). The walk is a template parameter, not a branch in one kernel,
// because registers are allocated for the kernel's worst path: with both walks in one kernel
// gather and scatter needed 86 to 94 registers on sm_90 and lost their third 256-thread block
// per SM on every plan, the default walk included. Instantiated apart, the default kernels
// keep their registers and only a plan with descriptors=new pays for the staging (it sizes
// its grid from that kernel's own occupancy). The cost is compile time: each op's .cu
// compiles twice the kernels it did.
template <Op kOp, bool Streaming, bool kFetch>
__global__ void __launch_bounds__(kMaxBlockThreads, kMinBlocksPerSm)
    gather_scatter_kernel(const KernelArgs args) {
  const WarpPlace w = warp_place();
  const FetchedPieceFn<kOp, Streaming> piece{args, w.lane};
  if constexpr (kFetch) {
    // Each warp's 32 staged descriptors; uint4 words, as a __shared__ array cannot have
    // DeviceCopy's default member initializers.
    __shared__ uint4 staging[kMaxBlockThreads * kCopyWords];
    DeviceCopy* const warp_staging =
        reinterpret_cast<DeviceCopy*>(staging) +
        threadIdx.x / CopyPolicy::kWarpThreads * CopyPolicy::kWarpThreads;
    for (std::int64_t t = w.warp; t < args.num_tiles; t += w.warps) {
      walk_tile(args, t, true, warp_staging, w.lane, piece);
    }
  } else {
    for (std::int64_t t = w.warp; t < args.num_tiles; t += w.warps) {
      walk_tile(args, t, false, nullptr, w.lane, piece);
    }
  }
}

// The instantiation for a plan's cache-hint flavour and walk (NOTE: [kernel flavours]).
template <Op kOp>
const void* kernel_address(bool streaming, bool fetch) {
  if (fetch) {
    return streaming ? reinterpret_cast<const void*>(&gather_scatter_kernel<kOp, true, true>)
                     : reinterpret_cast<const void*>(&gather_scatter_kernel<kOp, false, true>);
  }
  return streaming ? reinterpret_cast<const void*>(&gather_scatter_kernel<kOp, true, false>)
                   : reinterpret_cast<const void*>(&gather_scatter_kernel<kOp, false, false>);
}

/// Dynamic shared memory of a launch of `block_threads` threads whose warps each take a tile
/// of `tile_bytes` (warp_tile; NOTE: [shared transposes]).
inline std::size_t shared_bytes(int block_threads, int tile_bytes) {
  return static_cast<std::size_t>(block_threads / CopyPolicy::kWarpThreads) *
         static_cast<std::size_t>(tile_bytes);
}

template <Op kOp>
cudaError_t OpKernels<kOp>::occupancy(bool streaming, bool fetch, int block_threads, int tile_bytes,
                                      int* blocks_per_sm) {
  const void* kernel = kernel_address<kOp>(streaming, fetch);
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
  const void* kernel = kernel_address<kOp>(streaming, args.descriptor_path == CopyPath::New);
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
