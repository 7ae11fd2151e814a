#!/usr/bin/env bash
# The main job: install packages (skipped when present), build, start a
# coordinator on the embedded SQLite default, and run the order-payment saga
# example (examples/order-payment-saga/run.sh) against it; while that example
# is not there, a txcctl health/begin/status smoke instead. Everything started
# here is stopped on exit.
#
#   ./scripts/run-example.sh         (as root; otherwise it uses sudo for apt-get)
#   ./scripts/run-example.sh --tls   the same over mutual TLS: a throwaway CA and
#                                    certificates (scripts/make-certs.sh) for the
#                                    coordinator, the three services, the client
#                                    and txcctl; every connection is TLS 1.2+ with
#                                    both sides verified
#
# Environment: BUILD_DIR (default <repo>/build), TXC_PORT (default 7400).
# The example gets TXC_COORDINATOR (host:port), TXC_BUILD_DIR, TXC_ROOT and,
# with --tls, TXC_TLS_DIR (the certificates: ca.pem, <name>.pem, <name>.key).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TLS=0
for arg in "$@"; do
  case "$arg" in
    --tls) TLS=1 ;;
    *) echo "usage: $0 [--tls]" >&2; exit 2 ;;
  esac
done

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
COORD_TLS=()
TLS_DIR=""
if [[ $TLS -eq 1 ]]; then
  TLS_DIR="$WORK/tls"
  txc_log "making a throwaway CA and certificates in $TLS_DIR"
  "$TXC_ROOT/scripts/make-certs.sh" "$TLS_DIR" coordinator order-service payment-service \
    inventory-service order-client txcctl
  # The coordinator: mutual TLS on its port, and TLS (same identity) to participants.
  COORD_TLS=(--tls_cert "$TLS_DIR/coordinator.pem" --tls_key "$TLS_DIR/coordinator.key"
             --tls_ca "$TLS_DIR/ca.pem" --participant_tls)
  TXCCTL+=(--tls_ca "$TLS_DIR/ca.pem" --tls_cert "$TLS_DIR/txcctl.pem"
           --tls_key "$TLS_DIR/txcctl.key")
fi
txc_log "starting the coordinator on $COORDINATOR (SQLite in $WORK/txc-data$(
  [[ $TLS -eq 1 ]] && echo ", mutual TLS"))"
"$BUILD_DIR/coordinator/server/coordinator" --host 127.0.0.1 --port "$PORT" \
  --data_dir "$WORK/txc-data" "${COORD_TLS[@]}" >"$WORK/coordinator.log" 2>&1 &
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
  TXC_COORDINATOR="$COORDINATOR" TXC_BUILD_DIR="$BUILD_DIR" TXC_ROOT="$TXC_ROOT" \
    TXC_TLS_DIR="$TLS_DIR" "$EXAMPLE"
  if [[ $TLS -eq 1 ]]; then
    # The coordinator refuses a client without a certificate from the CA.
    if "$BUILD_DIR/coordinator/server/txcctl" --coordinator "$COORDINATOR" health \
        >"$WORK/plaintext.out" 2>&1; then
      txc_log "a plaintext txcctl was served by the TLS coordinator"
      exit 1
    fi
    txc_log "a plaintext client is refused: $(tail -1 "$WORK/plaintext.out")"
  fi
else
  txc_log "examples/order-payment-saga/run.sh not there yet: txcctl smoke"
  "${TXCCTL[@]}" health
  GTID="$("${TXCCTL[@]}" begin --timeout_ms 60000)"
  echo "begun: $GTID"
  "${TXCCTL[@]}" status "$GTID"
fi
txc_log "done"
