#pragma once
// Internal: the host's last-level cache size, for the CPU executor's streaming threshold
// (NOTE: [cpu streaming stores]) and for flatgather-bench's buffer rotation (one home for it).
#include <cstddef>

namespace flatgather {
namespace detail {

/// Bytes of the last-level cache one core sees: sysfs (cpu0's index3, then index2), then
/// sysconf, then 32 MiB. Probed on the first call, cached afterwards; thread-safe.
std::size_t cpu_llc_bytes();

}  // namespace detail
}  // namespace flatgather
