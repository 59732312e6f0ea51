#pragma once
// The reference check: a method's result on buffer set 0 against LibTorch's.

#include <string>

#include "methods.h"

namespace fgbench {

/// Relative tolerance of our norm against the float64 norm of the written values: NOTE:
/// [gather statistics] in src/stats.h bounds its error by 1.3e-7 on 11.7M values.
constexpr double kOursNormTolerance = 1e-6;

/// Relative tolerance of a peer's norm: 1e-2, or four units in the last place of the
/// narrowest floating dtype among the suite's tensors and flat buffer when that is more
/// (bfloat16: the peers return norms in the data's dtype). The peers accumulate in float32:
/// PyTorch 1.13's CPU linalg_vector_norm of many-tiny's 20M-element flat buffer misses the
/// float64 norm by 1.1e-3. So a peer's check catches a wrong set-up, not imprecision.
double peer_norm_tolerance(const Suite& suite);

/// Runs `m` once on set 0 over poisoned outputs and compares its result with LibTorch's:
/// the flat buffer and the tensors exactly; a statistics op's norm and clip coefficient
/// within StatsResult::tolerance of the float64 reference, its found_inf exactly. Returns ""
/// or what went wrong (starting "wrong result").
std::string check(Method& m, BenchOp op, Workload& w, const Suite& suite);

}  // namespace fgbench
