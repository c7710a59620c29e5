//! The state every part of a core shares: who the node is, its storage and
//! lifetime, membership and ring, the clock reading of the current input,
//! the outbox, the metrics. Each part (coordinator, handoff, verification,
//! transfers) keeps its own state and is handed this one.

use std::collections::BTreeSet;
use std::sync::Arc;

use norn_clock::Lifetime;
use norn_membership::Membership;
use norn_proto::{ErrorCode, ErrorReply, Request, Response};
use norn_ring::{CertificateFingerprint, NodeId, Partition, Ring};
use norn_storage::Storage;

use crate::config::CoreConfig;
use crate::history::FailureHistory;
use crate::io::{CallId, Destination, Timer, Token};
use crate::metrics::Metrics;
use crate::outbox::{Outbox, Route};
use crate::replica::LocalReplica;
use crate::serve::{ClusterView, Served};

/// Meta record of the ring this node holds.
pub(crate) const RING_META: &str = "ring";
/// Meta record of the last ring that named this node before one that does
/// not (see [`NodeState::handover_admission`]).
pub(crate) const ADMISSION_META: &str = "admission";

/// The shared state of one node.
#[derive(Debug)]
pub(crate) struct NodeState {
    /// The clock reading of the input being handled, in ms.
    pub(crate) now: u64,
    pub(crate) started_ms: u64,
    pub(crate) config: CoreConfig,
    pub(crate) id: NodeId,
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) lifetime: Lifetime,
    pub(crate) membership: Membership,
    pub(crate) ring: Option<Arc<Ring>>,
    pub(crate) out: Outbox,
    pub(crate) metrics: Metrics,
    /// The newest ring version a peer sent data by (see
    /// [`Request::ReplicaPutMany`]): this node's transfers wait for it.
    pub(crate) newest_ring_seen: u64,
    /// The last admin-signed ring that named this node, kept once a ring
    /// that does not replaced it: the proof of admission its hand-over
    /// carries.
    pub(crate) admission: Option<Arc<Ring>>,
    /// Peers' outages and this node's repair work, for `AdminFailureHistory`.
    pub(crate) history: FailureHistory,
}

/// An error reply.
pub(crate) fn error(code: ErrorCode, message: impl std::fmt::Display) -> Response {
    Response::Error(ErrorReply {
        code,
        message: message.to_string(),
    })
}

impl NodeState {
    /// This node's replica: its storage, this run's actors, the limits.
    pub(crate) fn replica(&self) -> LocalReplica<'_> {
        LocalReplica {
            storage: &*self.storage,
            lifetime: &self.lifetime,
            limits: self.config.object_limits(),
        }
    }

    pub(crate) fn ring(&self) -> Option<Arc<Ring>> {
        self.ring.clone()
    }

    /// The ring, or the error every request that needs one gets.
    pub(crate) fn ring_or_refusal(&self) -> Result<Arc<Ring>, Response> {
        self.ring()
            .ok_or_else(|| error(ErrorCode::Unavailable, "this node holds no ring yet"))
    }

    /// What `caller` may ask of this node (see [`crate::access`]).
    pub(crate) fn role_of(&self, caller: &crate::io::Caller) -> crate::access::Role {
        crate::access::role_of(caller, self.ring.as_deref())
    }

    pub(crate) fn is_up(&self, node: NodeId) -> bool {
        node == self.id || self.membership.is_up(node)
    }

    /// Whether some up node still hands `partition` off to its owners.
    pub(crate) fn handing_off(&self, partition: Partition) -> bool {
        !self.membership.handing_off(partition).is_empty()
    }

    /// Answers the replica-side requests of exchanges, transfers and reaps.
    pub(crate) fn serve_replica(&self, request: &Request) -> Option<Served> {
        let ring = self.ring()?;
        let handing_off = |p| self.handing_off(p);
        let cluster = ClusterView {
            ring: &ring,
            handing_off: &handing_off,
        };
        self.replica().serve(cluster, request)
    }

    /// Sends `request` to member `node` with the peer request timeout;
    /// `None` when its address is not known (the caller counts it as
    /// failed at once).
    pub(crate) fn send_to(
        &mut self,
        route: Route,
        node: NodeId,
        request: Request,
    ) -> Option<Token> {
        let timeout_ms = self.config.peer_request_timeout_ms;
        self.send_within(route, node, request, timeout_ms)
    }

    /// [`NodeState::send_to`] with its own timeout.
    pub(crate) fn send_within(
        &mut self,
        route: Route,
        node: NodeId,
        request: Request,
        timeout_ms: u64,
    ) -> Option<Token> {
        let address = self.membership.member(node)?.address.clone();
        Some(self.out.send(
            route,
            Destination::Node { id: node, address },
            request,
            timeout_ms,
        ))
    }

    pub(crate) fn reply(&mut self, call: CallId, response: Response) {
        self.out.reply(call, response);
    }

    /// Sets `timer` to fire `after_ms` from now.
    pub(crate) fn timer_in(&mut self, after_ms: u64, timer: Timer) {
        let at = self.now + after_ms;
        self.out.timer(at, timer);
    }

    /// Milliseconds since the core started.
    pub(crate) fn uptime_ms(&self) -> u64 {
        self.now.saturating_sub(self.started_ms)
    }

    /// The certificates this node's ring revokes.
    pub(crate) fn revoked(&self) -> &BTreeSet<CertificateFingerprint> {
        static NONE: BTreeSet<CertificateFingerprint> = BTreeSet::new();
        self.ring.as_deref().map_or(&NONE, Ring::revoked)
    }

    /// Whether this node could hand data it stores over to other members:
    /// its ring names it as a member or a departed one, or it keeps the
    /// last ring that named it. A node that is none of these (its join is
    /// not in its ring yet, or lost to a concurrent commit) must not store
    /// replica writes: no member would take them from it.
    pub(crate) fn can_hand_over(&self) -> bool {
        let departed = self
            .ring
            .as_ref()
            .is_some_and(|ring| ring.departed().contains(&self.id));
        self.named_in_ring() || departed || self.admission.is_some()
    }

    fn named_in_ring(&self) -> bool {
        self.ring
            .as_ref()
            .is_some_and(|ring| ring.members().contains_key(&self.id))
    }

    /// What this node's hand-over requests carry to prove it was admitted:
    /// nothing while its ring names it, else the last ring that did.
    pub(crate) fn handover_admission(&self) -> Option<Box<Ring>> {
        if self.named_in_ring() {
            return None;
        }
        self.admission.as_deref().cloned().map(Box::new)
    }

    /// Adopts `ring`: keeps it and persists it (fsynced) in `meta`. When
    /// it drops this node, the ring it replaces is kept as the node's
    /// admission (persisted as well).
    pub(crate) fn adopt_ring(&mut self, ring: Ring) {
        let dropped_me = !ring.members().contains_key(&self.id) && self.named_in_ring();
        if dropped_me {
            let old = self.ring.clone();
            if let Some(encoded) = old
                .as_deref()
                .and_then(|o| norn_proto::codec::encode(o).ok())
            {
                if let Err(e) = self.storage.put_meta(ADMISSION_META, &encoded) {
                    tracing::error!(error = %e, "the ring that admitted this node was not persisted");
                }
            }
            self.admission = old;
        }
        let stored = norn_proto::codec::encode(&ring)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                self.storage
                    .put_meta(RING_META, &bytes)
                    .map_err(|e| e.to_string())
            });
        match stored {
            Ok(()) => tracing::info!(
                version = ring.version(),
                members = ring.members().len(),
                "ring adopted"
            ),
            Err(e) => {
                tracing::error!(version = ring.version(), error = %e, "ring adopted but not persisted")
            }
        }
        if ring.revoked() != self.revoked() {
            self.out.refuse(ring.revoked().clone());
        }
        self.ring = Some(Arc::new(ring));
    }
}
