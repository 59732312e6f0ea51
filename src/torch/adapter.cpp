// The LibTorch adapter: at::Tensor and torch::nn::Module -> flatgather::Plan; flat tensors,
// views, the current stream, per-call checks. Which tensors of a module: selection.cpp; how
// errors spell things for C++ and Python callers: spelling.cpp.
#include "flatgather/torch.h"

#include <mutex>

#include "flatgather/config.h"
#include "check.h"
#include "selection.h"
#include "spelling.h"

#if defined(FLATGATHER_WITH_CUDA) && __has_include(<c10/cuda/CUDAStream.h>) && \
    __has_include(<c10/cuda/impl/cuda_cmake_macros.h>)
#include <c10/cuda/CUDAStream.h>
#define FLATGATHER_TORCH_CUDA 1
#endif

namespace flatgather {
namespace torch {

namespace {

using detail::describe_tensor;
using detail::shape_of;

Device to_device(const at::Tensor& t) {
  return t.is_cuda() ? Device::cuda(t.get_device()) : Device::cpu();
}

// Rejects what a flat copy cannot describe, naming the tensor.
void check_supported(const std::string& name, const at::Tensor& t, Spelling spelling) {
  FG_CHECK(t.defined(), "tensor '" << name << "' is undefined; pass a defined tensor");
  // Formatted only when a check fails: plans are built on every one-off gather.
  auto tensor = [&] { return describe_tensor(name, t, spelling); };
  FG_CHECK(t.layout() == at::kStrided,
           "tensor " << tensor() << " has layout " << detail::layout_spelling(t.layout(), spelling)
                     << "; only dense (strided) tensors can be flattened: call .to_dense()");
  FG_CHECK(!t.is_quantized(), "tensor " << tensor() << " is quantized; dequantize it first");
  FG_CHECK(!t.is_complex(), "tensor " << tensor() << " is complex; use torch.view_as_real first");
  FG_CHECK(detail::supported(t.scalar_type()),
           "tensor " << tensor() << " has a dtype the library does not support; supported: "
                     << dtype_valid_names());
  FG_CHECK(t.device().is_cpu() || t.device().is_cuda(),
           "tensor " << tensor() << " is on " << t.device()
                     << "; only cpu and cuda tensors are supported");
  FG_CHECK(t.numel() == 0 || t.has_storage(),
           "tensor " << tensor() << " has no storage; it cannot be flattened");
}

TensorRef to_ref(const std::string& name, const at::Tensor& t, Spelling spelling) {
  check_supported(name, t, spelling);
  TensorRef r;
  r.data = t.numel() > 0 ? t.data_ptr() : nullptr;
  r.dtype = to_dtype(t.scalar_type());
  r.sizes.assign(t.sizes().begin(), t.sizes().end());
  r.strides.assign(t.strides().begin(), t.strides().end());
  r.device = to_device(t);
  r.name = name;
  return r;
}

#ifdef FLATGATHER_TORCH_CUDA
cudaStream_t current_stream(const at::Device& device) {
  if (!device.is_cuda()) return nullptr;
  return c10::cuda::getCurrentCUDAStream(device.index()).stream();
}
#else
cudaStream_t current_stream(const at::Device&) {
  return nullptr;
}
#endif

}  // namespace

DType to_dtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return DType::Float32;
    case at::kHalf: return DType::Float16;
    case at::kBFloat16: return DType::BFloat16;
    case at::kDouble: return DType::Float64;
    case at::kChar: return DType::Int8;
    case at::kByte: return DType::UInt8;
    case at::kShort: return DType::Int16;
    case at::kInt: return DType::Int32;
    case at::kLong: return DType::Int64;
    case at::kBool: return DType::Bool;
    default: break;
  }
  FG_CHECK(false,
           "dtype " << c10::toString(t) << " is not supported; supported: " << dtype_valid_names());
  return DType::Float32;
}

at::ScalarType to_scalar_type(DType t) {
  switch (t) {
    case DType::Float32: return at::kFloat;
    case DType::Float16: return at::kHalf;
    case DType::BFloat16: return at::kBFloat16;
    case DType::Float64: return at::kDouble;
    case DType::Int8: return at::kChar;
    case DType::UInt8: return at::kByte;
    case DType::Int16: return at::kShort;
    case DType::Int32: return at::kInt;
    case DType::Int64: return at::kLong;
    case DType::Bool: return at::kBool;
  }
  return at::kFloat;
}

struct Plan::State {
  flatgather::Plan core;
  std::vector<std::string> names;   // per planned tensor
  std::vector<at::Tensor> tensors;  // as planned (gradients: as of the last call)
  std::vector<at::Tensor> params;   // gradients only: whose .grad() to read
  bool grads = false;
  MissingGrad missing_grad = MissingGrad::Error;
  Options options;
  at::Device device = at::kCPU;
  std::vector<std::size_t> first_tensor_of_segment;
  // The version counter of each segment's first tensor (disabled: none to bump, as for an
  // inference tensor), for bump_versions; refreshed in place when sync replaces a gradient,
  // so the array never reallocates under a call on another thread (NOTE: [version counters]).
  std::vector<c10::VariableVersion> versions;
  std::mutex rebind_mutex;

  // Compares every tensor with the plan; rebinds moved memory, throws for anything else.
  void sync(cudaStream_t stream) {
    if (!options.check_tensors) return;
    std::lock_guard<std::mutex> lock(rebind_mutex);
    std::vector<std::pair<std::size_t, void*>> changes;
    bool replaced = false;
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      if (grads) {
        // A gradient may have been replaced by a new tensor (or by none) since the last call.
        at::Tensor now = params[i].grad();
        if (!now.defined()) {
          // Under Skip the gradient was defined at build time (else it would have no segment).
          FG_CHECK(missing_grad == MissingGrad::ZeroFill,
                   detail::undefined_gradient("'" + names[i] + "'", options.spelling)
                       << (missing_grad == MissingGrad::Skip
                               ? "it was defined when this plan was built with " +
                                     spell({MissingGrad::Skip}) +
                                     ", so the plan has a segment for it: run backward first, "
                                     "rebuild the plan, or use " +
                                     spell({MissingGrad::ZeroFill})
                               : "run backward first, or build the plan with " +
                                     spell({MissingGrad::ZeroFill, MissingGrad::Skip})));
          if (core.tensors()[i].data != nullptr) changes.emplace_back(core.segment_of(i), nullptr);
          tensors[i] = at::Tensor();
          replaced = true;
          continue;
        }
        if (!now.is_same(tensors[i])) {
          tensors[i] = std::move(now);
          replaced = true;
        }
      }
      check_one(i, changes);
    }
    if (!changes.empty()) core.rebind(changes, stream);
    if (replaced) collect_versions();
  }

  std::string spell(const std::vector<MissingGrad>& choices) const {
    return detail::missing_grad_spelling(choices, options.spelling);
  }

  // One tensor against its planned descriptor; a moved data pointer is queued for rebinding.
  void check_one(std::size_t i, std::vector<std::pair<std::size_t, void*>>& changes) const {
    const at::Tensor& now = tensors[i];
    const TensorRef& planned = core.tensors()[i];
    const bool same_shape =
        now.sizes() == c10::IntArrayRef(planned.sizes) &&
        now.strides() == c10::IntArrayRef(planned.strides) &&
        now.scalar_type() == to_scalar_type(planned.dtype) &&
        now.device().type() == (planned.device.is_cuda() ? at::kCUDA : at::kCPU) &&
        (!now.is_cuda() || now.get_device() == planned.device.index);
    FG_CHECK(same_shape, "tensor " << describe_tensor(names[i], now, options.spelling)
                                   << " changed since the plan was built (planned as "
                                   << flatgather::describe(planned)
                                   << " with the same strides); rebuild the plan");
    void* data = now.numel() > 0 ? now.data_ptr() : nullptr;
    if (data != planned.data) changes.emplace_back(core.segment_of(i), data);
  }

  // NOTE: [version counters]
  // scatter and scatter_add write the tensors below LibTorch, so they bump each written
  // tensor's version counter themselves, as an in-place copy_ would: autograd then refuses to
  // backpropagate through a value saved before it was overwritten. One bump per segment (tied
  // tensors share one TensorImpl); inference tensors have no counter. The counters are kept in
  // one array, so a call walks it instead of each tensor's TensorImpl: on the H200 machine the
  // walk through the tensors was the whole host time of a scatter of 10,000 tensors (130 us,
  // against 3.5 us for the gather, which bumps nothing); over the array, a standalone loop of
  // 10,000 bumps took 0.33-0.61x of the time of the walk on the 2-core machine.
  void collect_versions() {
    versions.resize(first_tensor_of_segment.size());
    for (std::size_t seg = 0; seg < versions.size(); ++seg) {
      const at::Tensor& t = tensors[first_tensor_of_segment[seg]];
      versions[seg] = t.defined() && !t.is_inference()
                          ? t.unsafeGetTensorImpl()->version_counter()
                          : c10::VariableVersion(c10::VariableVersion::DISABLED);
    }
  }
  void bump_versions() {
    for (c10::VariableVersion& v : versions)
      if (v.enabled()) v.bump();
  }

  void check_flat(const at::Tensor& flat, const char* op) const {
    FG_CHECK(flat.defined(), op << ": the flat tensor is undefined");
    const DType want = core.layout().flat_dtype();
    FG_CHECK(flat.dim() == 1 && flat.is_contiguous(),
             op << ": the flat tensor must be 1-D and contiguous, got shape " << shape_of(flat)
                << (flat.is_contiguous() ? "" : " (not contiguous)")
                << "; use flat.contiguous().view(-1)");
    FG_CHECK(flat.scalar_type() == to_scalar_type(want),
             op << ": the flat tensor has dtype "
                << detail::dtype_spelling(flat.scalar_type(), options.spelling)
                << " but the layout is " << dtype_name(want) << "; pass a " << dtype_name(want)
                << " tensor");
    FG_CHECK(flat.device() == device, op << ": the flat tensor is on " << flat.device()
                                         << " but the plan's tensors are on " << device);
    FG_CHECK(flat.numel() == core.layout().numel(), op << ": the flat tensor has " << flat.numel()
                                                       << " elements but the layout needs "
                                                       << core.layout().numel());
  }
};

Plan Plan::from_tensors(const std::vector<at::Tensor>& tensors, std::vector<std::string> names,
                        const Options& options) {
  FG_CHECK(names.empty() || names.size() == tensors.size(),
           "got " << names.size() << " names for " << tensors.size()
                  << " tensors; give one name per tensor or none");
  if (names.empty()) {
    for (std::size_t i = 0; i < tensors.size(); ++i)
      names.push_back("tensor[" + std::to_string(i) + "]");
  }
  std::vector<TensorRef> refs;
  refs.reserve(tensors.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    refs.push_back(to_ref(names[i], tensors[i], options.spelling));
  }
  return make(std::move(refs), std::move(names), tensors, {}, MissingGrad::Error, options);
}

Plan Plan::make(std::vector<TensorRef> refs, std::vector<std::string> names,
                std::vector<at::Tensor> tensors, std::vector<at::Tensor> params,
                MissingGrad missing_grad, const Options& options) {
  PlanOptions core_options;
  if (options.dtype) {
    FG_CHECK(detail::supported(*options.dtype),
             "the flat dtype option is " << detail::dtype_spelling(*options.dtype, options.spelling)
                                         << ", which is not supported; use one of "
                                         << dtype_valid_names()
                                         << ", or leave it unset for the tensors' own dtype");
    core_options.flat_dtype = to_dtype(*options.dtype);
  }
  core_options.align_bytes = options.align_bytes;
  core_options.num_threads = options.num_threads;
  core_options.cpu_streaming = options.cpu_streaming;
  // Every device scalar the adapter hands the core is a tensor whose device it checked
  // (core_factor in stats.cpp) or one it allocated on the plan's device: no driver query.
  core_options.check_pointers = false;
  core_options.cpu_tuning = options.cpu_tuning;
  Plan plan;
  plan.state_ = std::make_shared<State>();
  State& s = *plan.state_;
  s.core = flatgather::Plan::build(std::move(refs), core_options);
  s.first_tensor_of_segment.assign(s.core.layout().segments().size(), 0);
  for (std::size_t i = tensors.size(); i-- > 0;)
    s.first_tensor_of_segment[s.core.segment_of(i)] = i;
  s.device = params.empty() ? tensors.at(0).device() : params[0].device();
  s.names = std::move(names);
  s.tensors = std::move(tensors);
  s.grads = !params.empty();
  s.params = std::move(params);
  s.missing_grad = missing_grad;
  s.options = options;
  s.collect_versions();
  return plan;
}

Plan Plan::from_module(const ::torch::nn::Module& module, const Selection& selection,
                       const Options& options) {
  return from_named(detail::walk_module(module, selection.parameters, selection.buffers), selection,
                    options);
}

Plan Plan::from_named(const std::vector<NamedTensor>& named, const Selection& selection,
                      const Options& options) {
  detail::Selected selected = detail::select(named, selection, options.spelling);
  if (!selection.grads) return from_tensors(selected.tensors, std::move(selected.names), options);

  // Gradients: undefined ones (ZeroFill) become zero-fill placeholders shaped like the param.
  std::vector<TensorRef> refs;
  for (std::size_t i = 0; i < selected.tensors.size(); ++i) {
    const std::string& name = selected.names[i];
    if (selected.tensors[i].defined()) {
      refs.push_back(to_ref(name, selected.tensors[i], options.spelling));
    } else {
      TensorRef r = to_ref(name, selected.params[i], options.spelling);
      r.data = nullptr;
      r.zero_fill = true;
      refs.push_back(std::move(r));
    }
  }
  return make(std::move(refs), std::move(selected.names), std::move(selected.tensors),
              std::move(selected.params), selection.missing_grad, options);
}

Plan::Plan() = default;
Plan::~Plan() = default;
Plan::Plan(Plan&&) noexcept = default;
Plan& Plan::operator=(Plan&&) noexcept = default;

namespace {
template <class S>
S& checked(const std::shared_ptr<S>& s) {
  FG_CHECK(s != nullptr,
           "this plan is empty (default-constructed or moved from); build one with "
           "Plan::from_tensors or Plan::from_module");
  return *s;
}
}  // namespace

const Layout& Plan::layout() const {
  return checked(state_).core.layout();
}
at::ScalarType Plan::dtype() const {
  return to_scalar_type(layout().flat_dtype());
}
at::Device Plan::device() const {
  return checked(state_).device;
}
std::int64_t Plan::numel() const {
  return layout().numel();
}
std::vector<std::string> Plan::names() const {
  std::vector<std::string> out;
  for (const Segment& s : layout().segments()) out.push_back(s.name);
  return out;
}
std::string Plan::manifest(int indent) const {
  return layout().to_json(indent);
}
void Plan::check_manifest(const std::string& json) const {
  layout().check_matches(Layout::from_json(json));
}
const flatgather::Plan& Plan::core() const {
  return checked(state_).core;
}
std::vector<at::Tensor> Plan::tensors() const {
  return checked(state_).tensors;
}

at::Tensor Plan::empty_flat() const {
  return at::empty({numel()}, at::TensorOptions().dtype(dtype()).device(device()));
}

at::Tensor Plan::gather() const {
  at::Tensor out = empty_flat();
  gather(out);
  return out;
}

void Plan::gather(const at::Tensor& out) const {
  State& s = checked(state_);
  s.check_flat(out, "gather");
  const cudaStream_t stream = current_stream(s.device);
  s.sync(stream);
  s.core.gather(out.data_ptr(), out.numel(), stream);
}

void Plan::scatter(const at::Tensor& flat) const {
  State& s = checked(state_);
  s.check_flat(flat, "scatter");
  const cudaStream_t stream = current_stream(s.device);
  s.sync(stream);
  s.core.scatter(flat.data_ptr(), flat.numel(), stream);
  s.bump_versions();
}

void Plan::scatter_add(const at::Tensor& flat, double alpha) const {
  State& s = checked(state_);
  s.check_flat(flat, "scatter_add");
  const cudaStream_t stream = current_stream(s.device);
  s.sync(stream);
  s.core.scatter_add(flat.data_ptr(), flat.numel(), alpha, stream);
  s.bump_versions();
}

cudaStream_t Plan::prepare_call(const at::Tensor& flat, const char* op) const {
  State& s = checked(state_);
  s.check_flat(flat, op);
  const cudaStream_t stream = current_stream(s.device);
  s.sync(stream);
  return stream;
}

void Plan::after_write() const {
  checked(state_).bump_versions();
}

std::vector<at::Tensor> Plan::views(const at::Tensor& flat) const {
  State& s = checked(state_);
  s.check_flat(flat, "views");
  std::vector<at::Tensor> out;
  const bool bytes = layout().flat_dtype() == DType::UInt8;
  for (const Segment& seg : layout().segments()) {
    FG_CHECK(bytes || seg.dtype == layout().flat_dtype(),
             "views: tensor '" << seg.name << "' is " << dtype_name(seg.dtype)
                               << " but the flat buffer is " << dtype_name(layout().flat_dtype())
                               << "; views need the flat dtype to equal every tensor's dtype, "
                                  "or a byte buffer (flat dtype uint8)");
    if (bytes) {  // typed views into a byte buffer (NOTE: [byte plans] in src/layout.cpp)
      const std::int64_t es = dtype_size(seg.dtype);
      FG_CHECK(reinterpret_cast<std::uintptr_t>(flat.data_ptr()) % es == 0,
               "views: the byte buffer's data pointer is not a multiple of "
                   << es << " bytes, the element size of tensor '" << seg.name
                   << "'; use a flat tensor from empty_flat() or gather()");
      out.push_back(flat.narrow(0, seg.offset, seg.numel * es)
                        .view(to_scalar_type(seg.dtype))
                        .view(seg.shape));
    } else {
      out.push_back(flat.narrow(0, seg.offset, seg.numel).view(seg.shape));
    }
  }
  return out;
}

at::Tensor gather(const std::vector<at::Tensor>& tensors, const Options& options) {
  return Plan::from_tensors(tensors, {}, options).gather();
}

void scatter(const at::Tensor& flat, const std::vector<at::Tensor>& tensors,
             const Options& options) {
  Plan::from_tensors(tensors, {}, options).scatter(flat);
}

}  // namespace torch
}  // namespace flatgather
