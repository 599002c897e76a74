#!/usr/bin/env bash
# The API-server write benchmark: 1 KiB ConfigMaps created through hakube-apiserver with 64
# concurrent HTTP/2 streams for 20 s, and the same keys and sizes put straight into the same
# etcd at the same concurrency, in one run. Prints both rates and their ratio.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
target=${CARGO_TARGET_DIR:-/var/tmp/hakube-target}
seconds=${BENCH_SECONDS:-20}
concurrency=${BENCH_CONCURRENCY:-64}

cargo build --release -q -p hakube-apiserver -p hakube-loadgen
work=$(mktemp -d /var/tmp/hakube-bench.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
etcd_port=$(free_port); peer_port=$(free_port); api_port=$(free_port)

etcd --data-dir "$work/etcd" --listen-client-urls "http://127.0.0.1:$etcd_port" \
  --advertise-client-urls "http://127.0.0.1:$etcd_port" --listen-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" --initial-cluster "default=http://127.0.0.1:$peer_port" \
  --logger=zap --log-level=error >"$work/etcd.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$etcd_port/health" >/dev/null && break; sleep 0.1; done

"$here/pki.sh" "$work/pki" "https://127.0.0.1:$api_port"
"$target/release/hakube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" \
  --secure-port "$api_port" --bind-address 127.0.0.1 \
  --tls-cert-file "$work/pki/apiserver.crt" --tls-private-key-file "$work/pki/apiserver.key" \
  --client-ca-file "$work/pki/ca.crt" >"$work/apiserver.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf --cacert "$work/pki/ca.crt" "https://127.0.0.1:$api_port/readyz" >/dev/null && break; sleep 0.1; done

echo "write benchmark: ${concurrency} concurrent writers, ${seconds}s each, 1 KiB ConfigMaps ($(nproc) cores)"
"$target/release/hakube-loadgen" --port "$api_port" --ca "$work/pki/ca.crt" \
  --cert "$work/pki/admin.crt" --key "$work/pki/admin.key" \
  --etcd "http://127.0.0.1:$etcd_port" --concurrency "$concurrency" --seconds "$seconds"
