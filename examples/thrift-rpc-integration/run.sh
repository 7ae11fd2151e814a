#!/usr/bin/env bash
# Runs the thrift-rpc-integration example end to end on this machine: a
# throwaway PostgreSQL 15 (two databases), a coordinator (SQLite), the
# Inventory and Payment services (their IDLs have no transaction field) and
# the Shop front service, then three purchases:
#   1. alice buys 3 apples for 30   -> committed: stock 10 -> 7, alice 100 -> 70
#   2. bob buys 1 pear for 50       -> Payment refuses (bob has 5): rolled back,
#                                      the pear Inventory had reserved is back
#   3. alice buys 5 pears for 10    -> Inventory refuses (3 in stock): rolled back
# and checks both databases after each. Everything it starts is stopped on exit.
#
#   BUILD_DIR=build examples/thrift-rpc-integration/run.sh [--tls]
#
# --tls: the same over mutual TLS on every connection (client -> shop -> inventory
# and payment with the context header, services -> coordinator, coordinator ->
# the services' participant ports), with a throwaway CA and one certificate per
# process from scripts/make-certs.sh; then checks that a client without a
# certificate is refused by the shop.
#
# Environment: BUILD_DIR (default <repo>/build; the binaries are built there if
# missing), PG_BIN (default /usr/lib/postgresql/15/bin).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
# shellcheck source=../common.sh
source "$ROOT/examples/common.sh"
take_tls_arg "$@"
if [[ ${#ARGS[@]} -gt 0 ]]; then
  echo "usage: $0 [--tls]" >&2
  exit 2
fi
BIN="$BUILD_DIR/examples/thrift-rpc-integration"
COORD_BIN="$BUILD_DIR/coordinator/server/coordinator"
TARGETS=(coordinator rpc_integration_shop rpc_integration_inventory rpc_integration_payment
         rpc_integration_client)
for p in "$COORD_BIN" "$BIN/rpc_integration_shop" "$BIN/rpc_integration_inventory" \
         "$BIN/rpc_integration_payment" "$BIN/rpc_integration_client"; do
  if [[ ! -x "$p" ]]; then
    cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build "$BUILD_DIR" -j2 --target "${TARGETS[@]}"
    break
  fi
done

WORK="$(mktemp -d /tmp/txc-rpc-integration-XXXXXX)"
PG_STARTED=0
as_postgres() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  local rc=$?
  stop_pids
  if [[ $rc -ne 0 ]]; then
    for log in coordinator inventory payment shop; do
      echo "--- $log log"; tail -n 30 "$WORK/$log.log" 2>/dev/null || true
    done
  fi
  if [[ $PG_STARTED -eq 1 ]]; then
    as_postgres "$PG_BIN/pg_ctl" -D "$WORK/pg" -m immediate stop >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT INT TERM

# With --tls: a throwaway CA and a certificate per process (examples/common.sh);
# tls_flags NAME prints that process's flags (none without --tls), used
# unquoted on purpose (separate words), hence the SC2046 directives below.
if [[ $TLS -eq 1 ]]; then
  echo "== a throwaway CA and certificates (mutual TLS everywhere)"
  tls_setup "$WORK/tls" coordinator inventory payment shop client
fi

PG_PORT=$(free_port)
mkdir -p "$WORK/pg"
[[ $(id -u) -eq 0 ]] && chown postgres "$WORK" "$WORK/pg"
echo "== PostgreSQL on 127.0.0.1:$PG_PORT"
as_postgres "$PG_BIN/initdb" -D "$WORK/pg" -U postgres -A trust >"$WORK/initdb.log" 2>&1
as_postgres "$PG_BIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg/server.log" -w \
  -o "-p $PG_PORT -k /tmp -c listen_addresses=127.0.0.1 -c max_prepared_transactions=64" \
  start >/dev/null
PG_STARTED=1
for db in inventory payment; do
  psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "CREATE DATABASE $db" postgres
done
DB_INVENTORY="host=127.0.0.1 port=$PG_PORT user=postgres dbname=inventory"
DB_PAYMENT="host=127.0.0.1 port=$PG_PORT user=postgres dbname=payment"
sql() { psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc "$2" "$1"; }

COORD_PORT=$(free_port)
echo "== coordinator on 127.0.0.1:$COORD_PORT"
# The coordinator: mutual TLS on its port, TLS (same identity) to participants.
COORD_TLS=()
read -r -a COORD_TLS <<<"$(coordinator_tls_flags)"
"$COORD_BIN" --host 127.0.0.1 --port "$COORD_PORT" --data_dir "$WORK/coordinator" \
  --node_id coordinator-1 "${COORD_TLS[@]}" >"$WORK/coordinator.log" 2>&1 &
PIDS+=($!)
wait_port "$COORD_PORT" 30 "${PIDS[-1]}" coordinator "$WORK/coordinator.log"

INV_PORT=$(free_port); INV_PPORT=$(free_port); PAY_PORT=$(free_port); PAY_PPORT=$(free_port)
SHOP_PORT=$(free_port)
echo "== inventory on 127.0.0.1:$INV_PORT, payment on 127.0.0.1:$PAY_PORT"
# shellcheck disable=SC2046
"$BIN/rpc_integration_inventory" --port "$INV_PORT" --participant_port "$INV_PPORT" \
  --db "$DB_INVENTORY" --coordinators "127.0.0.1:$COORD_PORT" --seed apple=10,pear=3 \
  $(tls_flags inventory) >"$WORK/inventory.log" 2>&1 &
PIDS+=($!)
wait_port "$INV_PORT" 30 "${PIDS[-1]}" inventory "$WORK/inventory.log"
# shellcheck disable=SC2046
"$BIN/rpc_integration_payment" --port "$PAY_PORT" --participant_port "$PAY_PPORT" \
  --db "$DB_PAYMENT" --coordinators "127.0.0.1:$COORD_PORT" --seed alice=100,bob=5 \
  $(tls_flags payment) >"$WORK/payment.log" 2>&1 &
PIDS+=($!)
wait_port "$PAY_PORT" 30 "${PIDS[-1]}" payment "$WORK/payment.log"
echo "== shop on 127.0.0.1:$SHOP_PORT"
# shellcheck disable=SC2046
"$BIN/rpc_integration_shop" --port "$SHOP_PORT" --coordinators "127.0.0.1:$COORD_PORT" \
  --inventory "127.0.0.1:$INV_PORT" --payment "127.0.0.1:$PAY_PORT" $(tls_flags shop) \
  >"$WORK/shop.log" 2>&1 &
PIDS+=($!)
wait_port "$SHOP_PORT" 30 "${PIDS[-1]}" shop "$WORK/shop.log"

buy() {  # buy EXPECTED_EXIT account item quantity price
  local expected=$1 rc=0
  shift
  # shellcheck disable=SC2046
  "$BIN/rpc_integration_client" --shop "127.0.0.1:$SHOP_PORT" --account "$1" --item "$2" \
    --quantity "$3" --price "$4" $(tls_flags client) || rc=$?
  if [[ $rc -ne $expected ]]; then
    echo "expected exit $expected from buying $3 x $2 for $1, got $rc" >&2
    exit 1
  fi
}
expect() {  # expect DB SQL VALUE
  local got
  got=$(sql "$1" "$2")
  if [[ "$got" != "$3" ]]; then
    echo "$1: '$2' is '$got', expected '$3'" >&2
    exit 1
  fi
}
settled() {  # no branch of either database left prepared
  for _ in $(seq 1 100); do
    if [[ $(sql inventory "SELECT count(*) FROM pg_prepared_xacts") == 0 ]]; then return 0; fi
    sleep 0.1
  done
  echo "prepared transactions left behind" >&2
  exit 1
}

echo "== alice buys 3 apples for 30 (expect committed)"
buy 0 alice apple 3 30
settled
expect inventory "SELECT qty FROM stock WHERE item = 'apple'" 7
expect payment "SELECT balance FROM account WHERE id = 'alice'" 70

echo "== bob buys 1 pear for 50, has 5 (expect rejected by payment, rolled back)"
buy 3 bob pear 1 50
settled
expect inventory "SELECT qty FROM stock WHERE item = 'pear'" 3
expect payment "SELECT balance FROM account WHERE id = 'bob'" 5

echo "== alice buys 5 pears for 10, 3 in stock (expect rejected by inventory, rolled back)"
buy 3 alice pear 5 10
settled
expect inventory "SELECT qty FROM stock WHERE item = 'pear'" 3
expect payment "SELECT balance FROM account WHERE id = 'alice'" 70
if [[ $TLS -eq 1 ]]; then
  echo "== a client without a certificate (expect refused by the shop, nothing bought)"
  rc=0
  "$BIN/rpc_integration_client" --shop "127.0.0.1:$SHOP_PORT" --account alice --item apple \
    --quantity 1 --price 10 --tls_ca "$TXC_TLS_DIR/ca.pem" >"$WORK/anonymous.out" 2>&1 || rc=$?
  if [[ $rc -ne 1 ]]; then
    echo "a client without a certificate got exit $rc (expected 1):" >&2
    cat "$WORK/anonymous.out" >&2
    exit 1
  fi
  grep -h "certificate required" "$WORK/anonymous.out" || {
    echo "the refusal does not say why:" >&2; cat "$WORK/anonymous.out" >&2; exit 1; }
  expect inventory "SELECT qty FROM stock WHERE item = 'apple'" 7
  expect payment "SELECT balance FROM account WHERE id = 'alice'" 70
fi
if [[ $TLS -eq 1 ]]; then
  echo "thrift-rpc-integration example over mutual TLS: OK"
else
  echo "thrift-rpc-integration example: OK"
fi
