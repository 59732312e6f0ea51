#pragma once
// What flatgather-bench learns about the machine: the devices, their caches and names.

#include <cstddef>
#include <string>

namespace fgbench {

enum class Dev { CPU, CUDA };

/// "cpu" or "cuda": the device part of a benchmark's name.
const char* dev_name(Dev dev);

/// Bytes of the cache a buffer set must overflow: the last-level cache one core sees on the
/// CPU, the L2 on the GPU.
std::size_t cache_bytes(Dev dev);

/// Why CUDA benchmarks cannot run in this process ("" when they can).
std::string cuda_unavailable_reason();

/// Name of the CPU (from /proc/cpuinfo) or of the GPU.
std::string device_description(Dev dev);

}  // namespace fgbench
