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
// streams); plain gathers may. Elements are moved one per lane (no vector packs): this
// kernel favours simplicity over the copy kernels' bandwidth.
#include <cmath>
#include <cstdint>

#include "device_table.h"
#include "cast.h"
#include "copy_desc.h"
#include "flatgather/dtype.h"
#include "launch.h"
#include "stats.h"
#include "tiles.cuh"
#include "tuning.h"

namespace flatgather {
namespace detail {

namespace {

template <class T, class F>
using ScaleType = std::conditional_t<sizeof(typename Compute<T>::type) == 8 ||
                                         sizeof(typename Compute<F>::type) == 8,
                                     double, float>;

// dispatch_floating for device lambdas: a __host__ __device__ dispatcher may not call the
// implicitly constexpr __device__ lambdas below.
template <class F>
__device__ __forceinline__ void with_floating(DType t, F&& f) {
  switch (t) {
    case DType::Float64: f(double{}); break;
    case DType::Float16: f(Half{}); break;
    case DType::BFloat16: f(BFloat16{}); break;
    default: f(float{}); break;
  }
}

// The warp's share of one piece: lanes take elements lane, lane + 32, ...
__device__ __forceinline__ void stats_piece(const KernelArgs& a, double scale, const DeviceCopy& d,
                                            std::int64_t first, std::int64_t count, int lane,
                                            double& sum, int& bad) {
  constexpr int kWarp = CopyPolicy::kWarpThreads;
  char* flat = static_cast<char*>(a.d_flat) + d.flat_offset * dtype_size(a.flat_dtype);
  if (d.d_data == nullptr) {  // padding or a zero-filled tensor: zeros, nothing to add
    with_floating(a.flat_dtype, [&](auto flat_value) {
      using F = decltype(flat_value);
      for (std::int64_t j = lane; j < count; j += kWarp)
        reinterpret_cast<F*>(flat)[first + j] = F{};
    });
    return;
  }
  const CopyDesc* strided = d.strided >= 0 ? a.d_strided + d.strided : nullptr;
  with_floating(d.dtype, [&](auto tensor_value) {
    with_floating(a.flat_dtype, [&](auto flat_value) {
      using T = decltype(tensor_value);
      using F = decltype(flat_value);
      using C = ScaleType<T, F>;
      const T* tensor = static_cast<const T*>(d.d_data);
      F* out = reinterpret_cast<F*>(flat);
      const C s = static_cast<C>(scale);
      for (std::int64_t j = lane; j < count; j += kWarp) {
        const std::int64_t i = first + j;
        const std::int64_t e = strided ? element_offset(*strided, i) : i;
        const C v = convert<C>(tensor[e]);
        const F w = convert<F>(static_cast<C>(v * s));
        out[i] = w;
        const double x = convert<double>(w);
        sum += x * x;
        bad |= isfinite(v) ? 0 : 1;
      }
    });
  });
}

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
      const DeviceCopy& d = args.d_copies[c];
      double sum = 0.0;
      int bad = 0;
      stats_piece(args, scale, d, first, count, lane, sum, bad);
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

// scatter with a scale: tensor = cast(flat * scale), the scale in args.alpha / args.d_alpha.
// Elements one per lane, as above; used only when the scale is not the number 1.
__global__ void __launch_bounds__(kMaxBlockThreads, kMinBlocksPerSm)
    scatter_scaled_kernel(const KernelArgs args) {
  constexpr int kWarp = CopyPolicy::kWarpThreads;
  const WarpPlace w = warp_place();
  const int lane = w.lane;
  const double scale = args.d_alpha ? static_cast<double>(*args.d_alpha) : args.alpha;
  for (std::int64_t t = w.warp; t < args.num_tiles; t += w.warps) {
    for_each_piece(args.d_tiles, t, args.d_copies, args.num_copies,
                   [&](std::int32_t c, std::int64_t first, std::int64_t count) {
      const DeviceCopy& d = args.d_copies[c];
      if (d.d_data == nullptr) return;  // padding or a missing tensor: nothing to write
      const CopyDesc* strided = d.strided >= 0 ? args.d_strided + d.strided : nullptr;
      const char* flat =
          static_cast<const char*>(args.d_flat) + d.flat_offset * dtype_size(args.flat_dtype);
      with_floating(d.dtype, [&](auto tensor_value) {
        with_floating(args.flat_dtype, [&](auto flat_value) {
          using T = decltype(tensor_value);
          using F = decltype(flat_value);
          using C = ScaleType<T, F>;
          T* tensor = static_cast<T*>(d.d_data);
          const F* in = reinterpret_cast<const F*>(flat);
          const C s = static_cast<C>(scale);
          for (std::int64_t j = lane; j < count; j += kWarp) {
            const std::int64_t i = first + j;
            const std::int64_t e = strided ? element_offset(*strided, i) : i;
            tensor[e] = convert<T>(static_cast<C>(convert<C>(in[i]) * s));
          }
        });
      });
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
