#pragma once
/// \file plan.h
/// Build once, then gather / scatter / scatter_add as often as needed.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "flatgather/layout.h"
#include "flatgather/tensor_ref.h"

// The same declaration as CUDA's driver_types.h, so the core API takes a cudaStream_t without
// including any CUDA header. nullptr is the legacy default stream (and ignored on the CPU).
struct CUstream_st;
typedef struct CUstream_st* cudaStream_t;

namespace flatgather {

/// Whether the CPU executor writes contiguous copies with streaming (non-temporal) stores,
/// which skip the read of each destination cache line and leave the destination out of the
/// cache. Never changes a result (NOTE: [cpu streaming stores] in src/cpu_executor.cpp).
enum class CpuStreaming : std::uint8_t {
  /// Stream an op whose destination (the flat buffer on gather, the tensors on scatter) is
  /// larger than an eighth of the last-level cache, which it would flush anyway (NOTE:
  /// [cpu streaming stores] in src/cpu_executor.cpp; Plan::describe prints the threshold). The
  /// environment variable
  /// FLATGATHER_CPU_STREAMING=auto|on|off, read once per process, overrides Auto.
  Auto,
  On,   ///< always stream gather and scatter (never scatter_add, which reads its destination)
  Off,  ///< never stream
};

/// Bytes moved (read + written) per CPU task unless CpuTuning::task_bytes says otherwise: a
/// call's bytes divided by kCpuDefaultTasks, between kCpuMinTaskBytes and kCpuTaskBytes
/// (NOTE: [cpu work split] in src/cpu_executor.cpp).
inline constexpr std::int64_t kCpuTaskBytes = 4 * 1024 * 1024;
/// The smallest default task, and the size below which a CPU call runs on the calling thread.
inline constexpr std::int64_t kCpuMinTaskBytes = 256 * 1024;
/// Default tasks are cut smaller than kCpuTaskBytes until a call has this many of them (or
/// they reach kCpuMinTaskBytes), so a mid-size call still feeds every thread of a large host.
inline constexpr std::int64_t kCpuDefaultTasks = 64;

/// How a CPU call's tasks are handed to the OpenMP threads (NOTE: [cpu work split]).
enum class CpuSchedule : std::uint8_t {
  Dynamic,  ///< one task at a time to whichever thread is free (the default: a busy core
            ///< takes fewer tasks)
  Static,   ///< each thread one contiguous run of the tasks, like a memcpy cut in equal parts
};

/// How the CPU executor cuts a call into tasks and schedules them (ignored on CUDA). For
/// benchmarks and tests; the defaults are right for almost everyone (docs/perf.md, "Task size
/// and schedule"). Plan::build rejects a negative task size or an unknown schedule.
struct CpuTuning {
  /// Bytes moved (read + written) per task; 0: the default (kCpuTaskBytes, smaller for calls
  /// under kCpuDefaultTasks of those). A transposed copy is cut at whole rows, so its tasks
  /// hold at least one row.
  std::int64_t task_bytes = 0;
  CpuSchedule schedule = CpuSchedule::Dynamic;
};

/// Options of Plan::build.
struct PlanOptions {
  /// dtype of the flat buffer. Unset: the common dtype of the tensors (mixed dtypes are an
  /// error then). Set: tensors are cast into it on gather and back on scatter. UInt8 makes a
  /// byte buffer: tensors of every dtype are copied byte for byte, each segment starting at a
  /// multiple of its element size; offsets and the length then count bytes (NOTE: [byte
  /// plans] in src/layout.cpp).
  std::optional<DType> flat_dtype;
  /// Pads every segment's starting byte to a multiple of this (0 or 1: no padding). Must be a
  /// power of two and a multiple of the flat element size. Padding is written as zeros.
  std::int64_t align_bytes = 0;
  /// CPU threads for gather and scatter; 0 uses OpenMP's current default (OMP_NUM_THREADS,
  /// else the number of cores; inside a LibTorch process, LibTorch sets it to its intra-op
  /// thread count, at::get_num_threads(), which counts physical cores). Copies below 256 KiB always
  /// run on the calling thread, and so does a call made from inside another OpenMP parallel region,
  /// so LibTorch's own pool is never oversubscribed.
  int num_threads = 0;
  /// Streaming stores on the CPU (ignored on CUDA). For benchmarks and tests; Auto is right
  /// for almost everyone.
  CpuStreaming cpu_streaming = CpuStreaming::Auto;
  /// On a CUDA plan, a call given device scalars (a Factor::device, GatherOptions' outputs)
  /// asks the driver whether each is memory of the plan's device (cudaPointerGetAttributes:
  /// host time on every call, per pointer). false skips that query (alignment is still
  /// checked); a pointer to other memory then faults in the kernel or reads the wrong data.
  /// For callers that know where their memory is: the LibTorch adapter turns it off, since it
  /// checks its tensors' devices itself.
  bool check_pointers = true;
  /// Task size and schedule on the CPU (ignored on CUDA). For benchmarks and tests.
  CpuTuning cpu_tuning = {};
};

/// A multiplier for gather, scatter and scatter_add: a host number, or one float32 that the
/// call reads from memory on the plan's device when it runs (a 0-dim tensor such as
/// `1 / loss_scale` or `-lr * clip_coef`), so nothing waits for the host.
///
///   plan.scatter_add(flat, n, flatgather::Factor::device(d_alpha));
struct Factor {
  double value = 1.0;              ///< used when `d_value` is null
  const float* d_value = nullptr;  ///< one float32 on the plan's device (host memory on CPU)

  Factor() = default;
  Factor(double v) : value(v) {}  // NOLINT(google-explicit-constructor): a number is a Factor
  static Factor device(const float* d_value) {
    Factor f;
    f.d_value = d_value;
    return f;
  }
};

/// What a gather computes in the same pass (NOTE: [gather statistics] in src/stats.h). Every
/// pointer is memory of the plan's device (host memory for a CPU plan), float32, 4-byte
/// aligned, and written by the call on its stream: nothing is copied to the host. A null
/// pointer means "not asked for".
///
///   GatherOptions o; o.d_norm = d_norm; o.d_clip_coef = d_coef; o.max_norm = 1.0;
struct GatherOptions {
  /// Every written value is `cast_to_flat(source * scale)` (unscaling by 1 / loss_scale).
  Factor scale;
  /// The L2 norm of the values as written to the flat buffer (after the scale and the cast to
  /// the flat dtype; padding adds nothing).
  float* d_norm = nullptr;
  /// One L2 norm per segment (layout().segments() order: aliases counted once; empty and
  /// missing tensors give 0), layout().segments().size() floats.
  float* d_tensor_norms = nullptr;
  /// 1.0 when any SOURCE value (before the scale) is NaN or infinite, else 0.0 (GradScaler's
  /// found_inf convention).
  float* d_found_inf = nullptr;
  /// `min(1, max_norm / (norm + 1e-6))` in float32 (clip_grad_norm_'s formula); needs
  /// max_norm > 0.
  float* d_clip_coef = nullptr;
  double max_norm = 0.0;

  /// True when any statistic is asked for.
  bool wants_stats() const { return d_norm || d_tensor_norms || d_found_inf || d_clip_coef; }
};

namespace detail {
class Executor;
}

/// A flat layout plus everything needed to move data between the tensors and a flat buffer.
///
/// Building validates the tensors, computes the layout and (for CUDA tensors) uploads the
/// device-side table once. Afterwards every gather/scatter/scatter_add is one pass over the
/// data (one kernel launch on CUDA) with no allocation.
///
/// Thread safety (docs/reliability.md): a built plan changes only through rebind. gather may
/// run from several threads at once, each into its own flat buffer (on CUDA, on any streams).
/// scatter and scatter_add write the plan's tensors, so calls running at once must write
/// disjoint tensors: two concurrent scatters through one plan, or a scatter concurrent with a
/// gather of the same tensors, race on those tensors. rebind must not run concurrently with
/// anything else on the same plan.
///
///   auto plan = flatgather::Plan::build({w, b});
///   std::vector<float> flat(plan.layout().numel());
///   plan.gather(flat.data(), flat.size());
class Plan {
 public:
  /// Validates `tensors` and builds the plan. Throws flatgather::Error naming the offending
  /// tensor for: an empty list, mixed devices, mixed dtypes without `flat_dtype`, an
  /// unsupported cast, a null data pointer on a non-empty tensor, negative sizes, more
  /// dimensions than supported after merging contiguous ones, or sizes whose bytes overflow.
  static Plan build(std::vector<TensorRef> tensors, const PlanOptions& options = {});

  Plan();
  ~Plan();
  Plan(Plan&&) noexcept;
  Plan& operator=(Plan&&) noexcept;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;

  const Layout& layout() const;
  Device device() const;
  /// The tensors given to build, in order (aliases included).
  const std::vector<TensorRef>& tensors() const;
  /// Index into layout().segments() of the tensor at `tensor_index`.
  std::size_t segment_of(std::size_t tensor_index) const;
  /// False when two distinct tensors partially overlap in memory: such a plan can gather but
  /// scatter and scatter_add throw.
  bool writable() const;

  /// Writes every tensor into `flat` (padding as zeros). `flat` holds `flat_numel` elements of
  /// layout().flat_dtype() on device(); it must equal layout().numel() and must not overlap
  /// any source tensor.
  void gather(void* flat, std::int64_t flat_numel, cudaStream_t stream = nullptr) const;
  /// gather with a scale and statistics computed in the same pass (one launch on CUDA, no
  /// allocation, no host sync; deterministic: NOTE: [gather statistics]). Throws when a
  /// statistic or a non-unit scale is asked of a plan with non-floating tensors, or for
  /// d_clip_coef without max_norm > 0. On CUDA the partial sums live in the plan's scratch,
  /// so two gathers with statistics through one plan must not run at once (on two streams).
  void gather(void* flat, std::int64_t flat_numel, const GatherOptions& options,
              cudaStream_t stream = nullptr) const;
  /// Writes `flat` back into the tensors (cast to each tensor's dtype).
  void scatter(const void* flat, std::int64_t flat_numel, cudaStream_t stream = nullptr) const;
  /// Writes `scale * flat` back into the tensors, computed in float32 (float64 when either
  /// side is float64), then rounded to each tensor's dtype.
  void scatter(const void* flat, std::int64_t flat_numel, const Factor& scale,
               cudaStream_t stream = nullptr) const;
  /// `t += alpha * segment` for every tensor, computed in float32 (float64 when either side
  /// is float64) with one fused multiply-add, then rounded to the tensor's dtype. Refused for
  /// a byte buffer (flat dtype uint8).
  void scatter_add(const void* flat, std::int64_t flat_numel, double alpha,
                   cudaStream_t stream = nullptr) const;
  /// scatter_add whose alpha may be read from device memory when the call runs.
  void scatter_add(const void* flat, std::int64_t flat_numel, const Factor& alpha,
                   cudaStream_t stream = nullptr) const;

  /// Points segment `segment_index` at new memory of the same dtype, sizes and strides (a
  /// gradient that was reallocated). On CUDA this is one small upload ordered on `stream`;
  /// it throws while `stream` is being captured into a CUDA graph.
  /// A null `data` marks the tensor missing (gather writes zeros, scatter skips it), as for
  /// an undefined gradient under the zero-fill policy. Every tensor of a tied segment is
  /// assumed to have moved with it.
  void rebind(std::size_t segment_index, void* data, cudaStream_t stream = nullptr);
  /// Several rebinds at once (one upload on CUDA): pairs of segment index and data pointer.
  void rebind(const std::vector<std::pair<std::size_t, void*>>& changes,
              cudaStream_t stream = nullptr);

  /// The executor's name and tuning, e.g. "cpu (threads=2, tasks=40, task_bytes=262144,
  /// loops=avx2+fma, streaming=off)". loops: baseline, avx2+fma or avx2+fma+avx512bf16, the
  /// CPU loops this process chose (FLATGATHER_CPU_ISA narrows the choice; every choice gives
  /// the same bits).
  std::string describe() const;

 private:
  struct State;
  const State& state() const;
  std::unique_ptr<State> state_;
};

/// True when the library was built with CUDA and at least one device can be used.
bool cuda_available();

/// Number of usable CUDA devices (0 when built without CUDA or when no device is present).
int cuda_device_count();

}  // namespace flatgather
