#pragma once
// Internal: the CPU executor's element loops. Included by src/cpu_loops_baseline.cpp and
// src/cpu_loops_avx2.cpp, each inside its own namespace and with its own compiler flags
// (see NOTE: [cpu isa dispatch] in src/cpu_executor.cpp).
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "copy_desc.h"
#include "op.h"

namespace flatgather {
namespace detail {

#define FG_DECLARE_CPU_LOOPS(ns)                                                            \
  namespace ns {                                                                            \
  /* Elements [begin, end) of copy `d` between the tensor and `flat` (whose dtype is        \
     `flat_dtype`); padding and missing tensors (null data) are zeros on gather. `stream`:  \
     gather (into the flat buffer) and contiguous scatter write with streaming stores; the  \
     caller fences (NOTE: [cpu streaming stores] in src/cpu_executor.cpp). */               \
  void run_copy(Op op, const CopyDesc& d, std::int64_t begin, std::int64_t end, void* flat, \
                DType flat_dtype, double alpha, bool stream);                               \
  }

FG_DECLARE_CPU_LOOPS(cpu_baseline)
FG_DECLARE_CPU_LOOPS(cpu_avx2)

// Whether the AVX2 loops round float32 to bfloat16 with AVX512_BF16 (NOTE: [cpu avx512
// bfloat16] in src/cpu_loops.inc): built with it, the CPU and the OS support it, and
// FLATGATHER_CPU_ISA does not forbid it (NOTE: [cpu isa dispatch] in src/cpu_executor.cpp).
bool cpu_avx512_bf16();

}  // namespace detail
}  // namespace flatgather
