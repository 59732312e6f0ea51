#pragma once
// Host stand-ins for the CUDA load/store intrinsics that kernels/copy.cuh uses, so that the
// kernels' per-warp code (process_piece, copy_piece) runs on the CPU, one lane after another.
// Lanes of a warp never communicate in these kernels (no shuffles, no barriers), so running
// them in sequence computes exactly what a warp computes. Include before copy.cuh; only for
// tests/test_tiles.cpp, which includes no CUDA header.
#define FLATGATHER_EMULATE_DEVICE 1

#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

struct alignas(16) uint4 {
  unsigned int x, y, z, w;
};

namespace fg_emulation {
/// Counts accesses by width, so tests can check that the vector path is taken, and by
/// cache-hint flavour (NOTE: [cache hints] in kernels/copy.cuh).
struct AccessCounts {
  std::int64_t loads[17] = {};
  std::int64_t stores[17] = {};
  std::int64_t misaligned = 0;
  std::int64_t readonly_loads = 0;    ///< __ldg (ld.global.nc)
  std::int64_t streaming_loads = 0;   ///< __ldcs (evict-first)
  std::int64_t plain_loads = 0;       ///< ld.global
  std::int64_t streaming_stores = 0;  ///< __stcs (evict-first)
  std::int64_t plain_stores = 0;      ///< st.global
  std::int64_t funnel_shifts = 0;     ///< __funnelshift_r (NOTE: [misaligned copies])
  /// Accesses to the warp's shared tile (NOTE: [shared transposes]), and those outside the
  /// tile that warp_tile handed out or not aligned to their size (never performed).
  std::int64_t shared_loads = 0;
  std::int64_t shared_stores = 0;
  std::int64_t shared_bad = 0;
  /// 16-byte loads issued since the lane's last store, and the most seen: the packs a lane
  /// keeps in flight (NOTE: [bytes in flight] in kernels/copy.cuh). Lanes run one after
  /// another and every lane's batch ends with its stores, so runs never span two lanes.
  std::int64_t vector_load_run = 0;
  std::int64_t max_vector_loads_in_flight = 0;
  /// When set, the address and width of every store, in order (tests count how often each
  /// byte is written).
  std::vector<std::pair<std::uintptr_t, int>>* store_log = nullptr;
};
inline AccessCounts& counts() {
  static AccessCounts c;
  return c;
}
template <class T>
inline T load(const T* p) {
  if (reinterpret_cast<std::uintptr_t>(p) % alignof(T) != 0) ++counts().misaligned;
  ++counts().loads[sizeof(T)];
  if (sizeof(T) == 16) {
    AccessCounts& c = counts();
    if (++c.vector_load_run > c.max_vector_loads_in_flight)
      c.max_vector_loads_in_flight = c.vector_load_run;
  }
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}
template <class T>
inline void store(T* p, T v) {
  if (reinterpret_cast<std::uintptr_t>(p) % alignof(T) != 0) ++counts().misaligned;
  AccessCounts& c = counts();
  ++c.stores[sizeof(T)];
  c.vector_load_run = 0;
  if (c.store_log) c.store_log->emplace_back(reinterpret_cast<std::uintptr_t>(p), int{sizeof(T)});
  std::memcpy(p, &v, sizeof(T));
}
}  // namespace fg_emulation

template <class T>
inline T __ldg(const T* p) {
  ++fg_emulation::counts().readonly_loads;
  return fg_emulation::load(p);
}
template <class T>
inline T __ldcs(const T* p) {
  ++fg_emulation::counts().streaming_loads;
  return fg_emulation::load(p);
}
template <class T>
inline void __stcs(T* p, T v) {
  ++fg_emulation::counts().streaming_stores;
  fg_emulation::store(p, v);
}
// The plain accesses of kernels/copy.cuh (which defines them only for nvcc).
template <class V>
inline V load_plain(const V* p) {
  ++fg_emulation::counts().plain_loads;
  return fg_emulation::load(p);
}
template <class V>
inline void store_plain(V* p, const V& v) {
  ++fg_emulation::counts().plain_stores;
  fg_emulation::store(p, v);
}
// The warp's shared tile (NOTE: [shared transposes] in kernels/copy.cuh): the test points it
// at per-warp shared memory (fg_lockstep::run_warp's in tests/warp_lockstep.h, whose lanes
// can __syncwarp) of `size` bytes; every access is checked against it.
namespace fg_emulation {
struct SharedTile {
  char* base = nullptr;
  std::size_t size = 0;
};
inline SharedTile& shared_tile() {
  static SharedTile t;
  return t;
}
template <class T>
inline bool shared_ok(const T* p) {
  const SharedTile& t = shared_tile();
  const std::uintptr_t a = reinterpret_cast<std::uintptr_t>(p);
  const std::uintptr_t b = reinterpret_cast<std::uintptr_t>(t.base);
  const bool ok = t.base && a >= b && a + sizeof(T) <= b + t.size && a % alignof(T) == 0;
  if (!ok) ++counts().shared_bad;
  return ok;
}
}  // namespace fg_emulation
inline char* warp_tile(int tile_bytes) {
  fg_emulation::SharedTile& t = fg_emulation::shared_tile();
  if (static_cast<std::size_t>(tile_bytes) > t.size) ++fg_emulation::counts().shared_bad;
  return t.base;
}
template <class T>
inline T shared_load(const T* p) {
  ++fg_emulation::counts().shared_loads;
  T v{};
  if (fg_emulation::shared_ok(p)) std::memcpy(&v, p, sizeof(T));
  return v;
}
template <class T>
inline void shared_store(T* p, const T& v) {
  ++fg_emulation::counts().shared_stores;
  if (fg_emulation::shared_ok(p)) std::memcpy(p, &v, sizeof(T));
}

// The funnel shift of the realignment (NOTE: [misaligned copies] in kernels/copy.cuh): the
// low 32 bits of hi:lo shifted right by shift % 32.
inline unsigned __funnelshift_r(unsigned lo, unsigned hi, unsigned shift) {
  ++fg_emulation::counts().funnel_shifts;
  const std::uint64_t v = (static_cast<std::uint64_t>(hi) << 32) | lo;
  return static_cast<unsigned>(v >> (shift & 31));
}
