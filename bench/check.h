#pragma once
// The reference check: a method's result on buffer set 0 against LibTorch's.

#include <string>

#include "methods.h"

namespace fgbench {

/// Runs `m` once on set 0 over poisoned outputs and compares its result exactly with
/// LibTorch's. Returns "" or what went wrong (starting "wrong result").
std::string check(Method& m, Op op, Workload& w, const Suite& suite);

}  // namespace fgbench
