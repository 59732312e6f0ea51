#pragma once
// Internal: the CPU loops of gather with statistics and of scaled scatter (NOTE: [gather
// statistics] in src/stats.h), compiled once per instruction set next to src/cpu_loops.inc
// (src/cpu_stats_loops.inc, included by src/cpu_loops_*.cpp).
#include <cstdint>

#include "cast.h"
#include "copy_desc.h"
#include "stats.h"

namespace flatgather {
namespace detail {

#define FG_DECLARE_CPU_STATS_LOOPS(ns)                                                        \
  namespace ns {                                                                              \
  /* gather of elements [begin, end) of copy `d` writing cast(source * scale) and adding to   \
     `out` (sum of squares of the written values when `sumsq`, non-finite sources when        \
     `check`). Padding and missing tensors write zeros and add nothing. */                    \
  void gather_stats_copy(const CopyDesc& d, std::int64_t begin, std::int64_t end, void* flat, \
                         DType flat_dtype, double scale, bool sumsq, bool check,              \
                         StatsPartial& out);                                                  \
  /* scatter of elements [begin, end) writing cast(flat * scale) into the tensor. */          \
  void scatter_scaled_copy(const CopyDesc& d, std::int64_t begin, std::int64_t end,           \
                           const void* flat, DType flat_dtype, double scale);                 \
  }

FG_DECLARE_CPU_STATS_LOOPS(cpu_baseline)
FG_DECLARE_CPU_STATS_LOOPS(cpu_avx2)

}  // namespace detail
}  // namespace flatgather
