//! Requests and responses between nodes, and between clients and nodes.
//!
//! Variants are only appended: bincode encodes the variant index, so
//! reordering would change the meaning of old frames.

use norn_clock::Object;
use norn_membership::{ChangeKind, GossipMessage, Member, StagedChange};
use norn_ring::{NodeId, Ring};
use serde::{Deserialize, Serialize};

/// A request; its reply is a [`Response`] with the same request id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Liveness and round-trip probe.
    Ping,
    /// Read one replica's local copy of a key.
    ReplicaGet {
        #[serde(with = "serde_bytes")]
        bucket: Vec<u8>,
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Merge `object` into one replica's copy of a key. `hint_for` names the
    /// primary a fallback stands in for; `sync` asks for an fsync before the
    /// reply.
    ReplicaPut {
        #[serde(with = "serde_bytes")]
        bucket: Vec<u8>,
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        n: u8,
        object: Object,
        hint_for: Option<NodeId>,
        sync: bool,
    },
    /// Membership gossip between nodes; its sender must be the peer the
    /// connection's certificate names.
    Gossip(GossipMessage),
    /// Admin: every member as the receiving node sees it.
    AdminMembers,
    /// Admin: the receiving node's ring.
    AdminRing,
    /// Admin, sent to a new node: contact `seed` and stage this node's join.
    AdminJoin { seed: String },
    /// Admin: stage a change of the node named `node` (a name or an id).
    AdminStage { node: String, kind: ChangeKind },
    /// Admin: what committing the staged changes would do.
    AdminPlan,
    /// Admin: commit the staged changes as the next ring.
    AdminCommit,
}

/// A reply to a [`Request`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    Pong,
    /// A replica's copy of a key, if it has one.
    Replica {
        object: Option<Object>,
    },
    /// A replica merged the write; `synced` says it reached the disk.
    Stored {
        synced: bool,
    },
    Error(ErrorReply),
    /// The request was taken; nothing to return.
    Ack,
    Members(Vec<MemberInfo>),
    Ring(Option<Ring>),
    Plan(PlanView),
    /// The staged changes were committed as ring `version`.
    Committed {
        version: u64,
    },
    /// A change was staged.
    Staged(StagedChange),
}

/// A member as one node sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub member: Member,
    pub up: bool,
    pub phi: f64,
}

/// What a commit of the staged changes would do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanView {
    /// The current ring's version (0: no ring yet).
    pub current_version: u64,
    pub staged: Vec<StagedChange>,
    /// Per node of the current or proposed ring.
    pub nodes: Vec<PlanNode>,
    /// The replication factor zone diversity was checked for.
    pub n: u8,
    /// Partitions whose N primaries would not span `min(N, zones)` zones.
    pub zone_violations: u32,
    /// Why the staged changes cannot be committed, if they cannot.
    pub refusal: Option<String>,
}

/// One node's partitions before and after a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanNode {
    pub id: NodeId,
    pub name: String,
    pub owned_now: u32,
    pub owned_after: u32,
    pub gained: u32,
    pub lost: u32,
}

/// A stable, machine-readable error class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The request was malformed or out of bounds; nothing changed.
    BadRequest,
    /// The node's storage failed; the write may not have happened.
    Storage,
    /// The node is shutting down or overloaded; nothing changed.
    Unavailable,
    /// The caller may not make this request (a client sending gossip, a
    /// node claiming another's id); nothing changed.
    Forbidden,
    /// The request conflicts with the cluster's state (say, a commit with
    /// nothing staged); nothing changed.
    Conflict,
}

/// An error a node returns instead of a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub code: ErrorCode,
    pub message: String,
}
