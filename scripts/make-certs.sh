#!/usr/bin/env bash
# Makes a throwaway certificate authority and one certificate per name, with
# the openssl CLI, for trying mutual TLS on one machine (the examples,
# scripts/run-example.sh --tls). Not a production PKI: see docs/security.md.
#
#   scripts/make-certs.sh DIR NAME...      e.g. DIR coordinator order-service txcctl
#
# Writes DIR/ca.pem and DIR/ca.key (the CA, EC P-256), and for every NAME
# DIR/NAME.pem and DIR/NAME.key: subject CN=NAME, SANs DNS:localhost,
# IP:127.0.0.1 and URI:spiffe://txc/NAME, usable as a server and as a client
# certificate. Environment: DAYS (validity, default 30), CA_NAME (default
# "txc example CA"). An existing DIR/ca.pem is reused (new names join that CA).
set -euo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: $0 DIR NAME..." >&2
  exit 2
fi
dir="$1"
shift
days="${DAYS:-30}"
mkdir -p "$dir"
chmod 700 "$dir"
if [[ ! -s "$dir/ca.pem" ]]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" -days "$days" \
    -subj "/CN=${CA_NAME:-txc example CA}" 2>/dev/null
fi
for name in "$@"; do
  cat >"$dir/$name.ext" <<EXT
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,URI:spiffe://txc/$name
EXT
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$dir/$name.key" -out "$dir/$name.csr" -subj "/CN=$name" 2>/dev/null
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -CAcreateserial -out "$dir/$name.pem" -days "$days" -extfile "$dir/$name.ext" 2>/dev/null
  rm -f "$dir/$name.csr" "$dir/$name.ext"
  chmod 600 "$dir/$name.key"
done
