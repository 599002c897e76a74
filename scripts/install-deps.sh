#!/usr/bin/env bash
# Installs what building and testing hakube needs on Debian 12, skipping what is present.
set -euo pipefail
packages=(protobuf-compiler libssl-dev pkg-config etcd-server etcd-client haproxy keepalived iproute2 curl openssl ca-certificates python3)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! command -v kubectl >/dev/null; then
  echo "kubectl is not installed; the end-to-end suites need it" >&2
  exit 1
fi
