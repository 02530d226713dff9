#!/usr/bin/env bash
# Sets up everything (packages, build, the npm client for the interop test), then runs the
# whole test suite: unit tests, and integration tests against real nats-server processes.
set -euo pipefail
cd "$(dirname "$0")/.."

NEX_WERROR=ON ./scripts/setup.sh
echo "==> Checking the habits the code keeps"
./scripts/check.sh
echo "==> clang-tidy, with the checks .clang-tidy names"
./scripts/tidy.sh
echo "==> Installing the JavaScript NATS client for the interop test"
(cd tests/interop && npm ci --no-audit --no-fund --loglevel=error)
echo "==> Running the tests"
ctest --test-dir build --output-on-failure -j"$(nproc)"

# Second step (NEX_SANITIZE=0 skips it): the unit and integration tests again,
# built with AddressSanitizer and UndefinedBehaviorSanitizer (build-asan/, through ccache), so that
# a use after free, a leak or undefined behaviour fails the suite, and the decoder fuzz tests mean
# something. Tests that need a namespace sandbox or a microVM skip here (NEX_TEST_SKIP_SANDBOXES):
# the run above covers them, and this one stays within CI's time.
if [[ "${NEX_SANITIZE:-1}" == 0 ]]; then
  echo "==> Sanitizer run skipped (NEX_SANITIZE=0)"
  exit 0
fi
echo "==> Building the tests with ASan and UBSan in build-asan/"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNEX_SANITIZE=ON -DNEX_WERROR=ON \
  -DNEX_BUILD_BENCH=OFF -DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache \
  > /dev/null
cmake --build build-asan -j"$(nproc)" --target unit_tests runtime_tests integration_tests
echo "==> Running the tests under the sanitizers"
supp="$PWD/tests/sanitizers"
# A function's memory limit is its process's resident size, and ASan keeps freed memory resident
# in a quarantine (256 MiB by default): a smaller one keeps the limit meaningful under ASan.
NEX_TEST_SKIP_SANDBOXES=1 \
  ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:strict_string_checks=1:quarantine_size_mb=32" \
  LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=$supp/ubsan.supp" \
  ctest --test-dir build-asan --output-on-failure -j"$(nproc)" -L 'unit|integration'
