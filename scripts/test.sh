#!/usr/bin/env bash
# Runs every test: unit, integration (real etcd) and end-to-end (real binaries and clients).
set -euo pipefail
if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --workspace --no-fail-fast
else
  exec cargo test --workspace --no-fail-fast
fi
