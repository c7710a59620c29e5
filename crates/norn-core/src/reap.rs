//! Tombstone removal, right after a partition was verified. Only the
//! partition's first primary reaps, and only keys whose every sibling is a
//! tombstone that every primary holds in the very same version and that no
//! other member holds at all (a fallback's or an old owner's copy could
//! carry older values the tombstone no longer shadows once gone), while no
//! node of the ring holds a hint for any primary of the partition (a
//! pending hint could carry them too) and no node still hands the
//! partition off. A tombstone found so is removed only once it was found so
//! again `anti_entropy.reap_grace_ms` later, in the same version: by then
//! no message sent before every replica held it (a read repair, an
//! exchange's push, a transfer batch) is still on its way to bring back
//! what it shadowed. Every member is asked, not its gossip believed, and the
//! primaries answer only once their tombstones are on disk
//! ([`Request::DurableKeyDigests`]): a primary that lost a tombstone to a
//! power cut after the others removed it would bring back what it
//! shadowed. Every
//! primary then removes the key if its version is still that one and its
//! own half of the rule holds ([`crate::replica::reap_blocked`]); one that
//! missed the removal keeps the tombstone, and exchanges spread it back
//! until the next removal. Never by a timer.

use std::collections::BTreeMap;

use norn_clock::Object;
use norn_proto::{codec, KeyDigest, KeyRef, Request, Response};
use norn_ring::{NodeId, Partition, Ring};
use norn_storage::trees::version_digest;

use crate::io::CallFailure;
use crate::metrics::Counter;
use crate::node::NodeState;
use crate::replica;

/// Most tombstones considered per partition and verification.
const REAP_BATCH: usize = 1024;

/// What a reap does next.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ReapStep {
    Send(NodeId, Request),
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Asking every other member for its digests of the candidates.
    Digests {
        next: usize,
    },
    /// Asking every member whether it holds hints for a primary.
    Hints {
        next: usize,
    },
    /// Asking the other primaries to remove what every one holds.
    Removals {
        next: usize,
    },
    Done,
}

/// One tombstone removal of `(partition, n)`.
#[derive(Debug)]
pub(crate) struct ReapJob {
    partition: Partition,
    n: u8,
    /// The other primaries.
    peers: Vec<NodeId>,
    primaries: Vec<NodeId>,
    /// Every other member of the ring.
    members: Vec<NodeId>,
    candidates: Vec<KeyDigest>,
    held_everywhere: Vec<bool>,
    stage: Stage,
    synced_here: bool,
    /// Tombstones found held everywhere before, with their digest and
    /// when they were first found so; updated by this job.
    pub(crate) seen: BTreeMap<KeyRef, (u64, u64)>,
}

/// Tombstones found held everywhere, per `(partition, n)`: key, digest and
/// when first found so.
pub(crate) type ReapSightings = BTreeMap<(Partition, u8), BTreeMap<KeyRef, (u64, u64)>>;

impl ReapJob {
    /// The removal of `(partition, n)`'s tombstones, if this node is its
    /// first primary, has tombstones there and may reap them now.
    pub(crate) fn start(
        node: &NodeState,
        ring: &Ring,
        partition: Partition,
        n: u8,
        seen: BTreeMap<KeyRef, (u64, u64)>,
    ) -> Option<ReapJob> {
        let primaries = ring
            .preference_list(partition, usize::from(n))
            .primaries()
            .to_vec();
        if primaries.first() != Some(&node.id) {
            return None;
        }
        let handing_off = |p| node.handing_off(p);
        if let Some(reason) =
            replica::reap_blocked(&*node.storage, ring, partition, n, &handing_off)
        {
            tracing::debug!(partition = %partition, reason, "tombstones kept");
            return None;
        }
        let candidates = match tombstones(node, partition, n) {
            Ok(found) if !found.is_empty() => found,
            Ok(_) => return None,
            Err(e) => {
                tracing::warn!(partition = %partition, error = %e, "tombstones not listed");
                return None;
            }
        };
        Some(ReapJob {
            partition,
            n,
            peers: primaries
                .iter()
                .copied()
                .filter(|&p| p != node.id)
                .collect(),
            held_everywhere: vec![true; candidates.len()],
            primaries,
            members: ring
                .members()
                .keys()
                .copied()
                .filter(|&m| m != node.id)
                .collect(),
            candidates,
            stage: Stage::Digests { next: 0 },
            synced_here: false,
            seen,
        })
    }

    /// The `(partition, n)` this job reaps.
    pub(crate) fn key(&self) -> (Partition, u8) {
        (self.partition, self.n)
    }

    fn keys(&self) -> Vec<KeyRef> {
        self.candidates.iter().map(|c| c.key.clone()).collect()
    }

    /// The next request, or the end (after the local removals).
    pub(crate) fn next(&mut self, node: &mut NodeState) -> ReapStep {
        loop {
            match self.stage {
                Stage::Digests { next } if next < self.members.len() => {
                    let member = self.members[next];
                    let keys = self.keys();
                    let request = if self.primaries.contains(&member) {
                        Request::DurableKeyDigests { keys }
                    } else {
                        Request::KeyDigests {
                            keys,
                            admission: None,
                        }
                    };
                    return ReapStep::Send(member, request);
                }
                Stage::Digests { .. } => self.stage = Stage::Hints { next: 0 },
                Stage::Hints { next } if next < self.members.len() => {
                    return ReapStep::Send(self.members[next], Request::AdminHints);
                }
                Stage::Hints { .. } => {
                    let held: Vec<KeyDigest> = self
                        .candidates
                        .iter()
                        .zip(&self.held_everywhere)
                        .filter(|(_, held)| **held)
                        .map(|(c, _)| c.clone())
                        .collect();
                    let ready = self.past_grace(node, held);
                    if ready.is_empty() {
                        return self.abandon("no tombstone is held everywhere past the grace");
                    }
                    self.candidates = ready;
                    self.stage = Stage::Removals { next: 0 };
                }
                Stage::Removals { next: 0 } if !self.synced_here => {
                    // This primary's tombstones must be on disk too before
                    // any primary removes them.
                    if let Err(e) = node.storage.sync() {
                        tracing::warn!(error = %e, "sync before reaping failed");
                        return self.abandon("this node's storage did not sync");
                    }
                    self.synced_here = true;
                }
                Stage::Removals { next } if next < self.peers.len() => {
                    let request = Request::Reap {
                        items: self.candidates.clone(),
                    };
                    return ReapStep::Send(self.peers[next], request);
                }
                Stage::Removals { .. } => {
                    self.remove_here(node);
                    self.stage = Stage::Done;
                }
                Stage::Done => return ReapStep::Done,
            }
        }
    }

    /// Of the tombstones held everywhere now, those first found so at least
    /// the grace ago in this very version; records the others.
    fn past_grace(&mut self, node: &NodeState, held: Vec<KeyDigest>) -> Vec<KeyDigest> {
        let grace = node.config.anti_entropy.reap_grace_ms;
        let mut seen = BTreeMap::new();
        let mut ready = Vec::new();
        for candidate in held {
            let first = match self.seen.get(&candidate.key) {
                Some(&(digest, first)) if digest == candidate.digest => first,
                _ => node.now,
            };
            if node.now.saturating_sub(first) >= grace {
                ready.push(candidate);
            } else {
                seen.insert(candidate.key.clone(), (candidate.digest, first));
            }
        }
        self.seen = seen;
        ready
    }

    fn abandon(&mut self, reason: &str) -> ReapStep {
        tracing::debug!(partition = %self.partition, n = self.n, reason, "tombstones kept");
        self.stage = Stage::Done;
        ReapStep::Done
    }

    /// The answer to the last request [`ReapJob::next`] asked for.
    pub(crate) fn on_reply(&mut self, node: &NodeState, reply: Result<Response, CallFailure>) {
        self.stage = match (self.stage, reply) {
            (Stage::Digests { next }, Ok(Response::KeyDigests(digests)))
                if digests.len() == self.candidates.len() =>
            {
                // A primary must hold the very same tombstone; any other
                // member must hold nothing of the key.
                let primary = self.primaries.contains(&self.members[next]);
                for ((held, candidate), theirs) in self
                    .held_everywhere
                    .iter_mut()
                    .zip(&self.candidates)
                    .zip(digests)
                {
                    let wanted = primary.then_some(candidate.digest);
                    *held &= theirs == wanted;
                }
                Stage::Digests { next: next + 1 }
            }
            (Stage::Hints { next }, Ok(Response::Hints(queues))) => {
                let pending = queues
                    .iter()
                    .any(|(target, hints, _)| *hints > 0 && self.primaries.contains(target));
                if pending {
                    tracing::debug!(partition = %self.partition, "tombstones kept: hints pending");
                    Stage::Done
                } else {
                    Stage::Hints { next: next + 1 }
                }
            }
            (Stage::Removals { next }, reply) => {
                if !matches!(reply, Ok(Response::StoredMany { .. })) {
                    tracing::debug!(peer = %self.peers[next], "tombstone removal not confirmed; exchanges will spread the tombstone back");
                }
                Stage::Removals { next: next + 1 }
            }
            // A primary or member that did not answer: nothing is removed.
            _ => {
                tracing::debug!(partition = %self.partition, node = %node.id, "tombstones kept: a node did not answer");
                Stage::Done
            }
        };
    }

    fn remove_here(&self, node: &mut NodeState) {
        let Some(ring) = node.ring() else { return };
        let mut reaped = 0;
        for item in &self.candidates {
            if let Ok(key) = replica::data_key(&ring, &item.key) {
                if replica::reap_if_unchanged(&*node.storage, &key, item.digest) == Ok(true) {
                    reaped += 1;
                }
            }
        }
        node.metrics.count(Counter::TombstonesReaped, reaped);
        tracing::info!(partition = %self.partition, n = self.n, reaped, "tombstones removed");
    }
}

/// Up to [`REAP_BATCH`] keys of `(partition, n)` whose every sibling is a
/// tombstone, with their digests.
fn tombstones(
    node: &NodeState,
    partition: Partition,
    n: u8,
) -> Result<Vec<KeyDigest>, crate::error::CoreError> {
    let mut found = Vec::new();
    replica::for_each_datum(&*node.storage, partition, |key, datum| {
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
