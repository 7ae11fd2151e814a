# Shared by scripts/*.sh: package installation and the build. Source it.
# Everything here is safe to run again (fast when nothing is missing).

TXC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# What building, testing and running the examples needs on Debian 12.
TXC_PACKAGES=(
  build-essential cmake pkg-config
  thrift-compiler libthrift-dev libevent-dev libssl-dev openssl
  libpqxx-dev libpq-dev libsqlite3-dev
  libboost-program-options-dev libboost-dev
  libgoogle-glog-dev libgtest-dev libgmock-dev
  libtcmalloc-minimal4  # the coordinator's allocator (coordinator/server/CMakeLists.txt)
  postgresql-15
  python3-thrift  # tests/rpc/probe: a Python client generated from idl/
  patroni etcd-server python3-etcd python3-psycopg2  # tests/failover: store under Patroni
  spin  # docs/model/check.sh: the protocol models (ctest protocol_model_check)
  prometheus  # tests/metrics: scrapes a coordinator; promtool checks /metrics and the alert rules
)

txc_log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

txc_as_root() {
  if [[ $EUID -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

# Installs the missing packages with apt-get (non-interactive); does nothing
# when every package is already installed.
txc_install_packages() {
  local missing=()
  local pkg
  for pkg in "${TXC_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$pkg")
    fi
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    txc_log "packages: all ${#TXC_PACKAGES[@]} installed"
    return 0
  fi
  txc_log "packages: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  txc_as_root apt-get update -q
  txc_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "${missing[@]}"
  # postgresql-15's package starts a system cluster; the tests start their own
  # throwaway clusters and do not need it.
}

# txc_build BUILD_DIR [cmake -D options...] -- [targets...]
txc_build() {
  local build_dir="$1"
  shift
  local cmake_args=()
  while [[ $# -gt 0 && "$1" != "--" ]]; do cmake_args+=("$1"); shift; done
  [[ "${1:-}" == "--" ]] && shift
  local targets=()
  local t
  for t in "$@"; do targets+=(--target "$t"); done
  txc_log "configure: $build_dir ${cmake_args[*]}"
  cmake -S "$TXC_ROOT" -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "${cmake_args[@]}" >/dev/null
  txc_log "build: -j$(nproc) ${targets[*]:-(all)}"
  cmake --build "$build_dir" -j"$(nproc)" "${targets[@]}"
}
