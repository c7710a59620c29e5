"""Staleness on a running `make cluster`, measured over HTTP beside
`norn admin pbs --json` (`make pbs-check-cluster`).

Each probe writes a fresh key at W through one node's HTTP API, waits t ms
after the answer, and reads it at R through a random node; the share of
reads that return the write is printed beside the prediction from the
nodes' own latencies. Loopback round trips are a fraction of a
millisecond, so past t = 1 ms nearly every cell is 100%. The HTTP client
adds its own time between the write's answer and the read (printed), so
the measured side reads slightly later than t.

Arguments: PROBES (per cell) and the path of the norn CLI.
"""
import http.client
import json
import os
import random
import subprocess
import sys
import time

probes = int(sys.argv[1])
norn = sys.argv[2]
addresses = []
for name in sorted(os.listdir("cluster")):
    path = os.path.join("cluster", name, "http_address")
    if os.path.isfile(path):
        addresses.append(open(path).read().strip())
if len(addresses) < 3:
    sys.exit("pbs-check-cluster: needs a 3-node `make cluster` running")
connections = [http.client.HTTPConnection(a, timeout=10) for a in addresses]


def request(method, node, path, body=None):
    connection = connections[node]
    connection.request(method, path, body=body)
    response = connection.getresponse()
    return response.status, response.read()


rng = random.Random(1)
run = f"{time.time_ns():x}"
cells = [(r, w, t) for (r, w) in [(1, 1), (1, 2), (2, 1), (2, 2)] for t in [0, 1, 5]]
measured = {}
gaps = []
for r, w, t in cells:
    fresh = 0
    for probe in range(probes):
        path = f"/buckets/pbs-{run}/keys/{r}{w}{t}-{probe}"
        value = f"v{probe}".encode()
        status, _ = request("PUT", rng.randrange(3), f"{path}?n=3&w={w}", value)
        if status != 204:
            sys.exit(f"pbs-check-cluster: a write answered {status}")
        answered = time.perf_counter()
        if t:
            time.sleep(t / 1000)
        reader = rng.randrange(3)
        gaps.append(time.perf_counter() - answered - t / 1000)
        status, body = request("GET", reader, f"{path}?n=3&r={r}")
        fresh += status == 200 and body == value
    measured[(r, w, t)] = fresh / probes

predicted = json.loads(subprocess.run([norn, "admin", "pbs", "--json"], check=True,
                                      capture_output=True, text=True).stdout)
table = {(p["r"], p["w"]): {f["t_ms"]: f["probability"] for f in p["fresh"]}
         for p in predicted["predictions"]}
gaps.sort()
print(f"3 nodes on loopback, {probes} probes per cell; the client's own gap before a read: "
      f"median {1e3 * gaps[len(gaps) // 2]:.2f} ms")
print(f"{'R W':<6}{'t ms':>6}{'measured':>11}{'predicted':>11}")
for r, w, t in cells:
    p = 1.0 if r + w > 3 else table[(r, w)][float(t)]
    print(f"{r} {w}   {t:>6}{100 * measured[(r, w, t)]:>10.2f}%{100 * p:>10.2f}%")
