#pragma once
/// \file format.h
/// How every message writes a shape. Private, shared by the core (tensors, layout segments)
/// and the LibTorch adapter, so that a shape reads the same wherever an error comes from.

#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

namespace flatgather {
namespace detail {

/// "[2, 3]"; "[]" for a 0-d tensor. The same text as LibTorch prints for `t.sizes()`.
inline std::string shape_string(const std::int64_t* sizes, std::size_t ndim) {
  std::ostringstream os;
  os << "[";
  for (std::size_t i = 0; i < ndim; ++i) os << (i ? ", " : "") << sizes[i];
  os << "]";
  return os.str();
}

inline std::string shape_string(const std::vector<std::int64_t>& shape) {
  return shape_string(shape.data(), shape.size());
}

}  // namespace detail
}  // namespace flatgather
