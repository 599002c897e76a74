#!/usr/bin/env bash
# Creates the PKI of a local control plane in DIR: a CA, the API server's serving certificate,
# an admin client certificate (O=system:masters), the ServiceAccount signing key, a static
# token file and an admin kubeconfig. Usage: pki.sh DIR SERVER_URL [EXTRA_IP]
set -euo pipefail
dir=$1
server=$2
extra_ip=${3:-127.0.0.1}
mkdir -p "$dir"
cd "$dir"
[ -f ca.crt ] && exit 0

openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=hakube-ca" \
  -keyout ca.key -out ca.crt 2>/dev/null

sign() { # name subject [san]
  local name=$1 subject=$2 san=${3:-}
  openssl req -newkey rsa:2048 -nodes -subj "$subject" -keyout "$name.key" -out "$name.csr" 2>/dev/null
  if [ -n "$san" ]; then
    printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$san" > "$name.ext"
  else
    printf 'extendedKeyUsage=clientAuth\n' > "$name.ext"
  fi
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 \
    -extfile "$name.ext" -out "$name.crt" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}
sign apiserver "/CN=kube-apiserver" \
  "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:10.0.0.1,IP:$extra_ip"
sign admin "/O=system:masters/CN=kubernetes-admin"
sign developer "/O=developers/CN=jane"

openssl genrsa -out sa.key 2048 2>/dev/null
openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null

token=$(openssl rand -hex 16)
printf '%s,token-admin,token-admin-uid,"system:masters"\n' "$token" > tokens.csv
printf '%s\n' "$token" > admin.token

b64() { base64 -w0 < "$1"; }
cat > admin.kubeconfig <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: hakube
  cluster:
    server: $server
    certificate-authority-data: $(b64 ca.crt)
users:
- name: admin
  user:
    client-certificate-data: $(b64 admin.crt)
    client-key-data: $(b64 admin.key)
contexts:
- name: hakube
  context: {cluster: hakube, user: admin}
current-context: hakube
KUBECONFIG
