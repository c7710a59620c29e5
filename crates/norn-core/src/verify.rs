//! Anti-entropy verification: background exchanges of each partition with
//! its other replicas, and the partitions `norn admin repair` asks for.
//!
//! A partition is *verified* when, for every N it holds, an exchange with
//! each other primary finished and the last round found nothing to repair.
//! With more than two replicas, a round that repaired anything is followed
//! by another (up to [`ROUNDS_MAX`]), so what the second peer had reaches the
//! first. Right after a verification the partition's tombstones are reaped
//! (see [`crate::reap`]). Exchange traffic is paced by a [`Throttle`]: a
//! byte budget computed from the clock readings the core is given.
//!
//! One verification runs at a time; a repair feeds it its partitions after
//! comparing tree roots ([`crate::repair`]), the background timer feeds it
//! the next partition in turn otherwise.

use std::collections::{BTreeMap, BTreeSet};

use norn_proto::{Request, Response, FRAME_HEADER_BYTES};
use norn_ring::{NodeId, Partition, Ring};

use crate::error::CoreError;
use crate::exchange::{Exchange, ExchangeReport, Step};
use crate::io::{CallFailure, Job, Timer, Token};
use crate::metrics::Counter;
use crate::node::NodeState;
use crate::outbox::Route;
use crate::reap::{ReapJob, ReapSightings, ReapStep};
use crate::repair::{RepairJob, RepairStep};

/// Most rounds of exchanges per (partition, N) in one verification.
pub const ROUNDS_MAX: usize = 3;
/// Partitions a repair takes up per input before it lets others in.
const PARTITIONS_PER_TURN: usize = 256;

/// Paces traffic to a byte rate: each message may go once the bytes
/// before it would have gone out at that rate. Idle time is not saved up,
/// so there is no burst after a pause.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Throttle {
    bytes_per_ms: f64,
    next_free_ms: f64,
}

impl Throttle {
    pub(crate) fn new(bytes_per_sec: u64) -> Throttle {
        Throttle {
            bytes_per_ms: bytes_per_sec.max(1) as f64 / 1000.0,
            next_free_ms: 0.0,
        }
    }

    /// Accounts for `bytes` moved at `now`; returns when the next message
    /// may go (at or before `now`: at once).
    pub(crate) fn consume(&mut self, now: u64, bytes: u64) -> u64 {
        self.next_free_ms = self.next_free_ms.max(now as f64) + bytes as f64 / self.bytes_per_ms;
        self.next_free_ms.ceil() as u64
    }
}

/// Bytes a message takes on the wire.
pub(crate) fn wire_bytes<T: serde::Serialize>(message: &T) -> u64 {
    norn_proto::codec::encoded_len(message).map_or(0, |b| b + FRAME_HEADER_BYTES) as u64
}

/// What verifying one partition found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Verification {
    pub(crate) report: ExchangeReport,
    pub(crate) bytes: u64,
    pub(crate) failed: u32,
    pub(crate) verified: bool,
}

/// What a running verification is doing.
#[derive(Debug)]
enum Phase {
    /// Exchanging the Ns left (the current first) with their primaries.
    Exchanging,
    /// Removing tombstones after the partition was verified.
    Reaping(Vec<ReapJob>),
}

/// Where one running verification is.
#[derive(Debug)]
struct Running {
    partition: Partition,
    phase: Phase,
    ns: Vec<u8>,
    peers: Vec<NodeId>,
    round: usize,
    peer: usize,
    repaired_in_round: bool,
    round_complete: bool,
    exchange: Option<(NodeId, Exchange)>,
    /// The request waiting for the throttle, with its peer.
    held: Option<(NodeId, Request)>,
    /// The request in flight, with the bytes it took.
    in_flight: Option<(Token, u64)>,
    outcome: Verification,
    started_ms: u64,
}

impl Running {
    fn new(
        partition: Partition,
        ns: Vec<u8>,
        phase: Phase,
        verified: bool,
        started_ms: u64,
    ) -> Running {
        Running {
            started_ms,
            partition,
            phase,
            ns,
            peers: Vec::new(),
            round: 0,
            peer: 0,
            repaired_in_round: false,
            round_complete: true,
            exchange: None,
            held: None,
            in_flight: None,
            outcome: Verification {
                verified,
                ..Verification::default()
            },
        }
    }

    /// Sets up the exchanges of the current N.
    fn begin_n(&mut self, me: NodeId, ring: &Ring) {
        let Some(&n) = self.ns.first() else { return };
        self.peers = ring
            .preference_list(self.partition, usize::from(n))
            .primaries()
            .iter()
            .copied()
            .filter(|&p| p != me)
            .collect();
        self.round = 0;
        self.peer = 0;
        self.repaired_in_round = false;
        self.round_complete = true;
    }

    /// A round of the current N is over: another round, or the next N.
    fn end_round(&mut self, me: NodeId, ring: &Ring) {
        self.round += 1;
        let settled = self.round_complete && (self.peers.len() < 2 || !self.repaired_in_round);
        if self.round_complete && !settled && self.round < ROUNDS_MAX {
            self.peer = 0;
            self.repaired_in_round = false;
            return;
        }
        // Still repairing after the last round (writes keep coming, or an
        // exchange failed): not verified this time.
        self.outcome.verified &= settled;
        self.ns.remove(0);
        self.begin_n(me, ring);
    }

    fn exchange_failed(&mut self) {
        self.exchange = None;
        self.outcome.failed += 1;
        self.round_complete = false;
    }
}

/// Anti-entropy state of a node.
#[derive(Debug)]
pub(crate) struct Verifier {
    running: Option<Running>,
    pub(crate) repair: Option<RepairJob>,
    /// The progress of the last repair, once it finished.
    pub(crate) last_repair: Option<norn_proto::RepairProgress>,
    /// When each partition was last verified, in ms of the core's clock.
    pub(crate) verified: BTreeMap<Partition, u64>,
    /// Tombstones found held everywhere, waiting out the reap grace.
    sightings: ReapSightings,
    /// Round-robin position of background verifications.
    turn: usize,
    throttle: Throttle,
}

impl Verifier {
    pub(crate) fn new(bytes_per_sec: u64) -> Verifier {
        Verifier {
            running: None,
            repair: None,
            last_repair: None,
            verified: BTreeMap::new(),
            sightings: ReapSightings::new(),
            turn: 0,
            throttle: Throttle::new(bytes_per_sec),
        }
    }

    /// The background timer: verifies the next partition in turn unless a
    /// verification or repair is running.
    pub(crate) fn on_tick(&mut self, node: &mut NodeState) {
        let config = node.config.anti_entropy.clone();
        if !config.enabled {
            return;
        }
        node.timer_in(config.interval_ms, Timer::AntiEntropy);
        if self.running.is_some() || self.repair.is_some() {
            return;
        }
        let Some(ring) = node.ring() else { return };
        let partitions = replicated_partitions(node, &ring);
        if partitions.is_empty() {
            return;
        }
        let partition = partitions[self.turn % partitions.len()];
        self.turn += 1;
        self.start(node, &ring, partition);
    }

    /// Starts verifying `partition` by exchanges.
    fn start(&mut self, node: &mut NodeState, ring: &Ring, partition: Partition) {
        let ns = replicated_ns(node, ring, partition, true);
        let verified = !ns.is_empty();
        let mut running = Running::new(partition, ns, Phase::Exchanging, verified, node.now);
        running.begin_n(node.id, ring);
        self.running = Some(running);
        self.drive(node);
    }

    /// Records `partition` verified because every replica's tree root
    /// equals this node's (a repair's comparison); its reaping runs next.
    fn verified_by_roots(&mut self, node: &mut NodeState, ring: &Ring, partition: Partition) {
        self.verified.insert(partition, node.now);
        let jobs = reap_jobs(
            node,
            ring,
            &mut self.sightings,
            partition,
            vec![node.config.ring.default_n],
        );
        self.running = Some(Running::new(
            partition,
            Vec::new(),
            Phase::Reaping(jobs),
            true,
            node.now,
        ));
    }

    /// Takes the running verification as far as it goes without waiting.
    fn advance(&mut self, node: &mut NodeState) {
        let Some(ring) = node.ring() else {
            self.running = None;
            return;
        };
        loop {
            let Some(running) = self.running.as_mut() else {
                return;
            };
            if running.in_flight.is_some() || running.held.is_some() {
                return;
            }
            match &mut running.phase {
                Phase::Exchanging => {
                    if running.ns.is_empty() {
                        let jobs = if running.outcome.verified {
                            self.verified.insert(running.partition, node.now);
                            let ns = replicated_ns(node, &ring, running.partition, true);
                            reap_jobs(node, &ring, &mut self.sightings, running.partition, ns)
                        } else {
                            Vec::new()
                        };
                        running.phase = Phase::Reaping(jobs);
                        continue;
                    }
                    if running.peer == running.peers.len() {
                        running.end_round(node.id, &ring);
                        continue;
                    }
                    let peer = running.peers[running.peer];
                    running.peer += 1;
                    if !node.is_up(peer) {
                        tracing::debug!(peer = %peer, partition = %running.partition, "exchange skipped: peer down");
                        running.exchange_failed();
                        continue;
                    }
                    let n = running.ns[0];
                    let max_keys = node.config.anti_entropy.max_keys_per_exchange as usize;
                    let tree = node.storage.tree(running.partition, n);
                    let (exchange, request) = Exchange::start(running.partition, n, tree, max_keys);
                    running.exchange = Some((peer, exchange));
                    self.send(node, peer, request);
                }
                Phase::Reaping(jobs) => {
                    let Some(job) = jobs.first_mut() else {
                        return self.finish(node);
                    };
                    let sent = match job.next(node) {
                        ReapStep::Send(peer, request) => node
                            .send_to(Route::Verification, peer, request)
                            .map(|token| running.in_flight = Some((token, 0)))
                            .is_some(),
                        ReapStep::Done => false,
                    };
                    if !sent {
                        let job = jobs.remove(0);
                        self.sightings.insert(job.key(), job.seen);
                    }
                }
            }
        }
    }

    /// The verification is over; a repair that runs counts it.
    fn finish(&mut self, node: &mut NodeState) {
        let Some(running) = self.running.take() else {
            return;
        };
        if running.outcome.report.keys_repaired > 0 {
            let busy_ms = node.now.saturating_sub(running.started_ms);
            node.history.repaired(running.outcome.bytes, busy_ms);
        }
        if let Some(repair) = self.repair.as_mut() {
            repair.partition_done(running.outcome);
        }
    }

    /// Starts a repair of `partitions` (see [`crate::repair`]).
    pub(crate) fn start_repair(&mut self, node: &mut NodeState, repair: RepairJob) {
        self.repair = Some(repair);
        self.drive(node);
    }

    /// Takes the running verification, and then the repair, as far as
    /// they go without waiting; at most [`PARTITIONS_PER_TURN`] partitions
    /// per input, so a long repair never holds up the node's requests (a
    /// zero-delay timer continues it).
    fn drive(&mut self, node: &mut NodeState) {
        let Some(ring) = node.ring() else { return };
        let mut budget = PARTITIONS_PER_TURN;
        loop {
            if self.running.is_some() {
                self.advance(node);
                if self.running.is_some() {
                    return;
                }
            }
            let Some(repair) = self.repair.as_mut() else {
                return;
            };
            if repair.waiting.is_some() {
                return;
            }
            if budget == 0 {
                node.timer_in(0, Timer::Throttle(Job::Verification));
                return;
            }
            budget -= 1;
            match repair.next(node) {
                RepairStep::Send(peer, request) => {
                    match node.send_to(Route::Verification, peer, request) {
                        Some(token) => {
                            repair.waiting = Some(token);
                            return;
                        }
                        None => repair.roots_failed(),
                    }
                }
                RepairStep::VerifiedByRoots(partition) => {
                    self.verified_by_roots(node, &ring, partition)
                }
                RepairStep::Verify(partition) => {
                    let ns = replicated_ns(node, &ring, partition, true);
                    let verified = !ns.is_empty();
                    let mut running =
                        Running::new(partition, ns, Phase::Exchanging, verified, node.now);
                    running.begin_n(node.id, &ring);
                    self.running = Some(running);
                }
                RepairStep::Finished => {
                    repair.finish(node.now);
                    self.last_repair = Some(repair.progress.clone());
                    self.repair = None;
                    return;
                }
            }
        }
    }

    /// Sends an exchange request, or holds it until the throttle allows.
    fn send(&mut self, node: &mut NodeState, peer: NodeId, request: Request) {
        let Some(running) = self.running.as_mut() else {
            return;
        };
        let free_at = self.throttle.consume(node.now, 0);
        if free_at > node.now {
            running.held = Some((peer, request));
            node.out.timer(free_at, Timer::Throttle(Job::Verification));
            return;
        }
        let bytes = wire_bytes(&request);
        match node.send_to(Route::Verification, peer, request) {
            Some(token) => running.in_flight = Some((token, bytes)),
            None => running.exchange_failed(),
        }
    }

    /// The throttle allows the held request to go (or a long repair goes
    /// on).
    pub(crate) fn on_throttle(&mut self, node: &mut NodeState) {
        if let Some((peer, request)) = self.running.as_mut().and_then(|r| r.held.take()) {
            self.send(node, peer, request);
        }
        self.drive(node);
    }

    /// The answer to a verification's, a reap's or a repair's request.
    pub(crate) fn on_reply(
        &mut self,
        node: &mut NodeState,
        token: Token,
        reply: Result<Response, CallFailure>,
    ) {
        if let Some(repair) = self.repair.as_mut() {
            if repair.waiting == Some(token) {
                repair.waiting = None;
                repair.on_roots(node, reply);
                return self.drive(node);
            }
        }
        let Some(running) = self.running.as_mut() else {
            return;
        };
        match running.in_flight {
            Some((expected, sent)) if expected == token => {
                running.in_flight = None;
                if let Phase::Reaping(jobs) = &mut running.phase {
                    if let Some(job) = jobs.first_mut() {
                        job.on_reply(node, reply);
                    }
                } else {
                    self.on_exchange_reply(node, sent, reply);
                }
                self.drive(node);
            }
            _ => {}
        }
    }

    fn on_exchange_reply(
        &mut self,
        node: &mut NodeState,
        sent: u64,
        reply: Result<Response, CallFailure>,
    ) {
        let Some(running) = self.running.as_mut() else {
            return;
        };
        let Some((peer, mut exchange)) = running.exchange.take() else {
            return;
        };
        let step = match (reply, node.ring()) {
            (Ok(response), Some(ring)) => {
                let moved = sent + wire_bytes(&response);
                running.outcome.bytes += moved;
                node.metrics.count(Counter::ExchangeBytes, moved);
                self.throttle.consume(node.now, moved);
                exchange.on_reply(response, node.replica(), &ring)
            }
            (Ok(_), None) => Err(CoreError::exchange("the ring is gone")),
            (Err(failure), _) => Err(CoreError::exchange(format!(
                "peer unreachable: {failure:?}"
            ))),
        };
        match step {
            Ok(Step::Send(request)) => {
                running.exchange = Some((peer, exchange));
                self.send(node, peer, request);
            }
            Ok(Step::Done(report)) => {
                node.metrics.count(Counter::Exchanges, 1);
                node.metrics
                    .count(Counter::ExchangeKeysRepaired, report.keys_repaired);
                if report.keys_different > 0 {
                    tracing::info!(peer = %peer, partition = %running.partition, different = report.keys_different, repaired = report.keys_repaired, "exchange repaired keys");
                }
                let total = &mut running.outcome.report;
                total.keys_compared += report.keys_compared;
                total.keys_different += report.keys_different;
                total.keys_repaired += report.keys_repaired;
                running.repaired_in_round |= report.keys_different > 0;
                running.round_complete &= !report.truncated;
            }
            Err(reason) => {
                tracing::warn!(peer = %peer, partition = %running.partition, %reason, "exchange failed");
                running.exchange_failed();
            }
        }
    }

    /// Seconds since the least recently verified partition this node
    /// replicates was verified (since start for one never verified), and
    /// how many never were.
    pub(crate) fn gauges(&self, node: &NodeState) -> (u64, u64) {
        let (oldest_ms, unverified) = self.oldest_verified_ms(node);
        (oldest_ms / 1000, unverified)
    }

    /// The age of the least recently verified partition this node
    /// replicates, once every one was verified since it started.
    pub(crate) fn sweep_ms(&self, node: &NodeState) -> Option<u64> {
        match self.oldest_verified_ms(node) {
            (oldest_ms, 0) if oldest_ms > 0 => Some(oldest_ms),
            _ => None,
        }
    }

    /// Ms since the least recently verified partition was verified (since
    /// start, if never), and how many were never verified.
    fn oldest_verified_ms(&self, node: &NodeState) -> (u64, u64) {
        let Some(ring) = node.ring() else {
            return (0, 0);
        };
        let partitions = replicated_partitions(node, &ring);
        let unverified = partitions
            .iter()
            .filter(|p| !self.verified.contains_key(p))
            .count() as u64;
        let oldest_ms = partitions
            .iter()
            .map(|p| {
                self.verified
                    .get(p)
                    .map_or(node.uptime_ms(), |at| node.now.saturating_sub(*at))
            })
            .max()
            .unwrap_or(0);
        (oldest_ms, unverified)
    }
}

/// The tombstone removals that follow a verification of `partition`,
/// each with what earlier ones of its `(partition, n)` found.
fn reap_jobs(
    node: &NodeState,
    ring: &Ring,
    sightings: &mut ReapSightings,
    partition: Partition,
    ns: Vec<u8>,
) -> Vec<ReapJob> {
    if !node.config.anti_entropy.reap_tombstones {
        return Vec::new();
    }
    ns.into_iter()
        .filter_map(|n| {
            let seen = sightings.remove(&(partition, n)).unwrap_or_default();
            ReapJob::start(node, ring, partition, n, seen)
        })
        .collect()
}

/// The partitions this node is a primary of, for the default N or for any
/// N it holds data of.
pub(crate) fn replicated_partitions(node: &NodeState, ring: &Ring) -> Vec<Partition> {
    let held: BTreeSet<Partition> = node.storage.tree_partitions().into_iter().collect();
    ring.partitions()
        .filter(|&p| !replicated_ns(node, ring, p, held.contains(&p)).is_empty())
        .collect()
}

/// The Ns of `partition` this node is a primary for: the default N and
/// every N it holds a tree of.
pub(crate) fn replicated_ns(
    node: &NodeState,
    ring: &Ring,
    partition: Partition,
    holds_data: bool,
) -> Vec<u8> {
    let mut ns: BTreeSet<u8> = BTreeSet::from([node.config.ring.default_n]);
    if holds_data {
        ns.extend(node.storage.tree_ns(partition));
    }
    ns.into_iter()
        .filter(|&n| {
            ring.preference_list(partition, usize::from(n))
                .is_primary(node.id)
        })
        .collect()
}
