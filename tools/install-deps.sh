#!/usr/bin/env bash
# Installs what building norn needs and a fresh machine may lack: clang and
# libclang (the rocksdb crate builds RocksDB from source and runs bindgen),
# iproute2 and nftables for the network-namespace fault tests, and the
# Python package kubernetes-validate (Kubernetes' schemas, offline) for the
# manifest test. Idempotent; installs only what is missing. Needs root to
# install the Debian packages.
set -euo pipefail

missing=()
command -v clang >/dev/null 2>&1 || missing+=(clang)
# bindgen needs libclang itself (libclang.so from libclang-dev); a fresh
# machine may already have the unrelated libclang-cpp, so match exactly.
if ! dpkg -s libclang-dev >/dev/null 2>&1 && ! ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1; then
  missing+=(libclang-dev)
fi
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v nft >/dev/null 2>&1 || missing+=(nftables)
command -v cargo >/dev/null 2>&1 || { echo "cargo is not installed: install Rust (rustup) first" >&2; exit 1; }

# Only the manifest test needs it (and fails, naming it, without it): a
# Python that refuses the install does not stop the build.
KUBERNETES_VALIDATE=1.37.0
if ! python3 -c "import kubernetes_validate, yaml" >/dev/null 2>&1; then
  echo "installing kubernetes-validate $KUBERNETES_VALIDATE (PyPI)"
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore "kubernetes-validate==$KUBERNETES_VALIDATE" \
    || echo "warning: kubernetes-validate is not installed; tests/tests/deploy.rs will fail until it is" >&2
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing: ${missing[*]}; run as root, or: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
