//! Sloppy-quorum writes: where a write goes, and when it is done.

pub use norn_proto::WriteReceipt;
use norn_ring::{NodeId, PreferenceList};
use serde::{Deserialize, Serialize};

use crate::coordinator::quorum::Quorum;

/// One replica a write goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteTarget {
    pub node: NodeId,
    /// The unreachable primary this fallback stands in for; the fallback
    /// keeps a hint to hand the write over when that primary is back.
    pub hint_for: Option<NodeId>,
}

/// The first N reachable nodes of `list`: each reachable primary, and for
/// each unreachable one the next reachable fallback, with a hint.
pub fn choose_write_targets(
    list: &PreferenceList,
    is_up: impl Fn(NodeId) -> bool,
) -> Vec<WriteTarget> {
    let mut fallbacks = list.fallbacks().iter().copied().filter(|f| is_up(*f));
    list.primaries()
        .iter()
        .filter_map(|&primary| {
            if is_up(primary) {
                Some(WriteTarget {
                    node: primary,
                    hint_for: None,
                })
            } else {
                fallbacks.next().map(|node| WriteTarget {
                    node,
                    hint_for: Some(primary),
                })
            }
        })
        .collect()
}

/// Where a write stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    Pending,
    /// W (and PW, DW) acknowledgements are in.
    Succeeded(WriteReceipt),
    /// The quorum can no longer be met; the receipt says what was written.
    Failed(WriteReceipt),
}

/// Acknowledgements of one write.
#[derive(Debug, Clone)]
pub struct WriteTally {
    quorum: Quorum,
    targets: Vec<WriteTarget>,
    acked: Vec<(WriteTarget, bool)>,
    failed: Vec<NodeId>,
    decided: bool,
}

impl WriteTally {
    pub fn new(quorum: Quorum, targets: Vec<WriteTarget>) -> WriteTally {
        WriteTally {
            quorum,
            targets,
            acked: Vec::new(),
            failed: Vec::new(),
            decided: false,
        }
    }

    pub fn targets(&self) -> &[WriteTarget] {
        &self.targets
    }

    /// `node` stored the write (after an fsync if `synced`).
    pub fn on_ack(&mut self, node: NodeId, synced: bool) -> WriteOutcome {
        if let Some(target) = self.pending_target(node) {
            self.acked.push((target, synced));
        }
        self.outcome()
    }

    /// `node` failed or did not answer.
    pub fn on_failure(&mut self, node: NodeId) -> WriteOutcome {
        if self.pending_target(node).is_some() {
            self.failed.push(node);
        }
        self.outcome()
    }

    /// The request's time is up: whatever is still pending has failed.
    pub fn on_timeout(&mut self) -> WriteOutcome {
        let pending: Vec<NodeId> = self
            .targets
            .iter()
            .map(|t| t.node)
            .filter(|n| self.is_pending(*n))
            .collect();
        self.failed.extend(pending);
        self.outcome()
    }

    /// Whether every target has acknowledged or failed.
    pub fn all_in(&self) -> bool {
        self.targets.iter().all(|t| !self.is_pending(t.node))
    }

    fn is_pending(&self, node: NodeId) -> bool {
        !self.failed.contains(&node) && !self.acked.iter().any(|(t, _)| t.node == node)
    }

    fn pending_target(&self, node: NodeId) -> Option<WriteTarget> {
        self.targets
            .iter()
            .copied()
            .find(|t| t.node == node)
            .filter(|t| self.is_pending(t.node))
    }

    /// The receipt as of now.
    pub fn receipt(&self) -> WriteReceipt {
        let mut receipt = WriteReceipt {
            sent: self.targets.len() as u8,
            ..WriteReceipt::default()
        };
        for (target, synced) in &self.acked {
            match target.hint_for {
                None => receipt.primaries.push(target.node),
                Some(primary) => receipt.fallbacks.push((target.node, primary)),
            }
            receipt.synced += u8::from(*synced);
        }
        receipt.quorum_met = self.met();
        receipt
    }

    fn met(&self) -> bool {
        let acked = self.acked.len();
        let primaries = self
            .acked
            .iter()
            .filter(|(t, _)| t.hint_for.is_none())
            .count();
        let synced = self.acked.iter().filter(|(_, s)| *s).count();
        acked >= usize::from(self.quorum.w)
            && primaries >= usize::from(self.quorum.pw)
            && synced >= usize::from(self.quorum.dw)
    }

    fn reachable(&self) -> bool {
        let pending: Vec<&WriteTarget> = self
            .targets
            .iter()
            .filter(|t| self.is_pending(t.node))
            .collect();
        let acked = self.acked.len() + pending.len();
        let primaries = self
            .acked
            .iter()
            .filter(|(t, _)| t.hint_for.is_none())
            .count()
            + pending.iter().filter(|t| t.hint_for.is_none()).count();
        let synced = self.acked.iter().filter(|(_, s)| *s).count() + pending.len();
        acked >= usize::from(self.quorum.w)
            && primaries >= usize::from(self.quorum.pw)
            && synced >= usize::from(self.quorum.dw)
    }

    /// Where the write stands now.
    pub fn outcome(&mut self) -> WriteOutcome {
        if self.met() {
            self.decided = true;
            WriteOutcome::Succeeded(self.receipt())
        } else if !self.reachable() {
            self.decided = true;
            WriteOutcome::Failed(self.receipt())
        } else {
            WriteOutcome::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use norn_ring::{Ring, RingMember};

    use super::*;

    fn quorum(n: u8, w: u8, pw: u8, dw: u8) -> Quorum {
        Quorum {
            n,
            r: w,
            w,
            pr: 0,
            pw,
            dw,
        }
    }

    fn ring(nodes: u64) -> Ring {
        Ring::new(
            6,
            (1..=nodes).map(|i| {
                (
                    NodeId(i),
                    RingMember {
                        zone: format!("z{i}"),
                        weight: 1,
                    },
                )
            }),
        )
        .expect("ring")
    }

    #[test]
    fn unreachable_primaries_are_replaced_by_fallbacks_with_hints() {
        let ring = ring(5);
        let list = ring.preference_list(norn_ring::Partition(0), 3);
        let (p, f) = (list.primaries().to_vec(), list.fallbacks().to_vec());
        let down = [p[0], p[2]];
        let targets = choose_write_targets(&list, |n| !down.contains(&n));
        assert_eq!(
            targets,
            vec![
                WriteTarget {
                    node: f[0],
                    hint_for: Some(p[0])
                },
                WriteTarget {
                    node: p[1],
                    hint_for: None
                },
                WriteTarget {
                    node: f[1],
                    hint_for: Some(p[2])
                },
            ]
        );
    }

    #[test]
    fn a_write_succeeds_at_w_and_fails_once_w_is_out_of_reach() {
        let targets: Vec<WriteTarget> = (1..=3)
            .map(|i| WriteTarget {
                node: NodeId(i),
                hint_for: None,
            })
            .collect();
        let mut tally = WriteTally::new(quorum(3, 2, 0, 0), targets.clone());
        assert_eq!(tally.on_ack(NodeId(1), false), WriteOutcome::Pending);
        let WriteOutcome::Succeeded(receipt) = tally.on_ack(NodeId(2), true) else {
            panic!("W=2 met")
        };
        assert_eq!(
            (receipt.acked(), receipt.synced, receipt.quorum_met),
            (2, 1, true)
        );

        let mut tally = WriteTally::new(quorum(3, 3, 0, 0), targets);
        tally.on_ack(NodeId(1), false);
        tally.on_ack(NodeId(2), false);
        let WriteOutcome::Failed(receipt) = tally.on_failure(NodeId(3)) else {
            panic!("W=3 unreachable")
        };
        assert_eq!(
            receipt.acked(),
            2,
            "the error says how many replicas did write"
        );
        assert!(!receipt.quorum_met);
    }

    #[test]
    fn pw_counts_primaries_only_and_dw_counts_fsyncs() {
        let targets = vec![
            WriteTarget {
                node: NodeId(1),
                hint_for: None,
            },
            WriteTarget {
                node: NodeId(4),
                hint_for: Some(NodeId(2)),
            },
            WriteTarget {
                node: NodeId(5),
                hint_for: Some(NodeId(3)),
            },
        ];
        let mut tally = WriteTally::new(quorum(3, 3, 3, 0), targets.clone());
        assert!(
            matches!(tally.on_ack(NodeId(1), false), WriteOutcome::Failed(_)),
            "PW=3 with two fallbacks cannot be met"
        );
        let mut tally = WriteTally::new(quorum(3, 3, 1, 0), targets.clone());
        tally.on_ack(NodeId(1), false);
        tally.on_ack(NodeId(4), false);
        let WriteOutcome::Succeeded(receipt) = tally.on_ack(NodeId(5), false) else {
            panic!("met")
        };
        assert_eq!(
            receipt.fallbacks,
            vec![(NodeId(4), NodeId(2)), (NodeId(5), NodeId(3))]
        );
        let mut tally = WriteTally::new(quorum(3, 2, 0, 2), targets);
        tally.on_ack(NodeId(1), true);
        assert_eq!(
            tally.on_ack(NodeId(4), false),
            WriteOutcome::Pending,
            "DW=2 needs a second fsync"
        );
        assert!(matches!(
            tally.on_ack(NodeId(5), true),
            WriteOutcome::Succeeded(_)
        ));
    }

    #[test]
    fn a_timeout_fails_what_is_pending() {
        let targets: Vec<WriteTarget> = (1..=3)
            .map(|i| WriteTarget {
                node: NodeId(i),
                hint_for: None,
            })
            .collect();
        let mut tally = WriteTally::new(quorum(3, 2, 0, 0), targets);
        tally.on_ack(NodeId(1), false);
        let WriteOutcome::Failed(receipt) = tally.on_timeout() else {
            panic!("timed out")
        };
        assert_eq!(receipt.acked(), 1);
    }
}
