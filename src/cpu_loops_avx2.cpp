// The CPU element loops compiled with -mavx2 -mfma (see NOTE: [cpu isa dispatch]).
#define FG_CPU_LOOPS_NAMESPACE cpu_avx2
#include "cpu_loops.inc"
#include "cpu_stats_loops.inc"
