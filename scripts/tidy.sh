#!/usr/bin/env bash
# clang-tidy over every source file under src/, with the checks .clang-tidy names; any finding
# fails. Uses build/compile_commands.json (scripts/setup.sh makes it). One process per core.
set -euo pipefail
cd "$(dirname "$0")/.."
tidy=$(command -v clang-tidy-19 || true)
if [[ -z "$tidy" ]]; then
  echo "clang-tidy-19 is missing: scripts/setup.sh installs it" >&2
  exit 1
fi
# The compile commands are GCC's: clang need not mention the GCC-only warning flags, libstdc++
# 12's use of what C++23 deprecates, or the compound literals of libseccomp's macros. Its
# counts of warnings it hid, and its progress, are left out too.
git ls-files -z 'src/*.cc' |
  xargs -0 -n 4 -P "$(nproc)" "$tidy" -p build --quiet --extra-arg=-Wno-unknown-warning-option \
    --extra-arg=-Wno-deprecated-declarations --extra-arg=-Wno-c99-extensions \
    2> >(grep -v -E '^([0-9]+ warnings? (and [0-9]+ errors? )?generated\.|\[[0-9]+/[0-9]+\] Processing file .*)$' >&2)
echo "==> clang-tidy: no findings"
