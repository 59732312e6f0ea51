#pragma once
// Every tuning default of the CUDA executor, written once (STYLE.md "One home per fact"): the
// compile-time constants of the kernels (CopyPolicy, the launch bounds) and the run-time knobs
// (Tuning), chosen per architecture in tuning_for and printable with to_string so that
// Plan::describe logs the tuning a plan runs with. Plain C++ (no CUDA header): the host code,
// the kernels and the CPU tests (tests/test_tiles.cpp) include it.
//
// NOTE: [tuning overrides]
// FLATGATHER_CUDA_TUNING="key=value,..." (keys: block, blocks_per_sm, tile, copy_cost,
// streaming, min_tile, strided, misaligned, tile_scaling, unroll, transpose, convert,
// descriptors) overrides fields of the tuning of every CUDA plan built after it is set. It is
// for experiments, for the GPU tests, which force each cache-hint flavour (streaming=1: every
// plan streams; streaming=-1: none does), each copy path and tiny tile budgets (so that cuts
// fall inside copies with casts, strides and misaligned tensors), and for the A/B methods of
// flatgather-bench. Seven A/B switches,
// each a CopyPath field of Tuning, choose between a path and the one it replaces in the same
// binary, so that one GPU run measures both (docs/perf.md, "Kernel path decisions"):
// strided=old|new (NOTE: [strided copies] in kernels/copy.cuh), misaligned=old|new (NOTE:
// [misaligned copies]), tile_scaling=old|new (NOTE: [tile scaling] in kernels/tiles.cuh),
// unroll=old|new (NOTE: [bytes in flight]), transpose=old|new (NOTE: [shared transposes]) and
// convert=old|new (NOTE: [hardware conversions]) and descriptors=old|new (NOTE: [descriptor
// fetch] in kernels/tile_walk.cuh). Unknown keys and bad values throw flatgather::Error at
// build.

#include <cstdint>
#include <sstream>
#include <string>

#include "flatgather/config.h"

namespace flatgather {
namespace detail {

/// Compile-time constants of the copy routine (kernels/copy.cuh).
struct CopyPolicy {
  static constexpr int kVectorBytes = 16;  ///< widest access: one 16-byte load or store
  static constexpr int kWarpThreads = 32;
  /// Packs in flight per lane: 4 for packs of up to 4 elements, fewer for wider packs whose
  /// elements are loaded one by one (keeps registers under control, see docs/perf.md).
  FG_HOST_DEVICE static constexpr int unroll(int pack) {
    return pack <= 4 ? 4 : (pack <= 8 ? 2 : 1);
  }
  /// Elements in flight per lane on the new strided path (NOTE: [strided copies]).
  static constexpr int kStridedUnroll = 4;
  /// Packs in flight per lane on the new misaligned path (NOTE: [misaligned copies]): half of
  /// unroll(pack), as each pack loads two 16-byte words, so a lane has as many loads in
  /// flight as on the aligned path (and the kernels keep their register count). Never the
  /// byte-sized unroll (NOTE: [bytes in flight]): two words a pack would double its registers.
  FG_HOST_DEVICE static constexpr int realign_unroll(int pack) {
    return unroll(pack) > 1 ? unroll(pack) / 2 : 1;
  }
  /// Bytes in flight per lane that the byte-sized unroll aims for: an H200 needs about 16 KB
  /// of reads in flight per SM (Little's law), and 64 bytes per lane is what the float32 path
  /// has (4 packs of 16 bytes).
  static constexpr int kLaneBytesInFlight = 64;
  /// Packs in flight per lane when both sides move whole 16-byte packs (Tuning::unroll_path):
  /// sized in bytes, so 1- and 2-byte types (16 and 8 elements a pack) keep as many bytes in
  /// flight as float32. Only for vector accesses on both sides: a pack loaded element by
  /// element would hold 64 scalars in registers.
  FG_HOST_DEVICE static constexpr int unroll_bytes(int pack_bytes) {
    return pack_bytes >= kLaneBytesInFlight ? 1 : kLaneBytesInFlight / pack_bytes;
  }
};

/// Tiles per resident warp that a scaled tile budget aims for (NOTE: [tile scaling]): enough
/// that warps finishing early find more work, few enough that a tile's fixed cost stays small.
constexpr int kTilesPerWarp = 4;

/// Largest block the kernels are compiled for (__launch_bounds__).
constexpr int kMaxBlockThreads = 256;
/// Blocks per SM the kernels are compiled for (__launch_bounds__): caps registers at 128 per
/// thread. Without it ptxas aims for 64 to 80 registers and spills (see docs/perf.md).
constexpr int kMinBlocksPerSm = 2;

/// Which of two implementations of a copy path a plan runs: the first one (Old) or its
/// replacement (New), kept side by side until a GPU benchmark decides (docs/perf.md).
enum class CopyPath : std::uint8_t { Old = 0, New = 1 };

/// "old" or "new".
inline const char* to_string(CopyPath p) {
  return p == CopyPath::New ? "new" : "old";
}

/// How tiles are cut (see NOTE: [tiles] in kernels/tiles.cuh).
struct TileParams {
  std::int64_t tile_bytes = 0;       ///< cost budget of one tile, bytes moved (read + written)
  std::int64_t copy_cost_bytes = 0;  ///< cost of starting a copy piece (descriptor load, head
                                     ///< and tail), in bytes moved
  /// Smallest budget a scaled plan gets (NOTE: [tile scaling]): below it a tile's own cost
  /// (its load, the descriptor loads, a partly idle unroll batch) outweighs its work.
  std::int64_t min_tile_bytes = 0;
};

/// Run-time tuning of one CUDA plan, chosen from the compute capability (tuning_for).
struct Tuning {
  /// Threads per block; a multiple of 32, at most kMaxBlockThreads. Each warp works on its
  /// own tiles, so the block size only matters for occupancy.
  int block_threads = 0;
  /// Resident blocks per SM the grid is sized for, at most: grid = SMs x min(this, the
  /// occupancy calculator's answer), and never more warps than tiles.
  int max_blocks_per_sm = 0;
  /// Tile budget and per-piece cost (NOTE: [tiles]).
  TileParams tiles;
  /// Plans that move at least this many bytes per call use evict-first loads and stores
  /// (see NOTE: [cache hints] in kernels/copy.cuh); 0 means the device's L2 size, a negative
  /// value never streams.
  std::int64_t streaming_min_bytes = 0;
  /// The A/B switches (NOTE: [tuning overrides]): Old is the path the New one replaces.
  /// Strided tensors: per-element 64-bit divisions (Old) or the register-resident descriptor
  /// with fast division and several elements in flight (New); NOTE: [strided copies].
  CopyPath strided_path = CopyPath::Old;
  /// Contiguous sides not congruent modulo 16 bytes: element by element on the source (Old)
  /// or aligned 16-byte loads realigned in registers (New); NOTE: [misaligned copies].
  CopyPath misaligned_path = CopyPath::Old;
  /// The tile budget: tiles.tile_bytes for every plan (Old) or scaled with the plan (New);
  /// NOTE: [tile scaling].
  CopyPath tile_scaling_path = CopyPath::New;
  /// The unroll of same-type 1- and 2-byte copies: counted in packs (Old, CopyPolicy::unroll)
  /// or in bytes (New, CopyPolicy::unroll_bytes); NOTE: [bytes in flight].
  CopyPath unroll_path = CopyPath::New;
  /// Transposed views and channels_last weights: the strided path (Old) or blocks through a
  /// warp's shared-memory tile, both sides coalesced (New); NOTE: [shared transposes].
  CopyPath transpose_path = CopyPath::Old;
  /// float32 -> bfloat16/float16 in copies: src/cast.h's software routines (Old) or the
  /// conversion instructions with an explicit NaN rule, the same bits (New); NOTE: [hardware
  /// conversions].
  CopyPath convert_path = CopyPath::Old;
  /// The tile walk: each copy's descriptor read by every lane when the walk reaches it (Old)
  /// or up to 32 descriptors fetched across the lanes at once and staged in shared memory
  /// (New); NOTE: [descriptor fetch] in kernels/tile_walk.cuh.
  CopyPath descriptor_path = CopyPath::Old;
};

/// Tuning for a device of compute capability major.minor: the one place the numbers live.
constexpr Tuning tuning_for(int major, int /*minor*/) {
  Tuning t;
  t.block_threads = 256;
  t.max_blocks_per_sm = 8;  // 2048 threads: a full SM on sm_80 and sm_90
  // Hopper and later move about 1.6x the bytes per SM of Ampere: bigger tiles keep each warp
  // busy as long, with the same number of tiles per warp.
  t.tiles.tile_bytes = major >= 9 ? 32 * 1024 : 16 * 1024;
  t.tiles.copy_cost_bytes = 1024;
  // One full unroll batch of the float32 path per lane: 32 lanes x 4 packs x 16 bytes read,
  // as many written.
  t.tiles.min_tile_bytes = 2 * CopyPolicy::kWarpThreads * CopyPolicy::kLaneBytesInFlight;
  t.streaming_min_bytes = 0;  // the device's L2 size
  // The A/B switches, set from the first H200 run of the benchmark (2026-11-30; docs/perf.md,
  // "Kernel path decisions"): strided 1.12-1.44x, transposes 1.09-1.21x, tile scaling up to
  // 1.44x on plan-4mb, the byte unroll 1.15-1.34x; the conversions at par (kept for their
  // fewer instructions); the realignment (0.89-0.96x on misaligned, many-tiny gather) and the
  // descriptor fetch (0.76-0.95x where it moved) lost.
  t.strided_path = CopyPath::New;
  t.misaligned_path = CopyPath::Old;
  t.tile_scaling_path = CopyPath::New;
  t.unroll_path = CopyPath::New;
  t.transpose_path = CopyPath::New;
  t.convert_path = CopyPath::New;
  t.descriptor_path = CopyPath::Old;
  return t;
}

/// "block=256 blocks/SM<=8 tile=32768B copy_cost=1024B streaming>=52428800B strided=new
/// misaligned=old tile_scaling=new(min 4096B) unroll=new transpose=new convert=new
/// descriptors=old".
inline std::string to_string(const Tuning& t) {
  std::ostringstream os;
  os << "block=" << t.block_threads << " blocks/SM<=" << t.max_blocks_per_sm
     << " tile=" << t.tiles.tile_bytes << "B copy_cost=" << t.tiles.copy_cost_bytes << "B ";
  if (t.streaming_min_bytes < 0) {
    os << "streaming=never";
  } else {
    os << "streaming>=" << t.streaming_min_bytes << "B";
  }
  os << " strided=" << to_string(t.strided_path) << " misaligned=" << to_string(t.misaligned_path)
     << " tile_scaling=" << to_string(t.tile_scaling_path);
  if (t.tile_scaling_path == CopyPath::New) os << "(min " << t.tiles.min_tile_bytes << "B)";
  os << " unroll=" << to_string(t.unroll_path) << " transpose=" << to_string(t.transpose_path)
     << " convert=" << to_string(t.convert_path) << " descriptors=" << to_string(t.descriptor_path);
  return os.str();
}

/// Applies `spec` (NOTE: [tuning overrides]) to `t`; throws flatgather::Error on a bad spec.
/// Defined in kernels/tuning.cpp.
void apply_tuning_overrides(Tuning& t, const std::string& spec);

}  // namespace detail
}  // namespace flatgather
