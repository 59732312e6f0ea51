// Adopt mode (include/flatgather/adopt.h): parameters and gradients as views of flat buffers.
// The layout and the copy come from the adapter's Plan; this file only checks what a view can
// hold, swaps storages and watches them.
#include "flatgather/adopt.h"

#include <algorithm>
#include <map>

#include "check.h"
#include "selection.h"
#include "spelling.h"

namespace flatgather {
namespace torch {

// NOTE: [adopting a parameter]
// A parameter is moved into the buffer with `p.set_(view)` under NoGradGuard, where `view` is a
// contiguous as_strided view of its segment. set_ changes only the TensorImpl's storage, offset,
// sizes and strides: the TensorImpl itself, and so the Python Parameter object, its autograd
// metadata (requires_grad, hooks, grad accumulator), its name in the module and every
// optimizer's reference stay. `Tensor.data = ...` (set_data) would keep them too, but set_ is
// an ordinary in-place operator: it bumps the version counter, so autograd
// refuses to backpropagate through a value saved before the adoption instead of reading the
// buffer silently. The parameter does not become an autograd view of the buffer (no shared
// version counter): writing the buffer in place between forward and backward is not detected,
// as for any `.data` write (docs/adopt.md).
//
// Gradients: `p.mutable_grad() = view`. AccumulateGrad adds into a defined gradient in place
// (`grad += new`), whatever its strides, unless backward runs with create_graph; so gradients
// accumulate straight into grad_flat until something sets them to None.
//
// Only contiguous parameters are adopted: the buffer holds each parameter in row-major order,
// exactly as a plan's gather, so flat() and the manifest mean one thing. A channels_last
// parameter is refused with the call that converts it.

namespace {

using detail::describe_tensor;

at::Tensor segment_view(const at::Tensor& buffer, const Segment& seg) {
  return buffer.as_strided(seg.shape, c10::contiguous_strides(seg.shape),
                           buffer.storage_offset() + seg.offset);
}

const c10::StorageImpl* storage_of(const at::Tensor& t) {
  return t.defined() && t.has_storage() ? t.storage().unsafeGetStorageImpl() : nullptr;
}

// Whether `t` is exactly the view of `seg` in `buffer`.
bool views_segment(const at::Tensor& t, const at::Tensor& buffer, const Segment& seg) {
  return t.defined() && buffer.defined() && storage_of(t) == storage_of(buffer) &&
         t.scalar_type() == buffer.scalar_type() && t.device() == buffer.device() &&
         t.storage_offset() == buffer.storage_offset() + seg.offset &&
         t.sizes() == c10::IntArrayRef(seg.shape) && t.is_contiguous();
}

std::string hint(Spelling spelling, const char* cpp, const char* python) {
  return spelling == Spelling::Python ? python : cpp;
}

// What a view of one buffer can hold: one device, the flat dtype, contiguous, each parameter
// the sole owner of its storage (`own` storage exempt: the buffer being re-adopted into).
void check_adoptable(const std::vector<std::string>& names, const std::vector<at::Tensor>& ts,
                     const std::optional<at::ScalarType>& dtype, const c10::StorageImpl* own,
                     Spelling spelling) {
  const at::Tensor& first = ts.at(0);
  const at::ScalarType flat_dtype = dtype ? *dtype : first.scalar_type();
  std::map<const c10::StorageImpl*, std::size_t> owner;
  for (std::size_t i = 0; i < ts.size(); ++i) {
    const at::Tensor& t = ts[i];
    auto who = [&] { return describe_tensor(names[i], t, spelling); };
    FG_CHECK(t.device() == first.device(),
             "adopt: parameter " << who() << " is on " << t.device() << " but parameter '"
                                 << names[0] << "' is on " << first.device()
                                 << "; one flat buffer lives on one device: move the module to "
                                    "one device first, or adopt each device's parameters "
                                    "separately (include/exclude)");
    FG_CHECK(t.scalar_type() == flat_dtype,
             "adopt: parameter " << who() << " does not have the flat dtype "
                                 << detail::dtype_spelling(flat_dtype, spelling)
                                 << "; a view cannot cast, so every adopted parameter must have "
                                    "the flat dtype: convert the module to one dtype, leave "
                                    "the dtype option unset, or adopt the others separately "
                                    "(include/exclude)");
    FG_CHECK(t.is_contiguous(), "adopt: parameter "
                                    << who() << " is not contiguous (strides " << t.strides()
                                    << ", channels_last?); the flat buffer holds each parameter "
                                       "in row-major order, as a plan does: "
                                    << hint(spelling, "call p.set_data(p.contiguous()) first",
                                            "call module.to(memory_format=torch.contiguous_format) "
                                            "first"));
    const c10::StorageImpl* storage = storage_of(t);
    if (storage == nullptr || t.numel() == 0 || storage == own) continue;
    const std::int64_t bytes = t.numel() * static_cast<std::int64_t>(t.element_size());
    FG_CHECK(t.storage_offset() == 0 && static_cast<std::int64_t>(t.storage().nbytes()) == bytes,
             "adopt: parameter " << who() << " is a view of a larger storage (offset "
                                 << t.storage_offset() << " elements, storage of "
                                 << t.storage().nbytes() << " bytes for its " << bytes
                                 << "): adopting it would cut it off from the tensor it views"
                                    " (is it adopted already?); give it its own storage first ("
                                 << hint(spelling, "p.set_data(p.clone())", "p.data = p.clone()")
                                 << ")");
    auto found = owner.emplace(storage, i);
    FG_CHECK(found.second || ts[found.first->second].is_same(t),
             "adopt: parameters '" << names[found.first->second] << "' and '" << names[i]
                                   << "' are different tensors sharing one storage; tie them as "
                                      "one parameter, or give each its own storage");
  }
}

}  // namespace

struct Adoption::State {
  Selection selection;
  AdoptOptions options;
  std::vector<std::string> names;  // selected, aliases included
  std::vector<at::Tensor> params;  // parallel to names
  Plan plan;                       // the layout; segment_of maps a parameter to its segment
  at::Tensor flat;
  at::Tensor grad_flat;
  bool released = false;

  Options plan_options() const {
    Options o;
    o.dtype = options.dtype;
    o.align_bytes = options.align_bytes;
    o.spelling = options.spelling;
    return o;
  }

  std::vector<NamedTensor> adopted_walk() const {
    std::vector<NamedTensor> walk;
    for (std::size_t i = 0; i < names.size(); ++i) walk.push_back({names[i], params[i], false});
    return walk;
  }

  const Segment& segment(std::size_t i) const {
    return plan.layout().segments()[plan.core().segment_of(i)];
  }

  // `target` keeps its tensor when it can take `fresh`'s values (same dtype, device, length);
  // otherwise it becomes `fresh`.
  static void fill(at::Tensor& target, const at::Tensor& fresh) {
    if (target.defined() && target.scalar_type() == fresh.scalar_type() &&
        target.device() == fresh.device() && target.numel() == fresh.numel()) {
      target.copy_(fresh);
    } else {
      target = fresh;
    }
  }

  // Copies the parameters' (and gradients') current values into the buffers and makes every
  // parameter a view again (NOTE: [adopting a parameter]).
  void adopt_all() {
    const c10::StorageImpl* own = released ? nullptr : storage_of(flat);
    check_adoptable(names, params, options.dtype, own, options.spelling);
    Plan fresh = Plan::from_tensors(params, names, plan_options());
    at::NoGradGuard no_grad;
    // Into a new tensor first: some parameters may still be views of `flat`.
    fill(flat, fresh.gather());
    if (options.grads) {
      // LibTorch's Module::to moves the parameters but not their gradients: gradients follow.
      for (at::Tensor& p : params) {
        const at::Tensor& g = p.grad();
        if (g.defined() && g.device() != p.device()) p.mutable_grad() = g.to(p.device());
      }
      Selection grads;
      grads.grads = true;
      grads.missing_grad = MissingGrad::ZeroFill;
      Options same_dtype = plan_options();
      same_dtype.dtype = flat.scalar_type();  // gradients of a cast module follow it
      Plan grad_plan = Plan::from_named(adopted_walk(), grads, same_dtype);
      fill(grad_flat, grad_plan.gather());
    }
    plan = std::move(fresh);
    for (std::size_t i = 0; i < params.size(); ++i) {
      at::Tensor& p = params[i];
      if (!views_segment(p, flat, segment(i))) p.set_(segment_view(flat, segment(i)));
      if (options.grads && p.requires_grad() && !views_segment(p.grad(), grad_flat, segment(i)))
        p.mutable_grad() = segment_view(grad_flat, segment(i));
    }
    released = false;
  }

  // check(): `current[i]` is what the module holds under names[i] now (null: nothing).
  std::vector<std::string> broken(const std::vector<const at::Tensor*>& current) const {
    FG_CHECK(!released, "adopt: check() after release(): nothing is adopted; readopt() first");
    std::vector<std::string> out;
    for (std::size_t i = 0; i < params.size(); ++i) {
      if (current[i] == nullptr) {
        out.push_back(names[i]);
        continue;
      }
      const at::Tensor& p = *current[i];
      const bool replaced = !p.is_same(params[i]);  // a new Parameter under the name
      if (replaced || !views_segment(p, flat, segment(i))) out.push_back(names[i]);
      if (options.grads && p.requires_grad() &&
          (replaced || !views_segment(p.grad(), grad_flat, segment(i))))
        out.push_back(names[i] + ".grad");
    }
    return out;
  }

  // The adopted names' tensors in a fresh walk, in adoption order; throws if they differ.
  std::vector<at::Tensor> reselect(const std::vector<NamedTensor>& walk) const {
    detail::Selected now = detail::select(walk, selection, options.spelling);
    FG_CHECK(now.names == names, "adopt: the module's selection changed since it was adopted ("
                                     << now.names.size() << " tensors now, " << names.size()
                                     << " adopted); adopt it again instead of readopt");
    return now.tensors;
  }
};

Adoption::Adoption() = default;
Adoption::~Adoption() = default;
Adoption::Adoption(Adoption&&) noexcept = default;
Adoption& Adoption::operator=(Adoption&&) noexcept = default;

Adoption::State& Adoption::state() const {
  FG_CHECK(state_ != nullptr,
           "this adoption is empty (default-constructed or moved from); make "
           "one with flatgather::torch::adopt");
  return *state_;
}

Adoption adopt(const ::torch::nn::Module& module, const Selection& selection,
               const AdoptOptions& options) {
  return adopt_named(detail::walk_module(module, true, false), selection, options);
}

Adoption adopt_named(const std::vector<NamedTensor>& walk, const Selection& selection,
                     const AdoptOptions& options) {
  FG_CHECK(!selection.grads,
           "adopt: the selection has grads = true; adopt selects parameters, "
           "set AdoptOptions::grads to adopt their gradients too");
  FG_CHECK(!selection.buffers && selection.parameters,
           "adopt: adopt takes parameters only; select parameters = true, buffers = false");
  Adoption adoption;
  adoption.state_ = std::make_unique<Adoption::State>();
  Adoption::State& s = *adoption.state_;
  s.selection = selection;
  s.options = options;
  detail::Selected selected = detail::select(walk, selection, options.spelling);
  s.names = std::move(selected.names);
  s.params = std::move(selected.tensors);
  s.released = true;  // nothing of a buffer yet
  s.adopt_all();
  return adoption;
}

const at::Tensor& Adoption::flat() const {
  return state().flat;
}
const at::Tensor& Adoption::grad_flat() const {
  return state().grad_flat;
}
std::string Adoption::manifest(int indent) const {
  return state().plan.manifest(indent);
}
std::vector<std::string> Adoption::names() const {
  return state().names;
}
bool Adoption::released() const {
  return state().released;
}

std::vector<std::string> Adoption::check() const {
  const State& s = state();
  std::vector<const at::Tensor*> current;
  for (const at::Tensor& p : s.params) current.push_back(&p);
  return s.broken(current);
}

std::vector<std::string> Adoption::check(const std::vector<NamedTensor>& walk) const {
  const State& s = state();
  std::map<std::string, const at::Tensor*> by_name;
  for (const NamedTensor& t : walk)
    if (!t.is_buffer) by_name.emplace(t.name, &t.tensor);
  std::vector<const at::Tensor*> current;
  for (const std::string& name : s.names) {
    auto it = by_name.find(name);
    current.push_back(it == by_name.end() ? nullptr : it->second);
  }
  return s.broken(current);
}

void Adoption::readopt() {
  state().adopt_all();
}

void Adoption::readopt(const std::vector<NamedTensor>& walk) {
  State& s = state();
  s.params = s.reselect(walk);
  s.adopt_all();
}

void Adoption::release() {
  State& s = state();
  if (s.released) return;
  at::NoGradGuard no_grad;
  for (std::size_t i = 0; i < s.params.size(); ++i) {
    at::Tensor& p = s.params[i];
    // A tied parameter's second name finds it released already: its storage is its own.
    if (storage_of(p) == storage_of(s.flat)) p.set_(p.clone(at::MemoryFormat::Contiguous));
    if (s.grad_flat.defined() && storage_of(p.grad()) == storage_of(s.grad_flat))
      p.mutable_grad() = p.grad().clone(at::MemoryFormat::Contiguous);
  }
  s.released = true;
}

}  // namespace torch
}  // namespace flatgather
