#!/usr/bin/env bash
# A/B of the CPU executor's knobs, for a quiet machine (docs/perf.md, "Task size and
# schedule"): flatgather-bench on every CPU suite with --runs 3 (three rounds, each in a new
# random order), then
#   1. the benchmark's own summary: ours / best peer and ours / roofline, medians of the
#      rounds' ratios (also in build/cpu-ab/summary.md),
#   2. scripts/bench-variants.py: every variant (flatgather_stream_on/off, flatgather_static,
#      flatgather_task_64k, flatgather_task_4m), peer, read_bound and the roofline relative to ours,
#      medians of the rounds' ratios with their range (also in build/cpu-ab/variants.md).
# The JSON of every round is kept in build/cpu-ab/cpu-ab.json.
#   scripts/build.sh && scripts/cpu-ab.sh [more flatgather-bench flags, e.g. --threads 1]
# Needs a built build/flatgather-bench (FGBENCH=path overrides). On an idle 2-core machine
# it takes a few minutes; on a busy one every figure is noise (docs/perf.md, "Why one thread,
# sometimes").
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bench=${FGBENCH:-build/flatgather-bench}
out=build/cpu-ab
mkdir -p "$out"
echo "cpu-ab: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD)," \
  "load average $(cut -d' ' -f1-3 /proc/loadavg)"
start=$SECONDS
"$bench" --device cpu --runs 3 --summary_out "$out/summary.md" \
  --benchmark_out="$out/cpu-ab.json" --benchmark_out_format=json "$@"
/usr/bin/python3 scripts/bench-variants.py "$out/cpu-ab.json" --device cpu | tee "$out/variants.md"
echo "cpu-ab: $((SECONDS - start)) s, load average $(cut -d' ' -f1-3 /proc/loadavg)"
