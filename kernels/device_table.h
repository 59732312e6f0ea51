#pragma once
// The device table of a CUDA plan: its types, how it is built on the host and where each part
// lies in the one device allocation. Plain C++: the executor, the kernels and the CPU tests
// (tests/test_tiles.cpp) include it.
//
// NOTE: [device table]
// One cudaMalloc per plan holds, each part 256-byte aligned (TableLayout): the DeviceCopy of
// every copy, the CopyDesc (sizes, strides) of every strided copy, the StridedIndexer of every
// strided copy (same index; kernels/strided_index.h), its TransposeDesc (same index;
// kernels/transpose.h), and the tiles
// (NOTE: [tiles]) plus their sentinel. It is built on the host and uploaded once, at plan
// build, and the upload has completed when Plan::build returns, so a kernel launched on any
// stream right after (a non-blocking one included) reads the whole table. A call then only
// launches a kernel whose by-value KernelArgs point into it: no allocation, no host-to-device
// copy, nothing that a CUDA graph could not capture. rebind rewrites the DeviceCopy entries of
// the moved segments (see NOTE: [batched rebind] in src/cuda_executor.cpp): one upload of the
// span between the first and the last changed entry, ordered on the caller's stream. A graph
// captured from a plan reads this live table (NOTE: [graphs and plan lifetime]).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "flatgather/dtype.h"
#include "copy_desc.h"
#include "strided_index.h"
#include "tiles.cuh"
#include "transpose.h"
#include "tuning.h"

namespace flatgather {
namespace detail {

/// One copy as the kernels see it (the device table holds one per ExecutorInput copy). 16-byte
/// aligned so that a lane loads one in two 16-byte loads (NOTE: [descriptor fetch]).
struct alignas(16) DeviceCopy {
  void* d_data = nullptr;  ///< tensor element [0, ..., 0]; null: zeros on gather, skipped otherwise
  std::int64_t flat_offset = 0;  ///< elements of the flat dtype
  std::int64_t numel = 0;
  std::int32_t strided = -1;     ///< index into KernelArgs::strided, -1 when contiguous
  DType dtype = DType::Float32;  ///< the tensor's dtype
  /// 2, 4 or 8: a strided byte copy that can move in words of this size, whose word view
  /// (word_view in src/copy_desc.h) follows its descriptor at `strided + 1`; else 1 (NOTE:
  /// [byte plan words]).
  std::uint8_t word_bytes = 1;
  std::uint8_t reserved[2] = {};
};
static_assert(sizeof(DeviceCopy) == 32, "DeviceCopy is uploaded as is: keep it 32 bytes");

/// Kernel parameters (passed by value; everything they point to was uploaded at build).
struct KernelArgs {
  const DeviceCopy* d_copies = nullptr;
  const CopyDesc* d_strided = nullptr;          ///< sizes and strides of the non-contiguous copies
  const StridedIndexer* d_indexers = nullptr;   ///< the same copies, for the new strided path
  const TransposeDesc* d_transposes = nullptr;  ///< the same copies, for the shared transpose
  const Tile* d_tiles = nullptr;                ///< num_tiles + 1 entries (see NOTE: [tiles])
  std::int64_t num_tiles = 0;
  std::int32_t num_copies = 0;
  DType flat_dtype = DType::Float32;
  void* d_flat = nullptr;          ///< written by gather, only read by scatter and scatter_add
  double alpha = 1.0;              ///< scatter_add's factor, when d_alpha is null
  const float* d_alpha = nullptr;  ///< scatter_add's factor read on the device (plan.h Factor)
  // The plan's A/B switches that the kernels read (NOTE: [tuning overrides]); copy.cuh's
  // process_piece reads them once per piece, the kernel's tile walk descriptor_path once per
  // tile. Tile scaling is applied at build.
  CopyPath strided_path = CopyPath::Old;     ///< Tuning::strided_path
  CopyPath misaligned_path = CopyPath::Old;  ///< Tuning::misaligned_path
  CopyPath unroll_path = CopyPath::Old;      ///< Tuning::unroll_path
  CopyPath descriptor_path = CopyPath::Old;  ///< Tuning::descriptor_path
  /// Bytes of each warp's shared tile (NOTE: [shared transposes]): transpose_tile_bytes of
  /// the table with Tuning::transpose_path = New, else 0 (no tile, no shared memory).
  std::int32_t transpose_tile_bytes = 0;
  CopyPath convert_path = CopyPath::Old;  ///< Tuning::convert_path
};

/// The device table's copies, strided descriptors and tiles, as built on the host.
struct HostTable {
  std::vector<DeviceCopy> copies;
  std::vector<CopyDesc> strided;          ///< descriptors of the non-contiguous copies
  std::vector<StridedIndexer> indexers;   ///< one per entry of `strided`
  std::vector<TransposeDesc> transposes;  ///< one per entry of `strided`
  std::vector<Tile> tiles;                ///< num_tiles + 1 entries
};

/// Bytes a gather of `copies` reads and writes (into a flat buffer of `flat_size`-byte elements).
inline std::int64_t moved_bytes(const std::vector<CopyDesc>& copies, int flat_size) {
  std::int64_t bytes = 0;
  for (const CopyDesc& d : copies) bytes += d.numel * bytes_per_element(d, flat_size);
  return bytes;
}

/// Builds the table for `copies` (ExecutorInput's) in a flat buffer of `flat_dtype`.
inline HostTable build_host_table(const std::vector<CopyDesc>& copies, std::int64_t flat_numel,
                                  DType flat_dtype, const TileParams& params) {
  HostTable table;
  const int flat_size = dtype_size(flat_dtype);
  table.copies.reserve(copies.size());
  for (const CopyDesc& d : copies) {
    DeviceCopy dc;
    dc.d_data = d.data;
    dc.flat_offset = d.flat_offset;
    dc.numel = d.numel;
    dc.dtype = d.dtype;
    // Strided copies keep their descriptor even without data: rebind may give them some.
    if (!d.contiguous && d.numel > 0) {
      dc.strided = static_cast<std::int32_t>(table.strided.size());
      table.strided.push_back(d);
      table.indexers.push_back(make_indexer(d));
      table.transposes.push_back(make_transpose(d));
      const int word = flat_size == 1 ? word_bytes(d) : 1;
      if (word > 1) {  // NOTE: [byte plan words]
        dc.word_bytes = static_cast<std::uint8_t>(word);
        table.strided.push_back(word_view(d, word));
        table.indexers.push_back(make_indexer(table.strided.back()));  // parallel to strided
        table.transposes.push_back(make_transpose(table.strided.back()));
      }
    }
    table.copies.push_back(dc);
  }
  table.tiles = build_tiles(copies, flat_numel, flat_size, params);
  return table;
}

/// Bytes of one warp's shared tile for the shared transposes of a table of `copies` (NOTE:
/// [shared transposes]): kTransposeTileElements elements of the widest type a tile holds (the
/// source of a copy the transpose serves: its tensor's element or word, or the flat
/// element); 0 when no copy is served. The descriptors are build_host_table's.
inline std::int32_t transpose_tile_bytes(const std::vector<CopyDesc>& copies, DType flat_dtype) {
  const int flat_size = dtype_size(flat_dtype);
  int widest = 0;
  for (const CopyDesc& d : copies) {
    if (d.contiguous || d.numel == 0) continue;
    if (make_transpose(d).usable) widest = std::max({widest, dtype_size(d.dtype), flat_size});
    const int word = flat_size == 1 ? word_bytes(d) : 1;  // NOTE: [byte plan words]
    if (word > 1 && make_transpose(word_view(d, word)).usable) widest = std::max(widest, word);
  }
  return kTransposeTileElements * widest;
}

/// Byte offsets of the parts of the device table (NOTE: [device table]).
struct TableLayout {
  static constexpr std::size_t kAlign = 256;  ///< each part starts on a multiple of this
  std::size_t strided_offset = 0;             ///< the copies start at 0
  std::size_t indexers_offset = 0;
  std::size_t transposes_offset = 0;
  std::size_t tiles_offset = 0;
  std::size_t bytes = 0;  ///< the whole table

  static constexpr std::size_t align_up(std::size_t n) {
    return (n + kAlign - 1) / kAlign * kAlign;
  }
};

/// Where the parts of `table` go in one allocation.
inline TableLayout table_layout(const HostTable& table) {
  TableLayout l;
  l.strided_offset = TableLayout::align_up(table.copies.size() * sizeof(DeviceCopy));
  l.indexers_offset =
      l.strided_offset + TableLayout::align_up(table.strided.size() * sizeof(CopyDesc));
  l.transposes_offset =
      l.indexers_offset + TableLayout::align_up(table.indexers.size() * sizeof(StridedIndexer));
  l.tiles_offset =
      l.transposes_offset + TableLayout::align_up(table.transposes.size() * sizeof(TransposeDesc));
  l.bytes = l.tiles_offset + table.tiles.size() * sizeof(Tile);
  return l;
}

}  // namespace detail
}  // namespace flatgather
