#pragma once
// Which tensors of a module go into a plan: the module walk and the selection (kind, trainable,
// include/exclude patterns, gradients and their missing_grad policy). Private to the adapter.

#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include "flatgather/torch.h"

namespace flatgather {
namespace torch {
namespace detail {

/// The module walk: for each submodule of `module` in pre-order, under every path (a shared
/// submodule or tied tensor appears under each of its names), its own defined parameters if
/// `parameters`, then its own defined buffers if `buffers`. Python's state_dict() order.
std::vector<NamedTensor> walk_module(const ::torch::nn::Module& module, bool parameters,
                                     bool buffers);

/// What a selection keeps of a walk, in walk order.
struct Selected {
  std::vector<std::string> names;
  /// The tensors, or for a selection of gradients the gradients (undefined ones are kept
  /// under MissingGrad::ZeroFill).
  std::vector<at::Tensor> tensors;
  /// Gradients only: the parameter of each gradient.
  std::vector<at::Tensor> params;
};

/// Applies `selection` to a walk. Throws flatgather::Error, spelled for `spelling`, for a
/// contradictory or empty selection, a bad pattern, or a missing gradient under
/// MissingGrad::Error.
Selected select(const std::vector<NamedTensor>& walk, const Selection& selection,
                Spelling spelling);

}  // namespace detail
}  // namespace torch
}  // namespace flatgather
