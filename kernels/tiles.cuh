#pragma once
// Tile -> copy math of the CUDA executor, written as host/device functions so that the CPU
// tests (tests/test_tiles.cpp) run exactly the code the kernels run.
//
// NOTE: [tiles]
// The plan's copies (padding included, ordered by flat offset, covering [0, flat_numel)) are
// cut into tiles, each the work of ONE WARP. A tile is a range [flat_begin, next.flat_begin)
// of the flat buffer plus the index of the first copy that overlaps it, so a warp finds its
// work with no search: it walks copies from `copy` while they start before the tile's end.
// Tiles are balanced by a cost, not by element count: every copy piece costs
// `copy_cost_bytes` (descriptor load, head and tail) plus the bytes it moves (read + written).
// So one 1 GB tensor becomes many equal tiles, and 10,000 tiny tensors become tiles of a few
// copies each; both spread over every warp of the grid (warps stride over the tiles).
// Cuts inside a copy fall on flat positions that are multiples of 16 bytes, so the pieces of
// a large copy keep the 16-byte alignment of the whole copy (see NOTE: [vector split]).
// The tiles are part of the device table (NOTE: [device table] in kernels/device_table.h).
//
// NOTE: [tile scaling]
// A fixed budget (TileParams::tile_bytes, 32 KiB on sm_90) suits large plans, but a plan of a
// few MB gives fewer tiles than the grid has warps: a 4 MB float32 gather moves 8 MB, so 260
// tiles, 8 warps a block, and 33 of 132 SMs work. With Tuning::tile_scaling_path = New (the
// default; A/B switch tile_scaling=old|new, NOTE: [tuning overrides]) each plan's budget is its
// cost divided by kTilesPerWarp x the resident warps (SMs x the blocks per SM the executor sizes
// its grid with x warps per block), so that warps finishing early find more work; clamped to
// [min_tile_bytes, tile_bytes]: large plans keep tile_bytes, and no tile is so small that its
// own cost (the tile and descriptor loads, a partly idle unroll batch) outweighs its work. A
// 4 MB plan on an H200 (3 blocks of 8 warps per SM) gets 4 KiB tiles: about 2,000 tiles, each
// SM busy. The scaled budget only changes where build_tiles cuts, never what is copied.

#include <algorithm>
#include <cstdint>
#include <vector>

#include "flatgather/config.h"
#include "flatgather/dtype.h"
#include "copy_desc.h"
#include "tuning.h"

namespace flatgather {
namespace detail {

/// One warp's work: flat elements [flat_begin, next tile's flat_begin), starting at `copy`.
/// The table holds one extra sentinel tile {flat_numel, num_copies} at the end.
struct Tile {
  std::int64_t flat_begin = 0;
  std::int32_t copy = 0;  ///< first copy overlapping the tile (or starting at flat_begin)
  std::int32_t reserved = 0;
};
static_assert(sizeof(Tile) == 16, "Tile is uploaded as is: keep it 16 bytes");

/// Cuts `copies` into tiles (host only). Preconditions as ExecutorInput: ordered by flat
/// offset, each starting where the previous ended (empty copies allowed), the first at 0.
/// Returns num_tiles + 1 entries; the last is the sentinel {flat_numel, copies.size()}.
inline std::vector<Tile> build_tiles(const std::vector<CopyDesc>& copies, std::int64_t flat_numel,
                                     int flat_size, const TileParams& params) {
  std::vector<Tile> tiles;
  // 16-byte grain of the flat buffer, in elements: cuts land on multiples of it.
  const std::int64_t grain = flat_size >= 16 ? 1 : 16 / flat_size;
  const std::int64_t budget = params.tile_bytes > 0 ? params.tile_bytes : 1;
  const std::int64_t copy_cost = params.copy_cost_bytes > 0 ? params.copy_cost_bytes : 0;
  std::int64_t cost = 0;
  bool open = false;
  for (std::size_t c = 0; c < copies.size(); ++c) {
    const CopyDesc& d = copies[c];
    const std::int64_t bpe = bytes_per_element(d, flat_size);
    std::int64_t done = 0;  // elements of this copy already in tiles
    for (;;) {
      if (!open) {
        tiles.push_back(Tile{d.flat_offset + done, static_cast<std::int32_t>(c), 0});
        cost = 0;
        open = true;
      }
      const std::int64_t remaining = d.numel - done;
      const std::int64_t room = budget - cost - copy_cost;
      if (room >= 0 && remaining <= room / bpe) {  // the rest fits in this tile
        cost += copy_cost + remaining * bpe;
        break;
      }
      // Cut at the last grain boundary that fits.
      const std::int64_t begin = d.flat_offset + done;
      const std::int64_t fit = room > 0 ? room / bpe : 0;
      std::int64_t take = (begin + fit) / grain * grain - begin;
      if (take <= 0) {
        if (cost > 0) {  // the tile has other work: close it, retry in a fresh one
          open = false;
          continue;
        }
        // A fresh tile too small for one grain (tiny budget): still make progress, up to
        // the next grain boundary.
        const std::int64_t to_boundary = grain - begin % grain;
        take = remaining < to_boundary ? remaining : to_boundary;
      }
      done += take;
      open = false;  // this tile is full
      if (done == d.numel) break;
    }
  }
  tiles.push_back(Tile{flat_numel, static_cast<std::int32_t>(copies.size()), 0});
  return tiles;
}

/// The tile parameters of a plan of `copies` whose grid holds `resident_warps` warps at once
/// (NOTE: [tile scaling]); tuning.tiles unchanged when scaling is off.
inline TileParams plan_tile_params(const std::vector<CopyDesc>& copies, int flat_size,
                                   const Tuning& tuning, std::int64_t resident_warps) {
  TileParams p = tuning.tiles;
  if (tuning.tile_scaling_path == CopyPath::Old || resident_warps <= 0) return p;
  std::int64_t cost = 0;  // what build_tiles balances: bytes moved plus a fixed cost per copy
  for (const CopyDesc& d : copies) {
    if (d.numel > 0) cost += p.copy_cost_bytes + d.numel * bytes_per_element(d, flat_size);
  }
  const std::int64_t target = kTilesPerWarp * resident_warps;
  const std::int64_t budget = std::max((cost + target - 1) / target, p.min_tile_bytes);
  p.tile_bytes = std::min(p.tile_bytes, budget);
  return p;
}

/// Calls `f(copy_index, first, count)` for every non-empty piece of tile `t`: elements
/// [first, first + count) of copy `copy_index` (logical indices within that copy).
/// `Copy` is any type with `flat_offset` and `numel` (CopyDesc, or the device table's).
template <class Copy, class F>
FG_HOST_DEVICE FG_FORCE_INLINE void for_each_piece(const Tile* tiles, std::int64_t t,
                                                   const Copy* copies, std::int32_t num_copies,
                                                   F&& f) {
  const std::int64_t begin = tiles[t].flat_begin;
  const std::int64_t end = tiles[t + 1].flat_begin;
  for (std::int32_t c = tiles[t].copy; c < num_copies; ++c) {
    const std::int64_t offset = copies[c].flat_offset;
    if (offset >= end) break;
    const std::int64_t lo = begin > offset ? begin : offset;
    const std::int64_t copy_end = offset + copies[c].numel;
    const std::int64_t hi = end < copy_end ? end : copy_end;
    if (lo < hi) f(c, lo - offset, hi - lo);
  }
}

#if defined(__CUDACC__)
/// The calling thread's place in a grid whose warps stride over the tiles (NOTE: [tiles]):
/// warp `warp` takes tiles warp, warp + warps, ...
struct WarpPlace {
  int lane;
  std::int64_t warp;
  std::int64_t warps;
};
__device__ __forceinline__ WarpPlace warp_place() {
  constexpr int kWarp = CopyPolicy::kWarpThreads;
  const std::int64_t thread =
      static_cast<std::int64_t>(blockIdx.x) * blockDim.x + static_cast<std::int64_t>(threadIdx.x);
  return {static_cast<int>(threadIdx.x) % kWarp, thread / kWarp,
          static_cast<std::int64_t>(gridDim.x) * blockDim.x / kWarp};
}
#endif

/// Walks a strided copy's elements in logical order without a division per element: the
/// offset of logical index i, and i's index in the innermost dimension.
struct StridedCursor {
  std::int64_t offset = 0;  ///< element offset from the copy's data pointer
  std::int64_t inner = 0;   ///< index within the innermost (last) dimension
};

/// Cursor at logical index `i` (one element_offset call: ndim - 1 divisions).
FG_HOST_DEVICE FG_FORCE_INLINE StridedCursor strided_cursor(const CopyDesc& d, std::int64_t i) {
  StridedCursor c;
  c.offset = element_offset(d, i);
  c.inner = d.ndim > 1 ? i % d.sizes[d.ndim - 1] : i;
  return c;
}

/// Moves `c` from logical index `next - 1` to `next`.
FG_HOST_DEVICE FG_FORCE_INLINE void advance(const CopyDesc& d, StridedCursor& c,
                                            std::int64_t next) {
  const int last = d.ndim - 1;
  ++c.inner;
  if (last == 0 || c.inner < d.sizes[last]) {
    c.offset += d.strides[last];
  } else {  // carry into the outer dimensions
    c = strided_cursor(d, next);
  }
}

}  // namespace detail
}  // namespace flatgather
