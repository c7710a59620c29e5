#!/usr/bin/env bash
# `make bench-etcd`: the workloads of `make bench` against a 3-member etcd
# (Debian's etcd-server, installed when missing) on loopback, through the
# same driver (norn-bench --etcd), printed in the same table: YCSB A, B and
# C with linearizable reads, C again with serializable reads. etcd fsyncs
# its log before it acknowledges, as norn does with DW. Each member is
# stopped by its pid and its data removed, whatever happens.
# DURATION (60) and KEYS (100000) as for make bench.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DURATION=${DURATION:-60}
KEYS=${KEYS:-100000}
BENCH="$ROOT/target/release/norn-bench"
# shellcheck source=tools/cluster-lib.sh
source "$ROOT/tools/cluster-lib.sh"

if ! command -v etcd >/dev/null; then
  echo "installing etcd-server (Debian)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends etcd-server >/dev/null
fi
cargo build --release --quiet -p norn-bench --features etcd

WORK=$(mktemp -d)
PIDS=()
stop_etcd() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}
trap 'stop_etcd; rm -rf "$WORK"' EXIT

free_ports() { # count: distinct free loopback ports, bound and released
  python3 - "$1" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
PY
}

healthy() { # endpoints
  ETCDCTL_API=3 etcdctl --endpoints "$1" --dial-timeout 1s endpoint health >/dev/null 2>&1
}

# A freed port may be taken before etcd binds it: try again with new ones.
for attempt in 1 2 3; do
  read -r -a ports < <(free_ports 6)
  cluster="" endpoints=""
  for i in 0 1 2; do
    cluster+="${cluster:+,}e$i=http://127.0.0.1:${ports[$((i + 3))]}"
    endpoints+="${endpoints:+,}http://127.0.0.1:${ports[$i]}"
  done
  for i in 0 1 2; do
    client="http://127.0.0.1:${ports[$i]}" peer="http://127.0.0.1:${ports[$((i + 3))]}"
    etcd --name "e$i" --data-dir "$WORK/e$i" \
      --listen-client-urls "$client" --advertise-client-urls "$client" \
      --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
      --initial-cluster "$cluster" --initial-cluster-state new \
      --initial-cluster-token norn-bench --log-level error > "$WORK/e$i.log" 2>&1 &
    PIDS+=("$!")
  done
  for _ in $(seq 1 100); do healthy "$endpoints" && break; sleep 0.2; done
  if healthy "$endpoints"; then break; fi
  echo "etcd did not come up (attempt $attempt); its log:" >&2
  cat "$WORK/e0.log" >&2
  stop_etcd
  rm -rf "$WORK"/e*
  [ "$attempt" -lt 3 ] || exit 1
done
echo "etcd 3 members up: $endpoints"


echo "preloading $KEYS keys"
"$BENCH" --etcd "$endpoints" --workload c --keys "$KEYS" --preload --ops 1 --json > /dev/null
HZ=$(getconf CLK_TCK)
results=()
run() { # label workload [norn-bench arguments]
  local label=$1 workload=$2
  shift 2
  bench_row "$label" --etcd "$endpoints" --workload "$workload" --keys "$KEYS" --duration-s "$DURATION" --in-flight 32 "$@"
}
run "etcd A" a
run "etcd B" b
run "etcd C" c
run "etcd C ser." c --serializable
python3 "$ROOT/tools/bench-table.py" "$HZ" "${results[@]}"
