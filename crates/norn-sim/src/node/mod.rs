//! One simulated node: the real membership, coordinator tallies, replica
//! operations, hint queues and anti-entropy exchanges of norn over
//! MemStorage, driven by messages and timers instead of tokio and QUIC.
//!
//! The shell here mirrors `norn-node`'s async shell (datapath, handoff,
//! anti-entropy) step for step; every decision is made by the shared
//! sans-IO code (`coordinator`, `replica`, `exchange`, `Membership`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use norn_clock::{Lifetime, Object};
use norn_membership::{Effect, Member, MemberState, Membership, MembershipConfig};
use norn_node::coordinator::{Quorum, QuorumDefaults, ReadTally, WriteTally};
use norn_node::exchange::Exchange;
use norn_node::replica::{self};
use norn_proto::{ErrorCode, ErrorReply, QuorumOptions, Request, Response};
use norn_ring::{NodeId, Ring};
use norn_storage::storage::HintId;
use norn_storage::{DataKey, Durability, MemBackend, MemStorage, Storage, Store, StoreOptions};
use rand::rngs::SmallRng;
use rand::Rng;

mod background;
mod coordinate;
use coordinate::ClientWrite;

/// Who a message is from or to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Addr {
    Node(usize),
    Client(usize),
}

/// A message on the simulated network. A response carries the id of the
/// request it answers, in its requester's numbering.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub from: Addr,
    pub to: Addr,
    pub id: u64,
    pub body: Body,
}

#[derive(Debug, Clone)]
pub enum Body {
    Request(Request),
    Response(Response),
}

/// A node's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    Gossip,
    Handoff,
    AntiEntropy,
    /// An outgoing request got no reply in time.
    RequestTimeout(u64),
    /// A coordinated client request reached its deadline.
    CoordinationTimeout(u64),
}

/// What a node asks the world to do.
#[derive(Debug, Default)]
pub struct Out {
    pub messages: Vec<Envelope>,
    /// (delay in ms, timer)
    pub timers: Vec<(u64, Timer)>,
}

/// Timing of the simulated nodes, in virtual milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct NodeTiming {
    pub request_timeout_ms: u64,
    pub coordination_timeout_ms: u64,
    pub handoff_interval_ms: u64,
    pub anti_entropy_interval_ms: u64,
}

/// Replication factor of every simulated write.
pub const N: u8 = 3;
const SIBLINGS_MAX: usize = 100;

/// What an outgoing request was for.
#[derive(Debug)]
enum Pending {
    WriteAck {
        coordination: u64,
        node: NodeId,
    },
    ReadReply {
        coordination: u64,
        node: NodeId,
    },
    Forward {
        client: Addr,
        client_id: u64,
    },
    Hint {
        target: NodeId,
        hint: HintId,
        key: DataKey,
        n: u8,
        sent: Vec<u8>,
    },
    Exchange,
    Ignore,
}

#[derive(Debug)]
enum Coordination {
    Write {
        client: Addr,
        client_id: u64,
        tally: WriteTally,
        object: Object,
        replied: bool,
    },
    Read {
        client: Addr,
        client_id: u64,
        tally: ReadTally,
        key: DataKey,
        quorum: Quorum,
        replied: bool,
    },
}

/// One node.
#[derive(Debug)]
pub struct SimNode {
    pub index: usize,
    pub id: NodeId,
    /// This run's actors: new at every start, as in nornd.
    pub lifetime: Lifetime,
    pub incarnation: u64,
    pub up: bool,
    pub store: MemStorage,
    membership: Membership,
    ring: Arc<Ring>,
    timing: NodeTiming,
    next_id: u64,
    pending: BTreeMap<u64, Pending>,
    coordinations: BTreeMap<u64, Coordination>,
    exchange: Option<Exchange>,
    exchange_peer: Option<NodeId>,
    anti_entropy_turn: usize,
    hints_in_flight: BTreeSet<NodeId>,
}

/// The address the simulated network knows node `index` by.
pub fn address_of(index: usize) -> String {
    format!("n{index}")
}

fn refusal(code: ErrorCode, message: impl Into<String>) -> Response {
    Response::Error(ErrorReply {
        code,
        message: message.into(),
    })
}

impl SimNode {
    /// A started node holding `ring`, seeded with every other node.
    pub fn new(
        index: usize,
        ring: Arc<Ring>,
        nodes: usize,
        timing: NodeTiming,
        rng: &mut SmallRng,
    ) -> SimNode {
        let store = Store::in_memory(StoreOptions::default()).expect("in-memory store");
        let membership = membership_of(index, 1, &ring, nodes, rng);
        SimNode {
            index,
            id: NodeId(index as u64 + 1),
            lifetime: Lifetime::new(rng.gen()),
            incarnation: 1,
            up: true,
            store,
            membership,
            ring,
            timing,
            next_id: 1,
            pending: BTreeMap::new(),
            coordinations: BTreeMap::new(),
            exchange: None,
            exchange_peer: None,
            anti_entropy_turn: 0,
            hints_in_flight: BTreeSet::new(),
        }
    }

    /// A crash: in-memory state is gone; with `power_cut`, so is every
    /// write not yet synced.
    pub fn crash(&mut self, power_cut: bool) {
        self.up = false;
        self.pending.clear();
        self.coordinations.clear();
        self.exchange = None;
        self.exchange_peer = None;
        self.hints_in_flight.clear();
        if power_cut {
            let store = std::mem::replace(
                &mut self.store,
                Store::in_memory(StoreOptions::default()).expect("store"),
            );
            let backend: MemBackend = store.into_backend();
            backend.crash();
            self.store = Store::open(backend, StoreOptions::default()).expect("reopen");
        }
    }

    /// Loses the data directory: a fresh store.
    pub fn wipe(&mut self) {
        self.crash(false);
        self.store = Store::in_memory(StoreOptions::default()).expect("store");
        self.incarnation = 0;
    }

    /// Starts again after a crash or wipe, with the next incarnation and a
    /// fresh lifetime.
    pub fn restart(&mut self, nodes: usize, rng: &mut SmallRng) {
        self.incarnation += 1;
        self.lifetime = Lifetime::new(rng.gen());
        self.membership = membership_of(self.index, self.incarnation, &self.ring, nodes, rng);
        self.up = true;
    }

    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// This node's replica, with limits scaled down so that large values
    /// meet the object limit and batches are cut by their byte budget.
    fn replica(&self) -> replica::LocalReplica<'_> {
        replica::LocalReplica {
            storage: &self.store,
            lifetime: &self.lifetime,
            limits: replica::ObjectLimits {
                siblings_max: SIBLINGS_MAX,
                object_bytes_max: crate::workload::OBJECT_BYTES_MAX,
                wire_object_bytes_max: 4 * crate::workload::OBJECT_BYTES_MAX,
                batch_bytes_max: crate::workload::OBJECT_BYTES_MAX / 4,
            },
        }
    }

    fn request(&mut self, to: Addr, request: Request, pending: Pending, out: &mut Out) {
        let id = self.next_id;
        self.next_id += 1;
        self.pending.insert(id, pending);
        out.messages.push(Envelope {
            from: Addr::Node(self.index),
            to,
            id,
            body: Body::Request(request),
        });
        out.timers
            .push((self.timing.request_timeout_ms, Timer::RequestTimeout(id)));
    }

    fn reply(&self, to: Addr, id: u64, response: Response, out: &mut Out) {
        reply_from(self.index, to, id, response, out);
    }

    fn node_addr(&self, node: NodeId) -> Addr {
        Addr::Node(node.0 as usize - 1)
    }

    /// Handles one message.
    pub fn on_message(&mut self, now: u64, envelope: Envelope, rng: &mut SmallRng, out: &mut Out) {
        if !self.up {
            return;
        }
        match envelope.body {
            Body::Request(request) => {
                self.on_request(now, envelope.from, envelope.id, request, out)
            }
            Body::Response(response) => {
                if let Some(pending) = self.pending.remove(&envelope.id) {
                    self.on_response(now, pending, Some(response), rng, out);
                }
            }
        }
    }

    /// Handles one timer.
    pub fn on_timer(&mut self, now: u64, timer: Timer, rng: &mut SmallRng, out: &mut Out) {
        let reschedule = |out: &mut Out, every: u64| out.timers.push((every, timer));
        match timer {
            Timer::Gossip => {
                reschedule(out, self.membership.config().gossip_interval_ms);
                if self.up {
                    let effects = self.membership.tick(now);
                    self.apply(effects, out);
                }
            }
            Timer::Handoff => {
                reschedule(out, self.timing.handoff_interval_ms);
                if self.up {
                    self.offer_hints(out);
                }
            }
            Timer::AntiEntropy => {
                reschedule(out, self.timing.anti_entropy_interval_ms);
                if self.up && self.exchange.is_none() {
                    self.start_exchange(rng, out);
                }
            }
            Timer::RequestTimeout(id) => {
                if let Some(pending) = self.pending.remove(&id) {
                    self.on_response(now, pending, None, rng, out);
                }
            }
            Timer::CoordinationTimeout(coordination) => {
                self.on_coordination_timeout(coordination, out)
            }
        }
    }

    fn apply(&mut self, effects: Vec<Effect>, out: &mut Out) {
        for effect in effects {
            if let Effect::Send { address, message } = effect {
                if let Some(index) = address.strip_prefix('n').and_then(|i| i.parse().ok()) {
                    self.request(
                        Addr::Node(index),
                        Request::Gossip(message),
                        Pending::Ignore,
                        out,
                    );
                }
            }
        }
    }

    fn on_request(&mut self, now: u64, from: Addr, id: u64, request: Request, out: &mut Out) {
        let response = match request {
            Request::Gossip(message) => {
                let effects = self.membership.receive(now, message);
                self.apply(effects, out);
                Response::Ack
            }
            Request::ReplicaGet { bucket, key } => match self.data_key(&bucket, &key) {
                Ok(key) => match replica::read_object(&self.store, &key) {
                    Ok(object) => Response::Replica { object },
                    Err(e) => refusal(ErrorCode::Storage, e),
                },
                Err(response) => response,
            },
            Request::ReplicaPut {
                bucket,
                key,
                n,
                object,
                hint_for,
                sync,
            } => self.replica_put(&bucket, &key, n, &object, hint_for, sync),
            Request::Put {
                bucket,
                key,
                value,
                context,
                options,
                forwarded,
                ..
            } => {
                let write = ClientWrite {
                    bucket,
                    key,
                    value,
                    context,
                    options,
                };
                match self.coordinate_put(from, id, write, forwarded, out) {
                    Some(response) => response,
                    None => return,
                }
            }
            Request::Get {
                bucket,
                key,
                options,
                ..
            } => match self.coordinate_get(from, id, &bucket, &key, options, out) {
                Some(response) => response,
                None => return,
            },
            other => match self.replica().serve(
                replica::ClusterView {
                    ring: &self.ring,
                    handing_off: &|_| false,
                },
                &other,
            ) {
                Some(response) => response,
                None => refusal(ErrorCode::BadRequest, "not served by simulated nodes"),
            },
        };
        self.reply(from, id, response, out);
    }

    fn data_key(&self, bucket: &[u8], key: &[u8]) -> Result<DataKey, Response> {
        DataKey::new(self.ring.partition_of_key(bucket, key), bucket, key)
            .map_err(|e| refusal(ErrorCode::BadRequest, e.to_string()))
    }

    fn replica_put(
        &mut self,
        bucket: &[u8],
        key: &[u8],
        n: u8,
        object: &Object,
        hint_for: Option<NodeId>,
        sync: bool,
    ) -> Response {
        let data_key = match self.data_key(bucket, key) {
            Ok(key) => key,
            Err(response) => return response,
        };
        let durability = Durability::synced_if(sync);
        match self
            .replica()
            .store_replica_write(&data_key, n, object, hint_for, durability)
        {
            Ok(_) => Response::Stored { synced: sync },
            Err(e) => refusal(ErrorCode::Storage, e),
        }
    }

    fn quorum(&self, options: QuorumOptions) -> Result<Quorum, Response> {
        let defaults = QuorumDefaults { n: N, n_max: 5 };
        Quorum::resolve(options, defaults, self.ring.members().len())
            .map_err(|e| refusal(ErrorCode::BadRequest, e.to_string()))
    }

    fn on_response(
        &mut self,
        _now: u64,
        pending: Pending,
        response: Option<Response>,
        rng: &mut SmallRng,
        out: &mut Out,
    ) {
        match pending {
            Pending::WriteAck { coordination, node } => {
                let Some(Coordination::Write { tally, .. }) =
                    self.coordinations.get_mut(&coordination)
                else {
                    return;
                };
                let outcome = match response {
                    Some(Response::Stored { synced }) => tally.on_ack(node, synced),
                    _ => tally.on_failure(node),
                };
                self.settle_write(coordination, outcome, out);
            }
            Pending::ReadReply { coordination, node } => {
                let Some(Coordination::Read { tally, .. }) =
                    self.coordinations.get_mut(&coordination)
                else {
                    return;
                };
                let outcome = match response {
                    Some(Response::Replica { object }) => tally.on_reply(node, object),
                    _ => tally.on_failure(node),
                };
                self.settle_read(coordination, outcome, out);
            }
            Pending::Forward { client, client_id } => {
                let response = response
                    .unwrap_or_else(|| refusal(ErrorCode::Timeout, "forwarded write timed out"));
                self.reply(client, client_id, response, out);
            }
            Pending::Hint {
                target,
                hint,
                key,
                n,
                sent,
            } => {
                self.hints_in_flight.remove(&target);
                if matches!(response, Some(Response::Stored { .. })) {
                    self.hint_delivered(target, hint, &key, n, &sent);
                }
            }
            Pending::Exchange => self.continue_exchange(response, rng, out),
            Pending::Ignore => {}
        }
    }

    /// The hint queues' lengths, summed.
    pub fn hints_pending(&self) -> u64 {
        self.store.hint_queues().values().map(|q| q.hints).sum()
    }
}

fn reply_from(index: usize, to: Addr, id: u64, response: Response, out: &mut Out) {
    out.messages.push(Envelope {
        from: Addr::Node(index),
        to,
        id,
        body: Body::Response(response),
    });
}

/// The membership of node `index` at `incarnation`, holding `ring`, with
/// every other node as a seed.
fn membership_of(
    index: usize,
    incarnation: u64,
    ring: &Ring,
    nodes: usize,
    rng: &mut SmallRng,
) -> Membership {
    let me = Member {
        id: NodeId(index as u64 + 1),
        name: address_of(index),
        address: address_of(index),
        zone: format!("zone-{}", index % 3),
        weight: 1,
        state: MemberState::Active,
        incarnation,
        heartbeat: 0,
        handoffs: Vec::new(),
    };
    let mut membership = Membership::new(
        me,
        Some(ring.clone()),
        MembershipConfig::default(),
        rng.gen(),
    );
    membership.add_seeds((0..nodes).filter(|&i| i != index).map(address_of));
    membership
}
