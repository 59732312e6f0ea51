#pragma once
// Host-visible interface of the kernels (kernels/kernel.cuh, instantiated once per op in
// kernels/gather.cu, scatter.cu and scatter_add.cu): the tuning knobs and the launchers.
// Plain C++: src/cuda_executor.cpp and kernels/launch.cpp include it.

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

#include "flatgather/detail/copy_desc.h"
#include "flatgather/dtype.h"
#include "tiles.cuh"

namespace flatgather {
namespace detail {

const char* kernel_op_name(KernelOp op);

/// Run-time tuning, chosen from the compute capability (tuning_for) and logged by
/// Executor::describe. The compile-time constants are in CopyPolicy (kernels/copy.cuh).
struct Tuning {
  /// Threads per block; a multiple of 32, at most kMaxBlockThreads. Each warp works on its
  /// own tiles, so the block size only matters for occupancy.
  int block_threads = 256;
  /// Resident blocks per SM the grid is sized for, at most: grid = SMs x min(this, the
  /// occupancy calculator's answer), and never more warps than tiles.
  int max_blocks_per_sm = 8;
  /// Cost budget of one warp tile, bytes moved (read + written); see NOTE: [tiles].
  std::int64_t tile_bytes = 32 * 1024;
  /// Cost of starting a copy piece (descriptor load, head and tail), in bytes moved.
  std::int64_t copy_cost_bytes = 1024;
  /// Plans that move at least this many bytes per call use evict-first loads and stores
  /// (see NOTE: [cache hints]); 0 means the device's L2 size.
  std::int64_t streaming_min_bytes = 0;
};

/// Largest block the kernels are compiled for (__launch_bounds__).
constexpr int kMaxBlockThreads = 256;
/// Blocks per SM the kernels are compiled for (__launch_bounds__): caps registers at 128 per
/// thread. Without it ptxas aims for 64 to 80 registers and spills (see docs/perf.md).
constexpr int kMinBlocksPerSm = 2;

/// Tuning for a device of compute capability major.minor.
Tuning tuning_for(int major, int minor);

/// "block=256 blocks/SM<=8 tile=32768B copy_cost=1024B streaming>=52428800B".
std::string to_string(const Tuning& t);

/// Blocks of `block_threads` threads of the kernel for `op` that fit on one SM.
cudaError_t kernel_occupancy(KernelOp op, bool streaming, int block_threads, int* blocks_per_sm);

/// The kernels of one op, both cache-hint flavours; defined in kernels/kernel.cuh and
/// instantiated only in that op's .cu file.
template <KernelOp kOp>
struct OpKernels {
  static cudaError_t occupancy(bool streaming, int block_threads, int* blocks_per_sm);
  static cudaError_t launch(bool streaming, const KernelArgs& args, int grid, int block_threads,
                            cudaStream_t stream);
};
extern template struct OpKernels<KernelOp::Gather>;
extern template struct OpKernels<KernelOp::Scatter>;
extern template struct OpKernels<KernelOp::ScatterAdd>;

/// Launches the kernel for `op` on `stream` (one launch; no allocation, no copy) and returns
/// cudaGetLastError()'s answer.
cudaError_t launch_kernel(KernelOp op, bool streaming, const KernelArgs& args, int grid,
                          int block_threads, cudaStream_t stream);

}  // namespace detail
}  // namespace flatgather
