// The multi-threaded CPU executor.
//
// NOTE: [cpu work split]
// At build time the copies are cut into tasks of about kCpuTaskBytes (plan.h, 4 MiB) bytes
// moved (read + written), so one huge tensor is split across every thread and ten thousand
// tiny ones are packed into a few tasks; a call of under kCpuDefaultTasks (64) such tasks is
// cut into 64 smaller ones, down to kCpuMinTaskBytes (256 KiB), so that a host of many cores
// still has a few tasks for each. Not 256 KiB everywhere, as until 2026-12-01: each task
// starts its prefetches afresh and ends with a fence, and on an Intel Xeon VM this rule ran
// gpt2-small's gather, scatter and scatter_add at 1.07x, 1.09x and 1.05x the speed of 256 KiB
// tasks, resnet50 and mixed-cast at 1.00-1.07x, many-tiny and resnet18-state (94 MB) at
// 0.98-1.03x; capped at 1 MiB it gained less (docs/perf.md, "Issue 24, 2026-12-01, strips
// and task size"). A call runs the tasks with an OpenMP dynamic schedule, or on the calling
// thread when the whole copy is under kCpuMinTaskBytes or when the caller is already inside an
// OpenMP parallel region (LibTorch's intra-op pool), so threads are never oversubscribed.
// PlanOptions::cpu_tuning changes the task size and the schedule, for A/B runs of the
// benchmark (docs/perf.md, "Task size and schedule", says why the dynamic schedule).
//
// NOTE: [cpu streaming stores]
// A normal store to a cache line that is not in cache first reads that line (read for
// ownership), so a copy of N bytes costs up to 3N bytes of memory traffic; a streaming
// (non-temporal) store writes whole lines without that read and without evicting the cache.
// It pays when the destination would not stay in cache anyway. Under CpuStreaming::Auto gather
// streams when the flat buffer is larger than the streaming threshold, and scatter when the
// tensors are: an eighth of the last-level cache (src/cpu_cache.h). Not the whole LLC: the
// size the OS reports is the chip's, shared with every other core (and, on a VM, tenant), and
// on the 2-core CI machine (260 MiB reported) forcing streaming gained 1.4-1.55x on plans of
// 47 to 102 MB, which the whole-LLC rule never streamed (docs/perf.md, "Quiet-machine A/B").
// Casts stream too, narrowing ones included (float32 -> bfloat16 on scatter, say). Until
// 2026-12-01 Auto excepted those: streamed through an L1 buffer whose conversion loop left the
// source unprefetched, the mixed-cast scatter ran at 0.92x of its normal stores. With the source
// prefetched (stream_convert) and float32 <-> bfloat16 converted in registers and streamed
// straight out (NOTE: [cpu bfloat16 vectors] in src/cpu_loops.inc), streaming it ran at 1.12x
// (AVX2) and 1.32x (the baseline loops) of not streaming (docs/perf.md, "Issue 24, 2026-12-01").
// scatter_add never streams (it reads every destination line first: there is
// no read to save). A gather streams every copy, strided ones too: its destination, the flat
// buffer, is always contiguous (a strided tensor is walked as usual into an L1 buffer that is then
// streamed out, src/cpu_loops.inc stream_gather_strided; a transposed copy whose rows are longer
// than that 16 KiB buffer excepted; transposed 4-byte copies whose rows are whole lines stream
// 16 x 16 tiles straight out, NOTE: [cpu streamed transposes]). A scatter streams contiguous
// tensors and, of strided ones, same-type transposed 4-byte copies: in those tiles when the
// column stride is whole lines, the rows hold a line and the tensor's elements are 4-byte
// aligned (misaligned ones take transpose_4's blocks with normal stores); through a buffer in
// storage order whose stored runs stream their whole lines when the column stride is not whole
// lines or the rows are shorter than a line (3 x 3 channels_last weights: 9 columns;
// NOTE: [cpu transposed runs]). Any other strided destination is written in runs that start
// and end inside cache lines, and a streaming store to part of a line is a partial write to
// memory, dearer than the read it saves. Streamed or not, the values are those of the normal
// loops, so the bits never change. Streaming stores are weakly ordered: every task that
// streamed ends with an sfence, so its stores are globally visible
// before the task (and so the call) is done.
//
// The CUDA tile builder (NOTE: [tiles] in kernels/tiles.cuh) balances by the same measure,
// bytes moved (bytes_per_element in copy_desc.h), and shares nothing more, on purpose: a tile
// is a flat range that a warp walks with no search, cut on 16-byte grains and charged a cost
// per copy for its descriptor load; a task is a list of explicit pieces, cut at whole rows of
// a transposed copy (NOTE: [cpu transposed blocks]), with no alignment to keep. One builder
// serving both would carry both sets of rules behind flags.
#include <omp.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <algorithm>
#include <cstdlib>
#include <sstream>
#include <string>

#include "cpu_cache.h"
#include "cpu_loops.h"
#include "cpu_stats_loops.h"
#include "executor.h"
#include "check.h"

namespace flatgather {
namespace detail {

namespace {

// Pieces of transposed copies hold at least this many rows (transposed_piece_rows).
constexpr std::int64_t kTransposedPieceRows = 256;

// Auto streams destinations above cpu_llc_bytes() / this (NOTE: [cpu streaming stores]).
constexpr std::size_t kLlcFractionStreamed = 8;

using CopyFn = void (*)(Op, const CopyDesc&, std::int64_t, std::int64_t, void*, DType, double,
                        bool);

// NOTE: [cpu isa dispatch]
// The element loops are compiled twice (src/cpu_loops_*.cpp): for the baseline x86-64 and
// with AVX2 and FMA. Without -mfma, fmaf is a libm call per element and casts do not
// vectorize; with it, both do. The AVX2 build also rounds float32 to bfloat16 with
// AVX512_BF16 where the CPU has it (NOTE: [cpu avx512 bfloat16] in src/cpu_loops.inc). Every
// choice computes the same bits (a fused multiply-add is exact either way, and the AVX-512
// rounding leaves the values it would round differently to convert<>), so the choice, made
// once per process from the CPU's features, never changes a result. FLATGATHER_CPU_ISA (read
// once per process) narrows it: `baseline` forces the baseline loops, `avx2` the AVX2 loops
// without AVX-512, `auto` (or unset) takes the best the CPU has; tests check the claim
// (tests/test_cpu_isa.cpp) on a machine that has them all.
enum class CpuIsa { Baseline, Avx2, Avx512Bf16 };

CpuIsa cpu_isa() {
  static const CpuIsa isa = [] {
    const char* env = std::getenv("FLATGATHER_CPU_ISA");
    const std::string limit = env ? env : "";
    FG_CHECK(limit.empty() || limit == "auto" || limit == "avx2" || limit == "baseline",
             "the environment variable FLATGATHER_CPU_ISA is '"
                 << limit << "'; use auto, avx2 or baseline (or leave it unset for auto)");
#if FLATGATHER_CPU_AVX2
    if (limit == "baseline" || !__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
      return CpuIsa::Baseline;
    }
#if FLATGATHER_CPU_AVX512BF16
    // libgcc and compiler-rt report AVX-512 features only where the OS saves the registers.
    if (limit != "avx2" && __builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bf16")) {
      return CpuIsa::Avx512Bf16;
    }
#endif
    return CpuIsa::Avx2;
#else
    return CpuIsa::Baseline;
#endif
  }();
  return isa;
}

bool has_avx2_fma() {
  return cpu_isa() != CpuIsa::Baseline;
}

CopyFn select_copy_fn() {
#if FLATGATHER_CPU_AVX2
  if (has_avx2_fma()) return &cpu_avx2::run_copy;
#endif
  return &cpu_baseline::run_copy;
}

using GatherStatsFn = void (*)(const CopyDesc&, std::int64_t, std::int64_t, void*, DType, double,
                               bool, bool, StatsPartial&);
using ScatterScaledFn = void (*)(const CopyDesc&, std::int64_t, std::int64_t, const void*, DType,
                                 double);

struct StatsFns {
  GatherStatsFn gather;
  ScatterScaledFn scatter;
};

StatsFns select_stats_fns() {
#if FLATGATHER_CPU_AVX2
  if (has_avx2_fma()) return {&cpu_avx2::gather_stats_copy, &cpu_avx2::scatter_scaled_copy};
#endif
  return {&cpu_baseline::gather_stats_copy, &cpu_baseline::scatter_scaled_copy};
}

// A CPU plan's Factor lives in host memory: read it when the call runs.
double resolve(const Factor& f) {
  return f.d_value ? static_cast<double>(*f.d_value) : f.value;
}

const char* copy_fn_name() {
  switch (cpu_isa()) {
    case CpuIsa::Baseline: return "baseline";
    case CpuIsa::Avx2: return "avx2+fma";
    case CpuIsa::Avx512Bf16: return "avx2+fma+avx512bf16";
  }
  return "baseline";
}

// FLATGATHER_CPU_STREAMING (read once per process) in place of CpuStreaming::Auto.
CpuStreaming resolve_streaming(CpuStreaming option) {
  static const std::string env = [] {
    const char* value = std::getenv("FLATGATHER_CPU_STREAMING");
    return std::string(value ? value : "");
  }();
  if (option != CpuStreaming::Auto || env.empty() || env == "auto") return option;
  FG_CHECK(env == "on" || env == "off",
           "the environment variable FLATGATHER_CPU_STREAMING is '"
               << env << "'; use auto, on or off (or leave it unset for auto)");
  return env == "on" ? CpuStreaming::On : CpuStreaming::Off;
}

// Destinations of more than this many bytes stream under Auto (NOTE above).
std::int64_t streaming_threshold() {
  return static_cast<std::int64_t>(cpu_llc_bytes() / kLlcFractionStreamed);
}

bool streams(CpuStreaming mode, std::int64_t destination_bytes) {
  if (mode == CpuStreaming::Auto) return destination_bytes > streaming_threshold();
  return mode == CpuStreaming::On;
}

// Makes this thread's streaming stores visible to every other thread (NOTE above).
void streaming_fence() {
#if defined(__SSE2__)
  _mm_sfence();
#endif
}

// A piece of one copy: elements [begin, end) of copies[copy].
struct Piece {
  std::int32_t copy;
  std::int64_t begin;
  std::int64_t end;
};

class CpuExecutor final : public Executor {
 public:
  explicit CpuExecutor(ExecutorInput in) : in_(std::move(in)) {
    const int flat_size = dtype_size(in_.flat_dtype);
    if (in_.cpu_tuning.task_bytes > 0) {
      task_bytes_ = in_.cpu_tuning.task_bytes;
    } else {  // NOTE: [cpu work split]
      std::int64_t call_bytes = 0;
      for (const CopyDesc& d : in_.copies) call_bytes += d.numel * bytes_per_element(d, flat_size);
      task_bytes_ = std::clamp(call_bytes / kCpuDefaultTasks, kCpuMinTaskBytes, kCpuTaskBytes);
    }
    std::int64_t budget = task_bytes_;
    std::int64_t tensor_bytes = 0;
    task_begin_.push_back(0);
    for (std::size_t c = 0; c < in_.copies.size(); ++c) {
      const CopyDesc& d = in_.copies[c];
      if (d.segment >= 0) {  // every non-empty segment has exactly one copy
        const auto seg = static_cast<std::size_t>(d.segment);
        if (copy_of_segment_.size() <= seg) copy_of_segment_.resize(seg + 1, -1);
        copy_of_segment_[seg] = static_cast<std::int32_t>(c);
      }
      const std::int64_t per_elem = bytes_per_element(d, flat_size);
      // Pieces are cut on multiples of `unit` elements: whole rows of a transposed copy (NOTE:
      // [cpu transposed blocks]), whole words of a strided byte copy (NOTE: [byte plan words]).
      std::int64_t unit = 1;
      std::int64_t min_piece = 1;  // elements, a multiple of unit
      const int word = flat_size == 1 ? word_bytes(d) : 1;
      if (is_transposed_2d(d)) {
        unit = d.sizes[d.ndim - 1];
        min_piece = unit * transposed_piece_rows(d.numel / unit);
      } else if (word > 1) {
        const CopyDesc words = word_view(d, word);
        if (is_transposed_2d(words)) {
          unit = words.sizes[words.ndim - 1] * word;
          min_piece = unit * transposed_piece_rows(words.numel * word / unit);
        } else {
          unit = word;
        }
      }
      min_piece = std::max(min_piece, unit);
      if (d.data) tensor_bytes += d.numel * dtype_size(d.dtype);
      std::int64_t begin = 0;
      while (begin < d.numel) {
        std::int64_t fit = std::max<std::int64_t>(1, budget / per_elem);
        if (unit > 1) fit = std::max(min_piece, fit / unit * unit);
        const std::int64_t end = std::min(d.numel, begin + fit);
        pieces_.push_back({static_cast<std::int32_t>(c), begin, end});
        budget -= (end - begin) * per_elem;
        total_bytes_ += (end - begin) * per_elem;
        begin = end;
        if (budget <= 0) {
          task_begin_.push_back(pieces_.size());
          budget = task_bytes_;
        }
      }
    }
    if (task_begin_.back() != pieces_.size()) task_begin_.push_back(pieces_.size());
    const CpuStreaming mode = resolve_streaming(in_.cpu_streaming);
    stream_gather_ = streams(mode, in_.flat_numel * flat_size);
    stream_scatter_ = streams(mode, tensor_bytes);
  }

  void gather(void* flat, cudaStream_t) const override { run(Op::Gather, flat, 1.0); }
  void scatter(const void* flat, const Factor& scale, cudaStream_t) const override {
    const double s = resolve(scale);
    if (scale.d_value == nullptr && s == 1.0) return run(Op::Scatter, const_cast<void*>(flat), 1.0);
    for_each_task([&](std::int64_t task) {
      for (std::size_t p = task_begin_[task]; p < task_begin_[task + 1]; ++p) {
        const Piece& piece = pieces_[p];
        stats_fns_.scatter(in_.copies[piece.copy], piece.begin, piece.end, flat, in_.flat_dtype, s);
      }
    });
  }
  void scatter_add(const void* flat, const Factor& alpha, cudaStream_t) const override {
    run(Op::ScatterAdd, const_cast<void*>(flat), resolve(alpha));
  }

  // One StatsPartial per piece, combined in piece order (NOTE: [gather statistics]). The
  // partials are a host vector per call: a CPU gather may run on several threads at once.
  void gather_stats(void* flat, const StatsRequest& r, cudaStream_t) const override {
    const double scale = r.d_scale ? static_cast<double>(*r.d_scale) : r.scale;
    const bool sumsq = r.wants_sumsq();
    const bool check = r.d_found_inf != nullptr;
    std::vector<StatsPartial> parts(pieces_.size());
    for_each_task([&](std::int64_t task) {
      for (std::size_t p = task_begin_[task]; p < task_begin_[task + 1]; ++p) {
        const Piece& piece = pieces_[p];
        const CopyDesc& d = in_.copies[piece.copy];
        parts[p].segment = d.segment;
        stats_fns_.gather(d, piece.begin, piece.end, flat, in_.flat_dtype, scale, sumsq, check,
                          parts[p]);
      }
    });
    std::vector<double> tensor_sums(r.d_tensor_norms ? r.num_segments : 0);
    finish_stats(
        r, [&](std::int64_t p) { return parts[static_cast<std::size_t>(p)]; },
        static_cast<std::int64_t>(parts.size()), tensor_sums.data());
  }

  void rebind(const std::vector<std::pair<int, void*>>& changes, cudaStream_t) override {
    for (const auto& [segment, data] : changes) {
      if (segment < 0 || static_cast<std::size_t>(segment) >= copy_of_segment_.size()) continue;
      const std::int32_t c = copy_of_segment_[static_cast<std::size_t>(segment)];
      if (c >= 0) in_.copies[static_cast<std::size_t>(c)].data = data;  // -1: an empty tensor
    }
  }

  std::string describe() const override {
    std::ostringstream os;
    os << "cpu (threads=" << threads() << ", tasks=" << task_begin_.size() - 1
       << ", task_bytes=" << task_bytes_
       << ", schedule=" << (in_.cpu_tuning.schedule == CpuSchedule::Static ? "static" : "dynamic")
       << ", loops=" << copy_fn_name() << ", streaming="
       << (stream_gather_ && stream_scatter_ ? "gather+scatter"
           : stream_gather_                  ? "gather"
           : stream_scatter_                 ? "scatter"
                                             : "off");
    if (resolve_streaming(in_.cpu_streaming) == CpuStreaming::Auto) {
      os << " (auto: above " << streaming_threshold() << " B)";
    }
    os << ")";
    return os.str();
  }

 private:
  int threads() const { return in_.num_threads > 0 ? in_.num_threads : omp_get_max_threads(); }

  // The fewest rows a piece of a transposed copy of `rows` rows holds, under the default task
  // size (NOTE: [cpu streamed transposes] in src/cpu_loops.inc): kTransposedPieceRows (or the
  // whole matrix), so that the tiles read runs of at least 1 KiB of every stored row of float32
  // (pieces of 64 rows ran at 16 GB/s, of 256 rows at 27, in a standalone test on two threads).
  // Not a function of the thread count: gather statistics add one partial per piece, and the
  // pieces must be the same for every thread count (NOTE: [gather statistics]). An explicit
  // CpuTuning::task_bytes cuts as it says.
  std::int64_t transposed_piece_rows(std::int64_t rows) const {
    if (in_.cpu_tuning.task_bytes > 0) return 1;
    return std::min<std::int64_t>(kTransposedPieceRows, rows);
  }

  void run(Op op, void* flat, double alpha) const {
    const bool stream = op == Op::Gather    ? stream_gather_
                        : op == Op::Scatter ? stream_scatter_
                                            : false;
    for_each_task([&](std::int64_t t) { run_task(op, t, flat, alpha, stream); });
  }

  // Runs f(task) for every task (NOTE: [cpu work split]).
  template <class F>
  void for_each_task(F&& f) const {
    const std::int64_t tasks = static_cast<std::int64_t>(task_begin_.size()) - 1;
    const int nthreads = static_cast<int>(std::min<std::int64_t>(threads(), tasks));
    if (nthreads <= 1 || total_bytes_ < kCpuMinTaskBytes || omp_in_parallel()) {
      for (std::int64_t t = 0; t < tasks; ++t) f(t);
      return;
    }
    if (in_.cpu_tuning.schedule == CpuSchedule::Static) {
#pragma omp parallel for schedule(static) num_threads(nthreads)
      for (std::int64_t t = 0; t < tasks; ++t) f(t);
    } else {
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
      for (std::int64_t t = 0; t < tasks; ++t) f(t);
    }
  }

  void run_task(Op op, std::int64_t task, void* flat, double alpha, bool stream) const {
    for (std::size_t p = task_begin_[task]; p < task_begin_[task + 1]; ++p) {
      const Piece& piece = pieces_[p];
      const CopyDesc& d = in_.copies[piece.copy];
      copy_fn_(op, d, piece.begin, piece.end, flat, in_.flat_dtype, alpha, stream);
    }
    if (stream) streaming_fence();
  }

  ExecutorInput in_;
  std::int64_t task_bytes_ = 0;  // set by the constructor (NOTE: [cpu work split])
  CopyFn copy_fn_ = select_copy_fn();
  StatsFns stats_fns_ = select_stats_fns();
  std::vector<Piece> pieces_;
  std::vector<std::int32_t> copy_of_segment_;  // index into in_.copies, -1 for empty tensors
  std::vector<std::size_t> task_begin_;  // task t runs pieces_[task_begin_[t], task_begin_[t+1])
  std::int64_t total_bytes_ = 0;
  bool stream_gather_ = false;  // NOTE: [cpu streaming stores]
  bool stream_scatter_ = false;
};

}  // namespace

bool cpu_avx512_bf16() {
  return cpu_isa() == CpuIsa::Avx512Bf16;
}

std::unique_ptr<Executor> make_cpu_executor(ExecutorInput input) {
  return std::make_unique<CpuExecutor>(std::move(input));
}

}  // namespace detail
}  // namespace flatgather
