#!/usr/bin/env bash
# The main job: install packages (skipped when present), build, start a
# coordinator on the embedded SQLite default, and run the order-payment saga
# example (examples/order-payment-saga/run.sh) against it; while that example
# is not there, a txcctl health/begin/status smoke instead. Everything started
# here is stopped on exit.
#
#   ./scripts/run-example.sh     (as root; otherwise it uses sudo for apt-get)
#
# Environment: BUILD_DIR (default <repo>/build), TXC_PORT (default 7400).
# The example gets TXC_COORDINATOR (host:port), TXC_BUILD_DIR and TXC_ROOT.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BUILD_DIR="${BUILD_DIR:-$TXC_ROOT/build}"
PORT="${TXC_PORT:-7400}"
EXAMPLE="$TXC_ROOT/examples/order-payment-saga/run.sh"

txc_install_packages
if [[ -x "$EXAMPLE" ]]; then
  txc_build "$BUILD_DIR" -- coordinator txcctl \
    order_service payment_service inventory_service order_client
else
  txc_build "$BUILD_DIR" -- coordinator txcctl
fi

WORK="$(mktemp -d /tmp/txc-example-XXXXXX)"
COORD_PID=""
cleanup() {
  local rc=$?
  if [[ -n "$COORD_PID" ]] && kill -0 "$COORD_PID" 2>/dev/null; then
    txc_log "stopping the coordinator (pid $COORD_PID)"
    kill -TERM "$COORD_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$COORD_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$COORD_PID" 2>/dev/null || true
    wait "$COORD_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT INT TERM

COORDINATOR="127.0.0.1:$PORT"
TXCCTL=("$BUILD_DIR/coordinator/server/txcctl" --coordinator "$COORDINATOR")
txc_log "starting the coordinator on $COORDINATOR (SQLite in $WORK/txc-data)"
"$BUILD_DIR/coordinator/server/coordinator" --host 127.0.0.1 --port "$PORT" \
  --data_dir "$WORK/txc-data" >"$WORK/coordinator.log" 2>&1 &
COORD_PID=$!

ready=0
for _ in $(seq 1 150); do
  if "${TXCCTL[@]}" health >/dev/null 2>&1; then ready=1; break; fi
  if ! kill -0 "$COORD_PID" 2>/dev/null; then break; fi
  sleep 0.2
done
if [[ $ready -ne 1 ]]; then
  txc_log "the coordinator did not come up; its log:"
  cat "$WORK/coordinator.log" >&2
  exit 1
fi

if [[ -x "$EXAMPLE" ]]; then
  txc_log "running $EXAMPLE"
  TXC_COORDINATOR="$COORDINATOR" TXC_BUILD_DIR="$BUILD_DIR" TXC_ROOT="$TXC_ROOT" "$EXAMPLE"
else
  txc_log "examples/order-payment-saga/run.sh not there yet: txcctl smoke"
  "${TXCCTL[@]}" health
  GTID="$("${TXCCTL[@]}" begin --timeout_ms 60000)"
  echo "begun: $GTID"
  "${TXCCTL[@]}" status "$GTID"
fi
txc_log "done"
