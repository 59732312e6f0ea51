#pragma once
// The benchmark bodies: tensors of a suite on a device, every method that moves them, the
// reference check and the timed loop.

#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "suites.h"

namespace fgbench {

enum class Op { Gather, Scatter, ScatterAdd };
enum class Dev { CPU, CUDA };

const char* op_name(Op op);
const char* dev_name(Dev dev);

/// Bytes one call of `op` reads plus writes: the same for every method.
std::int64_t bytes_moved(Op op, const Suite& suite);

/// A method that is left out, and why.
struct Unavailable {
  std::string method;
  std::string reason;
};

/// Methods run for (op, device, suite), ours first and the roofline last. Peers that cannot
/// run here are appended to `unavailable` (when given).
std::vector<std::string> methods_for(Op op, Dev dev, const Suite& suite,
                                     std::vector<Unavailable>* unavailable = nullptr);

/// Why CUDA benchmarks cannot run in this process ("" when they can).
std::string cuda_unavailable_reason();

/// Name of the CPU (from /proc/cpuinfo) or of the GPU.
std::string device_description(Dev dev);

/// The body of benchmark `<op>/<device>/<suite.name>/<method>`. Builds the suite's tensors on
/// first use (one suite stays resident at a time), checks the method's result once against
/// the reference, then times it. `progress` is printed on stderr before the first run.
void run_benchmark(benchmark::State& state, Op op, Dev dev, const Suite& suite,
                   const std::string& method, const std::string& progress);

/// Frees the resident suite.
void release_workload();

}  // namespace fgbench
