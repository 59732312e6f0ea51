#!/usr/bin/env bash
# CI stage: the GPU check rehearsed on this machine without GPU, so the GPU path cannot rot
# between GPU runs. Fetches the carried .debs (scripts/gpu-deps.sh), then runs
# `scripts/gpu-check.sh --rehearse`: the same configure (sm_90), the same targets built
# against those .debs alone (the system's GoogleTest, Google Benchmark and nlohmann-json
# hidden in a mount namespace), every step that needs no device. Fails when it fails.
#
#   scripts/ci-gpu-rehearsal.sh        # build-gpu-rehearsal/, results in its gpu-check/
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/gpu-deps.sh"
export FLATGATHER_BUILD_DIR=${FLATGATHER_BUILD_DIR:-$root/build-gpu-rehearsal}
start=$(date +%s)
status=0
bash "$root/scripts/gpu-check.sh" --rehearse || status=$?
echo "ci-gpu-rehearsal: $(($(date +%s) - start)) s, exit $status"
exit "$status"
