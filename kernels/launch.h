#pragma once
// Host-visible interface of the kernels (kernels/kernel.cuh, instantiated once per op in
// kernels/gather.cu, scatter.cu and scatter_add.cu): the launchers. The table they read is in
// kernels/device_table.h, their tuning in kernels/tuning.h.
// Plain C++: src/cuda_executor.cpp and kernels/launch.cpp include it.

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

#include "device_table.h"
#include "op.h"
#include "stats.h"
#include "tuning.h"

namespace flatgather {
namespace detail {

/// Blocks of `block_threads` threads of the kernel for `op` that fit on one SM, each warp with
/// `tile_bytes` of shared memory (KernelArgs::transpose_tile_bytes; NOTE: [shared transposes]).
/// Also lets the kernel launch with that much shared memory when it is above 48 KB a block.
/// `fetch`: the kernel with the descriptor fetch (NOTE: [kernel flavours] in kernels/kernel.cuh).
cudaError_t kernel_occupancy(Op op, bool streaming, bool fetch, int block_threads, int tile_bytes,
                             int* blocks_per_sm);

/// The kernels of one op, every flavour (NOTE: [kernel flavours]); defined in kernels/kernel.cuh
/// and instantiated only in that op's .cu file.
template <Op kOp>
struct OpKernels {
  static cudaError_t occupancy(bool streaming, bool fetch, int block_threads, int tile_bytes,
                               int* blocks_per_sm);
  static cudaError_t launch(bool streaming, const KernelArgs& args, int grid, int block_threads,
                            cudaStream_t stream);
};
extern template struct OpKernels<Op::Gather>;
extern template struct OpKernels<Op::Scatter>;
extern template struct OpKernels<Op::ScatterAdd>;

/// Launches the kernel for `op` on `stream` (one launch; no allocation, no copy), the walk
/// chosen by args.descriptor_path, and returns
/// that launch's own result (NOTE: [launch errors] in kernels/kernel.cuh).
cudaError_t launch_kernel(Op op, bool streaming, const KernelArgs& args, int grid,
                          int block_threads, cudaStream_t stream);

/// The per-plan scratch of a gather with statistics (NOTE: [gather statistics], NOTE: [cuda
/// stats scratch] in kernels/gather_stats.cu): allocated and initialised at plan build.
struct StatsArgs {
  StatsRequest request;
  const std::int64_t* d_piece_begin = nullptr;  ///< tile t's first partial; num_tiles + 1
  StatsPartial* d_parts = nullptr;              ///< one per (tile, copy) piece
  double* d_tensor_sums = nullptr;              ///< num_segments, scratch of the last block
  unsigned int* d_counter = nullptr;            ///< blocks done; back to 0 after each launch
};

/// Launches the scaled scatter kernel (kernels/gather_stats.cu): tensor = cast(flat * scale),
/// the scale in args.alpha, or read from args.d_alpha when set.
cudaError_t launch_scatter_scaled(const KernelArgs& args, int grid, int block_threads,
                                  cudaStream_t stream);

/// Launches the gather-with-statistics kernel (kernels/gather_stats.cu) on `stream`.
cudaError_t launch_gather_stats(const KernelArgs& args, const StatsArgs& stats, int grid,
                                int block_threads, cudaStream_t stream);

}  // namespace detail
}  // namespace flatgather
