#!/usr/bin/env bash
# `make cluster-containers`: NODES (5) norn containers from the image
# (`make image`), each with its own volume and DNS name on a podman network
# of their own. Every node has one config (deploy/container/nornd.toml,
# filled from its environment), finds its peers by resolving one network
# alias (`node.seed_names`) and stages its own join (`cluster.auto_join`);
# an autopilot container (`norn admin autopilot`, the admin certificate)
# commits the first ring once all NODES have. Prints the time the ring
# took to form.
#
#   tools/cluster-containers.sh up | down | norn ARGS... | start I | kill I | leave I
#
# `leave I` scales the cluster down by node I: `norn admin leave nI --wait`
# (which returns once its data is on the others), then removes its
# container and volume.
#
# PROFILE=debug builds the image from the debug binaries as built (tests);
# NORN_IMAGE names the image (localhost/norn:dev); NODE_LOG is the nodes'
# RUST_LOG (info,quinn=warn).
#
# `down` removes every container, volume and network this script made
# (all named PREFIX-*, PREFIX=norn-cc by default), by name. `norn ARGS`
# runs the CLI in a client container on the network, with the admin and
# data certificates. A failing `up` removes what it made (unless
# KEEP_ON_FAILURE=1, for a look at `podman logs`).
set -Eeuo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=tools/container-lib.sh
source tools/container-lib.sh

NODES=${NODES:-5}
PREFIX=${PREFIX:-norn-cc}
DIR=${DIR:-"$ROOT/target/$PREFIX"}
NETWORK="$PREFIX-net"
# The network alias every node shares: its records are the seeds.
PEERS_ALIAS=norn-peers
HTTP_TOKEN=${HTTP_TOKEN:-norn-cluster-containers-token}

[[ "$NODES" =~ ^[0-9]+$ ]] && (( NODES >= 1 && NODES <= 9 )) || { echo "NODES must be 1..9, got $NODES" >&2; exit 2; }

container() { echo "$PREFIX-n$1"; }
AUTOPILOT="$PREFIX-autopilot"
volume() { echo "$PREFIX-n$1-data"; }

# Runs the norn CLI in a throwaway container on the network.
norn_cli() {
  pod run --rm --network "$NETWORK" "${ULIMITS[@]}" --read-only \
    -v "$DIR/client:/etc/norn:ro" --entrypoint /usr/local/bin/norn \
    "$NORN_IMAGE" --config /etc/norn/client.toml "$@"
}

down() {
  pod rm -f -t 5 "$AUTOPILOT" >/dev/null 2>&1 || true
  for i in $(seq 1 9); do
    pod rm -f -t 5 "$(container "$i")" >/dev/null 2>&1 || true
    pod volume rm -f "$(volume "$i")" >/dev/null 2>&1 || true
  done
  pod network rm -f "$NETWORK" >/dev/null 2>&1 || true
}

# Starts node i's container (its volume is made on first use, owned as
# the image's /data).
start_node() {
  local i=$1
  pod run -d --name "$(container "$i")" --network "$NETWORK" \
    --network-alias "n$i" --network-alias "$PEERS_ALIAS" \
    "${ULIMITS[@]}" --read-only --cap-drop all \
    -e NORN_NAME="n$i" -e NORN_ZONE="zone-$(( (i - 1) % 3 + 1 ))" -e NORN_HTTP_TOKEN="$HTTP_TOKEN" \
    -e RUST_LOG="${NODE_LOG:-info,quinn=warn}" \
    -v "$(volume "$i"):/data" \
    -v "$DIR/tls:/etc/norn/tls:ro" \
    -v "$ROOT/deploy/container/nornd.toml:/etc/norn/nornd.toml:ro" \
    "$NORN_IMAGE" >/dev/null
}

# The autopilot: commits staged joins and leaves when they are safe, with
# the admin certificate; the first ring waits for all NODES joins.
start_autopilot() {
  pod run -d --name "$AUTOPILOT" --network "$NETWORK" "${ULIMITS[@]}" --read-only --cap-drop all \
    -v "$DIR/client:/etc/norn:ro" --entrypoint /usr/local/bin/norn \
    "$NORN_IMAGE" --config /etc/norn/client.toml admin autopilot --min-nodes "$NODES" --interval-ms 500 >/dev/null
}

# Scales the cluster down by node i: it leaves the ring and hands off its
# data first, then its container and volume go.
leave() {
  local i=$1 started
  started=$(date +%s%N)
  norn_cli admin leave "n$i" --wait --timeout-s 600
  pod rm -f -t 10 "$(container "$i")" >/dev/null
  pod volume rm -f "$(volume "$i")" >/dev/null
  echo "cluster-containers: n$i left and was removed $(( ($(date +%s%N) - started) / 1000000 )) ms after its leave began"
}

make_certificates() {
  local norn="$ROOT/target/${PROFILE:-release}/norn"
  rm -rf "$DIR"
  mkdir -p "$DIR/tls" "$DIR/client"
  "$norn" certs init --dir "$DIR/tls" --cluster containers >/dev/null
  for i in $(seq 1 "$NODES"); do "$norn" certs node "n$i" --dir "$DIR/tls" >/dev/null; done
  "$norn" certs client admin --role admin --dir "$DIR/tls" >/dev/null
  "$norn" certs client data --role data --dir "$DIR/tls" >/dev/null
  cp "$DIR/tls/ca.pem" "$DIR/tls"/admin.* "$DIR/tls"/data.* "$DIR/client/"
  rm -f "$DIR/tls/ca.key" "$DIR/tls"/admin.* "$DIR/tls"/data.*
  # Nodes and the client run as uid 10001: the keys are theirs, mode 0600.
  chown -R 10001:10001 "$DIR/tls" "$DIR/client"
  local nodes=()
  for i in $(seq 1 "$NODES"); do nodes+=("\"n$i:7000\""); done
  cat > "$DIR/client/client.toml" <<TOML
nodes = [$(IFS=,; echo "${nodes[*]}")]

[tls]
ca_cert = "ca.pem"
cert = "data.pem"
key = "data.key"

[admin_tls]
cert = "admin.pem"
key = "admin.key"
TOML
}

json_field() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

up() {
  ensure_podman
  tools/image.sh
  down
  make_certificates
  pod network create "$NETWORK" >/dev/null
  if [ "${KEEP_ON_FAILURE:-0}" = 1 ]; then
    trap 'echo "cluster-containers: start failed; kept for inspection (make cluster-containers-stop)" >&2' ERR
  else
    trap 'echo "cluster-containers: start failed; removing what it made" >&2; down' ERR
  fi
  local started
  started=$(date +%s%N)
  for i in $(seq 1 "$NODES"); do start_node "$i"; done
  start_autopilot
  echo "waiting until every node staged its join, the autopilot committed the ring, and every node is ready"
  local ready=0
  for _ in $(seq 1 120); do
    # `status` fails while a node is not ready, and prints them all.
    local status
    status=$(norn_cli admin status --json 2>/dev/null || true)
    ready=$(echo "$status" | json_field "sum(1 for r in d if r['ready'] and r['status']['in_ring'])" 2>/dev/null || echo 0)
    [ "$ready" -ge "$NODES" ] && break
    sleep 0.5
  done
  [ "$ready" -ge "$NODES" ] || { echo "only $ready of $NODES nodes are in the ring and ready; autopilot: $(pod logs "$AUTOPILOT" 2>&1 | tail -3)" >&2; false; }
  trap - ERR
  echo "cluster-containers: $NODES nodes in one ring $(( ($(date +%s%N) - started) / 1000000 )) ms after the first started (network $NETWORK; stop: make cluster-containers-stop)"
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  norn) shift; norn_cli "$@" ;;
  kill) pod kill "$(container "${2:?kill I: which node}")" >/dev/null ;;
  start) pod start "$(container "${2:?start I: which node}")" >/dev/null ;;
  leave) leave "${2:?leave I: which node}" ;;
  *) echo "usage: $0 up | down | norn ARGS... | start I | kill I | leave I" >&2; exit 2 ;;
esac
