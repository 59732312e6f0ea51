// The host's last-level cache size (see src/cpu_cache.h).
#include "cpu_cache.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

namespace flatgather {
namespace detail {

namespace {

// sysfs before sysconf: glibc's sysconf sums the L3 of every core complex on some AMD parts,
// while a core only ever caches in its own.
std::size_t probe_llc_bytes() {
  for (const char* index : {"index3", "index2"}) {
    std::ifstream in(std::string("/sys/devices/system/cpu/cpu0/cache/") + index + "/size");
    std::string text;
    if (in >> text && !text.empty()) {
      std::size_t scale = 1;
      if (text.back() == 'K') scale = std::size_t{1} << 10;
      if (text.back() == 'M') scale = std::size_t{1} << 20;
      const std::size_t value = std::strtoull(text.c_str(), nullptr, 10) * scale;
      if (value > 0) return value;
    }
  }
#ifdef _SC_LEVEL3_CACHE_SIZE
  long bytes = sysconf(_SC_LEVEL3_CACHE_SIZE);
  if (bytes <= 0) bytes = sysconf(_SC_LEVEL2_CACHE_SIZE);
  if (bytes > 0) return static_cast<std::size_t>(bytes);
#endif
  return std::size_t{32} << 20;
}

}  // namespace

std::size_t cpu_llc_bytes() {
  static const std::size_t bytes = probe_llc_bytes();
  return bytes;
}

}  // namespace detail
}  // namespace flatgather
