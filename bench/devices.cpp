// Host probing for flatgather-bench: cache sizes, device names, whether CUDA can run.
#include "devices.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include <ATen/Context.h>

#include "cuda_peers.h"
#include "flatgather/plan.h"

namespace fgbench {
namespace {

// The last-level cache one core sees: sysfs first (glibc's sysconf sums the L3 of every core
// complex on some AMD parts), then sysconf, then 32 MiB.
std::size_t cpu_llc_bytes() {
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
  long bytes = sysconf(_SC_LEVEL3_CACHE_SIZE);
  if (bytes <= 0) bytes = sysconf(_SC_LEVEL2_CACHE_SIZE);
  return bytes > 0 ? static_cast<std::size_t>(bytes) : std::size_t{32} << 20;
}

}  // namespace

const char* dev_name(Dev dev) { return dev == Dev::CPU ? "cpu" : "cuda"; }

std::size_t cache_bytes(Dev dev) {
  if (dev == Dev::CPU) return cpu_llc_bytes();
  const std::size_t l2 = cuda::l2_bytes();
  return l2 > 0 ? l2 : std::size_t{60} << 20;
}

std::string cuda_unavailable_reason() {
  if (!cuda::compiled()) return "flatgather-bench was built without CUDA";
  if (!at::hasCUDA()) return "this LibTorch has no CUDA support or sees no device";
  if (!flatgather::cuda_available()) return "flatgather sees no usable CUDA device";
  return "";
}

std::string device_description(Dev dev) {
  if (dev == Dev::CUDA) return cuda::device_name();
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("model name", 0) == 0) {
      const std::size_t colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  }
  return "unknown CPU";
}

}  // namespace fgbench
