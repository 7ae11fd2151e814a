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
