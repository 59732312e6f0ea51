#pragma once
// How the copy routine (kernels/copy.cuh) splits a piece into a scalar head, packs and a
// scalar tail. Host/device functions with no CUDA dependency: tests/test_tiles.cpp runs them on
// the CPU.
//
// NOTE: [vector split]
// A piece is split into a scalar head, a body of packs and a scalar tail. A pack is K
// consecutive elements with K = 16 bytes / the wider element size, so the wider side of a
// pack is one 16-byte access and the narrower side one 8-, 4- or 2-byte access.
// - The lead side is the destination when it is contiguous, else the source when it is (the
//   flat buffer is always contiguous, so every copy has a lead side). The head is the number
//   of elements before the lead side's address is pack-aligned (< K).
// - The other side is accessed in packs too when it is contiguous and reaches pack alignment
//   after the same head (its address is congruent); otherwise element by element (a view at
//   an odd offset, or a layout without padding).
// - Head and tail are spread over the lanes, one element each; packs go lane by lane
//   (lane l takes packs l, l + 32, ...), `Unroll` packs in flight per lane (loads first,
//   then stores) so every lane keeps several 16-byte loads outstanding.
// split_range and distribute are host/device functions: tests/test_tiles.cpp checks on the
// CPU that every element of every piece is visited exactly once and that packs are aligned.

#include <cstdint>

#include "flatgather/config.h"
#include "tuning.h"

namespace flatgather {
namespace detail {

/// Elements per pack for element sizes `src_size` and `dst_size` (1, 2, 4 or 8 bytes).
FG_HOST_DEVICE constexpr int pack_elements(int src_size, int dst_size) {
  return CopyPolicy::kVectorBytes / (src_size > dst_size ? src_size : dst_size);
}

/// How a piece of `n` elements splits (see NOTE: [vector split]).
struct Split {
  std::int64_t head = 0;    ///< scalar elements before the first pack
  std::int64_t packs = 0;   ///< whole packs after the head
  std::int64_t tail = 0;    ///< scalar elements after the packs
  int pack = 1;             ///< elements per pack
  bool src_vector = false;  ///< the source is read a pack at a time
  bool dst_vector = false;  ///< the destination is written a pack at a time
};

/// Elements before `address` is aligned to `pack * size` bytes.
FG_HOST_DEVICE FG_FORCE_INLINE std::int64_t elements_to_alignment(std::uint64_t address, int size,
                                                                  int pack) {
  const std::uint64_t pack_bytes =
      static_cast<std::uint64_t>(pack) * static_cast<std::uint64_t>(size);
  const std::int64_t misaligned =
      static_cast<std::int64_t>((address % pack_bytes) / static_cast<std::uint64_t>(size));
  return (pack - misaligned) % pack;
}

/// Splits a piece of `n` elements whose first source element is at `src` (element size
/// `src_size`, `src_contiguous`) and first destination element at `dst`. The address of a
/// non-contiguous side is ignored.
FG_HOST_DEVICE FG_FORCE_INLINE Split split_range(std::uint64_t src, int src_size,
                                                 bool src_contiguous, std::uint64_t dst,
                                                 int dst_size, bool dst_contiguous,
                                                 std::int64_t n) {
  Split s;
  s.pack = pack_elements(src_size, dst_size);
  if (n <= 0) return s;
  if (!src_contiguous && !dst_contiguous) {  // no lead side: everything is scalar
    s.head = n;
    return s;
  }
  const bool dst_leads = dst_contiguous;
  const std::int64_t dst_head = dst_contiguous ? elements_to_alignment(dst, dst_size, s.pack) : -1;
  const std::int64_t src_head = src_contiguous ? elements_to_alignment(src, src_size, s.pack) : -1;
  const std::int64_t lead_head = dst_leads ? dst_head : src_head;
  s.head = lead_head < n ? lead_head : n;
  s.packs = (n - s.head) / s.pack;
  s.tail = n - s.head - s.packs * s.pack;
  if (s.packs > 0) {
    s.dst_vector = dst_contiguous && dst_head == lead_head;
    s.src_vector = src_contiguous && src_head == lead_head;
  }
  return s;
}

/// The split of a piece where a side is strided: every element on its own, lane l taking
/// elements l, l + 32, ... (NOTE: [strided copies] in kernels/copy.cuh).
FG_HOST_DEVICE FG_FORCE_INLINE Split all_scalar(std::int64_t n) {
  Split s;
  s.head = n;
  return s;
}

/// A split that depends only on where the piece sits in its buffers, not on the buffers'
/// addresses (NOTE: [stats order] in kernels/gather_stats.cu): the head is what the
/// contiguous destination would need if its buffer started pack-aligned, with `dst_index` the
/// piece's first element index in it; a side is accessed in packs only when its real address
/// is aligned after that head (else element by element, in the same order). A strided
/// source gives all_scalar.
FG_HOST_DEVICE FG_FORCE_INLINE Split split_fixed(std::int64_t dst_index, std::uint64_t src,
                                                 int src_size, bool src_contiguous,
                                                 std::uint64_t dst, int dst_size, std::int64_t n) {
  if (!src_contiguous) return all_scalar(n);
  Split s;
  s.pack = pack_elements(src_size, dst_size);
  if (n <= 0) return s;
  const std::uint64_t anchor =
      static_cast<std::uint64_t>(dst_index) * static_cast<std::uint64_t>(dst_size);
  const std::int64_t head = elements_to_alignment(anchor, dst_size, s.pack);
  s.head = head < n ? head : n;
  s.packs = (n - s.head) / s.pack;
  s.tail = n - s.head - s.packs * s.pack;
  if (s.packs > 0) {
    s.dst_vector = elements_to_alignment(dst, dst_size, s.pack) == s.head;
    s.src_vector = elements_to_alignment(src, src_size, s.pack) == s.head;
  }
  return s;
}

/// Spreads a split over `Lanes` lanes: `scalar(j)` for head and tail element j (relative to
/// the piece), `packs(p0)` for pack batches p0, p0 + Lanes, ..., p0 + Lanes * (Unroll - 1)
/// (those below split.packs; the callee checks). Every element is visited by one lane.
template <int Lanes, int Unroll, class Scalar, class Packs>
FG_HOST_DEVICE FG_FORCE_INLINE void distribute(const Split& s, int lane, Scalar&& scalar,
                                               Packs&& packs) {
  for (std::int64_t j = lane; j < s.head; j += Lanes) scalar(j);
  for (std::int64_t p0 = lane; p0 < s.packs; p0 += static_cast<std::int64_t>(Lanes) * Unroll)
    packs(p0);
  const std::int64_t tail_begin = s.head + s.packs * s.pack;
  for (std::int64_t j = lane; j < s.tail; j += Lanes) scalar(tail_begin + j);
}

}  // namespace detail
}  // namespace flatgather
