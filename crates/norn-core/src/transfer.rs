//! Ownership transfers: data a node holds for a `(partition, N)` it is not
//! a primary of (after a ring change, or left by a fallback) goes to that
//! partition's primaries, and is dropped here key by key once every primary
//! stored it.
//!
//! A transfer walks the partition in key order in batches of
//! `transfers.batch_keys` (and at most [`crate::replica::BATCH_BYTES_MAX`]
//! bytes). For each batch it asks every primary for its digests, sends the
//! objects a primary lacks or holds in another version (the primary merges
//! them, DVV sync, and fsyncs before it replies), then removes each key here
//! whose version did not change meanwhile. After each batch the position and
//! counters go to the `meta` column, so a transfer interrupted by a crash
//! resumes after its last stored batch. A pass that reached the end starts
//! over from the beginning, for keys skipped because they changed; the
//! transfer is done when a pass finds nothing left. One transfer runs at a
//! time; its traffic is paced by a throttle.
//!
//! While a node holds such data it advertises the partitions in gossip, and
//! coordinators send it the writes of those partitions too, so reads and
//! writes keep their N during the move.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use norn_proto::{codec, KeyObject, KeyRef, Request, Response, TransferState, TransferView};
use norn_ring::{NodeId, Partition, Ring};
use norn_storage::trees::version_digest;
use norn_storage::{DataKey, Datum};
use serde::{Deserialize, Serialize};

use crate::io::{CallFailure, Job, Timer, Token};
use crate::metrics::Counter;
use crate::node::NodeState;
use crate::outbox::Route;
use crate::replica;
use crate::verify::{wire_bytes, Throttle};

/// Passes over a partition in one round of a transfer.
const PASSES_MAX: usize = 3;

/// Where an interrupted transfer resumes, as stored in `meta`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Checkpoint {
    /// The encoded data key of the last key of the last stored batch.
    #[serde(with = "serde_bytes")]
    after: Vec<u8>,
    keys_sent: u64,
    bytes_sent: u64,
}

fn checkpoint_name(partition: Partition, n: u8) -> String {
    format!("transfer/{}/{n}", partition.0)
}

/// What a running transfer waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Target `target`'s digests of the batch.
    Offer { target: usize },
    /// Target `target` storing what it lacked.
    Store { target: usize },
}

/// One running transfer.
#[derive(Debug)]
struct Running {
    partition: Partition,
    n: u8,
    targets: Vec<NodeId>,
    ring_version: u64,
    checkpoint: Checkpoint,
    after: Option<DataKey>,
    found_in_pass: bool,
    passes: usize,
    batch: Vec<(DataKey, Datum)>,
    /// Where the next batch starts.
    next: Option<DataKey>,
    stage: Stage,
    batch_bytes: u64,
    /// When this run of the transfer started, and the bytes it stored.
    started_ms: u64,
    bytes_stored: u64,
    in_flight: Option<Token>,
    held: Option<(NodeId, Request)>,
}

/// Why a transfer stopped before it was done.
#[derive(Debug)]
enum Paused {
    Waiting(String),
    Failed(String),
}

/// Outgoing transfers of a node.
#[derive(Debug)]
pub(crate) struct Transfers {
    running: Option<Running>,
    queue: VecDeque<(Partition, u8, Vec<NodeId>)>,
    /// For `norn admin transfers`.
    pub(crate) views: BTreeMap<(Partition, u8), TransferView>,
    /// Transfers whose last run stopped on this node's own error.
    failed: BTreeSet<(Partition, u8)>,
    throttle: Throttle,
}

impl Transfers {
    pub(crate) fn new(bytes_per_sec: u64) -> Transfers {
        Transfers {
            running: None,
            queue: VecDeque::new(),
            views: BTreeMap::new(),
            failed: BTreeSet::new(),
            throttle: Throttle::new(bytes_per_sec),
        }
    }

    /// Transfers whose last run stopped on this node's own error.
    pub(crate) fn failed_count(&self) -> u32 {
        self.failed.len() as u32
    }

    /// The transfer timer: plans a round of transfers unless one runs.
    pub(crate) fn on_tick(&mut self, node: &mut NodeState) {
        node.timer_in(node.config.transfers.interval_ms, Timer::Transfers);
        if self.running.is_some() || !self.queue.is_empty() {
            return;
        }
        let Some(ring) = node.ring() else { return };
        if node.newest_ring_seen > ring.version() {
            tracing::debug!("a peer holds a newer ring; transfers wait until it arrives");
            return;
        }
        let pending = pending_transfers(node, &ring);
        advertise_handoffs(node, &pending);
        self.failed
            .retain(|&(p, n)| pending.iter().any(|(q, m, _)| (*q, *m) == (p, n)));
        self.queue = pending.into();
        self.start_next(node);
    }

    /// Starts the next queued transfer; advertises what is left once the
    /// round is over.
    fn start_next(&mut self, node: &mut NodeState) {
        while let Some((partition, n, targets)) = self.queue.pop_front() {
            if self.start(node, partition, n, targets) {
                return;
            }
        }
        if let Some(ring) = node.ring() {
            let pending = pending_transfers(node, &ring);
            advertise_handoffs(node, &pending);
        }
    }

    /// Starts moving `(partition, n)` to `targets`; false if it cannot run
    /// now (a target is down, no ring).
    fn start(
        &mut self,
        node: &mut NodeState,
        partition: Partition,
        n: u8,
        targets: Vec<NodeId>,
    ) -> bool {
        let Some(ring) = node.ring() else {
            return false;
        };
        let checkpoint = load_checkpoint(node, partition, n);
        let keys_left = count_keys(node, partition, n);
        let view = self
            .views
            .entry((partition, n))
            .or_insert_with(|| TransferView {
                partition,
                n,
                targets: targets.clone(),
                keys_sent: 0,
                bytes_sent: 0,
                keys_left,
                resumed: checkpoint.is_some(),
                state: TransferState::Running,
            });
        view.targets = targets.clone();
        view.keys_left = keys_left;
        view.state = TransferState::Running;
        if let Some(c) = &checkpoint {
            view.keys_sent = view.keys_sent.max(c.keys_sent);
            view.bytes_sent = view.bytes_sent.max(c.bytes_sent);
        }
        if let Some(down) = targets.iter().find(|&&t| !node.membership.is_up(t)) {
            view.state = TransferState::Waiting(format!("target {down} is down"));
            return false;
        }
        tracing::info!(partition = %partition, n, keys_left, resumed = checkpoint.is_some(), "transfer running");
        if checkpoint.is_none() {
            save_checkpoint(node, partition, n, &Checkpoint::default());
        }
        let checkpoint = checkpoint.unwrap_or_default();
        let after = DataKey::decode(&checkpoint.after);
        self.running = Some(Running {
            partition,
            n,
            targets,
            ring_version: ring.version(),
            found_in_pass: after.is_some(),
            after,
            checkpoint,
            passes: 0,
            batch: Vec::new(),
            next: None,
            stage: Stage::Offer { target: 0 },
            batch_bytes: 0,
            started_ms: node.now,
            bytes_stored: 0,
            in_flight: None,
            held: None,
        });
        self.next_batch(node);
        true
    }

    /// Reads and offers the next batch, or ends the transfer.
    fn next_batch(&mut self, node: &mut NodeState) {
        let step = match self.running.as_mut() {
            Some(running) => running.next_batch(node),
            None => return,
        };
        match step {
            Ok(true) => self.offer(node),
            Ok(false) => self.end(node, Ok(())),
            Err(paused) => self.end(node, Err(paused)),
        }
    }

    /// Sends the batch's keys to the current target for its digests.
    fn offer(&mut self, node: &mut NodeState) {
        let Some(running) = self.running.as_mut() else {
            return;
        };
        let Stage::Offer { target } = running.stage else {
            return;
        };
        if target == running.targets.len() {
            return self.batch_stored(node);
        }
        let keys = running.batch.iter().map(|(key, _)| key_ref(key)).collect();
        let request = Request::KeyDigests {
            keys,
            admission: node.handover_admission(),
        };
        let to = running.targets[target];
        self.send(node, to, request);
    }

    /// Sends a request, or holds it until the throttle allows.
    fn send(&mut self, node: &mut NodeState, to: NodeId, request: Request) {
        let Some(running) = self.running.as_mut() else {
            return;
        };
        let free_at = self.throttle.consume(node.now, 0);
        if free_at > node.now {
            running.held = Some((to, request));
            node.out.timer(free_at, Timer::Throttle(Job::Transfer));
            return;
        }
        let bytes = wire_bytes(&request);
        match node.send_to(Route::Transfer, to, request) {
            Some(token) => {
                running.in_flight = Some(token);
                running.batch_bytes += bytes;
                self.throttle.consume(node.now, bytes);
            }
            None => self.end(
                node,
                Err(Paused::Waiting(format!("target {to} is unknown"))),
            ),
        }
    }

    pub(crate) fn on_throttle(&mut self, node: &mut NodeState) {
        if let Some((to, request)) = self.running.as_mut().and_then(|r| r.held.take()) {
            self.send(node, to, request);
        }
    }

    pub(crate) fn on_reply(
        &mut self,
        node: &mut NodeState,
        token: Token,
        reply: Result<Response, CallFailure>,
    ) {
        let Some(running) = self.running.as_mut() else {
            return;
        };
        if running.in_flight != Some(token) {
            return;
        }
        running.in_flight = None;
        match (running.stage, reply) {
            (Stage::Offer { target }, Ok(Response::KeyDigests(theirs)))
                if theirs.len() == running.batch.len() =>
            {
                let items = running.lacking(node, &theirs);
                if items.is_empty() {
                    running.stage = Stage::Offer { target: target + 1 };
                    return self.offer(node);
                }
                running.stage = Stage::Store { target };
                let request = Request::ReplicaPutMany {
                    n: running.n,
                    ring_version: running.ring_version,
                    items,
                    admission: node.handover_admission(),
                };
                let to = running.targets[target];
                self.send(node, to, request);
            }
            (Stage::Store { target }, Ok(Response::StoredMany { .. })) => {
                running.stage = Stage::Offer { target: target + 1 };
                self.offer(node);
            }
            (Stage::Offer { target } | Stage::Store { target }, _) => {
                let reason = format!("target {} did not answer", running.targets[target]);
                self.end(node, Err(Paused::Waiting(reason)));
            }
        }
    }

    /// Every target stored the batch: drop it here, checkpoint, go on.
    fn batch_stored(&mut self, node: &mut NodeState) {
        let Some(running) = self.running.as_mut() else {
            return;
        };
        for (key, datum) in &running.batch {
            let digest = version_digest(&datum.value);
            if let Err(e) = replica::remove_if_unchanged(&*node.storage, key, digest) {
                return self.end(node, Err(Paused::Failed(e.to_string())));
            }
        }
        let keys = running.batch.len() as u64;
        running.checkpoint.keys_sent += keys;
        running.checkpoint.bytes_sent += running.batch_bytes;
        running.bytes_stored += running.batch_bytes;
        if let Some((last, _)) = running.batch.last() {
            running.checkpoint.after = last.encode();
        }
        save_checkpoint(node, running.partition, running.n, &running.checkpoint);
        node.metrics.count(Counter::TransferKeys, keys);
        node.metrics
            .count(Counter::TransferBytes, running.batch_bytes);
        if let Some(view) = self.views.get_mut(&(running.partition, running.n)) {
            view.keys_sent = running.checkpoint.keys_sent;
            view.bytes_sent = running.checkpoint.bytes_sent;
            view.keys_left = view.keys_left.saturating_sub(keys);
        }
        let next = running.next.take();
        match running.advance_to(next) {
            Ok(Position::Continue) => self.next_batch(node),
            Ok(Position::Done) => self.end(node, Ok(())),
            Err(paused) => self.end(node, Err(paused)),
        }
    }

    /// Ends the running transfer and starts the next queued one.
    fn end(&mut self, node: &mut NodeState, result: Result<(), Paused>) {
        let Some(running) = self.running.take() else {
            return;
        };
        if running.bytes_stored > 0 {
            let busy_ms = node.now.saturating_sub(running.started_ms);
            node.history.repaired(running.bytes_stored, busy_ms);
        }
        let (partition, n) = (running.partition, running.n);
        if matches!(result, Err(Paused::Failed(_))) {
            self.failed.insert((partition, n));
        } else {
            self.failed.remove(&(partition, n));
        }
        let state = match result {
            Ok(()) => {
                if let Err(e) = node.storage.delete_meta(&checkpoint_name(partition, n)) {
                    tracing::warn!(error = %e, "transfer checkpoint not removed");
                }
                tracing::info!(partition = %partition, n, "transfer done");
                TransferState::Done
            }
            Err(Paused::Waiting(reason)) => TransferState::Waiting(reason),
            Err(Paused::Failed(reason)) => {
                tracing::warn!(partition = %partition, n, reason, "transfer paused");
                TransferState::Waiting(reason)
            }
        };
        let keys_left = count_keys(node, partition, n);
        if let Some(view) = self.views.get_mut(&(partition, n)) {
            view.state = state;
            view.keys_left = keys_left;
        }
        self.start_next(node);
    }
}

/// Whether a transfer goes on after moving past a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    Continue,
    Done,
}

impl Running {
    /// Reads the next batch: `Ok(true)` there is one to offer, `Ok(false)`
    /// the transfer is done.
    fn next_batch(&mut self, node: &NodeState) -> Result<bool, Paused> {
        loop {
            if node.ring().map(|r| r.version()) != Some(self.ring_version) {
                return Err(Paused::Waiting("the ring changed; planning again".into()));
            }
            let batch_keys = node.config.transfers.batch_keys as usize;
            let page = node
                .storage
                .scan_partition(self.partition, self.after.as_ref(), batch_keys)
                .map_err(|e| Paused::Failed(e.to_string()))?;
            let matching: Vec<(DataKey, Datum)> = page
                .items
                .into_iter()
                .filter(|(_, d)| d.n == self.n)
                .collect();
            let found = matching.len();
            let batch = within_budget(matching, replica::BATCH_BYTES_MAX);
            // A batch the byte budget cut short resumes after its last key.
            let resume_after = (batch.len() < found)
                .then(|| batch.last().map(|(key, _)| key.clone()))
                .flatten();
            let next = resume_after.or(page.next);
            if !batch.is_empty() {
                self.found_in_pass = true;
                self.batch = batch;
                self.next = next;
                self.stage = Stage::Offer { target: 0 };
                self.batch_bytes = 0;
                return Ok(true);
            }
            if self.advance_to(next)? == Position::Done {
                return Ok(false);
            }
        }
    }

    /// Moves to `next`; past the end, another pass starts while the last
    /// found keys (up to [`PASSES_MAX`]), else the transfer is done.
    fn advance_to(&mut self, next: Option<DataKey>) -> Result<Position, Paused> {
        match next {
            Some(next) => self.after = Some(next),
            None if self.found_in_pass && self.passes < PASSES_MAX => {
                self.passes += 1;
                self.found_in_pass = false;
                self.after = None;
            }
            None if self.found_in_pass => {
                return Err(Paused::Waiting(
                    "keys kept changing during the transfer; continuing next round".into(),
                ))
            }
            None => return Ok(Position::Done),
        }
        Ok(Position::Continue)
    }

    /// The objects of the batch a target lacks or holds in another version.
    fn lacking(&self, node: &NodeState, theirs: &[Option<u64>]) -> Vec<KeyObject> {
        let mut items = Vec::new();
        for ((key, datum), theirs) in self.batch.iter().zip(theirs) {
            if *theirs == Some(version_digest(&datum.value)) {
                continue;
            }
            let Ok(Some(object)) = node.replica().read(key) else {
                // Invalid (now removed) or gone: nothing to hand over.
                continue;
            };
            if node.replica().sendable(key, &object) {
                items.push(KeyObject {
                    key: key_ref(key),
                    object,
                });
            }
        }
        items
    }
}

fn key_ref(key: &DataKey) -> KeyRef {
    KeyRef {
        bucket: key.bucket.clone(),
        key: key.key.clone(),
    }
}

/// The first items of `items` whose stored bytes stay within `budget`, at
/// least one: a transfer batch always fits a frame.
fn within_budget(items: Vec<(DataKey, Datum)>, budget: usize) -> Vec<(DataKey, Datum)> {
    let mut bytes = 0;
    let mut taken = Vec::new();
    for (key, datum) in items {
        let size = datum.value.len() + key.bucket.len() + key.key.len();
        if !taken.is_empty() && bytes + size > budget {
            break;
        }
        bytes += size;
        taken.push((key, datum));
    }
    taken
}

/// Every `(partition, N)` this node holds data of without being among
/// its primaries, with those primaries.
pub(crate) fn pending_transfers(
    node: &NodeState,
    ring: &Ring,
) -> Vec<(Partition, u8, Vec<NodeId>)> {
    let mut pending = Vec::new();
    for partition in node.storage.tree_partitions() {
        for n in node.storage.tree_ns(partition) {
            let list = ring.preference_list(partition, usize::from(n));
            if !list.is_primary(node.id) && !list.primaries().is_empty() {
                pending.push((partition, n, list.primaries().to_vec()));
            }
        }
    }
    pending
}

fn advertise_handoffs(node: &mut NodeState, pending: &[(Partition, u8, Vec<NodeId>)]) {
    let partitions: BTreeSet<Partition> = pending.iter().map(|(p, _, _)| *p).collect();
    node.membership
        .set_handoffs(partitions.into_iter().collect());
}

fn count_keys(node: &NodeState, partition: Partition, n: u8) -> u64 {
    let mut count = 0;
    let _ = replica::for_each_datum(&*node.storage, partition, |_, datum| {
        count += u64::from(datum.n == n);
        true
    });
    count
}

fn load_checkpoint(node: &NodeState, partition: Partition, n: u8) -> Option<Checkpoint> {
    let bytes = node
        .storage
        .get_meta(&checkpoint_name(partition, n))
        .ok()??;
    codec::decode(&bytes).ok()
}

fn save_checkpoint(node: &NodeState, partition: Partition, n: u8, checkpoint: &Checkpoint) {
    let stored = codec::encode(checkpoint)
        .map_err(|e| e.to_string())
        .and_then(|bytes| {
            node.storage
                .put_meta(&checkpoint_name(partition, n), &bytes)
                .map_err(|e| e.to_string())
        });
    if let Err(e) = stored {
        tracing::warn!(partition = %partition, error = %e, "transfer checkpoint not stored");
    }
}
