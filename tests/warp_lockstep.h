#pragma once
// Runs one warp's code on the CPU with its 32 lanes in lockstep, so that kernel code which
// makes lanes talk to each other (__shfl_sync, __ballot_sync, __syncwarp, per-warp shared
// memory) can be tested where there is no GPU. tests/device_emulation.h runs lanes one after
// another, which is exact only while lanes never communicate; this header adds the collectives
// and may be included next to it (same test binary, the same per-lane access counters).
//
// NOTE: [warp lockstep]
// Each lane is a coroutine (ucontext) on its own stack, all on the calling thread. A lane runs
// until it reaches a collective, records what it brings (kind, mask, value, call site) and
// hands over to the next lane; when every lane still running waits at a collective, the
// collective is resolved (the values exchanged), and the lanes resume from lane 0. So lanes
// switch only at collectives, every run is deterministic, and between two collectives each
// lane runs alone (memory effects of lane i before a collective are seen by every lane after
// it, as on the GPU after __syncwarp).
// Misuse fails the run (run_warp throws fg_lockstep::Misuse after unwinding every lane):
//  - a lane calls a collective whose mask does not contain the lane itself;
//  - the lanes of a mask are not all at the same collective: another kind, another mask,
//    another call site (file:line), or a lane of the mask has already returned;
//  - a shuffle reads a lane outside its mask.
// Lanes outside every pending mask simply wait, so partial masks (e.g. the lanes < n of a
// tail) work when the other lanes are parked at a later collective or have returned.
// A call site is the __builtin_LINE of the call: collectives written inside one macro
// invocation (e.g. a gtest assertion) share a line and are not told apart. Only the
// collectives below are emulated; the emulated block is ONE warp (a __syncthreads in
// emulated code is a full-warp __syncwarp).
//
// Use:
//   fg_lockstep::run_warp([&](int lane, unsigned char* shared) { ... __shfl_sync(...) ... },
//                         /*shared_bytes=*/1024);

#include <ucontext.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FG_LOCKSTEP_ASAN 1
#endif
#if __has_feature(thread_sanitizer)
#define FG_LOCKSTEP_TSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(FG_LOCKSTEP_ASAN)
#define FG_LOCKSTEP_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__) && !defined(FG_LOCKSTEP_TSAN)
#define FG_LOCKSTEP_TSAN 1
#endif
#if defined(FG_LOCKSTEP_ASAN)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#if defined(FG_LOCKSTEP_TSAN)
#include <sanitizer/tsan_interface.h>
#endif

namespace fg_lockstep {

constexpr int kLanes = 32;
constexpr unsigned kFullMask = 0xffffffffu;

/// A collective used in a way the GPU does not allow (NOTE: [warp lockstep]).
struct Misuse : std::logic_error {
  using std::logic_error::logic_error;
};

namespace detail {

enum class Kind { Shuffle, Ballot, Any, All, Sync };

inline const char* kind_name(Kind k) {
  switch (k) {
    case Kind::Shuffle: return "__shfl_sync";
    case Kind::Ballot: return "__ballot_sync";
    case Kind::Any: return "__any_sync";
    case Kind::All: return "__all_sync";
    case Kind::Sync: return "__syncwarp";
  }
  return "?";
}

/// Thrown inside a lane to unwind its stack when the run is abandoned.
struct Unwind {};

struct Lane {
  ucontext_t context{};
  unsigned char* stack = nullptr;
  bool done = false;
  bool waiting = false;
  // The collective the lane waits at.
  Kind kind = Kind::Sync;
  unsigned mask = 0;
  const char* file = "";
  int line = 0;
  std::uint64_t value = 0;  // what the lane brings (shuffle value, predicate)
  int src = 0;              // shuffle: the lane read
  std::uint64_t result = 0;
  std::exception_ptr error;
#if defined(FG_LOCKSTEP_TSAN)
  void* fiber = nullptr;
#endif
};

struct Warp {
  Lane lanes[kLanes];
  ucontext_t scheduler{};
  int current = -1;
  bool abandon = false;
  void* entry = nullptr;  // the type-erased warp function
  void (*call)(void* entry, int lane, unsigned char* shared) = nullptr;
  std::vector<unsigned char> shared;
#if defined(FG_LOCKSTEP_TSAN)
  void* scheduler_fiber = nullptr;
#endif
#if defined(FG_LOCKSTEP_ASAN)
  const void* scheduler_stack_bottom = nullptr;
  std::size_t scheduler_stack_size = 0;
#endif
};

inline Warp*& current_warp() {
  static thread_local Warp* w = nullptr;
  return w;
}

constexpr std::size_t kStackBytes = 512 * 1024;

/// The lanes' stacks, kept for the next run_warp on this thread.
inline unsigned char* lane_stack(int lane) {
  static thread_local std::unique_ptr<unsigned char[]> stacks[kLanes];
  if (!stacks[lane]) stacks[lane].reset(new unsigned char[kStackBytes]);
  return stacks[lane].get();
}

// Switches from the scheduler into lane `l` and back, with the sanitizers told about the
// stack change.
inline void enter_lane(Warp& w, int l) {
  Lane& lane = w.lanes[l];
  w.current = l;
#if defined(FG_LOCKSTEP_TSAN)
  __tsan_switch_to_fiber(lane.fiber, 0);
#endif
#if defined(FG_LOCKSTEP_ASAN)
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, lane.stack, kStackBytes);
#endif
  swapcontext(&w.scheduler, &lane.context);
#if defined(FG_LOCKSTEP_ASAN)
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
  w.current = -1;
}

inline void leave_lane(Warp& w, Lane& lane, bool finished) {
#if defined(FG_LOCKSTEP_TSAN)
  __tsan_switch_to_fiber(w.scheduler_fiber, 0);
#endif
#if defined(FG_LOCKSTEP_ASAN)
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(finished ? nullptr : &fake, w.scheduler_stack_bottom,
                                 w.scheduler_stack_size);
#endif
  swapcontext(&lane.context, &w.scheduler);
#if defined(FG_LOCKSTEP_ASAN)
  __sanitizer_finish_switch_fiber(fake, &w.scheduler_stack_bottom, &w.scheduler_stack_size);
#endif
  (void)finished;
}

inline void lane_main(unsigned lo, unsigned hi) {
  Warp& w = *reinterpret_cast<Warp*>((static_cast<std::uintptr_t>(hi) << 32) | lo);
#if defined(FG_LOCKSTEP_ASAN)
  __sanitizer_finish_switch_fiber(nullptr, &w.scheduler_stack_bottom, &w.scheduler_stack_size);
#endif
  const int l = w.current;
  Lane& lane = w.lanes[l];
  try {
    if (w.abandon) throw Unwind{};  // abandoned before this lane started
    w.call(w.entry, l, w.shared.empty() ? nullptr : w.shared.data());
  } catch (const Unwind&) {
  } catch (...) {
    lane.error = std::current_exception();
    w.abandon = true;  // the lane's exception explains the run; the other lanes stop
  }
  lane.done = true;
  leave_lane(w, lane, true);
}

[[noreturn]] inline void misuse(const std::string& what) {
  throw Misuse("warp lockstep: " + what);
}

inline std::string site(const Lane& l) {
  return std::string(kind_name(l.kind)) + "(mask 0x" +
         [](unsigned m) {
    char b[16];
    std::snprintf(b, sizeof b, "%08x", m);
    return std::string(b);
  }(l.mask) +
      ") at " + l.file + ":" + std::to_string(l.line);
}

inline bool same_collective(const Lane& a, const Lane& b) {
  return b.kind == a.kind && b.mask == a.mask && b.line == a.line &&
         std::strcmp(b.file, a.file) == 0;
}

// Called when every running lane waits at a collective: resolves each collective whose mask's
// lanes have all arrived at it (the values exchanged, the lanes released) and throws Misuse
// when a lane of a mask has returned or when no collective can complete. Returns false when
// no lane waits (all have returned).
inline bool resolve(Warp& w) {
  bool any_waiting = false;
  bool ready[kLanes] = {};
  std::string mismatch;
  for (int l = 0; l < kLanes; ++l) {
    const Lane& a = w.lanes[l];
    if (!a.waiting) continue;
    any_waiting = true;
    ready[l] = true;
    for (int m = 0; m < kLanes && ready[l]; ++m) {
      if (!(a.mask >> m & 1u)) continue;
      const Lane& b = w.lanes[m];
      if (b.done) {
        misuse("lane " + std::to_string(l) + " waits at " + site(a) + " for lane " +
               std::to_string(m) + ", which has returned");
      }
      if (!b.waiting || !same_collective(a, b)) {
        ready[l] = false;
        if (mismatch.empty()) {
          mismatch = "lane " + std::to_string(l) + " is at " + site(a) + " but lane " +
                     std::to_string(m) + " is at " + (b.waiting ? site(b) : "no collective");
        }
      }
    }
  }
  if (!any_waiting) return false;
  bool progressed = false;
  for (int l = 0; l < kLanes; ++l) {
    if (!ready[l]) continue;
    Lane& a = w.lanes[l];
    switch (a.kind) {
      case Kind::Shuffle:
        if (!(a.mask >> a.src & 1u)) {
          misuse("lane " + std::to_string(l) + " reads lane " + std::to_string(a.src) +
                 " outside the mask of " + site(a));
        }
        a.result = w.lanes[a.src].value;
        break;
      case Kind::Ballot:
      case Kind::Any:
      case Kind::All: {
        std::uint64_t ballot = 0;
        for (int m = 0; m < kLanes; ++m) {
          if ((a.mask >> m & 1u) && w.lanes[m].value) ballot |= std::uint64_t{1} << m;
        }
        if (a.kind == Kind::Ballot) a.result = ballot;
        if (a.kind == Kind::Any) a.result = ballot != 0;
        if (a.kind == Kind::All) a.result = ballot == a.mask;
        break;
      }
      case Kind::Sync: break;
    }
  }
  for (int l = 0; l < kLanes; ++l) {
    if (ready[l]) {
      w.lanes[l].waiting = false;
      progressed = true;
    }
  }
  if (!progressed) misuse(mismatch);
  return true;
}

// Called by a lane at a collective: records it and yields; returns the collective's result.
inline std::uint64_t arrive(Kind kind, unsigned mask, std::uint64_t value, int src,
                            const char* file, int line) {
  Warp* w = current_warp();
  if (!w || w->current < 0) {
    throw Misuse(std::string("warp lockstep: ") + kind_name(kind) + " at " + file + ":" +
                 std::to_string(line) + " called outside fg_lockstep::run_warp");
  }
  const int l = w->current;
  Lane& lane = w->lanes[l];
  lane.kind = kind;
  lane.mask = mask;
  lane.value = value;
  lane.src = src;
  lane.file = file;
  lane.line = line;
  if (!(mask >> l & 1u)) {
    w->abandon = true;
    lane.error =
        std::make_exception_ptr(Misuse("warp lockstep: lane " + std::to_string(l) + " calls " +
                                       site(lane) + " with a mask that does not contain it"));
    throw Unwind{};
  }
  lane.waiting = true;
  leave_lane(*w, lane, false);
  if (w->abandon) throw Unwind{};
  return lane.result;
}

// Sets lane `l` up to start in lane_main on its own stack. Out of line: getcontext returns
// twice, which would make GCC warn about the caller's loop variables (-Wclobbered).
[[gnu::noinline]] inline void prepare_lane(Warp& w, int l) {
  Lane& lane = w.lanes[l];
  lane.stack = lane_stack(l);
#if defined(FG_LOCKSTEP_ASAN)
  // The previous run's frames may have left the reused stack's shadow poisoned.
  __asan_unpoison_memory_region(lane.stack, kStackBytes);
#endif
  getcontext(&lane.context);
  lane.context.uc_stack.ss_sp = lane.stack;
  lane.context.uc_stack.ss_size = kStackBytes;
  lane.context.uc_link = nullptr;
  const std::uintptr_t self = reinterpret_cast<std::uintptr_t>(&w);
  makecontext(&lane.context, reinterpret_cast<void (*)()>(&lane_main), 2,
              static_cast<unsigned>(self & 0xffffffffu), static_cast<unsigned>(self >> 32));
#if defined(FG_LOCKSTEP_TSAN)
  lane.fiber = __tsan_create_fiber(0);
#endif
}

/// The calling lane (0 outside run_warp: arrive reports the misuse).
inline int current_lane() {
  const Warp* w = current_warp();
  return w && w->current >= 0 ? w->current : 0;
}

template <class F>
void call_entry(void* entry, int lane, unsigned char* shared) {
  (*static_cast<F*>(entry))(lane, shared);
}

}  // namespace detail

/// Runs `f(lane, shared)` for lanes 0..31 in lockstep on the calling thread (NOTE: [warp
/// lockstep]); `shared` points at `shared_bytes` bytes of per-warp shared memory, filled with
/// 0xCD (nullptr when 0). Throws Misuse on a collective the GPU would not allow, and rethrows
/// the first exception a lane threw (gtest ASSERT_* return from the lane only).
template <class F>
void run_warp(F&& f, std::size_t shared_bytes = 0) {
  using Fn = std::remove_reference_t<F>;
  auto w = std::make_unique<detail::Warp>();
  if (detail::current_warp()) throw Misuse("warp lockstep: run_warp inside run_warp");
  w->entry = const_cast<void*>(static_cast<const void*>(&f));
  w->call = &detail::call_entry<Fn>;
  w->shared.assign(shared_bytes, 0xCD);
#if defined(FG_LOCKSTEP_TSAN)
  w->scheduler_fiber = __tsan_get_current_fiber();
#endif
  for (int l = 0; l < kLanes; ++l) detail::prepare_lane(*w, l);
  detail::current_warp() = w.get();
  std::string failure;
  for (;;) {
    for (int l = 0; l < kLanes; ++l) {
      const detail::Lane& lane = w->lanes[l];
      if (!lane.done && !lane.waiting) detail::enter_lane(*w, l);
      if (w->abandon) break;
    }
    if (w->abandon) break;
    try {
      if (!detail::resolve(*w)) break;  // every lane has returned
    } catch (const Misuse& e) {
      failure = e.what();
      w->abandon = true;
      break;
    }
  }
  if (w->abandon) {  // unwind every lane still parked at a collective
    for (int l = 0; l < kLanes; ++l) {
      if (!w->lanes[l].done) detail::enter_lane(*w, l);
    }
  }
  detail::current_warp() = nullptr;
#if defined(FG_LOCKSTEP_TSAN)
  for (detail::Lane& lane : w->lanes) __tsan_destroy_fiber(lane.fiber);
#endif
  for (detail::Lane& lane : w->lanes) {
    if (lane.error) std::rethrow_exception(lane.error);
  }
  if (!failure.empty()) throw Misuse(failure);
}

}  // namespace fg_lockstep

// ---- host stand-ins for the CUDA warp intrinsics ----------------------------------------------
// The trailing defaulted arguments record the call site (GCC and Clang builtins), so that two
// lanes at different collectives are told apart.

template <class T>
inline T __shfl_sync(unsigned mask, T v, int src_lane, int width = fg_lockstep::kLanes,
                     const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  static_assert(std::is_trivially_copyable<T>::value && (sizeof(T) == 4 || sizeof(T) == 8),
                "__shfl_sync moves 4- or 8-byte trivially copyable values");
  std::uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  // As on the GPU: src_lane is taken modulo width, within the caller's group of `width` lanes.
  const int lane = fg_lockstep::detail::current_lane();
  const int src = (lane / width) * width + ((src_lane % width) + width) % width;
  bits =
      fg_lockstep::detail::arrive(fg_lockstep::detail::Kind::Shuffle, mask, bits, src, file, line);
  T out;
  std::memcpy(&out, &bits, sizeof(T));
  return out;
}

template <class T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = fg_lockstep::kLanes,
                          const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  const int lane = fg_lockstep::detail::current_lane();
  const int in_group = lane % width;
  // Out-of-range reads keep the caller's own value, as on the GPU.
  const int src =
      in_group + static_cast<int>(delta) < width ? in_group + static_cast<int>(delta) : in_group;
  return __shfl_sync(mask, v, src, width, file, line);
}

template <class T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = fg_lockstep::kLanes,
                        const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  const int lane = fg_lockstep::detail::current_lane();
  const int in_group = lane % width;
  const int src =
      in_group >= static_cast<int>(delta) ? in_group - static_cast<int>(delta) : in_group;
  return __shfl_sync(mask, v, src, width, file, line);
}

template <class T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = fg_lockstep::kLanes,
                         const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  const int lane = fg_lockstep::detail::current_lane();
  const int in_group = lane % width;
  const int other = in_group ^ lane_mask;
  return __shfl_sync(mask, v, other < width ? other : in_group, width, file, line);
}

inline unsigned __ballot_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(),
                              int line = __builtin_LINE()) {
  return static_cast<unsigned>(fg_lockstep::detail::arrive(fg_lockstep::detail::Kind::Ballot, mask,
                                                           predicate != 0, 0, file, line));
}

inline int __any_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(),
                      int line = __builtin_LINE()) {
  return static_cast<int>(fg_lockstep::detail::arrive(fg_lockstep::detail::Kind::Any, mask,
                                                      predicate != 0, 0, file, line));
}

inline int __all_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(),
                      int line = __builtin_LINE()) {
  return static_cast<int>(fg_lockstep::detail::arrive(fg_lockstep::detail::Kind::All, mask,
                                                      predicate != 0, 0, file, line));
}

inline void __syncwarp(unsigned mask = fg_lockstep::kFullMask, const char* file = __builtin_FILE(),
                       int line = __builtin_LINE()) {
  fg_lockstep::detail::arrive(fg_lockstep::detail::Kind::Sync, mask, 0, 0, file, line);
}

/// The emulated block is one warp (NOTE: [warp lockstep]).
inline void __syncthreads(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  __syncwarp(fg_lockstep::kFullMask, file, line);
}
