#!/usr/bin/env bash
# The habits the code keeps, checked before the tests run (scripts/test.sh):
# - every C and C++ file is formatted as .clang-format says (scripts/format.sh fixes it);
# - no function under src/ is longer than 80 lines (scripts/function_lengths.py lists them);
# - no comment or document cites a file outside the repo (the design lives in docs/).
set -euo pipefail
cd "$(dirname "$0")/.."
status=0

unformatted=()
while IFS= read -r -d '' f; do
  clang-format --dry-run --Werror "$f" > /dev/null 2>&1 || unformatted+=("$f")
done < <(git ls-files -z '*.cc' '*.h' '*.c')
if ((${#unformatted[@]})); then
  echo "Not formatted as .clang-format says (run scripts/format.sh):"
  printf '  %s\n' "${unformatted[@]}"
  status=1
fi

if ! long=$(python3 scripts/function_lengths.py 80 src); then
  echo "Functions longer than 80 lines (split them into named steps):"
  echo "$long" | sed 's/^/  /'
  status=1
fi

if outside=$(git grep -n -E '(\.\./shared|specs/(nex-wire|nats-formats)\.md|seeds/)' -- \
  ':!scripts/check.sh'); then
  echo "Citations of files outside the repo (point them at docs/):"
  echo "$outside" | sed 's/^/  /'
  status=1
fi

if ((status == 0)); then echo "==> Habits checked: formatting, function lengths, citations"; fi
exit "$status"
