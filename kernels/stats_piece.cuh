#pragma once
// A warp's share of one piece of a gather with statistics and of a scatter with a scale
// (kernels/gather_stats.cu): the copy routine of kernels/copy.cuh with ops that scale, cast
// and, for the gather, per lane, sum the squares of the written values and flag non-finite
// sources (NOTE: [gather statistics] in
// src/stats.h). No shuffles and no barriers here, so tests/test_tiles.cpp runs it lane by lane
// on the CPU (tests/device_emulation.h); the warp's tree over its lanes is in the kernel.
//
// NOTE: [stats order]
// A norm's bits depend on the order its squares are added in. Each lane adds its elements
// in the order copy_split visits them (head elements, then its packs batch by batch, then
// tail elements), and which elements a lane gets is decided by split_fixed from the piece's
// position in the flat buffer only: the buffers' addresses decide only whether a side is
// read or written in 16-byte packs or element by element, never who adds what in which
// order. So a call gives the same bits for the same plan and tuning whatever flat buffer it
// writes and wherever the tensors moved (rebind), while aligned buffers (every LibTorch
// allocation) take the vector path. The per-lane sums then go through a fixed shuffle tree,
// the pieces' sums through finish_stats in piece order.
// Both kernels here keep the old copy paths whatever the plan's Tuning says (Side::indexer
// unset, PathChoice{}): strided tensors element by element with element_offset (NOTE: [strided
// copies]), a misaligned source element by element (NOTE: [misaligned copies]) and the unroll
// counted in packs (NOTE: [bytes in flight]). The new paths would change which lane adds which
// element or give the stats kernel more registers; the lanes' order above stays one rule.

#include <cmath>
#include <cstdint>

#include "copy.cuh"

namespace flatgather {
namespace detail {

#if defined(__CUDACC__) || defined(FLATGATHER_EMULATE_DEVICE)

/// dispatch_floating for the lambdas below: a __host__ __device__ dispatcher may not call the
/// implicitly constexpr __device__ lambdas of a non-template device function.
template <class F>
FG_DEVICE FG_FORCE_INLINE void with_floating(DType t, F&& f) {
  switch (t) {
    case DType::Float64: f(double{}); break;
    case DType::Float16: f(Half{}); break;
    case DType::BFloat16: f(BFloat16{}); break;
    default: f(float{}); break;
  }
}

/// f(T{}, F{}) with the floating types of a tensor (`tensor`) and of the flat buffer (`flat`).
template <class Fn>
FG_DEVICE FG_FORCE_INLINE void with_floating_pair(DType tensor, DType flat, Fn&& f) {
  with_floating(tensor, [&](auto t) { with_floating(flat, [&](auto fl) { f(t, fl); }); });
}

/// The product type of a gather with a scale: float32, float64 when either side is float64.
template <class T, class F>
using ScaleType = std::conditional_t<sizeof(typename Compute<T>::type) == 8 ||
                                         sizeof(typename Compute<F>::type) == 8,
                                     double, float>;

/// scatter with a scale: d = cast(s * scale), the product in C.
template <class C>
struct ScaleOp {
  static constexpr bool kReadsSrc = true;
  static constexpr bool kReadsDst = false;
  C scale;
  template <class S, class D>
  FG_DEVICE FG_FORCE_INLINE D apply(S s, D) const {
    return convert<D>(static_cast<C>(convert<C>(s) * scale));
  }
};

/// gather with statistics: d = cast(s * scale) (the product in C); adds d*d in float64 to
/// the lane's `sum` and sets `bad` when s is NaN or infinite. `sum` and `bad` are the lane's
/// registers: the op is applied by one lane only.
template <class C>
struct ScaleStatsOp {
  static constexpr bool kReadsSrc = true;
  static constexpr bool kReadsDst = false;
  C scale;
  double& sum;
  int& bad;
  template <class S, class D>
  FG_DEVICE FG_FORCE_INLINE D apply(S s, D) const {
    const C v = convert<C>(s);
    const D w = convert<D>(static_cast<C>(v * scale));
    const double x = convert<double>(w);
    sum += x * x;
#if defined(__CUDACC__)
    bad |= isfinite(v) ? 0 : 1;
#else
    bad |= std::isfinite(v) ? 0 : 1;
#endif
    return w;
  }
};

/// The lane's share of elements [first, first + count) of copy `d` of a gather with
/// statistics, the scale already read: writes the flat buffer, adds the lane's squares to
/// `sum` and its non-finite flag to `bad` (see NOTE: [stats order]).
FG_DEVICE FG_FORCE_INLINE void stats_piece(const KernelArgs& a, double scale, const DeviceCopy& d,
                                           std::int64_t first, std::int64_t count, int lane,
                                           double& sum, int& bad) {
  const int flat_size = dtype_size(a.flat_dtype);
  char* flat = static_cast<char*>(a.d_flat) + d.flat_offset * flat_size;
  const std::int64_t flat_index = d.flat_offset + first;
  if (d.d_data == nullptr) {  // padding or a zero-filled tensor: zeros, nothing to add
    // Straight to copy_split without the byte-sized unroll, not through zero_piece: with
    // zero_piece this kernel gets a 240-byte stack frame and 96-98 registers on sm_90, whether
    // zero_piece goes through copy_piece or straight to copy_split with PathChoice{} (tried).
    with_raw(flat_size, [&](auto raw) {
      using R = decltype(raw);
      const Side<R> dst{flat, nullptr};
      const std::uint64_t address = reinterpret_cast<std::uint64_t>(dst.at(first));
      const int size = static_cast<int>(sizeof(R));
      const Split split = split_range(address, size, true, address, size, true, count);
      copy_split<false, R, R>(dst, dst, first, split, ZeroOp{}, lane, false);
    });
    return;
  }
  char* data = static_cast<char*>(d.d_data);
  const CopyDesc* strided = d.strided >= 0 ? a.d_strided + d.strided : nullptr;
  with_floating_pair(d.dtype, a.flat_dtype, [&](auto tensor_value, auto flat_value) {
    using T = decltype(tensor_value);
    using F = decltype(flat_value);
    const Side<T> src{data, strided};
    const Side<F> dst{flat, nullptr};
    const Split split = split_fixed(flat_index, reinterpret_cast<std::uint64_t>(src.at(first)),
                                    static_cast<int>(sizeof(T)), strided == nullptr,
                                    reinterpret_cast<std::uint64_t>(dst.at(first)),
                                    static_cast<int>(sizeof(F)), count);
    const ScaleStatsOp<ScaleType<T, F>> op{static_cast<ScaleType<T, F>>(scale), sum, bad};
    copy_split<false, T, F>(src, dst, first, split, op, lane, false);
  });
}

/// The lane's share of elements [first, first + count) of copy `d` of a scatter with a scale
/// (tensor = cast(flat * scale)); packs where the addresses allow, as copy_piece.
FG_DEVICE FG_FORCE_INLINE void scaled_scatter_piece(const KernelArgs& a, double scale,
                                                    const DeviceCopy& d, std::int64_t first,
                                                    std::int64_t count, int lane) {
  if (d.d_data == nullptr) return;  // padding or a missing tensor: nothing to write
  char* flat = static_cast<char*>(a.d_flat) + d.flat_offset * dtype_size(a.flat_dtype);
  const CopyDesc* strided = d.strided >= 0 ? a.d_strided + d.strided : nullptr;
  with_floating_pair(d.dtype, a.flat_dtype, [&](auto tensor_value, auto flat_value) {
    using T = decltype(tensor_value);
    using F = decltype(flat_value);
    using C = ScaleType<T, F>;
    const Side<F> src{flat, nullptr};
    const Side<T> dst{static_cast<char*>(d.d_data), strided};
    copy_piece<false, F, T>(src, dst, first, count, ScaleOp<C>{static_cast<C>(scale)}, lane,
                            PathChoice{});
  });
}

#endif  // __CUDACC__ || FLATGATHER_EMULATE_DEVICE

}  // namespace detail
}  // namespace flatgather
