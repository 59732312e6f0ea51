#pragma once
// Internal: the interface between a Plan and the code that moves the bytes.

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "copy_desc.h"
#include "flatgather/plan.h"
#include "stats.h"

namespace flatgather {
namespace detail {

/// What an executor is built from: the copies (padding included, ordered by flat offset,
/// covering [0, flat_numel) exactly) and the flat dtype.
struct ExecutorInput {
  std::vector<CopyDesc> copies;
  DType flat_dtype = DType::Float32;
  std::int64_t flat_numel = 0;
  Device device;
  int num_threads = 0;
  std::int32_t num_segments = 0;  ///< Layout::segments().size() (empty tensors included)
  CpuStreaming cpu_streaming = CpuStreaming::Auto;
  CpuTuning cpu_tuning = {};  ///< checked by detail::validate
};

/// Moves bytes for one plan. gather/scatter/scatter_add are const and thread-safe; rebind
/// is not.
class Executor {
 public:
  virtual ~Executor() = default;
  virtual void gather(void* flat, cudaStream_t stream) const = 0;
  /// gather plus the statistics of `request` (NOTE: [gather statistics] in src/stats.h).
  virtual void gather_stats(void* flat, const StatsRequest& request, cudaStream_t stream) const = 0;
  /// `scale` is a host value or a float32 on the plan's device (plan.h Factor).
  virtual void scatter(const void* flat, const Factor& scale, cudaStream_t stream) const = 0;
  virtual void scatter_add(const void* flat, const Factor& alpha, cudaStream_t stream) const = 0;
  /// For each (segment, data) pair, changes the data pointer of every copy whose `segment`
  /// equals it (null: a zero-filled placeholder). All changes land together (on CUDA: one
  /// upload ordered on `stream`), or none when it throws.
  virtual void rebind(const std::vector<std::pair<int, void*>>& changes, cudaStream_t stream) = 0;
  virtual std::string describe() const = 0;
};

std::unique_ptr<Executor> make_cpu_executor(ExecutorInput input);

/// Empty when `p` is null or memory that a kernel on CUDA device `device` can use (its own
/// device memory, or managed memory); else what it is ("is host memory", "is memory of
/// cuda:1"), for the plan's error message. Always empty without CUDA.
std::string cuda_pointer_problem(const void* p, int device);

/// Defined in cuda_executor.cpp when FLATGATHER_CUDA is on, else in cuda_stub.cpp (which
/// throws "built without CUDA").
std::unique_ptr<Executor> make_cuda_executor(ExecutorInput input);

}  // namespace detail
}  // namespace flatgather
