// flatgather as PyTorch operators: TORCH_LIBRARY(flatgather, ...) and the TorchScript class
// `torch.classes.flatgather.Plan`, both thin wrappers over the adapter
// (include/flatgather/torch.h). Python loads this library with torch.ops.load_library
// (python/flatgather/_library.py); no pybind11, no second build system.
//
// NOTE: [operator registration]
// Every operator is registered as a catch-all kernel (`m.def(schema, function)`), which the
// dispatcher treats as CompositeImplicitAutograd:
//  - the adapter picks the CPU or CUDA executor from the tensors' device itself, so a kernel per
//    backend key would only repeat the same function;
//  - an empty tensor list has no device to dispatch on; a backend-keyed kernel would fail inside
//    the dispatcher, the catch-all one reaches the library and its "empty list" message;
//  - none of these kernels is differentiable by itself, and none records autograd history (the
//    copies run below LibTorch). Differentiation lives in Python (a torch.autograd.Function in
//    python/flatgather/_plan.py whose backward is made of differentiable torch ops), so a
//    catch-all kernel costs nothing under no_grad and adds no autograd fallback in between.
// The writes of scatter/scatter_add bypass LibTorch; the adapter bumps each written tensor's
// version counter (NOTE: [version counters] in src/torch/adapter.cpp).
//
// NOTE: [errors across the boundary]
// flatgather::Error (and any other std::exception) is rethrown as c10::Error with the same text,
// so Python always sees a RuntimeError carrying the library's message, whether the call came
// through torch.ops, a TorchScript class method or TorchScript code. Every plan made here has
// Options::spelling = Python, so those messages name options as Python code writes them
// (NOTE: [spelling] in src/torch/spelling.h).

#include <cstdint>
#include <exception>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/custom_class.h>
#include <torch/library.h>
#include <torch/version.h>

#include "flatgather/config.h"
#include "check.h"
#include "flatgather/error.h"
#include "flatgather/plan.h"
#include "flatgather/torch.h"
#include "op_util.h"
#include "flatgather/torch_safetensors.h"

namespace {

namespace fgt = flatgather::torch;

using flatgather::torch::detail::named_tensors;
using flatgather::torch::detail::throw_invalid;
using flatgather::torch::detail::translate_errors;

fgt::Options make_options(c10::optional<at::ScalarType> dtype, std::int64_t align_bytes,
                          std::int64_t num_threads, bool check_tensors) {
  fgt::Options options;
  if (dtype.has_value()) options.dtype = *dtype;
  options.align_bytes = align_bytes;
  options.num_threads = static_cast<int>(num_threads);
  options.check_tensors = check_tensors;
  options.spelling = fgt::Spelling::Python;  // NOTE: [errors across the boundary]
  return options;
}

/// The TorchScript class `torch.classes.flatgather.Plan`: one adapter plan.
struct ScriptPlan : torch::CustomClassHolder {
  explicit ScriptPlan(fgt::Plan p) : plan(std::move(p)) {}

  fgt::Plan plan;

  /// `field(segment)` for every segment, in flat order.
  template <class F>
  auto per_segment(F&& field) const {
    std::vector<std::decay_t<decltype(field(std::declval<const flatgather::Segment&>()))>> out;
    for (const flatgather::Segment& s : plan.layout().segments()) out.push_back(field(s));
    return out;
  }

  at::Tensor gather() const {
    return translate_errors([&] { return plan.gather(); });
  }
  void gather_into(const at::Tensor& out) const {
    translate_errors([&] { plan.gather(out); });
  }
  void scatter(const at::Tensor& flat) const {
    translate_errors([&] { plan.scatter(flat); });
  }
  void scatter_add(const at::Tensor& flat, double alpha) const {
    translate_errors([&] { plan.scatter_add(flat, alpha); });
  }
  // gather with statistics (src/torch/stats.cpp): `scale_tensor`, when given, replaces `scale`;
  // returns (norm, tensor_norms, found_inf, clip_coef), None where not asked for.
  using Stats = std::tuple<c10::optional<at::Tensor>, c10::optional<at::Tensor>,
                           c10::optional<at::Tensor>, c10::optional<at::Tensor>>;
  Stats gather_stats(const at::Tensor& out, double scale,
                     const c10::optional<at::Tensor>& scale_tensor, bool norm, bool tensor_norms,
                     bool check_finite, c10::optional<double> max_norm) const {
    return translate_errors([&] {
      fgt::StatsOptions o;
      o.scale = factor(scale, scale_tensor);
      o.norm = norm;
      o.tensor_norms = tensor_norms;
      o.check_finite = check_finite;
      if (max_norm.has_value()) o.max_norm = *max_norm;
      const fgt::GatherStats st = plan.gather(out, o);
      auto opt = [](const at::Tensor& t) {
        return t.defined() ? c10::optional<at::Tensor>(t) : c10::nullopt;
      };
      return Stats{opt(st.norm), opt(st.tensor_norms), opt(st.found_inf), opt(st.clip_coef)};
    });
  }
  void scatter_scaled(const at::Tensor& flat, double scale,
                      const c10::optional<at::Tensor>& scale_tensor) const {
    translate_errors([&] { plan.scatter(flat, factor(scale, scale_tensor)); });
  }
  void scatter_add_factor(const at::Tensor& flat, double alpha,
                          const c10::optional<at::Tensor>& alpha_tensor) const {
    translate_errors([&] { plan.scatter_add(flat, factor(alpha, alpha_tensor)); });
  }
  static fgt::Factor factor(double value, const c10::optional<at::Tensor>& tensor) {
    return tensor.has_value() ? fgt::Factor(*tensor) : fgt::Factor(value);
  }
  std::vector<at::Tensor> views(const at::Tensor& flat) const {
    return translate_errors([&] { return plan.views(flat); });
  }
  at::Tensor empty_flat() const {
    return translate_errors([&] { return plan.empty_flat(); });
  }
  std::vector<at::Tensor> tensors() const {
    return translate_errors([&] { return plan.tensors(); });
  }
  std::string manifest(std::int64_t indent) const {
    return translate_errors([&] { return plan.manifest(static_cast<int>(indent)); });
  }
  void check_manifest(const std::string& json) const {
    translate_errors([&] { plan.check_manifest(json); });
  }

  // Layout facts, read once by the Python wrapper.
  std::int64_t numel() const { return plan.numel(); }
  std::string dtype() const { return flatgather::dtype_name(plan.layout().flat_dtype()); }
  std::string device() const { return plan.device().str(); }
  std::int64_t align_bytes() const { return plan.layout().align_bytes(); }
  bool writable() const { return plan.core().writable(); }
  std::string describe() const { return plan.core().describe(); }
  std::vector<std::string> names() const { return plan.names(); }
  std::vector<std::int64_t> offsets() const {
    return per_segment([](const flatgather::Segment& s) { return s.offset; });
  }
  std::vector<std::int64_t> segment_numels() const {
    return per_segment([](const flatgather::Segment& s) { return s.numel; });
  }
  std::vector<std::vector<std::int64_t>> segment_shapes() const {
    return per_segment([](const flatgather::Segment& s) { return s.shape; });
  }
  std::vector<std::string> segment_dtypes() const {
    return per_segment(
        [](const flatgather::Segment& s) { return std::string(flatgather::dtype_name(s.dtype)); });
  }
  std::vector<std::vector<std::string>> segment_aliases() const {
    return per_segment([](const flatgather::Segment& s) { return s.aliases; });
  }
  /// The name of each tensor the plan was given, aliases included, in the order given.
  std::vector<std::string> tensor_names() const {
    std::vector<std::string> out;
    for (const flatgather::TensorRef& t : plan.core().tensors()) out.push_back(t.name);
    return out;
  }
  /// For each tensor the plan was given (aliases included), the index of its segment.
  std::vector<std::int64_t> tensor_segments() const {
    std::vector<std::int64_t> out;
    const std::size_t n = plan.core().tensors().size();
    for (std::size_t i = 0; i < n; ++i)
      out.push_back(static_cast<std::int64_t>(plan.core().segment_of(i)));
    return out;
  }
};

// ---- plan factories ----------------------------------------------------------------------

c10::intrusive_ptr<ScriptPlan> plan_from_tensors(const std::vector<at::Tensor>& tensors,
                                                 std::vector<std::string> names,
                                                 c10::optional<at::ScalarType> dtype,
                                                 std::int64_t align_bytes, std::int64_t num_threads,
                                                 bool check_tensors) {
  return translate_errors([&] {
    return c10::make_intrusive<ScriptPlan>(fgt::Plan::from_tensors(
        tensors, std::move(names), make_options(dtype, align_bytes, num_threads, check_tensors)));
  });
}

fgt::Selection::Kind parse_kind(const std::string& kind) {
  if (kind == "all") return fgt::Selection::Kind::All;
  if (kind == "weights") return fgt::Selection::Kind::Weights;
  if (kind == "biases") return fgt::Selection::Kind::Biases;
  throw_invalid("kind='" + kind + "' is not valid; use 'all', 'weights' or 'biases'");
}

fgt::MissingGrad parse_missing_grad(const std::string& policy) {
  if (policy == "error") return fgt::MissingGrad::Error;
  if (policy == "zero") return fgt::MissingGrad::ZeroFill;
  if (policy == "skip") return fgt::MissingGrad::Skip;
  throw_invalid("missing_grad='" + policy + "' is not valid; use 'error', 'zero' or 'skip'");
}

c10::intrusive_ptr<ScriptPlan> plan_from_module(
    std::vector<std::string> names, const std::vector<at::Tensor>& tensors,
    const c10::List<bool>& is_buffer, std::vector<std::string> include,
    std::vector<std::string> exclude, bool parameters, bool buffers, bool grads,
    const std::string& kind, bool trainable_only, const std::string& missing_grad,
    c10::optional<at::ScalarType> dtype, std::int64_t align_bytes, std::int64_t num_threads,
    bool check_tensors) {
  return translate_errors([&] {
    fgt::Selection selection;
    selection.parameters = parameters;
    selection.buffers = buffers;
    selection.grads = grads;
    selection.kind = parse_kind(kind);
    selection.trainable_only = trainable_only;
    selection.include = std::move(include);
    selection.exclude = std::move(exclude);
    selection.missing_grad = parse_missing_grad(missing_grad);
    // The Python walk is the only one: the adapter selects from its list directly.
    fgt::Plan plan = fgt::Plan::from_named(
        named_tensors("plan_from_module", std::move(names), tensors, is_buffer), selection,
        make_options(dtype, align_bytes, num_threads, check_tensors));
    return c10::make_intrusive<ScriptPlan>(std::move(plan));
  });
}

// ---- one-off operators ---------------------------------------------------------------------

at::Tensor gather_op(const std::vector<at::Tensor>& tensors, c10::optional<at::ScalarType> dtype,
                     std::int64_t align_bytes) {
  return translate_errors(
      [&] { return fgt::gather(tensors, make_options(dtype, align_bytes, 0, true)); });
}

void scatter_op(const at::Tensor& flat, const std::vector<at::Tensor>& tensors,
                c10::optional<at::ScalarType> dtype, std::int64_t align_bytes) {
  translate_errors([&] { fgt::scatter(flat, tensors, make_options(dtype, align_bytes, 0, true)); });
}

// safetensors files (include/flatgather/torch_safetensors.h); Python passes a module's
// state_dict() or a plan's tensors as names and tensors.
void save_safetensors_op(const std::string& path, const std::vector<at::Tensor>& tensors,
                         const std::vector<std::string>& names,
                         const std::vector<std::string>& metadata_keys,
                         const std::vector<std::string>& metadata_values) {
  translate_errors([&] {
    FG_CHECK(metadata_keys.size() == metadata_values.size(), "metadata: one value per key");
    fgt::SafetensorsMetadata metadata;
    for (std::size_t i = 0; i < metadata_keys.size(); ++i)
      metadata[metadata_keys[i]] = metadata_values[i];
    fgt::save_safetensors(path, tensors, names, metadata);
  });
}

std::tuple<std::vector<std::string>, std::vector<std::string>> load_safetensors_op(
    const std::string& path, const std::vector<at::Tensor>& tensors,
    const std::vector<std::string>& names, bool strict) {
  return translate_errors([&] {
    fgt::SafetensorsLoadResult r = fgt::load_safetensors(path, tensors, names, strict);
    return std::make_tuple(r.missing, r.unexpected);
  });
}

std::string build_info() {
  std::ostringstream os;
  os << "flatgather " << FLATGATHER_VERSION_MAJOR << "." << FLATGATHER_VERSION_MINOR << "."
     << FLATGATHER_VERSION_PATCH << ", LibTorch " << TORCH_VERSION << ", cuda "
#if defined(FLATGATHER_WITH_CUDA)
     << "on"
#else
     << "off"
#endif
      ;
  return os.str();
}

bool cuda_available_op() {
  return flatgather::cuda_available();
}

}  // namespace

// See NOTE: [operator registration].
TORCH_LIBRARY(flatgather, m) {
  m.class_<ScriptPlan>("Plan")
      .def("gather", &ScriptPlan::gather)
      .def("gather_into", &ScriptPlan::gather_into)
      .def("scatter", &ScriptPlan::scatter)
      .def("scatter_add", &ScriptPlan::scatter_add)
      .def("gather_stats", &ScriptPlan::gather_stats)
      .def("scatter_scaled", &ScriptPlan::scatter_scaled)
      .def("scatter_add_factor", &ScriptPlan::scatter_add_factor)
      .def("views", &ScriptPlan::views)
      .def("empty_flat", &ScriptPlan::empty_flat)
      .def("tensors", &ScriptPlan::tensors)
      .def("manifest", &ScriptPlan::manifest)
      .def("check_manifest", &ScriptPlan::check_manifest)
      .def("numel", &ScriptPlan::numel)
      .def("dtype", &ScriptPlan::dtype)
      .def("device", &ScriptPlan::device)
      .def("align_bytes", &ScriptPlan::align_bytes)
      .def("writable", &ScriptPlan::writable)
      .def("describe", &ScriptPlan::describe)
      .def("names", &ScriptPlan::names)
      .def("offsets", &ScriptPlan::offsets)
      .def("segment_numels", &ScriptPlan::segment_numels)
      .def("segment_shapes", &ScriptPlan::segment_shapes)
      .def("segment_dtypes", &ScriptPlan::segment_dtypes)
      .def("segment_aliases", &ScriptPlan::segment_aliases)
      .def("tensor_names", &ScriptPlan::tensor_names)
      .def("tensor_segments", &ScriptPlan::tensor_segments);

  m.def(
      "plan_from_tensors(Tensor[] tensors, str[] names, ScalarType? dtype=None, "
      "int align_bytes=0, int num_threads=0, bool check_tensors=True) "
      "-> __torch__.torch.classes.flatgather.Plan",
      &plan_from_tensors);
  m.def(
      "plan_from_module(str[] names, Tensor[] tensors, bool[] is_buffer, str[] include, "
      "str[] exclude, bool parameters=True, bool buffers=False, bool grads=False, "
      "str kind=\"all\", bool trainable_only=False, str missing_grad=\"error\", "
      "ScalarType? dtype=None, "
      "int align_bytes=0, int num_threads=0, bool check_tensors=True) "
      "-> __torch__.torch.classes.flatgather.Plan",
      &plan_from_module);
  m.def("gather(Tensor[] tensors, ScalarType? dtype=None, int align_bytes=0) -> Tensor",
        &gather_op);
  m.def(
      "scatter(Tensor flat, Tensor(a!)[] tensors, ScalarType? dtype=None, int align_bytes=0) "
      "-> ()",
      &scatter_op);
  m.def(
      "save_safetensors(str path, Tensor[] tensors, str[] names, str[] metadata_keys, "
      "str[] metadata_values) -> ()",
      &save_safetensors_op);
  m.def(
      "load_safetensors(str path, Tensor(a!)[] tensors, str[] names, bool strict=True) "
      "-> (str[], str[])",
      &load_safetensors_op);
  m.def("build_info() -> str", &build_info);
  m.def("cuda_available() -> bool", &cuda_available_op);
}
