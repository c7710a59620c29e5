#!/usr/bin/env bash
# `make bench`: YCSB A, B and C against the local cluster at the standard
# settings (3 nodes, N=3, R=W=2, 1 KiB values, 100,000 keys preloaded, 32
# requests in flight, one bench process, 60 s per workload), then a table
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

if [ -z "$(live_pids)" ]; then
  echo "no cluster is up: starting one with make cluster"
  make -C "$ROOT" --no-print-directory cluster
fi
cargo build --release --quiet --workspace --bins
mapfile -t PIDS < <(live_pids)

# CPU ticks (user + system) of every node, summed.
node_ticks() {
  local total=0
  for pid in "${PIDS[@]}"; do
    read -r -a stat < <(sed 's/.*) //' "/proc/$pid/stat")
    total=$(( total + stat[11] + stat[12] ))
  done
  echo "$total"
}
node_rss_mib() {
  for pid in "${PIDS[@]}"; do awk '/VmRSS/ { printf "%d ", $2 / 1024 }' "/proc/$pid/status"; done
}

export NORN_CONFIG="$DIR/client.toml"
echo "preloading $KEYS keys"
"$BENCH" --workload c --keys "$KEYS" --preload --ops 1 --json > /dev/null
HZ=$(getconf CLK_TCK)
results=()
for workload in a b c; do
  before=$(node_ticks)
  json=$("$BENCH" --workload "$workload" --keys "$KEYS" --duration-s "$DURATION" -n 3 -r 2 -w 2 --in-flight 32 --json)
  after=$(node_ticks)
  results+=("$json|$(( after - before ))|$(node_rss_mib)")
done

python3 - "$HZ" "${results[@]}" <<'PY'
import json, sys
hz = int(sys.argv[1])
print(f"{'workload':<9}{'ops/s':>10}{'p50 us':>9}{'p95 us':>9}{'p99 us':>9}{'p99.9 us':>10}{'errors':>8}{'node CPU us/op':>16}{'bench CPU us/op':>17}  node RSS MiB")
for entry in sys.argv[2:]:
    raw, ticks, rss = entry.split("|")
    r = json.loads(raw)
    cpu_us = int(ticks) * 1_000_000 / hz / max(r["operations"], 1)
    print(f"{r['workload']:<9}{r['ops_per_s']:>10.0f}{r['p50_us']:>9}{r['p95_us']:>9}{r['p99_us']:>9}{r['p999_us']:>10}{sum(r['errors'].values()):>8}{cpu_us:>16.1f}{r['bench_cpu_us_per_op']:>17.1f}  {rss}")
PY
