#!/usr/bin/env bash
# Bring-up benchmark (issue 8): `hakube up` applies the 3-host stacked Cluster and times it from
# the apply to `Available` (operator + hostd: join, PKI, bundles, etcd, API servers, HAProxy).
# The floor, in the same run on the same hosts: the very same etcd, hakube-apiserver,
# scheduler and HAProxy command lines (read back from hostd's unit records) started directly
# in their namespaces with fresh etcd data, until etcd, every API server and /readyz through
# HAProxy answer; the median of BENCH_BRINGUP_ROUNDS (5) such starts, against the median of as
# many bring-ups.
# Prints both and their ratio.
set -euo pipefail
rounds=${BENCH_BRINGUP_ROUNDS:-5}
median() { printf '%s\n' "$@" | sort -n | sed -n "$((($# + 1) / 2))p"; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$@"; }
target=${CARGO_TARGET_DIR:-/var/tmp/hakube-target}
cargo build --release -q --bins -p hakube -p hakube-operator -p hakube-hostd -p hakube-apiserver -p hakube-scheduler -p hakube-controller-manager
bin=$target/release
state=$(mktemp -d /var/tmp/hakube-bench-up.XXXXXX)
trap '"$bin/hakube" --state-dir "$state/s" down >/dev/null 2>&1 || true; rm -rf "$state"' EXIT

# A fresh three-member etcd elects its leader after 0.3 s or after 3 s (split votes), on either
# path: each side's figure is the median of several runs (the last bring-up's hosts serve the
# floor).
operators=()
operator_rest=() # each bring-up without etcd's election
for round in $(seq 1 "$rounds"); do
  if ((round > 1)); then
    "$bin/hakube" --state-dir "$state/s" down >/dev/null
    rm -rf "$state/s"
  fi
  "$bin/hakube" --state-dir "$state/s" up --timeout-seconds 300 | tee "$state/up.log"
  operators+=("$(python3 - "$state/up.log" <<'PY'
import re, sys
applied = available = None
for line in open(sys.argv[1]):
    m = re.match(r"\[\s*([\d.]+)s\] (.*)", line)
    if not m:
        continue
    if m.group(2).startswith("Cluster ") and "applied" in m.group(2):
        applied = float(m.group(1))
    if m.group(2).startswith("Available at"):
        available = float(m.group(1))
print(f"{available - applied:.2f}")
PY
)")
  # From hostd's logs: the first etcd member started to the last one ready.
  elected=$(python3 - "$state"/s/logs/hostd-cp-*.log <<'PY'
import re, sys
from datetime import datetime
started, ready = [], []
for path in sys.argv[1:]:
    for line in open(path, errors="replace"):
        line = re.sub(r"\x1b\[[0-9;]*m", "", line)
        m = re.match(r"(\S+Z) .*(started|ready) unit=\S+\.etcd\b", line)
        if m:
            at = datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp()
            (started if m.group(2) == "started" else ready).append(at)
print(f"{max(ready) - min(started):.2f}" if started and ready else "?")
PY
)
  echo "operator, bring-up $round: ${operators[-1]}s (etcd healthy ${elected}s after it started)"
  operator_rest+=("$(since "$elected" "${operators[-1]}")")
done
operator=$(median "${operators[@]}")

# The floor: the same processes without the operator. Stop hostd and its units, keep the files.
s=$state/s
for pidfile in "$s"/pids/hostd-*.pid; do kill -KILL -- "-$(cat "$pidfile")" 2>/dev/null || true; done
# Stops everything in the hosts' namespaces and wipes etcd's data, for a fresh start.
stop_hosts() {
  for ns in $(ip netns list | awk '/^hakube-/{print $1}'); do
    for pid in $(ip netns pids "$ns"); do kill -KILL "$pid" 2>/dev/null || true; done
  done
  wait 2>/dev/null || true
  sleep 1
  rm -rf "$s"/hosts/*/clusters/*/etcd/data
}
stop_hosts
commands=$(python3 - "$s" <<'PY'
import glob, json, os, shlex, sys
state = sys.argv[1]
for record in sorted(glob.glob(f"{state}/hosts/*/units/*.json")):
    host = record.split("/hosts/")[1].split("/")[0]
    spec = json.load(open(record))["spec"]
    command = spec["command"]
    if spec.get("bundle_version") and not command.startswith("/"):
        command = f"{state}/hosts/{host}/bundles/{spec['bundle_version']}/{command}"
    line = " ".join(shlex.quote(a) for a in [command] + spec["args"])
    print(f"{host}\t{spec['working_dir']}\t{spec['log_file']}.floor\t{line}")
PY
)
# etcd first (hakube-apiserver wants its etcd answering when it starts), then the rest.
launch() { # pattern: starts the recorded units whose name matches
  while IFS=$'\t' read -r host dir log line; do
    [[ $log == *"/logs/$1"* ]] || continue
    (cd "$dir" && exec ip netns exec "hakube-$host" bash -c "exec $line" >"$log" 2>&1) &
  done <<<"$commands"
}
etcd_ready() {
  for h in cp-1 cp-2 cp-3; do
    ip netns exec "hakube-$h" curl -sf http://127.0.0.1:2381/health >/dev/null || return 1
  done
}
ready() {
  for h in cp-1 cp-2 cp-3; do
    ip netns exec "hakube-$h" curl -skf https://127.0.0.1:6443/readyz >/dev/null || return 1
  done
  curl -skf https://10.77.0.10:6443/readyz >/dev/null
}
floors=()
floor_rest=() # each start after etcd was healthy
for round in $(seq 1 "$rounds"); do
  start=$(date +%s.%N)
  launch etcd
  until etcd_ready; do sleep 0.05; done
  etcd_at=$(date +%s.%N)
  launch kube-
  launch haproxy
  until ready; do sleep 0.05; done
  done_at=$(date +%s.%N)
  floors+=("$(since "$start" "$done_at")")
  floor_rest+=("$(since "$etcd_at" "$done_at")")
  echo "floor, start $round: ${floors[-1]}s (etcd healthy after $(since "$start" "$etcd_at")s)"
  stop_hosts 2>/dev/null
done
floor=$(median "${floors[@]}")
echo "bring-up (medians of $rounds): apply → Available ${operator}s through the operator; the same processes started directly ${floor}s; ratio $(python3 -c "print(f'{$operator / $floor:.2f}')")× (goal ≤ 1.5×)"
# etcd's first election is a lottery both sides draw from; what the operator adds shows without it.
rest=$(median "${operator_rest[@]}")
rest_floor=$(median "${floor_rest[@]}")
echo "without etcd's election (medians): operator ${rest}s, floor ${rest_floor}s; ratio $(python3 -c "print(f'{$rest / $rest_floor:.2f}')")×"
