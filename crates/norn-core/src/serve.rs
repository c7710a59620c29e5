//! The replica's side of the requests of exchanges, transfers and
//! tombstone removal, answered from this node's storage.

use std::collections::BTreeSet;

use norn_clock::Object;
use norn_merkle::NodeIndex;
use norn_proto::{codec, ErrorCode, ErrorReply, KeyDigest, KeyObject, KeyRef, Request, Response};
use norn_ring::{Partition, Ring};
use norn_storage::{Durability, Storage};

use crate::error::CoreError;
use crate::replica::{
    data_key, digest_of, digests_by_segment, reap_blocked, reap_if_unchanged, LocalReplica,
};

/// A replica's answer, and whether it may go out only once this node's
/// storage is synced (a batch a transfer drops its own copies after).
#[derive(Debug, Clone, PartialEq)]
pub struct Served {
    pub response: Response,
    pub after_sync: bool,
}

impl Served {
    fn now(response: Response) -> Served {
        Served {
            response,
            after_sync: false,
        }
    }
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
) -> Result<(Vec<u32>, Vec<KeyDigest>), CoreError> {
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

fn refuse(message: impl std::fmt::Display) -> Response {
    Response::Error(ErrorReply {
        code: ErrorCode::BadRequest,
        message: message.to_string(),
    })
}

fn storage_error(message: impl std::fmt::Display) -> Response {
    Response::Error(ErrorReply {
        code: ErrorCode::Storage,
        message: message.to_string(),
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
    pub fn serve(&self, cluster: ClusterView<'_>, request: &Request) -> Option<Served> {
        let (storage, ring) = (self.storage, cluster.ring);
        let response = match request {
            Request::ReplicaPutMany { n, items, .. } => {
                return Some(self.put_many(ring, *n, items))
            }
            Request::DurableKeyDigests { keys } => {
                let response = key_digests(storage, ring, keys);
                let after_sync = !matches!(response, Response::Error(_));
                return Some(Served {
                    response,
                    after_sync,
                });
            }
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
            } => self.segment_digests(ring, *partition, *n, segments),
            Request::TreeRoots { n, partitions } => tree_roots(storage, ring, *n, partitions),
            Request::KeyDigests { keys, .. } => key_digests(storage, ring, keys),
            Request::ReplicaGetMany { keys } => match self.objects(ring, keys) {
                Ok(objects) => Response::Objects(objects),
                Err(e) => refuse(e),
            },
            Request::Reap { items } => self.reap(cluster, items),
            _ => return None,
        };
        Some(Served::now(response))
    }

    fn segment_digests(
        &self,
        ring: &Ring,
        partition: Partition,
        n: u8,
        segments: &[u32],
    ) -> Response {
        if usize::from(partition.0) >= ring.partition_count() {
            return refuse(format!("no partition {partition} in the ring"));
        }
        let segments: BTreeSet<u32> = segments.iter().copied().collect();
        let budget = self.limits.batch_bytes_max;
        match capped_segment_digests(self.storage, partition, n, &segments, budget) {
            Ok((segments, digests)) => Response::SegmentDigests { segments, digests },
            Err(e) => storage_error(e),
        }
    }

    /// This replica's copies of `keys`, in order, until the batch budget
    /// is spent (at least one). An object past the object limit is
    /// answered as absent: it fits no frame.
    fn objects(&self, ring: &Ring, keys: &[KeyRef]) -> Result<Vec<Option<Object>>, CoreError> {
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

    /// Merges a batch, answered only once it is on disk: a transfer drops
    /// its own copies once every target stored them.
    fn put_many(&self, ring: &Ring, n: u8, items: &[KeyObject]) -> Served {
        if n == 0 {
            return Served::now(refuse("n must be at least 1"));
        }
        let mut count = 0;
        for item in items {
            let key = match data_key(ring, &item.key) {
                Ok(key) => key,
                Err(e) => return Served::now(refuse(e)),
            };
            if let Err(e) = self.merge(&key, n, &item.object, Durability::Buffered, None) {
                return Served::now(storage_error(e));
            }
            count += 1;
        }
        Served {
            response: Response::StoredMany { count },
            after_sync: true,
        }
    }
}

fn tree_roots(storage: &dyn Storage, ring: &Ring, n: u8, partitions: &[Partition]) -> Response {
    if let Some(bad) = partitions
        .iter()
        .find(|p| usize::from(p.0) >= ring.partition_count())
    {
        return refuse(format!("no partition {bad} in the ring"));
    }
    Response::Hashes(
        partitions
            .iter()
            .map(|&p| storage.tree_root(p, n).0)
            .collect(),
    )
}

fn key_digests(storage: &dyn Storage, ring: &Ring, keys: &[KeyRef]) -> Response {
    let mut digests = Vec::with_capacity(keys.len());
    for key in keys {
        match data_key(ring, key) {
            Ok(key) => digests.push(digest_of(storage, &key)),
            Err(e) => return refuse(e),
        }
    }
    Response::KeyDigests(digests)
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
