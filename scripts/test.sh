#!/usr/bin/env bash
# The test suite: install packages (skipped when present), configure, build,
# run the unit tests, then the process tests (real coordinator processes and
# throwaway PostgreSQL clusters, started by the tests themselves).
#
#   ./scripts/test.sh            (as root; otherwise it uses sudo for apt-get)
#
# Environment: BUILD_DIR (default <repo>/build), TXC_TEST_TIMEOUT (seconds per
# test, default 300), TXC_TEST_JOBS (parallel tests, default nproc),
# TXC_TEST_TRANSPORT (how the process tests talk, docs/testing.md): "tls"
# (default: every coordinator, participant, client and txcctl over mutual TLS,
# TXC_TEST_TLS=1), "plain", or "both" (the process label twice: 13.5 min on
# a quiet 2-core machine, ~24 min on a busy one, instead of 7 to 13).
# Exits non-zero when anything fails.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BUILD_DIR="${BUILD_DIR:-$TXC_ROOT/build}"
TIMEOUT="${TXC_TEST_TIMEOUT:-300}"
JOBS="${TXC_TEST_JOBS:-$(nproc)}"
TRANSPORT="${TXC_TEST_TRANSPORT:-tls}"
case "$TRANSPORT" in
  tls) TRANSPORTS=(tls) ;;
  plain) TRANSPORTS=(plain) ;;
  both) TRANSPORTS=(plain tls) ;;
  *) echo "TXC_TEST_TRANSPORT must be tls, plain or both, not '$TRANSPORT'" >&2; exit 2 ;;
esac

txc_install_packages
txc_build "$BUILD_DIR"

cd "$BUILD_DIR"
status=0
txc_log "ctest -L unit"
ctest -L unit --output-on-failure --timeout "$TIMEOUT" -j"$JOBS" --no-tests=error || status=1
for transport in "${TRANSPORTS[@]}"; do
  # The tests that are plaintext on purpose stay so (docs/testing.md).
  if [[ $transport == tls ]]; then tls=1; else tls=0; fi
  txc_log "ctest -L process ($transport: TXC_TEST_TLS=$tls)"
  TXC_TEST_TLS=$tls ctest -L process --output-on-failure --timeout "$TIMEOUT" -j"$JOBS" \
    --no-tests=error || status=1
done
if [[ $status -ne 0 ]]; then
  txc_log "FAILED (see the output above)"
else
  txc_log "all tests passed"
fi
exit $status
