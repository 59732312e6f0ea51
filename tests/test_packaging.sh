#!/usr/bin/env bash
# Static checks of the Docker image, the CI workflows and the shell scripts: what can be
# checked on a machine with no Docker engine and no GPU.
#
#   bash tests/test_packaging.sh [REPO_ROOT]      (REPO_ROOT defaults to this file's repo)
#
# - every file the image and the workflows need exists, and every repository path they name;
# - the Dockerfile runs (RUN, CMD, ENTRYPOINT) only repository scripts that exist and that
#   CI already runs (.ci/run or .github/workflows, followed through the scripts they call);
# - the Dockerfile pins its base image, Python and apt packages, is multi-stage, ends as a
#   non-root user with OUT=/results and the default command scripts/gpu-check.sh;
# - .dockerignore keeps what the build needs;
# - every shell script in scripts/ (and this file) passes `bash -n` and shellcheck
#   (shellcheck is skipped, with a message, where it is not installed).
# Prints one line per check and, last, "N passed, M failed"; exits 1 on any failure.
set -u

root=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
if ! cd "$root" 2>/dev/null; then
  echo "FAIL    cannot enter repository root '$root'"
  echo "0 passed, 1 failed"
  exit 1
fi

dockerfile=docker/Dockerfile
workflows=(.github/workflows/cpu.yml .github/workflows/gpu.yml)
# Paths inside the repository, as they appear in the files checked here.
path_re='(scripts|docker|tests|\.ci|\.github|bench|cmake|python|examples|docs|include|src|kernels)/[A-Za-z0-9_.+-]+(/[A-Za-z0-9_.+-]+)*'

passed=0
failed=0
skipped=0
pass() { passed=$((passed + 1)); printf 'ok      %s\n' "$1"; }
fail() {
  failed=$((failed + 1))
  printf 'FAIL    %s\n' "$1"
  shift
  local line
  for line in "$@"; do printf '          %s\n' "$line"; done
}
skip() { skipped=$((skipped + 1)); printf 'skip    %s\n' "$1"; }
# check NAME PROBLEM...: pass when no problem was given, else fail listing them.
check() {
  local name=$1
  shift
  if (($# == 0)); then pass "$name"; else fail "$name" "$@"; fi
}

# Text without comment lines (YAML and Dockerfile comments start a line with #).
strip_comments() { grep -v '^[[:space:]]*#' "$1" || true; }

# Repository paths named in a text on stdin, one per line, without a leading ./ .
# A path counts only where it starts a word, so /usr/local/cuda/include is not "include/...".
repo_paths() {
  grep -oE "(^|[^A-Za-z0-9_./-])(\./)?${path_re}" | sed -E 's/^[^A-Za-z0-9_.]//; s#^\./##' | sort -u
}

# The commands of a workflow's `run:` steps (block scalars followed by indentation), so that a
# script named only in a step's title or a comment does not count as run.
workflow_commands() {
  awk '
    match($0, /^[[:space:]]*(- )?run:[[:space:]]*/) {
      rest = substr($0, RLENGTH + 1)
      indent = match($0, /[^[:space:]]/) - 1
      if (rest ~ /^[|>][-+]?[[:space:]]*$/) { inblock = 1 } else { print rest; inblock = 0 }
      next
    }
    inblock {
      if ($0 ~ /^[[:space:]]*$/) next
      if (match($0, /[^[:space:]]/) - 1 > indent) { print; next }
      inblock = 0
    }
  ' "$1" | grep -v '^[[:space:]]*#' || true
}

# The Dockerfile as logical instructions, "KEYWORD<TAB>arguments", continuations joined.
dockerfile_instructions() {
  awk '
    function emit(s,   kw, rest) {
      sub(/^[[:space:]]+/, "", s)
      if (s == "") return
      kw = s; sub(/[[:space:]].*/, "", kw)
      rest = s; sub(/^[^[:space:]]+[[:space:]]*/, "", rest)
      print toupper(kw) "\t" rest
    }
    /^[[:space:]]*#/ { next }
    {
      line = $0
      more = (line ~ /\\[[:space:]]*$/)
      if (more) sub(/\\[[:space:]]*$/, "", line)
      buf = buf " " line
      if (!more) { emit(buf); buf = "" }
    }
    END { emit(buf) }
  ' "$dockerfile"
}

# ---- 1. files the image and CI need ------------------------------------------------------
required=(
  "$dockerfile|the GPU image"
  ".dockerignore|the image's build context"
  "docker/README.md|how to build and run the image"
  ".github/workflows/cpu.yml|CPU CI"
  ".github/workflows/gpu.yml|GPU CI"
  "scripts/run.sh|README quick start: the main job"
  "scripts/test.sh|README quick start: every test; run by CPU CI"
  "scripts/deps.sh|installs the Debian packages for run.sh and test.sh"
  "scripts/gpu-check.sh|the image's default command; run by GPU CI"
)
for entry in "${required[@]}"; do
  file=${entry%%|*}
  why=${entry#*|}
  if [[ -f $file ]]; then
    pass "$file exists"
  else
    fail "$file exists" "missing: $file ($why)"
  fi
done

# The remaining checks read these files; without them they cannot say anything useful.
have_dockerfile=0
[[ -f $dockerfile ]] && have_dockerfile=1
present_workflows=()
for wf in "${workflows[@]}"; do
  [[ -f $wf ]] && present_workflows+=("$wf")
done

# ---- 2. every repository path named by the Dockerfile and the workflows exists -----------
for file in "$dockerfile" "${present_workflows[@]}"; do
  [[ -f $file ]] || continue
  problems=()
  while IFS= read -r path; do
    [[ -n $path && ! -e $path ]] && problems+=("$file names $path, which does not exist")
  done < <(strip_comments "$file" | repo_paths)
  check "every repository path $file names exists" "${problems[@]}"
done

if ((have_dockerfile)); then
  # COPY/ADD sources (other than --from=stage) must be in the build context.
  problems=()
  while IFS=$'\t' read -r keyword args; do
    [[ $keyword == COPY || $keyword == ADD ]] || continue
    [[ $args == *--from=* ]] && continue
    read -r -a words <<<"$args"
    sources=()
    for word in "${words[@]}"; do
      [[ $word == --* ]] || sources+=("$word")
    done
    # The last word is the destination.
    for ((i = 0; i + 1 < ${#sources[@]}; i++)); do
      [[ -e ${sources[i]} ]] || problems+=("$keyword source ${sources[i]} is not in the repository")
    done
  done < <(dockerfile_instructions)
  check "$dockerfile copies only files that exist" "${problems[@]}"
fi

# ---- 3. the Dockerfile runs only scripts that exist and that CI runs ----------------------
# Entry points of CI: .ci/run and the workflows. A script is exercised when an entry point
# names it, or an exercised script names it (by path or by file name, e.g. "$here/deps.sh").
declare -A exercised=()
queue=()
for entry in .ci/run "${present_workflows[@]}"; do
  [[ -f $entry ]] || continue
  while IFS= read -r path; do
    if [[ $path == scripts/* && -f $path && -z ${exercised[$path]:-} ]]; then
      exercised[$path]="run by $entry"
      queue+=("$path")
    fi
  done < <(if [[ $entry == *.yml ]]; then workflow_commands "$entry"; else strip_comments "$entry"; fi | repo_paths)
done
while ((${#queue[@]} > 0)); do
  current=${queue[0]}
  queue=("${queue[@]:1}")
  for candidate in scripts/*; do
    [[ -f $candidate && -z ${exercised[$candidate]:-} ]] || continue
    name=${candidate##*/}
    if strip_comments "$current" | grep -qE "(^|[^A-Za-z0-9_.-])${name//./\\.}([^A-Za-z0-9_.-]|$)"; then
      exercised[$candidate]="called by $current"
      queue+=("$candidate")
    fi
  done
done

if ((have_dockerfile)); then
  problems=()
  calls=0
  while IFS=$'\t' read -r keyword args; do
    [[ $keyword == RUN || $keyword == CMD || $keyword == ENTRYPOINT ]] || continue
    # Repository paths, plus any other *.sh word (a script outside the known folders).
    while IFS= read -r script; do
      [[ -n $script ]] || continue
      calls=$((calls + 1))
      if [[ ! -f $script ]]; then
        problems+=("$keyword calls $script, which does not exist")
      elif [[ -z ${exercised[$script]:-} ]]; then
        problems+=("$keyword calls $script, which no CI entry point (.ci/run, .github/workflows) runs")
      fi
    done < <({
      printf '%s\n' "$args" | repo_paths
      printf '%s\n' "$args" | grep -oE '[A-Za-z0-9_./-]+\.sh' | sed 's#^\./##' | grep -vE "^${path_re}$" || true
    } | sort -u)
  done < <(dockerfile_instructions)
  check "$dockerfile runs only existing scripts that CI runs ($calls found)" "${problems[@]}"
fi

# ---- 4. the Dockerfile's shape ------------------------------------------------------------
if ((have_dockerfile)); then
  declare -A arg_default=()
  stages=()
  from_problems=()
  final_user=""
  final_out=""
  final_cmd=""
  pin_problems=()
  while IFS=$'\t' read -r keyword args; do
    case $keyword in
      ARG)
        if ((${#stages[@]} == 0)) && [[ $args == *=* ]]; then
          arg_default[${args%%=*}]=${args#*=}
        fi
        ;;
      FROM)
        read -r -a words <<<"$args"
        image=""
        for word in "${words[@]}"; do
          [[ $word == --* ]] || { image=$word; break; }
        done
        if [[ $image =~ ^\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?$ ]]; then
          image=${arg_default[${BASH_REMATCH[1]}]:-}
        fi
        image=${image//\"/}
        if [[ " ${stages[*]} " == *" ${image} "* ]]; then
          : # an earlier stage of this file
        elif [[ -z $image || ${image##*/} != *:* || $image == *:latest ]]; then
          from_problems+=("FROM ${args} (${image:-unresolved}): pin the base image by a tag other than latest")
        fi
        stage=""
        for ((i = 0; i < ${#words[@]}; i++)); do
          if [[ ${words[i]^^} == AS ]] && ((i + 1 < ${#words[@]})); then stage=${words[i + 1]}; fi
        done
        stages+=("${stage:-stage${#stages[@]}}")
        final_user=""
        final_out=""
        final_cmd=""
        ;;
      USER) final_user=${args%%[[:space:]]*} ;;
      ENV) [[ " $args " =~ [[:space:]]OUT=\"?/results\"?[[:space:]] ]] && final_out=yes ;;
      CMD) final_cmd=$args ;;
      RUN)
        # Every package named to pip or apt-get carries a version.
        for installer in 'pip install' 'apt-get install'; do
          rest=$args
          while [[ $rest == *"$installer"* ]]; do
            rest=${rest#*"$installer"}
            segment=${rest%%&&*}
            segment=${segment%%;*}
            read -r -a words <<<"$segment"
            skip_next=0
            for word in "${words[@]}"; do
              if ((skip_next)); then skip_next=0; continue; fi
              case $word in
                -r | -c | -i | -f | --requirement | --constraint | --index-url | --extra-index-url | --find-links) skip_next=1 ;;
                -*) ;;
                *)
                  if [[ $installer == 'pip install' && $word != *==* ]] ||
                    [[ $installer == 'apt-get install' && $word != *=* ]]; then
                    pin_problems+=("$installer $word: no version pinned")
                  fi
                  ;;
              esac
            done
          done
        done
        ;;
    esac
  done < <(dockerfile_instructions)

  check "$dockerfile pins its base images" "${from_problems[@]}"
  if ((${#stages[@]} >= 2)); then
    pass "$dockerfile is multi-stage (${stages[*]})"
  else
    fail "$dockerfile is multi-stage" "found ${#stages[@]} stage(s); expected a build and a runtime stage"
  fi
  check "$dockerfile pins the versions of the packages it installs" "${pin_problems[@]}"
  if [[ -n $final_user && $final_user != root && $final_user != 0 && $final_user != 0:* ]]; then
    pass "$dockerfile runs as a non-root user ($final_user)"
  else
    fail "$dockerfile runs as a non-root user" "the final stage needs USER <someone other than root>"
  fi
  if [[ -n $final_out ]]; then
    pass "$dockerfile sets OUT=/results for gpu-check.sh"
  else
    fail "$dockerfile sets OUT=/results for gpu-check.sh" "the final stage needs ENV OUT=/results"
  fi
  if [[ $final_cmd == *scripts/gpu-check.sh* ]]; then
    pass "$dockerfile default command is scripts/gpu-check.sh"
  else
    fail "$dockerfile default command is scripts/gpu-check.sh" "final stage CMD: ${final_cmd:-none}"
  fi
fi

# ---- 5. .dockerignore keeps what the build needs ------------------------------------------
if [[ -f .dockerignore ]]; then
  problems=()
  patterns=()
  while IFS= read -r pattern; do
    pattern=${pattern%%[[:space:]]}
    [[ -z $pattern || $pattern == \#* || $pattern == !* ]] && continue
    pattern=${pattern#/}
    pattern=${pattern%/}
    patterns+=("${pattern//\*\*\//*}")
  done <.dockerignore
  # Every file the image builds from, and each folder above it, against every pattern (a bash
  # glob here, where * also crosses /: stricter than Docker, never looser).
  declare -A reported=()
  while IFS= read -r needed; do
    candidates=("$needed")
    parent=$needed
    while [[ $parent == */* ]]; do
      parent=${parent%/*}
      candidates+=("$parent")
    done
    for pattern in "${patterns[@]}"; do
      [[ -z ${reported[$pattern]:-} ]] || continue
      for candidate in "${candidates[@]}"; do
        # shellcheck disable=SC2053 # the pattern is meant to glob
        if [[ $candidate == $pattern ]]; then
          problems+=(".dockerignore pattern '$pattern' drops $needed, which the image builds from")
          reported[$pattern]=1
          break
        fi
      done
    done
  done < <(find CMakeLists.txt cmake include src kernels scripts tests bench python examples \
    -type f ! -path '*/__pycache__/*' ! -name '*.pyc' 2>/dev/null | sort)
  check ".dockerignore keeps the sources, scripts and tests" "${problems[@]}"
fi

# ---- 6. the workflows do what the issue asks ----------------------------------------------
if [[ -f .github/workflows/cpu.yml ]]; then
  problems=()
  strip_comments .github/workflows/cpu.yml | grep -qE 'run:.*scripts/test\.sh' ||
    problems+=("no step runs scripts/test.sh (the README's test command)")
  strip_comments .github/workflows/cpu.yml | grep -qE 'container:[[:space:]]*debian:12' ||
    problems+=("no job runs in the debian:12 container")
  check ".github/workflows/cpu.yml runs scripts/test.sh on debian:12" "${problems[@]}"
fi
if [[ -f .github/workflows/gpu.yml ]]; then
  problems=()
  gpu_text=$(strip_comments .github/workflows/gpu.yml)
  grep -qE 'runs-on:.*self-hosted' <<<"$gpu_text" || problems+=("no job runs on a self-hosted runner")
  grep -qE "docker build .*--file $dockerfile|docker build .*-f $dockerfile" <<<"$gpu_text" ||
    problems+=("no step builds $dockerfile")
  grep -qE -- '--gpus all' <<<"$gpu_text" || problems+=("no step runs the image with --gpus all")
  grep -qE 'actions/upload-artifact' <<<"$gpu_text" || problems+=("no step uploads the results")
  check ".github/workflows/gpu.yml builds, runs and uploads" "${problems[@]}"
fi
if ((${#present_workflows[@]} > 0)); then
  if command -v python3 >/dev/null 2>&1 && python3 -c 'import yaml' 2>/dev/null; then
    for wf in "${present_workflows[@]}"; do
      if out=$(python3 - "$wf" 2>&1 <<'PY'
import sys, yaml
try:
    doc = yaml.safe_load(open(sys.argv[1]))
except yaml.YAMLError as error:
    sys.exit(" ".join(str(error).split()))
if not isinstance(doc, dict) or not isinstance(doc.get("jobs"), dict):
    sys.exit("no 'jobs' mapping at the top level")
PY
      ); then
        pass "$wf is valid YAML with jobs"
      else
        fail "$wf is valid YAML with jobs" "$out"
      fi
    done
  else
    skip "workflow YAML syntax: python3 with PyYAML is not installed"
  fi
fi

# ---- 7. shell scripts: bash -n and shellcheck ---------------------------------------------
shell_files=()
for file in scripts/*; do
  [[ -f $file ]] || continue
  first=$(head -n 1 "$file")
  if [[ $file == *.sh || $first =~ ^#!.*(/|[[:space:]])(ba)?sh([[:space:]]|$) ]]; then
    shell_files+=("$file")
  fi
done
if ((${#shell_files[@]} == 0)); then
  fail "scripts/ holds shell scripts" "no shell script found in scripts/"
fi
shell_files+=(tests/test_packaging.sh)
for file in "${shell_files[@]}"; do
  if out=$(bash -n "$file" 2>&1); then
    pass "bash -n $file"
  else
    fail "bash -n $file" "$out"
  fi
done
if command -v shellcheck >/dev/null 2>&1; then
  for file in "${shell_files[@]}"; do
    if out=$(shellcheck --external-sources --source-path=SCRIPTDIR "$file" 2>&1); then
      pass "shellcheck $file"
    else
      mapfile -t lines <<<"$out"
      fail "shellcheck $file" "${lines[@]:0:40}"
    fi
  done
else
  skip "shellcheck: not installed (apt-get install shellcheck); ${#shell_files[@]} file(s) not linted"
fi

if ((skipped > 0)); then echo "($skipped check(s) skipped, reasons above)"; fi
echo "$passed passed, $failed failed"
((failed == 0))
