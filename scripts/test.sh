#!/usr/bin/env bash
# The test suite: install packages (skipped when present), configure, build,
# run the unit tests, then the process tests (real coordinator processes and
# throwaway PostgreSQL clusters, started by the tests themselves).
#
#   ./scripts/test.sh            (as root; otherwise it uses sudo for apt-get)
#
# Environment: BUILD_DIR (default <repo>/build), TXC_TEST_TIMEOUT (seconds per
# test, default 300), TXC_TEST_JOBS (parallel tests, default nproc).
# Exits non-zero when anything fails.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BUILD_DIR="${BUILD_DIR:-$TXC_ROOT/build}"
TIMEOUT="${TXC_TEST_TIMEOUT:-300}"
JOBS="${TXC_TEST_JOBS:-$(nproc)}"

txc_install_packages
txc_build "$BUILD_DIR"

cd "$BUILD_DIR"
status=0
txc_log "ctest -L unit"
ctest -L unit --output-on-failure --timeout "$TIMEOUT" -j"$JOBS" --no-tests=error || status=1
txc_log "ctest -L process"
ctest -L process --output-on-failure --timeout "$TIMEOUT" -j"$JOBS" --no-tests=error || status=1
if [[ $status -ne 0 ]]; then
  txc_log "FAILED (see the output above)"
else
  txc_log "all tests passed"
fi
exit $status
