#pragma once
// The descriptor and the piece arithmetic of the shared-memory transpose path of the kernels
// (NOTE: [shared transposes] in kernels/copy.cuh). Host/device functions with no CUDA
// dependency: built on the host at plan build and uploaded with the device table (NOTE:
// [device table]); tests/test_tiles.cpp checks the selection and the cutting on the CPU.

#include <cstdint>

#include "flatgather/config.h"
#include "copy_desc.h"
#include "strided_index.h"
#include "tuning.h"

namespace flatgather {
namespace detail {

/// Rows and columns of a block moved through a warp's shared tile: a warp's width, so the
/// tensor side reads 32 consecutive elements of its stride-1 dimension per access.
constexpr int kTransposeBlock = CopyPolicy::kWarpThreads;
/// Elements a tile row holds: one more than a block row, so that lane l's accesses to column
/// c (element l * kTransposePitch + c) fall in distinct banks for 4-byte elements.
constexpr int kTransposePitch = kTransposeBlock + 1;
/// Elements of one warp's shared tile.
constexpr int kTransposeTileElements = kTransposeBlock * kTransposePitch;
/// Whole rows a piece needs before it takes the transpose path: fewer rows give the tensor
/// side fewer than 8 consecutive elements per access (one 32-byte sector of float32), where
/// the strided path's 32 elements per access in flight serve better.
constexpr std::int64_t kTransposeMinRows = 8;
/// Largest copy (elements) the descriptor serves: 32-bit indices with a row's length added.
constexpr std::int64_t kTransposeMaxNumel = (std::int64_t{1} << 31) - 1;

/// A strided copy seen as a stack of matrices (NOTE: [shared transposes]): logical element
/// i = (b, r, c) of batch b, row r, column c (c fastest, `cols` columns, `rows` rows a batch)
/// lies at element offset b * batch_stride + r + c * col_stride of the tensor: its rows are
/// its stride-1 dimension. Built by make_transpose.
struct alignas(16) TransposeDesc {
  std::int64_t batch_stride = 0;  ///< elements
  std::int64_t col_stride = 0;    ///< elements; never 1 (the copy would be contiguous rows)
  FastDivider rows;               ///< rows of one batch
  FastDivider cols;               ///< columns of one row
  std::int32_t usable = 0;        ///< 0: the copy never takes the transpose path

  /// Element offset of the element at row q (counted over all batches) and column c.
  FG_HOST_DEVICE FG_FORCE_INLINE std::int64_t offset(std::uint32_t q, std::uint32_t c) const {
    const std::uint32_t b = rows.div(q);
    return static_cast<std::int64_t>(b) * batch_stride +
           static_cast<std::int64_t>(q - b * rows.divisor) +
           static_cast<std::int64_t>(c) * col_stride;
  }
};

/// The descriptor of a strided copy (host, at plan build): usable when the copy is a
/// transposition of its two innermost dimensions (is_transposed_2d) with at most one batch
/// dimension, fewer than kTransposeMaxNumel elements and positive strides.
inline TransposeDesc make_transpose(const CopyDesc& d) {
  TransposeDesc t;
  if (!is_transposed_2d(d) || d.ndim > 3 || d.numel < 1 || d.numel > kTransposeMaxNumel) return t;
  const int r = d.ndim - 2;
  const int c = d.ndim - 1;
  if (d.strides[c] < 1 || (d.ndim == 3 && d.strides[0] < 1)) return t;
  t.rows = make_divider(static_cast<std::uint32_t>(d.sizes[r]));
  t.cols = make_divider(static_cast<std::uint32_t>(d.sizes[c]));
  t.col_stride = d.strides[c];
  t.batch_stride = d.ndim == 3 ? d.strides[0] : 0;
  t.usable = 1;
  return t;
}

/// How a piece [first, first + count) of a transposed copy splits (NOTE: [shared
/// transposes]): whole rows [row_begin, row_end) go through the shared tile; the `head`
/// elements before them and the `tail` after them (parts of a row) element by element.
struct TransposeCut {
  std::uint32_t row_begin = 0;
  std::uint32_t row_end = 0;  ///< row_end - row_begin < kTransposeMinRows: no transpose
  std::uint32_t head = 0;     ///< elements [first, first + head)
  std::uint32_t tail = 0;     ///< elements [row_end * cols, row_end * cols + tail)
};

/// The cut of piece [first, first + count) (first + count <= numel <= kTransposeMaxNumel).
FG_HOST_DEVICE FG_FORCE_INLINE TransposeCut cut_transpose(const TransposeDesc& t,
                                                          std::int64_t first, std::int64_t count) {
  TransposeCut cut;
  const std::uint32_t lo = static_cast<std::uint32_t>(first);
  const std::uint32_t hi = static_cast<std::uint32_t>(first + count);
  const std::uint32_t n = t.cols.divisor;
  cut.row_begin = t.cols.div(lo + n - 1);  // < 2^32: lo < 2^31 and n < 2^31
  cut.row_end = t.cols.div(hi);
  if (cut.row_end <= cut.row_begin) {  // no whole row: the head holds it all
    cut.row_end = cut.row_begin;
    cut.head = hi - lo;
    return cut;
  }
  cut.head = cut.row_begin * n - lo;
  cut.tail = hi - cut.row_end * n;
  return cut;
}

}  // namespace detail
}  // namespace flatgather
