#pragma once
/// \file adopt.h
/// Adopt mode: a module's parameters (and optionally their gradients) living inside one flat
/// buffer, as views, so that an all-reduce, an EMA or a model average works on one tensor and
/// the model sees it at once. Link `flatgather::torch`. When to adopt and when to keep a plan,
/// and the pitfalls: docs/adopt.md.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include "flatgather/torch.h"

namespace flatgather {
namespace torch {

/// Options of adopt. `dtype` and `align_bytes` mean what they mean for a plan (Options), except
/// that `dtype` must equal every adopted parameter's dtype: a view cannot cast.
struct AdoptOptions {
  /// Flat dtype; unset: the parameters' dtype (they must all have one).
  std::optional<at::ScalarType> dtype;
  /// Segment alignment in bytes (0: none), as Options::align_bytes.
  std::int64_t align_bytes = 0;
  /// Also keep the gradients in a second flat buffer (`grad_flat`) with the same layout.
  bool grads = false;
  /// Spelling of error messages (NOTE: [spelling] in src/torch/spelling.h).
  Spelling spelling = Spelling::Cpp;
};

/// A module's selected parameters, adopted into one flat buffer (see adopt()).
///
/// Each parameter keeps its own TensorImpl (the same Parameter object, its name, requires_grad,
/// hooks and every optimizer's reference to it); only its storage becomes a contiguous view of
/// its segment of flat(), which is laid out exactly as a plan's gather() of the same selection
/// would lay it out (same manifest). Tied parameters share one segment.
///
/// The views last until something replaces a parameter's storage (`module->to(...)`,
/// `p.set_data(...)`, Python's `p.data = ...`) or a gradient (`zero_grad` with set_to_none,
/// backward with create_graph): check() names what broke, readopt() repairs it, release()
/// gives every parameter its own storage again. Not thread-safe: use it from one thread.
///
///   flatgather::torch::AdoptOptions options;
///   options.grads = true;
///   auto adopted = flatgather::torch::adopt(*model, {}, options);
///   adopted.flat().mul_(0.5);   // every parameter of the model is halved
class Adoption {
 public:
  Adoption();
  ~Adoption();
  Adoption(Adoption&&) noexcept;
  Adoption& operator=(Adoption&&) noexcept;

  /// The flat parameter buffer: 1-D, contiguous, on the parameters' device.
  const at::Tensor& flat() const;
  /// The flat gradient buffer (same layout as flat()); undefined unless AdoptOptions::grads.
  const at::Tensor& grad_flat() const;
  /// The manifest of the layout (the same JSON as a plan's manifest over this selection).
  std::string manifest(int indent = 2) const;
  /// Names of the adopted tensors in selection order, aliases included.
  std::vector<std::string> names() const;

  /// What no longer views the buffers, in selection order: for each adopted name, the name if
  /// the parameter no longer views its segment of flat(), then (with gradients adopted)
  /// "<name>.grad" if the trainable parameter's gradient is undefined or no longer views its
  /// segment of grad_flat(). Empty when every view holds. Throws after release().
  std::vector<std::string> check() const;
  /// check() against a fresh walk of the module (as walk_module or Python's walk gives it):
  /// also names a parameter the module no longer holds (a new Parameter object assigned
  /// under its name).
  std::vector<std::string> check(const std::vector<NamedTensor>& walk) const;

  /// Makes every adopted parameter (and gradient) a view of the buffer again, keeping the
  /// values the parameters hold now (a missing gradient becomes zeros). Reuses flat() and
  /// grad_flat() when the layout, dtype and device are unchanged; otherwise (the module was
  /// moved or cast) allocates new ones. Also adopts again after release().
  void readopt();
  /// readopt() of the tensors a fresh walk of the module holds under the adopted names (after
  /// a Parameter object was replaced). Throws if the selection now names other tensors.
  void readopt(const std::vector<NamedTensor>& walk);
  /// Gives every parameter (and gradient) still viewing the buffers its own contiguous
  /// storage, values kept. The buffers stay allocated, no longer tied to the module.
  void release();
  /// Whether release() was called (and not followed by readopt()).
  bool released() const;

 private:
  struct State;
  State& state() const;  // throws for an empty (default-constructed or moved-from) adoption
  friend Adoption adopt_named(const std::vector<NamedTensor>&, const Selection&,
                              const AdoptOptions&);
  std::unique_ptr<State> state_;
};

/// Adopts the parameters `selection` picks from `module` (the same selection as
/// Plan::from_module; `selection.grads` and `selection.buffers` must be false: gradients come
/// with AdoptOptions::grads). Copies their values into a new flat buffer with a plan's gather,
/// then makes each parameter a view of its segment.
///
/// Throws flatgather::Error, naming the parameter, for parameters on more than one device, a
/// parameter whose dtype differs from the flat dtype, a non-contiguous parameter (channels_last
/// included: the flat buffer holds every parameter in row-major order, as a plan does), a
/// parameter that is a view of a larger storage (or already adopted), and two different
/// parameters sharing one storage.
Adoption adopt(const ::torch::nn::Module& module, const Selection& selection = {},
               const AdoptOptions& options = {});
/// adopt() over a walk the caller made itself (a Python module, say), as Plan::from_named.
Adoption adopt_named(const std::vector<NamedTensor>& walk, const Selection& selection = {},
                     const AdoptOptions& options = {});

}  // namespace torch
}  // namespace flatgather
