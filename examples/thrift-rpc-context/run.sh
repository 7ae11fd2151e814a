#!/usr/bin/env bash
# Runs the thrift-rpc-context example end to end on this machine: a coordinator
# (embedded SQLite), the inventory service, and two client transactions:
#   1. reserve 3 apples (10 in stock)  -> COMMIT
#   2. reserve 5 pears  (3 in stock)   -> the branch votes abort -> ABORT
# Everything it starts is stopped on exit.
#
#   BUILD_DIR=build examples/thrift-rpc-context/run.sh [--tls]
#
# --tls: mutual TLS on every connection (client -> coordinator, client ->
# inventory, inventory -> coordinator, coordinator -> inventory's participant
# port) with a throwaway CA and certificates (scripts/make-certs.sh:
# coordinator, inventory, client); TXC_TLS_DIR set implies it.
#
# Needs the targets coordinator, rpc_context_inventory and rpc_context_client
# built in BUILD_DIR (default <repo>/build).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
# shellcheck source=../common.sh
source "$ROOT/examples/common.sh"
take_tls_arg "$@"
if [[ ${#ARGS[@]} -gt 0 ]]; then
  echo "usage: $0 [--tls]" >&2
  exit 2
fi
COORD_BIN="$BUILD_DIR/coordinator/server/coordinator"
INV_BIN="$BUILD_DIR/examples/thrift-rpc-context/rpc_context_inventory"
CLIENT_BIN="$BUILD_DIR/examples/thrift-rpc-context/rpc_context_client"
for b in "$COORD_BIN" "$INV_BIN" "$CLIENT_BIN"; do
  [[ -x "$b" ]] || { echo "missing $b: cmake --build $BUILD_DIR --target coordinator rpc_context_inventory rpc_context_client" >&2; exit 1; }
done

COORD_PORT="${TXC_PORT:-$(free_port)}"
INV_PORT="$(free_port)"
PART_PORT="$(free_port)"
WORK="$(mktemp -d /tmp/txc-rpc-context-XXXXXX)"
cleanup() {
  local rc=$?
  stop_pids
  if [[ $rc -ne 0 ]]; then
    echo "--- coordinator log"; tail -n 30 "$WORK/coordinator.log" 2>/dev/null || true
    echo "--- inventory log"; tail -n 30 "$WORK/inventory.log" 2>/dev/null || true
  fi
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT INT TERM
tls_setup "$WORK/tls" coordinator inventory client

# shellcheck disable=SC2046  # the tls flags are separate words on purpose
"$COORD_BIN" --host 127.0.0.1 --port "$COORD_PORT" --data_dir "$WORK/txc-data" \
  $(coordinator_tls_flags) >"$WORK/coordinator.log" 2>&1 &
PIDS+=($!)
# shellcheck disable=SC2046
"$INV_BIN" --port "$INV_PORT" --participant_port "$PART_PORT" --stock apple=10,pear=3 \
  $(tls_flags inventory) >"$WORK/inventory.log" 2>&1 &
PIDS+=($!)
wait_port "$COORD_PORT" 30
wait_port "$INV_PORT" 30

echo "== reserve 3 apples (expect COMMIT)${TXC_TLS_DIR:+, mutual TLS}"
# shellcheck disable=SC2046
"$CLIENT_BIN" --coordinator "127.0.0.1:$COORD_PORT" --inventory "127.0.0.1:$INV_PORT" \
  --item apple --quantity 3 $(tls_flags client)

echo "== reserve 5 pears, 3 in stock (expect ABORT)"
set +e
# shellcheck disable=SC2046
"$CLIENT_BIN" --coordinator "127.0.0.1:$COORD_PORT" --inventory "127.0.0.1:$INV_PORT" \
  --item pear --quantity 5 $(tls_flags client)
rc=$?
set -e
if [[ $rc -ne 3 ]]; then
  echo "expected the pear transaction to abort (exit 3), got exit $rc" >&2
  exit 1
fi
echo "thrift-rpc-context example: OK"
