#!/usr/bin/env bash
# The one place that installs Debian 12 packages: those flatgather needs to build, test and
# benchmark, only the ones that are missing, with a line per phase of apt's work (the full apt
# output goes to a log, shown when apt fails). Every other script calls this one.
#   scripts/deps.sh
# Runs apt-get as root, or through sudo.
set -euo pipefail

# What each group is for, so the install line can say why.
packages=(
  cmake ninja-build g++ git                             # the build
  libtorch-dev python3-torch libgloo-dev                # LibTorch, PyTorch, c10d's Gloo
  libgtest-dev libbenchmark-dev nlohmann-json3-dev      # tests, benchmark, manifest JSON
  python3-pytest python3-matplotlib python3-venv        # pytest, plots, the linters' venv
  shellcheck                                            # scripts/lint.sh
  clang libclang-rt-14-dev libomp-dev                   # scripts/fuzz-manifest.sh (libFuzzer)
  llvm                                                  # llvm-symbolizer: sanitizer stacks
  libtsan2                                              # scripts/sanitize.sh tsan: GCC's TSan runtime
  ccache                                                # test.sh: repeated compiles are cache hits
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

say() { echo "deps: $*" >&2; }
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { say "run as root or install sudo"; exit 1; }
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp /tmp/flatgather-deps-XXXXXX.log)

# apt_phases: apt-get's output on stdin -> its full text in $log, and on stderr the size of
# the job, then progress lines as packages are downloaded, unpacked and set up (about 20
# lines for a fresh Debian 12), and every error or warning.
apt_phases() {
  tee -a "$log" | awk '
    function step(what, n) {
      if (total > 0 && (n == total || n % every == 0)) {
        printf "deps:   %-12s %d/%d\n", what, n, total > "/dev/stderr"
      }
    }
    /newly installed/ { total = $1 + $3; every = total > 40 ? int(total / 4) : total
                        print "deps: " $0 > "/dev/stderr" }
    /^Need to get|^After this operation/ { print "deps: " $0 > "/dev/stderr" }
    /^Get:/ { step("downloaded", ++got) }
    /^Fetched/ { print "deps: " $0 > "/dev/stderr" }
    /^Unpacking / { step("unpacked", ++unpacked) }
    /^Setting up / { step("set up", ++set) }
    /^(E|W|Err):/ { print > "/dev/stderr" }
  '
}

fail() { say "apt-get failed; the last lines of $log:"; tail -n 30 "$log" >&2; exit 1; }
say "installing ${#missing[@]} missing Debian packages (and what they depend on):"
say "  ${missing[*]}"
say "apt-get update"
"${sudo[@]}" apt-get update 2>&1 | apt_phases || fail
say "apt-get install (full output: $log)"
"${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}" 2>&1 | apt_phases || fail
say "done"
rm -f "$log"
