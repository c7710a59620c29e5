//! `norn admin repair`: verifies a list of partitions now, reporting
//! progress. It first asks each peer for the tree roots of every listed
//! partition they share, [`ROOTS_PER_REQUEST`] at a time; a partition whose
//! roots all equal this node's (replicated for the default N only) is
//! verified without an exchange, so a ring of 65,536 partitions is
//! compared in a few dozen requests. The others are verified by exchanges.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use norn_proto::{RepairProgress, Request, Response};
use norn_ring::{NodeId, Partition, Ring};

use crate::io::{CallFailure, Token};
use crate::node::NodeState;
use crate::verify::{replicated_ns, Verification};

/// Partitions whose roots one [`Request::TreeRoots`] asks for.
pub const ROOTS_PER_REQUEST: usize = 4096;

/// What a repair does next.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RepairStep {
    /// Ask a peer for tree roots.
    Send(NodeId, Request),
    /// The partition is equal everywhere by its roots.
    VerifiedByRoots(Partition),
    /// Verify the partition by exchanges.
    Verify(Partition),
    Finished,
}

/// One repair.
#[derive(Debug)]
pub(crate) struct RepairJob {
    pub(crate) progress: RepairProgress,
    started_ms: u64,
    /// Root requests left to send: a peer and the partitions asked.
    roots_left: VecDeque<(NodeId, Vec<Partition>)>,
    /// The root request in flight.
    asked: Option<Vec<Partition>>,
    pub(crate) waiting: Option<Token>,
    /// Partitions still possibly equal by their roots.
    equal: BTreeSet<Partition>,
    partitions: VecDeque<Partition>,
}

impl RepairJob {
    /// A repair of `partitions`, starting at `now`.
    pub(crate) fn new(node: &NodeState, ring: &Ring, partitions: Vec<Partition>) -> RepairJob {
        let n = node.config.ring.default_n;
        let mut shared: BTreeMap<NodeId, Vec<Partition>> = BTreeMap::new();
        let mut equal = BTreeSet::new();
        for &partition in &partitions {
            if replicated_ns(node, ring, partition, true) != [n] {
                continue;
            }
            equal.insert(partition);
            for &peer in ring.preference_list(partition, usize::from(n)).primaries() {
                if peer != node.id {
                    shared.entry(peer).or_default().push(partition);
                }
            }
        }
        let roots_left = shared
            .into_iter()
            .flat_map(|(peer, partitions)| {
                partitions
                    .chunks(ROOTS_PER_REQUEST)
                    .map(|chunk| (peer, chunk.to_vec()))
                    .collect::<Vec<_>>()
            })
            .collect();
        RepairJob {
            progress: RepairProgress {
                running: true,
                partitions_total: partitions.len() as u32,
                ..RepairProgress::default()
            },
            started_ms: node.now,
            roots_left,
            asked: None,
            waiting: None,
            equal,
            partitions: partitions.into(),
        }
    }

    /// The progress as of `now`.
    pub(crate) fn snapshot(&self, now: u64) -> RepairProgress {
        let mut progress = self.progress.clone();
        if progress.running {
            progress.elapsed_ms = now.saturating_sub(self.started_ms);
        }
        progress
    }

    /// The next step; called only when no root request is in flight.
    pub(crate) fn next(&mut self, node: &NodeState) -> RepairStep {
        debug_assert!(self.waiting.is_none(), "a root request is in flight");
        if let Some((peer, partitions)) = self.roots_left.pop_front() {
            let request = Request::TreeRoots {
                n: node.config.ring.default_n,
                partitions: partitions.clone(),
            };
            self.asked = Some(partitions);
            return RepairStep::Send(peer, request);
        }
        match self.partitions.pop_front() {
            Some(partition) if self.equal.contains(&partition) => {
                RepairStep::VerifiedByRoots(partition)
            }
            Some(partition) => RepairStep::Verify(partition),
            None => RepairStep::Finished,
        }
    }

    /// A peer's roots for the partitions last asked.
    pub(crate) fn on_roots(&mut self, node: &NodeState, reply: Result<Response, CallFailure>) {
        let Some(asked) = self.asked.take() else {
            return;
        };
        let n = node.config.ring.default_n;
        match reply {
            Ok(Response::Hashes(roots)) if roots.len() == asked.len() => {
                for (partition, root) in asked.into_iter().zip(roots) {
                    if node.storage.tree_root(partition, n).0 != root {
                        self.equal.remove(&partition);
                    }
                }
            }
            _ => {
                for partition in asked {
                    self.equal.remove(&partition);
                }
            }
        }
    }

    /// The root request could not be sent: its partitions are exchanged.
    pub(crate) fn roots_failed(&mut self) {
        for partition in self.asked.take().unwrap_or_default() {
            self.equal.remove(&partition);
        }
    }

    pub(crate) fn partition_done(&mut self, outcome: Verification) {
        let progress = &mut self.progress;
        progress.partitions_done += 1;
        progress.exchanges_failed += outcome.failed;
        progress.keys_compared += outcome.report.keys_compared;
        progress.keys_different += outcome.report.keys_different;
        progress.keys_repaired += outcome.report.keys_repaired;
        progress.bytes += outcome.bytes;
    }

    pub(crate) fn finish(&mut self, now: u64) {
        self.progress.elapsed_ms = now.saturating_sub(self.started_ms);
        self.progress.running = false;
        tracing::info!(progress = ?self.progress, "repair finished");
    }
}
