// Host probing for flatgather-bench: cache sizes, device names, whether CUDA can run.
#include "devices.h"

#include <fstream>

#include <ATen/Context.h>

#include "cpu_cache.h"
#include "cuda_peers.h"
#include "flatgather/plan.h"

namespace fgbench {

const char* dev_name(Dev dev) {
  return dev == Dev::CPU ? "cpu" : "cuda";
}

std::size_t cache_bytes(Dev dev) {
  if (dev == Dev::CPU) return flatgather::detail::cpu_llc_bytes();
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
