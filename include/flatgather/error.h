#pragma once
/// \file error.h
/// The one exception type of the library.

#include <sstream>
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

namespace detail {
/// Out-of-line throw so that check macros stay small at their call sites.
[[noreturn]] void throw_error(const std::string& message);
}  // namespace detail

}  // namespace flatgather

/// Throws flatgather::Error with the streamed message when `cond` is false.
///   FG_CHECK(n >= 0, "tensor '" << name << "' has negative size " << n);
#define FG_CHECK(cond, msg_stream)                                   \
  do {                                                               \
    if (!(cond)) {                                                   \
      std::ostringstream fg_check_os_;                               \
      fg_check_os_ << msg_stream;                                    \
      ::flatgather::detail::throw_error(fg_check_os_.str());         \
    }                                                                \
  } while (false)
