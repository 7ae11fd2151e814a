#!/usr/bin/env bash
# Runs the order-payment saga example against a running coordinator:
# starts the order, payment and inventory services (separate processes, each
# with its own SQLite database in a fresh work directory), places orders with
# order_client (which checks the invariant over the three databases and prints
# what happened), then stops the services.
#
#   examples/order-payment-saga/run.sh [coordinator host:port]
#
# Environment: TXC_COORDINATOR (default 127.0.0.1:7400; the argument wins),
# TXC_BUILD_DIR (default <repo>/build), ORDERS (default 200),
# CONCURRENCY (default 16), KEEP_WORK=1 keeps the databases and logs,
# TXC_TLS_DIR: mutual TLS with the certificates there (ca.pem and
# <name>.pem/.key for order-service, payment-service, inventory-service and
# order-client, as scripts/make-certs.sh writes them).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="${TXC_ROOT:-$(cd "$HERE/../.." && pwd)}"
BUILD_DIR="${TXC_BUILD_DIR:-$ROOT/build}"
BIN="$BUILD_DIR/examples/order-payment-saga"
# shellcheck source=../common.sh
source "$HERE/../common.sh"
COORDINATOR="${1:-${TXC_COORDINATOR:-127.0.0.1:7400}}"
ORDERS="${ORDERS:-200}"
CONCURRENCY="${CONCURRENCY:-16}"

for b in order_service payment_service inventory_service order_client; do
  if [[ ! -x "$BIN/$b" ]]; then
    echo "run.sh: $BIN/$b is missing: build the example first" \
         "(cmake --build $BUILD_DIR --target $b)" >&2
    exit 1
  fi
done

WORK="$(mktemp -d /tmp/order-saga-XXXXXX)"
cleanup() {
  local rc=$?
  stop_pids
  if [[ "${KEEP_WORK:-0}" == "1" || $rc -ne 0 ]]; then
    echo "run.sh: databases and logs kept in $WORK"
  else
    rm -rf "$WORK"
  fi
  exit $rc
}
trap cleanup EXIT INT TERM

declare -A EP
for svc in order payment inventory; do
  # shellcheck disable=SC2046  # tls_flags prints separate words on purpose
  "$BIN/${svc}_service" --db="$WORK/$svc.db" --port=0 --port_file="$WORK/$svc.port" \
    --coordinator="$COORDINATOR" $(tls_flags "$svc-service") >"$WORK/$svc.log" 2>&1 &
  PIDS+=($!)
done
for svc in order payment inventory; do
  for _ in $(seq 1 100); do [[ -s "$WORK/$svc.port" ]] && break; sleep 0.1; done
  if [[ ! -s "$WORK/$svc.port" ]]; then
    echo "run.sh: the $svc service did not start; its log:" >&2
    cat "$WORK/$svc.log" >&2
    exit 1
  fi
  EP[$svc]="127.0.0.1:$(cat "$WORK/$svc.port")"
  echo "run.sh: $svc service on ${EP[$svc]} (database $WORK/$svc.db${TXC_TLS_DIR:+, mutual TLS})"
done

# shellcheck disable=SC2046
"$BIN/order_client" --coordinator="$COORDINATOR" $(tls_flags order-client) \
  --order="${EP[order]}" --payment="${EP[payment]}" --inventory="${EP[inventory]}" \
  --order_db="$WORK/order.db" --payment_db="$WORK/payment.db" \
  --inventory_db="$WORK/inventory.db" --orders="$ORDERS" --concurrency="$CONCURRENCY"
