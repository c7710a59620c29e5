//! Ownership transfers: data a node holds for a `(partition, N)` it is not
//! a primary of (after a ring change, or left by a fallback) goes to that
//! partition's primaries, and is dropped here key by key once every primary
//! stored it.
//!
//! A transfer walks the partition in key order in batches of
//! `transfers.batch_keys`. For each batch it asks every primary for its
//! digests, sends the objects a primary lacks or holds in another version
//! (the primary merges them, DVV sync, and fsyncs before it replies), then
//! removes each key here whose version did not change meanwhile. After each
//! batch the position and counters go to the `meta` column, so a transfer
//! interrupted by a crash resumes after its last stored batch. A pass that
//! reached the end starts over from the beginning, for keys skipped because
//! they changed; the transfer is done when a pass finds nothing left.
//!
//! While a node holds such data it advertises the partitions in gossip, and
//! coordinators send it the writes of those partitions too, so reads and
//! writes keep their N during the move.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use norn_proto::{codec, KeyObject, KeyRef, Request, Response, TransferState, TransferView};
use norn_ring::{NodeId, Partition, Ring};
use norn_storage::trees::version_digest;
use norn_storage::{DataKey, Datum, Storage};
use serde::{Deserialize, Serialize};

use crate::anti_entropy::{wire_bytes, Throttle};
use crate::node::Node;
use crate::replica;

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

/// Outgoing transfers of a node, for `norn admin transfers`.
#[derive(Debug, Default)]
pub struct TransferTable {
    views: Mutex<BTreeMap<(Partition, u8), TransferView>>,
}

impl TransferTable {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<(Partition, u8), TransferView>> {
        self.views.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, partition: Partition, n: u8, f: impl FnOnce(&mut TransferView)) {
        if let Some(view) = self.lock().get_mut(&(partition, n)) {
            f(view);
        }
    }
}

/// Why a transfer stopped before it was done.
enum Paused {
    Waiting(String),
    Failed(String),
}

impl Node {
    /// Looks for data held for others every `transfers.interval_ms` and
    /// moves it.
    pub(crate) async fn transfer_loop(self: Arc<Self>) {
        let interval = Duration::from_millis(self.config.transfers.interval_ms);
        let mut throttle = Throttle::new(self.config.transfers.max_bytes_per_sec);
        loop {
            tokio::time::sleep(interval).await;
            let Some(ring) = self.ring() else { continue };
            if self.newest_ring_seen.load(Ordering::Relaxed) > ring.version() {
                tracing::debug!("a peer holds a newer ring; transfers wait until it arrives");
                continue;
            }
            let pending = self.pending_transfers(&ring);
            self.advertise_handoffs(&pending);
            for (partition, n, targets) in pending {
                self.run_transfer(partition, n, targets, ring.version(), &mut throttle)
                    .await;
            }
            self.advertise_handoffs(&self.pending_transfers(&ring));
        }
    }

    /// Every `(partition, N)` this node holds data of without being among
    /// its primaries, with those primaries.
    fn pending_transfers(&self, ring: &Ring) -> Vec<(Partition, u8, Vec<NodeId>)> {
        let mut pending = Vec::new();
        for partition in self.storage.tree_partitions() {
            for n in self.storage.tree_ns(partition) {
                let list = ring.preference_list(partition, usize::from(n));
                if !list.is_primary(self.id()) && !list.primaries().is_empty() {
                    pending.push((partition, n, list.primaries().to_vec()));
                }
            }
        }
        pending
    }

    fn advertise_handoffs(&self, pending: &[(Partition, u8, Vec<NodeId>)]) {
        let partitions: BTreeSet<Partition> = pending.iter().map(|(p, _, _)| *p).collect();
        self.membership()
            .set_handoffs(partitions.into_iter().collect());
    }

    /// The outgoing transfers, for `norn admin transfers`.
    pub(crate) fn transfer_views(&self) -> Vec<TransferView> {
        self.transfers.lock().values().cloned().collect()
    }

    fn load_checkpoint(&self, partition: Partition, n: u8) -> Option<Checkpoint> {
        let bytes = self
            .storage
            .get_meta(&checkpoint_name(partition, n))
            .ok()??;
        codec::decode(&bytes).ok()
    }

    /// Moves `(partition, n)` to `targets` until done, a target is down,
    /// or a request fails; the next round retries.
    async fn run_transfer(
        &self,
        partition: Partition,
        n: u8,
        targets: Vec<NodeId>,
        ring_version: u64,
        throttle: &mut Throttle,
    ) {
        let checkpoint = self.load_checkpoint(partition, n);
        let keys_left = self.count_keys(partition, n);
        {
            let mut views = self.transfers.lock();
            let view = views.entry((partition, n)).or_insert_with(|| TransferView {
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
        }
        if let Some(down) = targets.iter().find(|&&t| !self.membership().is_up(t)) {
            let reason = format!("target {down} is down");
            self.transfers
                .update(partition, n, |v| v.state = TransferState::Waiting(reason));
            return;
        }
        tracing::info!(partition = %partition, n, keys_left, resumed = checkpoint.is_some(), "transfer running");
        if checkpoint.is_none() {
            self.save_checkpoint(partition, n, &Checkpoint::default());
        }
        let state = match self
            .move_partition(
                partition,
                n,
                &targets,
                ring_version,
                checkpoint.unwrap_or_default(),
                throttle,
            )
            .await
        {
            Ok(()) => {
                if let Err(e) = self.storage.delete_meta(&checkpoint_name(partition, n)) {
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
        let keys_left = self.count_keys(partition, n);
        self.transfers.update(partition, n, |v| {
            v.state = state;
            v.keys_left = keys_left;
        });
    }

    fn count_keys(&self, partition: Partition, n: u8) -> u64 {
        let mut count = 0;
        let _ = replica::for_each_datum(&*self.storage, partition, |_, datum| {
            count += u64::from(datum.n == n);
            true
        });
        count
    }

    /// Passes over `(partition, n)` from the checkpoint until a pass from
    /// the beginning finds nothing left. Stops when the ring changes (the
    /// next round plans again) and after [`PASSES_MAX`] passes (keys keep
    /// changing; the next round goes on).
    async fn move_partition(
        &self,
        partition: Partition,
        n: u8,
        targets: &[NodeId],
        ring_version: u64,
        mut checkpoint: Checkpoint,
        throttle: &mut Throttle,
    ) -> Result<(), Paused> {
        let batch_keys = self.config.transfers.batch_keys as usize;
        let mut after = DataKey::decode(&checkpoint.after);
        let mut found_in_pass = after.is_some();
        let mut passes = 0;
        loop {
            if self.ring().map(|r| r.version()) != Some(ring_version) {
                return Err(Paused::Waiting("the ring changed; planning again".into()));
            }
            let page = self
                .storage
                .scan_partition(partition, after.as_ref(), batch_keys)
                .map_err(|e| Paused::Failed(e.to_string()))?;
            let matching: Vec<(DataKey, Datum)> =
                page.items.into_iter().filter(|(_, d)| d.n == n).collect();
            let found = matching.len();
            let batch = within_budget(matching, replica::BATCH_BYTES_MAX);
            // A batch the byte budget cut short resumes after its last key.
            let resume_after = (batch.len() < found)
                .then(|| batch.last().map(|(key, _)| key.clone()))
                .flatten();
            if let Some((last, _)) = batch.last() {
                found_in_pass = true;
                let sent = self
                    .send_batch(n, ring_version, targets, &batch, throttle)
                    .await?;
                checkpoint.after = last.encode();
                checkpoint.keys_sent += batch.len() as u64;
                checkpoint.bytes_sent += sent;
                self.save_checkpoint(partition, n, &checkpoint);
                self.transfers.update(partition, n, |v| {
                    v.keys_sent = checkpoint.keys_sent;
                    v.bytes_sent = checkpoint.bytes_sent;
                    v.keys_left = v.keys_left.saturating_sub(batch.len() as u64);
                });
            }
            after = match resume_after.or(page.next) {
                Some(next) => Some(next),
                None if found_in_pass && passes < PASSES_MAX => {
                    passes += 1;
                    found_in_pass = false;
                    None
                }
                None if found_in_pass => {
                    return Err(Paused::Waiting(
                        "keys kept changing during the transfer; continuing next round".into(),
                    ))
                }
                None => return Ok(()),
            };
        }
    }

    fn save_checkpoint(&self, partition: Partition, n: u8, checkpoint: &Checkpoint) {
        let stored = codec::encode(checkpoint)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                self.storage
                    .put_meta(&checkpoint_name(partition, n), &bytes)
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = stored {
            tracing::warn!(partition = %partition, error = %e, "transfer checkpoint not stored");
        }
    }

    /// Sends one batch to every target (only what each lacks), then drops
    /// the keys here that did not change. Returns the bytes sent.
    async fn send_batch(
        &self,
        n: u8,
        ring_version: u64,
        targets: &[NodeId],
        batch: &[(DataKey, Datum)],
        throttle: &mut Throttle,
    ) -> Result<u64, Paused> {
        let timeout = Duration::from_millis(self.config.limits.peer_request_timeout_ms);
        let keys: Vec<KeyRef> = batch
            .iter()
            .map(|(key, _)| KeyRef {
                bucket: key.bucket.clone(),
                key: key.key.clone(),
            })
            .collect();
        let digests: Vec<u64> = batch
            .iter()
            .map(|(_, d)| version_digest(&d.value))
            .collect();
        let mut bytes = 0;
        for &target in targets {
            let offer = Request::KeyDigests { keys: keys.clone() };
            let theirs = match self.call_node(target, &offer, timeout).await {
                Some(Response::KeyDigests(theirs)) if theirs.len() == keys.len() => theirs,
                _ => return Err(Paused::Waiting(format!("target {target} did not answer"))),
            };
            bytes += wire_bytes(&offer);
            let mut items = Vec::new();
            for ((key, (data_key, _)), (mine, theirs)) in
                keys.iter().zip(batch).zip(digests.iter().zip(theirs))
            {
                if theirs == Some(*mine) {
                    continue;
                }
                let Ok(Some(object)) = self.local_get(data_key) else {
                    // Invalid (now removed) or gone: nothing to hand over.
                    continue;
                };
                if !self.replica().sendable(data_key, &object) {
                    continue;
                }
                items.push(KeyObject {
                    key: key.clone(),
                    object,
                });
            }
            if items.is_empty() {
                continue;
            }
            let request = Request::ReplicaPutMany {
                n,
                ring_version,
                items,
            };
            let sent = wire_bytes(&request);
            match self.call_node(target, &request, timeout).await {
                Some(Response::StoredMany { .. }) => {}
                _ => return Err(Paused::Waiting(format!("target {target} did not store"))),
            }
            bytes += sent;
            throttle.consume(sent).await;
        }
        for ((key, _), digest) in batch.iter().zip(&digests) {
            if let Err(e) = replica::remove_if_unchanged(&*self.storage, key, *digest) {
                return Err(Paused::Failed(e));
            }
        }
        self.metrics
            .transfer_keys
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.metrics
            .transfer_bytes
            .fetch_add(bytes, Ordering::Relaxed);
        Ok(bytes)
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
