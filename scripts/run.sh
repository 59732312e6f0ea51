#!/usr/bin/env bash
# The main job: installs what is missing (scripts/deps.sh), builds build/, and runs
# flatgather-bench's default suites side by side with the peers (torch::cat, copy loops, a
# memcpy roofline; on GPU also _foreach_copy_, split_with_sizes_copy, cub::DeviceMemcpy::Batched,
# cudaMemcpyBatchAsync). Prints one line per benchmark and the summary tables; saves the run
# under results/<date>-<commit>/ (git-ignored) and prints those paths last:
#   bench.json   Google Benchmark's JSON, every repetition
#   summary.md   the summary tables as Markdown
#   bench.png    the plot (scripts/plot-bench): GB/s per suite and method, roofline marked
#   console.txt  what was printed
#
#   scripts/run.sh [flatgather-bench flags...]
#     --full                           Google Benchmark's full table as well (every method's
#                                      mean, median, stddev, cv)
#     --device cpu|cuda                one device only
#     --benchmark_filter=many-tiny     a quick run: the suites, ops or methods that match
#     --help, --list-suites            flatgather-bench's own help and suite list
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh

for arg in "$@"; do
  case $arg in
    --help | -h | --list-suites) scripts/build.sh >/dev/null && exec build/flatgather-bench "$@" ;;
  esac
done

# The build: its output to a log, a line per tenth of the way on the console.
mkdir -p build/logs
echo "run: building build/ (log: build/logs/build.log)"
if ! scripts/build.sh 2>&1 | tee build/logs/build.log | awk '
    match($0, /^\[[0-9]+\/[0-9]+\]/) {
      split(substr($0, 2, RLENGTH - 2), k, "/")
      tenth = int(10 * k[1] / k[2])
      if (tenth > shown) { shown = tenth; printf "run:   built %d of %d\n", k[1], k[2] }
    }'; then
  echo "run: the build failed; the last lines of build/logs/build.log:" >&2
  tail -n 40 build/logs/build.log >&2
  exit 1
fi

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ "$commit" != unknown ] && ! git diff --quiet HEAD 2>/dev/null; then
  commit="$commit-dirty"
fi
out="results/$(date +%Y-%m-%d-%H%M%S)-$commit"
mkdir -p "$out"

rc=0
build/flatgather-bench --summary_out="$out/summary.md" \
  --benchmark_out="$out/bench.json" --benchmark_out_format=json "$@" 2>&1 |
  tee "$out/console.txt" || rc=$?
if [ -s "$out/bench.json" ]; then
  /usr/bin/python3 scripts/plot-bench "$out/bench.json" -o "$out/bench.png" 2>&1 |
    tee -a "$out/console.txt" || rc=1
fi

echo
echo "run: saved in $out/"
for f in bench.json summary.md bench.png console.txt; do
  if [ -f "$out/$f" ]; then echo "  $out/$f"; else echo "  $out/$f (not written)"; fi
done
exit "$rc"
