#!/usr/bin/env bash
# The README's C++ example is examples/readme.cpp's README-BEGIN..README-END block: every line
# of that block (indentation aside) must appear in README.md, in the same order.
set -euo pipefail
root=${1:-$(dirname "$0")/..}
block=$(sed -n '/^  \/\/ README-BEGIN$/,/^  \/\/ README-END$/p' "$root/examples/readme.cpp" | sed '1d;$d' | sed 's/^  //')
readme=$(cat "$root/README.md")
passed=0
failed=0
rest=$readme
while IFS= read -r line; do
  [ -z "$line" ] && continue
  if [[ "$rest" == *"$line"* ]]; then
    rest=${rest#*"$line"}
    passed=$((passed + 1))
  else
    echo "README.md lacks (or has out of order): $line"
    failed=$((failed + 1))
  fi
done <<< "$block"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
