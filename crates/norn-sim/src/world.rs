//! The simulated world: a virtual clock, an event queue, the in-memory
//! network and the faults, all driven by one seeded random generator, so a
//! seed replays its run exactly.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use norn_proto::{Request, Response};
use norn_ring::{NodeId, Ring, RingMember};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use norn_core::{SyncToken, Timer};

use crate::node::{Addr, Body, Envelope, Out, SimNode};
use crate::workload::{blind_id, Client, History, BLIND_KEYS, REGISTER_KEYS, SET_KEYS};

mod quiet;

/// The shape of a run.
#[derive(Debug, Clone, Copy)]
pub struct SimOptions {
    /// Nodes in the first ring.
    pub nodes: usize,
    /// Nodes outside it, started, that ring changes may bring in.
    pub spares: usize,
    pub clients: usize,
    /// Virtual time with faults and client traffic.
    pub fault_ms: u64,
    /// Virtual time after healing before the first convergence check.
    pub settle_ms: u64,
    /// The most virtual time spent waiting for convergence after healing.
    pub converge_max_ms: u64,
    /// Virtual time the converged cluster runs on before the replicas are
    /// checked again (tombstones are reaped then).
    pub quiet_ms: u64,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            nodes: 5,
            spares: 1,
            clients: 4,
            fault_ms: 20_000,
            settle_ms: 3_000,
            converge_max_ms: 60_000,
            quiet_ms: 5_000,
        }
    }
}

/// A fault the schedule applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Nodes in `side` cannot reach the others, or be reached by them.
    Partition {
        side: BTreeSet<usize>,
    },
    /// `from` can no longer reach `to`; the other way still works.
    OneWay {
        from: usize,
        to: usize,
    },
    /// Two sides that reach each other only through `bridge`.
    Bridge {
        side: BTreeSet<usize>,
        bridge: usize,
    },
    /// Every link works again.
    Heal,
    /// Message loss, duplication and delay change.
    Weather {
        drop_percent: u32,
        duplicate_percent: u32,
        max_delay_ms: u64,
    },
    /// A node crashes; with `power_cut`, it loses unsynced writes.
    Crash {
        node: usize,
        power_cut: bool,
    },
    /// A node loses its data directory (and restarts later).
    Wipe {
        node: usize,
    },
    /// A node crashes and its data directory is replaced by the backup
    /// taken at its last crash (it restarts later).
    Restore {
        node: usize,
    },
    Restart {
        node: usize,
    },
    /// The operator stages a join of `node` on node `via` and commits it.
    Join {
        node: usize,
        via: usize,
    },
    /// The operator stages a leave of `node` on node `via` and commits it.
    Leave {
        node: usize,
        via: usize,
    },
}

#[derive(Debug)]
enum Event {
    Deliver(Envelope),
    /// A node's timer, for one generation of its core.
    NodeTimer(usize, u64, Timer),
    /// A node's outgoing request got no answer in time.
    RequestTimeout(usize, u64, u64),
    /// A node's storage sync is done.
    Sync(usize, u64, SyncToken),
    /// The operator sends `node` a request.
    Admin(usize, Request),
    ClientStep(usize),
    ClientTimeout(usize, u64),
    Fault(Fault),
    StopFaults,
}

/// What the fault schedule assumes as it draws: who is down, how many
/// data directories were lost, who is in the ring.
#[derive(Debug)]
struct FaultPlan {
    down: BTreeSet<usize>,
    data_losses: usize,
    members: BTreeSet<usize>,
}

/// How long a message between nodes takes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Delays {
    /// 1 to `Network::max_delay_ms`, uniformly (the fault schedule's weather).
    Weather,
    /// `1 + floor(x)` ms with x exponential of mean `mean_ms`; the
    /// operator's requests and answers are instant (see [`World::quiet`]).
    Exponential { mean_ms: f64 },
}

/// The network's state.
#[derive(Debug, Default)]
struct Network {
    /// Links (from node, to node) that drop everything.
    cut: BTreeSet<(usize, usize)>,
    drop_percent: u32,
    duplicate_percent: u32,
    max_delay_ms: u64,
}

/// What a run produced, for the checker.
#[derive(Debug)]
pub struct Run {
    pub seed: u64,
    pub nodes: Vec<SimNode>,
    pub history: History,
    pub faults: Vec<(u64, Fault)>,
    /// Virtual time from healing to convergence; `None` if it never came.
    pub converged_after_ms: Option<u64>,
    /// Digest of every delivered message and fired timer, in order.
    pub trace: u64,
    pub messages: u64,
}

/// The simulation of one seed.
#[derive(Debug)]
pub struct World {
    seed: u64,
    options: SimOptions,
    now: u64,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: BTreeMap<u64, Event>,
    next_event: u64,
    rng: SmallRng,
    network: Network,
    nodes: Vec<SimNode>,
    clients: Vec<Client>,
    history: History,
    faults: Vec<(u64, Fault)>,
    faulting: bool,
    wiped: bool,
    /// The pending event of each node timer, so a new setting replaces it.
    timers: BTreeMap<(usize, Timer), u64>,
    /// The ring every node started with.
    ring: Arc<Ring>,
    /// Each node's disk at its last crash (and when), for restores.
    backups: BTreeMap<usize, ((norn_storage::MemBackend, u64), u64)>,
    next_admin: u64,
    trace: std::collections::hash_map::DefaultHasher,
    messages: u64,
    delays: Delays,
    /// The operator's request [`World::ask`] waits for, and its answer.
    awaiting: Option<u64>,
    answer: Option<Response>,
}

pub(crate) const CLIENT_TIMEOUT_MS: u64 = 1_500;

impl World {
    pub fn new(seed: u64, options: SimOptions) -> World {
        let rng = SmallRng::seed_from_u64(seed);
        let members = (0..options.nodes).map(|i| {
            (
                NodeId(i as u64 + 1),
                RingMember {
                    zone: format!("zone-{}", i % 3),
                    weight: 1,
                },
            )
        });
        let ring = Arc::new(crate::trust::trust().sign(&Ring::new(6, members).expect("ring")));
        let nodes = (0..options.nodes + options.spares)
            .map(|i| SimNode::new(i, (i < options.nodes).then_some(&*ring)))
            .collect();
        let mut world = World {
            seed,
            options,
            now: 0,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            next_event: 0,
            rng,
            network: Network {
                max_delay_ms: 5,
                ..Network::default()
            },
            nodes,
            clients: (0..options.clients).map(Client::new).collect(),
            history: History::default(),
            faults: Vec::new(),
            faulting: true,
            wiped: false,
            timers: BTreeMap::new(),
            ring,
            backups: BTreeMap::new(),
            next_admin: 0,
            trace: std::collections::hash_map::DefaultHasher::new(),
            messages: 0,
            delays: Delays::Weather,
            awaiting: None,
            answer: None,
        };
        for node in 0..options.nodes + options.spares {
            world.start_node(node);
        }
        for client in 0..options.clients {
            // Let gossip see everyone up before the first request.
            let first = 1_500 + world.rng.gen_range(0..50);
            world.schedule(first, Event::ClientStep(client));
        }
        world.schedule_faults();
        world.schedule(1_500 + options.fault_ms, Event::StopFaults);
        world
    }

    fn schedule(&mut self, delay_ms: u64, event: Event) -> u64 {
        let id = self.next_event;
        self.next_event += 1;
        self.events.insert(id, event);
        self.queue.push(Reverse((self.now + delay_ms, id)));
        id
    }

    /// Starts (or restarts) node `index`'s core.
    fn start_node(&mut self, index: usize) {
        let mut out = Out::default();
        let seed = self.rng.gen();
        let now = self.now;
        let all = self.nodes.len();
        self.nodes[index].start(now, all, seed, &mut out);
        self.apply_out(index, out);
    }

    /// Draws the fault schedule from the seed: one change every 150-600 ms
    /// of the fault window; at most two nodes down at once and at most two
    /// data directories lost (wiped or restored from a backup) per run, so
    /// that most acknowledged writes (W=2, synced) keep a copy; ring
    /// changes keep at least four members.
    fn schedule_faults(&mut self) {
        let mut plan = FaultPlan {
            down: BTreeSet::new(),
            data_losses: 0,
            members: (0..self.options.nodes).collect(),
        };
        let mut at = 1_500;
        let end = 1_500 + self.options.fault_ms;
        loop {
            at += self.rng.gen_range(150..600);
            if at >= end {
                break;
            }
            let fault = self.draw_fault(&mut plan);
            let delay = at - self.now;
            self.schedule(delay, Event::Fault(fault));
        }
    }

    fn draw_fault(&mut self, plan: &mut FaultPlan) -> Fault {
        let n = self.nodes.len();
        match self.rng.gen_range(0..12) {
            0 | 1 => {
                let side: BTreeSet<usize> = (0..n).filter(|_| self.rng.gen_bool(0.5)).collect();
                Fault::Partition { side }
            }
            2 => {
                let from = self.rng.gen_range(0..n);
                let to = (from + self.rng.gen_range(1..n)) % n;
                Fault::OneWay { from, to }
            }
            3 => {
                let bridge = self.rng.gen_range(0..n);
                let side = (0..n)
                    .filter(|&i| i != bridge && self.rng.gen_bool(0.5))
                    .collect();
                Fault::Bridge { side, bridge }
            }
            4 | 5 => Fault::Heal,
            6 => Fault::Weather {
                drop_percent: self.rng.gen_range(0..20),
                duplicate_percent: self.rng.gen_range(0..10),
                max_delay_ms: self.rng.gen_range(1..80),
            },
            7 | 8 if plan.down.len() < 2 => self.draw_node_fault(plan),
            9 => self.draw_ring_change(plan),
            _ => match plan.down.iter().next().copied() {
                Some(node) => {
                    plan.down.remove(&node);
                    Fault::Restart { node }
                }
                None => Fault::Heal,
            },
        }
    }

    /// A node goes down (crash, wipe or restore) or comes back.
    fn draw_node_fault(&mut self, plan: &mut FaultPlan) -> Fault {
        let node = self.rng.gen_range(0..self.nodes.len());
        if plan.down.remove(&node) {
            return Fault::Restart { node };
        }
        plan.down.insert(node);
        if plan.data_losses < 2 && self.rng.gen_bool(0.2) {
            plan.data_losses += 1;
            if self.rng.gen_bool(0.5) {
                Fault::Wipe { node }
            } else {
                Fault::Restore { node }
            }
        } else {
            Fault::Crash {
                node,
                power_cut: self.rng.gen_bool(0.5),
            }
        }
    }

    /// A join of a node outside the ring, or a leave of a member.
    fn draw_ring_change(&mut self, plan: &mut FaultPlan) -> Fault {
        let outside: Vec<usize> = (0..self.nodes.len())
            .filter(|i| !plan.members.contains(i))
            .collect();
        let members: Vec<usize> = plan.members.iter().copied().collect();
        let via = members[self.rng.gen_range(0..members.len())];
        if !outside.is_empty() && (members.len() <= 4 || self.rng.gen_bool(0.5)) {
            let node = outside[self.rng.gen_range(0..outside.len())];
            plan.members.insert(node);
            return Fault::Join { node, via };
        }
        let leaving: Vec<usize> = members.iter().copied().filter(|&m| m != via).collect();
        let node = leaving[self.rng.gen_range(0..leaving.len())];
        plan.members.remove(&node);
        Fault::Leave { node, via }
    }

    fn record(&mut self, what: impl Hash) {
        self.now.hash(&mut self.trace);
        what.hash(&mut self.trace);
    }

    fn addr_index(addr: Addr) -> Option<usize> {
        match addr {
            Addr::Node(i) => Some(i),
            Addr::Client(_) | Addr::Admin => None,
        }
    }

    /// Puts a message on the wire: cut links and loss drop it, duplication
    /// sends it twice, each copy with its own delay (so messages reorder).
    fn send(&mut self, envelope: Envelope) {
        if let (Some(from), Some(to)) = (
            Self::addr_index(envelope.from),
            Self::addr_index(envelope.to),
        ) {
            if self.network.cut.contains(&(from, to)) {
                return;
            }
        }
        if self.rng.gen_range(0..100) < self.network.drop_percent {
            return;
        }
        let copies = if self.rng.gen_range(0..100) < self.network.duplicate_percent {
            2
        } else {
            1
        };
        if let (2, Body::Request(Request::Put { key, value, .. })) = (copies, &envelope.body) {
            // A write delivered twice is a write made twice (as a retry
            // would be): its second dot may stand as one more sibling, and
            // a refusal of one copy says nothing of the other.
            let key = String::from_utf8_lossy(key).into_owned();
            *self.history.extra_writers.entry(key).or_default() += 1;
            if let Some(value) = value {
                self.history.duplicated_values.insert(blind_id(value));
            }
        }
        for _ in 0..copies {
            let delay = self.delay_of(&envelope);
            self.schedule(delay, Event::Deliver(envelope.clone()));
        }
    }

    /// Sends `request` to `node` from the operator; returns its id.
    fn send_as_operator(&mut self, node: usize, request: Request) -> u64 {
        self.next_admin += 1;
        let id = self.next_admin;
        self.send(Envelope {
            from: Addr::Admin,
            to: Addr::Node(node),
            id,
            generation: 0,
            body: Body::Request(request),
        });
        id
    }

    fn delay_of(&mut self, envelope: &Envelope) -> u64 {
        match self.delays {
            Delays::Weather => self.rng.gen_range(1..=self.network.max_delay_ms.max(1)),
            Delays::Exponential { .. }
                if envelope.from == Addr::Admin || envelope.to == Addr::Admin =>
            {
                0
            }
            Delays::Exponential { mean_ms } => {
                let u: f64 = self.rng.gen_range(f64::MIN_POSITIVE..1.0);
                1 + (-mean_ms * u.ln()).floor() as u64
            }
        }
    }

    /// Schedules what node `node` asked for: messages, timers (a new
    /// setting of a timer replaces the pending one), request timeouts, and
    /// syncs (done a millisecond later, as a disk would).
    fn apply_out(&mut self, node: usize, out: Out) {
        let generation = self.nodes[node].generation();
        for envelope in out.messages {
            self.send(envelope);
        }
        for (at, timer) in out.timers {
            if let Some(old) = self.timers.remove(&(node, timer)) {
                self.events.remove(&old);
            }
            let delay = at.saturating_sub(self.now);
            let id = self.schedule(delay, Event::NodeTimer(node, generation, timer));
            self.timers.insert((node, timer), id);
        }
        for (at, token) in out.timeouts {
            let delay = at.saturating_sub(self.now);
            self.schedule(delay, Event::RequestTimeout(node, generation, token));
        }
        for token in out.syncs {
            self.schedule(1, Event::Sync(node, generation, token));
        }
    }

    fn apply_fault(&mut self, fault: &Fault) {
        match fault {
            Fault::Partition { .. }
            | Fault::OneWay { .. }
            | Fault::Bridge { .. }
            | Fault::Heal
            | Fault::Weather { .. } => self.apply_network_fault(fault),
            Fault::Crash { node, power_cut } => {
                if self.nodes[*node].is_up() {
                    let backup = self.nodes[*node].backup();
                    self.backups.insert(*node, (backup, self.now));
                }
                self.nodes[*node].crash(*power_cut);
            }
            Fault::Wipe { node } => {
                self.wiped = true;
                let ring = self.ring.clone();
                self.nodes[*node].wipe(&ring);
                self.history.lost_data(self.nodes[*node].id, self.now);
            }
            Fault::Restore { node } => match self.backups.remove(node) {
                Some((backup, taken_at)) => {
                    self.nodes[*node].restore(backup);
                    self.history
                        .restored(self.nodes[*node].id, taken_at, self.now);
                }
                None => self.nodes[*node].crash(false),
            },
            Fault::Join { node, via } | Fault::Leave { node, via } => {
                let kind = if matches!(fault, Fault::Join { .. }) {
                    norn_membership::ChangeKind::Join
                } else {
                    norn_membership::ChangeKind::Leave
                };
                let stage = Request::AdminStage {
                    node: crate::node::address_of(*node),
                    kind,
                };
                self.schedule(0, Event::Admin(*via, stage));
                // The admin signs what the node proposes and commits it
                // there (see `World::admin_response`).
                let propose = Request::AdminPropose { revoke: Vec::new() };
                self.schedule(100, Event::Admin(*via, propose));
            }
            Fault::Restart { node } => {
                if !self.nodes[*node].is_up() {
                    self.start_node(*node);
                }
            }
        }
    }

    fn apply_network_fault(&mut self, fault: &Fault) {
        let n = self.nodes.len();
        match fault {
            Fault::Partition { side } => {
                self.network.cut.clear();
                for a in 0..n {
                    for b in 0..n {
                        if side.contains(&a) != side.contains(&b) {
                            self.network.cut.insert((a, b));
                        }
                    }
                }
            }
            Fault::OneWay { from, to } => {
                self.network.cut.insert((*from, *to));
            }
            Fault::Bridge { side, bridge } => {
                self.network.cut.clear();
                for a in 0..n {
                    for b in 0..n {
                        let crosses = side.contains(&a) != side.contains(&b);
                        if crosses && a != *bridge && b != *bridge {
                            self.network.cut.insert((a, b));
                        }
                    }
                }
            }
            Fault::Heal => self.network.cut.clear(),
            Fault::Weather {
                drop_percent,
                duplicate_percent,
                max_delay_ms,
            } => {
                self.network.drop_percent = *drop_percent;
                self.network.duplicate_percent = *duplicate_percent;
                self.network.max_delay_ms = *max_delay_ms;
            }
            _ => {}
        }
    }

    /// Ends the faults: every link heals, the weather clears, every node
    /// that is down restarts, and clients stop.
    fn stop_faults(&mut self) {
        self.faulting = false;
        self.network = Network {
            max_delay_ms: 5,
            ..Network::default()
        };
        for node in 0..self.nodes.len() {
            if !self.nodes[node].is_up() {
                self.start_node(node);
            }
        }
    }

    fn step(&mut self) -> bool {
        let Some(Reverse((at, id))) = self.queue.pop() else {
            return false;
        };
        self.now = at;
        let Some(event) = self.events.remove(&id) else {
            return true;
        };
        match event {
            Event::Deliver(envelope) => self.deliver(envelope),
            Event::NodeTimer(node, generation, timer) => {
                self.timers.remove(&(node, timer));
                self.record(("timer", node, timer));
                let mut out = Out::default();
                let now = self.now;
                self.nodes[node].on_timer(now, generation, timer, &mut out);
                self.apply_out(node, out);
            }
            Event::RequestTimeout(node, generation, token) => {
                let mut out = Out::default();
                let now = self.now;
                self.nodes[node].on_request_timeout(now, generation, token, &mut out);
                self.apply_out(node, out);
            }
            Event::Sync(node, generation, token) => {
                let mut out = Out::default();
                let now = self.now;
                self.nodes[node].on_sync(now, generation, token, &mut out);
                self.apply_out(node, out);
            }
            Event::Admin(node, request) => {
                self.send_as_operator(node, request);
            }
            Event::ClientStep(client) => self.client_step(client),
            Event::ClientTimeout(client, id) => self.client_response(client, id, None),
            Event::Fault(fault) => {
                self.record(format!("{fault:?}"));
                self.apply_fault(&fault);
                self.faults.push((self.now, fault));
            }
            Event::StopFaults => {
                self.record("stop");
                self.stop_faults();
            }
        }
        true
    }

    fn deliver(&mut self, envelope: Envelope) {
        self.messages += 1;
        let kind = match &envelope.body {
            Body::Request(request) => (0, discriminant_hash(request)),
            Body::Response(response) => (1, discriminant_hash(response)),
        };
        self.record((envelope.from, envelope.to, envelope.id, kind));
        match envelope.to {
            Addr::Node(node) => {
                let mut out = Out::default();
                let now = self.now;
                self.nodes[node].on_message(now, envelope, &mut out);
                self.apply_out(node, out);
            }
            Addr::Client(client) => {
                if let Body::Response(response) = envelope.body {
                    self.client_response(client, envelope.id, Some(response));
                }
            }
            Addr::Admin => {
                if let (Body::Response(response), Addr::Node(node)) = (envelope.body, envelope.from)
                {
                    if self.awaiting == Some(envelope.id) {
                        self.answer = Some(response);
                    } else {
                        self.admin_response(node, response);
                    }
                }
            }
        }
    }

    /// The admin's answer to a node's reply: a proposed ring is signed and
    /// committed on the node that proposed it, as `norn admin commit` does.
    fn admin_response(&mut self, node: usize, response: Response) {
        if let Response::Proposed(ring) = response {
            let ring = crate::trust::trust().sign(&ring);
            self.schedule(0, Event::Admin(node, Request::AdminCommit { ring }));
        }
    }

    fn client_step(&mut self, client: usize) {
        if !self.faulting || !self.clients[client].is_idle() {
            return;
        }
        let call = match self.rng.gen_range(0..10) {
            0..=1 => {
                let key = REGISTER_KEYS[self.rng.gen_range(0..REGISTER_KEYS.len())];
                self.clients[client].start(key, true)
            }
            2..=6 => {
                let key = SET_KEYS[self.rng.gen_range(0..SET_KEYS.len())];
                self.clients[client].start(key, false)
            }
            7..=8 => {
                let key = BLIND_KEYS[self.rng.gen_range(0..BLIND_KEYS.len())];
                let large = self.rng.gen_bool(0.3);
                self.clients[client].start_blind_write(key, large, &mut self.history)
            }
            _ => {
                let key = BLIND_KEYS[self.rng.gen_range(0..BLIND_KEYS.len())];
                self.clients[client].start_delete(key)
            }
        };
        self.client_send(client, call);
    }

    fn client_send(&mut self, client: usize, call: crate::workload::Call) {
        let node = self.rng.gen_range(0..self.nodes.len());
        self.schedule(CLIENT_TIMEOUT_MS, Event::ClientTimeout(client, call.id));
        self.send(Envelope {
            from: Addr::Client(client),
            to: Addr::Node(node),
            id: call.id,
            generation: 0,
            body: Body::Request(call.request),
        });
    }

    fn client_response(&mut self, client: usize, id: u64, response: Option<Response>) {
        if !self.clients[client].awaits(id) {
            return;
        }
        self.history.now = self.now;
        match self.clients[client].on_response(response, &mut self.history) {
            Some(call) => self.client_send(client, call),
            None => {
                let think = self.rng.gen_range(1..30);
                self.schedule(think, Event::ClientStep(client));
            }
        }
    }

    /// Whether every node holds the same ring, every key's primaries hold
    /// byte-equal copies and no hint is pending anywhere.
    fn converged(&self) -> bool {
        if self.nodes.iter().any(|n| n.hints_pending() > 0) {
            return false;
        }
        let versions: BTreeSet<u64> = self
            .nodes
            .iter()
            .map(|n| n.ring().map_or(0, |r| r.version()))
            .collect();
        versions.len() == 1 && crate::checker::replica_differences(&self.nodes).is_empty()
    }

    /// Runs the fault window, heals, and waits for convergence.
    pub fn run(mut self) -> Run {
        let heal_at = 1_500 + self.options.fault_ms;
        self.run_until(heal_at + self.options.settle_ms);
        let deadline = heal_at + self.options.converge_max_ms;
        let mut converged_after_ms = self.run_until_converged(deadline).map(|at| at - heal_at);
        if converged_after_ms.is_some() {
            // Quiet time after convergence: verifications go on and reap
            // the tombstones every replica holds, which must leave the
            // replicas equal again.
            self.run_until(self.now + self.options.quiet_ms);
            converged_after_ms = self
                .run_until_converged(self.now + self.options.converge_max_ms)
                .and(converged_after_ms);
        }
        Run {
            seed: self.seed,
            nodes: self.nodes,
            history: self.history,
            faults: self.faults,
            converged_after_ms,
            trace: self.trace.finish(),
            messages: self.messages,
        }
    }
}

impl World {
    fn run_until(&mut self, until: u64) {
        while self.now < until {
            if !self.step() {
                break;
            }
        }
    }

    /// Runs until the replicas are converged (checked every 250 ms);
    /// returns when, or `None` past `deadline`.
    fn run_until_converged(&mut self, deadline: u64) -> Option<u64> {
        while self.now < deadline {
            if self.converged() {
                return Some(self.now);
            }
            self.run_until(self.now + 250);
        }
        None
    }
}

/// A message's variant, for the trace.
fn discriminant_hash<T>(value: &T) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    std::mem::discriminant(value).hash(&mut hasher);
    hasher.finish()
}
