# Thin wrappers over cargo and tools/. Every target installs what it needs.
SHELL := /bin/bash
CARGO ?= cargo

NODES ?= 3
PROFILE ?= release

.PHONY: deps build test lint fmt bench bench-etcd bench-balance bench-storage bench-latency pbs-check pbs-check-cluster availability-check bench-net bench-repair bench-ae sim faults fuzz cluster cluster-stop image cluster-containers cluster-containers-stop manifests

## Installs missing system packages, then builds RocksDB's library once
## for every profile (tools/rocksdb-lib.sh; .cargo/config.toml links it).
deps:
	@tools/install-deps.sh
	@tools/rocksdb-lib.sh

build: deps
	$(CARGO) build --workspace --all-targets

## Builds and runs every test of the workspace. Every target is built
## first (the multi-process tests start target/debug/nornd), with the same
## features as the tests, so RocksDB is compiled once.
test: deps
	$(CARGO) build --workspace --all-targets
	$(CARGO) test --workspace --no-fail-fast

## rustfmt check and clippy with warnings as errors; the fuzz targets
## (outside the workspace) must still build.
lint: deps
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p norn-bench --features etcd --all-targets -- -D warnings
	$(CARGO) check --manifest-path fuzz/Cargo.toml

fmt:
	$(CARGO) fmt --all

## Put and get throughput of norn-storage beside raw RocksDB.
bench-storage: deps
	$(CARGO) bench --workspace --bench storage

## What nornd's latency capture (for `norn admin pbs`) costs per sample.
bench-latency: deps
	$(CARGO) bench -p norn-core --bench latency

## Fuzzes every decoder reachable from the network and the core's request
## handler, FUZZ_SECONDS (60) each; FUZZ_TARGETS picks some. Installs
## cargo-fuzz when missing. Not part of CI.
FUZZ_TARGETS ?= frame_decoder ring_decode member_decode context_header core_requests
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	@for target in $(FUZZ_TARGETS); do \
	  echo "== $$target"; \
	  (cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $$target -- -max_total_time=$${FUZZ_SECONDS:-60}) || exit 1; \
	done

## Starts NODES (default 3) local nodes; see README.
cluster: deps
	@NODES=$(NODES) PROFILE=$(PROFILE) tools/cluster.sh

cluster-stop:
	@tools/cluster-stop.sh

## The container image localhost/norn:dev (NORN_IMAGE) with podman, from
## release binaries built here (installs podman when missing); see
## deploy/container/ and README "Running on many machines".
image: deps
	@tools/image.sh

## NODES (5) norn containers on a podman network of their own, each with
## its own volume and DNS name, finding each other through DNS, in one
## ring (builds the image first); cluster-containers-stop removes them,
## their volumes and the network.
cluster-containers: deps
	@NODES=$(or $(CONTAINER_NODES),5) tools/cluster-containers.sh up

cluster-containers-stop:
	@tools/cluster-containers.sh down

## Renders deploy/kubernetes and validates it against Kubernetes' schemas
## offline (kubernetes-validate, installed by deps); prints the objects as
## JSON. K8S_VERSION (1.31) picks the schemas.
manifests: deps
	@python3 tools/k8s-render.py --validate $(or $(K8S_VERSION),1.31)

## YCSB A, B, C and A with DW=2 at the standard settings against the local
## cluster (starts one if none is up); DURATION=60 KEYS=100000 by default.
bench: deps
	@tools/bench.sh

## The client's three replica-choice policies with one node slowed
## (SIGSTOP/SIGCONT duty cycle): C at R=1 and A, DURATION=20 each.
bench-balance: deps
	@tools/bench-balance.sh

## The same workloads against a 3-member etcd on loopback (installs
## Debian's etcd-server when missing), in the same table.
bench-etcd: deps
	@tools/bench-etcd.sh

## Staleness measured on a quiet simulated cluster beside the PBS
## prediction (N=3; (R,W) in (1,1), (1,2), (2,1), (2,2); every t); fails
## past 2 points. PROBES=5000 per cell, DELAY_MS=5 (mean network delay).
PROBES ?= 5000
DELAY_MS ?= 5
pbs-check: deps
	$(CARGO) run --release -p norn-sim --bin norn-pbs-check -- --probes $(PROBES) --mean-delay-ms $(DELAY_MS)

## The same on a running `make cluster`, over HTTP, beside `norn admin
## pbs` (PROBES per cell; loopback is fast: most cells are 100%).
pbs-check-cluster:
	python3 tools/pbs-cluster-check.py $(PROBES) target/release/norn

## Quorum availability measured on a simulated 5-node cluster whose nodes
## are each up with probability UP (0.7), beside norn-model's, for sloppy
## and strict reads and writes of N=3; fails past 3 points. TRIALS=2000.
TRIALS ?= 2000
UP ?= 0.7
availability-check: deps
	$(CARGO) run --release -p norn-sim --bin norn-availability-check -- --trials $(TRIALS) --up $(UP)

## Deterministic simulation over many seeds (make test runs 200); a
## failing seed prints the command that replays it. SEEDS=10000 FROM=0.
SEEDS ?= 1000
FROM ?= 0
sim: deps
	$(CARGO) run -p norn-sim --release -- --seeds $(SEEDS) --from $(FROM)

## Real faults in network namespaces (root): per scenario, acknowledged
## writes, lost, never read, most siblings, time to converge after healing.
faults: deps
	$(CARGO) build --workspace --bins
	$(CARGO) run -p norn-tests --bin norn-faults

## Anti-entropy exchanges between two RocksDB replicas in one process:
## repair of 100,000 keys with 1% different, and identical trees.
bench-repair: deps
	$(CARGO) bench -p norn-node --bench exchange

## YCSB-A with anti-entropy off, then on, each on a fresh local cluster;
## DURATION=60 KEYS=100000 by default. Needs no cluster running.
bench-ae: deps
	@tools/bench-ae.sh

## Request/response throughput and CPU of norn-net on loopback.
bench-net: deps
	$(CARGO) bench --workspace --bench rpc
