#!/usr/bin/env bash
# Downloads, on this (networked, Debian 12) machine, the Debian packages that the GPU check
# needs and the GPU machine lacks, into .deps/ (git-ignored; carried to the GPU machine):
#
#   libgtest-dev         GoogleTest (static libraries, headers, CMake config)
#   libbenchmark-dev     Google Benchmark (headers, CMake config, libbenchmark.so link)
#   libbenchmark1debian  Google Benchmark's shared library (what flatgather-bench runs with;
#                        libbenchmark1.8.3 and the like on Ubuntu)
#   nlohmann-json3-dev   nlohmann-json (header-only, CMake config)
#
# Nothing else is needed: each package's other dependencies (googletest's sources, libc,
# libstdc++) are either unused by the build or present on any machine with a C++ compiler.
# scripts/gpu-check.sh unpacks them with `dpkg -x` into a private prefix and builds against
# that prefix only; `scripts/gpu-check.sh --rehearse` proves it here (scripts/ci-gpu-rehearsal.sh).
#
#   scripts/gpu-deps.sh            # idempotent: downloads only what .deps/ lacks
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest=$root/.deps
# Google Benchmark's runtime package is named after its version on Ubuntu (libbenchmark1.8.3):
# take the name from libbenchmark-dev's dependencies (docker/Dockerfile runs this on Ubuntu).
runtime=$(apt-cache show libbenchmark-dev 2>/dev/null |
  sed -n 's/^Depends:.*\(libbenchmark[0-9][^ ,]*\).*/\1/p' | head -n 1)
runtime=${runtime:-libbenchmark1debian}
packages=(libgtest-dev libbenchmark-dev "$runtime" nlohmann-json3-dev)
# A file each package must hold, so a renamed or emptied package fails here, not on the GPU.
declare -A must_hold=(
  [libgtest-dev]=GTestConfig.cmake
  [libbenchmark-dev]=benchmarkConfig.cmake
  [$runtime]=libbenchmark.so.
  [nlohmann-json3-dev]=nlohmann_jsonConfig.cmake
)

if ! command -v apt-get >/dev/null || ! command -v dpkg-deb >/dev/null; then
  echo "gpu-deps: needs a Debian machine (apt-get, dpkg-deb)" >&2
  exit 1
fi
mkdir -p "$dest"
missing=()
for p in "${packages[@]}"; do
  compgen -G "$dest/${p}_*.deb" >/dev/null || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "gpu-deps: downloading ${missing[*]} into .deps/" >&2
  # apt-get download needs package lists; fetch them once if this machine has none. As root,
  # apt would hand the download to its _apt user, who may not be able to write .deps/.
  get=(apt-get download -q)
  [ "$(id -u)" -eq 0 ] && get+=(-o APT::Sandbox::User=root)
  if ! (cd "$dest" && "${get[@]}" "${missing[@]}"); then
    apt-get update -qq
    (cd "$dest" && "${get[@]}" "${missing[@]}")
  fi
fi

for p in "${packages[@]}"; do
  debs=("$dest/${p}"_*.deb)
  if [ ${#debs[@]} -ne 1 ]; then
    echo "gpu-deps: expected one ${p}_*.deb in .deps/, found ${#debs[@]}: ${debs[*]}" >&2
    exit 1
  fi
  listing=$(dpkg-deb -c "${debs[0]}")
  if ! grep -q -- "${must_hold[$p]}" <<<"$listing"; then
    echo "gpu-deps: ${debs[0]} holds no ${must_hold[$p]}" >&2
    exit 1
  fi
done
echo "gpu-deps: .deps/ holds $(cd "$dest" && echo *.deb) ($(du -sh "$dest" | cut -f1))" >&2
