//! Anti-entropy on a node: background exchanges of each partition with its
//! other replicas, repairs asked for with `norn admin repair`, the time
//! since each partition was last verified, and tombstone removal.
//!
//! A partition is *verified* when, for every N it holds, an exchange with
//! each other primary finished and the last round found nothing to repair.
//! With more than two replicas, a round that repaired anything is followed
//! by another (up to [`ROUNDS_MAX`]), so what the second peer had reaches the
//! first.
//!
//! A tombstone is removed only by the partition's first primary, right
//! after a verification, and only when every primary holds the very same
//! version of it and no node of the ring holds a hint for any primary of the
//! partition (a pending hint could carry an older value that the tombstone
//! no longer shadows once gone). Every primary then removes it if its
//! version is still that one; a primary that missed the removal keeps the
//! tombstone, and exchanges spread it back until the next removal.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use norn_clock::Object;
use norn_merkle::Hash128;
use norn_proto::{
    codec, KeyDigest, KeyRef, PartitionVerified, RepairProgress, Request, Response,
    FRAME_HEADER_BYTES,
};
use norn_ring::{NodeId, Partition, Ring};
use norn_storage::trees::version_digest;
use norn_storage::{DataKey, Storage};

use crate::exchange::{Exchange, ExchangeReport, Step};
use crate::node::{error, Node};
use crate::replica;

/// Most rounds of exchanges per (partition, N) in one verification.
pub const ROUNDS_MAX: usize = 3;
/// Partitions whose roots one [`Request::TreeRoots`] asks for.
const ROOTS_PER_REQUEST: usize = 4096;
/// Most tombstones considered per partition and verification.
const REAP_BATCH: usize = 1024;

/// Paces traffic to a byte rate: each `consume` waits until the bytes
/// before it would have gone out at that rate. Idle time is not saved up,
/// so there is no burst after a pause.
#[derive(Debug)]
pub(crate) struct Throttle {
    bytes_per_sec: u64,
    next_free: tokio::time::Instant,
}

impl Throttle {
    pub(crate) fn new(bytes_per_sec: u64) -> Throttle {
        Throttle {
            bytes_per_sec: bytes_per_sec.max(1),
            next_free: tokio::time::Instant::now(),
        }
    }

    pub(crate) async fn consume(&mut self, bytes: u64) {
        let cost = Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec as f64);
        self.next_free = self.next_free.max(tokio::time::Instant::now()) + cost;
        tokio::time::sleep_until(self.next_free).await;
    }
}

/// Bytes a message takes on the wire.
pub(crate) fn wire_bytes<T: serde::Serialize>(message: &T) -> u64 {
    codec::encode(message).map_or(0, |b| b.len() + FRAME_HEADER_BYTES) as u64
}

#[derive(Debug, Default)]
struct RepairJob {
    progress: RepairProgress,
    started: Option<Instant>,
}

/// Anti-entropy state of a node.
#[derive(Debug, Default)]
pub struct AntiEntropyState {
    verified: Mutex<HashMap<Partition, Instant>>,
    repair: Mutex<RepairJob>,
    /// Round-robin position of background exchanges.
    next: AtomicUsize,
}

/// What verifying one partition found.
#[derive(Debug, Clone, Copy, Default)]
struct Verification {
    report: ExchangeReport,
    bytes: u64,
    failed: u32,
    verified: bool,
}

impl AntiEntropyState {
    fn repair(&self) -> MutexGuard<'_, RepairJob> {
        self.repair.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn verified(&self) -> MutexGuard<'_, HashMap<Partition, Instant>> {
        self.verified.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Node {
    /// The partitions this node is a primary of, for the default N or for
    /// any N it holds data of.
    pub(crate) fn replicated_partitions(&self, ring: &Ring) -> Vec<Partition> {
        let held: BTreeSet<Partition> = self.storage.tree_partitions().into_iter().collect();
        ring.partitions()
            .filter(|&p| !self.replicated_ns(ring, p, held.contains(&p)).is_empty())
            .collect()
    }

    /// The Ns of `partition` this node is a primary for: the default N and
    /// every N it holds a tree of.
    fn replicated_ns(&self, ring: &Ring, partition: Partition, holds_data: bool) -> Vec<u8> {
        let mut ns: BTreeSet<u8> = BTreeSet::from([self.config.ring.default_n]);
        if holds_data {
            ns.extend(self.storage.tree_ns(partition));
        }
        ns.into_iter()
            .filter(|&n| {
                ring.preference_list(partition, usize::from(n))
                    .is_primary(self.id())
            })
            .collect()
    }

    /// Background exchanges: one partition per interval, in turn, unless a
    /// repair is running.
    pub(crate) async fn anti_entropy_loop(self: Arc<Self>) {
        let config = self.config.anti_entropy.clone();
        if !config.enabled {
            return;
        }
        let mut throttle = Throttle::new(config.max_bytes_per_sec);
        loop {
            tokio::time::sleep(Duration::from_millis(config.interval_ms)).await;
            if self.anti_entropy.repair().progress.running {
                continue;
            }
            let Some(ring) = self.ring() else { continue };
            let partitions = self.replicated_partitions(&ring);
            if partitions.is_empty() {
                continue;
            }
            let turn = self.anti_entropy.next.fetch_add(1, Ordering::Relaxed);
            let partition = partitions[turn % partitions.len()];
            self.verify_partition(&ring, partition, &mut throttle).await;
        }
    }

    /// Exchanges `partition` with each of its other primaries, for every N
    /// this node replicates it with; records it verified when all agreed,
    /// then removes the tombstones every replica holds.
    async fn verify_partition(
        &self,
        ring: &Ring,
        partition: Partition,
        throttle: &mut Throttle,
    ) -> Verification {
        let ns = self.replicated_ns(ring, partition, true);
        let mut outcome = Verification {
            verified: !ns.is_empty(),
            ..Verification::default()
        };
        for &n in &ns {
            let list = ring.preference_list(partition, usize::from(n));
            let peers: Vec<NodeId> = list
                .primaries()
                .iter()
                .copied()
                .filter(|&p| p != self.id())
                .collect();
            let mut settled = false;
            for _round in 0..ROUNDS_MAX {
                let mut repaired_any = false;
                let mut round_complete = true;
                for &peer in &peers {
                    if !self.membership().is_up(peer) {
                        tracing::debug!(peer = %peer, partition = %partition, n, "exchange skipped: peer down");
                        outcome.failed += 1;
                        round_complete = false;
                        continue;
                    }
                    match self.exchange(ring, peer, partition, n, throttle).await {
                        Ok((report, bytes)) => {
                            outcome.bytes += bytes;
                            outcome.report.keys_compared += report.keys_compared;
                            outcome.report.keys_different += report.keys_different;
                            outcome.report.keys_repaired += report.keys_repaired;
                            repaired_any |= report.keys_different > 0;
                            round_complete &= !report.truncated;
                        }
                        Err(reason) => {
                            tracing::warn!(peer = %peer, partition = %partition, n, reason, "exchange failed");
                            outcome.failed += 1;
                            round_complete = false;
                        }
                    }
                }
                settled = round_complete && (peers.len() < 2 || !repaired_any);
                if !round_complete || settled {
                    break;
                }
            }
            // Still repairing after the last round (writes keep coming, or
            // an exchange failed): not verified this time.
            outcome.verified &= settled;
        }
        if outcome.verified {
            self.anti_entropy
                .verified()
                .insert(partition, Instant::now());
            if self.config.anti_entropy.reap_tombstones {
                for &n in &ns {
                    self.reap_tombstones(ring, partition, n).await;
                }
            }
        }
        outcome
    }

    /// The partitions among `partitions`, replicated here for the default
    /// N only, whose tree root every other primary reports equal to this
    /// node's: nothing to exchange. Asks each peer for the roots of all
    /// the partitions it shares with this node, [`ROOTS_PER_REQUEST`] at a
    /// time, so a ring of 65,536 partitions is compared in a few dozen
    /// requests rather than one exchange per partition and peer.
    async fn equal_by_roots(
        &self,
        ring: &Ring,
        partitions: &[Partition],
        throttle: &mut Throttle,
    ) -> BTreeSet<Partition> {
        let n = self.config.ring.default_n;
        let mut shared: std::collections::BTreeMap<NodeId, Vec<Partition>> = Default::default();
        let mut candidates = BTreeSet::new();
        for &partition in partitions {
            if self.replicated_ns(ring, partition, true) != [n] {
                continue;
            }
            candidates.insert(partition);
            for &peer in ring.preference_list(partition, usize::from(n)).primaries() {
                if peer != self.id() {
                    shared.entry(peer).or_default().push(partition);
                }
            }
        }
        let timeout = Duration::from_millis(self.config.limits.peer_request_timeout_ms);
        for (peer, partitions) in shared {
            for chunk in partitions.chunks(ROOTS_PER_REQUEST) {
                let request = Request::TreeRoots {
                    n,
                    partitions: chunk.to_vec(),
                };
                let reply = self.call_node(peer, &request, timeout).await;
                let moved = wire_bytes(&request) + reply.as_ref().map_or(0, wire_bytes);
                throttle.consume(moved).await;
                match reply {
                    Some(Response::Hashes(roots)) if roots.len() == chunk.len() => {
                        for (&partition, root) in chunk.iter().zip(roots) {
                            if self.storage.tree_root(partition, n).0 != root {
                                candidates.remove(&partition);
                            }
                        }
                    }
                    _ => {
                        for partition in chunk {
                            candidates.remove(partition);
                        }
                    }
                }
            }
        }
        candidates
    }

    /// Records `partition` verified after [`Node::equal_by_roots`] found it
    /// equal everywhere, then removes its tombstones as a verification by
    /// exchanges would.
    async fn verified_by_roots(&self, ring: &Ring, partition: Partition) -> Verification {
        self.anti_entropy
            .verified()
            .insert(partition, Instant::now());
        if self.config.anti_entropy.reap_tombstones
            && self
                .storage
                .tree_root(partition, self.config.ring.default_n)
                != Hash128::ZERO
        {
            self.reap_tombstones(ring, partition, self.config.ring.default_n)
                .await;
        }
        Verification {
            verified: true,
            ..Verification::default()
        }
    }

    /// One exchange of `(partition, n)` with `peer`. Returns its report and
    /// the bytes it moved.
    async fn exchange(
        &self,
        ring: &Ring,
        peer: NodeId,
        partition: Partition,
        n: u8,
        throttle: &mut Throttle,
    ) -> Result<(ExchangeReport, u64), String> {
        let timeout = Duration::from_millis(self.config.limits.peer_request_timeout_ms);
        let max_keys = self.config.anti_entropy.max_keys_per_exchange as usize;
        let (mut exchange, mut request) =
            Exchange::start(partition, n, self.storage.tree(partition, n), max_keys);
        let mut bytes = 0;
        loop {
            let reply = self
                .call_node(peer, &request, timeout)
                .await
                .ok_or("peer unreachable")?;
            let moved = wire_bytes(&request) + wire_bytes(&reply);
            bytes += moved;
            throttle.consume(moved).await;
            match exchange.on_reply(reply, self.replica(), ring)? {
                Step::Send(next) => request = next,
                Step::Done(report) => {
                    let metrics = &self.metrics;
                    metrics.exchanges.fetch_add(1, Ordering::Relaxed);
                    metrics
                        .exchange_keys_repaired
                        .fetch_add(report.keys_repaired, Ordering::Relaxed);
                    metrics.exchange_bytes.fetch_add(bytes, Ordering::Relaxed);
                    if report.keys_different > 0 {
                        tracing::info!(peer = %peer, partition = %partition, n, different = report.keys_different, repaired = report.keys_repaired, "exchange repaired keys");
                    }
                    return Ok((report, bytes));
                }
            }
        }
    }

    /// `norn admin repair`: starts a repair of `partition` (or of every
    /// partition this node replicates) unless one is running; replies with
    /// the running repair's progress.
    pub(crate) fn admin_repair(self: &Arc<Self>, partition: Option<Partition>) -> Response {
        let Some(ring) = self.ring() else {
            return error(
                norn_proto::ErrorCode::Unavailable,
                "this node holds no ring yet",
            );
        };
        let mut job = self.anti_entropy.repair();
        if !job.progress.running {
            let partitions = match partition {
                None => self.replicated_partitions(&ring),
                Some(p) if usize::from(p.0) >= ring.partition_count() => {
                    return error(
                        norn_proto::ErrorCode::BadRequest,
                        format!(
                            "partition {p} does not exist (the ring has {})",
                            ring.partition_count()
                        ),
                    )
                }
                Some(p) if self.replicated_ns(&ring, p, true).is_empty() => {
                    return error(
                        norn_proto::ErrorCode::BadRequest,
                        format!(
                            "this node is not a primary of partition {p}; ask one of its primaries"
                        ),
                    )
                }
                Some(p) => vec![p],
            };
            *job = RepairJob {
                progress: RepairProgress {
                    running: true,
                    partitions_total: partitions.len() as u32,
                    ..RepairProgress::default()
                },
                started: Some(Instant::now()),
            };
            tracing::info!(partitions = partitions.len(), "repair started");
            let node = self.clone();
            tokio::spawn(tracing::Instrument::instrument(
                async move { node.run_repair(ring, partitions).await },
                self.span.clone(),
            ));
        }
        Response::Repair(Self::snapshot(&job))
    }

    fn snapshot(job: &RepairJob) -> RepairProgress {
        let mut progress = job.progress.clone();
        if progress.running {
            progress.elapsed_ms = job.started.map_or(0, |s| s.elapsed().as_millis() as u64);
        }
        progress
    }

    /// The progress of the current or last repair.
    pub(crate) fn repair_progress(&self) -> Response {
        Response::Repair(Self::snapshot(&self.anti_entropy.repair()))
    }

    async fn run_repair(self: Arc<Self>, ring: Arc<Ring>, partitions: Vec<Partition>) {
        let mut throttle = Throttle::new(self.config.anti_entropy.max_bytes_per_sec);
        let equal = self.equal_by_roots(&ring, &partitions, &mut throttle).await;
        for partition in partitions {
            let outcome = if equal.contains(&partition) {
                self.verified_by_roots(&ring, partition).await
            } else {
                self.verify_partition(&ring, partition, &mut throttle).await
            };
            let mut job = self.anti_entropy.repair();
            let progress = &mut job.progress;
            progress.partitions_done += 1;
            progress.exchanges_failed += outcome.failed;
            progress.keys_compared += outcome.report.keys_compared;
            progress.keys_different += outcome.report.keys_different;
            progress.keys_repaired += outcome.report.keys_repaired;
            progress.bytes += outcome.bytes;
        }
        let mut job = self.anti_entropy.repair();
        job.progress.elapsed_ms = job.started.map_or(0, |s| s.elapsed().as_millis() as u64);
        job.progress.running = false;
        tracing::info!(progress = ?job.progress, "repair finished");
    }

    /// Per partition this node replicates, the time since it was verified.
    pub(crate) fn repair_status(&self) -> Vec<PartitionVerified> {
        let Some(ring) = self.ring() else {
            return Vec::new();
        };
        let verified = self.anti_entropy.verified().clone();
        self.replicated_partitions(&ring)
            .into_iter()
            .map(|partition| PartitionVerified {
                partition,
                ago_ms: verified
                    .get(&partition)
                    .map(|at| at.elapsed().as_millis() as u64),
            })
            .collect()
    }

    /// Seconds since the least recently verified partition was verified
    /// (since start for one never verified), and how many never were.
    pub(crate) fn verification_gauges(&self) -> (u64, u64) {
        let status = self.repair_status();
        let since_start_ms = self.started.elapsed().as_millis() as u64;
        let unverified = status.iter().filter(|s| s.ago_ms.is_none()).count() as u64;
        let oldest_ms = status
            .iter()
            .map(|s| s.ago_ms.unwrap_or(since_start_ms))
            .max()
            .unwrap_or(0);
        (oldest_ms / 1000, unverified)
    }

    /// Removes the tombstones of `(partition, n)` that every primary holds
    /// in the same version, when no node holds a hint for any primary.
    /// Only the partition's first primary does this, with every primary up.
    async fn reap_tombstones(&self, ring: &Ring, partition: Partition, n: u8) {
        let list = ring.preference_list(partition, usize::from(n));
        let primaries = list.primaries().to_vec();
        if primaries.first() != Some(&self.id()) {
            return;
        }
        let handing_off = |p| !self.membership().handing_off(p).is_empty();
        if let Some(reason) =
            replica::reap_blocked(&*self.storage, ring, partition, n, &handing_off)
        {
            tracing::debug!(partition = %partition, reason, "tombstones kept");
            return;
        }
        let candidates = match self.tombstones(partition, n) {
            Ok(found) if !found.is_empty() => found,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(partition = %partition, error = %e, "tombstones not listed");
                return;
            }
        };
        if !self.no_hints_for(ring, &primaries).await {
            tracing::debug!(partition = %partition, "tombstones kept: hints pending or a node unreachable");
            return;
        }
        let timeout = Duration::from_millis(self.config.limits.peer_request_timeout_ms);
        let keys: Vec<KeyRef> = candidates.iter().map(|c| c.key.clone()).collect();
        let mut held_everywhere = vec![true; candidates.len()];
        for &peer in primaries.iter().filter(|&&p| p != self.id()) {
            let request = Request::KeyDigests { keys: keys.clone() };
            let Some(Response::KeyDigests(digests)) = self.call_node(peer, &request, timeout).await
            else {
                return;
            };
            if digests.len() != candidates.len() {
                return;
            }
            for ((held, candidate), theirs) in
                held_everywhere.iter_mut().zip(&candidates).zip(digests)
            {
                *held &= theirs == Some(candidate.digest);
            }
        }
        let items: Vec<KeyDigest> = candidates
            .into_iter()
            .zip(held_everywhere)
            .filter_map(|(candidate, held)| held.then_some(candidate))
            .collect();
        if items.is_empty() {
            return;
        }
        for &peer in primaries.iter().filter(|&&p| p != self.id()) {
            let request = Request::Reap {
                items: items.clone(),
            };
            if !matches!(
                self.call_node(peer, &request, timeout).await,
                Some(Response::StoredMany { .. })
            ) {
                tracing::debug!(peer = %peer, "tombstone removal not confirmed; exchanges will spread the tombstone back");
            }
        }
        let mut reaped = 0;
        for item in &items {
            if let Ok(key) = replica::data_key(ring, &item.key) {
                if replica::reap_if_unchanged(&*self.storage, &key, item.digest) == Ok(true) {
                    reaped += 1;
                }
            }
        }
        self.metrics
            .tombstones_reaped
            .fetch_add(reaped, Ordering::Relaxed);
        tracing::info!(partition = %partition, n, reaped, "tombstones removed");
    }

    /// Up to [`REAP_BATCH`] keys of `(partition, n)` whose every sibling is
    /// a tombstone, with their digests.
    fn tombstones(&self, partition: Partition, n: u8) -> Result<Vec<KeyDigest>, String> {
        let mut found = Vec::new();
        replica::for_each_datum(&*self.storage, partition, |key: &DataKey, datum| {
            if datum.n == n && codec::decode::<Object>(&datum.value).is_ok_and(|o| o.is_deleted()) {
                found.push(KeyDigest {
                    key: KeyRef {
                        bucket: key.bucket.clone(),
                        key: key.key.clone(),
                    },
                    digest: version_digest(&datum.value),
                });
            }
            found.len() < REAP_BATCH
        })?;
        Ok(found)
    }

    /// Whether every node of the ring answered that it holds no hint for
    /// any of `primaries`.
    async fn no_hints_for(&self, ring: &Ring, primaries: &[NodeId]) -> bool {
        let timeout = Duration::from_millis(self.config.limits.peer_request_timeout_ms);
        for &member in ring.members().keys() {
            let queues: Vec<NodeId> = if member == self.id() {
                self.storage.hint_queues().into_keys().collect()
            } else {
                match self.call_node(member, &Request::AdminHints, timeout).await {
                    Some(Response::Hints(queues)) => queues
                        .into_iter()
                        .filter(|(_, hints, _)| *hints > 0)
                        .map(|(target, _, _)| target)
                        .collect(),
                    _ => return false,
                }
            };
            if queues.iter().any(|target| primaries.contains(target)) {
                return false;
            }
        }
        true
    }
}
