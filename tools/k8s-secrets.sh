#!/usr/bin/env bash
# Issues norn's certificates for Kubernetes and writes them as Secrets:
#
#   tools/k8s-secrets.sh OUT [NODES_MAX]     # then: kubectl apply -f OUT/secrets.yaml
#
# - norn-tls: the CA certificate and a certificate and key for each of
#   the pods norn-0 .. norn-(NODES_MAX-1) (9 by default: issue as many as
#   the StatefulSet may ever scale to);
# - norn-admin: the CA certificate and the admin certificate and key, for
#   the autopilot;
# - norn-http: a random HTTP bearer token.
#
# OUT/tls keeps the CA key and the admin files: keep them offline, for
# `norn certs` and `norn admin` from outside the cluster. The namespace is
# norn, as deploy/kubernetes/kustomization.yaml sets it (NAMESPACE=...).
# NORN_BIN names the norn binary (default target/release/norn, else
# target/debug/norn).
set -Eeuo pipefail
# Keys only for their owner, from the first file written.
umask 077
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:?usage: $0 OUT [NODES_MAX]}
NODES_MAX=${2:-9}
NAMESPACE=${NAMESPACE:-norn}
[[ "$NODES_MAX" =~ ^[0-9]+$ ]] && (( NODES_MAX >= 1 && NODES_MAX <= 256 )) || { echo "NODES_MAX must be 1..256, got $NODES_MAX" >&2; exit 2; }
if [ -z "${NORN_BIN:-}" ]; then
  NORN_BIN="$ROOT/target/release/norn"
  [ -x "$NORN_BIN" ] || NORN_BIN="$ROOT/target/debug/norn"
fi
[ -x "$NORN_BIN" ] || { echo "no norn binary at $NORN_BIN: run make build (or set NORN_BIN)" >&2; exit 2; }
[ ! -e "$OUT/tls" ] || { echo "$OUT/tls exists: refusing to issue a second CA over it" >&2; exit 2; }

mkdir -p "$OUT/tls"
# A run that fails leaves nothing half-issued behind (a rerun would refuse it).
trap 'echo "k8s-secrets: failed; removing $OUT/tls and $OUT/secrets.yaml" >&2; rm -rf "$OUT/tls" "$OUT/secrets.yaml"' ERR
"$NORN_BIN" certs init --dir "$OUT/tls" --cluster "$NAMESPACE" >/dev/null
for i in $(seq 0 $(( NODES_MAX - 1 ))); do
  "$NORN_BIN" certs node "norn-$i" --dir "$OUT/tls" >/dev/null
done
"$NORN_BIN" certs client admin --role admin --dir "$OUT/tls" >/dev/null
token=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')

b64() { base64 -w0 < "$1"; }
{
  echo "# Made by tools/k8s-secrets.sh: the keys of every node and of the admin."
  echo "apiVersion: v1"
  echo "kind: Secret"
  echo "metadata: {name: norn-tls, namespace: $NAMESPACE}"
  echo "type: Opaque"
  echo "data:"
  echo "  ca.pem: $(b64 "$OUT/tls/ca.pem")"
  for i in $(seq 0 $(( NODES_MAX - 1 ))); do
    echo "  norn-$i.pem: $(b64 "$OUT/tls/norn-$i.pem")"
    echo "  norn-$i.key: $(b64 "$OUT/tls/norn-$i.key")"
  done
  echo "---"
  echo "apiVersion: v1"
  echo "kind: Secret"
  echo "metadata: {name: norn-admin, namespace: $NAMESPACE}"
  echo "type: Opaque"
  echo "data:"
  echo "  ca.pem: $(b64 "$OUT/tls/ca.pem")"
  echo "  admin.pem: $(b64 "$OUT/tls/admin.pem")"
  echo "  admin.key: $(b64 "$OUT/tls/admin.key")"
  echo "---"
  echo "apiVersion: v1"
  echo "kind: Secret"
  echo "metadata: {name: norn-http, namespace: $NAMESPACE}"
  echo "type: Opaque"
  echo "stringData:"
  echo "  token: $token"
} > "$OUT/secrets.yaml"
trap - ERR
echo "wrote $OUT/secrets.yaml (norn-tls for norn-0..norn-$(( NODES_MAX - 1 )), norn-admin, norn-http); the CA key stays in $OUT/tls"
