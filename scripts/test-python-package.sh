#!/usr/bin/env bash
# The Python package as a user installs it:
#   1. a virtual environment that sees the system's PyTorch (--system-site-packages; Debian's
#      python3-torch here), with the build backend (scikit-build-core) and the test-only
#      safetensors package from PyPI;
#   2. pip install --no-build-isolation . (compiled against that PyTorch);
#   3. the Python tests, copied out of the repository and run against the installed package
#      (no PYTHONPATH, no FLATGATHER_LIBRARY); they include the refused import of a library
#      whose build record names another PyTorch (test_package.py);
#   4. examples/python/model_averaging.py: 2 processes on 127.0.0.1;
#   5. a smoke run of bench/python/load_safetensors.py (a tiny model, one run per side);
#   6. pip uninstall, after which flatgather no longer imports.
#
#   scripts/test-python-package.sh [PIP_OPTION...]
#     e.g. -C cmake.define.FLATGATHER_CUDA_ARCHITECTURES=90 or -C cmake.define.FLATGATHER_CUDA=OFF
# Environment: PYTHON (default /usr/bin/python3, the one with torch); KEEP=1 keeps the
# temporary directory. The environment stays in build-pip/venv and the CMake build in
# build-pip/<wheel tag>, so that a second run rebuilds only what changed.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-/usr/bin/python3}
venv=$root/build-pip/venv

tmp=$(mktemp -d /tmp/flatgather-python-package-XXXXXX)
cleanup() { if [[ ${KEEP:-0} = 1 ]]; then echo "kept $tmp"; else rm -rf "$tmp"; fi; }
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }
# Everything below runs with the variables a developer's shell may carry removed.
run() { env -u PYTHONPATH -u FLATGATHER_LIBRARY "$@"; }

step "virtual environment $venv"
if [[ ! -x $venv/bin/python ]]; then
  "$python" -m venv --system-site-packages "$venv"
fi
# safetensors: test-only, for the interop tests of tests/python/test_state.py, which must run
# here (FLATGATHER_REQUIRE_SAFETENSORS=1 below makes its absence a failure, not a skip).
run "$venv/bin/python" -m pip install -q --disable-pip-version-check "scikit-build-core>=0.10" \
  "safetensors>=0.4"
run "$venv/bin/python" -c 'import torch; print("torch", torch.__version__, "from", torch.__file__)'

step "pip install --no-build-isolation . $*"
start=$SECONDS
(cd "$root" && run "$venv/bin/python" -m pip install --disable-pip-version-check \
  --no-build-isolation "$@" .)
echo "built and installed in $((SECONDS - start)) s"

step "Python tests, from $tmp, against the installed package"
mkdir -p "$tmp/tests"
cp -r "$root/tests/python" "$tmp/tests/python"
cp -r "$root/examples" "$tmp/examples"
mkdir -p "$tmp/bench"
cp -r "$root/bench/python" "$tmp/bench/python"
cd "$tmp"
run "$venv/bin/python" - <<'PY'
import pathlib, sys, flatgather
site = pathlib.Path(flatgather.__file__).parent
assert "site-packages" in site.parts, site
assert flatgather.library_path().parent == site, flatgather.library_path()
print("flatgather", flatgather.__version__, "from", site, "|", flatgather.build_info())
PY
run env FLATGATHER_REQUIRE_LIBRARY=1 FLATGATHER_REQUIRE_SAFETENSORS=1 "$venv/bin/python" -m pytest -q -p no:cacheprovider \
  tests/python

step "model averaging, 2 processes on 127.0.0.1"
run "$venv/bin/python" examples/python/model_averaging.py

step "safetensors loading benchmark, smoke run (scripts/bench-python.sh runs it in full)"
run "$venv/bin/python" bench/python/load_safetensors.py --tiny --reps 1

step "pip uninstall"
run "$venv/bin/python" -m pip uninstall -y -q flatgather
if run "$venv/bin/python" -c 'import flatgather' 2>/dev/null; then
  echo "FAIL: flatgather still imports after pip uninstall" >&2
  exit 1
fi

step "the installed package passed"
