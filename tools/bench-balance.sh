#!/usr/bin/env bash
# `make bench-balance`: the Rust client's three replica-choice policies
# (round-robin, least outstanding, lowest latency) against the local
# cluster with its last node slowed: a duty cycle of SIGSTOP and SIGCONT
# (stopped STOP_MS of every PERIOD_MS; 5 of 10 by default), which makes it
# about half as fast and its answers late by up to STOP_MS. Workload C at
# R=1, so that a read is served by the replica the client picked, and A at
# R=W=2; DURATION (20) s each, KEYS (10000) keys preloaded. Starts a
# cluster when none is up; the slowed node is always left running.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR="$ROOT/cluster"
DURATION=${DURATION:-20}
KEYS=${KEYS:-10000}
STOP_MS=${STOP_MS:-5}
PERIOD_MS=${PERIOD_MS:-10}
BENCH="$ROOT/target/release/norn-bench"

# shellcheck source=tools/cluster-lib.sh
source "$ROOT/tools/cluster-lib.sh"

bench_on_local_cluster
SLOW=${PIDS[-1]}

CYCLER=
stop_cycling() {
  if [ -n "$CYCLER" ]; then kill "$CYCLER" 2>/dev/null || true; wait "$CYCLER" 2>/dev/null || true; fi
  CYCLER=
  kill -CONT "$SLOW" 2>/dev/null || true
}
trap stop_cycling EXIT
stop=$(awk -v ms="$STOP_MS" 'BEGIN { printf "%.3f", ms / 1000 }')
run_for=$(awk -v ms="$((PERIOD_MS - STOP_MS))" 'BEGIN { printf "%.3f", ms / 1000 }')
echo "slowing node pid $SLOW: stopped $STOP_MS ms of every $PERIOD_MS ms"
( while true; do kill -STOP "$SLOW"; sleep "$stop"; kill -CONT "$SLOW"; sleep "$run_for"; done ) &
CYCLER=$!

HZ=$(getconf CLK_TCK)
results=()
run() { # label workload [norn-bench arguments]
  local label=$1 workload=$2
  shift 2
  bench_row "$label" --workload "$workload" --keys "$KEYS" --duration-s "$DURATION" --in-flight 32 "$@"
}
for policy in round-robin least-outstanding lowest-latency; do
  run "C R=1 $policy" c -n 3 -r 1 -w 2 --policy "$policy"
done
for policy in round-robin least-outstanding lowest-latency; do
  run "A $policy" a -n 3 -r 2 -w 2 --policy "$policy"
done
stop_cycling
python3 "$ROOT/tools/bench-table.py" "$HZ" "${results[@]}"
