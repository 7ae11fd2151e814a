# Shared by the examples' run.sh scripts: background processes and ports.
# Source it; it defines PIDS (append "$!" after starting a process) and:
#   stop_pids                 SIGTERM to every PIDS entry, up to 5 s each to
#                             exit, then SIGKILL; reaps them.
#   free_port                 prints a free TCP port on 127.0.0.1.
#   wait_port PORT SECONDS [PID NAME LOG]
#                             waits until something accepts connections on
#                             127.0.0.1:PORT; with PID, gives up at once when
#                             that process died (printing LOG). Returns 1 on
#                             failure.
#
# Mutual TLS (every example's run.sh takes --tls):
#   take_tls_arg ARGS...      sets TLS=1 when ARGS holds --tls (or TXC_TLS_DIR is
#                             set: scripts/run-example.sh --tls made certificates),
#                             else TLS=0; ARGS=(the other arguments).
#   tls_setup DIR NAME...     with TLS=1: TXC_TLS_DIR (default DIR) gets ca.pem
#                             and NAME.pem/NAME.key for every NAME it lacks
#                             (scripts/make-certs.sh; an existing CA is reused).
#   tls_flags NAME            prints --tls_cert/--tls_key/--tls_ca for NAME's
#                             certificate; nothing without TXC_TLS_DIR.
#   coordinator_tls_flags     tls_flags coordinator, plus --participant_tls (the
#                             coordinator calls participants over TLS with the
#                             same identity).

PIDS=()

stop_pids() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() {
  local port="$1" seconds="$2" pid="${3:-}" name="${4:-port $1}" log="${5:-}"
  for _ in $(seq 1 $((seconds * 10))); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
      echo "$name died; its log:" >&2
      [[ -n "$log" ]] && cat "$log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "$name did not come up (nothing listens on port $port)" >&2
  return 1
}

take_tls_arg() {
  TLS=0
  [[ -n "${TXC_TLS_DIR:-}" ]] && TLS=1
  ARGS=()
  local arg
  for arg in "$@"; do
    if [[ "$arg" == "--tls" ]]; then TLS=1; else ARGS+=("$arg"); fi
  done
}

tls_setup() {
  [[ "${TLS:-0}" == "1" ]] || return 0
  local dir="$1" name missing=()
  shift
  TXC_TLS_DIR="${TXC_TLS_DIR:-$dir}"
  for name in "$@"; do [[ -s "$TXC_TLS_DIR/$name.pem" ]] || missing+=("$name"); done
  if [[ ${#missing[@]} -gt 0 ]]; then
    "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/scripts/make-certs.sh" "$TXC_TLS_DIR" \
      "${missing[@]}"
  fi
  export TXC_TLS_DIR
}

tls_flags() {
  [[ -n "${TXC_TLS_DIR:-}" ]] || return 0
  echo "--tls_cert=$TXC_TLS_DIR/$1.pem --tls_key=$TXC_TLS_DIR/$1.key --tls_ca=$TXC_TLS_DIR/ca.pem"
}

coordinator_tls_flags() {
  [[ -n "${TXC_TLS_DIR:-}" ]] || return 0
  echo "$(tls_flags coordinator) --participant_tls"
}
