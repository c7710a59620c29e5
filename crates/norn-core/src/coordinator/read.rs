//! Reads: when R replies are in, their merge, and who needs read repair.

use norn_clock::Object;
use norn_ring::NodeId;

use crate::coordinator::quorum::Quorum;

/// Where a read stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadOutcome {
    Pending,
    /// R (and PR) replies are in; `merged` is their DVV sync, `None` if no
    /// replica had the key.
    Done {
        merged: Option<Object>,
    },
    /// R can no longer be met.
    Failed {
        replies: u8,
        required: u8,
    },
}

/// Replies of one read.
#[derive(Debug, Clone)]
pub struct ReadTally {
    quorum: Quorum,
    /// The replicas asked, with whether each is a primary.
    targets: Vec<(NodeId, bool)>,
    replies: Vec<(NodeId, Option<Object>)>,
    failed: Vec<NodeId>,
}

impl ReadTally {
    pub fn new(quorum: Quorum, targets: Vec<(NodeId, bool)>) -> ReadTally {
        ReadTally {
            quorum,
            targets,
            replies: Vec::new(),
            failed: Vec::new(),
        }
    }

    /// Counts `node` among the replicas asked (once).
    pub fn ask(&mut self, node: NodeId, primary: bool) {
        if !self.targets.iter().any(|(n, _)| *n == node) {
            self.targets.push((node, primary));
        }
    }

    /// Whether some replica answered with less than the merge of all
    /// replies: read repair has work to do.
    pub fn replies_disagree(&self) -> bool {
        self.merged()
            .is_some_and(|merged| !self.stale_replicas(&merged).is_empty())
    }

    fn is_pending(&self, node: NodeId) -> bool {
        self.targets.iter().any(|(n, _)| *n == node)
            && !self.failed.contains(&node)
            && !self.replies.iter().any(|(n, _)| *n == node)
    }

    pub fn on_reply(&mut self, node: NodeId, object: Option<Object>) -> ReadOutcome {
        if self.is_pending(node) {
            self.replies.push((node, object));
        }
        self.outcome()
    }

    pub fn on_failure(&mut self, node: NodeId) -> ReadOutcome {
        if self.is_pending(node) {
            self.failed.push(node);
        }
        self.outcome()
    }

    fn pending(&self) -> Vec<NodeId> {
        self.targets
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| self.is_pending(*n))
            .collect()
    }

    pub fn on_timeout(&mut self) -> ReadOutcome {
        let pending = self.pending();
        self.failed.extend(pending);
        self.outcome()
    }

    /// Whether every replica asked has answered or failed.
    pub fn all_in(&self) -> bool {
        self.targets.iter().all(|(n, _)| !self.is_pending(*n))
    }

    fn is_primary(&self, node: NodeId) -> bool {
        self.targets.iter().any(|(n, p)| *n == node && *p)
    }

    /// The DVV sync of every reply so far.
    pub fn merged(&self) -> Option<Object> {
        self.replies
            .iter()
            .filter_map(|(_, o)| o.as_ref())
            .fold(None, |acc: Option<Object>, o| {
                Some(match acc {
                    None => o.clone(),
                    Some(acc) => acc.sync(o),
                })
            })
    }

    /// Replicas that answered with less than `merged`: they get it back.
    pub fn stale_replicas(&self, merged: &Object) -> Vec<NodeId> {
        self.replies
            .iter()
            .filter(|(_, o)| o.as_ref() != Some(merged))
            .map(|(n, _)| *n)
            .collect()
    }

    /// Where the read stands now.
    pub fn outcome(&self) -> ReadOutcome {
        let primaries = self
            .replies
            .iter()
            .filter(|(n, _)| self.is_primary(*n))
            .count();
        let (r, pr) = (usize::from(self.quorum.r), usize::from(self.quorum.pr));
        if self.replies.len() >= r && primaries >= pr {
            return ReadOutcome::Done {
                merged: self.merged(),
            };
        }
        let pending = self.pending();
        let pending_primaries = pending.iter().filter(|n| self.is_primary(**n)).count();
        if self.replies.len() + pending.len() < r || primaries + pending_primaries < pr {
            return ReadOutcome::Failed {
                replies: self.replies.len() as u8,
                required: self.quorum.r,
            };
        }
        ReadOutcome::Pending
    }
}

#[cfg(test)]
mod tests {
    use norn_clock::{ActorId, Context, Sibling};

    use super::*;

    fn quorum(r: u8) -> Quorum {
        Quorum {
            n: 3,
            r,
            w: 2,
            pr: 0,
            pw: 0,
            dw: 0,
        }
    }

    fn object(actor: u64, value: &[u8]) -> Object {
        Object::new().update(
            &Context::default(),
            ActorId::new(actor, 1),
            Sibling::Value(value.to_vec()),
        )
    }

    #[test]
    fn r_replies_merge_and_stale_replicas_are_named() {
        let targets = (1..=3).map(|i| (NodeId(i), true)).collect();
        let mut tally = ReadTally::new(quorum(2), targets);
        let a = object(1, b"a");
        assert_eq!(
            tally.on_reply(NodeId(1), Some(a.clone())),
            ReadOutcome::Pending
        );
        let ReadOutcome::Done { merged } = tally.on_reply(NodeId(2), None) else {
            panic!("R=2 met")
        };
        assert_eq!(merged, Some(a.clone()));
        assert_eq!(
            tally.stale_replicas(&a),
            vec![NodeId(2)],
            "the replica without the key is repaired"
        );
        let b = object(2, b"b");
        tally.on_reply(NodeId(3), Some(b.clone()));
        let merged = tally.merged().expect("merged");
        assert_eq!(merged, a.sync(&b));
        assert_eq!(
            tally.stale_replicas(&merged),
            vec![NodeId(1), NodeId(2), NodeId(3)]
        );
        assert!(tally.all_in());
    }

    #[test]
    fn a_read_fails_when_r_is_out_of_reach() {
        let targets = (1..=3).map(|i| (NodeId(i), true)).collect();
        let mut tally = ReadTally::new(quorum(3), targets);
        tally.on_reply(NodeId(1), None);
        assert_eq!(
            tally.on_failure(NodeId(2)),
            ReadOutcome::Failed {
                replies: 1,
                required: 3
            }
        );
    }
}
