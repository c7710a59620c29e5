//! What a replica does with its own storage, with no I/O beyond it: merge
//! an incoming object, list digests, answer the requests of anti-entropy
//! exchanges and transfers. The node, the exchange state machine and tests
//! that drive exchanges between two stores all use these.

use std::collections::{BTreeMap, BTreeSet};

use norn_clock::{Context, Lifetime, Object, Sibling};
use norn_merkle::{key_segment, NodeIndex};
use norn_proto::{codec, ErrorCode, ErrorReply, KeyDigest, KeyObject, KeyRef, Request, Response};
use norn_ring::{NodeId, Partition, Ring};
use norn_storage::storage::NewHint;
use norn_storage::trees::version_digest;
use norn_storage::{Change, DataKey, Datum, Durability, Storage};

/// What a fallback's hint says: which key to hand over, with its N.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HintPayload {
    #[serde(with = "serde_bytes")]
    pub bucket: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    pub n: u8,
}

/// The hint a fallback stores with a write it takes for `target`.
fn hint(target: NodeId, bucket: &[u8], key: &[u8], n: u8) -> Result<NewHint, String> {
    let payload = codec::encode(&HintPayload {
        bucket: bucket.to_vec(),
        key: key.to_vec(),
        n,
    })
    .map_err(|e| e.to_string())?;
    Ok(NewHint { target, payload })
}

/// The request that merges `object` into a replica's copy of `key`, with
/// a hint for `hint_for` when the replica stands in for that primary.
pub fn put_request(
    key: &DataKey,
    n: u8,
    object: &Object,
    hint_for: Option<NodeId>,
    sync: bool,
) -> Request {
    Request::ReplicaPut {
        bucket: key.bucket.clone(),
        key: key.key.clone(),
        n,
        object: object.clone(),
        hint_for,
        sync,
    }
}

/// Bounds on what a replica stores and sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectLimits {
    /// Siblings past which a coordinated write is refused.
    pub siblings_max: usize,
    /// Encoded bytes past which a coordinated write is refused.
    pub object_bytes_max: usize,
    /// Encoded bytes past which an object is not sent: it would not fit a
    /// frame. Above `object_bytes_max` (twice it by default), so that
    /// objects that merging concurrent writes made larger still travel.
    pub wire_object_bytes_max: usize,
    /// Bytes of objects or digests one reply or batch carries at most (at
    /// least one item whatever its size, below `object_bytes_max`).
    pub batch_bytes_max: usize,
}

/// The default batch budget: a quarter of the default frame.
pub const BATCH_BYTES_MAX: usize = 4 << 20;

impl ObjectLimits {
    /// Limits for tests and tools: 100 siblings, 16 MiB objects, 32 MiB
    /// on the wire.
    pub fn for_test() -> ObjectLimits {
        ObjectLimits {
            siblings_max: 100,
            object_bytes_max: 16 << 20,
            wire_object_bytes_max: 32 << 20,
            batch_bytes_max: BATCH_BYTES_MAX,
        }
    }
}

/// Why a coordinator's own write failed; nothing was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalWriteError {
    /// The write would leave this many siblings, past the limit.
    TooManySiblings(usize),
    /// The write would leave an object of `bytes`, past `max`.
    TooLarge {
        bytes: usize,
        max: usize,
    },
    Failed(String),
}

/// A write this node coordinates, as its own replica takes it.
#[derive(Debug, Clone)]
pub struct CoordinatedWrite<'a> {
    pub key: &'a DataKey,
    pub n: u8,
    /// What the client read: the write supersedes exactly this.
    pub context: &'a Context,
    pub sibling: Sibling,
    /// The unreachable primary this node stands in for, as a fallback; a
    /// hint for it is stored with the write.
    pub hint_for: Option<NodeId>,
    pub durability: Durability,
}

/// This node's replica: its storage, the run whose dots it issues, and
/// the bounds it keeps.
#[derive(Clone, Copy)]
pub struct LocalReplica<'a> {
    pub storage: &'a dyn Storage,
    pub lifetime: &'a Lifetime,
    pub limits: ObjectLimits,
}

impl std::fmt::Debug for LocalReplica<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalReplica")
            .field("lifetime", &self.lifetime.id())
            .field("limits", &self.limits)
            .finish()
    }
}

/// Decodes a stored object. One that does not decode, or breaks the
/// clock's invariants (checked on decode), is an error: never served.
fn decode_stored(key: &DataKey, datum: &Datum) -> Result<Object, String> {
    codec::decode::<Object>(&datum.value)
        .map_err(|e| format!("stored object of {key} is invalid: {e}"))
}

impl LocalReplica<'_> {
    /// The coordinator's own write: the sibling gets the next dot of the
    /// actor [`Lifetime::actor_for`] picks for this copy, superseding what
    /// the context covers, in one storage update (with the hint, if any).
    /// Refused past the sibling or object limit, with nothing written.
    /// Returns the object now stored.
    pub fn coordinate_write(&self, write: CoordinatedWrite<'_>) -> Result<Object, LocalWriteError> {
        let hint = write
            .hint_for
            .map(|target| hint(target, &write.key.bucket, &write.key.key, write.n))
            .transpose()
            .map_err(LocalWriteError::Failed)?;
        let mut outcome = Err(LocalWriteError::Failed("not written".into()));
        let stored = self
            .storage
            .update(write.key, write.durability, hint, &mut |current| {
                let (local, n) = match current {
                    None => (None, write.n),
                    Some(datum) => match decode_stored(write.key, &datum) {
                        Ok(local) => (Some(local), datum.n.max(write.n)),
                        Err(reason) => {
                            tracing::warn!(reason, "overwriting an invalid record");
                            (None, datum.n.max(write.n))
                        }
                    },
                };
                let actor = self.lifetime.actor_for(local.as_ref(), write.context);
                let updated =
                    local
                        .unwrap_or_default()
                        .update(write.context, actor, write.sibling.clone());
                outcome = self.check_limits(&updated).map(|value| (updated, value));
                match &outcome {
                    Ok((_, value)) => Change::Put(Datum {
                        n,
                        value: value.clone(),
                    }),
                    Err(_) => Change::Keep,
                }
            })
            .map(|_| ());
        stored.map_err(|e| LocalWriteError::Failed(e.to_string()))?;
        outcome.map(|(object, _)| object)
    }

    /// The encoded object, if it keeps the sibling and object limits.
    fn check_limits(&self, object: &Object) -> Result<Vec<u8>, LocalWriteError> {
        if object.value_count() > self.limits.siblings_max {
            return Err(LocalWriteError::TooManySiblings(object.value_count()));
        }
        let value = codec::encode(object).map_err(|e| LocalWriteError::Failed(e.to_string()))?;
        if value.len() > self.limits.object_bytes_max {
            return Err(LocalWriteError::TooLarge {
                bytes: value.len(),
                max: self.limits.object_bytes_max,
            });
        }
        Ok(value)
    }

    /// The replica side of [`Request::ReplicaPut`]: merges `object` into
    /// this replica's copy of `key`, queuing a hint for `hint_for` in the
    /// same storage update when it stands in for that primary.
    pub fn store_replica_write(
        &self,
        key: &DataKey,
        n: u8,
        object: &Object,
        hint_for: Option<NodeId>,
        durability: Durability,
    ) -> Result<Object, String> {
        let hint = hint_for
            .map(|target| hint(target, &key.bucket, &key.key, n))
            .transpose()?;
        self.merge(key, n, object, durability, hint)
    }

    /// Merges `incoming` into this replica's copy (DVV sync) in one storage
    /// update, queuing `hint` with it; the object keeps the larger N. A
    /// merge that shows this copy lost part of this run's own history of
    /// the key records a fresh actor for the next write
    /// ([`Lifetime::after_merge`]). A local record that fails its checksum
    /// or is invalid is replaced by `incoming`. Returns the merged object.
    ///
    /// Merges are never refused for size: refusing would keep the replicas
    /// apart for good. Concurrent writes through different coordinators can
    /// so pass the object limit; such an object still travels up to the
    /// frame's size, and past that is kept but not sent (see
    /// [`LocalReplica::sendable`]) until a write over its context resolves it.
    pub fn merge(
        &self,
        key: &DataKey,
        n: u8,
        incoming: &Object,
        durability: Durability,
        hint: Option<NewHint>,
    ) -> Result<Object, String> {
        let mut outcome = Err(format!("{key} was not merged"));
        self.storage
            .update(key, durability, hint, &mut |current| {
                let (local, n) = match current {
                    None => (None, n),
                    Some(datum) => match decode_stored(key, &datum) {
                        Ok(local) => (Some(local), datum.n.max(n)),
                        Err(reason) => {
                            tracing::warn!(reason, "replacing an invalid record");
                            (None, datum.n.max(n))
                        }
                    },
                };
                let merged = match &local {
                    Some(local) => local.sync(incoming),
                    None => incoming.clone(),
                };
                let merged = self.lifetime.after_merge(local.as_ref(), incoming, merged);
                match codec::encode(&merged) {
                    Ok(value) => {
                        outcome = Ok(merged);
                        Change::Put(Datum { n, value })
                    }
                    Err(e) => {
                        outcome = Err(format!("merged object of {key} does not encode: {e}"));
                        Change::Keep
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        outcome
    }

    /// This replica's copy of `key`; an error for a record that fails its
    /// checksum or is not a valid object: such a record is never served.
    /// An invalid record (its checksum holds: it was written so) is
    /// removed, so that its trees stop claiming it and the next exchange
    /// brings the key back from a replica.
    pub fn read(&self, key: &DataKey) -> Result<Option<Object>, String> {
        read_object(self.storage, key)
    }

    /// Whether `object` may go on the wire: it fits a frame.
    pub fn sendable(&self, key: &DataKey, object: &Object) -> bool {
        let bytes = codec::encoded_len(object).unwrap_or(usize::MAX);
        let fits = bytes <= self.limits.wire_object_bytes_max;
        if !fits {
            tracing::warn!(key = %key, bytes, max = self.limits.wire_object_bytes_max, "object too large for a frame not sent; a write over its context resolves its siblings");
        }
        fits
    }
}

/// Keys read from storage at a time when listing a partition.
const SCAN_PAGE: usize = 1024;

/// Where `key` lives on a ring: its storage key.
pub fn data_key(ring: &Ring, key: &KeyRef) -> Result<DataKey, String> {
    DataKey::new(
        ring.partition_of_key(&key.bucket, &key.key),
        &key.bucket,
        &key.key,
    )
    .map_err(|e| e.to_string())
}

/// This replica's copy of `key` (see [`LocalReplica::read`]).
pub fn read_object(storage: &dyn Storage, key: &DataKey) -> Result<Option<Object>, String> {
    let datum = match storage.get(key) {
        Ok(None) => return Ok(None),
        Ok(Some(datum)) => datum,
        Err(e) => return Err(e.to_string()),
    };
    match decode_stored(key, &datum) {
        Ok(object) => Ok(Some(object)),
        Err(reason) => {
            tracing::error!(
                reason,
                "invalid record removed; anti-entropy restores it from a replica"
            );
            let _ = storage.update(
                key,
                Durability::Buffered,
                None,
                &mut |current| match current {
                    Some(now) if now == datum => Change::Delete,
                    _ => Change::Keep,
                },
            );
            Err(reason)
        }
    }
}

/// The digest of this replica's version of `key`: `None` when absent or
/// unreadable.
pub fn digest_of(storage: &dyn Storage, key: &DataKey) -> Option<u64> {
    match storage.get(key) {
        Ok(Some(datum)) => Some(version_digest(&datum.value)),
        _ => None,
    }
}

/// Every key of `(partition, n)` whose tree segment is in `segments`, with
/// its digest, in key order. Corrupt records are left out: this replica
/// cannot serve them, so an exchange fetches them from the peer.
pub fn segment_digests(
    storage: &dyn Storage,
    partition: Partition,
    n: u8,
    segments: &BTreeSet<u32>,
) -> Result<Vec<KeyDigest>, String> {
    let by_segment = digests_by_segment(storage, partition, n, segments)?;
    let mut found: Vec<KeyDigest> = by_segment.into_values().flatten().collect();
    found.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(found)
}

/// The keys and digests of `(partition, n)` in each of `segments`.
fn digests_by_segment(
    storage: &dyn Storage,
    partition: Partition,
    n: u8,
    segments: &BTreeSet<u32>,
) -> Result<BTreeMap<u32, Vec<KeyDigest>>, String> {
    let segment_count = storage.tree(partition, n).shape().segments();
    let mut found: BTreeMap<u32, Vec<KeyDigest>> = BTreeMap::new();
    for_each_datum(storage, partition, |key, datum| {
        let segment = key_segment(&key.tree_key(), segment_count);
        if datum.n == n && segments.contains(&segment) {
            found.entry(segment).or_default().push(KeyDigest {
                key: KeyRef {
                    bucket: key.bucket.clone(),
                    key: key.key.clone(),
                },
                digest: version_digest(&datum.value),
            });
        }
        true
    })?;
    Ok(found)
}

/// The digests of whole segments, in segment order, until the next segment
/// would pass `budget` bytes (the first is always given): the segments
/// covered and their digests. The caller asks again for the rest.
fn capped_segment_digests(
    storage: &dyn Storage,
    partition: Partition,
    n: u8,
    segments: &BTreeSet<u32>,
    budget: usize,
) -> Result<(Vec<u32>, Vec<KeyDigest>), String> {
    let by_segment = digests_by_segment(storage, partition, n, segments)?;
    let mut covered = Vec::new();
    let mut digests = Vec::new();
    let mut bytes = 0;
    for &segment in segments {
        let found = by_segment.get(&segment).map_or(&[][..], Vec::as_slice);
        let size: usize = found.iter().map(digest_bytes).sum();
        if !covered.is_empty() && bytes + size > budget {
            break;
        }
        bytes += size;
        covered.push(segment);
        digests.extend_from_slice(found);
    }
    Ok((covered, digests))
}

fn digest_bytes(digest: &KeyDigest) -> usize {
    digest.key.bucket.len() + digest.key.key.len() + 16
}

/// Calls `f` with every readable datum of `partition` in key order, until
/// it returns false.
pub fn for_each_datum(
    storage: &dyn Storage,
    partition: Partition,
    mut f: impl FnMut(&DataKey, &Datum) -> bool,
) -> Result<(), String> {
    let mut after: Option<DataKey> = None;
    loop {
        let page = storage
            .scan_partition(partition, after.as_ref(), SCAN_PAGE)
            .map_err(|e| e.to_string())?;
        for (key, datum) in &page.items {
            if !f(key, datum) {
                return Ok(());
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(()),
        }
    }
}

/// Removes `key` if its stored version still has `digest` (a transfer
/// dropping what every new owner stored). Returns whether it was removed.
pub fn remove_if_unchanged(
    storage: &dyn Storage,
    key: &DataKey,
    digest: u64,
) -> Result<bool, String> {
    remove_if(storage, key, |datum| version_digest(&datum.value) == digest)
}

/// Removes `key` if its stored version still has `digest` and every one
/// of its siblings is a tombstone: the replica's half of tombstone
/// removal, which never removes live data.
pub fn reap_if_unchanged(
    storage: &dyn Storage,
    key: &DataKey,
    digest: u64,
) -> Result<bool, String> {
    remove_if(storage, key, |datum| {
        version_digest(&datum.value) == digest
            && decode_stored(key, datum).is_ok_and(|object| object.is_deleted())
    })
}

fn remove_if(
    storage: &dyn Storage,
    key: &DataKey,
    condition: impl Fn(&Datum) -> bool,
) -> Result<bool, String> {
    let mut removed = false;
    storage
        .update(
            key,
            Durability::Buffered,
            None,
            &mut |current| match current {
                Some(datum) if condition(&datum) => {
                    removed = true;
                    Change::Delete
                }
                _ => Change::Keep,
            },
        )
        .map_err(|e| e.to_string())?;
    Ok(removed)
}

/// Why tombstones of `(partition, n)` may not be removed on this node now,
/// if they may not: a node still hands the partition off (its copy could
/// hold older values the tombstone shadows), or this node holds a hint
/// for one of the partition's primaries (the hinted write could).
pub fn reap_blocked(
    storage: &dyn Storage,
    ring: &Ring,
    partition: Partition,
    n: u8,
    handing_off: &dyn Fn(Partition) -> bool,
) -> Option<&'static str> {
    if handing_off(partition) {
        return Some("a node still hands the partition off");
    }
    let list = ring.preference_list(partition, usize::from(n));
    let queues = storage.hint_queues();
    if list.primaries().iter().any(|p| queues.contains_key(p)) {
        return Some("a hint for one of its primaries is pending here");
    }
    None
}

fn refuse(message: impl Into<String>) -> Response {
    Response::Error(ErrorReply {
        code: ErrorCode::BadRequest,
        message: message.into(),
    })
}

fn storage_error(message: String) -> Response {
    Response::Error(ErrorReply {
        code: ErrorCode::Storage,
        message,
    })
}

/// What the node tells the replica service about the cluster.
#[derive(Clone, Copy)]
pub struct ClusterView<'a> {
    pub ring: &'a Ring,
    /// Whether some node still hands the partition off (see
    /// `norn_membership::Membership::handing_off`).
    pub handing_off: &'a dyn Fn(Partition) -> bool,
}

impl std::fmt::Debug for ClusterView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterView")
            .field("ring_version", &self.ring.version())
            .finish()
    }
}

impl LocalReplica<'_> {
    /// Answers the replica-side requests of exchanges, transfers and
    /// tombstone removal from this replica's storage; `None` for any other
    /// request. Replies carry at most the batch budget of objects or
    /// digests (at least one item); the asker asks again for the rest.
    pub fn serve(&self, cluster: ClusterView<'_>, request: &Request) -> Option<Response> {
        let (storage, ring) = (self.storage, cluster.ring);
        let response = match request {
            Request::TreeNodes {
                partition,
                n,
                level,
                indices,
            } => tree_nodes(storage, *partition, *n, *level, indices),
            Request::SegmentDigests {
                partition,
                n,
                segments,
            } => {
                if usize::from(partition.0) >= ring.partition_count() {
                    return Some(refuse(format!("no partition {partition} in the ring")));
                }
                let segments: BTreeSet<u32> = segments.iter().copied().collect();
                match capped_segment_digests(
                    storage,
                    *partition,
                    *n,
                    &segments,
                    self.limits.batch_bytes_max,
                ) {
                    Ok((segments, digests)) => Response::SegmentDigests { segments, digests },
                    Err(e) => storage_error(e),
                }
            }
            Request::TreeRoots { n, partitions } => {
                if let Some(bad) = partitions
                    .iter()
                    .find(|p| usize::from(p.0) >= ring.partition_count())
                {
                    return Some(refuse(format!("no partition {bad} in the ring")));
                }
                Response::Hashes(
                    partitions
                        .iter()
                        .map(|&p| storage.tree_root(p, *n).0)
                        .collect(),
                )
            }
            Request::KeyDigests { keys } => {
                let mut digests = Vec::with_capacity(keys.len());
                for key in keys {
                    match data_key(ring, key) {
                        Ok(key) => digests.push(digest_of(storage, &key)),
                        Err(e) => return Some(refuse(e)),
                    }
                }
                Response::KeyDigests(digests)
            }
            Request::ReplicaGetMany { keys } => match self.objects(ring, keys) {
                Ok(objects) => Response::Objects(objects),
                Err(e) => refuse(e),
            },
            Request::ReplicaPutMany { n, items, .. } => self.put_many(ring, *n, items),
            Request::Reap { items } => self.reap(cluster, items),
            _ => return None,
        };
        Some(response)
    }

    /// This replica's copies of `keys`, in order, until the batch budget
    /// is spent (at least one). An object past the object limit is
    /// answered as absent: it fits no frame.
    fn objects(&self, ring: &Ring, keys: &[KeyRef]) -> Result<Vec<Option<Object>>, String> {
        let mut objects = Vec::with_capacity(keys.len());
        let mut bytes = 0;
        for key in keys {
            let key = data_key(ring, key)?;
            let object = self
                .read(&key)
                .ok()
                .flatten()
                .filter(|object| self.sendable(&key, object));
            let size = object
                .as_ref()
                .map_or(0, |o| codec::encoded_len(o).unwrap_or(usize::MAX));
            if !objects.is_empty() && bytes + size > self.limits.batch_bytes_max {
                break;
            }
            bytes += size;
            objects.push(object);
        }
        Ok(objects)
    }

    /// Removes each tombstone whose stored version still has the digest
    /// the reaper saw on every primary, unless the removal rule forbids it
    /// here now ([`reap_blocked`]). Replies with how many were removed.
    fn reap(&self, cluster: ClusterView<'_>, items: &[KeyDigest]) -> Response {
        let mut count = 0;
        for item in items {
            let key = match data_key(cluster.ring, &item.key) {
                Ok(key) => key,
                Err(e) => return refuse(e),
            };
            let n = match self.storage.get(&key) {
                Ok(Some(datum)) => datum.n,
                _ => continue,
            };
            if let Some(reason) = reap_blocked(
                self.storage,
                cluster.ring,
                key.partition,
                n,
                cluster.handing_off,
            ) {
                tracing::debug!(key = %key, reason, "tombstone kept");
                continue;
            }
            match reap_if_unchanged(self.storage, &key, item.digest) {
                Ok(removed) => count += u32::from(removed),
                Err(e) => return storage_error(e),
            }
        }
        Response::StoredMany { count }
    }

    /// Merges a batch and syncs it to disk before the reply: a transfer
    /// drops its own copies once every target stored them.
    fn put_many(&self, ring: &Ring, n: u8, items: &[KeyObject]) -> Response {
        if n == 0 {
            return refuse("n must be at least 1");
        }
        let mut count = 0;
        for item in items {
            let key = match data_key(ring, &item.key) {
                Ok(key) => key,
                Err(e) => return refuse(e),
            };
            if let Err(e) = self.merge(&key, n, &item.object, Durability::Buffered, None) {
                return storage_error(e);
            }
            count += 1;
        }
        match self.storage.sync() {
            Ok(()) => Response::StoredMany { count },
            Err(e) => storage_error(e.to_string()),
        }
    }
}

fn tree_nodes(
    storage: &dyn Storage,
    partition: Partition,
    n: u8,
    level: u8,
    indices: &[u32],
) -> Response {
    let tree = storage.tree(partition, n);
    let shape = tree.shape();
    if level > shape.depth {
        return refuse(format!("tree level {level} is past depth {}", shape.depth));
    }
    let width = shape.fanout.pow(u32::from(level));
    if let Some(bad) = indices.iter().find(|&&i| i >= width) {
        return refuse(format!("tree level {level} has no node {bad}"));
    }
    Response::Hashes(
        indices
            .iter()
            .map(|&index| tree.node(NodeIndex { level, index }).0)
            .collect(),
    )
}
