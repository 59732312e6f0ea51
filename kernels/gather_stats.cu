// The gather-with-statistics kernel (NOTE: [gather statistics] in src/stats.h) and the
// scaled scatter kernel.
//
// NOTE: [cuda stats scratch]
// At plan build the executor counts the pieces of every tile (for_each_piece, the kernels'
// own tile walk, run on the host) and allocates, once: d_piece_begin (tile t's first piece),
// one StatsPartial per piece, num_segments doubles and a counter of finished blocks, zero.
// A call launches one kernel: warps stride over the tiles as in gather; for each piece the
// warp writes cast(source * scale), each lane sums its squares in float64, the warp adds its
// 32 lanes in a fixed shuffle tree and lane 0 stores the piece's partial in its own slot. The
// last block to finish (threadfence, then an atomicAdd on the integer counter) adds the
// partials in piece order, which is flat order, writes the results and resets the counter,
// so graph replays and the next call start from zero. No floating-point atomics: the result
// depends only on the tiles (the tuning), not on the grid or on scheduling. The scratch is
// the plan's, so gathers with statistics through one plan must not run concurrently (on two
// streams); plain gathers may. Each piece is moved by the copy routine (kernels/copy.cuh:
// 16-byte packs, several in flight per lane, where the addresses allow) with the lanes'
// element order fixed by the plan (NOTE: [stats order] in kernels/stats_piece.cuh). Loads
// and stores use the default cache hints (NOTE: [cache hints]), never the streaming ones.
#include <cmath>
#include <cstdint>

#include "device_table.h"
#include "launch.h"
#include "stats.h"
#include "stats_piece.cuh"
#include "tiles.cuh"
#include "tuning.h"

namespace flatgather {
namespace detail {

namespace {

__global__ void __launch_bounds__(kMaxBlockThreads, kMinBlocksPerSm)
    gather_stats_kernel(const KernelArgs args, const StatsArgs stats) {
  constexpr int kWarp = CopyPolicy::kWarpThreads;
  const WarpPlace w = warp_place();
  const int lane = w.lane;
  const StatsRequest& r = stats.request;
  const double scale = r.d_scale ? static_cast<double>(*r.d_scale) : r.scale;
  for (std::int64_t t = w.warp; t < args.num_tiles; t += w.warps) {
    std::int64_t slot = stats.d_piece_begin[t];
    for_each_piece(args.d_tiles, t, args.d_copies, args.num_copies,
                   [&](std::int32_t c, std::int64_t first, std::int64_t count) {
      double sum = 0.0;
      int bad = 0;
      stats_piece(args, scale, args.d_copies[c], first, count, lane, sum, bad);
      for (int offset = kWarp / 2; offset > 0; offset /= 2) {  // fixed tree
        sum += __shfl_down_sync(0xffffffffu, sum, offset);
        bad |= __shfl_down_sync(0xffffffffu, bad, offset);
      }
      if (lane == 0) {  // the segment was written at build
        stats.d_parts[slot].sumsq = sum;
        stats.d_parts[slot].nonfinite = bad;
      }
      ++slot;
    });
  }
  // The last block adds the partials (NOTE: [cuda stats scratch]).
  __shared__ bool last;
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    last = atomicAdd(stats.d_counter, 1u) == gridDim.x - 1;
  }
  __syncthreads();
  if (!last || threadIdx.x != 0) return;
  __threadfence();
  finish_stats(
      r,
      [&](std::int64_t p) {
    StatsPartial u;
    u.sumsq = __ldcg(&stats.d_parts[p].sumsq);
    u.nonfinite = __ldcg(&stats.d_parts[p].nonfinite);
    u.segment = stats.d_parts[p].segment;  // written at build, never by a kernel
    return u;
      },
      stats.d_piece_begin[args.num_tiles], stats.d_tensor_sums);
  *stats.d_counter = 0u;
}

// scatter with a scale: tensor = cast(flat * scale), the scale in args.alpha / args.d_alpha;
// used only when the scale is not the number 1.
__global__ void __launch_bounds__(kMaxBlockThreads, kMinBlocksPerSm)
    scatter_scaled_kernel(const KernelArgs args) {
  const WarpPlace w = warp_place();
  const double scale = args.d_alpha ? static_cast<double>(*args.d_alpha) : args.alpha;
  for (std::int64_t t = w.warp; t < args.num_tiles; t += w.warps) {
    for_each_piece(args.d_tiles, t, args.d_copies, args.num_copies,
                   [&](std::int32_t c, std::int64_t first, std::int64_t count) {
      scaled_scatter_piece(args, scale, args.d_copies[c], first, count, w.lane);
    });
  }
}

cudaError_t launch(const void* kernel, void** params, int grid, int block_threads,
                   cudaStream_t stream) {
  const cudaError_t result =
      cudaLaunchKernel(kernel, dim3(static_cast<unsigned>(grid)),
                       dim3(static_cast<unsigned>(block_threads)), params, 0, stream);
  if (result != cudaSuccess) (void)cudaGetLastError();  // NOTE: [launch errors]
  return result;
}

}  // namespace

cudaError_t launch_scatter_scaled(const KernelArgs& args, int grid, int block_threads,
                                  cudaStream_t stream) {
  KernelArgs a = args;
  void* params[] = {&a};
  return launch(reinterpret_cast<const void*>(&scatter_scaled_kernel), params, grid, block_threads,
                stream);
}

cudaError_t launch_gather_stats(const KernelArgs& args, const StatsArgs& stats, int grid,
                                int block_threads, cudaStream_t stream) {
  KernelArgs a = args;
  StatsArgs s = stats;
  void* params[] = {&a, &s};
  return launch(reinterpret_cast<const void*>(&gather_stats_kernel), params, grid, block_threads,
                stream);
}

}  // namespace detail
}  // namespace flatgather
