#pragma once
// The one copy routine of the CUDA executor: a warp moves a piece of one copy (elements
// [first, first + count) of a tensor) between the tensor and the flat buffer, copying,
// casting, adding or zero-filling. gather, scatter and scatter_add all call copy_piece. How a
// piece splits into scalar head, packs and tail is NOTE: [vector split] (kernels/vector_split.h).
//
// NOTE: [strided copies]
// A piece whose tensor is strided (channels_last, transposed, sliced) is copied element by
// element, lane l taking elements l, l + 32, ...: the contiguous side stays coalesced; the
// strided side is as coalesced as its innermost stride allows. Two implementations, chosen per
// plan by Tuning::strided_path (FLATGATHER_CUDA_TUNING strided=old|new) until a GPU benchmark
// decides (docs/perf.md):
// - Old: each element computes its address with element_offset (the CPU executor's
//   function), reading the sizes and strides from the table and dividing in 64 bits per
//   dimension; one element in flight per lane.
// - New (copy_strided): the copy's StridedIndexer (kernels/strided_index.h) is loaded once
//   per piece into registers; a lane finds its first element with 32-bit fast divisions
//   (NOTE: [fast division]) and then steps by 32 elements without any division (NOTE:
//   [strided cursor]); kStridedUnroll elements in flight per lane (all loads, then all
//   stores). Copies the indexer cannot hold (more than 4 dimensions, about 2^32 elements or
//   more, a size above 2^31) take the old path.
// Transposed views and channels_last weights can instead go through a warp's shared-memory
// tile, both sides coalesced (NOTE: [shared transposes]). A byte plan's strided tensor moves
// in words of its element size, not bytes (NOTE: [byte plan words] in src/copy_desc.h), on
// every path.
//
// NOTE: [shared transposes]
// A transposed copy (is_transposed_2d: the next-to-last dimension has stride 1, the last
// does not; a transposed matrix, a channels_last weight [N, C, H, W] coalesced to [N, C, HW]
// with strides [HWC, 1, C]) is a stack of matrices whose logical rows (the flat buffer's
// order) are strided in memory and whose columns are contiguous (TransposeDesc in
// kernels/transpose.h). Element by element, lane l taking logical elements l, l + 32, ...,
// the tensor side touches 32 addresses `col_stride` apart per access. With
// Tuning::transpose_path = New (A/B switch transpose=old|new, NOTE: [tuning overrides]) a
// piece that holds at least kTransposeMinRows whole rows moves them in blocks of up to 32
// rows x 32 columns through the warp's own tile of 32 x 33 elements of shared memory
// (copy_transposed): the lanes read a block from the source along its contiguous direction
// (a gather reads 32 rows of one column of the tensor per access, a scatter 32 columns of
// one row of the flat buffer) into the tile, __syncwarp, then write it to the destination
// along the destination's contiguous direction, reading the tile across; one more
// __syncwarp before the next block reuses the tile. Blocks never cross a batch; a block is
// narrower or shorter at the edges of a matrix (a 3 x 3 kernel's channels_last rows are 9
// columns long). The parts of the piece outside its whole rows (a cut of the tile walk falls
// anywhere in a row) move element by element with the same descriptor; a piece with fewer
// whole rows takes the strided path the plan chose (strided=old|new). The pitch of 33
// elements puts the tile's row and column accesses in distinct banks for 4-byte elements
// (2-way conflicts remain for 8-byte ones). The tile holds the source's type (casts convert
// on the write, as elsewhere), so every op and dtype pair takes the path: same-dtype copies
// (byte plans' word views included), casts and scatter_add. Copies it does not serve
// (make_transpose): more than one batch dimension, 2^31 elements or more, negative strides.
// Shared memory is dynamic, sized per plan at launch (KernelArgs::transpose_tile_bytes per
// warp: 32 x 33 x the widest element of a copy it serves, 4,224 bytes for float32, 34 KB a
// block of 8 warps); plans without such a copy, and every plan with transpose=old, launch
// with none, so their occupancy is unchanged. 3 blocks of 256 threads per SM (the register
// limit on sm_90) need 101 KB for float32 tiles and 203 KB for 8-byte ones: within an H200's
// 228 KB; an A100's 164 KB hold 2 blocks of 8-byte tiles. Only pieces of many whole rows take
// the path: a float32 piece holds at most 3,968 elements at the default 32 KiB budget (fewer
// when the budget is scaled, NOTE: [tile scaling]), so a transposed matrix whose rows are
// longer than about 440 elements (the strided suite's d_model 512 views) keeps the strided
// path; channels_last weights (rows of kh x kw elements) take it. Cutting transposed copies
// on 32-row boundaries would be a change to build_tiles, not made here.
//
// NOTE: [misaligned copies]
// Contiguous sides whose addresses are not congruent modulo 16 bytes (a layout without
// padding, a view at an odd offset) cannot both move in 16-byte packs. The destination leads
// (NOTE: [vector split]). Tuning::misaligned_path (misaligned=old|new) picks what the source
// does:
// - Old: the source is read element by element.
// - New (same element type on both sides, as in every copy without a cast): the source is
//   read in aligned 16-byte words, two per pack (the words holding its first and last byte),
//   and the pack is cut out of them in registers with funnel shifts (realign), as CUB's
//   batched memcpy does. The words may hold bytes outside the source range; those are never
//   written anywhere, and a 16-byte aligned word never crosses an allocation's end. Copies
//   with a cast keep the old path. Its unroll is CopyPolicy::realign_unroll whatever
//   Tuning::unroll_path says: the byte-sized unroll (NOTE: [bytes in flight]) would hold two
//   words per pack for 4 packs, too many registers for the kernels' budget.
//
// NOTE: [bytes in flight]
// The unroll of the pack loop (packs in flight per lane, loads first, then stores) was
// counted in packs (CopyPolicy::unroll: 4 packs of up to 4 elements, 2 of 8, 1 of 16), so a
// uint8 or bool copy kept 16 bytes in flight per lane and a bfloat16 or float16 one 32,
// against 64 for float32: about 12 and 24 KB per SM where an H200 needs about 16 KB to reach
// its copy rate. With Tuning::unroll_path = New (A/B switch unroll=old|new, NOTE: [tuning
// overrides]) a same-type copy or zero fill whose two sides both move whole 16-byte packs is
// unrolled by CopyPolicy::unroll_bytes instead: 64 bytes per lane for every element size, its
// packs moved as opaque bits (never unpacked into elements), so it needs the registers of the
// float32 path (4 packs of 16 bytes). Left out, because they would raise the register count of
// the whole kernel (and so cut every path's occupancy): pieces that load or store a side
// element by element (4 packs of 16 scalars is 64 values in registers), the realigned packs
// of the new misaligned path (NOTE: [misaligned copies]), casts between
// bfloat16 and float16, and scatter_add of 16-bit types (each pack unpacked into floats; with
// 4 packs in flight scatter_add rose from 98 to 125 registers and gather from 72 to 90 on
// sm_90). The choice is a uniform branch per piece inside the one kernel, not a second kernel:
// only the instantiations for 1- and 2-byte types grow.
//
// Preconditions: addresses are aligned to their element size (checked by the executor) and
// all indices are 64-bit.

#include <cstdint>
#include <type_traits>

#include "flatgather/config.h"
#include "flatgather/dtype.h"
#include "cast.h"
#include "copy_desc.h"
#include "device_table.h"
#include "op.h"
#include "strided_index.h"
#include "tiles.cuh"
#include "transpose.h"
#include "tuning.h"
#include "vector_split.h"

// `#pragma unroll` for nvcc; nothing for the host compiler (tests/device_emulation.h).
#if defined(__CUDACC__)
#define FG_UNROLL _Pragma("unroll")
#else
#define FG_UNROLL
#endif

namespace flatgather {
namespace detail {

/// What a copy does with a source element `s` and the destination's old value `d`.
struct CopyOp {  // gather, scatter: d = convert(s) (bits unchanged for equal types)
  static constexpr bool kReadsSrc = true;
  static constexpr bool kReadsDst = false;
  template <class S, class D>
  FG_HOST_DEVICE FG_FORCE_INLINE D apply(S s, D) const {
    if constexpr (std::is_same_v<S, D>) {
      return s;
    } else {
      return convert<D>(s);
    }
  }
};
struct AddOp {  // scatter_add: d = d + alpha * s (see add_scaled)
  static constexpr bool kReadsSrc = true;
  static constexpr bool kReadsDst = true;
  double alpha = 1.0;
  template <class S, class D>
  FG_HOST_DEVICE FG_FORCE_INLINE D apply(S s, D d) const {
    return add_scaled(d, s, alpha);
  }
};
struct ZeroOp {  // gather of padding and zero-filled tensors: d = 0
  static constexpr bool kReadsSrc = false;
  static constexpr bool kReadsDst = false;
  template <class S, class D>
  FG_HOST_DEVICE FG_FORCE_INLINE D apply(S, D) const {
    return D{};
  }
};

/// K elements of T, moved as one access of K * sizeof(T) bytes.
template <class T, int K>
struct Pack {
  T v[K];
};

#if defined(__CUDACC__) || defined(FLATGATHER_EMULATE_DEVICE)
// FLATGATHER_EMULATE_DEVICE: tests/device_emulation.h supplies host versions of the load and
// store intrinsics so that tests/test_tiles.cpp runs this code, lane by lane, on the CPU.

// NOTE: [cache hints]
// Two load/store flavours, chosen per plan (Tuning::streaming_min_bytes):
// - Default (plans moving less than about the L2 size): sources are read with ld.global.nc
//   (__ldg; safe because no source overlaps the destination during a call) and stores are
//   plain, so a flat buffer just gathered can still be in L2 for the kernel that consumes it
//   (an all-reduce, an optimizer step).
// - Streaming (larger plans): loads and stores use the evict-first ".cs" modifiers
//   (__ldcs/__stcs). The data cannot stay in L2 anyway, and evict-first keeps the copy from
//   flushing what other kernels (and our own tile and copy tables) keep there.
// scatter_add reads its destination with ld.global (or .cs), never .nc: it also writes it.

/// The built-in type of an N-byte access.
template <int N>
struct VecOf;
template <>
struct VecOf<1> {
  using type = unsigned char;
};
template <>
struct VecOf<2> {
  using type = unsigned short;
};
template <>
struct VecOf<4> {
  using type = unsigned int;
};
template <>
struct VecOf<8> {
  using type = unsigned long long;
};
template <>
struct VecOf<16> {
  using type = uint4;
};

#if !defined(FLATGATHER_EMULATE_DEVICE)
/// Plain (ld.global / st.global) accesses; tests/device_emulation.h counts its own.
template <class V>
FG_DEVICE FG_FORCE_INLINE V load_plain(const V* p) {
  return *p;
}
template <class V>
FG_DEVICE FG_FORCE_INLINE void store_plain(V* p, const V& v) {
  *p = v;
}
#endif

/// Loads a T that no thread writes during the kernel.
template <bool Streaming, class T>
FG_DEVICE FG_FORCE_INLINE T load_readonly(const char* p) {
  using V = typename VecOf<sizeof(T)>::type;
  const V* q = reinterpret_cast<const V*>(p);
  if constexpr (Streaming) {
    return bit_cast<T>(__ldcs(q));
  } else {
    return bit_cast<T>(__ldg(q));
  }
}

/// Loads a T that this kernel also writes (scatter_add's destination).
template <bool Streaming, class T>
FG_DEVICE FG_FORCE_INLINE T load_mutable(const char* p) {
  using V = typename VecOf<sizeof(T)>::type;
  const V* q = reinterpret_cast<const V*>(p);
  if constexpr (Streaming) {
    return bit_cast<T>(__ldcs(q));
  } else {
    return bit_cast<T>(load_plain(q));
  }
}

template <bool Streaming, class T>
FG_DEVICE FG_FORCE_INLINE void store(char* p, const T& value) {
  using V = typename VecOf<sizeof(T)>::type;
  V* q = reinterpret_cast<V*>(p);
  if constexpr (Streaming) {
    __stcs(q, bit_cast<V>(value));
  } else {
    store_plain(q, bit_cast<V>(value));
  }
}

/// One side of a copy: the tensor (contiguous or strided) or the flat buffer.
template <class T>
struct Side {
  char* base = nullptr;               ///< logical element 0 of the copy
  const CopyDesc* strided = nullptr;  ///< sizes and strides; null when contiguous
  /// Set (with `strided`) when the piece takes the new strided path (NOTE: [strided copies]).
  const StridedIndexer* indexer = nullptr;
  /// Set (with `strided`) when the copy may take the shared transpose (NOTE: [shared
  /// transposes]).
  const TransposeDesc* transpose = nullptr;

  FG_DEVICE FG_FORCE_INLINE char* at(std::int64_t offset) const {
    return base + offset * static_cast<std::int64_t>(sizeof(T));
  }
  FG_DEVICE FG_FORCE_INLINE char* element(std::int64_t i) const {
    return at(strided ? element_offset(*strided, i) : i);
  }
};

/// The plan's choice between old and new copy paths that copy_piece takes as an argument
/// (Tuning's A/B switches, NOTE: [tuning overrides]), read from KernelArgs once per piece.
/// The strided choice travels with the strided side (Side::indexer).
struct PathChoice {
  bool realign = false;       ///< misaligned=new (NOTE: [misaligned copies])
  bool bytes_unroll = false;  ///< unroll=new (NOTE: [bytes in flight])
  /// Bytes of the warp's shared tile (NOTE: [shared transposes]); 0 when the plan launched
  /// without one (transpose=old, or no copy takes it).
  int tile_bytes = 0;
};

/// Loads elements [i, i + K) of a contiguous side one at a time (not pack-aligned).
template <bool Streaming, bool ReadOnly, class T, int K>
FG_DEVICE FG_FORCE_INLINE Pack<T, K> load_pack(const Side<T>& side, std::int64_t i, bool vector) {
  if (vector) {
    return ReadOnly ? load_readonly<Streaming, Pack<T, K>>(side.at(i))
                    : load_mutable<Streaming, Pack<T, K>>(side.at(i));
  }
  Pack<T, K> out;
  FG_UNROLL
  for (int j = 0; j < K; ++j) {
    out.v[j] = ReadOnly ? load_readonly<Streaming, T>(side.at(i + j))
                        : load_mutable<Streaming, T>(side.at(i + j));
  }
  return out;
}

template <bool Streaming, class T, int K>
FG_DEVICE FG_FORCE_INLINE void store_pack(const Side<T>& side, std::int64_t i, const Pack<T, K>& p,
                                          bool vector) {
  if (vector) {
    store<Streaming>(side.at(i), p);
    return;
  }
  FG_UNROLL
  for (int j = 0; j < K; ++j) store<Streaming>(side.at(i + j), p.v[j]);
}

/// The new strided path (NOTE: [strided copies]): elements [first, first + count) of a copy
/// whose tensor side (`src` or `dst`, the one with an indexer) is strided; lane l takes
/// elements l, l + 32, ..., kStridedUnroll of them in flight.
template <bool Streaming, class S, class D, class Op>
FG_DEVICE FG_FORCE_INLINE void copy_strided(const Side<S>& src, const Side<D>& dst,
                                            std::int64_t first, std::int64_t count, const Op& op,
                                            int lane) {
  constexpr int U = CopyPolicy::kStridedUnroll;
  constexpr int L = CopyPolicy::kWarpThreads;
  const bool src_strided = src.indexer != nullptr;
  const StridedIndexer ix = src_strided ? *src.indexer : *dst.indexer;  // into registers
  if (lane >= count) return;
  static_assert(kIndexerStep == L, "the cursor steps by one warp (NOTE: [strided cursor])");
  // first + count <= numel <= kIndexerMaxNumel: the first index fits in 32 bits.
  IndexCursor cursor = ix.at(static_cast<std::uint32_t>(first + lane));
  // The cursor advances where the tensor is accessed: in the load loop when the tensor is the
  // source (or is read, scatter_add), else in the store loop, so that no offsets stay live
  // between the loops that need not.
  auto tensor_offset = [&]() {
    const std::int64_t offset = cursor.offset;
    ix.advance(cursor);
    return offset;
  };
  for (std::int64_t j0 = lane; j0 < count; j0 += static_cast<std::int64_t>(L) * U) {
    S in[U] = {};
    D old[U] = {};
    std::int64_t dst_offset[U] = {};  // scatter_add: the tensor offsets read, then written
    FG_UNROLL
    for (int u = 0; u < U; ++u) {
      const std::int64_t i = first + j0 + L * u;
      if (i < first + count) {
        if (src_strided) {
          in[u] = load_readonly<Streaming, S>(src.at(tensor_offset()));
          if constexpr (Op::kReadsDst) old[u] = load_mutable<Streaming, D>(dst.at(i));
        } else {
          if constexpr (Op::kReadsSrc) in[u] = load_readonly<Streaming, S>(src.at(i));
          if constexpr (Op::kReadsDst) {
            dst_offset[u] = tensor_offset();
            old[u] = load_mutable<Streaming, D>(dst.at(dst_offset[u]));
          }
        }
      }
    }
    FG_UNROLL
    for (int u = 0; u < U; ++u) {
      const std::int64_t i = first + j0 + L * u;
      if (i < first + count) {
        std::int64_t offset = i;
        if (!src_strided) {
          if constexpr (Op::kReadsDst) {
            offset = dst_offset[u];
          } else {
            offset = tensor_offset();
          }
        }
        store<Streaming>(dst.at(offset), op.template apply<S, D>(in[u], old[u]));
      }
    }
  }
}

#if !defined(FLATGATHER_EMULATE_DEVICE)
/// Accesses to the warp's shared tile; tests/device_emulation.h checks and counts its own.
template <class T>
FG_DEVICE FG_FORCE_INLINE T shared_load(const T* p) {
  return *p;
}
template <class T>
FG_DEVICE FG_FORCE_INLINE void shared_store(T* p, const T& v) {
  *p = v;
}

/// The calling warp's shared tile of `tile_bytes` bytes: the launch gives each warp of the
/// block its own (NOTE: [shared transposes]). tests/device_emulation.h supplies the CPU one.
FG_DEVICE FG_FORCE_INLINE char* warp_tile(int tile_bytes) {
  extern __shared__ uint4 shared_tiles[];
  return reinterpret_cast<char*>(shared_tiles) +
         static_cast<int>(threadIdx.x) / CopyPolicy::kWarpThreads * tile_bytes;
}
#endif

/// The shared transpose (NOTE: [shared transposes]): elements [first, first + count) of a copy
/// whose tensor side (`src` or `dst`, the one with a TransposeDesc) is a stack of matrices,
/// through the warp's `tile` (kTransposeTileElements elements of S). Returns false, having
/// moved nothing, when the piece holds fewer than kTransposeMinRows whole rows. Every lane
/// runs the same block loop (the __syncwarp calls are uniform).
template <bool Streaming, class S, class D, class Op>
FG_DEVICE FG_FORCE_INLINE bool copy_transposed(const Side<S>& src, const Side<D>& dst,
                                               std::int64_t first, std::int64_t count, const Op& op,
                                               int lane, int tile_bytes) {
  constexpr std::uint32_t B = kTransposeBlock;
  constexpr std::uint32_t P = kTransposePitch;
  constexpr std::uint32_t U = CopyPolicy::kStridedUnroll;
  constexpr std::uint32_t L = CopyPolicy::kWarpThreads;
  const bool src_tensor = src.transpose != nullptr;
  const TransposeDesc t = src_tensor ? *src.transpose : *dst.transpose;  // into registers
  const TransposeCut cut = cut_transpose(t, first, count);
  if (cut.row_end - cut.row_begin < kTransposeMinRows) return false;
  S* const tile = reinterpret_cast<S*>(warp_tile(tile_bytes));
  const std::uint32_t n = t.cols.divisor;
  const std::uint32_t me = static_cast<std::uint32_t>(lane);
  // The parts of rows before and after the whole rows, element by element.
  const std::uint32_t head_first = static_cast<std::uint32_t>(first);
  const std::uint32_t tail_first = cut.row_end * n;
  for (std::uint32_t j = me; j < cut.head + cut.tail; j += L) {
    const std::uint32_t i = j < cut.head ? head_first + j : tail_first + (j - cut.head);
    const std::uint32_t q = t.cols.div(i);
    const std::int64_t tensor = t.offset(q, i - q * n);
    char* const d_address = dst.at(src_tensor ? i : tensor);
    S s{};
    if constexpr (Op::kReadsSrc) s = load_readonly<Streaming, S>(src.at(src_tensor ? tensor : i));
    D d{};
    if constexpr (Op::kReadsDst) d = load_mutable<Streaming, D>(d_address);
    store<Streaming>(d_address, op.template apply<S, D>(s, d));
  }
  // Whole rows in blocks of h rows (of one batch) x w columns. Element (rr, cc) of a block is
  // tile[cc * P + rr]; the tensor holds it at `base + rr + cc * col_stride`, the flat side at
  // logical index (q0 + rr) * n + c0 + cc.
  for (std::uint32_t q0 = cut.row_begin; q0 < cut.row_end;) {
    const std::uint32_t batch = t.rows.div(q0);
    const std::uint32_t r0 = q0 - batch * t.rows.divisor;
    std::uint32_t h = cut.row_end - q0 < B ? cut.row_end - q0 : B;
    if (t.rows.divisor - r0 < h) h = t.rows.divisor - r0;
    const std::int64_t base = static_cast<std::int64_t>(batch) * t.batch_stride + r0;
    for (std::uint32_t c0 = 0; c0 < n; c0 += B) {
      const std::uint32_t w = n - c0 < B ? n - c0 : B;
      // Lane me as a block row (tensor side) and as a block column (flat side).
      auto tensor_at = [&](std::uint32_t cc) {
        return base + me + static_cast<std::int64_t>(c0 + cc) * t.col_stride;
      };
      auto flat_at = [&](std::uint32_t rr) {
        return static_cast<std::int64_t>((q0 + rr) * n + c0 + me);
      };
      if (src_tensor) {  // gather: the tensor's rows into the tile, the tile's rows out
        for (std::uint32_t k0 = 0; k0 < w; k0 += U) {
          S in[U] = {};
          FG_UNROLL
          for (std::uint32_t u = 0; u < U; ++u) {
            if (me < h && k0 + u < w)
              in[u] = load_readonly<Streaming, S>(src.at(tensor_at(k0 + u)));
          }
          FG_UNROLL
          for (std::uint32_t u = 0; u < U; ++u) {
            if (me < h && k0 + u < w) shared_store(tile + (k0 + u) * P + me, in[u]);
          }
        }
        __syncwarp();
        for (std::uint32_t k0 = 0; k0 < h; k0 += U) {
          D old[U] = {};
          if constexpr (Op::kReadsDst) {
            FG_UNROLL
            for (std::uint32_t u = 0; u < U; ++u) {
              if (me < w && k0 + u < h)
                old[u] = load_mutable<Streaming, D>(dst.at(flat_at(k0 + u)));
            }
          }
          FG_UNROLL
          for (std::uint32_t u = 0; u < U; ++u) {
            if (me < w && k0 + u < h) {
              store<Streaming>(
                  dst.at(flat_at(k0 + u)),
                  op.template apply<S, D>(shared_load(tile + me * P + k0 + u), old[u]));
            }
          }
        }
      } else {  // scatter, scatter_add: the flat rows into the tile, the tile's columns out
        for (std::uint32_t k0 = 0; k0 < h; k0 += U) {
          S in[U] = {};
          FG_UNROLL
          for (std::uint32_t u = 0; u < U; ++u) {
            if (me < w && k0 + u < h) in[u] = load_readonly<Streaming, S>(src.at(flat_at(k0 + u)));
          }
          FG_UNROLL
          for (std::uint32_t u = 0; u < U; ++u) {
            if (me < w && k0 + u < h) shared_store(tile + me * P + k0 + u, in[u]);
          }
        }
        __syncwarp();
        for (std::uint32_t k0 = 0; k0 < w; k0 += U) {
          D old[U] = {};
          if constexpr (Op::kReadsDst) {
            FG_UNROLL
            for (std::uint32_t u = 0; u < U; ++u) {
              if (me < h && k0 + u < w) {
                old[u] = load_mutable<Streaming, D>(dst.at(tensor_at(k0 + u)));
              }
            }
          }
          FG_UNROLL
          for (std::uint32_t u = 0; u < U; ++u) {
            if (me < h && k0 + u < w) {
              store<Streaming>(
                  dst.at(tensor_at(k0 + u)),
                  op.template apply<S, D>(shared_load(tile + (k0 + u) * P + me), old[u]));
            }
          }
        }
      }
      __syncwarp();  // the tile is read before the next block writes it
    }
    q0 += h;
  }
  return true;
}

/// The 16 bytes that start `shift` bytes (1..15) into `lo`, continuing into `hi`: the
/// realignment of the new misaligned path (NOTE: [misaligned copies]).
FG_DEVICE FG_FORCE_INLINE uint4 realign(const uint4& lo, const uint4& hi, unsigned shift) {
  const unsigned w[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
  const unsigned words = shift / 4;       // whole words to skip: selected, never indexed
  const unsigned bits = (shift % 4) * 8;  // then a funnel shift by the remaining bytes
  unsigned x[5];
  FG_UNROLL
  for (int k = 0; k < 5; ++k) {
    const unsigned a = (words & 1) ? w[k + 1] : w[k];
    const unsigned b = (words & 1) ? w[k + 3] : w[k + 2];
    x[k] = (words & 2) ? b : a;
  }
  uint4 out;
  out.x = __funnelshift_r(x[0], x[1], bits);
  out.y = __funnelshift_r(x[1], x[2], bits);
  out.z = __funnelshift_r(x[2], x[3], bits);
  out.w = __funnelshift_r(x[3], x[4], bits);
  return out;
}

/// The new misaligned path (NOTE: [misaligned copies]): the packs of `split` (destination
/// vector, source not) with the source read in aligned 16-byte words. Same element type.
template <bool Streaming, class T, class Op>
FG_DEVICE FG_FORCE_INLINE void copy_realigned(const Side<T>& src, const Side<T>& dst,
                                              std::int64_t first, const Split& split, const Op& op,
                                              int lane) {
  constexpr int K = pack_elements(sizeof(T), sizeof(T));
  constexpr int U = CopyPolicy::realign_unroll(K);
  constexpr int L = CopyPolicy::kWarpThreads;
  constexpr std::uint64_t kBytes = CopyPolicy::kVectorBytes;
  const std::int64_t body = first + split.head;
  const std::uint64_t src_body = reinterpret_cast<std::uint64_t>(src.at(body));
  const unsigned shift = static_cast<unsigned>(src_body % kBytes);  // 1..15
  const char* const words = reinterpret_cast<const char*>(src_body - shift);
  auto scalar = [&](std::int64_t j) {
    const std::int64_t i = first + j;
    char* const d_address = dst.at(i);
    T d{};
    if constexpr (Op::kReadsDst) d = load_mutable<Streaming, T>(d_address);
    store<Streaming>(d_address, op.template apply<T, T>(load_readonly<Streaming, T>(src.at(i)), d));
  };
  auto packs = [&](std::int64_t p0) {
    uint4 lo[U] = {};
    uint4 hi[U] = {};
    Pack<T, K> old[U] = {};
    FG_UNROLL
    for (int u = 0; u < U; ++u) {
      const std::int64_t p = p0 + static_cast<std::int64_t>(L) * u;
      if (p < split.packs) {
        const char* w = words + static_cast<std::uint64_t>(p) * kBytes;
        lo[u] = load_readonly<Streaming, uint4>(w);
        hi[u] = load_readonly<Streaming, uint4>(w + kBytes);
        if constexpr (Op::kReadsDst)
          old[u] = load_pack<Streaming, false, T, K>(dst, body + p * K, true);
      }
    }
    FG_UNROLL
    for (int u = 0; u < U; ++u) {
      const std::int64_t p = p0 + static_cast<std::int64_t>(L) * u;
      if (p < split.packs) {
        const Pack<T, K> in = bit_cast<Pack<T, K>>(realign(lo[u], hi[u], shift));
        Pack<T, K> out;
        FG_UNROLL
        for (int j = 0; j < K; ++j) out.v[j] = op.template apply<T, T>(in.v[j], old[u].v[j]);
        store_pack<Streaming, T, K>(dst, body + p * K, out, true);
      }
    }
  };
  distribute<L, U>(split, lane, scalar, packs);
}

/// Element i of a copy from `src` to `dst` with `op`, alone (a strided side through its
/// descriptor).
template <bool Streaming, class S, class D, class Op>
FG_DEVICE FG_FORCE_INLINE void copy_element(const Side<S>& src, const Side<D>& dst, std::int64_t i,
                                            const Op& op) {
  S s{};
  if constexpr (Op::kReadsSrc) s = load_readonly<Streaming, S>(src.element(i));
  char* const d_address = dst.element(i);
  D d{};
  if constexpr (Op::kReadsDst) d = load_mutable<Streaming, D>(d_address);
  store<Streaming>(d_address, op.template apply<S, D>(s, d));
}

/// The warp moves elements [first, first + count) of one copy from `src` to `dst` with `op`,
/// cut as `split` says (NOTE: [vector split]): each lane applies `op` to its elements in a
/// fixed order (its head elements, its packs batch by batch, its tail elements). All lanes
/// of the warp call it with the same arguments except `lane`; no lane waits for another.
/// `bytes_unroll` takes the byte-sized unroll where both sides move packs (NOTE: [bytes in
/// flight]).
template <bool Streaming, class S, class D, class Op>
FG_DEVICE FG_FORCE_INLINE void copy_split(const Side<S>& src, const Side<D>& dst,
                                          std::int64_t first, const Split& split, const Op& op,
                                          int lane, bool bytes_unroll) {
  constexpr int K = pack_elements(sizeof(S), sizeof(D));
  constexpr int U = CopyPolicy::unroll(K);
  // Same-type copies and zero fills move packs as opaque bits; they alone take the
  // byte-sized unroll (NOTE: [bytes in flight]). Other ops (the scaling ops of
  // stats_piece.cuh) change the values even between equal types.
  constexpr bool kBits =
      std::is_same_v<S, D> && (std::is_same_v<Op, CopyOp> || std::is_same_v<Op, ZeroOp>);
  constexpr int UB = kBits ? CopyPolicy::unroll_bytes(K * static_cast<int>(sizeof(S))) : U;
  constexpr int L = CopyPolicy::kWarpThreads;
  auto scalar = [&](std::int64_t j) { copy_element<Streaming>(src, dst, first + j, op); };
  const std::int64_t body = first + split.head;
  // Packs p0, p0 + L, ..., p0 + L * (N - 1) of the lane, N = the unroll.
  auto packs = [&](auto unroll, std::int64_t p0) {
    constexpr int N = decltype(unroll)::value;
    [[maybe_unused]] Pack<S, K> in[N] = {};
    [[maybe_unused]] Pack<D, K> old[N] = {};  // read by scatter_add only
    FG_UNROLL
    for (int u = 0; u < N; ++u) {
      const std::int64_t p = p0 + static_cast<std::int64_t>(L) * u;
      if (p < split.packs) {
        [[maybe_unused]] const std::int64_t i = body + p * K;  // unused by a zero fill
        if constexpr (Op::kReadsSrc)
          in[u] = load_pack<Streaming, true, S, K>(src, i, split.src_vector);
        if constexpr (Op::kReadsDst)
          old[u] = load_pack<Streaming, false, D, K>(dst, i, split.dst_vector);
      }
    }
    FG_UNROLL
    for (int u = 0; u < N; ++u) {
      const std::int64_t p = p0 + static_cast<std::int64_t>(L) * u;
      if (p < split.packs) {
        Pack<D, K> out;
        if constexpr (kBits && Op::kReadsSrc) {  // a copy: the pack as is, never unpacked
          out = in[u];
        } else {
          FG_UNROLL
          for (int j = 0; j < K; ++j) out.v[j] = op.template apply<S, D>(in[u].v[j], old[u].v[j]);
        }
        store_pack<Streaming, D, K>(dst, body + p * K, out, split.dst_vector);
      }
    }
  };
  if constexpr (UB != U) {  // same-type 1- and 2-byte copies (NOTE: [bytes in flight])
    if (bytes_unroll && split.src_vector && split.dst_vector) {
      distribute<L, UB>(split, lane, scalar,
                        [&](std::int64_t p0) { packs(std::integral_constant<int, UB>{}, p0); });
      return;
    }
  }
  distribute<L, U>(split, lane, scalar,
                   [&](std::int64_t p0) { packs(std::integral_constant<int, U>{}, p0); });
}

/// The warp moves elements [first, first + count) of one copy from `src` to `dst` with `op`
/// (see NOTE: [vector split] and NOTE: [cache hints]). All lanes of the warp call it with the
/// same arguments except `lane`; no lane waits for another. A side's `indexer` picks the new
/// strided path (NOTE: [strided copies]); `paths` the new misaligned path and the byte-sized
/// unroll; otherwise copy_split with the split the addresses allow (element by element where
/// a side is strided).
template <bool Streaming, class S, class D, class Op>
FG_DEVICE FG_FORCE_INLINE void copy_piece(const Side<S>& src, const Side<D>& dst,
                                          std::int64_t first, std::int64_t count, const Op& op,
                                          int lane, PathChoice paths) {
  const bool src_strided = Op::kReadsSrc && src.strided != nullptr;
  if ((src.transpose || dst.transpose) &&
      paths.tile_bytes >= kTransposeTileElements * static_cast<int>(sizeof(S))) {
    // NOTE: [shared transposes]; a piece of too few whole rows continues below.
    if (copy_transposed<Streaming>(src, dst, first, count, op, lane, paths.tile_bytes)) return;
  }
  if ((src_strided && src.indexer) || dst.indexer) {  // NOTE: [strided copies], new
    copy_strided<Streaming>(src, dst, first, count, op, lane);
    return;
  }
  if (src_strided || dst.strided != nullptr) {
    // A strided tensor on the old path: element by element, lane by lane (NOTE: [strided
    // copies]).
    for (std::int64_t j = lane; j < count; j += CopyPolicy::kWarpThreads) {
      copy_element<Streaming>(src, dst, first + j, op);
    }
    return;
  }
  const std::uint64_t dst_address =
      reinterpret_cast<std::uint64_t>(dst.base) + static_cast<std::uint64_t>(first) * sizeof(D);
  // A side that is not read (zero fill, where S == D) never limits vectorization: it takes
  // the destination's place.
  std::uint64_t src_address = dst_address;
  if constexpr (Op::kReadsSrc) {
    src_address =
        reinterpret_cast<std::uint64_t>(src.base) + static_cast<std::uint64_t>(first) * sizeof(S);
  }
  const Split split = split_range(src_address, static_cast<int>(sizeof(S)), true, dst_address,
                                  static_cast<int>(sizeof(D)), true, count);
  if constexpr (std::is_same_v<S, D> && Op::kReadsSrc) {
    if (paths.realign && split.dst_vector && !split.src_vector) {  // NOTE: [misaligned copies], new
      copy_realigned<Streaming>(src, dst, first, split, op, lane);
      return;
    }
  }
  // One call (inlined once): the kernels stay small.
  copy_split<Streaming>(src, dst, first, split, op, lane, paths.bytes_unroll);
}

// ---- one piece of one copy: pick the element types, then copy_piece -------------------------

/// Calls f(R{}) with the raw storage type of an element of `size` bytes.
template <class F>
FG_DEVICE FG_FORCE_INLINE void with_raw(int size, F&& f) {
  switch (size) {
    case 1: f(std::uint8_t{}); break;
    case 2: f(std::uint16_t{}); break;
    case 4: f(std::uint32_t{}); break;
    default: f(std::uint64_t{}); break;
  }
}

/// Zeros into elements [first, first + count) of the flat segment at `flat` (elements of
/// `flat_size` bytes): a gather's padding and zero-filled tensors.
template <bool Streaming>
FG_DEVICE FG_FORCE_INLINE void zero_piece(char* flat, int flat_size, std::int64_t first,
                                          std::int64_t count, int lane, PathChoice paths) {
  with_raw(flat_size, [&](auto raw) {
    using R = decltype(raw);
    const Side<R> dst{flat, nullptr};
    copy_piece<Streaming, R, R>(dst, dst, first, count, ZeroOp{}, lane, paths);
  });
}

/// The warp's share of one piece: elements [first, first + count) of copy `d`.
template <Op kOp, bool Streaming>
FG_DEVICE FG_FORCE_INLINE void process_piece(const KernelArgs& a, const DeviceCopy& d,
                                             std::int64_t first, std::int64_t count, int lane) {
  const int flat_size = dtype_size(a.flat_dtype);
  char* flat = static_cast<char*>(a.d_flat) + d.flat_offset * flat_size;
  // The plan's path choices (NOTE: [misaligned copies], NOTE: [bytes in flight]).
  const PathChoice paths{a.misaligned_path == CopyPath::New, a.unroll_path == CopyPath::New,
                         a.transpose_tile_bytes};
  if (d.d_data == nullptr) {  // padding or a zero-filled tensor: zeros on gather only
    if constexpr (kOp == Op::Gather) {
      zero_piece<Streaming>(flat, flat_size, first, count, lane, paths);
    }
    return;
  }
  char* data = static_cast<char*>(d.d_data);
  const CopyDesc* strided = d.strided >= 0 ? a.d_strided + d.strided : nullptr;
  // The new strided path (NOTE: [strided copies]) goes with the tensor's side.
  const StridedIndexer* indexer = nullptr;
  if (strided && a.strided_path == CopyPath::New && a.d_indexers[d.strided].usable) {
    indexer = a.d_indexers + d.strided;
  }
  // The shared transpose (NOTE: [shared transposes]) goes with the tensor's side too.
  auto transpose_of = [&](std::int32_t k) -> const TransposeDesc* {
    return a.transpose_tile_bytes > 0 && a.d_transposes[k].usable ? a.d_transposes + k : nullptr;
  };
  if constexpr (kOp != Op::ScatterAdd) {
    if (d.dtype == a.flat_dtype) {  // same dtype: move bits
      // A strided byte copy moves in words of its element size where the piece and both
      // addresses allow (NOTE: [byte plan words]); its word view, and that view's indexer,
      // follow its descriptor. One copy_piece site for both keeps the kernels' registers at
      // the budget of 3 blocks per SM (two sites cost gather 84 registers on sm_90).
      int size = flat_size;
      const CopyDesc* desc = strided;
      const StridedIndexer* desc_indexer = indexer;
      const TransposeDesc* desc_transpose = strided ? transpose_of(d.strided) : nullptr;
      std::int64_t begin = first;
      std::int64_t n = count;
      const int word = d.word_bytes;
      if (word > 1 && first % word == 0 && count % word == 0 &&
          (reinterpret_cast<std::uintptr_t>(flat) | reinterpret_cast<std::uintptr_t>(data)) %
                  word ==
              0) {
        size = word;
        desc = strided + 1;
        desc_indexer = indexer && a.d_indexers[d.strided + 1].usable ? indexer + 1 : nullptr;
        desc_transpose = transpose_of(d.strided + 1);
        begin = first / word;
        n = count / word;
      }
      with_raw(size, [&](auto raw) {
        using R = decltype(raw);
        const Side<R> tensor{data, desc, desc_indexer, desc_transpose};
        const Side<R> flat_side{flat, nullptr};
        if constexpr (kOp == Op::Gather) {
          copy_piece<Streaming, R, R>(tensor, flat_side, begin, n, CopyOp{}, lane, paths);
        } else {
          copy_piece<Streaming, R, R>(flat_side, tensor, begin, n, CopyOp{}, lane, paths);
        }
      });
      return;
    }
  }
  // Floating dtypes (Plan::build and Plan::scatter_add reject the others).
  dispatch_floating(d.dtype, [&](auto tensor_value) {
    dispatch_floating(a.flat_dtype, [&](auto flat_value) {
      using T = decltype(tensor_value);
      using F = decltype(flat_value);
      const Side<T> tensor{data, strided, indexer, strided ? transpose_of(d.strided) : nullptr};
      const Side<F> flat_side{flat, nullptr};
      if constexpr (kOp == Op::ScatterAdd) {
        const double alpha = a.d_alpha ? static_cast<double>(*a.d_alpha) : a.alpha;
        copy_piece<Streaming, F, T>(flat_side, tensor, first, count, AddOp{alpha}, lane, paths);
      } else if constexpr (!std::is_same_v<T, F>) {  // equal types went the raw way above
        if constexpr (kOp == Op::Gather) {
          copy_piece<Streaming, T, F>(tensor, flat_side, first, count, CopyOp{}, lane, paths);
        } else {
          copy_piece<Streaming, F, T>(flat_side, tensor, first, count, CopyOp{}, lane, paths);
        }
      }
    });
  });
}

/// for_each_piece's callback; a functor rather than a lambda so that it is always inlined
/// (a non-inlined call costs a stack frame and spills).
template <Op kOp, bool Streaming>
struct PieceFn {
  const KernelArgs& args;
  int lane;
  FG_DEVICE FG_FORCE_INLINE void operator()(std::int32_t c, std::int64_t first,
                                            std::int64_t count) const {
    process_piece<kOp, Streaming>(args, args.d_copies[c], first, count, lane);
  }
};

#endif  // __CUDACC__ || FLATGATHER_EMULATE_DEVICE

}  // namespace detail
}  // namespace flatgather
