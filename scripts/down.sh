#!/usr/bin/env bash
# Stops what scripts/up.sh started and removes its state.
set -euo pipefail
state=${HAKUBE_STATE_DIR:-/var/tmp/hakube-up}
for name in apiserver etcd; do
  if [ -f "$state/$name.pid" ]; then
    pid=$(cat "$state/$name.pid")
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
  fi
done
rm -rf "$state"
echo "hakube control plane stopped"
