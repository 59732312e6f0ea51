#pragma once
// What every operator file of the adapter (src/torch/ops.cpp, src/torch/adopt_ops.cpp) shares:
// the error translation across the boundary and the Python module walk as a NamedTensor list.

#include <cstdint>
#include <exception>
#include <sstream>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/core/List.h>
#include <c10/util/Exception.h>

#include "flatgather/torch.h"

namespace flatgather {
namespace torch {
namespace detail {

// See NOTE: [errors across the boundary] in src/torch/ops.cpp.
template <class F>
auto translate_errors(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const c10::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw c10::Error(c10::SourceLocation{__func__, __FILE__, static_cast<std::uint32_t>(__LINE__)},
                     e.what());
  }
}

[[noreturn]] inline void throw_invalid(const std::string& message) {
  throw c10::Error(c10::SourceLocation{__func__, __FILE__, static_cast<std::uint32_t>(__LINE__)},
                   "flatgather: " + message);
}

/// The walk of a Python module (python/flatgather/_plan.py, _walk_module) as the adapter's
/// NamedTensor list: `names[i]`, `tensors[i]` and `is_buffer[i]` describe one tensor. `op`
/// names the operator in the error for lists of different lengths.
inline std::vector<NamedTensor> named_tensors(const char* op, std::vector<std::string> names,
                                              const std::vector<at::Tensor>& tensors,
                                              const c10::List<bool>& is_buffer) {
  if (names.size() != tensors.size() || names.size() != is_buffer.size()) {
    std::ostringstream os;
    os << op << ": got " << names.size() << " names, " << tensors.size() << " tensors and "
       << is_buffer.size() << " buffer flags; they must have one entry each";
    throw_invalid(os.str());
  }
  std::vector<NamedTensor> out;
  out.reserve(names.size());
  for (std::size_t i = 0; i < names.size(); ++i)
    out.push_back({std::move(names[i]), tensors[i], is_buffer.get(i)});
  return out;
}

}  // namespace detail
}  // namespace torch
}  // namespace flatgather
