#pragma once
// The kernels' tile walk over the device table (NOTE: [tiles]): the copies of a tile, read one
// after another (Old) or fetched across the lanes at once (New), handed piece by piece to
// process_piece. Host/device like tiles.cuh, so that the CPU tests (tests/test_tiles.cpp, with
// tests/device_emulation.h and tests/warp_lockstep.h) run exactly the walk the kernels run.
//
// NOTE: [descriptor fetch]
// A warp walks a tile's copies in order. On the old path every lane reads each copy's
// DeviceCopy from the table as broadcast loads, and the next copy's descriptor is read only
// once the walk reaches it: one dependent round trip to memory per copy before its data can
// even be requested, which dominates a tile of many tiny tensors (10,000 biases and norms).
// On the new path (Tuning::descriptor_path = New, A/B switch descriptors=old|new, NOTE:
// [tuning overrides]) lane i loads the DeviceCopy of copy tiles[t].copy + i itself, so up to
// 32 descriptors arrive in one coalesced 1 KB load (two 16-byte loads per lane), and the warp
// then takes copy j's descriptor from lane j with four 64-bit __shfl_sync, no memory access.
// A batch holds the copies the tile can overlap (up to tiles[t + 1].copy, NOTE: [tiles]), at
// most 32; a tile of more copies takes several batches. Both paths visit the same pieces in
// the same order and share one process_piece call site: the choice is a uniform branch in the
// one kernel (no second instantiation, so the kernels' code size and compile time stay). The
// walk never reads a descriptor on either path beyond what the table holds.
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
