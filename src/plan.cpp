#include "flatgather/plan.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>

#include "check.h"
#include "executor.h"
#include "layout_build.h"
#include "validate.h"

namespace flatgather {

namespace {

std::string fg_describe(const TensorRef& t) {
  return describe(t);
}

using detail::is_aligned;

struct Extent {
  std::uintptr_t lo = 0;
  std::uintptr_t hi = 0;  // one past the last byte
  std::size_t tensor = 0;
};

// Byte range a tensor's elements can touch.
Extent extent_of(const TensorRef& t, std::size_t index) {
  const auto base = reinterpret_cast<std::uintptr_t>(t.data);
  std::int64_t low = 0, high = 0;
  for (std::size_t d = 0; d < t.sizes.size(); ++d) {
    const std::int64_t span = (t.sizes[d] - 1) * t.strides[d];
    (span < 0 ? low : high) += span;
  }
  const std::int64_t es = dtype_size(t.dtype);
  return {base + static_cast<std::uintptr_t>(low * es),
          base + static_cast<std::uintptr_t>((high + 1) * es), index};
}

// True when two distinct elements of `t` share memory (a stride of 0, or strides that
// interleave). Checked on the coalesced dims sorted by stride.
bool has_internal_overlap(const detail::CopyDesc& d) {
  if (d.contiguous || d.numel <= 1) return false;
  std::vector<std::pair<std::int64_t, std::int64_t>> dims;  // |stride|, size
  for (int i = 0; i < d.ndim; ++i) dims.emplace_back(std::abs(d.strides[i]), d.sizes[i]);
  std::sort(dims.begin(), dims.end());
  std::int64_t reach = 1;  // elements spanned by the smaller dims
  for (const auto& [stride, size] : dims) {
    if (stride < reach) return true;
    reach = stride * (size - 1) + reach;
  }
  return false;
}

}  // namespace

struct Plan::State {
  std::vector<TensorRef> tensors;
  std::vector<std::size_t> segment_of;
  std::vector<std::size_t> first_tensor;  // per segment
  Layout layout;
  Device device;
  bool check_pointers = true;    // PlanOptions::check_pointers
  std::string overlap;           // why scatter is refused; empty when writable
  std::string internal_overlap;  // a tensor whose elements share memory (fixed at build)
  std::string not_floating;      // the first tensor scatter_add cannot update, described
  std::vector<Extent> extents;   // sorted by lo, `hi` a running maximum: see check_flat
  std::unique_ptr<detail::Executor> executor;

  std::vector<Extent> raw_extents() const {
    std::vector<Extent> out;
    for (std::size_t i : first_tensor) {
      const TensorRef& t = tensors[i];
      if (t.data && numel(t) > 0) out.push_back(extent_of(t, i));
    }
    std::sort(out.begin(), out.end(), [](const Extent& a, const Extent& b) { return a.lo < b.lo; });
    return out;
  }

  void refresh_extents() {
    extents = raw_extents();
    for (std::size_t k = 1; k < extents.size(); ++k) {
      if (extents[k].hi < extents[k - 1].hi) {
        extents[k].hi = extents[k - 1].hi;
        extents[k].tensor = extents[k - 1].tensor;
      }
    }
  }

  // Why scatter must be refused, after build or rebind (NOTE: [rebind overlap]).
  void refresh_overlap() { overlap = internal_overlap.empty() ? find_overlap() : internal_overlap; }

  // Describes the first pair of distinct segments whose memory overlaps, or "".
  std::string find_overlap() const {
    const std::vector<Extent> sorted = raw_extents();
    std::size_t widest = 0;
    for (std::size_t k = 1; k < sorted.size(); ++k) {
      if (sorted[k].lo < sorted[widest].hi) {
        return "tensors " + fg_describe(tensors[sorted[widest].tensor]) + " and " +
               fg_describe(tensors[sorted[k].tensor]) +
               " overlap in memory without being the same tensor";
      }
      if (sorted[k].hi > sorted[widest].hi) widest = k;
    }
    return "";
  }

  void check_flat(const void* flat, std::int64_t flat_numel, const char* op) const {
    FG_CHECK(flat_numel == layout.numel(), op << ": the flat buffer has " << flat_numel
                                              << " elements but the layout needs " << layout.numel()
                                              << " (" << dtype_name(layout.flat_dtype()) << ")");
    if (layout.numel() == 0) return;
    FG_CHECK(flat != nullptr, op << ": the flat buffer is a null pointer");
    FG_CHECK(is_aligned(flat, layout.flat_dtype()),
             op << ": the flat buffer " << flat << " is not aligned to its element size ("
                << dtype_size(layout.flat_dtype()) << " bytes, " << dtype_name(layout.flat_dtype())
                << ")");
    const auto lo = reinterpret_cast<std::uintptr_t>(flat);
    const auto hi = lo + static_cast<std::uintptr_t>(layout.nbytes());
    // The first extent that ends after `lo`, among extents sorted by start and kept with a
    // running maximum of ends, is the only candidate for an overlap.
    auto it = std::upper_bound(extents.begin(), extents.end(), lo,
                               [](std::uintptr_t v, const Extent& e) { return v < e.hi; });
    if (it != extents.end() && it->lo < hi) {
      FG_CHECK(false, op << ": the flat buffer overlaps the memory of tensor "
                         << fg_describe(tensors[it->tensor])
                         << "; use a flat buffer that does not alias its own sources");
    }
  }
};

Plan Plan::build(std::vector<TensorRef> tensors, const PlanOptions& options) {
  detail::validate(tensors, options);
  auto state = std::make_unique<State>();
  const DType flat_dtype = options.flat_dtype.value_or(tensors[0].dtype);
  detail::LayoutBuild built = detail::build_layout(tensors, flat_dtype, options.align_bytes);
  state->first_tensor = std::move(built.first_tensor);

  detail::ExecutorInput input;
  input.copies = std::move(built.copies);
  input.flat_dtype = flat_dtype;
  input.flat_numel = built.layout.numel();
  input.device = tensors[0].device;
  input.num_threads = options.num_threads;
  input.num_segments = static_cast<std::int32_t>(built.layout.segments().size());
  input.cpu_streaming = options.cpu_streaming;
  input.cpu_tuning = options.cpu_tuning;

  // Overlaps: within one tensor, and between distinct segments.
  for (const detail::CopyDesc& d : built.segment_copies) {
    if (d.data && has_internal_overlap(d) && state->internal_overlap.empty()) {
      state->internal_overlap =
          "tensor " + fg_describe(tensors[state->first_tensor[d.segment]]) +
          " has elements that share memory (a stride of 0, e.g. from expand())";
    }
  }
  state->layout = std::move(built.layout);
  state->device = tensors[0].device;
  state->check_pointers = options.check_pointers;
  state->segment_of = std::move(built.segment_of);
  state->tensors = std::move(tensors);
  for (const TensorRef& t : state->tensors) {
    if (!dtype_is_floating(t.dtype) && state->not_floating.empty())
      state->not_floating = fg_describe(t);
  }
  FG_CHECK(input.copies.size() < static_cast<std::size_t>(INT32_MAX),
           "a plan holds at most 2^31 - 1 copies (segments and padding); got "
               << input.copies.size() << ": split the tensors into several plans");
  state->refresh_extents();
  state->refresh_overlap();
  state->executor = state->device.is_cuda() ? detail::make_cuda_executor(std::move(input))
                                            : detail::make_cpu_executor(std::move(input));
  Plan plan;
  plan.state_ = std::move(state);
  return plan;
}

Plan::Plan() = default;
Plan::~Plan() = default;
Plan::Plan(Plan&&) noexcept = default;
Plan& Plan::operator=(Plan&&) noexcept = default;

const Plan::State& Plan::state() const {
  FG_CHECK(state_ != nullptr,
           "this plan is empty (default-constructed or moved from); build one "
           "with Plan::build");
  return *state_;
}

const Layout& Plan::layout() const {
  return state().layout;
}
Device Plan::device() const {
  return state().device;
}
const std::vector<TensorRef>& Plan::tensors() const {
  return state().tensors;
}
std::size_t Plan::segment_of(std::size_t tensor_index) const {
  const State& s = state();
  FG_CHECK(tensor_index < s.segment_of.size(), "tensor index "
                                                   << tensor_index << " out of range; the plan has "
                                                   << s.segment_of.size() << " tensors");
  return s.segment_of[tensor_index];
}
bool Plan::writable() const {
  return state().overlap.empty();
}

void Plan::gather(void* flat, std::int64_t flat_numel, cudaStream_t stream) const {
  const State& s = state();
  s.check_flat(flat, flat_numel, "gather");
  if (flat_numel > 0) s.executor->gather(flat, stream);
}

namespace {

// A float32 the caller hands to a call (a Factor's value, a statistic's output): 4-byte
// aligned, and on a CUDA plan memory of its device (a driver query, skipped when `device_query`
// is false: PlanOptions::check_pointers).
void check_scalar_memory(const void* p, Device device, bool device_query, const char* op,
                         const char* what) {
  if (p == nullptr) return;
  FG_CHECK(is_aligned(p, DType::Float32),
           op << ": " << what << " " << p << " is not aligned to 4 bytes (float32)");
  if (!device.is_cuda() || !device_query) return;
  const std::string problem = detail::cuda_pointer_problem(p, device.index);
  FG_CHECK(problem.empty(), op << ": " << what << " " << p << " " << problem << "; a plan on "
                               << to_string(device)
                               << " needs float32 memory of that device (a CUDA tensor)");
}

}  // namespace

void Plan::gather(void* flat, std::int64_t flat_numel, const GatherOptions& options,
                  cudaStream_t stream) const {
  const State& s = state();
  const bool scaled = options.scale.d_value != nullptr || options.scale.value != 1.0;
  if (!options.wants_stats() && !scaled) return gather(flat, flat_numel, stream);
  FG_CHECK(s.not_floating.empty(),
           "gather: tensor " << s.not_floating
                             << " is not floating point; a scale and gradient statistics need "
                                "float32, float16, bfloat16 or float64 tensors");
  FG_CHECK(
      options.d_clip_coef == nullptr || (options.max_norm > 0 && std::isfinite(options.max_norm)),
      "gather: clip_coef needs max_norm > 0 (clip_grad_norm_'s max_norm); got "
          << options.max_norm);
  check_scalar_memory(options.scale.d_value, s.device, s.check_pointers, "gather", "the scale");
  check_scalar_memory(options.d_norm, s.device, s.check_pointers, "gather", "the norm output");
  check_scalar_memory(options.d_tensor_norms, s.device, s.check_pointers, "gather",
                      "the tensor_norms output");
  check_scalar_memory(options.d_found_inf, s.device, s.check_pointers, "gather",
                      "the found_inf output");
  check_scalar_memory(options.d_clip_coef, s.device, s.check_pointers, "gather",
                      "the clip_coef output");
  s.check_flat(flat, flat_numel, "gather");
  detail::StatsRequest r;
  r.scale = options.scale.value;
  r.d_scale = options.scale.d_value;
  r.d_norm = options.d_norm;
  r.d_tensor_norms = options.d_tensor_norms;
  r.d_found_inf = options.d_found_inf;
  r.d_clip_coef = options.d_clip_coef;
  r.max_norm = options.max_norm;
  r.num_segments = static_cast<std::int32_t>(s.layout.segments().size());
  // Runs even when the flat buffer is empty: the statistics are still written (zeros).
  s.executor->gather_stats(flat, r, stream);
}

void Plan::scatter(const void* flat, std::int64_t flat_numel, cudaStream_t stream) const {
  scatter(flat, flat_numel, Factor(), stream);
}

void Plan::scatter(const void* flat, std::int64_t flat_numel, const Factor& scale,
                   cudaStream_t stream) const {
  const State& s = state();
  FG_CHECK(s.overlap.empty(), "scatter: " << s.overlap
                                          << "; scatter would write the same bytes twice. "
                                             "Plan such tensors separately or gather only");
  const bool scaled = scale.d_value != nullptr || scale.value != 1.0;
  FG_CHECK(!scaled || s.not_floating.empty(),
           "scatter: tensor " << s.not_floating
                              << " is not floating point; a scale needs float32, float16, "
                                 "bfloat16 or float64 tensors");
  check_scalar_memory(scale.d_value, s.device, s.check_pointers, "scatter", "the scale");
  s.check_flat(flat, flat_numel, "scatter");
  if (flat_numel > 0) s.executor->scatter(flat, scale, stream);
}

void Plan::scatter_add(const void* flat, std::int64_t flat_numel, double alpha,
                       cudaStream_t stream) const {
  scatter_add(flat, flat_numel, Factor(alpha), stream);
}

void Plan::scatter_add(const void* flat, std::int64_t flat_numel, const Factor& alpha,
                       cudaStream_t stream) const {
  const State& s = state();
  FG_CHECK(s.overlap.empty(), "scatter_add: " << s.overlap
                                              << "; scatter_add would update the same bytes "
                                                 "twice. Plan such tensors separately");
  FG_CHECK(s.layout.flat_dtype() != DType::UInt8,
           "scatter_add: the flat buffer is uint8, a byte buffer (every dtype copied byte for "
           "byte) whose bytes are copied, not added; scatter_add needs a floating flat dtype: "
           "plan the floating tensors with flat dtype float32 (or their own) for updates");
  FG_CHECK(s.not_floating.empty(), "scatter_add: tensor "
                                       << s.not_floating
                                       << " is not floating point; scatter_add needs float32, "
                                          "float16, bfloat16 or float64 tensors");
  check_scalar_memory(alpha.d_value, s.device, s.check_pointers, "scatter_add", "alpha");
  s.check_flat(flat, flat_numel, "scatter_add");
  if (flat_numel > 0) s.executor->scatter_add(flat, alpha, stream);
}

void Plan::rebind(std::size_t segment_index, void* data, cudaStream_t stream) {
  rebind({{segment_index, data}}, stream);
}

void Plan::rebind(const std::vector<std::pair<std::size_t, void*>>& changes, cudaStream_t stream) {
  FG_CHECK(state_ != nullptr, "rebind on an empty plan");
  State& s = *state_;
  for (const auto& [segment_index, data] : changes) {
    FG_CHECK(segment_index < s.layout.segments().size(),
             "rebind: segment " << segment_index << " out of range; the layout has "
                                << s.layout.segments().size() << " segments");
    const TensorRef& t = s.tensors[s.first_tensor[segment_index]];
    FG_CHECK(is_aligned(data, t.dtype), "rebind: data pointer " << data << " for tensor "
                                                                << fg_describe(t)
                                                                << " is not aligned to its "
                                                                   "element size");
    detail::check_device_memory(t, data, "rebind: ");
  }
  std::vector<std::pair<int, void*>> executor_changes;
  executor_changes.reserve(changes.size());
  for (const auto& [segment_index, data] : changes) {
    executor_changes.emplace_back(static_cast<int>(segment_index), data);
  }
  s.executor->rebind(executor_changes, stream);  // one upload on CUDA; throws before any change
  for (const auto& [segment_index, data] : changes) {
    TensorRef& t = s.tensors[s.first_tensor[segment_index]];
    t.data = data;
    t.zero_fill = data == nullptr;
  }
  // NOTE: [rebind overlap]
  // Overlaps decide whether scatter and scatter_add may run (two warps or threads writing
  // the same bytes race). Build analyses them; a rebind can create one (a segment moved onto
  // memory another segment uses) or remove one, so it analyses them again, on every
  // executor: scatter then refuses with the same message as for a plan built that way.
  s.refresh_extents();
  s.refresh_overlap();
}

std::string Plan::describe() const {
  return state().executor->describe();
}

}  // namespace flatgather
