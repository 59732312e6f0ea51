#pragma once
/// \file check.h
/// The library's check macro. Private: users catch flatgather::Error (error.h); they never
/// raise it.

#include <sstream>
#include <string>

#include "flatgather/error.h"

namespace flatgather {

namespace detail {
/// Out-of-line throw so that check macros stay small at their call sites.
[[noreturn]] void throw_error(const std::string& message);
}  // namespace detail

}  // namespace flatgather

/// Throws flatgather::Error with the streamed message when `cond` is false.
///   FG_CHECK(n >= 0, "tensor '" << name << "' has negative size " << n);
#define FG_CHECK(cond, msg_stream)                           \
  do {                                                       \
    if (!(cond)) {                                           \
      std::ostringstream fg_check_os_;                       \
      fg_check_os_ << msg_stream;                            \
      ::flatgather::detail::throw_error(fg_check_os_.str()); \
    }                                                        \
  } while (false)
