#pragma once
/// \file copy_desc.h
/// The executor-neutral description of one copy between a tensor and the flat buffer.
/// Built by the plan on the host; read by the CPU executor and, in a device table, by the
/// CUDA kernels.

#include <cmath>
#include <cstdint>

#include "flatgather/config.h"
#include "flatgather/dtype.h"
#include "cast.h"

namespace flatgather {
namespace detail {

/// Dimensions a strided tensor may have after merging the ones that are contiguous with each
/// other. channels_last (NHWC strides) and transposed views need at most 4.
constexpr int kMaxDims = 8;

/// One range of the flat buffer and the tensor it maps to.
struct CopyDesc {
  void* data = nullptr;  ///< null: zeros on gather (padding, zero-filled grads), skipped by scatter
  std::int64_t flat_offset = 0;  ///< elements of the flat dtype
  std::int64_t numel = 0;
  std::int32_t ndim = 1;         ///< after coalescing
  DType dtype = DType::Float32;  ///< the tensor's dtype
  bool contiguous = true;        ///< ndim == 1 and stride 1: element i is at data + i
  std::int32_t segment = -1;     ///< index in Layout::segments(), -1 for padding
  std::int64_t sizes[kMaxDims] = {};
  std::int64_t strides[kMaxDims] = {};
};

/// Element offset (in elements of the tensor's dtype) of logical index `i` (row-major order).
FG_HOST_DEVICE FG_FORCE_INLINE std::int64_t element_offset(const CopyDesc& d, std::int64_t i) {
  if (d.contiguous) return i;
  std::int64_t offset = 0;
  for (int dim = d.ndim - 1; dim > 0; --dim) {
    const std::int64_t size = d.sizes[dim];
    offset += (i % size) * d.strides[dim];
    i /= size;
  }
  return offset + i * d.strides[0];
}

/// True when the two innermost (coalesced) dimensions are a transposition: the next-to-last
/// has stride 1 and the last does not (transposed matrices, channels_last weights). Such a
/// copy is a stack of `sizes[ndim-2]` x `sizes[ndim-1]` matrices, and the CPU executor moves
/// it in cache blocks (see NOTE: [cpu transposed blocks] in src/cpu_loops.inc).
FG_HOST_DEVICE FG_FORCE_INLINE bool is_transposed_2d(const CopyDesc& d) {
  return !d.contiguous && d.ndim >= 2 && d.strides[d.ndim - 2] == 1 && d.strides[d.ndim - 1] != 1;
}

// NOTE: [byte plan words]
// A byte plan hands the executors a tensor of element size w as uint8 with one more,
// innermost dimension of size w and stride 1 (NOTE: [byte plans] in src/layout.cpp). A
// contiguous tensor coalesces into one run of bytes; a strided one (channels_last, a
// transposed view) would be walked byte by byte, one address computation per byte. When the
// copy's other strides and its flat offset are multiples of w, the same copy is a copy of
// w-byte words: word_view drops the innermost dimension and divides the strides and the
// offset by w. The words hold the same bytes in the same order, so the bits are those of the
// byte walk, with w times fewer steps. A piece of the copy can move as words when its bounds
// are multiples of w.

/// The word size (2, 4 or 8 bytes) a strided byte copy can move in (NOTE: [byte plan
/// words]), or 1 when it cannot.
FG_HOST_DEVICE FG_FORCE_INLINE int word_bytes(const CopyDesc& d) {
  if (d.contiguous || d.dtype != DType::UInt8 || d.ndim < 2) return 1;
  const int inner = d.ndim - 1;
  const std::int64_t w = d.sizes[inner];
  if (d.strides[inner] != 1 || (w != 2 && w != 4 && w != 8) || d.flat_offset % w != 0) return 1;
  for (int dim = 0; dim < inner; ++dim) {
    if (d.strides[dim] % w != 0) return 1;
  }
  return static_cast<int>(w);
}

/// The byte copy `d` as a copy of `w`-byte words (w == word_bytes(d) > 1): element i is bytes
/// [i * w, i * w + w) of `d`; flat_offset and numel count words.
FG_HOST_DEVICE FG_FORCE_INLINE CopyDesc word_view(const CopyDesc& d, int w) {
  CopyDesc out = d;
  out.ndim = d.ndim - 1;
  out.numel = d.numel / w;
  out.flat_offset = d.flat_offset / w;
  out.sizes[out.ndim] = 0;
  out.strides[out.ndim] = 0;
  for (int dim = 0; dim < out.ndim; ++dim) out.strides[dim] = d.strides[dim] / w;
  out.contiguous = out.ndim == 1 && out.strides[0] == 1;
  return out;
}

/// Bytes a copy moves per element: the flat side, plus the tensor side when it has data
/// (padding and zero-filled tensors only write the flat buffer). The measure both the CPU
/// tasks and the CUDA tiles are balanced by (NOTE: [cpu work split]).
FG_HOST_DEVICE FG_FORCE_INLINE std::int64_t bytes_per_element(const CopyDesc& d, int flat_size) {
  return flat_size + (d.data ? dtype_size(d.dtype) : 0);
}

/// `t + alpha * v` with one fused multiply-add in the compute type (see plan.h scatter_add).
template <class T, class V>
FG_HOST_DEVICE FG_FORCE_INLINE T add_scaled(T t, V v, double alpha) {
  using TC = typename Compute<T>::type;
  using VC = typename Compute<V>::type;
  constexpr bool wide = sizeof(TC) == 8 || sizeof(VC) == 8;
  if constexpr (wide) {
    const double r = fma(alpha, convert<double>(v), convert<double>(t));
    return convert<T>(r);
  } else {
    const float r = fmaf(static_cast<float>(alpha), convert<float>(v), convert<float>(t));
    return convert<T>(r);
  }
}

}  // namespace detail
}  // namespace flatgather
