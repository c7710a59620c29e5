#!/usr/bin/env bash
# `make bench-ae`: YCSB-A throughput with anti-entropy off, then on, each on
# a fresh local cluster (make cluster) at the settings of `make bench` (3
# nodes, N=3, R=W=2, 1 KiB values, KEYS keys preloaded, 32 in flight,
# DURATION seconds). "On" runs a background exchange every AE_INTERVAL_MS
# (default 100 ms: ten times the default rate). Prints both, the ratio, and
# the exchanges and repaired keys the nodes counted. Starts and stops its own
# clusters, so it refuses to run while one is up.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR="$ROOT/cluster"
DURATION=${DURATION:-60}
KEYS=${KEYS:-100000}
AE_INTERVAL_MS=${AE_INTERVAL_MS:-100}
BENCH="$ROOT/target/release/norn-bench"

# shellcheck source=tools/cluster-lib.sh
source "$ROOT/tools/cluster-lib.sh"

if [ -n "$(live_pids)" ]; then
  echo "a cluster is running in $DIR; stop it first (make cluster-stop): this bench starts its own" >&2
  exit 2
fi
trap 'make -C "$ROOT" --no-print-directory cluster-stop >/dev/null 2>&1 || true' EXIT
cargo build --release --quiet --workspace --bins
export NORN_CONFIG="$DIR/client.toml"

# Sums a counter over the nodes' /metrics.
metric_sum() { # name
  python3 - "$1" "$DIR"/n*/http_address <<'PY'
import sys, urllib.request
name, total = sys.argv[1], 0.0
for path in sys.argv[2:]:
    address = open(path).read().strip()
    for line in urllib.request.urlopen(f"http://{address}/metrics", timeout=5).read().decode().splitlines():
        if line.startswith(name + " "):
            total += float(line.split()[1])
print(int(total))
PY
}

run() { # label node-config
  NODE_CONFIG="$2" make -C "$ROOT" --no-print-directory cluster >/dev/null
  "$BENCH" --workload c --keys "$KEYS" --preload --ops 1 --json >/dev/null
  local before_exchanges before_repaired
  before_exchanges=$(metric_sum norn_anti_entropy_exchanges_total)
  before_repaired=$(metric_sum norn_anti_entropy_keys_repaired_total)
  local json
  json=$("$BENCH" --workload a --keys "$KEYS" --duration-s "$DURATION" -n 3 -r 2 -w 2 --in-flight 32 --json)
  local exchanges=$(( $(metric_sum norn_anti_entropy_exchanges_total) - before_exchanges ))
  local repaired=$(( $(metric_sum norn_anti_entropy_keys_repaired_total) - before_repaired ))
  make -C "$ROOT" --no-print-directory cluster-stop >/dev/null
  echo "$1|$json|$exchanges|$repaired"
}

echo "YCSB-A, anti-entropy off ($DURATION s)" >&2
off=$(run off $'[anti_entropy]\nenabled = false')
echo "YCSB-A, anti-entropy on, an exchange every $AE_INTERVAL_MS ms ($DURATION s)" >&2
on=$(run on $'[anti_entropy]\nenabled = true\ninterval_ms = '"$AE_INTERVAL_MS")

python3 - "$off" "$on" <<'PY'
import json, sys
rows = []
for entry in sys.argv[1:]:
    label, raw, exchanges, repaired = entry.split("|")
    rows.append((label, json.loads(raw), int(exchanges), int(repaired)))
print(f"{'anti-entropy':<13}{'ops/s':>10}{'p50 us':>9}{'p99 us':>9}{'errors':>8}{'exchanges':>11}{'keys repaired':>15}")
for label, r, exchanges, repaired in rows:
    print(f"{label:<13}{r['ops_per_s']:>10.0f}{r['p50_us']:>9}{r['p99_us']:>9}{sum(r['errors'].values()):>8}{exchanges:>11}{repaired:>15}")
print(f"on / off: {rows[1][1]['ops_per_s'] / rows[0][1]['ops_per_s'] * 100:.1f}% (goal: at least 90%)")
PY
