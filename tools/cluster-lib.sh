# Shared by the cluster scripts; source it after setting DIR (the cluster
# folder). Prints the pids in $DIR/pids that are still nornd processes
# (checked through /proc, so a recycled pid is never taken for a node).
live_pids() {
  [ -f "$DIR/pids" ] || return 0
  while read -r pid; do
    if [ -n "$pid" ] && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q nornd; then echo "$pid"; fi
  done < "$DIR/pids"
}
