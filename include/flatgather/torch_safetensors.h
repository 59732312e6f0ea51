#pragma once
/// \file torch_safetensors.h
/// safetensors files from and into LibTorch tensors, modules and plans: one gather and one
/// write to save, one read and one scatter to load (NOTE: [safetensors packing] in
/// src/torch/safetensors.cpp). Link `flatgather::torch`.

#include <map>
#include <string>
#include <vector>

#include "flatgather/safetensors.h"
#include "flatgather/torch.h"

namespace flatgather {
namespace torch {

/// String metadata stored in the header's "__metadata__".
using SafetensorsMetadata = std::map<std::string, std::string>;

/// What a non-strict load left out.
struct SafetensorsLoadResult {
  std::vector<std::string> missing;     ///< target names the file does not have
  std::vector<std::string> unexpected;  ///< file tensors no target is named
};

/// Writes `tensors` (named `names`, one each; on one device, any dtypes and strides) to
/// `path` as a safetensors file. A tensor given twice (tied) is written once, under its first
/// name. The file is written to `path` + ".tmp" and renamed, so a failed save leaves no
/// partial file at `path`.
void save_safetensors(const std::string& path, const std::vector<at::Tensor>& tensors,
                      const std::vector<std::string>& names,
                      const SafetensorsMetadata& metadata = {});
/// A module's whole state: its parameters and buffers, named as in state_dict().
void save_safetensors(const std::string& path, const ::torch::nn::Module& module,
                      const SafetensorsMetadata& metadata = {});
/// A plan's tensors, named as in its layout (aliases not repeated).
void save_safetensors(const std::string& path, const Plan& plan,
                      const SafetensorsMetadata& metadata = {});

/// Reads `path` into `tensors` (named `names`), matching by name. Checks everything before
/// writing anything: every tensor's shape must equal the file's; dtypes must be equal, or both
/// floating (the file's values are cast, rounding as `Tensor.to()`). `strict`: names missing
/// from the file, and file tensors matching no name, are errors; otherwise they are returned.
SafetensorsLoadResult load_safetensors(const std::string& path,
                                       const std::vector<at::Tensor>& tensors,
                                       const std::vector<std::string>& names, bool strict = true);
/// Into a module's parameters and buffers, by their state_dict() names.
SafetensorsLoadResult load_safetensors(const std::string& path, ::torch::nn::Module& module,
                                       bool strict = true);
/// Into a plan's tensors, by their names (aliases included).
SafetensorsLoadResult load_safetensors(const std::string& path, const Plan& plan,
                                       bool strict = true);

}  // namespace torch
}  // namespace flatgather
