#pragma once
// The body of every benchmark: prepare the method, check it, time it.

#include <string>

#include <benchmark/benchmark.h>

#include "methods.h"

namespace fgbench {

/// The body of benchmark `<op>/<device>/<suite.name>/<method.name>`. Builds the suite's
/// tensors on first use (one suite stays resident at a time), checks the method's result once
/// against the reference, then times it. `progress` is printed on stderr before the first run.
void run_benchmark(benchmark::State& state, BenchOp op, Dev dev, const Suite& suite,
                   const MethodSpec& method, const std::string& progress);

}  // namespace fgbench
