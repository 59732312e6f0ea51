#pragma once
/// \file op.h
/// The three operations of a plan, shared by the CPU loops, the CUDA kernels and the benchmark
/// (one home for the op enum; STYLE.md "One home per fact").

#include <cstdint>

#include <flatgather/config.h>

namespace flatgather::detail {

/// gather: tensors -> flat; scatter: flat -> tensors; scatter_add: tensor += alpha * segment.
enum class Op : std::uint8_t { Gather, Scatter, ScatterAdd };

/// "gather", "scatter" or "scatter_add": the names the Python API and the benchmark use.
FG_HOST_DEVICE constexpr const char* op_name(Op op) {
  return op == Op::Gather ? "gather" : op == Op::Scatter ? "scatter" : "scatter_add";
}

}  // namespace flatgather::detail
