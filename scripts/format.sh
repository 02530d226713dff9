#!/usr/bin/env bash
# Formats every C and C++ file of the repo with its .clang-format (Debian's clang-format).
# scripts/check.sh fails on any file this would change.
set -euo pipefail
cd "$(dirname "$0")/.."
git ls-files -z '*.cc' '*.h' '*.c' | xargs -0 clang-format -i
