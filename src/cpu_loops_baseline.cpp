// The CPU element loops for the baseline instruction set (see src/cpu_loops.inc).
#define FG_CPU_LOOPS_NAMESPACE cpu_baseline
#include "cpu_loops.inc"
#include "cpu_stats_loops.inc"
