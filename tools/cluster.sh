#!/usr/bin/env bash
# `make cluster`: builds release binaries, makes a CA and certificates, and
# starts NODES (default 3) nodes on 127.0.0.1 in ./cluster, each with its own
# free port and data directory; forms the ring; waits until every node sees
# every other up. If a cluster is already up, says so and changes nothing.
set -euo pipefail

NODES=${NODES:-3}
# PROFILE=debug runs the debug binaries (no release build; for development).
# NODE_CONFIG is TOML appended to every node's config (say, "[anti_entropy]
# enabled = false"). BUILD=0 uses the binaries as built; CLUSTER_DIR puts
# the cluster elsewhere than ./cluster (tests do both).
PROFILE=${PROFILE:-release}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=${CLUSTER_DIR:-"$ROOT/cluster"}
BIN="$ROOT/target/$PROFILE"
NORN="$BIN/norn"

[[ "$NODES" =~ ^[0-9]+$ ]] && (( NODES >= 1 && NODES <= 16 )) || { echo "NODES must be 1..16, got $NODES" >&2; exit 2; }

# shellcheck source=tools/cluster-lib.sh
source "$ROOT/tools/cluster-lib.sh"

if [ -n "$(live_pids)" ]; then
  echo "a cluster is already running in $DIR (pids: $(live_pids | tr '\n' ' ')); nothing changed."
  echo "stop it with: make cluster-stop"
  exit 0
fi

case "${BUILD:-1}:$PROFILE" in
  0:release|0:debug) ;;
  *:release) echo "building release binaries (the first build compiles RocksDB: 15-25 minutes on 2 cores)"
           cargo build --release --quiet --workspace --bins ;;
  *:debug)   cargo build --quiet --workspace --bins ;;
  *)       echo "PROFILE must be release or debug" >&2; exit 2 ;;
esac

rm -rf "$DIR"
mkdir -p "$DIR/certs"
started=()
cleanup_on_failure() {
  echo "cluster start failed; stopping the nodes it started" >&2
  for pid in "${started[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${started[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -f "$DIR/pids"
}
trap cleanup_on_failure ERR

"$NORN" certs init --dir "$DIR/certs" --cluster local >/dev/null
for i in $(seq 1 "$NODES"); do "$NORN" certs node "n$i" --dir "$DIR/certs" >/dev/null; done
"$NORN" certs client admin --role admin --dir "$DIR/certs" >/dev/null
"$NORN" certs client data --role data --dir "$DIR/certs" >/dev/null

# The nodes share this machine's cores rather than each taking all of them.
THREADS=$(( $(nproc) / NODES )); [ "$THREADS" -ge 1 ] || THREADS=1

write_config() { # index seed
  local i=$1
  local seed=$2
  local zone=$(( (i - 1) % 3 + 1 ))
  cat > "$DIR/n$i.toml" <<TOML
[node]
name = "n$i"
zone = "zone-$zone"
listen = "127.0.0.1:0"
seeds = [$seed]
data_dir = "n$i"
threads = $THREADS

[http]
listen = "127.0.0.1:0"

[tls]
ca_cert = "certs/ca.pem"
cert = "certs/n$i.pem"
key = "certs/n$i.key"
TOML
  if [ -n "${NODE_CONFIG:-}" ]; then printf '\n%s\n' "$NODE_CONFIG" >> "$DIR/n$i.toml"; fi
}

wait_for_file() { # path
  for _ in $(seq 1 100); do [ -s "$1" ] && return 0; sleep 0.1; done
  echo "timed out waiting for $1" >&2; return 1
}

start_node() { # index; pins the node's config to the ports it got (QUIC and HTTP), so a restart keeps them
  local i=$1
  "$BIN/nornd" --config "$DIR/n$i.toml" > "$DIR/n$i.log" 2>&1 &
  local pid=$!
  started+=("$pid")
  echo "$pid" >> "$DIR/pids"
  wait_for_file "$DIR/n$i/address"
  wait_for_file "$DIR/n$i/http_address"
  local quic http
  quic=$(tr -d '\n' < "$DIR/n$i/address")
  http=$(tr -d '\n' < "$DIR/n$i/http_address")
  sed -i -e "/^\[node\]/,/^\[/ s/^listen = .*/listen = \"$quic\"/" \
    -e "/^\[http\]/,/^\[/ s/^listen = .*/listen = \"$http\"/" "$DIR/n$i.toml"
}

write_config 1 ""
start_node 1
SEED=$(tr -d '\n' < "$DIR/n1/address")
for i in $(seq 2 "$NODES"); do write_config "$i" "\"$SEED\""; start_node "$i"; done

addresses=()
for i in $(seq 1 "$NODES"); do addresses+=("\"$(tr -d '\n' < "$DIR/n$i/address")\""); done
cat > "$DIR/client.toml" <<TOML
# Written by make cluster; norn finds it from the repository root.
nodes = [$(IFS=,; echo "${addresses[*]}")]

# Data requests (get, put, delete) present the data certificate...
[tls]
ca_cert = "certs/ca.pem"
cert = "certs/data.pem"
key = "certs/data.key"

# ...and \`norn admin\` the admin one.
[admin_tls]
cert = "certs/admin.pem"
key = "certs/admin.key"
TOML

export NORN_CONFIG="$DIR/client.toml"
for i in $(seq 1 "$NODES"); do
  "$NORN" --node "$(tr -d '\n' < "$DIR/n$i/address")" admin join "$SEED" >/dev/null
done

json_field() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

echo "waiting for the staged joins to reach n1"
for _ in $(seq 1 100); do
  staged=$("$NORN" --node "$SEED" admin plan --json | json_field "len(d['staged'])")
  [ "$staged" -ge "$NODES" ] && break
  sleep 0.2
done
"$NORN" --node "$SEED" admin commit

echo "waiting until every node holds the ring and sees every other up"
for _ in $(seq 1 150); do
  ready=yes
  for i in $(seq 1 "$NODES"); do
    addr=$(tr -d '\n' < "$DIR/n$i/address")
    up=$("$NORN" --node "$addr" admin members --json | json_field "sum(1 for m in d if m['up'])")
    version=$("$NORN" --node "$addr" admin ring --json | json_field "d['version'] if d else 0")
    if [ "$up" -ne "$NODES" ] || [ "$version" -lt 1 ]; then ready=no; break; fi
  done
  [ "$ready" = yes ] && break
  sleep 0.2
done
[ "$ready" = yes ] || { echo "the cluster did not converge; see $DIR/n*.log" >&2; false; }
trap - ERR

echo
echo "norn cluster of $NODES nodes is up (data, logs and certificates in cluster/):"
for i in $(seq 1 "$NODES"); do
  echo "  n$i  quic $(tr -d '\n' < "$DIR/n$i/address")  http http://$(tr -d '\n' < "$DIR/n$i/http_address")  pid $(sed -n "${i}p" "$DIR/pids")  log cluster/n$i.log"
done
echo
echo "reach it from the repository root (norn finds cluster/client.toml):"
echo "  target/$PROFILE/norn admin members"
echo "  target/$PROFILE/norn admin ring"
echo "  target/$PROFILE/norn put demo hello world && target/$PROFILE/norn get demo hello"
echo "stop it with: make cluster-stop"
