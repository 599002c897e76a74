#!/usr/bin/env bash
# The API-server benchmarks, each on a fresh etcd and hakube-apiserver:
# - writes: 1 KiB ConfigMaps created through hakube-apiserver with 64 concurrent HTTP/2 streams
#   for 20 s, and the same keys and sizes put straight into the same etcd at the same
#   concurrency, in one run. Prints both rates and their ratio.
# - the watch cache: 10,000 ~2 KiB Pods; lists from the cache beside serializing the same
#   objects in process, write-to-receipt latency and lost events with 1,000 watchers (and 1),
#   and the API server's resident memory while the watchers are open.
# - the scheduler: 5,000 Ready nodes and 10,000 pending pods; pods bound per second by
#   hakube-scheduler beside the same Bindings posted straight to the API server at the same
#   concurrency, and the algorithm's cost per pod in process; five runs (BENCH_SCHED_RUNS),
#   each on a fresh etcd and API server, and the medians of their ratios.
# - the controller manager: a Deployment scaled from 0 to 1,000 replicas by
#   hakube-controller-manager, until a watch has seen every pod, beside the same pods created
#   straight through the API server at the replicaset controller's create concurrency, timed
#   the same way; five rounds of each in turn, medians compared.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
target=${CARGO_TARGET_DIR:-/var/tmp/hakube-target}
seconds=${BENCH_SECONDS:-20}
concurrency=${BENCH_CONCURRENCY:-64}
pods=${BENCH_PODS:-10000}
lists=${BENCH_LISTS:-30}
watchers=${BENCH_WATCHERS:-1000}
watch_seconds=${BENCH_WATCH_SECONDS:-30}
sched_nodes=${BENCH_SCHED_NODES:-5000}
sched_pods=${BENCH_SCHED_PODS:-10000}
sched_concurrency=${BENCH_SCHED_CONCURRENCY:-16}
sched_runs=${BENCH_SCHED_RUNS:-5}
kcm_replicas=${BENCH_KCM_REPLICAS:-1000}
kcm_concurrency=${BENCH_KCM_CONCURRENCY:-64}
# Extra etcd flags for every section (e.g. "--backend-batch-interval=10ms").
read -r -a etcd_flags <<<"${BENCH_ETCD_FLAGS:-}"
# The sections to run (BENCH_ONLY="cache" re-measures one figure).
only=${BENCH_ONLY:-write cache sched kcm}
wants() { [[ " $only " == *" $1 "* ]]; }

cargo build --release -q -p hakube-apiserver -p hakube-scheduler -p hakube-controller-manager -p hakube-loadgen
work=$(mktemp -d /var/tmp/hakube-bench.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Starts an empty etcd and an API server on it, named $1; sets etcd_port, api_port, api_pid.
start() {
  local name=$1 peer_port
  etcd_port=$(free_port); peer_port=$(free_port); api_port=$(free_port)
  etcd --data-dir "$work/$name-etcd" --listen-client-urls "http://127.0.0.1:$etcd_port" \
    --advertise-client-urls "http://127.0.0.1:$etcd_port" --listen-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" --initial-cluster "default=http://127.0.0.1:$peer_port" \
    --logger=zap --log-level=error "${etcd_flags[@]}" >"$work/$name-etcd.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$etcd_port/health" >/dev/null && break; sleep 0.1; done

  "$here/pki.sh" "$work/$name-pki" "https://127.0.0.1:$api_port"
  "$target/release/hakube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" \
    --secure-port "$api_port" --bind-address 127.0.0.1 \
    --tls-cert-file "$work/$name-pki/apiserver.crt" --tls-private-key-file "$work/$name-pki/apiserver.key" \
    --client-ca-file "$work/$name-pki/ca.crt" >"$work/$name-apiserver.log" 2>&1 &
  api_pid=$!
  pids+=($api_pid)
  for _ in $(seq 100); do curl -sf --cacert "$work/$name-pki/ca.crt" "https://127.0.0.1:$api_port/readyz" >/dev/null && break; sleep 0.1; done
}

# Stops the last etcd and API server started.
stop() {
  local pid
  for pid in "${pids[@]: -2}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  pids=("${pids[@]:0:${#pids[@]}-2}")
}

loadgen() {
  local name=$1; shift
  "$target/release/hakube-loadgen" --port "$api_port" --ca "$work/$name-pki/ca.crt" \
    --cert "$work/$name-pki/admin.crt" --key "$work/$name-pki/admin.key" "$@"
}

if wants write; then
start write
echo "write benchmark: ${concurrency} concurrent writers, ${seconds}s each, 1 KiB ConfigMaps ($(nproc) cores)"
loadgen write --etcd "http://127.0.0.1:$etcd_port" --concurrency "$concurrency" --seconds "$seconds"
stop
fi

if wants cache; then
start cache
echo "watch-cache benchmarks: ${pods} Pods of 2 KiB, ${watchers} watchers ($(nproc) cores)"
loadgen cache --mode watch-cache --apiserver-pid "$api_pid" --concurrency "$concurrency" \
  --pods "$pods" --lists "$lists" --watchers "$watchers" --watch-seconds "$watch_seconds"
stop
fi

if wants sched; then
echo "scheduler benchmark: ${sched_nodes} Ready nodes, ${sched_pods} pending pods, ${sched_concurrency} concurrent bindings, ${sched_runs} runs on fresh servers ($(nproc) cores)"
for run in $(seq "$sched_runs"); do
  start "sched-$run"
  loadgen "sched-$run" --mode scheduler --nodes "$sched_nodes" --pods "$sched_pods" \
    --concurrency "$sched_concurrency" --scheduler-bin "$target/release/hakube-scheduler" \
    --kubeconfig "$work/sched-$run-pki/admin.kubeconfig" --work-dir "$work" | tee -a "$work/sched.out"
  stop
done
# One run is ~15 s and single runs spread widely on a shared machine: the medians decide.
median() { awk "/^ratio scheduler/ { print \$$1 }" "$work/sched.out" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
from_start=$(median 4); from_first=$(median 8)
echo "median of $sched_runs runs: ratio $from_start from process start, $from_first from the first binding (goal >= 0.70: $(awk "BEGIN { print ($from_first >= 0.70) ? \"met\" : \"NOT met\" }"))"
fi

if wants kcm; then
start kcm
echo "controller-manager benchmark: a Deployment scaled 0 -> ${kcm_replicas}, limit at ${kcm_concurrency} concurrent creates ($(nproc) cores)"
loadgen kcm --mode controller-manager --replicas "$kcm_replicas" --concurrency "$kcm_concurrency" --rounds 5 \
  --controller-manager-bin "$target/release/hakube-controller-manager" \
  --kubeconfig "$work/kcm-pki/admin.kubeconfig" --work-dir "$work"
stop
fi
