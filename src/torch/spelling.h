#pragma once
// How the adapter's errors name LibTorch tensors and the adapter's own options, for C++ and for
// Python callers. Private to the adapter (src/torch/).

#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "flatgather/torch.h"

namespace flatgather {
namespace torch {
namespace detail {

// NOTE: [spelling]
// An error must name what its reader can type. The adapter has two kinds of callers: C++ code
// (`selection.missing_grad = MissingGrad::ZeroFill`) and Python code through the operators
// (`missing_grad='zero'`), which cannot type a C++ enumerator. Options::spelling says which one
// a plan serves (src/torch/ops.cpp sets Spelling::Python), and every adapter message that names
// one of the following goes through a function below:
//  - option values: missing_grad policies and the selection's flags
//    (C++ `missing_grad = ZeroFill`, `parameters=true`; Python `missing_grad='zero'`,
//    `parameters=True`);
//  - dtypes the library does not support (C++ `ComplexFloat`, LibTorch's name; Python
//    `complex64`, torch's name without "torch.");
//  - tensor layouts (C++ `Sparse`; Python `torch.sparse_coo`).
// Supported dtypes have one neutral spelling, the library's name (`float32`, dtype_name), which
// both sides can type (torch.float32, torch::kFloat32); the plan's messages (src/) use only such
// neutral words, so they need no spelling. Selection kinds never reach a message: ops.cpp checks
// the Python string itself.

/// `dtype` as the reader spells it (see NOTE: [spelling]).
std::string dtype_spelling(at::ScalarType dtype, Spelling spelling);
/// `layout` as the reader spells it.
std::string layout_spelling(at::Layout layout, Spelling spelling);
/// `true`/`false` in C++, `True`/`False` in Python.
std::string bool_spelling(bool value, Spelling spelling);
/// The missing_grad option set to any of `choices`: "missing_grad = ZeroFill or Skip" in C++,
/// "missing_grad='zero' or 'skip'" in Python.
std::string missing_grad_spelling(const std::vector<MissingGrad>& choices, Spelling spelling);

/// "the gradient of parameter <who> is undefined (...); ": the start of every message about a
/// missing gradient, naming Module::zero_grad's argument as the reader writes it.
std::string undefined_gradient(const std::string& who, Spelling spelling);

/// "[2, 3]": LibTorch's own printing of the tensor's sizes. Not a shape formatter of the
/// adapter's: the core's (src/) formats TensorRef shapes the same way.
std::string shape_of(const at::Tensor& t);
/// How errors name a LibTorch tensor: 'name' (shape [2, 3], float32, cpu).
std::string describe_tensor(const std::string& name, const at::Tensor& t, Spelling spelling);
/// Whether the library has a dtype for `dtype`.
bool supported(at::ScalarType dtype);

}  // namespace detail
}  // namespace torch
}  // namespace flatgather
