#!/usr/bin/env bash
# Runs the 2PC bank transfer end to end on this machine: a throwaway
# PostgreSQL 15 (max_prepared_transactions > 0), a coordinator (SQLite store),
# two bank processes on their own databases, then the transfer client.
# Everything started here is stopped and removed on exit.
#
#   examples/bank-transfer-2pc/run.sh [transfer flags, e.g. --transfers=2000 --clients=16]
#   (no flags: --transfers=500 with 4 clients)
#
# Environment: BUILD_DIR (default <repo>/build; built here if the binaries are
# missing), PG_BIN (default /usr/lib/postgresql/15/bin).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"

if [[ ! -x "$BUILD_DIR/coordinator/server/coordinator" || ! -x "$BUILD_DIR/examples/bank-transfer-2pc/bank" ||
      ! -x "$BUILD_DIR/examples/bank-transfer-2pc/transfer" ]]; then
  cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$BUILD_DIR" -j2 --target coordinator bank transfer
fi

WORK="$(mktemp -d /tmp/txc-bank-XXXXXX)"
PIDS=()
PG_STARTED=0
as_postgres() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  local rc=$?
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [[ $PG_STARTED -eq 1 ]]; then as_postgres "$PG_BIN/pg_ctl" -D "$WORK/pg" -m immediate stop >/dev/null 2>&1 || true; fi
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {  # port pid name
  for _ in $(seq 1 150); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    if ! kill -0 "$2" 2>/dev/null; then echo "$3 died; its log:" >&2; cat "$WORK/$3.log" >&2; return 1; fi
    sleep 0.2
  done
  echo "$3 did not come up" >&2; return 1
}

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
echo "== coordinator on 127.0.0.1:$COORD_PORT (SQLite in $WORK/coordinator)"
"$BUILD_DIR/coordinator/server/coordinator" --host 127.0.0.1 --port "$COORD_PORT" \
  --data_dir "$WORK/coordinator" --node_id coordinator-1 >"$WORK/coordinator.log" 2>&1 &
PIDS+=($!)
wait_port "$COORD_PORT" "${PIDS[-1]}" coordinator

BANK_A_PORT=$(free_port)
BANK_B_PORT=$(free_port)
for bank in a b; do
  port_var="BANK_${bank^^}_PORT"; db_var="DB_${bank^^}"
  echo "== bank $bank on 127.0.0.1:${!port_var}"
  "$BUILD_DIR/examples/bank-transfer-2pc/bank" --port "${!port_var}" --db "${!db_var}" \
    --coordinators "127.0.0.1:$COORD_PORT" --name "bank_$bank" --accounts 100 \
    --initial_balance 1000 >"$WORK/bank_$bank.log" 2>&1 &
  PIDS+=($!)
  wait_port "${!port_var}" "${PIDS[-1]}" "bank_$bank"
done

echo "== transfers"
"$BUILD_DIR/examples/bank-transfer-2pc/transfer" --coordinators "127.0.0.1:$COORD_PORT" \
  --bank_a "127.0.0.1:$BANK_A_PORT" --bank_b "127.0.0.1:$BANK_B_PORT" \
  --bank_a_db "$DB_A" --bank_b_db "$DB_B" --accounts 100 "${@:---transfers=500}"
