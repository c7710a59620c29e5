#!/usr/bin/env bash
# Builds RocksDB's static library once and keeps it in target/rocksdb/, where
# .cargo/config.toml points librocksdb-sys (ROCKSDB_LIB_DIR): the debug and
# release profiles then link the same archive instead of each compiling
# RocksDB's C++ from source (15-20 minutes apiece on 2 cores).
#
# The archive is compiled from the librocksdb-sys crate that Cargo.lock pins,
# with the same build script, features and flags as a normal build; its
# version is recorded beside it, so a lockfile that moves to another
# librocksdb-sys rebuilds it. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(awk '/^name = "librocksdb-sys"$/ { getline; gsub(/"/, "", $3); print $3 }' Cargo.lock)
[ -n "$version" ] || { echo "rocksdb-lib: librocksdb-sys is not in Cargo.lock" >&2; exit 1; }
lib_dir=target/rocksdb
stamp="$lib_dir/VERSION"
if [ -f "$lib_dir/librocksdb.a" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$version" ]; then
  exit 0
fi

build_dir=target/rocksdb-build
echo "rocksdb-lib: compiling RocksDB $version once for every profile (15-20 minutes on 2 cores)"
started=$(date +%s)
# ROCKSDB_COMPILE overrides the ROCKSDB_LIB_DIR that .cargo/config.toml sets.
ROCKSDB_COMPILE=1 cargo build --release --locked -p norn-storage --target-dir "$build_dir"
archive=$(ls -t "$build_dir"/release/build/librocksdb-sys-*/out/librocksdb.a | head -n 1)
mkdir -p "$lib_dir"
cp "$archive" "$lib_dir/librocksdb.a.tmp"
mv "$lib_dir/librocksdb.a.tmp" "$lib_dir/librocksdb.a"
echo "$version" > "$stamp"
rm -rf "$build_dir"
echo "rocksdb-lib: $lib_dir/librocksdb.a ready after $(( $(date +%s) - started )) s"
