"""Prints the table of `make bench` and `make bench-etcd`.

Arguments: CLK_TCK, then one `LABEL|JSON|TICKS|RSS` entry per row: the
row's label, norn-bench's --json line, the servers' CPU ticks over the run
and their resident sizes in MiB.
"""
import json
import sys

hz = int(sys.argv[1])
width = max([14] + [len(entry.split("|")[0]) + 2 for entry in sys.argv[2:]])
print(f"{'workload':<{width}}{'ops/s':>9}{'p50 us':>9}{'p95 us':>9}{'p99 us':>9}{'p99.9 us':>10}"
      f"{'errors':>8}{'node CPU us/op':>16}{'bench CPU us/op':>17}  node RSS MiB")
for entry in sys.argv[2:]:
    label, raw, ticks, rss = entry.split("|")
    r = json.loads(raw)
    cpu_us = int(ticks) * 1_000_000 / hz / max(r["operations"], 1)
    print(f"{label:<{width}}{r['ops_per_s']:>9.0f}{r['p50_us']:>9}{r['p95_us']:>9}{r['p99_us']:>9}"
          f"{r['p999_us']:>10}{sum(r['errors'].values()):>8}{cpu_us:>16.1f}"
          f"{r['bench_cpu_us_per_op']:>17.1f}  {rss}")
