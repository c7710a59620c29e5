#!/usr/bin/env bash
# `make bench`: YCSB A, B and C against the local cluster at the standard
# settings (3 nodes, N=3, R=W=2, 1 KiB values, 100,000 keys preloaded, 32
# requests in flight, one bench process, 60 s per workload), and A again
# with DW=2 (every acknowledged write fsynced on two replicas), then a table
# with throughput, percentiles, the nodes' CPU per operation and their RSS.
# Starts a cluster with `make cluster` when none is up (and leaves it up).
# DURATION and KEYS override the run length and key count.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR="$ROOT/cluster"
DURATION=${DURATION:-60}
KEYS=${KEYS:-100000}
BENCH="$ROOT/target/release/norn-bench"

# shellcheck source=tools/cluster-lib.sh
source "$ROOT/tools/cluster-lib.sh"

bench_on_local_cluster
HZ=$(getconf CLK_TCK)
# The preload leaves flushes and compactions running: wait (up to 60 s)
# until the nodes are idle, so that the first workload is not charged.
for _ in $(seq 1 60); do
  before=$(pids_ticks); sleep 1
  (( $(pids_ticks) - before < HZ / 10 )) && break
done
results=()
run() { # label workload [norn-bench arguments]
  local label=$1 workload=$2
  shift 2
  bench_row "$label" --workload "$workload" --keys "$KEYS" --duration-s "$DURATION" -n 3 -r 2 -w 2 --in-flight 32 "$@"
}
run A a
run B b
run C c
run "A DW=2" a --dw 2
python3 "$ROOT/tools/bench-table.py" "$HZ" "${results[@]}"
