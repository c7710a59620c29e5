//! What a replica does with its own storage, with no I/O beyond it: merge
//! an incoming object, list digests, answer the requests of anti-entropy
//! exchanges and transfers. The node, the exchange state machine and tests
//! that drive exchanges between two stores all use these.

use std::collections::{BTreeMap, BTreeSet};

use norn_clock::{Context, Lifetime, Object, Sibling};
use norn_merkle::key_segment;
use norn_proto::{codec, KeyDigest, KeyRef, Request};

use crate::error::CoreError;
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
fn hint(target: NodeId, bucket: &[u8], key: &[u8], n: u8) -> Result<NewHint, CoreError> {
    let payload = codec::encode(&HintPayload {
        bucket: bucket.to_vec(),
        key: key.to_vec(),
        n,
    })
    .map_err(|e| CoreError::Encode {
        what: "hint",
        reason: e.to_string(),
    })?;
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
    TooLarge { bytes: usize, max: usize },
    /// The storage failed or the object would not encode.
    Failed(CoreError),
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
fn decode_stored(key: &DataKey, datum: &Datum) -> Result<Object, CoreError> {
    codec::decode::<Object>(&datum.value).map_err(|e| CoreError::InvalidObject {
        key: key.to_string(),
        reason: e.to_string(),
    })
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
        let mut outcome = Err(LocalWriteError::TooManySiblings(0));
        let stored = self
            .storage
            .update(write.key, write.durability, hint, &mut |current| {
                let (local, n) = match current {
                    None => (None, write.n),
                    Some(datum) => match decode_stored(write.key, &datum) {
                        Ok(local) => (Some(local), datum.n.max(write.n)),
                        Err(e) => {
                            tracing::warn!(error = %e, "overwriting an invalid record");
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
        stored.map_err(|e| LocalWriteError::Failed(e.into()))?;
        outcome.map(|(object, _)| object)
    }

    /// The encoded object, if it keeps the sibling and object limits.
    fn check_limits(&self, object: &Object) -> Result<Vec<u8>, LocalWriteError> {
        if object.value_count() > self.limits.siblings_max {
            return Err(LocalWriteError::TooManySiblings(object.value_count()));
        }
        let value = codec::encode(object).map_err(|e| {
            LocalWriteError::Failed(CoreError::Encode {
                what: "object",
                reason: e.to_string(),
            })
        })?;
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
    ) -> Result<Object, CoreError> {
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
    ) -> Result<Object, CoreError> {
        let mut outcome = Err(CoreError::Storage {
            reason: format!("{key} was not merged"),
        });
        self.storage.update(key, durability, hint, &mut |current| {
            let (local, n) = match current {
                None => (None, n),
                Some(datum) => match decode_stored(key, &datum) {
                    Ok(local) => (Some(local), datum.n.max(n)),
                    Err(e) => {
                        tracing::warn!(error = %e, "replacing an invalid record");
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
                    outcome = Err(CoreError::Encode {
                        what: "merged object",
                        reason: e.to_string(),
                    });
                    Change::Keep
                }
            }
        })?;
        outcome
    }

    /// This replica's copy of `key`; an error for a record that fails its
    /// checksum or is not a valid object: such a record is never served.
    /// An invalid record (its checksum holds: it was written so) is
    /// removed, so that its trees stop claiming it and the next exchange
    /// brings the key back from a replica.
    pub fn read(&self, key: &DataKey) -> Result<Option<Object>, CoreError> {
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
pub fn data_key(ring: &Ring, key: &KeyRef) -> Result<DataKey, CoreError> {
    DataKey::new(
        ring.partition_of_key(&key.bucket, &key.key),
        &key.bucket,
        &key.key,
    )
    .map_err(|e| CoreError::BadKey {
        reason: e.to_string(),
    })
}

/// This replica's copy of `key` (see [`LocalReplica::read`]).
pub fn read_object(storage: &dyn Storage, key: &DataKey) -> Result<Option<Object>, CoreError> {
    let Some(datum) = storage.get(key)? else {
        return Ok(None);
    };
    match decode_stored(key, &datum) {
        Ok(object) => Ok(Some(object)),
        Err(invalid) => {
            tracing::error!(
                error = %invalid,
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
            Err(invalid)
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
) -> Result<Vec<KeyDigest>, CoreError> {
    let by_segment = digests_by_segment(storage, partition, n, segments)?;
    let mut found: Vec<KeyDigest> = by_segment.into_values().flatten().collect();
    found.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(found)
}

/// The keys and digests of `(partition, n)` in each of `segments`.
pub(crate) fn digests_by_segment(
    storage: &dyn Storage,
    partition: Partition,
    n: u8,
    segments: &BTreeSet<u32>,
) -> Result<BTreeMap<u32, Vec<KeyDigest>>, CoreError> {
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

/// Calls `f` with every readable datum of `partition` in key order, until
/// it returns false.
pub fn for_each_datum(
    storage: &dyn Storage,
    partition: Partition,
    mut f: impl FnMut(&DataKey, &Datum) -> bool,
) -> Result<(), CoreError> {
    let mut after: Option<DataKey> = None;
    loop {
        let page = storage.scan_partition(partition, after.as_ref(), SCAN_PAGE)?;
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
) -> Result<bool, CoreError> {
    remove_if(storage, key, |datum| version_digest(&datum.value) == digest)
}

/// Removes `key` if its stored version still has `digest` and every one
/// of its siblings is a tombstone: the replica's half of tombstone
/// removal, which never removes live data.
pub fn reap_if_unchanged(
    storage: &dyn Storage,
    key: &DataKey,
    digest: u64,
) -> Result<bool, CoreError> {
    remove_if(storage, key, |datum| {
        version_digest(&datum.value) == digest
            && decode_stored(key, datum).is_ok_and(|object| object.is_deleted())
    })
}

fn remove_if(
    storage: &dyn Storage,
    key: &DataKey,
    condition: impl Fn(&Datum) -> bool,
) -> Result<bool, CoreError> {
    let mut removed = false;
    storage.update(
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
    )?;
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
