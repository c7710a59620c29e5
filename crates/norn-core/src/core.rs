//! [`Core`]: one node as a deterministic state machine. Its driver feeds it
//! requests, answers to the requests it sent, timers and finished syncs,
//! each with the clock reading (`now`, ms) at which it happens, and carries
//! out the [`Effect`]s it returns. The same inputs in the same order, with
//! the same seed, give the same effects: that is what lets the simulator's
//! verdicts speak for nornd.

use std::collections::HashSet;
use std::sync::Arc;

use norn_clock::Lifetime;
use norn_membership::{
    Effect as MembershipEffect, GossipMessage, Member, MemberState, Membership, Sender,
};
use norn_proto::{codec, ErrorCode, MemberInfo, Request, Response};
use norn_ring::{NodeId, Ring};
use norn_storage::{Durability, Storage};
use norn_trust::{Authority, RecordSigner, TrustError};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::config::CoreConfig;
use crate::coordinator::{Coordinator, PutArgs};
use crate::error::CoreError;
use crate::handoff::Handoff;
use crate::history::FailureHistory;
use crate::io::{CallFailure, CallId, Caller, Destination, Effect, Job, SyncToken, Timer, Token};
use crate::latency::{LatencyBook, LatencyKind};
use crate::metrics::{Counter, Gauges, Metrics};
use crate::node::{error, NodeState, ADMISSION_META, RING_META};
use crate::outbox::{AfterSync, Outbox, Route};
use crate::transfer::Transfers;
use crate::verify::Verifier;
use crate::{access, admin, replica};

/// Who a node is in this run, as it gossips itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    pub id: NodeId,
    pub name: String,
    /// The address peers and clients reach it at.
    pub address: String,
    pub zone: String,
    pub weight: u32,
    /// Bumped on every start, so that peers tell this run's heartbeats
    /// from an earlier one's.
    pub incarnation: u64,
}

/// What a node trusts and how it proves who it is: the cluster CA, judging
/// signed rings and member records, and its own key, signing its record.
#[derive(Debug, Clone)]
pub struct Trust {
    pub authority: Authority,
    pub own_key: Arc<RecordSigner>,
}

/// Admissions (node, ring version, ring fingerprint) whose signature was
/// checked, kept to spare a transfer's later batches the check.
const MAX_ADMISSIONS_KEPT: usize = 1024;

/// Distinct (caller, request kind) refusals logged; later ones are only
/// counted, so that a flood cannot fill the log.
const MAX_REFUSALS_LOGGED: usize = 4096;

/// One node.
#[derive(Debug)]
pub struct Core {
    node: NodeState,
    refusals_logged: HashSet<(Caller, &'static str)>,
    admissions: HashSet<(NodeId, u64, u64)>,
    coordinator: Coordinator,
    handoff: Handoff,
    verifier: Verifier,
    transfers: Transfers,
    /// Judges rings and relayed member records; signs this node's record.
    trust: Trust,
    latencies: LatencyBook,
}

impl Core {
    /// A node over `storage`, holding the ring stored there if any, with
    /// `seeds` to gossip with, adopting only rings an admin of the CA in
    /// `trust` signed. `seed` drives every random choice (the lifetime id
    /// of this run among them). Sets its first timers.
    pub fn new(
        config: CoreConfig,
        trust: Trust,
        me: NodeIdentity,
        seeds: Vec<String>,
        storage: Arc<dyn Storage>,
        seed: u64,
        now: u64,
    ) -> Result<Core, CoreError> {
        let stored_ring = |key: &'static str| -> Result<Option<Ring>, CoreError> {
            match storage.get_meta(key)? {
                Some(bytes) => Ok(Some(codec::decode::<Ring>(&bytes).map_err(|e| {
                    CoreError::Meta {
                        what: key,
                        reason: e.to_string(),
                    }
                })?)),
                None => Ok(None),
            }
        };
        let ring = stored_ring(RING_META)?;
        let admission = stored_ring(ADMISSION_META)?.map(Arc::new);
        let mut rng = SmallRng::seed_from_u64(seed);
        let lifetime = Lifetime::new(rng.gen());
        let member = Member {
            id: me.id,
            name: me.name,
            address: me.address,
            zone: me.zone,
            weight: me.weight,
            state: MemberState::Active,
            incarnation: me.incarnation,
            heartbeat: 0,
            handoffs: Vec::new(),
            proof: None,
        };
        let mut membership = Membership::new(member, ring.clone(), config.membership, rng.gen());
        membership.add_seeds(seeds);
        let coordinator = Coordinator::new(rng.gen());
        tracing::info!(lifetime = %format_args!("{:016x}", lifetime.id()), "dots of this run belong to a fresh lifetime");
        let mut core = Core {
            trust,
            refusals_logged: HashSet::new(),
            admissions: HashSet::new(),
            verifier: Verifier::new(config.anti_entropy.max_bytes_per_sec),
            transfers: Transfers::new(config.transfers.max_bytes_per_sec),
            coordinator,
            handoff: Handoff::default(),
            latencies: LatencyBook::new(now),
            node: NodeState {
                now,
                started_ms: now,
                id: me.id,
                storage,
                lifetime,
                membership,
                ring: ring.map(Arc::new),
                out: Outbox::default(),
                metrics: Metrics::default(),
                history: FailureHistory::default(),
                newest_ring_seen: 0,
                admission,
                config,
            },
        };
        core.arm_timers();
        core.sign_own_record();
        if !core.node.revoked().is_empty() {
            let revoked = core.node.revoked().clone();
            core.node.out.refuse(revoked);
        }
        Ok(core)
    }

    fn arm_timers(&mut self) {
        let node = &mut self.node;
        node.timer_in(0, Timer::Gossip);
        node.timer_in(
            node.config.data.hint_delivery_interval_ms,
            Timer::HintDelivery,
        );
        node.timer_in(node.config.transfers.interval_ms, Timer::Transfers);
        if node.config.anti_entropy.enabled {
            node.timer_in(node.config.anti_entropy.interval_ms, Timer::AntiEntropy);
        }
    }

    pub fn id(&self) -> NodeId {
        self.node.id
    }

    /// The id of this run's lifetime (see [`norn_clock::lifetime`]).
    pub fn lifetime_id(&self) -> u64 {
        self.node.lifetime.id()
    }

    /// The effects decided since the last call, in order.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        self.node.out.drain()
    }

    /// A request from `caller`; the answer is an [`Effect::Reply`] to
    /// `call`, now or later.
    pub fn on_request(&mut self, now: u64, call: CallId, caller: Caller, request: Request) {
        self.node.now = now;
        let mut role = self.node.role_of(&caller);
        if role == access::Role::UnadmittedNode {
            if let Some(ring) = request.admission() {
                if self.admitted_by(&caller, ring) {
                    role = access::Role::FormerMember;
                }
            }
        }
        if !access::allowed(&request).contains(role) {
            let refusal = self.refuse(&caller, role, &request);
            return self.node.reply(call, refusal);
        }
        match request {
            Request::Get {
                bucket,
                key,
                options,
                timeout_ms,
            } => {
                let node = &mut self.node;
                self.coordinator
                    .get(node, call, &bucket, &key, options, timeout_ms);
            }
            Request::Put {
                bucket,
                key,
                value,
                context,
                options,
                timeout_ms,
                forwarded,
            } => {
                let args = PutArgs {
                    bucket,
                    key,
                    value,
                    context,
                    options,
                    timeout_ms,
                    forwarded,
                };
                self.coordinator.put(&mut self.node, call, args);
            }
            Request::ReplicaPut {
                bucket,
                key,
                n,
                object,
                hint_for,
                sync,
            } => {
                let write = ReplicaWrite {
                    bucket: &bucket,
                    key: &key,
                    n,
                    object: &object,
                    hint_for,
                    sync,
                };
                replica_put(&mut self.node, call, write);
            }
            exchange @ (Request::TreeNodes { .. }
            | Request::SegmentDigests { .. }
            | Request::KeyDigests { .. }
            | Request::ReplicaGetMany { .. }
            | Request::ReplicaPutMany { .. }
            | Request::Reap { .. }
            | Request::TreeRoots { .. }
            | Request::DurableKeyDigests { .. }) => serve_replica(&mut self.node, call, &exchange),
            request => {
                let response = self.answer(&caller, request);
                self.node.reply(call, response);
            }
        }
    }

    /// A latency the shell measured at `now` (see [`crate::latency`]).
    pub fn observe(&mut self, now: u64, kind: LatencyKind, micros: u64) {
        self.latencies.record(now, kind, micros);
    }

    /// What this node measured (see [`crate::latency`]), as
    /// `AdminLatencies` answers.
    pub fn latencies(&self) -> norn_proto::NodeLatencies {
        self.latencies.report(self.node.id)
    }

    /// Whether `ring`, carried by a hand-over of `caller`, is an
    /// admin-signed ring that names it. Checked signatures are remembered
    /// (up to [`MAX_ADMISSIONS_KEPT`]), so a transfer's batches cost one.
    fn admitted_by(&mut self, caller: &Caller, ring: &Ring) -> bool {
        let Caller::Node(id) = caller else {
            return false;
        };
        if !ring.members().contains_key(id) {
            return false;
        }
        let seen = (*id, ring.version(), ring.fingerprint());
        if self.admissions.contains(&seen) {
            return true;
        }
        match self.trust.authority.check(ring, self.node.revoked()) {
            Ok(_) => {
                if self.admissions.len() >= MAX_ADMISSIONS_KEPT {
                    self.admissions.clear();
                }
                self.admissions.insert(seen);
                true
            }
            Err(refused) => {
                if self.first_refusal(caller, "admission") {
                    tracing::warn!(peer = %caller, %refused, "refused a hand-over's proof of admission");
                }
                false
            }
        }
    }

    /// Whether this is the first refusal of `kind` from `caller` (then it
    /// is logged; later ones are only counted, so that a flood cannot fill
    /// the log).
    fn first_refusal(&mut self, caller: &Caller, kind: &'static str) -> bool {
        self.refusals_logged.len() < MAX_REFUSALS_LOGGED
            && self.refusals_logged.insert((caller.clone(), kind))
    }

    /// The refusal of a request `caller` may not make: counted, and logged
    /// once per caller and request kind.
    fn refuse(&mut self, caller: &Caller, role: access::Role, request: &Request) -> Response {
        let kind = access::kind(request);
        self.node.metrics.count(Counter::RequestsRefused, 1);
        if self.first_refusal(caller, kind) {
            tracing::warn!(peer = %caller, ?role, request = kind, "refused a request its certificate does not allow");
        }
        error(
            ErrorCode::Forbidden,
            format!("{caller} ({role:?}) may not send {kind} requests"),
        )
    }

    /// The refusal of a pushed ring no admin signed: counted, and logged
    /// once per caller.
    fn refuse_ring(&mut self, caller: &Caller, ring: &Ring, refused: &TrustError) -> Response {
        self.node.metrics.count(Counter::RequestsRefused, 1);
        if self.first_refusal(caller, "ring_push") {
            tracing::warn!(peer = %caller, version = ring.version(), %refused, "refused a ring no admin signed");
        }
        error(
            ErrorCode::Forbidden,
            format!("ring {} refused: {refused}", ring.version()),
        )
    }

    /// Requests answered at once.
    fn answer(&mut self, caller: &Caller, request: Request) -> Response {
        let node = &mut self.node;
        match request {
            Request::Ping => Response::Pong,
            Request::Gossip(message) => self.gossip(caller, message),
            Request::ReplicaGet { bucket, key } => replica_get(node, &bucket, &key),
            Request::AdminHints => admin::hints(node),
            Request::AdminMembers => Response::Members(admin::member_infos(node)),
            Request::AdminRing => Response::Ring(node.membership.ring().cloned().map(Box::new)),
            Request::AdminJoin { seed } => admin::join(node, seed),
            Request::AdminStage { node: name, kind } => admin::stage(node, &name, kind),
            Request::AdminPlan => Response::Plan(admin::plan(node)),
            Request::AdminPropose { revoke } => admin::propose(node, revoke),
            Request::AdminCommit { ring } => self.commit(ring),
            Request::AdminRepair { partition } => {
                admin::repair(node, &mut self.verifier, partition)
            }
            Request::AdminRepairProgress => admin::repair_progress(node, &self.verifier),
            Request::AdminRepairStatus => {
                Response::RepairStatus(admin::repair_status(node, &self.verifier))
            }
            Request::AdminTransfers => {
                Response::Transfers(self.transfers.views.values().cloned().collect())
            }
            Request::AdminLatencies => Response::Latencies(self.latencies.report(node.id)),
            Request::AdminFailureHistory => Response::FailureHistory(node.history.report(
                node.id,
                node.uptime_ms(),
                node.now,
                node.storage.data_size_bytes(),
                self.verifier.sweep_ms(node),
            )),
            Request::AdminStatus => Response::Status(self.status()),
            _ => error(
                ErrorCode::BadRequest,
                "not a request this node answers here",
            ),
        }
    }

    /// Gossip from a peer, which must be the node its certificate names.
    fn gossip(&mut self, caller: &Caller, message: GossipMessage) -> Response {
        let sender = message.sender();
        if *caller != Caller::Node(sender) {
            self.node.metrics.count(Counter::RequestsRefused, 1);
            tracing::warn!(peer = %caller, claimed = %sender, "refused gossip claiming another node's id");
            return error(
                ErrorCode::Forbidden,
                format!("{caller} may not speak for node {sender}"),
            );
        }
        if let GossipMessage::RingPush { ring, .. } = &message {
            // Only a ring that would be adopted is worth a signature check.
            let current = self.node.membership.ring();
            if current.is_none_or(|current| ring.supersedes(current)) {
                if let Err(refused) = self.trust.authority.check_successor(ring, current) {
                    return self.refuse_ring(caller, ring, &refused);
                }
            }
        }
        let role = self.node.role_of(caller);
        // A node that holds no ring yet cannot tell members from others:
        // it hears everyone until its first (admin-signed) ring.
        let standing = match role {
            _ if self.node.ring.is_none() => Sender::Admitted,
            access::Role::Member | access::Role::FormerMember => Sender::Admitted,
            _ => Sender::Unadmitted,
        };
        // An unadmitted sender is heard about itself only (the membership
        // drops the rest), so only an admitted one's relays are checked.
        let message = match standing {
            Sender::Admitted => self.without_forged_records(caller, message),
            Sender::Unadmitted => message,
        };
        let effects = self
            .node
            .membership
            .receive(self.node.now, message, standing);
        self.sign_own_record();
        self.apply_membership(effects);
        Response::Ack
    }

    /// Drops from a digest the records of other nodes that change what this
    /// node knows of their identity (address, incarnation, state...)
    /// without their own signature: a relay carries heartbeats and signed
    /// records, never makes one. The sender's own record is first-hand.
    fn without_forged_records(
        &mut self,
        caller: &Caller,
        mut message: GossipMessage,
    ) -> GossipMessage {
        let GossipMessage::Digest { from, members, .. } = &mut message else {
            return message;
        };
        let before = members.len();
        let (membership, revoked) = (&self.node.membership, self.node.revoked());
        members.retain_mut(|record| {
            let known = if record.id == self.node.id {
                Some(membership.me())
            } else {
                membership.peer(record.id)
            };
            match known {
                _ if record.id == *from => true,
                // Only the heartbeat and hand-offs may have moved: keep the
                // signature this node holds (a relay cannot strip or swap
                // it).
                Some(known) if known.same_identity(record) => {
                    record.proof = known.proof.clone();
                    true
                }
                _ => self.trust.authority.check_record(record, revoked).is_ok(),
            }
        });
        let dropped = before - members.len();
        if dropped > 0 {
            self.node
                .metrics
                .count(Counter::RecordsRefused, dropped as u64);
            if self.first_refusal(caller, "member_record") {
                tracing::warn!(peer = %caller, dropped, "dropped relayed member records that change a node's identity without its signature");
            }
        }
        message
    }

    /// Takes new trust (certificates rotated): rings and records are judged
    /// by its CA from now on, and this node's record is signed again with
    /// its key, so that a later revocation of the old certificate does not
    /// void the record.
    pub fn set_trust(&mut self, trust: Trust) {
        self.trust = trust;
        self.admissions.clear();
        self.node.membership.clear_own_proof();
        self.sign_own_record();
    }

    /// Replaces the seeds the shell found by DNS (see
    /// [`norn_membership::Membership::set_discovered_seeds`]).
    pub fn set_discovered_seeds(&mut self, addresses: Vec<String>) {
        self.node.membership.set_discovered_seeds(addresses);
    }

    /// Signs this node's own record again if its identity changed since
    /// it was last signed (at the start, and when a peer remembered a later
    /// life of this node).
    fn sign_own_record(&mut self) {
        if self.node.membership.me().proof.is_some() {
            return;
        }
        match self.trust.own_key.sign_now(self.node.membership.me()) {
            Ok(proof) => self.node.membership.set_own_proof(proof),
            Err(e) => tracing::error!(error = %e, "cannot sign this node's member record"),
        }
    }

    /// Adopts the admin-signed `ring` as the next ring.
    fn commit(&mut self, ring: Ring) -> Response {
        let effects = match admin::commit(&mut self.node, &self.trust.authority, ring) {
            Ok(effects) => effects,
            Err(refusal) => return refusal,
        };
        let version = effects.iter().find_map(|e| match e {
            MembershipEffect::RingAdopted(ring) => Some(ring.version()),
            _ => None,
        });
        self.apply_membership(effects);
        match version {
            Some(version) => Response::Committed { version },
            None => error(
                ErrorCode::Conflict,
                "a newer ring arrived meanwhile; plan again",
            ),
        }
    }

    /// Carries out what the membership state machine asked for.
    fn apply_membership(&mut self, effects: Vec<MembershipEffect>) {
        if effects
            .iter()
            .any(|e| matches!(e, MembershipEffect::RingAdopted(_)))
        {
            // The revoked list may have changed: check admissions again.
            self.admissions.clear();
        }
        let node = &mut self.node;
        for effect in effects {
            match effect {
                MembershipEffect::Send { address, message } => {
                    let timeout_ms = node.config.peer_request_timeout_ms;
                    node.out.send(
                        Route::Nobody,
                        Destination::Address(address),
                        Request::Gossip(message),
                        timeout_ms,
                    );
                }
                MembershipEffect::PeerUp(peer) => {
                    tracing::info!(peer = %peer, "peer up");
                    node.history.peer_up(peer, node.now);
                }
                MembershipEffect::PeerDown(peer) => {
                    tracing::warn!(peer = %peer, "peer down");
                    node.history.peer_down(peer, node.now);
                }
                MembershipEffect::RingAdopted(ring) => {
                    node.history.ring_adopted(&ring, node.now);
                    node.adopt_ring(ring);
                }
            }
        }
    }

    /// The outcome of a request this core sent.
    pub fn on_reply(&mut self, now: u64, token: Token, reply: Result<Response, CallFailure>) {
        self.node.now = now;
        let node = &mut self.node;
        match node.out.route_of(token) {
            Some(Route::Coordinator) => self.coordinator.on_reply(node, token, reply),
            Some(Route::Handoff) => self.handoff.on_reply(node, token, reply),
            Some(Route::Verification) => self.verifier.on_reply(node, token, reply),
            Some(Route::Transfer) => self.transfers.on_reply(node, token, reply),
            Some(Route::Nobody) | None => {}
        }
    }

    /// A timer this core set is due.
    pub fn on_timer(&mut self, now: u64, timer: Timer) {
        self.node.now = now;
        let node = &mut self.node;
        match timer {
            Timer::Gossip => {
                node.timer_in(node.config.membership.gossip_interval_ms, Timer::Gossip);
                node.metrics.count(Counter::GossipRounds, 1);
                crate::status::stage_own_join_if_new(node);
                let effects = node.membership.tick(now);
                self.apply_membership(effects);
            }
            Timer::HintDelivery => self.handoff.on_tick(node),
            Timer::AntiEntropy => self.verifier.on_tick(node),
            Timer::Transfers => self.transfers.on_tick(node),
            Timer::Deadline(op) => self.coordinator.on_deadline(node, op),
            Timer::Speculate(op) => self.coordinator.on_speculate(node, op),
            Timer::Throttle(Job::Verification) => self.verifier.on_throttle(node),
            Timer::Throttle(Job::Transfer) => self.transfers.on_throttle(node),
        }
    }

    /// A sync this core asked for is done: what waited for it goes on.
    pub fn on_synced(&mut self, now: u64, token: SyncToken) {
        self.node.now = now;
        let node = &mut self.node;
        match node.out.after_sync(token) {
            Some(AfterSync::Reply { call, response }) => node.reply(call, response),
            Some(AfterSync::CoordinatorAck { op }) => self.coordinator.on_local_sync(node, op),
            None => {}
        }
    }

    /// The ring this node holds.
    pub fn ring(&self) -> Option<Arc<Ring>> {
        self.node.ring()
    }

    /// Every member as this node sees it (at the last input's time).
    pub fn members(&self) -> Vec<MemberInfo> {
        admin::member_infos(&self.node)
    }

    /// Readiness, and what a ring change waits for here (at the last
    /// input's time).
    pub fn status(&self) -> norn_proto::NodeStatus {
        crate::status::status(&self.node, &self.transfers)
    }

    /// Whether this node considers `node` up.
    pub fn sees_up(&self, node: NodeId) -> bool {
        self.node.is_up(node)
    }

    /// The metrics text, with its gauges read now.
    pub fn render_metrics(&self) -> String {
        let node = &self.node;
        let queues = node.storage.hint_queues();
        let views = node.membership.view(node.now);
        let (oldest_verified_s, partitions_unverified) = self.verifier.gauges(node);
        let peers_up = views.iter().skip(1).filter(|v| v.up).count() as u64;
        let gauges = Gauges {
            hints_pending: queues.values().map(|q| q.hints).sum(),
            hint_bytes_pending: queues.values().map(|q| q.bytes).sum(),
            peers_up,
            peers_down: (views.len().saturating_sub(1) as u64).saturating_sub(peers_up),
            storage_bytes: node.storage.data_size_bytes(),
            ring_version: node.ring().map_or(0, |r| r.version()),
            oldest_verified_s,
            partitions_unverified,
        };
        node.metrics.render(gauges)
    }

    /// Outgoing requests, syncs and coordinations still in progress (for
    /// tests of leaks).
    pub fn in_progress(&self) -> InProgress {
        let (requests, syncs) = self.node.out.awaited();
        let (reads, writes, forwards) = self.coordinator.in_progress();
        InProgress {
            requests,
            syncs,
            reads,
            writes,
            forwards,
        }
    }
}

/// What a core still waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InProgress {
    pub requests: usize,
    pub syncs: usize,
    pub reads: usize,
    pub writes: usize,
    pub forwards: usize,
}

/// A replica write as it arrived.
#[derive(Debug)]
struct ReplicaWrite<'a> {
    bucket: &'a [u8],
    key: &'a [u8],
    n: u8,
    object: &'a norn_clock::Object,
    hint_for: Option<NodeId>,
    sync: bool,
}

/// The refusal of a replica write by a node that holds a ring but could
/// not hand the write over ([`NodeState::can_hand_over`]); the coordinator
/// or sender looks for another replica.
fn not_a_member() -> Response {
    error(
        ErrorCode::Unavailable,
        "this node is not a member of the ring it holds; nothing was written",
    )
}

/// The replica side of a write: merge, and keep a hint when standing in
/// for `hint_for`; with `sync`, answered once the write is on disk.
fn replica_put(node: &mut NodeState, call: CallId, write: ReplicaWrite<'_>) {
    let data_key = match data_key_in(node, write.bucket, write.key) {
        Ok(key) => key,
        Err(refusal) => return node.reply(call, refusal),
    };
    if !node.can_hand_over() {
        return node.reply(call, not_a_member());
    }
    let stored = node.replica().store_replica_write(
        &data_key,
        write.n,
        write.object,
        write.hint_for,
        Durability::Buffered,
    );
    if let Err(reason) = stored {
        return node.reply(call, error(ErrorCode::Storage, reason));
    }
    let synced = node.config.sync_every_write;
    if write.sync && !synced {
        let response = Response::Stored { synced: true };
        node.out.sync(AfterSync::Reply { call, response });
    } else {
        node.reply(call, Response::Stored { synced });
    }
}

fn replica_get(node: &NodeState, bucket: &[u8], key: &[u8]) -> Response {
    let data_key = match data_key_in(node, bucket, key) {
        Ok(key) => key,
        Err(refusal) => return refusal,
    };
    match node.replica().read(&data_key) {
        Ok(object) => Response::Replica { object },
        Err(reason) => error(ErrorCode::Storage, reason),
    }
}

fn data_key_in(
    node: &NodeState,
    bucket: &[u8],
    key: &[u8],
) -> Result<norn_storage::DataKey, Response> {
    let ring = node.ring_or_refusal()?;
    replica::data_key(
        &ring,
        &norn_proto::KeyRef {
            bucket: bucket.to_vec(),
            key: key.to_vec(),
        },
    )
    .map_err(|e| error(ErrorCode::BadRequest, e))
}

/// The replica side of exchanges, transfers and reaps (open to the roles
/// [`access::allowed`] lists). A batch of writes is answered once it is on
/// disk.
fn serve_replica(node: &mut NodeState, call: CallId, request: &Request) {
    if let Request::ReplicaPutMany { ring_version, .. } = request {
        node.newest_ring_seen = node.newest_ring_seen.max(*ring_version);
        if node.ring().is_some() && !node.can_hand_over() {
            return node.reply(call, not_a_member());
        }
    }
    match node.serve_replica(request) {
        Some(served) if served.after_sync => node.out.sync(AfterSync::Reply {
            call,
            response: served.response,
        }),
        Some(served) => node.reply(call, served.response),
        None => {
            let refusal = match node.ring() {
                None => error(ErrorCode::Unavailable, "this node holds no ring yet"),
                Some(_) => error(ErrorCode::BadRequest, "not a replica request"),
            };
            node.reply(call, refusal);
        }
    }
}
