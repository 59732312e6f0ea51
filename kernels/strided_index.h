#pragma once
// The strided descriptor the new strided path of the kernels keeps in registers (NOTE: [strided
// copies] in kernels/copy.cuh): at most kIndexerDims dimensions, 32-bit sizes with a
// precomputed fast division each, built on the host at plan build and uploaded with the device
// table (NOTE: [device table]). Host/device functions with no CUDA dependency:
// tests/test_tiles.cpp checks them on the CPU against plain division.
//
// NOTE: [fast division]
// Division of a 32-bit index by a size d that is fixed per plan, without a divide
// instruction: q = (umulhi(n, magic) + n) >> shift, with shift = ceil(log2 d) and
// magic = floor(2^32 * (2^shift - d) / d) + 1 (the round-up method of Granlund and Montgomery,
// "Division by invariant integers using multiplication", 1994, which PyTorch's IntDivider uses
// too). The sum is formed in 64 bits, so it is exact for every n < 2^32 and every d in
// [1, 2^31]; tests/test_tiles.cpp checks edge values and random ones against n / d.

#include <cstdint>

#include "flatgather/config.h"
#include "copy_desc.h"
#include "tuning.h"

// `#pragma unroll` in device code; nothing for the host compilers (nvcc's host pass included).
#if defined(__CUDA_ARCH__)
#define FG_INDEXER_UNROLL _Pragma("unroll")
#else
#define FG_INDEXER_UNROLL
#endif

namespace flatgather {
namespace detail {

/// Dimensions the register-resident descriptor holds; copies with more (after coalescing)
/// take the old strided path. channels_last and transposed views need at most 4.
constexpr int kIndexerDims = 4;
/// Logical elements a cursor advances at a time: a warp's lanes take consecutive elements.
constexpr std::uint32_t kIndexerStep = CopyPolicy::kWarpThreads;
/// Largest copy (elements) the indexer serves: 32-bit indices (a cursor's first element is
/// placed with 32-bit divisions).
constexpr std::int64_t kIndexerMaxNumel = (std::int64_t{1} << 32) - (std::int64_t{1} << 16);

/// The high 32 bits of a * b.
FG_HOST_DEVICE FG_FORCE_INLINE std::uint32_t mul_hi32(std::uint32_t a, std::uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __umulhi(a, b);
#else
  return static_cast<std::uint32_t>((static_cast<std::uint64_t>(a) * b) >> 32);
#endif
}

/// A divisor in [1, 2^31] with its magic number (NOTE: [fast division]).
struct FastDivider {
  std::uint32_t divisor = 1;
  std::uint32_t magic = 1;
  std::uint32_t shift = 0;

  /// n / divisor for any n < 2^32.
  FG_HOST_DEVICE FG_FORCE_INLINE std::uint32_t div(std::uint32_t n) const {
    return static_cast<std::uint32_t>((static_cast<std::uint64_t>(mul_hi32(n, magic)) + n) >>
                                      shift);
  }
};

/// The divider of `d` (1 <= d <= 2^31; host, at plan build).
inline FastDivider make_divider(std::uint32_t d) {
  FastDivider f;
  f.divisor = d;
  f.shift = 0;
  while ((std::uint64_t{1} << f.shift) < d) ++f.shift;
  f.magic = static_cast<std::uint32_t>(
      (std::uint64_t{1} << 32) * ((std::uint64_t{1} << f.shift) - d) / d + 1);
  return f;
}

/// Where a lane is in a strided copy: the element offset of a logical index and the index's
/// digits in every dimension but the outermost (index[0] is unused).
struct IndexCursor {
  std::int64_t offset = 0;
  std::uint32_t index[kIndexerDims] = {};
};

/// A strided copy's sizes and strides, right-aligned to kIndexerDims (leading dimensions of
/// size 1, stride 0), with a fast divider per size and kIndexerStep written in the sizes'
/// mixed radix. Built by make_indexer.
///
/// NOTE: [strided cursor]
/// A lane visits logical indices i, i + 32, i + 64, ... Its cursor holds i's digits in the
/// mixed radix of the sizes; adding the constant 32 is a digit-wise add of 32's own digits
/// (precomputed) in which every digit carries at most 1 (digit + digit + 1 < 2 x size), so
/// stepping needs a compare and a subtract per dimension and no division. Divisions (fast
/// ones) only place the cursor at a lane's first element of a piece.
struct alignas(16) StridedIndexer {
  std::int64_t strides[kIndexerDims] = {};       ///< elements; [0] outermost
  FastDivider sizes[kIndexerDims] = {};          ///< [0] is never divided by
  std::uint32_t step_digits[kIndexerDims] = {};  ///< kIndexerStep in the sizes' mixed radix
  std::int32_t usable = 0;                       ///< 0: the copy takes the old strided path

  /// Cursor at logical index `i` (< 2^32): kIndexerDims - 1 fast divisions.
  FG_HOST_DEVICE FG_FORCE_INLINE IndexCursor at(std::uint32_t i) const {
    IndexCursor c;
    std::uint32_t rest = i;
    FG_INDEXER_UNROLL
    for (int dim = kIndexerDims - 1; dim > 0; --dim) {
      const std::uint32_t q = sizes[dim].div(rest);
      c.index[dim] = rest - q * sizes[dim].divisor;
      c.offset += static_cast<std::int64_t>(c.index[dim]) * strides[dim];
      rest = q;
    }
    c.offset += static_cast<std::int64_t>(rest) * strides[0];
    return c;
  }

  /// Moves `c` forward by kIndexerStep logical elements (NOTE: [strided cursor]).
  FG_HOST_DEVICE FG_FORCE_INLINE void advance(IndexCursor& c) const {
    std::uint32_t carry = 0;
    FG_INDEXER_UNROLL
    for (int dim = kIndexerDims - 1; dim > 0; --dim) {
      std::uint32_t v = c.index[dim] + step_digits[dim] + carry;
      carry = v >= sizes[dim].divisor ? 1u : 0u;
      if (carry) v -= sizes[dim].divisor;
      c.offset +=
          (static_cast<std::int64_t>(v) - static_cast<std::int64_t>(c.index[dim])) * strides[dim];
      c.index[dim] = v;
    }
    c.offset += static_cast<std::int64_t>(step_digits[0] + carry) * strides[0];
  }
};

/// The indexer of a strided copy (host, at plan build); `usable` is 0 when the copy has more
/// than kIndexerDims dimensions, more than kIndexerMaxNumel elements or a size above 2^31.
inline StridedIndexer make_indexer(const CopyDesc& d) {
  StridedIndexer ix;
  if (d.ndim < 1 || d.ndim > kIndexerDims || d.numel > kIndexerMaxNumel) return ix;
  const int lead = kIndexerDims - d.ndim;
  for (int k = 0; k < d.ndim; ++k) {
    // Empty copies move nothing; a size above 2^31 has no 32-bit magic number.
    if (d.sizes[k] < 1 || d.sizes[k] > (std::int64_t{1} << 31)) return ix;
    ix.sizes[lead + k] = make_divider(static_cast<std::uint32_t>(d.sizes[k]));
    ix.strides[lead + k] = d.strides[k];
  }
  std::uint32_t rest = kIndexerStep;
  for (int k = kIndexerDims - 1; k > 0; --k) {
    ix.step_digits[k] = rest % ix.sizes[k].divisor;
    rest /= ix.sizes[k].divisor;
  }
  ix.step_digits[0] = rest;
  ix.usable = 1;
  return ix;
}

}  // namespace detail
}  // namespace flatgather
