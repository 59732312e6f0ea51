// Adopt mode as PyTorch operators: the TorchScript class `torch.classes.flatgather.Adoption`
// and the operator `flatgather::adopt`, thin wrappers over include/flatgather/adopt.h, added to
// the `flatgather` library of src/torch/ops.cpp (NOTE: [operator registration] there). A Python
// module arrives as Python's one walk (python/flatgather/_plan.py, _walk_module); check() and
// readopt() take a fresh walk, so they see a Parameter object replaced in the module.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <torch/custom_class.h>
#include <torch/library.h>

#include "flatgather/adopt.h"
#include "op_util.h"

namespace {

namespace fgt = flatgather::torch;
using fgt::detail::named_tensors;
using fgt::detail::translate_errors;

/// The TorchScript class `torch.classes.flatgather.Adoption`: one adoption.
struct ScriptAdoption : torch::CustomClassHolder {
  explicit ScriptAdoption(fgt::Adoption a) : adoption(std::move(a)) {}

  fgt::Adoption adoption;

  at::Tensor flat() const {
    return translate_errors([&] { return adoption.flat(); });
  }
  c10::optional<at::Tensor> grad_flat() const {
    return translate_errors([&]() -> c10::optional<at::Tensor> {
      if (!adoption.grad_flat().defined()) return c10::nullopt;
      return adoption.grad_flat();
    });
  }
  std::string manifest(std::int64_t indent) const {
    return translate_errors([&] { return adoption.manifest(static_cast<int>(indent)); });
  }
  std::vector<std::string> names() const {
    return translate_errors([&] { return adoption.names(); });
  }
  bool released() const {
    return translate_errors([&] { return adoption.released(); });
  }
  std::vector<std::string> check(std::vector<std::string> names,
                                 const std::vector<at::Tensor>& tensors,
                                 const c10::List<bool>& is_buffer) const {
    return translate_errors([&] {
      return adoption.check(named_tensors("Adoption.check", std::move(names), tensors, is_buffer));
    });
  }
  void readopt(std::vector<std::string> names, const std::vector<at::Tensor>& tensors,
               const c10::List<bool>& is_buffer) {
    translate_errors([&] {
      adoption.readopt(named_tensors("Adoption.readopt", std::move(names), tensors, is_buffer));
    });
  }
  void release() {
    translate_errors([&] { adoption.release(); });
  }
};

c10::intrusive_ptr<ScriptAdoption> adopt_op(
    std::vector<std::string> names, const std::vector<at::Tensor>& tensors,
    const c10::List<bool>& is_buffer, std::vector<std::string> include,
    std::vector<std::string> exclude, bool grads, bool trainable_only,
    c10::optional<at::ScalarType> dtype, std::int64_t align_bytes) {
  return translate_errors([&] {
    fgt::Selection selection;
    selection.trainable_only = trainable_only;
    selection.include = std::move(include);
    selection.exclude = std::move(exclude);
    fgt::AdoptOptions options;
    if (dtype.has_value()) options.dtype = *dtype;
    options.align_bytes = align_bytes;
    options.grads = grads;
    options.spelling = fgt::Spelling::Python;  // NOTE: [errors across the boundary]
    return c10::make_intrusive<ScriptAdoption>(fgt::adopt_named(
        named_tensors("adopt", std::move(names), tensors, is_buffer), selection, options));
  });
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(flatgather, m) {
  m.class_<ScriptAdoption>("Adoption")
      .def("flat", &ScriptAdoption::flat)
      .def("grad_flat", &ScriptAdoption::grad_flat)
      .def("manifest", &ScriptAdoption::manifest)
      .def("names", &ScriptAdoption::names)
      .def("released", &ScriptAdoption::released)
      .def("check", &ScriptAdoption::check)
      .def("readopt", &ScriptAdoption::readopt)
      .def("release", &ScriptAdoption::release);
  m.def(
      "adopt(str[] names, Tensor[] tensors, bool[] is_buffer, str[] include, str[] exclude, "
      "bool grads=False, bool trainable_only=False, ScalarType? dtype=None, int align_bytes=0) "
      "-> __torch__.torch.classes.flatgather.Adoption",
      &adopt_op);
}
