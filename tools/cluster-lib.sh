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
