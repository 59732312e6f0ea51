#!/usr/bin/env bash
# Installs the Debian 12 packages flatgather needs, only those that are missing.
#   scripts/deps.sh            # build, test and benchmark dependencies
set -euo pipefail

packages=(cmake ninja-build g++ git libtorch-dev python3-torch libgloo-dev libgtest-dev
  libbenchmark-dev nlohmann-json3-dev python3-pytest python3-matplotlib python3-venv shellcheck
  clang libclang-rt-14-dev libomp-dev)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "flatgather: installing missing Debian packages: ${missing[*]}" >&2
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "flatgather: run as root or install sudo" >&2; exit 1; }
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
