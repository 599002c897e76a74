#!/usr/bin/env bash
# Starts a single-node control plane (etcd + hakube-apiserver) in the background and writes an
# admin kubeconfig. Until the operator's `hakube up` exists, this is what `make up` runs.
set -euo pipefail
state=${HAKUBE_STATE_DIR:-/var/tmp/hakube-up}
port=${HAKUBE_PORT:-6443}
etcd_port=${HAKUBE_ETCD_PORT:-2379}
bin=${CARGO_TARGET_DIR:-/var/tmp/hakube-target}/debug
here=$(cd "$(dirname "$0")" && pwd)

running() { [ -f "$state/$1.pid" ] && kill -0 "$(cat "$state/$1.pid")" 2>/dev/null; }
if running apiserver; then
  echo "already running; KUBECONFIG=$state/admin.kubeconfig (make down stops it)"
  exit 0
fi
mkdir -p "$state"
"$here/pki.sh" "$state/pki" "https://127.0.0.1:$port"

if ! running etcd; then
  etcd --name hakube --data-dir "$state/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$((etcd_port + 1))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((etcd_port + 1))" \
    --initial-cluster "hakube=http://127.0.0.1:$((etcd_port + 1))" \
    --logger=zap --log-level=warn >"$state/etcd.log" 2>&1 &
  echo $! >"$state/etcd.pid"
fi
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$etcd_port/health" >/dev/null && break; sleep 0.1; done

pki=$state/pki
"$bin/hakube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" \
  --secure-port "$port" --bind-address 127.0.0.1 \
  --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --client-ca-file "$pki/ca.crt" --token-auth-file "$pki/tokens.csv" \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  >"$state/apiserver.log" 2>&1 &
echo $! >"$state/apiserver.pid"
for _ in $(seq 100); do curl -sf --cacert "$pki/ca.crt" "https://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
if ! curl -sf --cacert "$pki/ca.crt" "https://127.0.0.1:$port/readyz" >/dev/null; then
  echo "hakube-apiserver did not become ready; see $state/apiserver.log" >&2
  tail -20 "$state/apiserver.log" >&2
  exit 1
fi
cp "$pki/admin.kubeconfig" "$state/admin.kubeconfig"
cat <<MSG
hakube control plane is up: https://127.0.0.1:$port (etcd at 127.0.0.1:$etcd_port)
  export KUBECONFIG=$state/admin.kubeconfig
  kubectl get namespaces
Logs: $state/apiserver.log, $state/etcd.log. Stop it with: make down
MSG
