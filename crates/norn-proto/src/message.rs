//! Requests and responses between nodes, and between clients and nodes.
//!
//! Variants are only appended: bincode encodes the variant index, so
//! reordering would change the meaning of old frames.

use norn_clock::{Context, Object, Sibling};
use norn_membership::{ChangeKind, GossipMessage, Member, StagedChange};
use norn_ring::{CertificateFingerprint, NodeId, Partition, Ring};
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
    /// Admin: the next ring the staged changes make, with `revoke` added to
    /// its revoked certificates, for the admin to sign (unsigned, not
    /// adopted; at most `norn_ring::REVOKED_MAX` fingerprints).
    AdminPropose { revoke: Vec<CertificateFingerprint> },
    /// Admin: adopt `ring`, signed by the admin (see `norn_trust`), as the
    /// next ring.
    AdminCommit { ring: Ring },
    /// Read a key with a quorum.
    Get {
        #[serde(with = "serde_bytes")]
        bucket: Vec<u8>,
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        options: QuorumOptions,
        timeout_ms: Option<u64>,
    },
    /// Write (`value: Some`) or delete (`None`) a key with a quorum, over the
    /// causal context the client read (`None`: a blind write, which adds a
    /// sibling to whatever exists). `forwarded` is set by a node that passed
    /// the write to a preference-list node, which then coordinates it.
    Put {
        #[serde(with = "serde_bytes")]
        bucket: Vec<u8>,
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        value: Option<Vec<u8>>,
        context: Option<Context>,
        options: QuorumOptions,
        timeout_ms: Option<u64>,
        forwarded: bool,
    },
    /// Admin: pending hints per target node.
    AdminHints,
    /// Anti-entropy: the hashes of the nodes at `level` (0 is the root) with
    /// the given indices, of the receiver's tree of `(partition, n)`.
    TreeNodes {
        partition: Partition,
        n: u8,
        level: u8,
        indices: Vec<u32>,
    },
    /// Anti-entropy: every key of `(partition, n)` in the given tree
    /// segments, with the digest of its stored version.
    SegmentDigests {
        partition: Partition,
        n: u8,
        segments: Vec<u32>,
    },
    /// The digest of the receiver's copy of each key (`None`: absent or
    /// unreadable). `admission`: see [`Request::ReplicaPutMany`].
    KeyDigests {
        keys: Vec<KeyRef>,
        admission: Option<Box<Ring>>,
    },
    /// The receiver's copy of each key.
    ReplicaGetMany { keys: Vec<KeyRef> },
    /// Merge each object into the receiver's copy (DVV sync), as a batch of
    /// [`Request::ReplicaPut`] without hints. `ring_version` is the sender's:
    /// a receiver with an older ring holds back its own transfers until it
    /// has caught up, so it does not hand data back by an outdated ring.
    /// `admission`: an admin-signed ring naming the sender, set by a
    /// sender its current ring does not name (one that holds data of a
    /// ring that lost to a concurrent commit), so that a receiver that
    /// never knew it as a member still takes its hand-over.
    ReplicaPutMany {
        n: u8,
        ring_version: u64,
        items: Vec<KeyObject>,
        admission: Option<Box<Ring>>,
    },
    /// Remove each key whose stored version still has the given digest (a
    /// tombstone every replica was seen to hold).
    Reap { items: Vec<KeyDigest> },
    /// Admin: run anti-entropy exchanges now for `partition`, or for every
    /// partition the receiver replicates; replies with the progress of the
    /// running repair (a second request joins the running one).
    AdminRepair { partition: Option<Partition> },
    /// Admin: the progress of the receiver's current or last repair.
    AdminRepairProgress,
    /// Admin: per partition the receiver replicates, how long ago an
    /// exchange last found it equal on every replica.
    AdminRepairStatus,
    /// Admin: the receiver's outgoing ownership transfers.
    AdminTransfers,
    /// Anti-entropy: the root hash of the receiver's tree of `(p, n)` for
    /// each partition `p`, in order (answered with [`Response::Hashes`]):
    /// a repair compares whole rings of partitions in a few requests and
    /// exchanges only the partitions whose roots differ.
    TreeRoots { n: u8, partitions: Vec<Partition> },
    /// [`Request::KeyDigests`], answered only once the receiver's storage
    /// is synced: the versions it answers with are on its disk. Tombstone
    /// removal asks the primaries this, so that no primary can lose a
    /// tombstone to a power cut (and bring back what it shadowed) after
    /// the others removed it.
    DurableKeyDigests { keys: Vec<KeyRef> },
    /// Admin: the receiver's latency histograms, for staleness predictions
    /// (`norn admin pbs`).
    AdminLatencies,
    /// Admin: the outages of its peers the receiver saw and its repair
    /// work, for the durability model (`norn admin model`).
    AdminFailureHistory,
    /// Admin: whether the receiver is ready to serve, and what a ring
    /// change waits for on it (answered with [`Response::Status`]).
    AdminStatus,
}

impl Request {
    /// Whether the request may arrive twice with no other effect than once:
    /// reads, merges (DVV sync is idempotent), reaps by digest and gossip.
    /// Not a write to coordinate (it would issue a second dot) nor an
    /// admin request.
    pub fn is_repeatable(&self) -> bool {
        match self {
            Request::Ping
            | Request::Gossip(_)
            | Request::Get { .. }
            | Request::ReplicaGet { .. }
            | Request::ReplicaPut { .. }
            | Request::TreeNodes { .. }
            | Request::SegmentDigests { .. }
            | Request::KeyDigests { .. }
            | Request::ReplicaGetMany { .. }
            | Request::ReplicaPutMany { .. }
            | Request::Reap { .. }
            | Request::TreeRoots { .. }
            | Request::DurableKeyDigests { .. } => true,
            Request::Put { .. }
            | Request::AdminMembers
            | Request::AdminRing
            | Request::AdminJoin { .. }
            | Request::AdminStage { .. }
            | Request::AdminPlan
            | Request::AdminPropose { .. }
            | Request::AdminCommit { .. }
            | Request::AdminHints
            | Request::AdminRepair { .. }
            | Request::AdminRepairProgress
            | Request::AdminRepairStatus
            | Request::AdminTransfers
            | Request::AdminLatencies
            | Request::AdminFailureHistory
            | Request::AdminStatus => false,
        }
    }

    /// The admission ring a hand-over request carries, if any.
    pub fn admission(&self) -> Option<&Ring> {
        match self {
            Request::KeyDigests { admission, .. } | Request::ReplicaPutMany { admission, .. } => {
                admission.as_deref()
            }
            _ => None,
        }
    }
}

/// A key named on the wire.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct KeyRef {
    #[serde(with = "serde_bytes")]
    pub bucket: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
}

/// A key with the digest of one replica's stored version of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyDigest {
    pub key: KeyRef,
    pub digest: u64,
}

/// A key with one replica's object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyObject {
    pub key: KeyRef,
    pub object: Object,
}

/// What a repair has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairProgress {
    pub running: bool,
    pub partitions_total: u32,
    pub partitions_done: u32,
    /// Exchanges that could not finish (peer unreachable, error).
    pub exchanges_failed: u32,
    /// Keys whose digests were compared (in differing segments only).
    pub keys_compared: u64,
    /// Keys that differed.
    pub keys_different: u64,
    /// Keys written on either side to repair a difference.
    pub keys_repaired: u64,
    /// Request and reply bytes sent and received by the exchanges.
    pub bytes: u64,
    pub elapsed_ms: u64,
}

/// When one partition was last verified equal on all its replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionVerified {
    pub partition: Partition,
    /// Milliseconds since; `None`: not since this node started.
    pub ago_ms: Option<u64>,
}

/// One outgoing ownership transfer: this node holds `(partition, n)` data
/// that belongs to `targets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferView {
    pub partition: Partition,
    pub n: u8,
    pub targets: Vec<NodeId>,
    /// Keys and bytes sent, counted across restarts (from the checkpoint).
    pub keys_sent: u64,
    pub bytes_sent: u64,
    /// Keys still held here for the targets (at the last pass).
    pub keys_left: u64,
    /// Whether this transfer resumed from a checkpoint after a restart.
    pub resumed: bool,
    pub state: TransferState,
}

/// Where a transfer stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransferState {
    Running,
    /// Paused; the reason, say a target that is down.
    Waiting(String),
    /// Every key is held by every target and was dropped here.
    Done,
}

/// What a request asked for; `None` takes the node's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumOptions {
    pub n: Option<u8>,
    pub r: Option<u8>,
    pub w: Option<u8>,
    pub pr: Option<u8>,
    pub pw: Option<u8>,
    pub dw: Option<u8>,
}

/// What a write did, returned with every write reply and write error.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteReceipt {
    /// Replicas the write was sent to.
    pub sent: u8,
    /// Primaries that acknowledged.
    pub primaries: Vec<NodeId>,
    /// Fallbacks that acknowledged, each with the primary it stands in for.
    pub fallbacks: Vec<(NodeId, NodeId)>,
    /// Acknowledgements that came after an fsync.
    pub synced: u8,
    pub quorum_met: bool,
}

impl WriteReceipt {
    /// Replicas that acknowledged.
    pub fn acked(&self) -> u8 {
        (self.primaries.len() + self.fallbacks.len()) as u8
    }
}

/// A quorum read's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetReply {
    /// Every sibling, tombstones included; empty if no replica had the key.
    pub siblings: Vec<Sibling>,
    /// The causal context to send back with the next write of this key.
    pub context: Context,
    /// Replicas that answered.
    pub replies: u8,
    /// Set when the siblings pass the configured warning count.
    pub warning: Option<String>,
}

impl GetReply {
    /// Whether the key reads as not found: no sibling, or only tombstones.
    pub fn is_not_found(&self) -> bool {
        self.siblings
            .iter()
            .all(|s| matches!(s, Sibling::Tombstone))
    }
}

/// A quorum write's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutReply {
    pub receipt: WriteReceipt,
    /// The context of the object after this write, on the coordinator: a
    /// next write with it supersedes this one without a read.
    pub context: Context,
    /// Siblings of the key after this write, on the coordinator.
    pub siblings: u32,
    /// Set when the siblings pass the configured warning count.
    pub warning: Option<String>,
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
    Ring(Option<Box<Ring>>),
    Plan(PlanView),
    /// The ring an `AdminPropose` asked for, unsigned.
    Proposed(Box<Ring>),
    /// The staged changes were committed as ring `version`.
    Committed {
        version: u64,
    },
    /// A change was staged.
    Staged(StagedChange),
    Value(GetReply),
    Written(PutReply),
    /// A write did not meet its quorum; `receipt` says how many replicas
    /// did write it.
    WriteFailed {
        receipt: WriteReceipt,
        message: String,
    },
    /// Pending hints per target: count and bytes.
    Hints(Vec<(NodeId, u64, u64)>),
    /// Tree node hashes, in the order asked.
    Hashes(Vec<u128>),
    /// The keys of the listed segments, with their digests: every segment
    /// asked for up to the replier's batch budget (at least one), in
    /// segment order; the asker asks again for the others.
    SegmentDigests {
        segments: Vec<u32>,
        digests: Vec<KeyDigest>,
    },
    /// One digest per key asked, in order.
    KeyDigests(Vec<Option<u64>>),
    /// One object per key asked, in order, for the first keys asked: as
    /// many as the replier's batch budget holds (at least one); the asker
    /// asks again for the rest.
    Objects(Vec<Option<Object>>),
    /// How many of a batch were stored (or reaped).
    StoredMany {
        count: u32,
    },
    Repair(RepairProgress),
    RepairStatus(Vec<PartitionVerified>),
    Transfers(Vec<TransferView>),
    Latencies(NodeLatencies),
    FailureHistory(NodeFailureHistory),
    Status(NodeStatus),
}

/// A latency histogram: per non-empty bucket, its highest value in
/// microseconds and its count, lowest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencyBuckets {
    pub buckets: Vec<(u64, u64)>,
}

/// Round trips of replica requests from one node to `peer`: from sending
/// to having the answer, as the sender timed them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerLatencies {
    pub peer: NodeId,
    pub write_round_trip: LatencyBuckets,
    pub read_round_trip: LatencyBuckets,
}

/// What one node measured over its last window or two: how long it took
/// to serve replica writes and reads (from the request's arrival at its
/// core to the answer), and its round trips to each peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeLatencies {
    pub node: NodeId,
    pub write_service: LatencyBuckets,
    pub read_service: LatencyBuckets,
    pub peers: Vec<PeerLatencies>,
}

/// One peer's outages as a node's failure detector saw them, from the
/// peer's first time seen up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerOutages {
    pub node: NodeId,
    /// Time since the peer was first seen up, ms.
    pub watched_ms: u64,
    /// Times the peer went from up to down.
    pub down_events: u64,
    /// Time the peer was seen down, ms, the current outage included.
    pub down_ms: u64,
}

/// What one node saw of failures and repairs since it started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFailureHistory {
    pub node: NodeId,
    /// How long the node has run, ms.
    pub watched_ms: u64,
    pub peers: Vec<PeerOutages>,
    /// Bytes of data the node stores.
    pub storage_bytes: u64,
    /// Bytes moved by finished repair work (ownership transfers, and
    /// anti-entropy verifications that repaired keys), and the time that
    /// work ran, ms.
    pub repair_bytes: u64,
    pub repair_busy_ms: u64,
    /// Age of the least recently verified partition, once every partition
    /// of the node was verified since it started: at most the time one
    /// sweep of anti-entropy over its partitions takes.
    pub sweep_ms: Option<u64>,
}

/// One node's readiness and what it still holds for others: what
/// `/health/ready`, `norn admin status`, `leave --wait` and the autopilot
/// read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub node: NodeId,
    pub name: String,
    /// The version of the ring the node holds (0: none), and the newest
    /// version an up member of that ring said it holds.
    pub ring_version: u64,
    pub newest_ring_seen: u64,
    /// The node is a member of its ring; it left it (its ring lists it as
    /// departed, so `auto_join` does not join it again).
    pub in_ring: bool,
    pub departed: bool,
    /// A change of this node (its join or leave) is staged.
    pub change_staged: bool,
    /// Members of the ring, and how many of them the node sees up (itself
    /// included).
    pub ring_members: u32,
    pub ring_members_up: u32,
    /// `(partition, N)` pairs whose data the node holds but is not a
    /// primary of: ownership transfers still to run.
    pub handoffs_pending: u32,
    /// Hints the node holds for other nodes.
    pub hints_pending: u64,
    /// Transfers that stopped on an error of this node (its storage), not
    /// on a peer being away.
    pub transfers_failed: u32,
    /// Why the node is not ready; empty when it is.
    pub not_ready: Vec<String>,
}

impl NodeStatus {
    /// Ready to serve: it holds the newest ring, sees a quorum of the
    /// ring's members up and no transfer of its failed.
    pub fn is_ready(&self) -> bool {
        self.not_ready.is_empty()
    }
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
    /// Too few replicas answered in time; a write may have reached some.
    QuorumNotMet,
    /// The write would pass the sibling limit; nothing was written.
    TooManySiblings,
    /// The request timed out; a write may have reached some replicas.
    Timeout,
    /// The write would leave an object past the size limit; nothing was
    /// written.
    TooLarge,
}

/// An error a node returns instead of a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub code: ErrorCode,
    pub message: String,
}
