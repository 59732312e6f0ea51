#!/usr/bin/env bash
# The Python benchmarks (bench/python/): loading a safetensors file into a model, flatgather
# against safetensors.torch.load_file + load_state_dict. They need the test-only safetensors
# package, which lives in build-pip/venv, the virtual environment of
# scripts/test-python-package.sh (made here when missing: --system-site-packages, so it sees
# the system's PyTorch). flatgather is the library built by scripts/build.sh, from python/.
#   scripts/bench-python.sh [--tiny] [--reps N] [--threads N]
# Environment: PYTHON (default /usr/bin/python3, the one with torch).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
python=${PYTHON:-/usr/bin/python3}
venv=$root/build-pip/venv

scripts/build.sh >/dev/null
if [[ ! -x $venv/bin/python ]]; then
  "$python" -m venv --system-site-packages "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check "safetensors>=0.4"
PYTHONPATH=$root/python FLATGATHER_LIBRARY=$root/build/libflatgather_torch.so \
  FLATGATHER_REQUIRE_LIBRARY=1 "$venv/bin/python" bench/python/load_safetensors.py "$@"
