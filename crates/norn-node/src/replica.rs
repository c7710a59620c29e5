//! What a replica does with its own storage, with no I/O beyond it: merge
//! an incoming object, list digests, answer the requests of anti-entropy
//! exchanges and transfers. The node, the exchange state machine and tests
//! that drive exchanges between two stores all use these.

use std::collections::BTreeSet;

use norn_clock::{ActorId, Context, Object, Sibling};
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

/// The replica side of [`Request::ReplicaPut`]: merges `object` into this
/// replica's copy of `key`, queuing a hint for `hint_for` in the same
/// storage update when it stands in for that primary.
pub fn store_replica_write(
    storage: &dyn Storage,
    key: &DataKey,
    n: u8,
    object: &Object,
    hint_for: Option<NodeId>,
    durability: Durability,
) -> Result<Object, String> {
    let hint = hint_for
        .map(|target| hint(target, &key.bucket, &key.key, n))
        .transpose()?;
    merge_object(storage, key, n, object, durability, hint)
}

/// Why a coordinator's own write failed; nothing was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalWriteError {
    /// The write would leave this many siblings, past the limit.
    TooManySiblings(usize),
    Failed(String),
}

/// The coordinator's own write: `sibling` gets `actor`'s next dot,
/// superseding what `context` covers, in one storage update. Refused past
/// `siblings_max` siblings. Returns the object now stored.
#[allow(clippy::too_many_arguments)]
pub fn coordinate_write(
    storage: &dyn Storage,
    key: &DataKey,
    n: u8,
    context: &Context,
    actor: ActorId,
    sibling: Sibling,
    siblings_max: usize,
    durability: Durability,
) -> Result<Object, LocalWriteError> {
    let mut outcome = Err(LocalWriteError::Failed("not written".into()));
    let stored = storage.update(key, durability, None, &mut |current| {
        let (local, stored_n) = match current {
            None => (Object::new(), n),
            Some(datum) => match codec::decode::<Object>(&datum.value) {
                Ok(local) => (local, datum.n.max(n)),
                Err(e) => {
                    outcome = Err(LocalWriteError::Failed(e.to_string()));
                    return Change::Keep;
                }
            },
        };
        let updated = local.update(context, actor, sibling.clone());
        if updated.value_count() > siblings_max {
            outcome = Err(LocalWriteError::TooManySiblings(updated.value_count()));
            return Change::Keep;
        }
        match codec::encode(&updated) {
            Ok(value) => {
                outcome = Ok(updated);
                Change::Put(Datum { n: stored_n, value })
            }
            Err(e) => {
                outcome = Err(LocalWriteError::Failed(e.to_string()));
                Change::Keep
            }
        }
    });
    stored.map_err(|e| LocalWriteError::Failed(e.to_string()))?;
    outcome
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

/// This replica's copy of `key`; an error for a record that fails its
/// checksum or does not decode (never served).
pub fn read_object(storage: &dyn Storage, key: &DataKey) -> Result<Option<Object>, String> {
    match storage.get(key) {
        Ok(None) => Ok(None),
        Ok(Some(datum)) => codec::decode::<Object>(&datum.value)
            .map(Some)
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Merges `incoming` into this replica's copy (DVV sync) in one storage
/// update, queuing `hint` with it; the object keeps the larger N. Returns
/// the merged object. A corrupt local record is replaced by `incoming`.
pub fn merge_object(
    storage: &dyn Storage,
    key: &DataKey,
    n: u8,
    incoming: &Object,
    durability: Durability,
    hint: Option<NewHint>,
) -> Result<Object, String> {
    let mut outcome = Err(format!("{key} was not merged"));
    storage
        .update(key, durability, hint, &mut |current| {
            let merged = match current {
                None => Ok((incoming.clone(), n)),
                Some(datum) => codec::decode::<Object>(&datum.value)
                    .map(|local| (local.sync(incoming), datum.n.max(n))),
            };
            let encoded = merged.and_then(|(object, n)| {
                codec::encode(&object).map(|value| (object, Datum { n, value }))
            });
            match encoded {
                Ok((object, datum)) => {
                    outcome = Ok(object);
                    Change::Put(datum)
                }
                Err(e) => {
                    outcome = Err(format!("stored object of {key} does not decode: {e}"));
                    Change::Keep
                }
            }
        })
        .map_err(|e| e.to_string())?;
    outcome
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
    let segment_count = storage.tree(partition, n).shape().segments();
    let mut found = Vec::new();
    for_each_datum(storage, partition, |key, datum| {
        if datum.n == n && segments.contains(&key_segment(&key.tree_key(), segment_count)) {
            found.push(KeyDigest {
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

/// Removes `key` if its stored version still has `digest`. Returns whether
/// it was removed.
pub fn remove_if_unchanged(
    storage: &dyn Storage,
    key: &DataKey,
    digest: u64,
) -> Result<bool, String> {
    let mut removed = false;
    storage
        .update(
            key,
            Durability::Buffered,
            None,
            &mut |current| match current {
                Some(datum) if version_digest(&datum.value) == digest => {
                    removed = true;
                    Change::Delete
                }
                _ => Change::Keep,
            },
        )
        .map_err(|e| e.to_string())?;
    Ok(removed)
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

/// Answers the replica-side requests of exchanges and transfers from this
/// replica's storage; `None` for any other request.
pub fn serve(storage: &dyn Storage, ring: &Ring, request: &Request) -> Option<Response> {
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
            match segment_digests(storage, *partition, *n, &segments) {
                Ok(found) => Response::SegmentDigests(found),
                Err(e) => storage_error(e),
            }
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
        Request::ReplicaGetMany { keys } => {
            let mut objects = Vec::with_capacity(keys.len());
            for key in keys {
                match data_key(ring, key) {
                    Ok(key) => objects.push(read_object(storage, &key).ok().flatten()),
                    Err(e) => return Some(refuse(e)),
                }
            }
            Response::Objects(objects)
        }
        Request::ReplicaPutMany { n, items, .. } => put_many(storage, ring, *n, items),
        Request::Reap { items } => {
            let mut count = 0;
            for item in items {
                let key = match data_key(ring, &item.key) {
                    Ok(key) => key,
                    Err(e) => return Some(refuse(e)),
                };
                match remove_if_unchanged(storage, &key, item.digest) {
                    Ok(removed) => count += u32::from(removed),
                    Err(e) => return Some(storage_error(e)),
                }
            }
            Response::StoredMany { count }
        }
        _ => return None,
    };
    Some(response)
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

/// Merges a batch and syncs it to disk before the reply: a transfer drops
/// its own copies once every target stored them.
fn put_many(storage: &dyn Storage, ring: &Ring, n: u8, items: &[KeyObject]) -> Response {
    if n == 0 {
        return refuse("n must be at least 1");
    }
    let mut count = 0;
    for item in items {
        let key = match data_key(ring, &item.key) {
            Ok(key) => key,
            Err(e) => return refuse(e),
        };
        if let Err(e) = merge_object(storage, &key, n, &item.object, Durability::Buffered, None) {
            return storage_error(e);
        }
        count += 1;
    }
    match storage.sync() {
        Ok(()) => Response::StoredMany { count },
        Err(e) => storage_error(e.to_string()),
    }
}
