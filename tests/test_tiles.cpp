// CPU tests of the CUDA kernels' index math (kernels/tiles.cuh, kernels/copy.cuh): the same
// host/device functions the kernels run, checked against independent brute-force references.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "device_emulation.h"  // before copy.cuh: runs the kernels' warp code on the CPU
#include "warp_lockstep.h"     // the warp collectives, lanes in lockstep
#include "copy.cuh"
#include "stats_piece.cuh"
#include "copy_desc.h"
#include "strided_index.h"
#include "test_util.h"
#include "tile_walk.cuh"
#include "tiles.cuh"
#include "torch_reference.h"

namespace fg = flatgather;
using fg::detail::CopyDesc;
using fg::detail::CopyPath;
using fg::detail::Split;
using fg::detail::Tile;
using fg::detail::TileParams;

namespace {

char g_dummy;  // non-null data pointer for copies that move tensor bytes

CopyDesc make_copy(std::int64_t offset, std::int64_t numel, fg::DType dtype, bool has_data = true) {
  CopyDesc d;
  d.data = has_data ? &g_dummy : nullptr;
  d.flat_offset = offset;
  d.numel = numel;
  d.dtype = dtype;
  d.sizes[0] = numel;
  d.strides[0] = 1;
  return d;
}

std::vector<CopyDesc> chain(const std::vector<std::int64_t>& sizes, fg::DType dtype) {
  std::vector<CopyDesc> copies;
  std::int64_t offset = 0;
  for (std::int64_t n : sizes) {
    copies.push_back(make_copy(offset, n, dtype));
    offset += n;
  }
  return copies;
}

struct Piece {
  std::int32_t copy;
  std::int64_t first;
  std::int64_t count;
};

// Every piece of every tile, in tile order, with independent checks of the tile table.
std::vector<Piece> all_pieces(const std::vector<Tile>& tiles, const std::vector<CopyDesc>& copies,
                              std::int64_t* max_visits = nullptr) {
  std::vector<Piece> pieces;
  const std::int64_t num_tiles = static_cast<std::int64_t>(tiles.size()) - 1;
  std::int64_t most = 0;
  for (std::int64_t t = 0; t < num_tiles; ++t) {
    std::int64_t visits = 0;
    fg::detail::for_each_piece(tiles.data(), t, copies.data(),
                               static_cast<std::int32_t>(copies.size()),
                               [&](std::int32_t c, std::int64_t first, std::int64_t count) {
      ++visits;
      pieces.push_back({c, first, count});
    });
    most = std::max(most, visits);
  }
  if (max_visits) *max_visits = most;
  return pieces;
}

// The pieces cover [0, flat_numel) once, in order, each inside its copy at the right place.
void expect_exact_cover(const std::vector<Piece>& pieces, const std::vector<CopyDesc>& copies,
                        std::int64_t flat_numel) {
  std::int64_t cursor = 0;
  for (const Piece& p : pieces) {
    ASSERT_GE(p.copy, 0);
    ASSERT_LT(static_cast<std::size_t>(p.copy), copies.size());
    const CopyDesc& d = copies[static_cast<std::size_t>(p.copy)];
    ASSERT_GT(p.count, 0);
    ASSERT_GE(p.first, 0);
    ASSERT_LE(p.first + p.count, d.numel);
    ASSERT_EQ(d.flat_offset + p.first, cursor) << "gap or overlap at flat element " << cursor;
    cursor += p.count;
  }
  EXPECT_EQ(cursor, flat_numel);
}

// Tile costs within budget (a single grain may exceed a tiny budget) and cuts 16-byte aligned.
void expect_balanced(const std::vector<Tile>& tiles, const std::vector<CopyDesc>& copies,
                     int flat_size, const TileParams& params) {
  const std::int64_t grain = 16 / flat_size;
  for (std::size_t t = 0; t + 1 < tiles.size(); ++t) {
    std::int64_t cost = 0;
    int pieces = 0;
    std::int64_t last_count = 0;
    const std::int64_t begin = tiles[t].flat_begin, end = tiles[t + 1].flat_begin;
    ASSERT_LE(begin, end);
    fg::detail::for_each_piece(tiles.data(), static_cast<std::int64_t>(t), copies.data(),
                               static_cast<std::int32_t>(copies.size()),
                               [&](std::int32_t c, std::int64_t, std::int64_t count) {
      ++pieces;
      last_count = count;
      cost += params.copy_cost_bytes +
              count * fg::detail::bytes_per_element(copies[static_cast<std::size_t>(c)], flat_size);
    });
    // The one exception: a budget too small for one grain still gets a grain per tile.
    const bool forced_grain = pieces == 1 && last_count <= grain;
    if (!forced_grain) {
      EXPECT_LE(cost, params.tile_bytes) << "tile " << t;
    }
    // A cut inside a copy lands on a 16-byte boundary of the flat buffer.
    const CopyDesc& first = copies[static_cast<std::size_t>(tiles[t].copy)];
    if (t > 0 && begin > first.flat_offset && begin < first.flat_offset + first.numel) {
      EXPECT_EQ(begin % grain, 0) << "tile " << t << " starts inside a copy at " << begin;
    }
  }
}

}  // namespace

TEST(Tiles, NoCopiesGiveNoTiles) {
  const std::vector<Tile> tiles =
      fg::detail::build_tiles({}, 0, 4, fg::detail::tuning_for(9, 0).tiles);
  ASSERT_EQ(tiles.size(), 1u);
  EXPECT_EQ(tiles[0].flat_begin, 0);
  EXPECT_EQ(tiles[0].copy, 0);
}

TEST(Tiles, OneElement) {
  const auto copies = chain({1}, fg::DType::Float32);
  const auto tiles = fg::detail::build_tiles(copies, 1, 4, fg::detail::tuning_for(9, 0).tiles);
  ASSERT_EQ(tiles.size(), 2u);
  const auto pieces = all_pieces(tiles, copies);
  ASSERT_EQ(pieces.size(), 1u);
  EXPECT_EQ(pieces[0].copy, 0);
  EXPECT_EQ(pieces[0].first, 0);
  EXPECT_EQ(pieces[0].count, 1);
}

TEST(Tiles, LargeCopyIsCutIntoEqualAlignedTiles) {
  const TileParams params{32 * 1024, 1024};
  const std::int64_t n = 10'000'003;  // odd
  const auto copies = chain({n}, fg::DType::Float32);
  const auto tiles = fg::detail::build_tiles(copies, n, 4, params);
  const auto pieces = all_pieces(tiles, copies);
  expect_exact_cover(pieces, copies, n);
  expect_balanced(tiles, copies, 4, params);
  // (32 KiB - 1 KiB) / 8 bytes per element, rounded down to 4 elements: 3968 per tile.
  for (std::size_t t = 0; t + 2 < tiles.size(); ++t) {
    EXPECT_EQ(tiles[t + 1].flat_begin - tiles[t].flat_begin, 3968) << "tile " << t;
  }
  EXPECT_EQ(tiles.size() - 1, static_cast<std::size_t>((n + 3967) / 3968));
}

TEST(Tiles, CastCopiesCountBothSides) {
  const TileParams params{4096, 0};
  // bfloat16 tensors into a float32 flat: 6 bytes moved per element.
  const auto copies = chain({1000, 7, 5000}, fg::DType::BFloat16);
  const auto tiles = fg::detail::build_tiles(copies, 6007, 4, params);
  expect_exact_cover(all_pieces(tiles, copies), copies, 6007);
  expect_balanced(tiles, copies, 4, params);
}

TEST(Tiles, PaddingMovesOnlyFlatBytes) {
  std::vector<CopyDesc> copies = {make_copy(0, 100, fg::DType::Float32),
                                  make_copy(100, 28, fg::DType::Float32, /*has_data=*/false),
                                  make_copy(128, 3, fg::DType::Float32)};
  EXPECT_EQ(fg::detail::bytes_per_element(copies[0], 4), 8);
  EXPECT_EQ(fg::detail::bytes_per_element(copies[1], 4), 4);
  const auto tiles = fg::detail::build_tiles(copies, 131, 4, TileParams{256, 16});
  expect_exact_cover(all_pieces(tiles, copies), copies, 131);
  expect_balanced(tiles, copies, 4, TileParams{256, 16});
}

TEST(Tiles, EmptyCopiesAnywhere) {
  const auto copies = chain({0, 0, 5, 0, 0, 0, 17, 0, 1, 0}, fg::DType::Float16);
  for (std::int64_t budget : {40, 64, 100, 4096}) {
    const TileParams params{budget, 8};
    const auto tiles = fg::detail::build_tiles(copies, 23, 2, params);
    expect_exact_cover(all_pieces(tiles, copies), copies, 23);
    expect_balanced(tiles, copies, 2, params);
  }
}

TEST(Tiles, OddOffsetsAndTinyBudgets) {
  std::mt19937_64 rng(7);
  for (int flat_size : {1, 2, 4, 8}) {
    for (int round = 0; round < 50; ++round) {
      std::vector<std::int64_t> sizes;
      std::int64_t total = 0;
      const int n = 1 + static_cast<int>(rng() % 40);
      for (int i = 0; i < n; ++i) {
        const std::int64_t s = static_cast<std::int64_t>(rng() % 300);
        sizes.push_back(s);
        total += s;
      }
      const fg::DType dtype = flat_size == 1   ? fg::DType::UInt8
                              : flat_size == 2 ? fg::DType::Float16
                              : flat_size == 4 ? fg::DType::Float32
                                               : fg::DType::Float64;
      const auto copies = chain(sizes, dtype);
      const TileParams params{static_cast<std::int64_t>(64 + rng() % 2000),
                              static_cast<std::int64_t>(rng() % 64)};
      const auto tiles = fg::detail::build_tiles(copies, total, flat_size, params);
      expect_exact_cover(all_pieces(tiles, copies), copies, total);
      expect_balanced(tiles, copies, flat_size, params);
    }
  }
}

TEST(Tiles, BudgetSmallerThanCopyCostStillProgresses) {
  const auto copies = chain({10, 0, 33}, fg::DType::Float32);
  const TileParams params{8, 1000};
  const auto tiles = fg::detail::build_tiles(copies, 43, 4, params);
  expect_exact_cover(all_pieces(tiles, copies), copies, 43);
}

TEST(Tiles, HundredThousandCopies) {
  std::mt19937_64 rng(42);
  std::vector<std::int64_t> sizes(100'000);
  std::int64_t total = 0;
  for (auto& s : sizes) {
    s = static_cast<std::int64_t>(rng() % 64);  // zeros included
    total += s;
  }
  const auto copies = chain(sizes, fg::DType::Float32);
  const TileParams params{32 * 1024, 1024};
  const auto tiles = fg::detail::build_tiles(copies, total, 4, params);
  std::int64_t max_visits = 0;
  const auto pieces = all_pieces(tiles, copies, &max_visits);
  expect_exact_cover(pieces, copies, total);
  expect_balanced(tiles, copies, 4, params);
  // A warp looks at no more copies than the budget allows (plus the ones at its edges).
  EXPECT_LE(max_visits, params.tile_bytes / params.copy_cost_bytes + 1);
  // Work is spread: many tiles, not one per copy.
  EXPECT_GT(tiles.size(), 100'000u / 40);
  EXPECT_LT(tiles.size(), 100'000u / 10);
}

TEST(Tiles, OffsetsBeyond32Bits) {
  // 3 GiB + 1 of uint8 behind a 5-element copy: flat offsets and tile starts above 2^31 and 2^32.
  const std::int64_t big = (std::int64_t{3} << 30) + 1;
  const std::int64_t huge = (std::int64_t{1} << 32) + 12345;
  const auto copies = chain({5, big, huge, 3}, fg::DType::UInt8);
  const std::int64_t total = 5 + big + huge + 3;
  const TileParams params{1 << 20, 1024};
  const auto tiles = fg::detail::build_tiles(copies, total, 1, params);
  const auto pieces = all_pieces(tiles, copies);
  expect_exact_cover(pieces, copies, total);
  EXPECT_GT(tiles[tiles.size() - 2].flat_begin, std::int64_t{1} << 32);
  EXPECT_EQ(pieces.back().copy, 3);
  EXPECT_EQ(pieces.back().count, 3);
}

// ---- the scaled tile budget (NOTE: [tile scaling]) ---------------------------------------------

namespace {

// What build_tiles balances: bytes moved plus the per-copy cost (an independent sum).
std::int64_t plan_cost(const std::vector<CopyDesc>& copies, int flat_size, const TileParams& p) {
  std::int64_t cost = 0;
  for (const CopyDesc& d : copies) {
    if (d.numel > 0) {
      cost += p.copy_cost_bytes + d.numel * (fg::dtype_size(d.dtype) + (d.data ? flat_size : 0));
    }
  }
  return cost;
}

// Random 1-D float32 copies of 1 to `largest` elements, about `total` elements in all.
std::vector<CopyDesc> random_chain(std::int64_t total, std::int64_t largest, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::int64_t> sizes;
  for (std::int64_t n = 0; n < total;) {
    sizes.push_back(1 + static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(largest)));
    n += sizes.back();
  }
  return chain(sizes, fg::DType::Float32);
}

}  // namespace

// An H200: 132 SMs, 3 resident blocks of 8 warps. Every plan size, one copy or many: the tiles
// cover the plan exactly once, keep within the scaled budget, and are as many as promised:
// kTilesPerWarp per resident warp, or as many min_tile_bytes tiles as the plan fills.
TEST(TileScaling, TilesPerResidentWarpAsPromised) {
  const fg::detail::Tuning tuning = fg::detail::tuning_for(9, 0);
  const std::int64_t warps = 132 * 3 * 8;
  const std::int64_t target = fg::detail::kTilesPerWarp * warps;
  const std::int64_t min_tile = tuning.tiles.min_tile_bytes;
  std::uint64_t seed = 900;
  for (const std::int64_t n :
       {std::int64_t{1} << 12, std::int64_t{1} << 16, std::int64_t{1} << 20, std::int64_t{3} << 21,
        std::int64_t{1} << 24, std::int64_t{1} << 26}) {
    for (const bool many : {false, true}) {
      if (many && n > (std::int64_t{1} << 22)) continue;
      const std::vector<CopyDesc> copies =
          many ? random_chain(n, 4096, seed++) : chain({n}, fg::DType::Float32);
      const std::int64_t total = copies.back().flat_offset + copies.back().numel;
      SCOPED_TRACE(std::to_string(total) + " elements in " + std::to_string(copies.size()) +
                   " copies");
      const TileParams p = fg::detail::plan_tile_params(copies, 4, tuning, warps);
      EXPECT_LE(p.tile_bytes, tuning.tiles.tile_bytes);
      EXPECT_GE(p.tile_bytes, min_tile);
      EXPECT_EQ(p.copy_cost_bytes, tuning.tiles.copy_cost_bytes);
      const auto tiles = fg::detail::build_tiles(copies, total, 4, p);
      expect_exact_cover(all_pieces(tiles, copies), copies, total);
      expect_balanced(tiles, copies, 4, p);
      const std::int64_t num_tiles = static_cast<std::int64_t>(tiles.size()) - 1;
      const std::int64_t cost = plan_cost(copies, 4, p);
      const std::int64_t promised = std::min(target, cost / min_tile);
      EXPECT_GE(num_tiles, promised * 99 / 100) << "budget " << p.tile_bytes;
      if (cost >= target * tuning.tiles.tile_bytes) {  // large: the fixed budget already does
        EXPECT_EQ(p.tile_bytes, tuning.tiles.tile_bytes);
      }
      // Scaling off: the fixed budget, whatever the plan.
      fg::detail::Tuning old = tuning;
      old.tile_scaling_path = CopyPath::Old;
      const TileParams q = fg::detail::plan_tile_params(copies, 4, old, warps);
      EXPECT_EQ(q.tile_bytes, tuning.tiles.tile_bytes);
      EXPECT_EQ(q.copy_cost_bytes, tuning.tiles.copy_cost_bytes);
    }
  }
}

// The issue's case: a 4 MB float32 plan made about 260 tiles (33 of 132 SMs busy); scaled, it
// makes enough for every warp of the grid.
TEST(TileScaling, FourMegabytePlanFillsTheGpu) {
  fg::detail::Tuning tuning = fg::detail::tuning_for(9, 0);
  const std::int64_t warps = 132 * 3 * 8;
  const auto copies = chain({1 << 20}, fg::DType::Float32);
  const auto scaled = fg::detail::build_tiles(
      copies, 1 << 20, 4, fg::detail::plan_tile_params(copies, 4, tuning, warps));
  tuning.tile_scaling_path = CopyPath::Old;
  const auto fixed = fg::detail::build_tiles(
      copies, 1 << 20, 4, fg::detail::plan_tile_params(copies, 4, tuning, warps));
  EXPECT_LT(fixed.size() - 1, 300u);
  EXPECT_GE(scaled.size() - 1, 2048u);  // a warp per tile at least on 2,048 of 3,168 warps
  EXPECT_GE(static_cast<std::int64_t>(scaled.size() - 1) / 8, std::int64_t{132})
      << "8 warps a block: every SM gets a block";
}

// A floor above the fixed budget (a tiny tile= override) leaves the fixed budget; no warps
// (an unknown occupancy) leaves it too.
TEST(TileScaling, EdgeCases) {
  fg::detail::Tuning tuning = fg::detail::tuning_for(9, 0);
  tuning.tiles.tile_bytes = 48;
  const auto copies = chain({100000}, fg::DType::Float32);
  EXPECT_EQ(fg::detail::plan_tile_params(copies, 4, tuning, 100).tile_bytes, 48);
  tuning = fg::detail::tuning_for(9, 0);
  EXPECT_EQ(fg::detail::plan_tile_params(copies, 4, tuning, 0).tile_bytes, 32 * 1024);
  EXPECT_EQ(fg::detail::plan_tile_params({}, 4, tuning, 100).tile_bytes,
            tuning.tiles.min_tile_bytes);
  // 800,000 bytes moved + 1,024 over 4 x 10 warps: 20,026 bytes a tile.
  EXPECT_EQ(fg::detail::plan_tile_params(copies, 4, tuning, 10).tile_bytes,
            (800000 + 1024 + 39) / 40);
}

// ---- the vector split ------------------------------------------------------------------------

TEST(Split, PackElements) {
  EXPECT_EQ(fg::detail::pack_elements(4, 4), 4);
  EXPECT_EQ(fg::detail::pack_elements(2, 4), 4);
  EXPECT_EQ(fg::detail::pack_elements(8, 4), 2);
  EXPECT_EQ(fg::detail::pack_elements(2, 2), 8);
  EXPECT_EQ(fg::detail::pack_elements(1, 1), 16);
  EXPECT_EQ(fg::detail::pack_elements(8, 2), 2);
}

TEST(Split, AlignedBothSides) {
  const Split s = fg::detail::split_range(0x1000, 4, true, 0x2000, 4, true, 103);
  EXPECT_EQ(s.head, 0);
  EXPECT_EQ(s.packs, 25);
  EXPECT_EQ(s.tail, 3);
  EXPECT_TRUE(s.src_vector);
  EXPECT_TRUE(s.dst_vector);
}

TEST(Split, DestinationLeadsWhenSidesDisagree) {
  // float32 source one element past alignment, destination aligned: vector stores only.
  const Split s = fg::detail::split_range(0x1004, 4, true, 0x2000, 4, true, 100);
  EXPECT_EQ(s.head, 0);
  EXPECT_EQ(s.packs, 25);
  EXPECT_FALSE(s.src_vector);
  EXPECT_TRUE(s.dst_vector);
}

TEST(Split, CongruentAfterHead) {
  // bfloat16 -> float32: packs of 4; both sides 3 elements before alignment.
  const Split s = fg::detail::split_range(0x1002, 2, true, 0x2004, 4, true, 50);
  EXPECT_EQ(s.pack, 4);
  EXPECT_EQ(s.head, 3);
  EXPECT_EQ(s.packs, 11);
  EXPECT_EQ(s.tail, 3);
  EXPECT_TRUE(s.src_vector);
  EXPECT_TRUE(s.dst_vector);
}

TEST(Split, StridedDestinationLetsSourceLead) {
  const Split s = fg::detail::split_range(0x1008, 4, true, 0, 4, false, 40);
  EXPECT_EQ(s.head, 2);
  EXPECT_EQ(s.packs, 9);
  EXPECT_EQ(s.tail, 2);
  EXPECT_TRUE(s.src_vector);
  EXPECT_FALSE(s.dst_vector);
}

TEST(Split, NothingContiguousIsAllScalar) {
  const Split s = fg::detail::split_range(0, 4, false, 0, 4, false, 77);
  EXPECT_EQ(s.head, 77);
  EXPECT_EQ(s.packs, 0);
  EXPECT_EQ(s.tail, 0);
}

TEST(Split, ShortAndEmptyPieces) {
  for (std::int64_t n = 0; n < 4; ++n) {
    const Split s = fg::detail::split_range(0x1004, 4, true, 0x2004, 4, true, n);
    EXPECT_EQ(s.head + s.packs * s.pack + s.tail, n);
    EXPECT_EQ(s.packs, 0);
    EXPECT_FALSE(s.src_vector || s.dst_vector);
  }
}

// Exhaustive: every element-aligned misalignment of both sides, every size pair the kernels
// use, lengths 0..100: the parts add up, packs are aligned on the lead side, and a side is
// vectorized exactly when its packs are aligned too. Then every lane assignment visits each
// element exactly once.
TEST(Split, ExhaustiveAlignmentsAndDistribution) {
  const int size_pairs[][2] = {{1, 1}, {2, 2}, {4, 4}, {8, 8}, {2, 4},
                               {4, 2}, {4, 8}, {8, 4}, {2, 8}, {8, 2}};
  for (const auto& pair : size_pairs) {
    const int ss = pair[0], ds = pair[1];
    const int k = fg::detail::pack_elements(ss, ds);
    for (int src_mis = 0; src_mis < 16; src_mis += ss) {
      for (int dst_mis = 0; dst_mis < 16; dst_mis += ds) {
        const std::uint64_t src = 0x10000 + static_cast<std::uint64_t>(src_mis);
        const std::uint64_t dst = 0x80000 + static_cast<std::uint64_t>(dst_mis);
        for (std::int64_t n = 0; n <= 100; ++n) {
          const Split s = fg::detail::split_range(src, ss, true, dst, ds, true, n);
          ASSERT_EQ(s.pack, k);
          ASSERT_EQ(s.head + s.packs * k + s.tail, n);
          ASSERT_LT(s.tail, k);
          ASSERT_LE(s.head, k - 1);
          if (s.packs > 0) {
            const std::uint64_t dst_body = dst + static_cast<std::uint64_t>(s.head * ds);
            const std::uint64_t src_body = src + static_cast<std::uint64_t>(s.head * ss);
            ASSERT_EQ(dst_body % static_cast<std::uint64_t>(k * ds), 0u);
            ASSERT_TRUE(s.dst_vector);
            ASSERT_EQ(s.src_vector, src_body % static_cast<std::uint64_t>(k * ss) == 0)
                << "src_mis " << src_mis << " dst_mis " << dst_mis << " n " << n;
          }
          // Distribution over 32 lanes with 4 packs per batch.
          std::vector<int> visits(static_cast<std::size_t>(n), 0);
          for (int lane = 0; lane < 32; ++lane) {
            fg::detail::distribute<32, 4>(
                s, lane, [&](std::int64_t j) { ++visits[static_cast<std::size_t>(j)]; },
                [&](std::int64_t p0) {
              for (int u = 0; u < 4; ++u) {
                const std::int64_t p = p0 + 32 * u;
                if (p >= s.packs) continue;
                for (int e = 0; e < k; ++e) ++visits[static_cast<std::size_t>(s.head + p * k + e)];
              }
                });
          }
          for (std::int64_t j = 0; j < n; ++j)
            ASSERT_EQ(visits[static_cast<std::size_t>(j)], 1) << "element " << j;
        }
      }
    }
  }
}

// split_fixed: head, packs and tail follow the destination index only; the addresses decide
// only which side moves in packs (NOTE: [stats order] in kernels/stats_piece.cuh).
TEST(Split, FixedSplitFollowsTheIndexNotTheAddresses) {
  for (std::int64_t index = 0; index < 8; ++index) {
    const Split base = fg::detail::split_fixed(index, 0, 4, true, 0, 4, 100);
    EXPECT_EQ(base.head, (4 - index % 4) % 4);
    EXPECT_EQ(base.head + base.packs * base.pack + base.tail, 100);
    for (std::uint64_t src_shift : {0, 4, 8, 12}) {
      for (std::uint64_t dst_shift : {0, 4, 8, 12}) {
        const std::uint64_t src = 4096 + src_shift, dst = 8192 + dst_shift;
        const Split s = fg::detail::split_fixed(index, src, 4, true, dst, 4, 100);
        EXPECT_EQ(s.head, base.head);
        EXPECT_EQ(s.packs, base.packs);
        EXPECT_EQ(s.tail, base.tail);
        EXPECT_EQ(s.dst_vector, (dst + 4 * s.head) % 16 == 0);
        EXPECT_EQ(s.src_vector, (src + 4 * s.head) % 16 == 0);
      }
    }
  }
  const Split strided = fg::detail::split_fixed(3, 4096, 2, false, 8192, 4, 50);
  EXPECT_EQ(strided.head, 50);
  EXPECT_EQ(strided.packs, 0);
}

TEST(Split, LargePieceBeyond32Bits) {
  const std::int64_t n = (std::int64_t{1} << 33) + 5;
  const Split s = fg::detail::split_range(0x100000002ull, 2, true, 0x200000004ull, 4, true, n);
  EXPECT_EQ(s.head + s.packs * s.pack + s.tail, n);
  EXPECT_GE(s.packs, std::int64_t{1} << 31);
}

// ---- strided cursor ---------------------------------------------------------------------------

TEST(StridedCursor, MatchesElementOffset) {
  struct Case {
    int ndim;
    std::int64_t sizes[4];
    std::int64_t strides[4];
  };
  const Case cases[] = {
      {2, {17, 33}, {1, 17}},            // a transposed 33 x 17 matrix
      {3, {8, 25, 3}, {75, 1, 25}},      // channels_last after merging H and W
      {2, {5, 4}, {12, 3}},              // a sliced (every third column) view
      {1, {9, 0}, {7, 0}},               // one dimension, stride 7
      {4, {2, 3, 4, 5}, {1, 2, 6, 24}},  // reversed strides
  };
  for (const Case& c : cases) {
    CopyDesc d;
    d.contiguous = false;
    d.ndim = c.ndim;
    d.numel = 1;
    for (int i = 0; i < c.ndim; ++i) {
      d.sizes[i] = c.sizes[i];
      d.strides[i] = c.strides[i];
      d.numel *= c.sizes[i];
    }
    // Independent reference: row-major odometer over the sizes.
    std::vector<std::int64_t> index(static_cast<std::size_t>(c.ndim), 0);
    for (std::int64_t i = 0; i < d.numel; ++i) {
      std::int64_t expected = 0;
      for (int k = 0; k < c.ndim; ++k)
        expected += index[static_cast<std::size_t>(k)] * c.strides[k];
      ASSERT_EQ(fg::detail::element_offset(d, i), expected) << "i " << i;
      // A cursor started anywhere before i and advanced to i agrees.
      const std::int64_t start = i / 3;
      auto cursor = fg::detail::strided_cursor(d, start);
      for (std::int64_t j = start + 1; j <= i; ++j) fg::detail::advance(d, cursor, j);
      ASSERT_EQ(cursor.offset, expected) << "i " << i << " from " << start;
      for (int k = c.ndim - 1; k >= 0; --k) {
        if (++index[static_cast<std::size_t>(k)] < c.sizes[k]) break;
        index[static_cast<std::size_t>(k)] = 0;
      }
    }
  }
}

// ---- the kernels' warp code, emulated on the CPU ----------------------------------------------
// Every tile is run by 32 lanes in turn, through the same for_each_piece / PieceFn /
// process_piece / copy_piece the kernels run, and compared with a plain element loop.

namespace {

using fg::detail::Op;

/// Raw memory with 16-byte aligned storage.
struct Buffer {
  std::vector<uint4> storage;
  explicit Buffer(std::size_t bytes) : storage(bytes / 16 + 2) {}
  char* bytes() { return reinterpret_cast<char*>(storage.data()); }
};

struct TensorSpec {
  fg::DType dtype;
  std::vector<std::int64_t> sizes;
  std::vector<std::int64_t> strides;  // elements, negative ones too; empty = contiguous
  std::int64_t offset;                // elements from the start of its buffer to the lowest
};

/// Random elements of `dtype`. With `float32_bits`, float32 elements are its bit patterns
/// (each of them once, in order, then at random) alternating with random bit patterns.
void fill_random(char* p, std::int64_t n, fg::DType dtype, std::mt19937_64& rng,
                 const std::vector<std::uint32_t>* float32_bits = nullptr) {
  std::normal_distribution<double> normal(0.0, 100.0);
  const int es = fg::dtype_size(dtype);
  for (std::int64_t i = 0; i < n; ++i) {
    char* e = p + i * es;
    if (dtype == fg::DType::Float32 && float32_bits != nullptr) {
      const std::size_t k = static_cast<std::size_t>(i);
      const std::size_t size = float32_bits->size();
      const std::uint32_t bits = k < size     ? (*float32_bits)[k]
                                 : k % 2 == 0 ? (*float32_bits)[rng() % size]
                                              : static_cast<std::uint32_t>(rng());
      std::memcpy(e, &bits, sizeof(bits));
    } else if (fg::dtype_is_floating(dtype)) {
      double v = normal(rng);
      if (i % 17 == 3) v = 1e-42;            // subnormal in float32, zero in float16
      if (i % 23 == 5) v = 70000.0;          // float16 overflow
      if (i % 29 == 7) v = 1.0 + 1.0 / 256;  // bfloat16 tie
      fg::dispatch_floating(dtype, [&](auto tag) {
        using T = decltype(tag);
        const T t = fg::convert<T>(v);
        std::memcpy(e, &t, sizeof(T));
      });
    } else if (dtype == fg::DType::Bool) {
      *e = static_cast<char>(rng() & 1);
    } else {
      const std::uint64_t r = rng();
      std::memcpy(e, &r, static_cast<std::size_t>(es));
    }
  }
}

/// One warp's descriptor staging area in shared memory (NOTE: [descriptor fetch]).
constexpr std::size_t kStagingBytes = 32 * sizeof(fg::detail::DeviceCopy);

struct Scenario {
  std::vector<TensorSpec> tensors;
  fg::DType flat_dtype;
  std::int64_t align_elems = 1;  // segment alignment in flat elements
  std::int64_t flat_shift = 0;   // flat buffer offset in elements (odd alignments)
  TileParams params{32 * 1024, 1024};
  bool streaming = true;  // which cache-hint flavour of the kernels (NOTE: [cache hints])
  // The A/B switches the kernels read (NOTE: [strided copies], NOTE: [misaligned copies],
  // NOTE: [bytes in flight] in kernels/copy.cuh); tile scaling is in `params`.
  CopyPath strided_path = CopyPath::Old;
  CopyPath misaligned_path = CopyPath::Old;
  CopyPath unroll_path = CopyPath::New;
  // New: the plan's warps get a shared tile (NOTE: [shared transposes]) and every tile's 32
  // lanes run in lockstep (tests/warp_lockstep.h), so that __syncwarp holds.
  CopyPath transpose_path = CopyPath::Old;
  CopyPath convert_path = CopyPath::Old;  // NOTE: [hardware conversions]
  /// When set, every float32 buffer (tensors and flat) draws from these bit patterns
  /// (fill_random).
  const std::vector<std::uint32_t>* float32_bits = nullptr;
  // The tile walk (NOTE: [descriptor fetch] in kernels/tile_walk.cuh): New runs the 32 lanes
  // in lockstep (tests/warp_lockstep.h), Old one after another.
  CopyPath descriptor_path = CopyPath::Old;
  bool empty_copies = false;  // zero-size tensors become empty copies (else they are dropped)
};

// How often each byte was stored, from the emulation's store log.
std::unordered_map<std::uintptr_t, int> bytes_stored(
    const std::vector<std::pair<std::uintptr_t, int>>& log) {
  std::unordered_map<std::uintptr_t, int> stored;
  for (const auto& [address, width] : log) {
    for (int b = 0; b < width; ++b) ++stored[address + static_cast<std::uintptr_t>(b)];
  }
  return stored;
}

/// A scenario's tensors, each in its own buffer of random values at its element offset, and
/// the copies of its layout (padding included).
struct Built {
  std::vector<Buffer> buffers;
  std::vector<CopyDesc> copies;
  std::int64_t flat_numel = 0;
};

Built build_scenario(const Scenario& sc, std::mt19937_64& rng) {
  Built b;
  std::vector<Buffer>& buffers = b.buffers;
  std::vector<CopyDesc>& copies = b.copies;
  std::int64_t cursor = 0;
  for (const TensorSpec& t : sc.tensors) {
    CopyDesc d;
    d.dtype = t.dtype;
    d.numel = 1;
    for (std::int64_t s : t.sizes) d.numel *= s;
    std::int64_t span = 1;
    std::int64_t lowest = 0;  // offset of the lowest element from element 0 (<= 0)
    if (t.strides.empty()) {
      d.ndim = 1;
      d.sizes[0] = d.numel;
      d.strides[0] = 1;
      span = d.numel;
    } else {
      d.ndim = static_cast<std::int32_t>(t.sizes.size());
      for (std::size_t k = 0; k < t.sizes.size(); ++k) {
        d.sizes[k] = t.sizes[k];
        d.strides[k] = t.strides[k];
        const std::int64_t reach = (t.sizes[k] - 1) * t.strides[k];
        span += reach < 0 ? -reach : reach;
        if (reach < 0) lowest += reach;
      }
    }
    d.contiguous = t.strides.empty();
    const int es = fg::dtype_size(t.dtype);
    buffers.emplace_back(static_cast<std::size_t>((t.offset + span + 1) * es));
    fill_random(buffers.back().bytes(), t.offset + span, t.dtype, rng, sc.float32_bits);
    d.data = buffers.back().bytes() + (t.offset - lowest) * es;
    if (d.numel == 0) {
      if (sc.empty_copies) {  // where the previous copy ends, before any padding
        d.flat_offset = copies.empty() ? 0 : copies.back().flat_offset + copies.back().numel;
        d.segment = static_cast<std::int32_t>(copies.size());
        copies.push_back(d);
      }
      continue;
    }
    cursor = (cursor + sc.align_elems - 1) / sc.align_elems * sc.align_elems;
    if (!copies.empty() || cursor > 0) {
      const std::int64_t end = copies.empty() ? 0 : copies.back().flat_offset + copies.back().numel;
      if (cursor > end) {
        CopyDesc pad;
        pad.flat_offset = end;
        pad.numel = cursor - end;
        pad.dtype = sc.flat_dtype;
        pad.sizes[0] = pad.numel;
        copies.push_back(pad);
      }
    }
    d.flat_offset = cursor;
    d.segment = static_cast<std::int32_t>(copies.size());
    copies.push_back(d);
    cursor += d.numel;
  }
  b.flat_numel = cursor;
  return b;
}

/// KernelArgs over a host table, as the executor uploads them (the A/B switches left Old;
/// check_scenario sets the scenario's).
fg::detail::KernelArgs kernel_args(const fg::detail::HostTable& table, fg::DType flat_dtype,
                                   char* flat, double alpha) {
  fg::detail::KernelArgs a;
  a.d_copies = table.copies.data();
  a.d_strided = table.strided.data();
  a.d_indexers = table.indexers.data();
  a.d_transposes = table.transposes.data();
  a.d_tiles = table.tiles.data();
  a.num_tiles = static_cast<std::int64_t>(table.tiles.size()) - 1;
  a.num_copies = static_cast<std::int32_t>(table.copies.size());
  a.flat_dtype = flat_dtype;
  a.d_flat = flat;
  a.alpha = alpha;
  return a;
}

// Runs gather, scatter and scatter_add through the emulated kernels and the reference and
// compares every byte. Returns the gather's access counts (the scatter's in `scatter_counts`).
fg_emulation::AccessCounts check_scenario(const Scenario& sc, std::uint64_t seed,
                                          fg_emulation::AccessCounts* scatter_counts = nullptr) {
  fg_emulation::AccessCounts gather_counts;
  std::mt19937_64 rng(seed);
  const int fs = fg::dtype_size(sc.flat_dtype);
  Built built = build_scenario(sc, rng);
  std::vector<CopyDesc>& copies = built.copies;
  const std::int64_t flat_numel = built.flat_numel;
  const fg::detail::HostTable table =
      fg::detail::build_host_table(copies, flat_numel, sc.flat_dtype, sc.params);

  // On the new strided path the copies the indexer serves must not need their CopyDesc: the
  // kernel gets descriptors that map every element to offset 0, so a copy that still read
  // them would come out wrong.
  std::vector<CopyDesc> strided = table.strided;
  if (sc.strided_path == CopyPath::New) {
    for (std::size_t k = 0; k < strided.size(); ++k) {
      if (!table.indexers[k].usable) continue;
      strided[k].ndim = 1;
      strided[k].sizes[0] = 1;
      strided[k].strides[0] = 0;
    }
  }
  std::vector<std::pair<std::uintptr_t, int>> store_log;
  const std::int32_t tile_bytes = sc.transpose_path == CopyPath::New
                                      ? fg::detail::transpose_tile_bytes(copies, sc.flat_dtype)
                                      : 0;
  auto run = [&](Op op, char* flat, double alpha) {
    fg::detail::KernelArgs a = kernel_args(table, sc.flat_dtype, flat, alpha);
    a.d_strided = strided.data();
    a.strided_path = sc.strided_path;
    a.misaligned_path = sc.misaligned_path;
    a.unroll_path = sc.unroll_path;
    a.transpose_tile_bytes = tile_bytes;
    a.convert_path = sc.convert_path;
    store_log.clear();
    fg_emulation::counts().store_log = &store_log;
    a.descriptor_path = sc.descriptor_path;
    const bool across_lanes = sc.descriptor_path == CopyPath::New;
    for (std::int64_t t = 0; t < a.num_tiles; ++t) {
      auto warp = [&](int lane, fg::detail::DeviceCopy* staging) {
        auto piece = [&](auto op_tag) {
          constexpr Op kOp = decltype(op_tag)::value;
          if (sc.streaming) {
            fg::detail::walk_tile(a, t, across_lanes, staging, lane,
                                  fg::detail::FetchedPieceFn<kOp, true>{a, lane});
          } else {
            fg::detail::walk_tile(a, t, across_lanes, staging, lane,
                                  fg::detail::FetchedPieceFn<kOp, false>{a, lane});
          }
        };
        if (op == Op::Gather) piece(std::integral_constant<Op, Op::Gather>{});
        if (op == Op::Scatter) piece(std::integral_constant<Op, Op::Scatter>{});
        if (op == Op::ScatterAdd) piece(std::integral_constant<Op, Op::ScatterAdd>{});
      };
      if (tile_bytes == 0 && !across_lanes) {  // lanes one after another (device_emulation.h)
        for (int lane = 0; lane < 32; ++lane) warp(lane, nullptr);
        continue;
      }
      // Lanes in lockstep: the descriptor staging first, then the transposes' tile.
      fg_lockstep::run_warp(
          [&](int lane, unsigned char* shared) {
        if (tile_bytes > 0) {
          fg_emulation::shared_tile() = {reinterpret_cast<char*>(shared) + kStagingBytes,
                                         static_cast<std::size_t>(tile_bytes)};
        }
        warp(lane, reinterpret_cast<fg::detail::DeviceCopy*>(shared));
          },
          kStagingBytes + static_cast<std::size_t>(tile_bytes));
      fg_emulation::shared_tile() = {};
    }
    fg_emulation::counts().store_log = nullptr;
  };
  auto tensor_element = [&](const CopyDesc& d, std::int64_t i) {
    return static_cast<char*>(d.data) + fg::detail::element_offset(d, i) * fg::dtype_size(d.dtype);
  };

  // gather into a poisoned flat at an odd offset
  Buffer flat_buffer(static_cast<std::size_t>((flat_numel + sc.flat_shift + 4) * fs));
  char* flat = flat_buffer.bytes() + sc.flat_shift * fs;
  std::memset(flat_buffer.bytes(), 0xA5, flat_buffer.storage.size() * 16);
  // The reference: each tensor's elements in logical order, cast by LibTorch (.to()).
  auto elements_of = [&](const CopyDesc& d) {
    const int es = fg::dtype_size(d.dtype);
    std::vector<char> e(static_cast<std::size_t>(d.numel * es));
    for (std::int64_t i = 0; i < d.numel; ++i) {
      std::memcpy(e.data() + i * es, tensor_element(d, i), static_cast<std::size_t>(es));
    }
    return e;
  };
  std::vector<char> want(static_cast<std::size_t>(flat_numel * fs), 0);
  for (const CopyDesc& d : copies) {
    if (!d.data || d.numel == 0) continue;
    const std::vector<char> cast =
        fgtest::torch_cast(elements_of(d).data(), d.numel, d.dtype, sc.flat_dtype);
    std::memcpy(want.data() + d.flat_offset * fs, cast.data(), cast.size());
  }
  fg_emulation::counts() = {};
  run(Op::Gather, flat, 1.0);
  gather_counts = fg_emulation::counts();
  EXPECT_EQ(fg_emulation::counts().misaligned, 0);
  EXPECT_EQ(fg_emulation::counts().shared_bad, 0) << "gather: a shared access outside the tile";
  EXPECT_EQ(fg_emulation::counts().shared_loads, fg_emulation::counts().shared_stores);
  EXPECT_EQ(std::memcmp(flat, want.data(), want.size()), 0) << "gather differs";
  {  // every byte of the flat buffer stored exactly once, nothing else stored
    const auto stored = bytes_stored(store_log);
    EXPECT_EQ(stored.size(), static_cast<std::size_t>(flat_numel * fs)) << "gather stores";
    for (std::int64_t b = 0; b < flat_numel * fs; ++b) {
      const auto it = stored.find(reinterpret_cast<std::uintptr_t>(flat + b));
      if (it == stored.end() || it->second != 1) {
        ADD_FAILURE() << "gather stored flat byte " << b << " "
                      << (it == stored.end() ? 0 : it->second) << " times";
        break;
      }
    }
  }
  for (std::int64_t b = 0; b < sc.flat_shift * fs; ++b)
    EXPECT_EQ(flat_buffer.bytes()[b], static_cast<char>(0xA5));
  for (std::int64_t b = 0; b < 4 * fs; ++b)
    EXPECT_EQ(flat[flat_numel * fs + b], static_cast<char>(0xA5));

  // scatter a new flat into poisoned tensors; scatter_add on top
  fill_random(flat, flat_numel, sc.flat_dtype, rng, sc.float32_bits);
  for (const bool add : {false, true}) {
    const bool floats = sc.flat_dtype != fg::DType::Bool && fg::dtype_is_floating(sc.flat_dtype);
    if (add && !floats) continue;
    std::vector<std::vector<char>> expect;
    for (const CopyDesc& d : copies) {
      if (!d.data) continue;
      const int es = fg::dtype_size(d.dtype);
      if (!add) {
        for (std::int64_t i = 0; i < d.numel; ++i)
          std::memset(tensor_element(d, i), 0x5A, static_cast<std::size_t>(es));
      }
      const char* segment = flat + d.flat_offset * fs;
      expect.push_back(add ? fgtest::torch_add_scaled(elements_of(d).data(), d.dtype, segment,
                                                      sc.flat_dtype, d.numel, -0.75)
                           : fgtest::torch_cast(segment, d.numel, sc.flat_dtype, d.dtype));
    }
    fg_emulation::counts() = {};
    run(add ? Op::ScatterAdd : Op::Scatter, flat, -0.75);
    if (!add && scatter_counts) *scatter_counts = fg_emulation::counts();
    EXPECT_EQ(fg_emulation::counts().misaligned, 0);
    EXPECT_EQ(fg_emulation::counts().shared_bad, 0) << "a shared access outside the tile";
    EXPECT_EQ(fg_emulation::counts().shared_loads, gather_counts.shared_loads);
    EXPECT_EQ(fg_emulation::counts().shared_stores, gather_counts.shared_stores);
    {  // every byte of every tensor element stored exactly once, nothing else stored
      const auto stored = bytes_stored(store_log);
      std::size_t expected_bytes = 0;
      for (const CopyDesc& d : copies) {
        if (!d.data) continue;
        const int es = fg::dtype_size(d.dtype);
        expected_bytes += static_cast<std::size_t>(d.numel * es);
        for (std::int64_t i = 0; i < d.numel; ++i) {
          for (int b = 0; b < es; ++b) {
            const auto it = stored.find(reinterpret_cast<std::uintptr_t>(tensor_element(d, i) + b));
            if (it == stored.end() || it->second != 1) {
              ADD_FAILURE() << (add ? "scatter_add" : "scatter") << " stored segment " << d.segment
                            << " element " << i << " " << (it == stored.end() ? 0 : it->second)
                            << " times";
              return gather_counts;
            }
          }
        }
      }
      EXPECT_EQ(stored.size(), expected_bytes) << (add ? "scatter_add" : "scatter") << " stores";
    }
    std::size_t k = 0;
    for (const CopyDesc& d : copies) {
      if (!d.data) continue;
      const int es = fg::dtype_size(d.dtype);
      for (std::int64_t i = 0; i < d.numel; ++i) {
        if (std::memcmp(tensor_element(d, i), expect[k].data() + i * es,
                        static_cast<std::size_t>(es)) != 0) {
          ADD_FAILURE() << (add ? "scatter_add" : "scatter") << " differs at segment " << d.segment
                        << " element " << i;
          return gather_counts;
        }
      }
      ++k;
    }
  }
  return gather_counts;
}

std::vector<TensorSpec> sample_specs(fg::DType dtype, bool strided) {
  std::vector<TensorSpec> t = {
      {dtype, {7}, {}, 0},    {dtype, {1}, {}, 1},   {dtype, {0}, {}, 0},    {dtype, {100}, {}, 3},
      {dtype, {1000}, {}, 0}, {dtype, {333}, {}, 5}, {dtype, {4096}, {}, 1}, {dtype, {2}, {}, 2},
  };
  if (strided) {
    t.push_back({dtype, {33, 17}, {1, 33}, 0});              // transposed
    t.push_back({dtype, {2, 5, 7, 3}, {105, 1, 15, 5}, 1});  // channels_last, odd offset
    t.push_back({dtype, {10, 4}, {12, 3}, 2});               // sliced
  }
  return t;
}

}  // namespace

TEST(EmulatedKernels, EveryDtypePairOddAlignmentsStrided) {
  const fg::DType floats[] = {fg::DType::Float32, fg::DType::Float16, fg::DType::BFloat16,
                              fg::DType::Float64};
  const fg::DType others[] = {fg::DType::Int8,  fg::DType::UInt8, fg::DType::Int16,
                              fg::DType::Int32, fg::DType::Int64, fg::DType::Bool};
  std::vector<std::pair<fg::DType, fg::DType>> pairs;
  for (fg::DType t : floats) {
    for (fg::DType f : floats) pairs.emplace_back(t, f);
  }
  for (fg::DType t : others) pairs.emplace_back(t, t);
  std::uint64_t seed = 100;
  for (const auto& [tdt, fdt] : pairs) {
    for (std::int64_t shift : {0, 1, 3}) {
      for (std::int64_t align : {1, 16}) {
        SCOPED_TRACE(std::string(fg::dtype_name(tdt)) + " -> " + fg::dtype_name(fdt) + " shift " +
                     std::to_string(shift) + " align " + std::to_string(align));
        Scenario sc;
        sc.tensors = sample_specs(tdt, true);
        sc.flat_dtype = fdt;
        sc.flat_shift = shift;
        sc.align_elems = align;
        sc.params = seed % 2 ? TileParams{32 * 1024, 1024} : TileParams{512, 64};  // many cuts
        check_scenario(sc, seed++);
      }
    }
  }
}

// Strided tensors of every element size w as a byte plan hands them over (uint8 with one more,
// innermost dimension of size w and stride 1, NOTE: [byte plans]): with the flat buffer
// aligned, the kernels move them in w-byte words only (NOTE: [byte plan words]); with it
// misaligned, byte by byte; the same bytes either way, against the plain element loop.
TEST(EmulatedKernels, StridedByteCopiesMoveInWordsOfTheirElementSize) {
  std::uint64_t seed = 500;
  for (std::int64_t w : {1, 2, 4, 8}) {
    auto as_bytes = [&](std::vector<std::int64_t> sizes, std::vector<std::int64_t> strides,
                        std::int64_t offset) {
      for (std::int64_t& stride : strides) stride *= w;
      sizes.push_back(w);
      strides.push_back(1);
      return TensorSpec{fg::DType::UInt8, sizes, strides, offset * w};
    };
    for (std::int64_t shift : {0, 1, 8}) {
      for (const TileParams params : {TileParams{32 * 1024, 1024}, TileParams{512, 64}}) {
        SCOPED_TRACE("element size " + std::to_string(w) + " shift " + std::to_string(shift) +
                     " tile budget " + std::to_string(params.tile_bytes));
        Scenario sc;
        sc.flat_dtype = fg::DType::UInt8;
        sc.align_elems = 8;  // a multiple of every element size, as the plan's rule gives
        sc.flat_shift = shift;
        sc.params = params;
        sc.tensors = {as_bytes({33, 17}, {1, 33}, 0), as_bytes({2, 5, 7, 3}, {105, 1, 15, 5}, 1),
                      as_bytes({10, 4}, {12, 3}, 2), as_bytes({300, 41}, {1, 300}, 3)};
        const fg_emulation::AccessCounts counts = check_scenario(sc, seed++);
        if (w > 1 && shift % w == 0) {
          // (the zero padding between segments is stored as bytes; nothing is loaded as one)
          EXPECT_EQ(counts.loads[1], 0) << "a byte load on the word path";
          EXPECT_GT(counts.loads[w], 0);
        } else {
          EXPECT_GT(counts.loads[1], 0);
        }
      }
    }
  }
}

TEST(EmulatedKernels, MixedDtypesInOnePlan) {
  Scenario sc;
  for (fg::DType t :
       {fg::DType::Float32, fg::DType::Float16, fg::DType::BFloat16, fg::DType::Float64}) {
    for (const TensorSpec& s : sample_specs(t, true)) sc.tensors.push_back(s);
  }
  for (fg::DType f :
       {fg::DType::Float32, fg::DType::BFloat16, fg::DType::Float64, fg::DType::Float16}) {
    SCOPED_TRACE(fg::dtype_name(f));
    sc.flat_dtype = f;
    sc.params = TileParams{1024, 128};
    check_scenario(sc, 7);
  }
}

TEST(EmulatedKernels, VectorPathIsTakenWhenAligned) {
  // Two aligned float32 tensors of 4096 elements into an aligned float32 flat: the body moves
  // in 16-byte accesses only.
  Scenario sc;
  sc.tensors = {{fg::DType::Float32, {4096}, {}, 0}, {fg::DType::Float32, {4096}, {}, 0}};
  sc.flat_dtype = fg::DType::Float32;
  fg_emulation::AccessCounts c = check_scenario(sc, 1);
  EXPECT_EQ(c.loads[16], 2 * 4096 / 4);
  EXPECT_EQ(c.stores[16], 2 * 4096 / 4);
  EXPECT_EQ(c.loads[4] + c.stores[4], 0);
  // An aligned bfloat16 -> float32 gather reads 8-byte packs and writes 16-byte packs.
  sc.tensors = {{fg::DType::BFloat16, {4096}, {}, 0}};
  c = check_scenario(sc, 2);
  EXPECT_EQ(c.loads[8], 4096 / 4);
  EXPECT_EQ(c.stores[16], 4096 / 4);
  EXPECT_EQ(c.loads[2] + c.stores[4], 0);
  // A source one element off: vector stores, element loads.
  sc.tensors = {{fg::DType::Float32, {4096}, {}, 1}};
  c = check_scenario(sc, 3);
  EXPECT_EQ(c.stores[16], 4096 / 4);
  EXPECT_EQ(c.loads[4], 4096);
}

// Both cache-hint flavours (NOTE: [cache hints]) compute the same bytes; the default one reads
// sources with ld.global.nc and writes plainly, the streaming one uses evict-first for all.
TEST(EmulatedKernels, BothCacheHintFlavours) {
  for (const bool streaming : {false, true}) {
    SCOPED_TRACE(streaming ? "streaming" : "default");
    Scenario sc;
    sc.tensors = sample_specs(fg::DType::BFloat16, true);
    sc.flat_dtype = fg::DType::Float32;
    sc.flat_shift = 1;
    sc.params = TileParams{256, 32};
    sc.streaming = streaming;
    const fg_emulation::AccessCounts c = check_scenario(sc, 300);
    if (streaming) {
      EXPECT_GT(c.streaming_loads, 0);
      EXPECT_GT(c.streaming_stores, 0);
      EXPECT_EQ(c.readonly_loads + c.plain_loads + c.plain_stores, 0);
    } else {
      EXPECT_GT(c.readonly_loads, 0);
      EXPECT_GT(c.plain_stores, 0);
      EXPECT_EQ(c.streaming_loads + c.streaming_stores, 0);
    }
  }
  // scatter_add reads its destination with a mutable load: plain in the default flavour.
  Scenario sc;
  sc.tensors = {{fg::DType::Float32, {100}, {}, 0}};
  sc.flat_dtype = fg::DType::Float32;
  sc.streaming = false;
  fg_emulation::counts() = {};
  check_scenario(sc, 301);  // runs gather, scatter and scatter_add
  EXPECT_GT(fg_emulation::counts().plain_loads, 0) << "scatter_add must not read with .nc";
  EXPECT_EQ(fg_emulation::counts().streaming_loads, 0);
}

// Tiny tile budgets cut inside copies at every 16-byte grain: casts, strided tensors and
// misaligned tensors and flat buffers, in both flavours.
TEST(EmulatedKernels, TinyTileBudgetsCutInsideCopies) {
  std::uint64_t seed = 400;
  for (const std::int64_t budget : {1, 16, 40, 100}) {
    for (const bool streaming : {false, true}) {
      for (const auto& [tdt, fdt] : {std::pair{fg::DType::Float16, fg::DType::Float64},
                                     std::pair{fg::DType::Float64, fg::DType::BFloat16},
                                     std::pair{fg::DType::Int16, fg::DType::Int16}}) {
        SCOPED_TRACE("budget " + std::to_string(budget) +
                     (streaming ? " streaming " : " default ") + fg::dtype_name(tdt) + " -> " +
                     fg::dtype_name(fdt));
        Scenario sc;
        sc.tensors = sample_specs(tdt, true);
        sc.flat_dtype = fdt;
        sc.flat_shift = 3;
        sc.params = TileParams{budget, budget % 7};
        sc.streaming = streaming;
        check_scenario(sc, seed++);
      }
    }
  }
}

// NOTE: [bytes in flight]: with unroll=new, same-type 1- and 2-byte copies whose sides both
// move whole packs keep 4 packs (64 bytes) in flight per lane, as float32 does; without it 1
// (8-bit) or 2 (16-bit). Casts keep the pack count. The bytes are the same either way.
TEST(EmulatedKernels, BytesUnrollKeepsSixtyFourBytesInFlight) {
  struct Case {
    fg::DType tensor, flat;
    std::int64_t old_packs;  // CopyPolicy::unroll, counted in packs
  };
  const Case cases[] = {
      {fg::DType::UInt8, fg::DType::UInt8, 1},       {fg::DType::Bool, fg::DType::Bool, 1},
      {fg::DType::BFloat16, fg::DType::BFloat16, 2}, {fg::DType::Float16, fg::DType::Float16, 2},
      {fg::DType::Int16, fg::DType::Int16, 2},       {fg::DType::Float16, fg::DType::BFloat16, 2},
      {fg::DType::Float32, fg::DType::Float32, 4},
  };
  std::uint64_t seed = 500;
  for (const Case& c : cases) {
    for (const CopyPath unroll : {CopyPath::Old, CopyPath::New}) {
      SCOPED_TRACE(std::string(fg::dtype_name(c.tensor)) + " -> " + fg::dtype_name(c.flat) +
                   " unroll=" + fg::detail::to_string(unroll));
      Scenario sc;
      // Aligned tensors long enough for whole batches, plus odd tails.
      sc.tensors = {{c.tensor, {20000}, {}, 0}, {c.tensor, {4099}, {}, 0}, {c.tensor, {77}, {}, 0}};
      sc.flat_dtype = c.flat;
      sc.align_elems = 16;
      sc.unroll_path = unroll;
      const fg_emulation::AccessCounts counts = check_scenario(sc, seed++);
      const bool bits = c.tensor == c.flat;
      const std::int64_t expected = unroll == CopyPath::New && bits
                                        ? fg::detail::CopyPolicy::kLaneBytesInFlight / 16
                                        : c.old_packs;
      EXPECT_EQ(counts.max_vector_loads_in_flight, expected);
      // Only the tails (under a pack each: 16 elements at most) are read element by element.
      EXPECT_LE(counts.loads[1] + counts.loads[2] + counts.loads[4], 3 * 15);
      EXPECT_GT(counts.loads[16], 20000 / 16);
    }
  }
  // A misaligned side keeps the pack count (element loads), and stays exact.
  for (const CopyPath unroll : {CopyPath::Old, CopyPath::New}) {
    Scenario sc;
    sc.tensors = {{fg::DType::UInt8, {20000}, {}, 3}};
    sc.flat_dtype = fg::DType::UInt8;
    sc.unroll_path = unroll;
    const fg_emulation::AccessCounts counts = check_scenario(sc, seed++);
    EXPECT_EQ(counts.loads[16], 0) << "the source is not congruent: element loads";
    EXPECT_GT(counts.stores[16], 0);
  }
}

// Random layouts through both switches (NOTE: [tile scaling], NOTE: [bytes in flight]): random
// dtypes, sizes, offsets, strides, segment alignment and flat shifts, tiles cut with the
// scaled budget of a random grid. check_scenario asserts every flat byte written once by
// gather, no misaligned access, and every byte equal to the LibTorch reference.
TEST(EmulatedKernels, RandomLayoutsBothVariants) {
  const fg::DType narrow[] = {fg::DType::UInt8,    fg::DType::Bool,    fg::DType::Int8,
                              fg::DType::BFloat16, fg::DType::Float16, fg::DType::Int16};
  const fg::DType floats[] = {fg::DType::Float32, fg::DType::Float16, fg::DType::BFloat16,
                              fg::DType::Float64};
  std::mt19937_64 rng(2024);
  for (int round = 0; round < 24; ++round) {
    Scenario sc;
    const bool cast = round % 2 == 1;
    const fg::DType flat = cast ? floats[rng() % 4] : narrow[rng() % 6];
    sc.flat_dtype = flat;
    const int count = 1 + static_cast<int>(rng() % 12);
    for (int i = 0; i < count; ++i) {
      const fg::DType dtype = cast ? floats[rng() % 4] : flat;
      const std::int64_t offset = static_cast<std::int64_t>(rng() % 4 == 0 ? rng() % 17 : 0);
      switch (rng() % 5) {
        case 0:
          sc.tensors.push_back({dtype, {1 + static_cast<std::int64_t>(rng() % 40)}, {}, offset});
          break;
        case 1: sc.tensors.push_back({dtype, {9, 13}, {1, 9}, offset}); break;  // transposed
        default:
          sc.tensors.push_back({dtype, {1 + static_cast<std::int64_t>(rng() % 9000)}, {}, offset});
      }
    }
    const std::int64_t aligns[] = {1, 2, 16, 64};
    sc.align_elems = aligns[rng() % 4];
    sc.flat_shift = rng() % 3 == 0 ? static_cast<std::int64_t>(rng() % 5) : 0;
    sc.streaming = rng() % 2 == 0;
    fg::detail::Tuning tuning = fg::detail::tuning_for(9, 0);
    const std::int64_t floors[] = {32, 256, 4096};
    tuning.tiles.min_tile_bytes = floors[rng() % 3];
    tuning.tiles.copy_cost_bytes = static_cast<std::int64_t>(rng() % 1025);
    const std::int64_t warps = 1 + static_cast<std::int64_t>(rng() % 64);
    // The copies the tiles are cut from are check_scenario's; their cost is what matters, so
    // a plan of the same tensors (any order) gives the same budget: use one copy per tensor.
    std::vector<CopyDesc> descs;
    std::int64_t at = 0;
    for (const TensorSpec& t : sc.tensors) {
      std::int64_t n = 1;
      for (std::int64_t d : t.sizes) n *= d;
      descs.push_back(make_copy(at, n, t.dtype));
      at += n;
    }
    // The other two switches at random: every combination of the four meets over the rounds.
    sc.strided_path = rng() % 2 == 0 ? CopyPath::Old : CopyPath::New;
    sc.misaligned_path = rng() % 2 == 0 ? CopyPath::Old : CopyPath::New;
    for (const CopyPath scale : {CopyPath::Old, CopyPath::New}) {
      for (const CopyPath unroll : {CopyPath::Old, CopyPath::New}) {
        SCOPED_TRACE("round " + std::to_string(round) + " flat " + fg::dtype_name(flat) +
                     " tile_scaling=" + fg::detail::to_string(scale) +
                     " unroll=" + fg::detail::to_string(unroll) +
                     " strided=" + fg::detail::to_string(sc.strided_path) +
                     " misaligned=" + fg::detail::to_string(sc.misaligned_path));
        tuning.tile_scaling_path = scale;
        sc.params = fg::detail::plan_tile_params(descs, fg::dtype_size(flat), tuning, warps);
        sc.unroll_path = unroll;
        check_scenario(sc, 7000 + static_cast<std::uint64_t>(round));
      }
    }
  }
}

// ---- the gather-with-statistics warp code (kernels/stats_piece.cuh), emulated ----------------

namespace {

/// One piece's partial as gather_stats_kernel stores it.
struct PiecePartial {
  double sumsq;
  int bad;
};

/// The stats kernel's warp code over every tile: each piece by 32 lanes in turn through
/// stats_piece, then the kernel's shuffle tree (lane l adds lane l + offset, offset 16, 8, 4,
/// 2, 1; lane 0 holds the piece's total). Partials in piece order.
std::vector<PiecePartial> run_stats(const fg::detail::HostTable& table, fg::DType flat_dtype,
                                    char* flat, double scale) {
  const fg::detail::KernelArgs a = kernel_args(table, flat_dtype, flat, 1.0);
  std::vector<PiecePartial> out;
  for (std::int64_t t = 0; t < a.num_tiles; ++t) {
    fg::detail::for_each_piece(a.d_tiles, t, a.d_copies, a.num_copies,
                               [&](std::int32_t c, std::int64_t first, std::int64_t count) {
      double sum[32] = {};
      int bad[32] = {};
      for (int lane = 0; lane < 32; ++lane) {
        fg::detail::stats_piece(a, scale, a.d_copies[c], first, count, lane, sum[lane], bad[lane]);
      }
      for (int offset = 16; offset > 0; offset /= 2) {
        for (int l = 0; l + offset < 32; ++l) {  // ascending: reads l + offset before it changes
          sum[l] += sum[l + offset];
          bad[l] |= bad[l + offset];
        }
      }
      out.push_back({sum[0], bad[0]});
    });
  }
  return out;
}

/// The result of one emulated gather with statistics.
struct StatsRun {
  std::vector<char> flat;  // the written flat buffer
  std::vector<PiecePartial> parts;
  fg_emulation::AccessCounts counts;
};

/// Gathers `built` with statistics into a poisoned flat buffer `flat_shift` elements past a
/// 16-byte boundary; checks that nothing outside the flat buffer was written.
StatsRun gather_stats_at(const Built& built, const Scenario& sc, std::int64_t flat_shift,
                         double scale) {
  const int fs = fg::dtype_size(sc.flat_dtype);
  const fg::detail::HostTable table =
      fg::detail::build_host_table(built.copies, built.flat_numel, sc.flat_dtype, sc.params);
  Buffer buffer(static_cast<std::size_t>((built.flat_numel + flat_shift + 4) * fs));
  std::memset(buffer.bytes(), 0xA5, buffer.storage.size() * 16);
  char* flat = buffer.bytes() + flat_shift * fs;
  fg_emulation::counts() = {};
  StatsRun r;
  r.parts = run_stats(table, sc.flat_dtype, flat, scale);
  r.counts = fg_emulation::counts();
  r.flat.assign(flat, flat + built.flat_numel * fs);
  for (std::int64_t b = 0; b < flat_shift * fs; ++b)
    EXPECT_EQ(buffer.bytes()[b], static_cast<char>(0xA5)) << "before the flat buffer";
  for (std::int64_t b = 0; b < 4 * fs; ++b)
    EXPECT_EQ(flat[built.flat_numel * fs + b], static_cast<char>(0xA5)) << "after it";
  return r;
}

double as_double(const char* p, fg::DType dtype) {
  double v = 0;
  fg::dispatch_floating(dtype, [&](auto tag) {
    using T = decltype(tag);
    T t;
    std::memcpy(&t, p, sizeof(T));
    v = fg::convert<double>(t);
  });
  return v;
}

}  // namespace

// The flat buffer is cast(source * scale) (LibTorch's rounding, NOTE: [gather statistics]),
// the pieces' sums add up to the float64 sum of squares of the written values, and the
// non-finite flag is set exactly where a source holds an infinity (float16's overflow).
TEST(EmulatedStats, WritesScaledValuesAndSumsEverySquareOnce) {
  const fg::DType floats[] = {fg::DType::Float32, fg::DType::Float16, fg::DType::BFloat16,
                              fg::DType::Float64};
  std::uint64_t seed = 500;
  for (fg::DType tdt : floats) {
    for (fg::DType fdt : floats) {
      for (const double scale : {1.0, 0.375}) {
        SCOPED_TRACE(std::string(fg::dtype_name(tdt)) + " -> " + fg::dtype_name(fdt) + " scale " +
                     std::to_string(scale));
        Scenario sc;
        sc.tensors = sample_specs(tdt, true);
        sc.flat_dtype = fdt;
        sc.align_elems = 16;
        sc.params = seed % 2 ? TileParams{32 * 1024, 1024} : TileParams{512, 64};
        std::mt19937_64 rng(seed++);
        const Built built = build_scenario(sc, rng);
        const int fs = fg::dtype_size(fdt);
        // The reference: -0 + scale * source with one rounding (torch_add_scaled), so a zero
        // product keeps its sign.
        std::vector<char> want(static_cast<std::size_t>(built.flat_numel * fs), 0);
        bool any_bad = false;
        for (const CopyDesc& d : built.copies) {
          if (!d.data || d.numel == 0) continue;
          const int es = fg::dtype_size(d.dtype);
          std::vector<char> src(static_cast<std::size_t>(d.numel * es));
          for (std::int64_t i = 0; i < d.numel; ++i) {
            const char* e =
                static_cast<const char*>(d.data) + fg::detail::element_offset(d, i) * es;
            std::memcpy(src.data() + i * es, e, static_cast<std::size_t>(es));
            any_bad = any_bad || !std::isfinite(as_double(e, d.dtype));
          }
          const std::vector<double> minus_zero(static_cast<std::size_t>(d.numel), -0.0);
          const std::vector<char> zeros =
              fgtest::torch_cast(minus_zero.data(), d.numel, fg::DType::Float64, fdt);
          const std::vector<char> cast =
              fgtest::torch_add_scaled(zeros.data(), fdt, src.data(), d.dtype, d.numel, scale);
          std::memcpy(want.data() + d.flat_offset * fs, cast.data(), cast.size());
        }
        const StatsRun r = gather_stats_at(built, sc, 1, scale);
        EXPECT_EQ(r.counts.misaligned, 0);
        EXPECT_EQ(std::memcmp(r.flat.data(), want.data(), want.size()), 0) << "flat differs";
        long double exact = 0;
        for (std::int64_t i = 0; i < built.flat_numel; ++i) {
          const long double v = as_double(want.data() + i * fs, fdt);
          exact += v * v;
        }
        double total = 0;
        int bad = 0;
        for (const PiecePartial& p : r.parts) {
          total += p.sumsq;
          bad |= p.bad;
        }
        EXPECT_EQ(bad, any_bad ? 1 : 0);
        if (std::isfinite(static_cast<double>(exact))) {
          EXPECT_NEAR(total, static_cast<double>(exact), 1e-12 * static_cast<double>(exact));
        } else {
          EXPECT_EQ(total, static_cast<double>(exact));
        }
      }
    }
  }
}

// NOTE: [stats order]: the pieces' sums have the same bits wherever the flat buffer starts,
// though an aligned buffer moves in packs and a misaligned one element by element.
TEST(EmulatedStats, SameBitsWhereverTheFlatBufferStarts) {
  for (fg::DType tdt : {fg::DType::Float32, fg::DType::BFloat16, fg::DType::Float64}) {
    SCOPED_TRACE(fg::dtype_name(tdt));
    Scenario sc;
    sc.tensors = sample_specs(tdt, true);
    sc.tensors.push_back({tdt, {50000}, {}, 0});  // long enough for many packs per lane
    sc.flat_dtype = fg::DType::Float32;
    std::mt19937_64 rng(77);
    const Built built = build_scenario(sc, rng);
    const int fs = fg::dtype_size(sc.flat_dtype);
    const int pack_bytes = fg::detail::pack_elements(fg::dtype_size(tdt), fs) * fs;
    const StatsRun aligned = gather_stats_at(built, sc, 0, 0.5);
    EXPECT_GT(aligned.counts.stores[pack_bytes], 0) << "the aligned buffer takes the vector path";
    for (std::int64_t shift : {1, 2, 3}) {
      SCOPED_TRACE("shift " + std::to_string(shift));
      const StatsRun moved = gather_stats_at(built, sc, shift, 0.5);
      if (shift * fs % pack_bytes != 0) {
        EXPECT_EQ(moved.counts.stores[pack_bytes], 0);
      }
      EXPECT_EQ(moved.counts.misaligned, 0);
      EXPECT_EQ(moved.flat, aligned.flat);
      ASSERT_EQ(moved.parts.size(), aligned.parts.size());
      for (std::size_t p = 0; p < aligned.parts.size(); ++p) {
        EXPECT_EQ(std::memcmp(&moved.parts[p].sumsq, &aligned.parts[p].sumsq, sizeof(double)), 0)
            << "piece " << p;
      }
    }
  }
}

// FLATGATHER_CUDA_TUNING (NOTE: [tuning overrides]).
TEST(Tuning, OverridesApplyAndBadSpecsThrow) {
  fg::detail::Tuning t = fg::detail::tuning_for(9, 0);
  EXPECT_EQ(t.tiles.tile_bytes, 32 * 1024);
  EXPECT_EQ(fg::detail::tuning_for(8, 0).tiles.tile_bytes, 16 * 1024);
  fg::detail::apply_tuning_overrides(t,
                                     "tile=64,copy_cost=8,streaming=-1,block=128,blocks_per_sm=4");
  EXPECT_EQ(t.tiles.tile_bytes, 64);
  EXPECT_EQ(t.tiles.copy_cost_bytes, 8);
  EXPECT_EQ(t.streaming_min_bytes, -1);
  EXPECT_EQ(t.block_threads, 128);
  EXPECT_EQ(t.max_blocks_per_sm, 4);
  // The defaults the first H200 run chose (kernels/tuning.h, tuning_for).
  EXPECT_EQ(t.strided_path, CopyPath::New);
  EXPECT_EQ(t.misaligned_path, CopyPath::Old);
  EXPECT_EQ(t.tile_scaling_path, CopyPath::New);
  EXPECT_EQ(t.unroll_path, CopyPath::New);
  EXPECT_EQ(t.transpose_path, CopyPath::New);
  EXPECT_EQ(t.convert_path, CopyPath::New);
  EXPECT_EQ(t.descriptor_path, CopyPath::Old);
  fg::detail::apply_tuning_overrides(t, "strided=old,transpose=old,convert=old");
  EXPECT_EQ(t.strided_path, CopyPath::Old);
  fg::detail::apply_tuning_overrides(t, "strided=new,misaligned=new");
  EXPECT_EQ(t.strided_path, CopyPath::New);
  EXPECT_EQ(t.misaligned_path, CopyPath::New);
  EXPECT_EQ(fg::detail::to_string(t),
            "block=128 blocks/SM<=4 tile=64B copy_cost=8B streaming=never strided=new "
            "misaligned=new tile_scaling=new(min 4096B) unroll=new transpose=old convert=old "
            "descriptors=old");
  fg::detail::apply_tuning_overrides(t, "misaligned=old");
  EXPECT_EQ(t.misaligned_path, CopyPath::Old);
  EXPECT_THROW_MSG(fg::detail::apply_tuning_overrides(t, "strided=fast"), "strided=fast",
                   "old or new");
  EXPECT_EQ(t.strided_path, CopyPath::New) << "a refused path keeps its value";
  // The other two A/B switches and the scaled budget's floor (NOTE: [tile scaling]).
  fg::detail::apply_tuning_overrides(t, "tile_scaling=old,unroll=old,min_tile=2048");
  EXPECT_EQ(t.tile_scaling_path, CopyPath::Old);
  EXPECT_EQ(t.unroll_path, CopyPath::Old);
  EXPECT_EQ(t.tiles.min_tile_bytes, 2048);
  EXPECT_EQ(fg::detail::to_string(t),
            "block=128 blocks/SM<=4 tile=64B copy_cost=8B streaming=never strided=new "
            "misaligned=old tile_scaling=old unroll=old transpose=old convert=old descriptors=old");
  fg::detail::apply_tuning_overrides(t, "unroll=new,tile_scaling=new,descriptors=new");
  EXPECT_EQ(t.tile_scaling_path, CopyPath::New);
  EXPECT_EQ(t.unroll_path, CopyPath::New);
  EXPECT_EQ(t.descriptor_path, CopyPath::New);
  EXPECT_NE(fg::detail::to_string(t).find(" descriptors=new"), std::string::npos);
  EXPECT_THROW_MSG(fg::detail::apply_tuning_overrides(t, "descriptors=shuffle"),
                   "descriptors=shuffle", "old or new");
  EXPECT_EQ(t.descriptor_path, CopyPath::New) << "a refused switch keeps its value";
  EXPECT_THROW_MSG(fg::detail::apply_tuning_overrides(t, "unroll=fast"), "unroll=fast",
                   "old or new");
  EXPECT_THROW_MSG(fg::detail::apply_tuning_overrides(t, "tile_scaling=1"), "old or new");
  EXPECT_THROW_MSG(fg::detail::apply_tuning_overrides(t, "misaligned="), "old or new");
  EXPECT_THROW_MSG(fg::detail::apply_tuning_overrides(t, "min_tile=0"), "at least 1");
  EXPECT_THROW_MSG(fg::detail::apply_tuning_overrides(t, "colour=3"),
                   "strided, misaligned, tile_scaling, unroll, transpose, convert, descriptors");
  // The conversion switch (NOTE: [hardware conversions]).
  EXPECT_EQ(t.convert_path, CopyPath::Old);
  fg::detail::apply_tuning_overrides(t, "convert=new");
  EXPECT_EQ(t.convert_path, CopyPath::New);
  EXPECT_NE(fg::detail::to_string(t).find(" convert=new"), std::string::npos);
  EXPECT_THROW_MSG(fg::detail::apply_tuning_overrides(t, "convert=hw"), "convert=hw", "old or new");
  EXPECT_EQ(t.convert_path, CopyPath::New) << "a refused switch keeps its value";
  fg::detail::apply_tuning_overrides(t, "convert=old");
  EXPECT_EQ(t.convert_path, CopyPath::Old);
  EXPECT_EQ(t.unroll_path, CopyPath::New) << "a refused switch keeps its value";
  // The shared transposes' switch (NOTE: [shared transposes]).
  EXPECT_EQ(t.transpose_path, CopyPath::Old);
  fg::detail::apply_tuning_overrides(t, "transpose=new");
  EXPECT_EQ(t.transpose_path, CopyPath::New);
  EXPECT_NE(fg::detail::to_string(t).find(" transpose=new"), std::string::npos);
  EXPECT_THROW_MSG(fg::detail::apply_tuning_overrides(t, "transpose=shared"), "transpose=shared",
                   "old or new");
  EXPECT_EQ(t.transpose_path, CopyPath::New) << "a refused switch keeps its value";
  fg::detail::apply_tuning_overrides(t, "transpose=old");
  EXPECT_EQ(t.transpose_path, CopyPath::Old);
  EXPECT_THROW_MSG(fg::detail::apply_tuning_overrides(t, "tile=0"), "tile=0", "at least 1");
  EXPECT_THROW_MSG(fg::detail::apply_tuning_overrides(t, "block=100"), "multiple of 32");
  EXPECT_THROW_MSG(fg::detail::apply_tuning_overrides(t, "colour=3"), "unknown key 'colour'");
  EXPECT_THROW_MSG(fg::detail::apply_tuning_overrides(t, "tile=big"), "integer");
  EXPECT_THROW_MSG(fg::detail::apply_tuning_overrides(t, "tile"), "key=value");
  EXPECT_EQ(t.tiles.tile_bytes, 64) << "a refused field keeps its value";
}

// ---- the new copy paths (NOTE: [strided copies], NOTE: [misaligned copies]) -----------------

// NOTE: [fast division]: the magic-number quotient equals n / d for edge and random values,
// over the whole 32-bit range of n and every divisor the indexer accepts.
TEST(FastDivider, MatchesDivision) {
  std::mt19937_64 rng(19);
  std::vector<std::uint32_t> divisors = {
      1, 2, 3, 5, 7, 10, 31, 32, 33, 641, 6700417, 65535, 65536, 65537, 0x7FFFFFFFu, 0x80000000u};
  for (int k = 0; k < 200; ++k) {
    divisors.push_back(static_cast<std::uint32_t>(1 + rng() % 0x80000000u));
    divisors.push_back(static_cast<std::uint32_t>(1 + rng() % 5000));
  }
  for (const std::uint32_t d : divisors) {
    const fg::detail::FastDivider f = fg::detail::make_divider(d);
    std::vector<std::uint32_t> ns = {
        0,           1,           d - 1,           d,           d + 1,      2 * d - 1, 2 * d,
        0xFFFFFFFEu, 0xFFFFFFFFu, 0xFFFFFFFFu - d, 0x80000000u, 0x7FFFFFFFu};
    for (int k = 0; k < 2000; ++k) ns.push_back(static_cast<std::uint32_t>(rng()));
    for (std::uint32_t q = 1; q < 40; ++q) {  // around multiples of d
      const std::uint64_t m = static_cast<std::uint64_t>(d) * (rng() % (0xFFFFFFFFull / d + 1));
      for (const std::int64_t delta : {-1, 0, 1}) {
        const std::int64_t n = static_cast<std::int64_t>(m) + delta;
        if (n >= 0 && n <= 0xFFFFFFFFll) ns.push_back(static_cast<std::uint32_t>(n));
      }
    }
    for (const std::uint32_t n : ns) ASSERT_EQ(f.div(n), n / d) << n << " / " << d;
  }
}

namespace {

// A random strided layout: transposed, channels_last, sliced, reversed (negative strides),
// permuted in 5 dimensions (more than the indexer holds), or contiguous at a random offset.
TensorSpec random_spec(fg::DType dtype, std::mt19937_64& rng) {
  auto size = [&](std::int64_t most) { return 1 + static_cast<std::int64_t>(rng() % most); };
  const std::int64_t offset = static_cast<std::int64_t>(rng() % 5);
  switch (rng() % 6) {
    case 0: {  // transposed matrix
      const std::int64_t r = size(70), c = size(70);
      return {dtype, {c, r}, {1, c}, offset};
    }
    case 1: {  // channels_last N, C, H, W with strides H*W*C, 1, W*C, C
      const std::int64_t n = size(3), c = size(9), h = size(7), w = size(7);
      return {dtype, {n, c, h, w}, {h * w * c, 1, w * c, c}, offset};
    }
    case 2: {  // every k-th column of a wider matrix
      const std::int64_t r = size(40), c = size(40), k = size(4);
      return {dtype, {r, c}, {c * k + static_cast<std::int64_t>(rng() % 3), k}, offset};
    }
    case 3: {  // reversed rows and columns
      const std::int64_t r = size(40), c = size(40);
      return {dtype, {r, c}, {-c, -1}, offset};
    }
    case 4: {  // five dimensions that do not merge
      const std::int64_t a = size(3), b = size(4), c = size(3), d = size(4), e = size(3);
      return {dtype, {a, b, c, d, e}, {1, a * c * e, a, a * c * e * b, a * c}, offset};
    }
    default: return {dtype, {size(1500)}, {}, offset};  // contiguous, misaligned or not
  }
}

}  // namespace

// The indexer (kernels/strided_index.h) finds element_offset's offsets for random layouts,
// looked up directly and by advancing 32 at a time from every lane's first element
// (NOTE: [strided cursor]).
TEST(StridedIndexer, MatchesElementOffset) {
  std::mt19937_64 rng(1919);
  int usable = 0;
  for (int round = 0; round < 300; ++round) {
    const TensorSpec t = random_spec(fg::DType::Float32, rng);
    if (t.strides.empty()) continue;
    CopyDesc d;
    d.contiguous = false;
    d.ndim = static_cast<std::int32_t>(t.sizes.size());
    d.numel = 1;
    for (int k = 0; k < d.ndim; ++k) {
      d.sizes[k] = t.sizes[static_cast<std::size_t>(k)];
      d.strides[k] = t.strides[static_cast<std::size_t>(k)];
      d.numel *= d.sizes[k];
    }
    const fg::detail::StridedIndexer ix = fg::detail::make_indexer(d);
    ASSERT_EQ(ix.usable != 0, d.ndim <= fg::detail::kIndexerDims);
    if (!ix.usable) continue;
    ++usable;
    for (std::int64_t i = 0; i < d.numel; ++i) {
      ASSERT_EQ(ix.at(static_cast<std::uint32_t>(i)).offset, fg::detail::element_offset(d, i));
    }
    for (std::int64_t lane = 0; lane < 32 && lane < d.numel; ++lane) {
      fg::detail::IndexCursor c = ix.at(static_cast<std::uint32_t>(lane));
      for (std::int64_t i = lane; i < d.numel; i += 32) {
        ASSERT_EQ(c.offset, fg::detail::element_offset(d, i)) << "lane " << lane << " i " << i;
        ix.advance(c);
      }
    }
  }
  EXPECT_GT(usable, 100);
  // Out of the indexer's reach: too many elements, a size without a 32-bit magic number.
  CopyDesc big;
  big.contiguous = false;
  big.ndim = 2;
  big.sizes[0] = std::int64_t{1} << 20;
  big.sizes[1] = std::int64_t{1} << 12;
  big.strides[0] = 1;
  big.strides[1] = big.sizes[0];
  big.numel = big.sizes[0] * big.sizes[1];
  EXPECT_EQ(fg::detail::make_indexer(big).usable, 0);
  big.sizes[0] = 1;
  big.sizes[1] = (std::int64_t{1} << 31) + 1;
  big.numel = big.sizes[1];
  EXPECT_EQ(fg::detail::make_indexer(big).usable, 0);
}

// Random layouts, dtype pairs (casts included), flat offsets, alignments and tile budgets, run
// on every combination of the old and new paths: each is bit-identical to the LibTorch
// reference, stores every byte once and accesses memory aligned (check_scenario).
TEST(EmulatedKernels, RandomLayoutsEveryPath) {
  const std::pair<fg::DType, fg::DType> pairs[] = {
      {fg::DType::Float32, fg::DType::Float32}, {fg::DType::BFloat16, fg::DType::BFloat16},
      {fg::DType::UInt8, fg::DType::UInt8},     {fg::DType::Float64, fg::DType::Float64},
      {fg::DType::Int16, fg::DType::Int16},     {fg::DType::BFloat16, fg::DType::Float32},
      {fg::DType::Float32, fg::DType::Float16}, {fg::DType::Float64, fg::DType::Float32},
      {fg::DType::Float16, fg::DType::Float64}, {fg::DType::Bool, fg::DType::Bool},
  };
  std::mt19937_64 rng(2019);
  std::uint64_t seed = 5000;
  for (int round = 0; round < 40; ++round) {
    const auto& [tdt, fdt] = pairs[static_cast<std::size_t>(round) % std::size(pairs)];
    Scenario sc;
    const int n = 1 + static_cast<int>(rng() % 6);
    for (int k = 0; k < n; ++k) sc.tensors.push_back(random_spec(tdt, rng));
    sc.flat_dtype = fdt;
    sc.flat_shift = static_cast<std::int64_t>(rng() % 4);
    const std::int64_t aligns[] = {1, 3, 16};
    sc.align_elems = aligns[rng() % 3];
    sc.params = rng() % 2 ? TileParams{32 * 1024, 1024}
                          : TileParams{static_cast<std::int64_t>(16 + rng() % 600),
                                       static_cast<std::int64_t>(rng() % 64)};
    for (const CopyPath strided : {CopyPath::Old, CopyPath::New}) {
      for (const CopyPath misaligned : {CopyPath::Old, CopyPath::New}) {
        SCOPED_TRACE("round " + std::to_string(round) + " " + fg::dtype_name(tdt) + " -> " +
                     fg::dtype_name(fdt) + " strided=" + fg::detail::to_string(strided) +
                     " misaligned=" + fg::detail::to_string(misaligned) +
                     " convert=" + ((seed & 2) != 0 ? "new" : "old"));
        sc.strided_path = strided;
        sc.misaligned_path = misaligned;
        sc.streaming = (seed & 1) != 0;
        sc.convert_path = (seed & 2) != 0 ? CopyPath::New : CopyPath::Old;
        check_scenario(sc, seed);
      }
    }
    ++seed;
  }
}

// The new misaligned path reads the source in aligned 16-byte words only (two per pack) and
// realigns them with funnel shifts, for every element size and every misalignment.
TEST(EmulatedKernels, MisalignedNewPathReadsAlignedWords) {
  for (const fg::DType dtype :
       {fg::DType::UInt8, fg::DType::Int16, fg::DType::Float32, fg::DType::Float64}) {
    const int es = fg::dtype_size(dtype);
    for (std::int64_t offset = 1; offset * es < 16; ++offset) {
      SCOPED_TRACE(std::string(fg::dtype_name(dtype)) + " offset " + std::to_string(offset));
      const std::int64_t n = 4096 / es;  // whole packs: no head or tail on the flat side
      Scenario sc;
      sc.tensors = {{dtype, {n}, {}, offset}};
      sc.flat_dtype = dtype;
      sc.misaligned_path = CopyPath::New;
      const fg_emulation::AccessCounts c = check_scenario(sc, 77);
      const std::int64_t packs = n * es / 16;
      EXPECT_EQ(c.stores[16], packs);
      EXPECT_EQ(c.loads[16], 2 * packs);
      EXPECT_EQ(c.loads[es], 0) << "no element loads";
      EXPECT_EQ(c.funnel_shifts, 4 * packs);
      // The old path reads the same source element by element.
      sc.misaligned_path = CopyPath::Old;
      const fg_emulation::AccessCounts old = check_scenario(sc, 77);
      EXPECT_EQ(old.loads[es], n);
      EXPECT_EQ(old.funnel_shifts, 0);
    }
  }
}

// The sample layouts (transposed, channels_last at an odd offset, sliced) with every dtype pair
// of EveryDtypePairOddAlignmentsStrided, on the new paths.
TEST(EmulatedKernels, NewPathsEveryDtypePair) {
  const fg::DType floats[] = {fg::DType::Float32, fg::DType::Float16, fg::DType::BFloat16,
                              fg::DType::Float64};
  std::uint64_t seed = 900;
  for (fg::DType t : floats) {
    for (fg::DType f : floats) {
      for (std::int64_t shift : {0, 1, 3}) {
        SCOPED_TRACE(std::string(fg::dtype_name(t)) + " -> " + fg::dtype_name(f) + " shift " +
                     std::to_string(shift));
        Scenario sc;
        sc.tensors = sample_specs(t, true);
        sc.flat_dtype = f;
        sc.flat_shift = shift;
        sc.params = seed % 2 ? TileParams{32 * 1024, 1024} : TileParams{100, 8};
        sc.strided_path = CopyPath::New;
        sc.misaligned_path = CopyPath::New;
        sc.convert_path = CopyPath::New;
        check_scenario(sc, seed++);
      }
    }
  }
}

// ---- the lockstep warp emulator itself (NOTE: [warp lockstep] in tests/warp_lockstep.h) -------

TEST(WarpLockstep, ShufflesMoveEachLanesValue) {
  struct Pair {
    std::int32_t a, b;
  };
  int calls = 0;
  std::int64_t failures = 0;
  fg_lockstep::run_warp([&](int lane, unsigned char*) {
    ++calls;
    const int src = (lane * 7 + 3) % 32;
    const std::int32_t i32 = __shfl_sync(0xffffffffu, 1000 + lane * 13, src);
    const std::int64_t i64 =
        __shfl_sync(0xffffffffu, (std::int64_t{lane} << 40) - lane * 3, (lane + 31) % 32);
    const double d = __shfl_sync(0xffffffffu, 0.5 + lane, 31 - lane);
    const Pair p = __shfl_sync(0xffffffffu, Pair{lane, -lane}, 5);
    const int down = __shfl_down_sync(0xffffffffu, lane * 2, 4);
    const int x = __shfl_xor_sync(0xffffffffu, lane + 100, 9);
    const unsigned ballot = __ballot_sync(0xffffffffu, lane % 3 == 0);
    const int any = __any_sync(0xffffffffu, lane == 17);
    const int all = __all_sync(0xffffffffu, lane != 17);
    const int prev = (lane + 31) % 32;
    failures += i32 != 1000 + src * 13;
    failures += i64 != (std::int64_t{prev} << 40) - prev * 3;
    failures += d != 0.5 + (31 - lane);
    failures += p.a != 5 || p.b != -5;
    failures += down != (lane + 4 < 32 ? (lane + 4) * 2 : lane * 2);
    failures += x != (lane ^ 9) + 100;
    failures += ballot != 0x49249249u;
    failures += any != 1 || all != 0;
  });
  EXPECT_EQ(calls, 32);
  EXPECT_EQ(failures, 0);
}

TEST(WarpLockstep, SharedMemoryAndPartialMasks) {
  std::vector<int> got(32, -1);
  fg_lockstep::run_warp(
      [&](int lane, unsigned char* shared) {
    ASSERT_NE(shared, nullptr);
    int* s = reinterpret_cast<int*>(shared);
    s[lane] = lane * lane;
    __syncwarp();
    int v = s[31 - lane];
    // The lower half shuffles among itself while the upper half waits at the barrier.
    if (lane < 16) v += __shfl_sync(0x0000ffffu, lane, (lane + 1) % 16) * 1000;
    __syncwarp();
    got[static_cast<std::size_t>(lane)] = v;
      },
      32 * sizeof(int));
  for (int lane = 0; lane < 32; ++lane) {
    const int want = (31 - lane) * (31 - lane) + (lane < 16 ? (lane + 1) % 16 * 1000 : 0);
    EXPECT_EQ(got[static_cast<std::size_t>(lane)], want) << "lane " << lane;
  }
}

TEST(WarpLockstep, MisuseIsCaught) {
  auto message = [](auto&& f) -> std::string {
    try {
      fg_lockstep::run_warp(f);
    } catch (const fg_lockstep::Misuse& e) {
      return e.what();
    }
    return "no error";
  };
  // Divergent lanes at two different shuffles of the full mask (written outside the
  // assertion's macro, whose lines all count as one call site).
  auto divergent = [](int lane, unsigned char*) {
    if (lane % 2) {
      (void)__shfl_sync(0xffffffffu, lane, 0);
    } else {
      (void)__shfl_sync(0xffffffffu, lane, 1);
    }
  };
  EXPECT_NE(message(divergent).find("but lane"), std::string::npos);
  // Another kind of collective.
  auto other_kind = [](int lane, unsigned char*) {
    if (lane == 3) {
      __syncwarp();
    } else {
      (void)__ballot_sync(0xffffffffu, 1);
    }
  };
  EXPECT_NE(message(other_kind).find("__syncwarp"), std::string::npos);
  // A lane missing from a full-mask shuffle.
  EXPECT_NE(message([](int lane, unsigned char*) {
              if (lane == 31) return;
              (void)__shfl_sync(0xffffffffu, lane, 0);
            }).find("lane 31, which has returned"),
            std::string::npos);
  // A mask without the caller, and a read outside the mask.
  EXPECT_NE(message([](int lane, unsigned char*) {
              (void)__shfl_sync(0xfffffffeu, lane, 1);
            }).find("does not contain it"),
            std::string::npos);
  EXPECT_NE(message([](int lane, unsigned char*) {
              if (lane < 8) (void)__shfl_sync(0x000000ffu, lane, 9);
            }).find("outside the mask"),
            std::string::npos);
  // Exceptions thrown by a lane come out of run_warp; the emulator runs again afterwards.
  EXPECT_THROW(fg_lockstep::run_warp([](int lane, unsigned char*) {
                 __syncwarp();
                 if (lane == 5) throw std::runtime_error("lane 5");
                 __syncwarp();
               }),
               std::runtime_error);
  int sum = 0;
  fg_lockstep::run_warp([&](int lane, unsigned char*) { sum += __shfl_sync(~0u, lane, 0) + 1; });
  EXPECT_EQ(sum, 32);
}

TEST(WarpLockstep, DeviceEmulationCountersStillCount) {
  alignas(16) std::uint32_t data[32 * 4];
  for (std::uint32_t i = 0; i < 32 * 4; ++i) data[i] = i * 2654435761u;
  fg_emulation::counts() = {};
  std::uint64_t sum = 0;
  fg_lockstep::run_warp([&](int lane, unsigned char*) {
    const uint4 v = __ldg(reinterpret_cast<const uint4*>(data) + lane);
    sum += __shfl_sync(0xffffffffu, v.x, (lane + 1) % 32);
  });
  EXPECT_EQ(fg_emulation::counts().loads[16], 32);
  EXPECT_EQ(fg_emulation::counts().readonly_loads, 32);
  std::uint64_t want = 0;
  for (int lane = 0; lane < 32; ++lane) want += data[lane * 4];
  EXPECT_EQ(sum, want);
}

// ---- the tile walk with descriptors fetched across the lanes (NOTE: [descriptor fetch]) -------

namespace {

/// A random copy list as ExecutorInput has it: tiny tensors mostly, some large ones, empty
/// copies and padding (no data) between them; `count` copies, contiguous, from flat 0.
std::vector<CopyDesc> random_copies(int count, std::mt19937_64& rng) {
  const fg::DType dtypes[] = {fg::DType::Float32, fg::DType::BFloat16, fg::DType::Float64};
  std::vector<CopyDesc> copies;
  std::int64_t at = 0;
  for (int i = 0; i < count; ++i) {
    const std::uint64_t kind = rng() % 20;
    std::int64_t n = 1 + static_cast<std::int64_t>(rng() % 8);  // a bias, a norm
    if (kind == 0) n = 0;                                       // empty copy
    if (kind == 1) n = 100 + static_cast<std::int64_t>(rng() % 5000);
    copies.push_back(make_copy(at, n, dtypes[rng() % 3], /*has_data=*/kind != 2));  // 2: padding
    at += n;
  }
  return copies;
}

struct WalkedPiece {
  std::int32_t copy;
  std::int64_t first;
  std::int64_t count;
  bool descriptor_ok;  // the walk's DeviceCopy is the table's, byte for byte
  bool operator==(const WalkedPiece& o) const {
    return copy == o.copy && first == o.first && count == o.count &&
           descriptor_ok == o.descriptor_ok;
  }
};

/// Checks that every lane of the new walk and of the old one visits for_each_piece's pieces,
/// in its order, with the table's descriptors; returns the most copies a tile spans.
std::int64_t check_walks(const std::vector<CopyDesc>& copies, int flat_size,
                         const TileParams& params) {
  std::int64_t flat_numel = 0;
  for (const CopyDesc& d : copies) flat_numel += d.numel;
  const fg::DType flat_dtype = flat_size == 1   ? fg::DType::UInt8
                               : flat_size == 2 ? fg::DType::BFloat16
                                                : fg::DType::Float32;
  const fg::detail::HostTable table =
      fg::detail::build_host_table(copies, flat_numel, flat_dtype, params);
  fg::detail::KernelArgs a = kernel_args(table, flat_dtype, nullptr, 1.0);
  std::vector<WalkedPiece> want;
  std::int64_t widest = 0;
  for (std::int64_t t = 0; t < a.num_tiles; ++t) {
    widest = std::max<std::int64_t>(widest, table.tiles[static_cast<std::size_t>(t) + 1].copy -
                                                table.tiles[static_cast<std::size_t>(t)].copy + 1);
    fg::detail::for_each_piece(a.d_tiles, t, a.d_copies, a.num_copies,
                               [&](std::int32_t c, std::int64_t first, std::int64_t count) {
      want.push_back({c, first, count, true});
    });
  }
  std::vector<std::vector<WalkedPiece>> got(32);
  auto lane_loop = [&](int lane, bool across_lanes, fg::detail::DeviceCopy* staging) {
    for (std::int64_t t = 0; t < a.num_tiles; ++t) {
      fg::detail::walk_tile(a, t, across_lanes, staging, lane,
                            [&](std::int32_t c, const fg::detail::DeviceCopy& d, std::int64_t first,
                                std::int64_t count) {
        const bool same =
            c >= 0 && c < a.num_copies &&
            std::memcmp(&d, &table.copies[static_cast<std::size_t>(c)], sizeof d) == 0;
        got[static_cast<std::size_t>(lane)].push_back({c, first, count, same});
      });
    }
  };
  for (const bool across_lanes : {false, true}) {
    for (auto& g : got) g.clear();
    if (across_lanes) {
      fg_lockstep::run_warp(
          [&](int lane, unsigned char* shared) {
        lane_loop(lane, true, reinterpret_cast<fg::detail::DeviceCopy*>(shared));
          },
          kStagingBytes);
    } else {
      for (int lane = 0; lane < 32; ++lane) lane_loop(lane, false, nullptr);
    }
    for (int lane = 0; lane < 32; ++lane) {
      const auto& g = got[static_cast<std::size_t>(lane)];
      EXPECT_EQ(g.size(), want.size()) << "lane " << lane << " across_lanes " << across_lanes;
      const std::size_t n = std::min(g.size(), want.size());
      for (std::size_t k = 0; k < n; ++k) {
        if (!(g[k] == want[k])) {
          ADD_FAILURE() << "lane " << lane << " across_lanes " << across_lanes << " piece " << k
                        << ": copy " << g[k].copy << " [" << g[k].first << ", +" << g[k].count
                        << ") descriptor " << (g[k].descriptor_ok ? "ok" : "wrong")
                        << ", for_each_piece: copy " << want[k].copy << " [" << want[k].first
                        << ", +" << want[k].count << ")";
          break;
        }
      }
    }
  }
  return widest;
}

}  // namespace

// Every lane of the new walk visits exactly the old walk's pieces, in order, with the
// table's descriptors: random layouts with empty copies, padding, tiles of more than 32 copies
// and tiles cut inside copies.
TEST(TileWalk, DescriptorFetchVisitsTheSamePieces) {
  std::mt19937_64 rng(1919);
  std::int64_t widest = 0;
  for (int round = 0; round < 24; ++round) {
    const int count = 1 + static_cast<int>(rng() % (round % 4 == 0 ? 40 : 400));
    const std::vector<CopyDesc> copies = random_copies(count, rng);
    const int sizes[] = {1, 2, 4};
    const int flat_size = sizes[rng() % 3];
    const std::int64_t budgets[] = {16, 200, 4096, 32 * 1024};
    const std::int64_t costs[] = {0, 8, 64, 1024};
    const TileParams params{budgets[rng() % 4], costs[rng() % 4]};
    SCOPED_TRACE("round " + std::to_string(round) + " copies " + std::to_string(count) + " tile " +
                 std::to_string(params.tile_bytes) + " copy_cost " +
                 std::to_string(params.copy_cost_bytes));
    widest = std::max(widest, check_walks(copies, flat_size, params));
  }
  EXPECT_GT(widest, 64) << "no tile took more than two batches";
}

TEST(TileWalk, TenThousandTinyTensors) {
  std::mt19937_64 rng(10000);
  const std::vector<CopyDesc> copies = random_copies(10000, rng);
  // The default budget, and a per-copy cost so small that a tile spans hundreds of copies.
  EXPECT_GT(check_walks(copies, 4, TileParams{32 * 1024, 1024}), 1);
  EXPECT_GT(check_walks(copies, 4, TileParams{32 * 1024, 4}), 32 * 4);
}

// The kernels with the new walk give the reference's bytes, store every byte once and access
// memory aligned (check_scenario), for many tiny tensors with empty copies and padding, and
// tiles of many copies or cut inside copies.
TEST(EmulatedKernels, DescriptorFetchManyTinyTensors) {
  std::mt19937_64 rng(4242);
  std::uint64_t seed = 9100;
  for (int round = 0; round < 8; ++round) {
    Scenario sc;
    const bool cast = round % 2 == 1;
    sc.flat_dtype =
        cast ? fg::DType::Float32 : (round % 4 == 0 ? fg::DType::UInt8 : fg::DType::BFloat16);
    const fg::DType floats[] = {fg::DType::Float32, fg::DType::Float16, fg::DType::BFloat16,
                                fg::DType::Float64};
    const int count = round == 0 ? 10000 : 200 + static_cast<int>(rng() % 600);
    for (int i = 0; i < count; ++i) {
      const fg::DType dtype = cast ? floats[rng() % 4] : sc.flat_dtype;
      std::int64_t n = static_cast<std::int64_t>(rng() % 8);  // 0: an empty copy
      if (rng() % 50 == 0) n = 1 + static_cast<std::int64_t>(rng() % 3000);
      const std::int64_t offset = rng() % 3 == 0 ? static_cast<std::int64_t>(rng() % 5) : 0;
      if (rng() % 40 == 0 && n > 0) {
        sc.tensors.push_back({dtype, {n, 3}, {1, n}, offset});  // transposed
      } else {
        sc.tensors.push_back({dtype, {n}, {}, offset});
      }
    }
    sc.empty_copies = true;
    const std::int64_t aligns[] = {1, 4, 16};
    sc.align_elems = aligns[rng() % 3];  // padding between the tensors
    sc.flat_shift = static_cast<std::int64_t>(rng() % 3);
    sc.streaming = round % 3 == 0;
    sc.params = round % 2 == 0 ? TileParams{32 * 1024, static_cast<std::int64_t>(rng() % 16)}
                               : TileParams{static_cast<std::int64_t>(16 + rng() % 400),
                                            static_cast<std::int64_t>(rng() % 32)};
    sc.strided_path = rng() % 2 ? CopyPath::Old : CopyPath::New;
    sc.misaligned_path = rng() % 2 ? CopyPath::Old : CopyPath::New;
    for (const CopyPath descriptors : {CopyPath::Old, CopyPath::New}) {
      SCOPED_TRACE("round " + std::to_string(round) + " tensors " + std::to_string(count) +
                   " descriptors=" + fg::detail::to_string(descriptors));
      sc.descriptor_path = descriptors;
      check_scenario(sc, seed);
    }
    ++seed;
  }
}

// ---- the shared transposes (NOTE: [shared transposes] in kernels/copy.cuh) ---------------------

namespace {

CopyDesc strided_copy(std::vector<std::int64_t> sizes, std::vector<std::int64_t> strides,
                      fg::DType dtype = fg::DType::Float32) {
  CopyDesc d;
  d.data = &g_dummy;
  d.dtype = dtype;
  d.contiguous = false;
  d.ndim = static_cast<std::int32_t>(sizes.size());
  d.numel = 1;
  for (std::size_t k = 0; k < sizes.size(); ++k) {
    d.sizes[k] = sizes[k];
    d.strides[k] = strides[k];
    d.numel *= sizes[k];
  }
  return d;
}

/// A transposed [m, n] view of an [n, m] matrix: m rows of stride 1, n columns of stride m.
TensorSpec transposed(fg::DType dtype, std::int64_t m, std::int64_t n, std::int64_t offset) {
  return {dtype, {m, n}, {1, m}, offset};
}

/// A channels_last [n, c, h, w] tensor as the plan hands it over: h and w coalesce (stride c
/// and w * c), so [n, c, h * w] with strides [h * w * c, 1, c] (coalesce in src/layout.cpp).
TensorSpec channels_last(fg::DType dtype, std::int64_t n, std::int64_t c, std::int64_t h,
                         std::int64_t w, std::int64_t offset) {
  if (n == 1) return {dtype, {c, h * w}, {1, c}, offset};
  return {dtype, {n, c, h * w}, {h * w * c, 1, c}, offset};
}

/// Elements an emulated run moves through the shared tile, from the tiles and plain
/// division: the whole rows of every piece of a served copy with at least kTransposeMinRows
/// of them (NOTE: [shared transposes]).
std::int64_t expected_tile_elements(const fg::detail::HostTable& table,
                                    const std::vector<CopyDesc>& copies) {
  std::int64_t elements = 0;
  for (std::int64_t t = 0; t + 1 < static_cast<std::int64_t>(table.tiles.size()); ++t) {
    fg::detail::for_each_piece(table.tiles.data(), t, copies.data(),
                               static_cast<std::int32_t>(copies.size()),
                               [&](std::int32_t c, std::int64_t first, std::int64_t count) {
      const CopyDesc& d = copies[static_cast<std::size_t>(c)];
      if (!d.data || !fg::detail::make_transpose(d).usable) return;
      const std::int64_t cols = d.sizes[d.ndim - 1];
      const std::int64_t rows = (first + count) / cols - (first + cols - 1) / cols;
      if (rows >= fg::detail::kTransposeMinRows) elements += rows * cols;
    });
  }
  return elements;
}

}  // namespace

TEST(SharedTranspose, ServesTransposedCopiesOnly) {
  using fg::detail::make_transpose;
  const auto t2 = make_transpose(strided_copy({33, 17}, {1, 33}));
  EXPECT_EQ(t2.usable, 1);
  EXPECT_EQ(t2.rows.divisor, 33u);
  EXPECT_EQ(t2.cols.divisor, 17u);
  EXPECT_EQ(t2.col_stride, 33);
  const auto cl = make_transpose(strided_copy({2, 5, 21}, {105, 1, 5}));  // channels_last
  EXPECT_EQ(cl.usable, 1);
  EXPECT_EQ(cl.batch_stride, 105);
  EXPECT_EQ(make_transpose(strided_copy({10, 4}, {12, 3})).usable, 0);               // sliced
  EXPECT_EQ(make_transpose(strided_copy({10, 4}, {4, 1})).usable, 0);                // rows
  EXPECT_EQ(make_transpose(strided_copy({7, 40}, {1, -7})).usable, 0);               // negative
  EXPECT_EQ(make_transpose(strided_copy({2, 5, 21}, {-105, 1, 5})).usable, 0);       // negative
  EXPECT_EQ(make_transpose(strided_copy({2, 3, 5, 7}, {200, 70, 1, 5})).usable, 0);  // 2 batches
  EXPECT_EQ(make_transpose(make_copy(0, 100, fg::DType::Float32)).usable, 0);        // contiguous
  EXPECT_EQ(make_transpose(strided_copy({1 << 16, 1 << 15}, {1, 1 << 16})).usable, 0);  // 2^31
  EXPECT_EQ(make_transpose(strided_copy({(1 << 16) - 1, 1 << 15}, {1, 1 << 16})).usable, 1);
  // The byte form of a transposed float32 view (innermost stride 1) is not served; its word
  // view is (NOTE: [byte plan words]).
  const CopyDesc bytes = strided_copy({9, 13, 4}, {4, 36, 1}, fg::DType::UInt8);
  EXPECT_EQ(make_transpose(bytes).usable, 0);
  EXPECT_EQ(make_transpose(fg::detail::word_view(bytes, 4)).usable, 1);
}

TEST(SharedTranspose, OffsetsMatchElementOffset) {
  std::mt19937_64 rng(91);
  for (int round = 0; round < 200; ++round) {
    const std::int64_t b = 1 + static_cast<std::int64_t>(rng() % 4);
    const std::int64_t r = 1 + static_cast<std::int64_t>(rng() % 70);
    const std::int64_t c = 2 + static_cast<std::int64_t>(rng() % 70);
    const std::int64_t col_stride = r + static_cast<std::int64_t>(rng() % 3);
    const CopyDesc d = b == 1 ? strided_copy({r, c}, {1, col_stride})
                              : strided_copy({b, r, c}, {r * col_stride + 5, 1, col_stride});
    const fg::detail::TransposeDesc t = fg::detail::make_transpose(d);
    ASSERT_EQ(t.usable, 1);
    for (std::int64_t i = 0; i < d.numel; ++i) {
      const auto q = static_cast<std::uint32_t>(i / c);
      ASSERT_EQ(t.offset(q, static_cast<std::uint32_t>(i % c)), fg::detail::element_offset(d, i))
          << "round " << round << " element " << i;
    }
  }
}

// A piece is its head (up to the first row boundary), its whole rows and its tail (after the
// last row boundary), each element in exactly one of them, against plain division.
TEST(SharedTranspose, CutSplitsEveryPieceIntoHeadRowsAndTail) {
  std::mt19937_64 rng(92);
  for (int round = 0; round < 3000; ++round) {
    const std::int64_t rows = 2 + static_cast<std::int64_t>(rng() % 50);  // stride 1 != rows
    const std::int64_t cols = 1 + static_cast<std::int64_t>(rng() % 50);
    const CopyDesc d = strided_copy({rows, cols}, {1, rows});
    const fg::detail::TransposeDesc t = fg::detail::make_transpose(d);
    ASSERT_EQ(t.usable, 1);
    const std::int64_t first =
        static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(d.numel));
    const std::int64_t count =
        1 + static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(d.numel - first));
    const fg::detail::TransposeCut cut = fg::detail::cut_transpose(t, first, count);
    const std::int64_t row_begin = (first + cols - 1) / cols;
    const std::int64_t row_end = std::max((first + count) / cols, row_begin);
    ASSERT_EQ(cut.row_begin, row_begin) << first << "+" << count;
    ASSERT_EQ(cut.row_end, row_end) << first << "+" << count;
    if (row_end == row_begin) {
      EXPECT_EQ(cut.head, count);
      EXPECT_EQ(cut.tail, 0u);
    } else {
      EXPECT_EQ(cut.head, row_begin * cols - first);
      EXPECT_EQ(cut.tail, first + count - row_end * cols);
    }
    EXPECT_EQ(cut.head + (row_end - row_begin) * cols + cut.tail, count);
  }
}

TEST(SharedTranspose, TileBytesFollowTheWidestSource) {
  using fg::detail::transpose_tile_bytes;
  constexpr int kTile = fg::detail::kTransposeTileElements;
  EXPECT_EQ(kTile, 32 * 33);
  const CopyDesc f32 = strided_copy({33, 17}, {1, 33});
  const CopyDesc bf16 = strided_copy({33, 17}, {1, 33}, fg::DType::BFloat16);
  const CopyDesc f64 = strided_copy({33, 17}, {1, 33}, fg::DType::Float64);
  const CopyDesc sliced = strided_copy({10, 4}, {12, 3});
  EXPECT_EQ(transpose_tile_bytes({f32}, fg::DType::Float32), 4 * kTile);
  EXPECT_EQ(transpose_tile_bytes({bf16}, fg::DType::BFloat16), 2 * kTile);
  EXPECT_EQ(transpose_tile_bytes({bf16}, fg::DType::Float32), 4 * kTile);  // scatter's source
  EXPECT_EQ(transpose_tile_bytes({bf16, f64}, fg::DType::BFloat16), 8 * kTile);
  EXPECT_EQ(transpose_tile_bytes({sliced, make_copy(0, 9, fg::DType::Float32)}, fg::DType::Float32),
            0);
  // A byte plan's transposed float64: its words are 8 bytes (NOTE: [byte plan words]).
  CopyDesc bytes = strided_copy({9, 13, 8}, {8, 72, 1}, fg::DType::UInt8);
  EXPECT_EQ(transpose_tile_bytes({bytes}, fg::DType::UInt8), 8 * kTile);
}

// The emulated kernels with transpose=new (lanes in lockstep, so __syncwarp holds) on
// transposed 2-D views and channels_last tensors of sizes that are and are not multiples of
// 32, with tile budgets that cut pieces inside blocks and rows: the bytes of the CPU
// reference for gather, scatter and scatter_add (check_scenario: every byte written once,
// no misaligned or out-of-tile access, poisoned outputs), and as many elements through the
// shared tile as the pieces' whole rows (the path is taken wherever it should be).
TEST(EmulatedKernels, SharedTransposeEveryOpBitForBit) {
  struct Case {
    fg::DType tensor, flat;
  };
  const Case cases[] = {{fg::DType::Float32, fg::DType::Float32},
                        {fg::DType::BFloat16, fg::DType::BFloat16},
                        {fg::DType::UInt8, fg::DType::UInt8},
                        {fg::DType::BFloat16, fg::DType::Float32},
                        {fg::DType::Float32, fg::DType::Float16}};
  std::uint64_t seed = 9100;
  std::int64_t through_tile = 0;
  for (const Case& k : cases) {
    for (const TileParams params :
         {TileParams{1 << 20, 1024}, TileParams{4096, 64}, TileParams{1000, 8}}) {
      for (const CopyPath strided : {CopyPath::Old, CopyPath::New}) {
        SCOPED_TRACE(std::string(fg::dtype_name(k.tensor)) + " -> " + fg::dtype_name(k.flat) +
                     " tile " + std::to_string(params.tile_bytes) +
                     " strided=" + fg::detail::to_string(strided));
        Scenario sc;
        sc.flat_dtype = k.flat;
        sc.params = params;
        sc.flat_shift = seed % 3;
        sc.align_elems = seed % 2 ? 16 : 1;
        sc.strided_path = strided;
        sc.transpose_path = CopyPath::New;
        sc.tensors = {transposed(k.tensor, 64, 64, 0),
                      {k.tensor, {100}, {}, 1},
                      transposed(k.tensor, 100, 37, 3),
                      channels_last(k.tensor, 4, 35, 3, 3, 1),
                      transposed(k.tensor, 33, 9, 0),
                      channels_last(k.tensor, 2, 64, 7, 7, 2),
                      transposed(k.tensor, 31, 200, 5),
                      {k.tensor, {10, 4}, {12, 3}, 2},  // sliced: never served
                      channels_last(k.tensor, 1, 48, 5, 5, 0)};
        std::mt19937_64 rng(seed);
        const Built built = build_scenario(sc, rng);
        const fg::detail::HostTable table =
            fg::detail::build_host_table(built.copies, built.flat_numel, sc.flat_dtype, sc.params);
        const std::int64_t expected = expected_tile_elements(table, built.copies);
        const fg_emulation::AccessCounts c = check_scenario(sc, seed++);
        EXPECT_EQ(c.shared_stores, expected) << "elements through the shared tile";
        through_tile += c.shared_stores;
      }
    }
  }
  EXPECT_GT(through_tile, 0);
}

// transpose=old never touches shared memory; transpose=new on a plan without a transposed
// copy launches without a tile (0 bytes) and runs as transpose=old.
TEST(EmulatedKernels, SharedTransposeOnlyWhereServed) {
  Scenario sc;
  sc.flat_dtype = fg::DType::Float32;
  sc.tensors = {transposed(fg::DType::Float32, 64, 40, 0),
                {fg::DType::Float32, {10, 4}, {12, 3}, 2}};
  fg_emulation::AccessCounts c = check_scenario(sc, 9200);
  EXPECT_EQ(c.shared_loads + c.shared_stores, 0);
  sc.transpose_path = CopyPath::New;
  c = check_scenario(sc, 9201);
  EXPECT_EQ(c.shared_stores, 64 * 40);
  sc.tensors = {{fg::DType::Float32, {10, 4}, {12, 3}, 2}, {fg::DType::Float32, {77}, {}, 0}};
  c = check_scenario(sc, 9202);
  EXPECT_EQ(c.shared_loads + c.shared_stores, 0);
}

// A byte plan's transposed tensors move as words through the tile (NOTE: [byte plan words]).
TEST(EmulatedKernels, SharedTransposeOfByteWords) {
  std::uint64_t seed = 9300;
  for (std::int64_t w : {2, 4, 8}) {
    SCOPED_TRACE("element size " + std::to_string(w));
    Scenario sc;
    sc.flat_dtype = fg::DType::UInt8;
    sc.align_elems = 8;
    sc.params = TileParams{4096, 64};
    sc.transpose_path = CopyPath::New;
    // transposed(64, 40) and channels_last(2, 40, 3, 3) as bytes: one more dimension of w.
    sc.tensors = {{fg::DType::UInt8, {64, 40, w}, {w, 64 * w, 1}, 0},
                  {fg::DType::UInt8, {2, 40, 9, w}, {360 * w, w, 40 * w, 1}, w}};
    const fg_emulation::AccessCounts c = check_scenario(sc, seed++);
    EXPECT_GT(c.shared_stores, 0);
    EXPECT_EQ(c.loads[1], 0) << "a byte load on the word path";
  }
}

// Random transposed and channels_last shapes, dtype pairs, offsets and tile budgets (fixed
// seed), transpose=new with either strided path: bit for bit, every byte once, the whole
// rows of every piece through the tile.
TEST(EmulatedKernels, SharedTransposeRandomShapes) {
  const fg::DType kinds[] = {fg::DType::Float32, fg::DType::BFloat16, fg::DType::Float16,
                             fg::DType::Float64, fg::DType::UInt8};
  std::mt19937_64 rng(9400);
  auto pick = [&](std::int64_t lo, std::int64_t hi) {
    return lo + static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(hi - lo + 1));
  };
  std::int64_t through_tile = 0;
  for (int round = 0; round < 16; ++round) {
    Scenario sc;
    const fg::DType tensor = kinds[rng() % 5];
    const bool cast = tensor != fg::DType::UInt8 && rng() % 2 == 0;
    sc.flat_dtype = cast ? kinds[rng() % 4] : tensor;
    sc.flat_shift = pick(0, 3);
    sc.align_elems = pick(0, 1) ? 16 : 1;
    sc.streaming = rng() % 2 == 0;
    sc.strided_path = rng() % 2 == 0 ? CopyPath::Old : CopyPath::New;
    sc.transpose_path = CopyPath::New;
    sc.params = TileParams{pick(200, 40000), pick(0, 256)};
    const int count = static_cast<int>(pick(1, 5));
    for (int i = 0; i < count; ++i) {
      if (rng() % 2 == 0) {
        sc.tensors.push_back(transposed(tensor, pick(2, 120), pick(1, 90), pick(0, 5)));
      } else {
        sc.tensors.push_back(
            channels_last(tensor, pick(1, 3), pick(2, 70), pick(1, 5), pick(1, 5), pick(0, 5)));
      }
    }
    SCOPED_TRACE("round " + std::to_string(round) + " " + fg::dtype_name(tensor) + " -> " +
                 fg::dtype_name(sc.flat_dtype) + " tile " + std::to_string(sc.params.tile_bytes));
    std::mt19937_64 built_rng(9500 + static_cast<std::uint64_t>(round));
    const Built built = build_scenario(sc, built_rng);
    const fg::detail::HostTable table =
        fg::detail::build_host_table(built.copies, built.flat_numel, sc.flat_dtype, sc.params);
    const fg_emulation::AccessCounts c =
        check_scenario(sc, 9500 + static_cast<std::uint64_t>(round));
    EXPECT_EQ(c.shared_stores, expected_tile_elements(table, built.copies));
    through_tile += c.shared_stores;
  }
  EXPECT_GT(through_tile, 0);
}

// ---- hardware float32 -> bfloat16 / float16 conversions (NOTE: [hardware conversions]) -------

// The instructions' model, the NaN rule and the pack order give the bits of src/cast.h (the
// CPU executor's routines) for every special value and a million random bit patterns, and
// LibTorch's CPU .to() agrees on the specials; without the NaN rule NaNs would differ.
TEST(HardwareConversions, SameBitsAsTheCpuPath) {
  std::vector<std::uint32_t> all = fgtest::float32_conversion_specials();
  std::mt19937_64 rng(31);
  for (int i = 0; i < (1 << 20); ++i) all.push_back(static_cast<std::uint32_t>(rng()));
  fg_emulation::counts() = {};
  int nans = 0;
  for (std::size_t i = 0; i + 1 < all.size(); ++i) {
    float f, g;
    std::memcpy(&f, &all[i], sizeof(f));
    std::memcpy(&g, &all[i + 1], sizeof(g));
    const std::uint16_t want_b = fg::float_to_bfloat16_bits(f);
    const std::uint16_t want_h = fg::float_to_half_bits(f);
    ASSERT_EQ(fg::detail::hardware_convert<fg::BFloat16>(f).bits, want_b) << std::hex << all[i];
    ASSERT_EQ(fg::detail::hardware_convert<fg::Half>(f).bits, want_h) << std::hex << all[i];
    const fg::detail::Pack<float, 4> in{{f, g, g, f}};
    const auto b = fg::detail::hardware_convert_pack<fg::BFloat16>(in);
    const auto h = fg::detail::hardware_convert_pack<fg::Half>(in);
    const std::uint16_t want_bg = fg::float_to_bfloat16_bits(g);
    const std::uint16_t want_hg = fg::float_to_half_bits(g);
    ASSERT_EQ(b.v[0].bits, want_b) << std::hex << all[i];
    ASSERT_EQ(b.v[1].bits, want_bg) << std::hex << all[i + 1];
    ASSERT_EQ(b.v[2].bits, want_bg) << std::hex << all[i + 1];
    ASSERT_EQ(b.v[3].bits, want_b) << std::hex << all[i];
    ASSERT_EQ(h.v[0].bits, want_h) << std::hex << all[i];
    ASSERT_EQ(h.v[1].bits, want_hg) << std::hex << all[i + 1];
    ASSERT_EQ(h.v[2].bits, want_hg) << std::hex << all[i + 1];
    ASSERT_EQ(h.v[3].bits, want_h) << std::hex << all[i];
    if (std::isnan(f)) {
      ++nans;
      // The instruction alone gives the canonical NaN: the rule is what makes the bits equal.
      ASSERT_NE(fg_emulation::model_bf16(f), want_b);
      ASSERT_NE(fg_emulation::model_f16(f), want_h);
    } else {
      // Away from NaNs the model (double arithmetic) and src/cast.h (bit manipulation) agree.
      ASSERT_EQ(fg_emulation::model_bf16(f), want_b) << std::hex << all[i];
      ASSERT_EQ(fg_emulation::model_f16(f), want_h) << std::hex << all[i];
    }
  }
  EXPECT_GT(nans, 12);  // the specials and a few random ones
  const auto n = static_cast<std::int64_t>(all.size() - 1);
  EXPECT_EQ(fg_emulation::counts().cvt_singles, 2 * n);
  EXPECT_EQ(fg_emulation::counts().cvt_pairs, 4 * n);

  // LibTorch's CPU .to() of the specials, element by element through the kernels' functions.
  const std::vector<std::uint32_t> specials = fgtest::float32_conversion_specials();
  const auto n_specials = static_cast<std::int64_t>(specials.size());
  for (const fg::DType to : {fg::DType::BFloat16, fg::DType::Float16}) {
    SCOPED_TRACE(fg::dtype_name(to));
    const std::vector<char> torch =
        fgtest::torch_cast(specials.data(), n_specials, fg::DType::Float32, to);
    for (std::int64_t i = 0; i < n_specials; ++i) {
      float f;
      std::memcpy(&f, &specials[static_cast<std::size_t>(i)], sizeof(f));
      const std::uint16_t got = to == fg::DType::BFloat16
                                    ? fg::detail::hardware_convert<fg::BFloat16>(f).bits
                                    : fg::detail::hardware_convert<fg::Half>(f).bits;
      std::uint16_t want;
      std::memcpy(&want, torch.data() + 2 * i, sizeof(want));
      EXPECT_EQ(got, want) << std::hex << "float32 0x" << specials[static_cast<std::size_t>(i)];
    }
  }
}

// The emulated kernels with convert=new and convert=old over the special values and random bit
// patterns: gathers of float32 tensors (aligned, misaligned, strided) into bfloat16 and float16
// flats and scatters of a float32 flat into bfloat16 and float16 tensors give LibTorch's CPU
// .to() bits (check_scenario, poisoned outputs); convert=new runs the instructions, in pairs
// where a pack allows, and convert=old none.
TEST(EmulatedKernels, HardwareConversionsSpecialValues) {
  const std::vector<std::uint32_t> specials = fgtest::float32_conversion_specials();
  std::uint64_t seed = 1900;
  for (const fg::DType narrow : {fg::DType::BFloat16, fg::DType::Float16}) {
    for (const CopyPath convert : {CopyPath::Old, CopyPath::New}) {
      for (std::int64_t shift : {0, 1}) {
        SCOPED_TRACE(std::string(fg::dtype_name(narrow)) + " convert=" +
                     fg::detail::to_string(convert) + " shift " + std::to_string(shift));
        Scenario gather;  // float32 tensors -> narrow flat
        gather.tensors = sample_specs(fg::DType::Float32, true);
        gather.tensors.push_back({fg::DType::Float32, {4096}, {}, 0});
        gather.flat_dtype = narrow;
        gather.flat_shift = shift;
        gather.align_elems = 8;
        gather.params = seed % 2 ? TileParams{32 * 1024, 1024} : TileParams{256, 16};
        gather.convert_path = convert;
        gather.float32_bits = &specials;
        const fg_emulation::AccessCounts g = check_scenario(gather, seed++);
        Scenario scatter = gather;  // float32 flat -> narrow tensors
        scatter.tensors = sample_specs(narrow, true);
        scatter.tensors.push_back({narrow, {4096}, {}, 0});
        scatter.flat_dtype = fg::DType::Float32;
        fg_emulation::AccessCounts s;
        check_scenario(scatter, seed++, &s);
        if (convert == CopyPath::New) {
          EXPECT_GT(g.cvt_pairs, 0);
          EXPECT_GT(g.cvt_singles, 0);  // heads, tails, the strided tensors
          EXPECT_GT(s.cvt_pairs, 0);
          EXPECT_GT(s.cvt_singles, 0);
        } else {
          EXPECT_EQ(g.cvt_pairs + g.cvt_singles + s.cvt_pairs + s.cvt_singles, 0);
        }
      }
    }
  }
  // An aligned float32 -> bfloat16 gather of whole packs: two elements per instruction, none
  // alone; the old path on the same copy uses none.
  for (const CopyPath convert : {CopyPath::Old, CopyPath::New}) {
    Scenario sc;
    sc.tensors = {{fg::DType::Float32, {4096}, {}, 0}};
    sc.flat_dtype = fg::DType::BFloat16;
    sc.convert_path = convert;
    sc.float32_bits = &specials;
    const fg_emulation::AccessCounts c = check_scenario(sc, 1950);
    EXPECT_EQ(c.cvt_pairs, convert == CopyPath::New ? 4096 / 2 : 0);
    EXPECT_EQ(c.cvt_singles, 0);
    EXPECT_EQ(c.loads[16], 4096 / 4);
    EXPECT_EQ(c.stores[8], 4096 / 4);
  }
}
