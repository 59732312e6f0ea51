#pragma once
/// \file error.h
/// The one exception type of the library.

#include <stdexcept>
#include <string>

namespace flatgather {

/// Thrown for every invalid input and every failed device call. The message names the
/// offending tensor (name, shape, dtype, device) and says what would be valid.
///
///   try { plan.scatter(flat); } catch (const flatgather::Error& e) { std::cerr << e.what(); }
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error("flatgather: " + what) {}
};

}  // namespace flatgather
