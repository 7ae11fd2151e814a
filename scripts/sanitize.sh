#!/usr/bin/env bash
# Builds with AddressSanitizer + UBSan (default) or ThreadSanitizer (--tsan)
# into its own build directory and runs the tests there.
#
#   scripts/sanitize.sh [--tsan] [ctest args...]     e.g. scripts/sanitize.sh -L unit
#
# Without ctest args: the unit tests, then the process tests.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

mode=asan
if [[ "${1:-}" == "--tsan" ]]; then
  mode=tsan
  shift
fi
TIMEOUT="${TXC_TEST_TIMEOUT:-600}"
JOBS="${TXC_TEST_JOBS:-$(nproc)}"

txc_install_packages
# GCC 12's -Wmaybe-uninitialized gives false positives inside libstdc++ (e.g.
# <regex>) once sanitizers are on; keep it a warning in these builds only.
SAN_FLAGS=(-DCMAKE_CXX_FLAGS=-Wno-error=maybe-uninitialized)
if [[ $mode == tsan ]]; then
  BUILD_DIR="${BUILD_DIR:-$TXC_ROOT/build-tsan}"
  txc_build "$BUILD_DIR" -DTXC_TSAN=ON "${SAN_FLAGS[@]}"
  export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1 second_deadlock_stack=1 suppressions=$TXC_ROOT/scripts/tsan.supp}"
else
  BUILD_DIR="${BUILD_DIR:-$TXC_ROOT/build-asan}"
  txc_build "$BUILD_DIR" -DTXC_SANITIZE=ON "${SAN_FLAGS[@]}"
  export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}"
  export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
  export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$TXC_ROOT/scripts/lsan.supp}"
fi

cd "$BUILD_DIR"
if [[ $# -gt 0 ]]; then
  exec ctest --output-on-failure --timeout "$TIMEOUT" "$@"
fi
status=0
ctest -L unit --output-on-failure --timeout "$TIMEOUT" -j"$JOBS" --no-tests=error || status=1
ctest -L process --output-on-failure --timeout "$TIMEOUT" -j"$JOBS" --no-tests=error || status=1
exit $status
