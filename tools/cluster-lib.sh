# Shared by the cluster scripts; source it after setting DIR (the cluster
# folder). Prints the pids in $DIR/pids that are still nornd processes
# (checked through /proc, so a recycled pid is never taken for a node).
live_pids() {
  [ -f "$DIR/pids" ] || return 0
  while read -r pid; do
    if [ -n "$pid" ] && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q nornd; then echo "$pid"; fi
  done < "$DIR/pids"
}

# CPU ticks (user + system) of the pids in PIDS, summed.
pids_ticks() {
  local total=0
  for pid in "${PIDS[@]}"; do
    read -r -a stat < <(sed 's/.*) //' "/proc/$pid/stat")
    total=$(( total + stat[11] + stat[12] ))
  done
  echo "$total"
}
# Resident size in MiB of each pid in PIDS, space-separated.
pids_rss_mib() {
  for pid in "${PIDS[@]}"; do awk '/VmRSS/ { printf "%d ", $2 / 1024 }' "/proc/$pid/status"; done
}

# For the bench scripts (set ROOT, DIR, BENCH and KEYS first): starts `make
# cluster` when none is up, builds the release binaries, sets PIDS to the
# nodes' pids and NORN_CONFIG to the cluster's client config, and preloads
# KEYS keys.
bench_on_local_cluster() {
  if [ -z "$(live_pids)" ]; then
    echo "no cluster is up: starting one with make cluster"
    make -C "$ROOT" --no-print-directory cluster
  fi
  cargo build --release --quiet --workspace --bins
  mapfile -t PIDS < <(live_pids)
  export NORN_CONFIG="$DIR/client.toml"
  echo "preloading $KEYS keys"
  "$BENCH" --workload c --keys "$KEYS" --preload --ops 1 --json > /dev/null
}

# Runs $BENCH with the given arguments and --json, and appends a row for
# bench-table.py to the array `results`: LABEL, the JSON line, the CPU
# ticks of PIDS over the run and their resident sizes.
bench_row() { # label norn-bench-arguments...
  local label=$1 before after json
  shift
  before=$(pids_ticks)
  json=$("$BENCH" "$@" --json)
  after=$(pids_ticks)
  results+=("$label|$json|$(( after - before ))|$(pids_rss_mib)")
}
