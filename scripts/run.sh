#!/usr/bin/env bash
# The main job: installs what is missing, builds, and runs flatgather-bench's default suites
# side by side with the peers (torch::cat, copy loops, memcpy roofline; on GPU also
# _foreach_copy_, split_with_sizes_copy, cub::DeviceMemcpy::Batched, cudaMemcpyBatchAsync).
#   scripts/run.sh [flatgather-bench flags...]      e.g. --device cpu --benchmark_filter=gpt2
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh >&2
exec build/flatgather-bench "$@"
