#!/usr/bin/env bash
# `make cluster-stop`: stops the nodes of ./cluster by their pids (SIGTERM,
# then SIGKILL after 10 s), leaving their data and logs for inspection.
set -euo pipefail
DIR=${CLUSTER_DIR:-"$(cd "$(dirname "$0")/.." && pwd)/cluster"}
if [ ! -f "$DIR/pids" ]; then echo "no cluster is running"; exit 0; fi
# shellcheck source=tools/cluster-lib.sh
source "$(dirname "$0")/cluster-lib.sh"
mapfile -t pids < <(live_pids)
for pid in "${pids[@]}"; do kill -TERM "$pid"; done
for _ in $(seq 1 100); do
  alive=()
  for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
  [ ${#alive[@]} -eq 0 ] && break
  sleep 0.1
done
for pid in "${alive[@]}"; do echo "pid $pid ignored SIGTERM; killing it" >&2; kill -KILL "$pid" 2>/dev/null || true; done
rm -f "$DIR/pids"
echo "stopped ${#pids[@]} nodes; data and logs remain in cluster/"
