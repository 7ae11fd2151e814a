#!/usr/bin/env bash
# Runs the 2PC bank transfer end to end on this machine: a throwaway
# PostgreSQL 15 (max_prepared_transactions > 0), a coordinator (SQLite store),
# two bank processes on their own databases, then the transfer client.
# Everything started here is stopped and removed on exit.
#
#   examples/bank-transfer-2pc/run.sh [--tls] [transfer flags, e.g. --transfers=2000 --clients=16]
#   (no flags: --transfers=500 with 4 clients)
#
# --tls: mutual TLS on every Thrift connection (transfer -> coordinator,
# coordinator <-> banks) with a throwaway CA and certificates
# (scripts/make-certs.sh: coordinator, bank_a, bank_b, transfer).
#
# Environment: BUILD_DIR (default <repo>/build; built here if the binaries are
# missing), PG_BIN (default /usr/lib/postgresql/15/bin), TXC_TLS_DIR (--tls
# implied: the certificates there, missing ones are made).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
# shellcheck source=../common.sh
source "$ROOT/examples/common.sh"
take_tls_arg "$@"

if [[ ! -x "$BUILD_DIR/coordinator/server/coordinator" || ! -x "$BUILD_DIR/examples/bank-transfer-2pc/bank" ||
      ! -x "$BUILD_DIR/examples/bank-transfer-2pc/transfer" ]]; then
  cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$BUILD_DIR" -j2 --target coordinator bank transfer
fi

WORK="$(mktemp -d /tmp/txc-bank-XXXXXX)"
PG_STARTED=0
as_postgres() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  local rc=$?
  stop_pids
  if [[ $PG_STARTED -eq 1 ]]; then as_postgres "$PG_BIN/pg_ctl" -D "$WORK/pg" -m immediate stop >/dev/null 2>&1 || true; fi
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT INT TERM
tls_setup "$WORK/tls" coordinator bank_a bank_b transfer

PG_PORT=$(free_port)
mkdir -p "$WORK/pg"
[[ $(id -u) -eq 0 ]] && chown postgres "$WORK" "$WORK/pg"
echo "== PostgreSQL on 127.0.0.1:$PG_PORT"
as_postgres "$PG_BIN/initdb" -D "$WORK/pg" -U postgres -A trust >"$WORK/initdb.log" 2>&1
as_postgres "$PG_BIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg/server.log" -w \
  -o "-p $PG_PORT -k /tmp -c listen_addresses=127.0.0.1 -c max_prepared_transactions=64 -c max_connections=200" \
  start >/dev/null
PG_STARTED=1
for db in bank_a bank_b; do
  psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "CREATE DATABASE $db" postgres
done
DB_A="host=127.0.0.1 port=$PG_PORT user=postgres dbname=bank_a"
DB_B="host=127.0.0.1 port=$PG_PORT user=postgres dbname=bank_b"

COORD_PORT=$(free_port)
echo "== coordinator on 127.0.0.1:$COORD_PORT (SQLite in $WORK/coordinator${TXC_TLS_DIR:+, mutual TLS})"
# shellcheck disable=SC2046  # the tls flags are separate words on purpose
"$BUILD_DIR/coordinator/server/coordinator" --host 127.0.0.1 --port "$COORD_PORT" \
  --data_dir "$WORK/coordinator" --node_id coordinator-1 \
  $(coordinator_tls_flags) >"$WORK/coordinator.log" 2>&1 &
PIDS+=($!)
wait_port "$COORD_PORT" 30 "${PIDS[-1]}" coordinator "$WORK/coordinator.log"

BANK_A_PORT=$(free_port)
BANK_B_PORT=$(free_port)
for bank in a b; do
  port_var="BANK_${bank^^}_PORT"; db_var="DB_${bank^^}"
  echo "== bank $bank on 127.0.0.1:${!port_var}"
  # shellcheck disable=SC2046
  "$BUILD_DIR/examples/bank-transfer-2pc/bank" --port "${!port_var}" --db "${!db_var}" \
    --coordinators "127.0.0.1:$COORD_PORT" --name "bank_$bank" --accounts 100 \
    --initial_balance 1000 $(tls_flags "bank_$bank") >"$WORK/bank_$bank.log" 2>&1 &
  PIDS+=($!)
  wait_port "${!port_var}" 30 "${PIDS[-1]}" "bank_$bank" "$WORK/bank_$bank.log"
done

echo "== transfers"
[[ ${#ARGS[@]} -gt 0 ]] || ARGS=(--transfers=500)
# shellcheck disable=SC2046
"$BUILD_DIR/examples/bank-transfer-2pc/transfer" --coordinators "127.0.0.1:$COORD_PORT" \
  --bank_a "127.0.0.1:$BANK_A_PORT" --bank_b "127.0.0.1:$BANK_B_PORT" \
  --bank_a_db "$DB_A" --bank_b_db "$DB_B" --accounts 100 $(tls_flags transfer) "${ARGS[@]}"
