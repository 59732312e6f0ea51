// Validation of the tensors and options of Plan::build: the one place that checks user
// input (STYLE.md "The plan validates, executors assert"); every message names the tensor.

#include "validate.h"

#include <cstdint>
#include <string>

#include "executor.h"
#include "flatgather/config.h"
#include "check.h"

namespace flatgather {
namespace detail {

namespace {
std::string describe_tensor(const TensorRef& t) {
  return describe(t);
}
}  // namespace

bool is_aligned(const void* p, DType dtype) {
  return reinterpret_cast<std::uintptr_t>(p) % static_cast<std::uintptr_t>(dtype_size(dtype)) == 0;
}

void check_device_memory(const TensorRef& t, const void* data, const char* context) {
  if (!t.device.is_cuda() || data == nullptr) return;
  const std::string problem = cuda_pointer_problem(data, t.device.index);
  FG_CHECK(problem.empty(),
           context << "tensor " << describe_tensor(t) << ": its data pointer " << data << " "
                   << problem << "; a plan on " << to_string(t.device)
                   << " needs memory of that device (cudaMalloc, a CUDA tensor) or managed "
                      "memory");
}

void validate(std::vector<TensorRef>& tensors, const PlanOptions& options) {
  FG_CHECK(!tensors.empty(),
           "empty selection: there are no tensors to plan; select at least one tensor");
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    TensorRef& t = tensors[i];
    if (t.name.empty()) t.name = "tensor[" + std::to_string(i) + "]";
    // Sizes first, as the default strides below are their products; the product of the
    // non-zero sizes is bounded too, so that no stride product overflows.
    std::int64_t n = 1, span = 1;
    for (std::int64_t s : t.sizes) {
      FG_CHECK(s >= 0, "tensor " << describe_tensor(t) << " has a negative size");
      FG_CHECK(s == 0 || span <= kMaxBytes / dtype_size(t.dtype) / s,
               "tensor " << describe_tensor(t) << " is too large: its byte size overflows 2^62");
      if (s > 0) span *= s;
      n = s == 0 ? 0 : n * s;
    }
    if (t.strides.empty()) {
      t.strides.assign(t.sizes.size(), 1);
      for (std::size_t d = t.sizes.size(); d-- > 1;) t.strides[d - 1] = t.strides[d] * t.sizes[d];
    }
    FG_CHECK(t.strides.size() == t.sizes.size(),
             "tensor " << describe_tensor(t) << " has " << t.strides.size() << " strides for "
                       << t.sizes.size() << " sizes; give one stride per dimension");
    std::int64_t reach = 0;  // elements between the first and the farthest element
    for (std::size_t d = 0; d < t.sizes.size() && n > 0; ++d) {
      if (t.sizes[d] <= 1) continue;
      const std::int64_t limit = (kMaxBytes / dtype_size(t.dtype) - reach) / (t.sizes[d] - 1);
      FG_CHECK(t.strides[d] >= -limit && t.strides[d] <= limit,
               "tensor " << describe_tensor(t) << " has stride " << t.strides[d] << " in dimension "
                         << d << ", which reaches beyond 2^62 bytes");
      reach += (t.sizes[d] - 1) * (t.strides[d] < 0 ? -t.strides[d] : t.strides[d]);
    }
    FG_CHECK(!(t.zero_fill && t.data), "tensor " << describe_tensor(t)
                                                 << " is marked zero_fill but has data; a "
                                                    "zero-fill placeholder must have null data");
    FG_CHECK(
        t.data || t.zero_fill || n == 0,
        "tensor " << describe_tensor(t) << " has no data (null pointer): pass a defined tensor");
    FG_CHECK(is_aligned(t.data, t.dtype),
             "tensor " << describe_tensor(t) << " has data pointer " << t.data
                       << ", which is not a multiple of its element size (" << dtype_size(t.dtype)
                       << " bytes); pass element-aligned memory");
    FG_CHECK(t.device == tensors[0].device,
             "tensor " << describe_tensor(t) << " is on " << to_string(t.device) << " but tensor "
                       << describe_tensor(tensors[0]) << " is on " << to_string(tensors[0].device)
                       << "; all tensors of a plan must be on one device");
    if (options.flat_dtype) {
      // A uint8 flat buffer takes every dtype byte for byte (NOTE: [byte plans]).
      FG_CHECK(*options.flat_dtype == DType::UInt8 || cast_supported(t.dtype, *options.flat_dtype),
               "tensor " << describe_tensor(t) << " cannot be cast to the flat dtype "
                         << dtype_name(*options.flat_dtype)
                         << "; casts are supported between float32, float16, bfloat16 and "
                            "float64. For other dtypes use a byte buffer (flat dtype uint8, "
                            "every dtype copied byte for byte), a flat buffer of their own "
                            "dtype, or leave them out of this plan");
    } else {
      FG_CHECK(t.dtype == tensors[0].dtype,
               "mixed dtypes: tensor " << describe_tensor(t) << " is " << dtype_name(t.dtype)
                                       << " but tensor " << describe_tensor(tensors[0]) << " is "
                                       << dtype_name(tensors[0].dtype)
                                       << "; pass flat dtype uint8 for a byte buffer that holds "
                                          "every dtype byte for byte, or flat dtype float32 to "
                                          "cast them when all are floating, or exclude the "
                                          "integer and bool tensors, or plan each dtype "
                                          "separately");
    }
  }
#if defined(FLATGATHER_WITH_CUDA)
  // After the per-tensor checks (one device for all): the device exists, and every pointer
  // is memory a kernel on it can use (else the kernel faults and kills the CUDA context).
  if (tensors[0].device.is_cuda()) {
    const int count = cuda_device_count();
    FG_CHECK(tensors[0].device.index >= 0 && tensors[0].device.index < count,
             "tensor " << describe_tensor(tensors[0]) << " is on " << to_string(tensors[0].device)
                       << " but " << count << " CUDA device(s) can be used; use a device in [0, "
                       << count << ")");
    for (const TensorRef& t : tensors) check_device_memory(t, t.data, "");
  }
#endif
  const std::int64_t a = options.align_bytes;
  const int flat_size = dtype_size(options.flat_dtype.value_or(tensors[0].dtype));
  FG_CHECK(a >= 0 && (a & (a - 1)) == 0 && (a <= 1 || a >= flat_size),
           "align_bytes must be 0 (no padding) or a power of two no smaller than the flat "
           "element size ("
               << flat_size << " bytes), e.g. 16, 128, 256; got " << a);
  const CpuTuning& cpu = options.cpu_tuning;
  FG_CHECK(cpu.task_bytes >= 0, "cpu_tuning.task_bytes must be 0 (the default: "
                                    << kCpuMinTaskBytes << " to " << kCpuTaskBytes
                                    << " by the call's size) or a positive number of bytes "
                                       "moved per task; got "
                                    << cpu.task_bytes);
  FG_CHECK(cpu.schedule == CpuSchedule::Dynamic || cpu.schedule == CpuSchedule::Static,
           "cpu_tuning.schedule must be CpuSchedule::Dynamic or CpuSchedule::Static; got "
               << static_cast<int>(cpu.schedule));
}

}  // namespace detail
}  // namespace flatgather
