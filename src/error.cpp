#include "check.h"

namespace flatgather {
namespace detail {
void throw_error(const std::string& message) {
  throw Error(message);
}
}  // namespace detail
}  // namespace flatgather
