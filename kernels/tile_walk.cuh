#pragma once
// The kernels' tile walk over the device table (NOTE: [tiles]): the copies of a tile, read one
// after another (Old) or fetched across the lanes at once (New), handed piece by piece to
// process_piece. Host/device like tiles.cuh, so that the CPU tests (tests/test_tiles.cpp, with
// tests/device_emulation.h and tests/warp_lockstep.h) run exactly the walk the kernels run.
//
// NOTE: [descriptor fetch]
// A warp walks a tile's copies in order. On the old path every lane reads each copy's
// DeviceCopy from the table as broadcast loads when the walk reaches it: one round trip to
// memory per copy before its data can even be requested, which dominates tiles of many tiny
// tensors (10,000 biases and norms). On the new path (Tuning::descriptor_path = New, A/B
// switch descriptors=old|new, NOTE: [tuning overrides]) lane i loads the DeviceCopy of copy
// first + i, so up to 32 descriptors arrive in one coalesced 1 KB load, and stores it in the
// warp's 32 staging entries of shared memory (1 KB a warp, 8 KB a block of 256 threads); after
// a __syncwarp the walk reads copy j's fields from entry j, a broadcast from shared memory,
// as the old path reads them from the table. A batch holds the copies the tile can overlap
// (up to tiles[t + 1].copy, NOTE: [tiles]), at most 32; a tile of more copies takes several
// batches, with a __syncwarp before each refill so that no lane still reads the previous one.
// Why shared memory and not __shfl_sync from the owning lane: each lane would then keep its
// descriptor (8 registers) live across every piece of the batch, and the kernels grew from
// 78/72/96 registers (gather/scatter/scatter_add, sm_90) to 96/96/116. Both walks visit the
// same pieces in the same order (tests/test_tiles.cpp, TileWalk.*, with the lanes in lockstep:
// NOTE: [warp lockstep] in tests/warp_lockstep.h) and share one process_piece call site; the
// kernel picks the walk at compile time (`across_lanes` is a constant there), one
// instantiation each, so that the default kernels keep their registers (NOTE: [kernel
// flavours] in kernels/kernel.cuh). The table is read only up to the last copy a tile can
// overlap, on both paths.
// gather_stats (kernels/gather_stats.cu) keeps the old walk (for_each_piece in tiles.cuh).

#include <cstdint>

#include "device_table.h"
#include "tiles.cuh"
#include "tuning.h"

#if defined(__CUDACC__) || defined(FLATGATHER_EMULATE_DEVICE)
#include "copy.cuh"

namespace flatgather {
namespace detail {

/// 16-byte words of shared memory per staged DeviceCopy (NOTE: [descriptor fetch]).
constexpr int kCopyWords = sizeof(DeviceCopy) / 16;
static_assert(sizeof(DeviceCopy) % 16 == 0, "staged in 16-byte words");

/// Calls `f(copy_index, copy, first, count)` for every non-empty piece of tile `t`, as
/// for_each_piece does (same pieces, same order), `copy` being the DeviceCopy of `copy_index`.
/// `across_lanes` chooses the new descriptor fetch (NOTE: [descriptor fetch]): the same in
/// every lane, all 32 lanes of the warp calling together, `staging` the warp's 32 entries of
/// shared memory (unused on the old path).
template <class F>
FG_DEVICE FG_FORCE_INLINE void walk_tile(const KernelArgs& a, std::int64_t t, bool across_lanes,
                                         DeviceCopy* staging, int lane, F&& f) {
  constexpr int kWarp = CopyPolicy::kWarpThreads;
  const std::int64_t begin = a.d_tiles[t].flat_begin;
  const std::int64_t end = a.d_tiles[t + 1].flat_begin;
  // The copies the tile can overlap: from its first copy to the next tile's (NOTE: [tiles]).
  const std::int32_t first = a.d_tiles[t].copy;
  std::int32_t last = a.d_tiles[t + 1].copy;
  if (last > a.num_copies - 1) last = a.num_copies - 1;
  for (std::int32_t c = first; c <= last; ++c) {
    const int slot = (c - first) % kWarp;
    if (across_lanes && slot == 0) {  // stage copies c .. c + 31, one per lane
      __syncwarp();                   // every lane has read the previous batch
      if (c + lane <= last) staging[lane] = a.d_copies[c + lane];
      __syncwarp();  // the batch is staged
    }
    const DeviceCopy& d = across_lanes ? staging[slot] : a.d_copies[c];
    const std::int64_t offset = d.flat_offset;
    if (offset >= end) return;
    const std::int64_t lo = begin > offset ? begin : offset;
    const std::int64_t copy_end = offset + d.numel;
    const std::int64_t hi = end < copy_end ? end : copy_end;
    if (lo < hi) f(c, d, lo - offset, hi - lo);
  }
}

/// walk_tile's callback in the kernels; a functor rather than a lambda so that it is always
/// inlined (a non-inlined call costs a stack frame and spills).
template <Op kOp, bool Streaming>
struct FetchedPieceFn {
  const KernelArgs& args;
  int lane;
  FG_DEVICE FG_FORCE_INLINE void operator()(std::int32_t, const DeviceCopy& d, std::int64_t first,
                                            std::int64_t count) const {
    process_piece<kOp, Streaming>(args, d, first, count, lane);
  }
};

}  // namespace detail
}  // namespace flatgather

#endif  // __CUDACC__ || FLATGATHER_EMULATE_DEVICE
