//! What goes in and out of a [`crate::Core`]: who asks, what the core asks
//! its driver to do, and the handles that connect an answer to its
//! question. The core never performs I/O beyond its storage; a driver
//! (nornd over QUIC and HTTP, the simulator over its virtual network)
//! carries out every [`Effect`] and feeds back what became of it.

use std::collections::BTreeSet;

use norn_proto::{ClientRole, Request, Response};
use norn_ring::{CertificateFingerprint, NodeId};

/// Who sent a request, as the transport authenticated it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Caller {
    /// A node certificate naming this node id.
    Node(NodeId),
    /// A client certificate with this name and role.
    Client { name: String, role: ClientRole },
    /// The node's own HTTP API (authenticated by its bearer token).
    Http,
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Caller::Node(id) => write!(f, "node {id}"),
            Caller::Client { name, role } => write!(f, "{role} client {name}"),
            Caller::Http => write!(f, "the HTTP API"),
        }
    }
}

/// The driver's handle of an incoming request; the core answers it with
/// exactly one [`Effect::Reply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CallId(pub u64);

/// The core's handle of an outgoing request; the driver reports its
/// outcome with [`crate::Core::on_reply`] exactly once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Token(pub u64);

/// The core's handle of a storage sync it waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SyncToken(pub u64);

/// Where an outgoing request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A member, at the address it advertises.
    Node { id: NodeId, address: String },
    /// An address whose node is not known yet (a join seed).
    Address(String),
}

/// Why an outgoing request got no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallFailure {
    /// No answer within the request's timeout.
    Timeout,
    /// The peer could not be reached or the connection broke.
    Unreachable(String),
}

/// A timer the core sets; the driver calls [`crate::Core::on_timer`] with
/// it once the time comes. A later timer of the same kind replaces an
/// earlier one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    Gossip,
    HintDelivery,
    AntiEntropy,
    Transfers,
    /// A coordinated client request reaches its deadline.
    Deadline(u64),
    /// A coordinated read without R replies asks the replicas it left out.
    Speculate(u64),
    /// A throttled background job may send again.
    Throttle(Job),
}

/// The background jobs that pace their traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Job {
    Verification,
    Transfer,
}

/// What the core asks its driver to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send `request`; report the response or failure for `token`, within
    /// `timeout_ms`.
    Send {
        to: Destination,
        token: Token,
        request: Request,
        timeout_ms: u64,
    },
    /// Answer the incoming request `call`.
    Reply { call: CallId, response: Response },
    /// Make every write before this effect durable (fsync), then call
    /// [`crate::Core::on_synced`]. Syncs asked for while one runs may share
    /// the next one (group commit).
    Sync { token: SyncToken },
    /// Call [`crate::Core::on_timer`] with `timer` at `at_ms`.
    SetTimer { at_ms: u64, timer: Timer },
    /// From now on refuse every connection whose peer presents one of
    /// `certificates` (the whole set the ring revokes, replacing the last),
    /// and close those open.
    Refuse {
        certificates: BTreeSet<CertificateFingerprint>,
    },
}
