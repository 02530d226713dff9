#!/usr/bin/env bash
# Sets up everything (packages, build, the npm client for the interop test), then runs the
# whole test suite: unit tests, and integration tests against real nats-server processes.
set -euo pipefail
cd "$(dirname "$0")/.."

NEX_WERROR=ON ./scripts/setup.sh
echo "==> Installing the JavaScript NATS client for the interop test"
(cd tests/interop && npm ci --no-audit --no-fund --loglevel=error)
echo "==> Running the tests"
ctest --test-dir build --output-on-failure -j"$(nproc)"
