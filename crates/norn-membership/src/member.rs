//! What nodes gossip about each other.

use norn_ring::{NodeId, Partition};
use serde::{Deserialize, Serialize};

/// A member's place in the cluster's life cycle. Unlike up and down, which
/// are local opinions, the state is agreed through gossip: the record with
/// the higher `(incarnation, heartbeat)` wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberState {
    /// Known to the cluster; owns partitions once a committed ring says so.
    Active,
    /// Shutting down cleanly; peers may mark it down without suspicion.
    Leaving,
}

/// One node as gossiped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: NodeId,
    pub name: String,
    /// Where its QUIC endpoint listens, `host:port`.
    pub address: String,
    pub zone: String,
    /// Relative capacity for the ring's claim.
    pub weight: u32,
    pub state: MemberState,
    /// Bumped on every start of the node; a restart is a newer record even
    /// though its heartbeat starts again at 0.
    pub incarnation: u64,
    /// Bumped by the node itself every gossip round.
    pub heartbeat: u64,
    /// Partitions the node still holds data of for other owners (ownership
    /// transfers in progress); coordinators send writes of these partitions
    /// to it as well until it is done.
    pub handoffs: Vec<Partition>,
}

impl Member {
    /// Whether this record is newer than `other` (of the same node).
    pub fn newer_than(&self, other: &Member) -> bool {
        (self.incarnation, self.heartbeat) > (other.incarnation, other.heartbeat)
    }
}

/// A ring change waiting for `norn admin commit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeKind {
    /// The node joins the ring and takes its share of partitions.
    Join,
    /// The node leaves the ring; its partitions go to the others.
    Leave,
    /// The node is gone for good and is taken out of the ring.
    Remove,
}

/// One staged change, gossiped so that any node can plan and commit it.
///
/// Once a ring that reflects a change is adopted (the joiner is in it, the
/// leaver is not), the change is dropped everywhere. Of two changes to one
/// node, the one staged against the newer ring wins, then the later stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedChange {
    pub node: NodeId,
    pub kind: ChangeKind,
    /// The ring version the change was staged against (0: no ring yet).
    pub base_version: u64,
    /// Orders changes to one node: higher wins, then the stager's id.
    pub stamp: u64,
    pub staged_by: NodeId,
}

impl StagedChange {
    fn order(&self) -> (u64, u64, NodeId) {
        (self.base_version, self.stamp, self.staged_by)
    }

    /// Whether `ring` already holds what this change asks for.
    pub fn is_reflected_in(&self, ring: &norn_ring::Ring) -> bool {
        let member = ring.members().contains_key(&self.node);
        match self.kind {
            ChangeKind::Join => member,
            ChangeKind::Leave | ChangeKind::Remove => !member,
        }
    }

    /// Whether this change should replace `other` (for the same node).
    pub fn supersedes(&self, other: &StagedChange) -> bool {
        self.order() > other.order()
    }
}
