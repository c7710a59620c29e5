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
    /// The node's own signature over [`Member::signed_content`], so that a
    /// relay can carry a change of its identity but not make one.
    pub proof: Option<Box<RecordProof>>,
}

/// A node's signature over the identity of its own record: its
/// certificate (DER, naming the node), when it signed (seconds since the
/// Unix epoch; the certificate must have been valid then) and the
/// signature. Checked by the node (`norn_trust`), not by this crate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordProof {
    #[serde(with = "serde_bytes")]
    pub certificate: Vec<u8>,
    pub signed_at: u64,
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

impl Member {
    /// Whether this record is newer than `other` (of the same node).
    pub fn newer_than(&self, other: &Member) -> bool {
        (self.incarnation, self.heartbeat) > (other.incarnation, other.heartbeat)
    }

    /// The fields only the node itself may change (all but the heartbeat,
    /// the hand-offs and the proof), in one canonical encoding: what it
    /// signs.
    pub fn signed_content(&self) -> Vec<u8> {
        let state = match self.state {
            MemberState::Active => 0u8,
            MemberState::Leaving => 1,
        };
        let mut bytes = Vec::with_capacity(64 + self.name.len() + self.address.len());
        bytes.extend_from_slice(&self.id.0.to_be_bytes());
        for text in [&self.name, &self.address, &self.zone] {
            bytes.extend_from_slice(&(text.len() as u64).to_be_bytes());
            bytes.extend_from_slice(text.as_bytes());
        }
        bytes.extend_from_slice(&self.weight.to_be_bytes());
        bytes.push(state);
        bytes.extend_from_slice(&self.incarnation.to_be_bytes());
        bytes
    }

    /// Whether `other` says the same as this record of everything the node
    /// signs: a relay of it carries only a heartbeat and hand-offs.
    pub fn same_identity(&self, other: &Member) -> bool {
        self.id == other.id
            && self.name == other.name
            && self.address == other.address
            && self.zone == other.zone
            && self.weight == other.weight
            && self.state == other.state
            && self.incarnation == other.incarnation
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
