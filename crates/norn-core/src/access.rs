//! Who may ask what: the one table of which callers each request kind is
//! open to, checked in [`crate::Core::on_request`] before any handler runs.
//!
//! A caller's [`Role`] comes from its certificate (node, data client, admin
//! client; the HTTP API's bearer token counts as a data client) and, for a
//! node, from the rings this node adopted: members of its ring and nodes of
//! earlier rings (*former members*: a node that left may still be handing
//! its data over, or coordinating by the ring it held before it learnt that
//! it left) are admitted to replica and exchange requests; only members of
//! the current ring to tombstone removal. Admin clients may read a
//! replica (its copies, digests, trees and hints) but never write one. A node certificate that was never
//! in a ring this node held may only gossip (to ask to join) and ping: a
//! joiner is admitted once the ring that holds it reaches this node.

use norn_proto::Request;
use norn_ring::Ring;

use crate::io::Caller;

/// A caller's standing, which decides what it may ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// A node of the ring this node holds.
    Member,
    /// A node that was in an earlier ring and is not in this one: it may
    /// still be handing its partitions over.
    FormerMember,
    /// A node certificate this node never saw in a ring.
    UnadmittedNode,
    /// A data client certificate, or the HTTP API's bearer token.
    DataClient,
    /// An admin client certificate.
    AdminClient,
}

impl Role {
    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A set of roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles(u8);

impl Roles {
    const fn of(roles: &[Role]) -> Roles {
        let mut bits = 0;
        let mut i = 0;
        while i < roles.len() {
            bits |= roles[i].bit();
            i += 1;
        }
        Roles(bits)
    }

    pub fn contains(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }
}

use Role::{AdminClient, DataClient, FormerMember, Member, UnadmittedNode};

const ANYONE: Roles = Roles::of(&[
    Member,
    FormerMember,
    UnadmittedNode,
    DataClient,
    AdminClient,
]);
const NODES: Roles = Roles::of(&[Member, FormerMember, UnadmittedNode]);
const MEMBERS: Roles = Roles::of(&[Member]);
const ADMITTED: Roles = Roles::of(&[Member, FormerMember]);
const CLIENTS_AND_NODES: Roles = Roles::of(&[Member, FormerMember, DataClient, AdminClient]);
/// Reads of the ring and members: clients route by them.
const TOPOLOGY: Roles = Roles::of(&[Member, DataClient, AdminClient]);
const ADMIN: Roles = Roles::of(&[AdminClient]);
const ADMITTED_AND_ADMIN: Roles = Roles::of(&[Member, FormerMember, AdminClient]);

/// The roles `request` is open to. Every kind is listed (no wildcard), so
/// a new request kind cannot be added without deciding who may send it.
pub fn allowed(request: &Request) -> Roles {
    match request {
        Request::Ping => ANYONE,
        Request::Gossip(_) => NODES,
        Request::Get { .. } | Request::Put { .. } => CLIENTS_AND_NODES,
        Request::AdminMembers | Request::AdminRing => TOPOLOGY,
        Request::ReplicaPut { .. } => ADMITTED,
        // Hand-over: a node may hold data of a ring that lost to a
        // concurrent commit, whose winner keeps no record of it (norn-sim
        // seed 9469); it proves it was admitted with the admin-signed ring
        // that named it (`Request::admission`), and is then taken as a
        // former member (see `Core::on_request`).
        Request::ReplicaPutMany { .. } => ADMITTED,
        // Tombstone removal is decided by the current ring only.
        Request::DurableKeyDigests { .. } | Request::Reap { .. } => MEMBERS,
        // Reads of one replica: exchanges and transfers, and admins
        // inspecting a replica's copies, trees and hint queues (the reaper
        // asks every member for its hints).
        Request::KeyDigests { .. } => ADMITTED_AND_ADMIN,
        Request::ReplicaGet { .. }
        | Request::ReplicaGetMany { .. }
        | Request::TreeNodes { .. }
        | Request::SegmentDigests { .. }
        | Request::TreeRoots { .. }
        | Request::AdminHints => ADMITTED_AND_ADMIN,
        Request::AdminJoin { .. }
        | Request::AdminStage { .. }
        | Request::AdminPlan
        | Request::AdminPropose { .. }
        | Request::AdminCommit { .. }
        | Request::AdminRepair { .. }
        | Request::AdminRepairProgress
        | Request::AdminRepairStatus
        | Request::AdminTransfers
        | Request::AdminLatencies
        | Request::AdminFailureHistory
        | Request::AdminStatus => ADMIN,
    }
}

/// The name of a request kind, for refusals and their metric.
pub fn kind(request: &Request) -> &'static str {
    match request {
        Request::Ping => "ping",
        Request::Gossip(_) => "gossip",
        Request::Get { .. } => "get",
        Request::Put { .. } => "put",
        Request::AdminMembers => "admin_members",
        Request::AdminRing => "admin_ring",
        Request::ReplicaPut { .. } => "replica_put",
        Request::TreeNodes { .. } => "tree_nodes",
        Request::SegmentDigests { .. } => "segment_digests",
        Request::ReplicaGetMany { .. } => "replica_get_many",
        Request::TreeRoots { .. } => "tree_roots",
        Request::DurableKeyDigests { .. } => "durable_key_digests",
        Request::Reap { .. } => "reap",
        Request::KeyDigests { .. } => "key_digests",
        Request::ReplicaPutMany { .. } => "replica_put_many",
        Request::ReplicaGet { .. } => "replica_get",
        Request::AdminHints => "admin_hints",
        Request::AdminJoin { .. } => "admin_join",
        Request::AdminStage { .. } => "admin_stage",
        Request::AdminPlan => "admin_plan",
        Request::AdminPropose { .. } => "admin_propose",
        Request::AdminCommit { .. } => "admin_commit",
        Request::AdminRepair { .. } => "admin_repair",
        Request::AdminRepairProgress => "admin_repair_progress",
        Request::AdminRepairStatus => "admin_repair_status",
        Request::AdminTransfers => "admin_transfers",
        Request::AdminLatencies => "admin_latencies",
        Request::AdminFailureHistory => "admin_failure_history",
        Request::AdminStatus => "admin_status",
    }
}

/// The role of `caller`, given the ring this node holds (whose departed
/// nodes are the former members).
pub fn role_of(caller: &Caller, ring: Option<&Ring>) -> Role {
    match caller {
        Caller::Node(id) if ring.is_some_and(|r| r.members().contains_key(id)) => Member,
        Caller::Node(id) if ring.is_some_and(|r| r.departed().contains(id)) => FormerMember,
        Caller::Node(_) => UnadmittedNode,
        Caller::Client {
            role: norn_proto::ClientRole::Admin,
            ..
        } => AdminClient,
        Caller::Client {
            role: norn_proto::ClientRole::Data,
            ..
        }
        | Caller::Http => DataClient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reaps_are_open_to_members_of_the_current_ring_only() {
        let reap = Request::Reap { items: Vec::new() };
        for role in [FormerMember, UnadmittedNode, DataClient, AdminClient] {
            assert!(!allowed(&reap).contains(role), "{role:?}");
        }
        assert!(allowed(&reap).contains(Member));
    }

    #[test]
    fn an_unadmitted_node_may_ping_but_not_read_write_or_administer() {
        let open: Vec<_> = [
            Request::Ping,
            Request::AdminMembers,
            Request::AdminPropose { revoke: Vec::new() },
            Request::ReplicaGetMany { keys: Vec::new() },
            Request::Get {
                bucket: b"b".to_vec(),
                key: b"k".to_vec(),
                options: Default::default(),
                timeout_ms: None,
            },
        ]
        .iter()
        .filter(|r| allowed(r).contains(UnadmittedNode))
        .map(kind)
        .collect();
        assert_eq!(open, ["ping"]);
    }

    #[test]
    fn a_data_client_gets_no_admin_operation() {
        for request in [
            Request::AdminPropose { revoke: Vec::new() },
            Request::AdminPlan,
            Request::AdminRepair { partition: None },
            Request::AdminHints,
            Request::ReplicaGet {
                bucket: b"b".to_vec(),
                key: b"k".to_vec(),
            },
        ] {
            assert!(
                !allowed(&request).contains(DataClient),
                "{}",
                kind(&request)
            );
            assert!(
                allowed(&request).contains(AdminClient),
                "{}",
                kind(&request)
            );
        }
    }
}
