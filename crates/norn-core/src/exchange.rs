//! One anti-entropy exchange, sans-IO: this replica compares its tree of
//! `(partition, n)` with a peer's, descending only into differing branches,
//! then lists the keys of the differing segments on both sides and repairs
//! exactly the keys that differ, in both directions: it fetches the peer's
//! object, merges it here (DVV sync) and sends the merged object back.
//!
//! The caller sends each [`Step::Send`] request to the peer and passes the
//! reply to [`Exchange::on_reply`], until [`Step::Done`]. Local storage is
//! read and written directly.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use norn_merkle::{MerkleTree, NodeIndex};
use norn_proto::{KeyObject, KeyRef, Request, Response};
use norn_ring::{Partition, Ring};
use norn_storage::Durability;

use crate::error::CoreError;
use crate::replica::{self, LocalReplica};

/// Keys fetched or pushed per request; a request also carries at most
/// the replica's batch budget in bytes (the peer's reply likewise).
const KEYS_PER_REQUEST: usize = 128;

/// What an exchange found and did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExchangeReport {
    /// Keys listed in the differing segments, on either side.
    pub keys_compared: u64,
    /// Keys whose versions differed (or were missing on one side).
    pub keys_different: u64,
    /// Keys made equal on both sides.
    pub keys_repaired: u64,
    /// More keys differed than the exchange's budget; the rest wait.
    pub truncated: bool,
}

/// What the caller does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Send(Request),
    Done(ExchangeReport),
}

#[derive(Debug)]
enum Stage {
    /// Waiting for the peer's hashes of `indices` at `level`.
    Tree { level: u8, indices: Vec<u32> },
    /// Waiting for the peer's digests of the differing segments (the peer
    /// lists as many as its batch budget holds).
    Segments { segments: BTreeSet<u32> },
    /// Waiting for the peer's objects of `keys`.
    Fetch { keys: Vec<KeyRef> },
    /// Waiting for the peer to store a pushed batch.
    Push { count: u64 },
}

/// One exchange of `(partition, n)` with one peer.
#[derive(Debug)]
pub struct Exchange {
    partition: Partition,
    n: u8,
    local: MerkleTree,
    max_keys: usize,
    stage: Stage,
    /// Differing keys the peer has: fetched, merged here, pushed back.
    to_fetch: VecDeque<KeyRef>,
    /// Differing keys only this replica has: pushed.
    to_push: VecDeque<KeyRef>,
    /// Differing segments the peer has not listed yet: asked for once the
    /// keys of the listed ones are repaired.
    pending_segments: BTreeSet<u32>,
    report: ExchangeReport,
}

impl Exchange {
    /// Starts an exchange of `(partition, n)` against this replica's tree
    /// `local` (a snapshot); repairs at most `max_keys` differing keys.
    /// Returns the first request to send.
    pub fn start(
        partition: Partition,
        n: u8,
        local: MerkleTree,
        max_keys: usize,
    ) -> (Exchange, Request) {
        let exchange = Exchange {
            partition,
            n,
            local,
            max_keys,
            stage: Stage::Tree {
                level: 0,
                indices: vec![0],
            },
            to_fetch: VecDeque::new(),
            to_push: VecDeque::new(),
            pending_segments: BTreeSet::new(),
            report: ExchangeReport::default(),
        };
        let request = exchange.tree_request(0, vec![0]);
        (exchange, request)
    }

    pub fn partition(&self) -> Partition {
        self.partition
    }

    pub fn n(&self) -> u8 {
        self.n
    }

    fn tree_request(&self, level: u8, indices: Vec<u32>) -> Request {
        Request::TreeNodes {
            partition: self.partition,
            n: self.n,
            level,
            indices,
        }
    }

    /// Takes the peer's reply to the last request.
    pub fn on_reply(
        &mut self,
        reply: Response,
        replica: LocalReplica<'_>,
        ring: &Ring,
    ) -> Result<Step, CoreError> {
        if let Response::Error(e) = &reply {
            return Err(CoreError::exchange(format!("peer refused: {}", e.message)));
        }
        let stage = std::mem::replace(&mut self.stage, Stage::Push { count: 0 });
        match (stage, reply) {
            (Stage::Tree { level, indices }, Response::Hashes(hashes)) => {
                self.on_hashes(level, &indices, &hashes)
            }
            (
                Stage::Segments { segments },
                Response::SegmentDigests {
                    segments: covered,
                    digests,
                },
            ) => self.on_segment_digests(segments, &covered, digests, replica, ring),
            (Stage::Fetch { keys }, Response::Objects(objects)) => {
                self.on_objects(keys, objects, replica, ring)
            }
            (Stage::Push { count }, Response::StoredMany { .. }) => {
                self.report.keys_repaired += count;
                self.next_repair(replica, ring)
            }
            (stage, reply) => Err(CoreError::exchange(format!(
                "unexpected reply {reply:?} while in {stage:?}"
            ))),
        }
    }

    fn on_hashes(
        &mut self,
        level: u8,
        indices: &[u32],
        hashes: &[u128],
    ) -> Result<Step, CoreError> {
        if hashes.len() != indices.len() {
            return Err(CoreError::exchange(format!(
                "asked for {} tree nodes, got {}",
                indices.len(),
                hashes.len()
            )));
        }
        let differing: Vec<u32> = indices
            .iter()
            .zip(hashes)
            .filter(|(&index, &remote)| self.local.node(NodeIndex { level, index }).0 != remote)
            .map(|(&index, _)| index)
            .collect();
        if differing.is_empty() {
            return Ok(Step::Done(self.report));
        }
        let shape = self.local.shape();
        if level == shape.depth {
            return Ok(self.ask_segments(differing.into_iter().collect()));
        }
        let children: Vec<u32> = differing
            .iter()
            .flat_map(|&parent| (0..shape.fanout).map(move |c| parent * shape.fanout + c))
            .collect();
        let request = self.tree_request(level + 1, children.clone());
        self.stage = Stage::Tree {
            level: level + 1,
            indices: children,
        };
        Ok(Step::Send(request))
    }

    fn ask_segments(&mut self, segments: BTreeSet<u32>) -> Step {
        let request = Request::SegmentDigests {
            partition: self.partition,
            n: self.n,
            segments: segments.iter().copied().collect(),
        };
        self.stage = Stage::Segments { segments };
        Step::Send(request)
    }

    /// Compares the segments the peer covered; asks for the rest of
    /// `asked` once those keys are repaired.
    fn on_segment_digests(
        &mut self,
        asked: BTreeSet<u32>,
        covered: &[u32],
        remote: Vec<norn_proto::KeyDigest>,
        replica: LocalReplica<'_>,
        ring: &Ring,
    ) -> Result<Step, CoreError> {
        let covered: BTreeSet<u32> = covered.iter().copied().collect();
        if covered.is_empty() || !covered.is_subset(&asked) {
            return Err(CoreError::exchange(format!(
                "asked for segments {asked:?}, got {covered:?}"
            )));
        }
        let local: BTreeMap<KeyRef, u64> =
            replica::segment_digests(replica.storage, self.partition, self.n, &covered)?
                .into_iter()
                .map(|d| (d.key, d.digest))
                .collect();
        let remote: BTreeMap<KeyRef, u64> = remote.into_iter().map(|d| (d.key, d.digest)).collect();
        let mut compared = local.len() as u64;
        for (key, digest) in &remote {
            match local.get(key) {
                None => {
                    compared += 1;
                    self.to_fetch.push_back(key.clone());
                }
                Some(mine) if mine != digest => self.to_fetch.push_back(key.clone()),
                Some(_) => {}
            }
        }
        self.to_push.extend(
            local
                .keys()
                .filter(|key| !remote.contains_key(*key))
                .cloned(),
        );
        self.report.keys_compared += compared;
        // The queues were empty before this reply: what is in them is new.
        let different = self.to_fetch.len() + self.to_push.len();
        let remaining = self
            .max_keys
            .saturating_sub(self.report.keys_different as usize);
        self.report.keys_different += different as u64;
        if different > remaining {
            self.report.truncated = true;
            let fetch_budget = remaining.min(self.to_fetch.len());
            self.to_fetch.truncate(fetch_budget);
            self.to_push.truncate(remaining - fetch_budget);
        }
        self.pending_segments = asked.difference(&covered).copied().collect();
        if self.report.truncated {
            self.pending_segments.clear();
        }
        self.next_repair(replica, ring)
    }

    /// Merges the peer's objects here and queues the merged ones to push
    /// back; keys the peer's reply left out (its budget) are asked again.
    fn on_objects(
        &mut self,
        mut keys: Vec<KeyRef>,
        objects: Vec<Option<norn_clock::Object>>,
        replica: LocalReplica<'_>,
        ring: &Ring,
    ) -> Result<Step, CoreError> {
        if objects.len() > keys.len() || (objects.is_empty() && !keys.is_empty()) {
            return Err(CoreError::exchange(format!(
                "asked for {} objects, got {}",
                keys.len(),
                objects.len()
            )));
        }
        for key in keys.drain(objects.len()..).rev() {
            self.to_fetch.push_front(key);
        }
        let mut push = Vec::new();
        for (key, theirs) in keys.into_iter().zip(objects) {
            let data_key = replica::data_key(ring, &key)?;
            let object = match theirs {
                Some(theirs) => {
                    let merged =
                        replica.merge(&data_key, self.n, &theirs, Durability::Buffered, None)?;
                    if merged == theirs {
                        self.report.keys_repaired += 1;
                        continue;
                    }
                    merged
                }
                // The peer lost it meanwhile, cannot read its copy, or holds
                // one too large to send.
                None => match replica.read(&data_key) {
                    Ok(Some(mine)) => mine,
                    _ => continue,
                },
            };
            if replica.sendable(&data_key, &object) {
                push.push(KeyObject { key, object });
            }
        }
        if push.is_empty() {
            return self.next_repair(replica, ring);
        }
        Ok(self.push(push, ring))
    }

    fn push(&mut self, items: Vec<KeyObject>, ring: &Ring) -> Step {
        self.stage = Stage::Push {
            count: items.len() as u64,
        };
        Step::Send(Request::ReplicaPutMany {
            n: self.n,
            ring_version: ring.version(),
            items,
            admission: None,
        })
    }

    /// The next fetch, then the next push of keys only this replica has,
    /// then the segments the peer has not listed yet.
    fn next_repair(&mut self, replica: LocalReplica<'_>, ring: &Ring) -> Result<Step, CoreError> {
        if !self.to_fetch.is_empty() {
            let take = self.to_fetch.len().min(KEYS_PER_REQUEST);
            let keys: Vec<KeyRef> = self.to_fetch.drain(..take).collect();
            self.stage = Stage::Fetch { keys: keys.clone() };
            return Ok(Step::Send(Request::ReplicaGetMany { keys }));
        }
        let mut items = Vec::new();
        let mut bytes = 0;
        while items.len() < KEYS_PER_REQUEST {
            let Some(key) = self.to_push.front().cloned() else {
                break;
            };
            let data_key = replica::data_key(ring, &key)?;
            let object = match replica.read(&data_key) {
                Ok(Some(object)) if replica.sendable(&data_key, &object) => object,
                _ => {
                    self.to_push.pop_front();
                    continue;
                }
            };
            let size = norn_proto::codec::encoded_len(&object).unwrap_or(usize::MAX);
            if !items.is_empty() && bytes + size > replica.limits.batch_bytes_max {
                break;
            }
            self.to_push.pop_front();
            bytes += size;
            items.push(KeyObject { key, object });
        }
        if !items.is_empty() {
            return Ok(self.push(items, ring));
        }
        if !self.pending_segments.is_empty() {
            let segments = std::mem::take(&mut self.pending_segments);
            return Ok(self.ask_segments(segments));
        }
        Ok(Step::Done(self.report))
    }
}
