#!/usr/bin/env bash
# Failover benchmark (issue 9): on `hakube up` clusters, the longest API gap through HAProxy
# (a client polling every 50 ms) when the etcd leader's host crashes and when it is
# partitioned, beside HAProxy's configured detection time; and the time from the fault to a
# healthy replacement member, beside the time to add a member to a healthy cluster in the same
# run (half of a 3 -> 5 scale-up). Prints one BENCH line per fault.
set -euo pipefail
target=${CARGO_TARGET_DIR:-/var/tmp/hakube-target}
cargo build -q --workspace --bins
log=$(mktemp /var/tmp/hakube-bench-failover.XXXXXX)
trap 'rm -f "$log"' EXIT
HAKUBE_BIN_DIR=$target/debug cargo nextest run -p hakube-e2e --test local_mode \
  --run-ignored only -E 'test(failover_benchmark)' --no-capture >"$log" 2>&1 || {
  tail -50 "$log"
  exit 1
}
grep '^BENCH' "$log"
