#pragma once
/// \file tensor_ref.h
/// A framework-neutral description of one tensor: what a plan is built from.

#include <cstdint>
#include <string>
#include <vector>

#include "flatgather/dtype.h"

namespace flatgather {

/// Where a tensor's memory lives.
struct Device {
  enum class Kind : std::uint8_t { CPU, CUDA };
  Kind kind = Kind::CPU;
  int index = 0;  ///< CUDA device ordinal; 0 for the CPU

  static Device cpu() { return {Kind::CPU, 0}; }
  static Device cuda(int index) { return {Kind::CUDA, index}; }
  bool is_cuda() const { return kind == Kind::CUDA; }
  friend bool operator==(const Device& a, const Device& b) {
    return a.kind == b.kind && a.index == b.index;
  }
  friend bool operator!=(const Device& a, const Device& b) { return !(a == b); }
};

/// "cpu" or "cuda:N".
std::string to_string(const Device& d);

/// One tensor as a plan sees it. The plan does not own the memory: the caller keeps it alive
/// for as long as the plan is used (the LibTorch adapter does this for you).
///
///   TensorRef w{ptr, DType::Float32, {5, 10}, {10, 1}, Device::cpu(), "linear1.weight"};
struct TensorRef {
  void* data = nullptr;  ///< element [0, ..., 0]: storage plus offset
  DType dtype = DType::Float32;
  std::vector<std::int64_t> sizes;    ///< empty for a 0-d scalar
  std::vector<std::int64_t> strides;  ///< in elements; empty means contiguous row-major
  Device device;
  std::string name;  ///< used in the layout, the manifest and every error message
  /// A placeholder for a missing tensor (an undefined gradient under the zero-fill policy):
  /// gather writes zeros for it, scatter and scatter_add skip it. `data` must be null.
  bool zero_fill = false;
};

/// Number of elements (1 for a 0-d tensor).
std::int64_t numel(const TensorRef& t);

/// "'name' (shape [5, 10], float32, cpu)": how error messages name a tensor.
std::string describe(const TensorRef& t);

}  // namespace flatgather
