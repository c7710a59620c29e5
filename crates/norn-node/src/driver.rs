//! The tokio driver of a [`Core`]: one task owns the core and feeds it,
//! turn by turn, what arrived (requests from QUIC and HTTP, answers to its
//! requests, finished syncs, due timers), then carries out its effects:
//! sends on the endpoint, replies to waiting callers, syncs storage on a
//! blocking thread (every sync asked for while one runs shares the next:
//! group commit), and keeps its timers.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use norn_core::{
    CallFailure, CallId, Caller, Core, Destination, Effect, LatencyKind, SyncToken, Timer, Token,
    Trust,
};
use norn_net::Endpoint;
use norn_proto::{ErrorCode, ErrorReply, MemberInfo, NodeLatencies, NodeStatus, Request, Response};
use norn_ring::Ring;
use norn_storage::Storage;
use tokio::sync::{mpsc, oneshot};

use crate::resolver::Resolver;
use tracing::Instrument;

/// Inputs queued for the core before callers wait.
const INPUT_QUEUE: usize = 65_536;
/// Inputs handed to the core in one turn before its effects are carried out.
const INPUTS_PER_TURN: usize = 256;

/// What the driver reads off the core for the HTTP API.
#[derive(Debug)]
pub(crate) enum View {
    Metrics(oneshot::Sender<String>),
    Ring(oneshot::Sender<Option<Arc<Ring>>>),
    Members(oneshot::Sender<Vec<MemberInfo>>),
    Latencies(oneshot::Sender<NodeLatencies>),
    Status(oneshot::Sender<NodeStatus>),
}

/// What arrives for the core.
#[derive(Debug)]
enum Input {
    Request {
        caller: Caller,
        request: Request,
        reply: oneshot::Sender<Response>,
    },
    Reply {
        token: Token,
        reply: Result<Response, CallFailure>,
        /// The round trip of a replica request answered, in microseconds.
        round_trip: Option<(LatencyKind, u64)>,
    },
    Synced {
        tokens: Vec<SyncToken>,
        ok: bool,
    },
    View(View),
    /// New certificates were loaded: judge by and sign with these.
    Trust(Trust),
    /// The seeds `node.seed_names` resolve to now.
    DiscoveredSeeds(Vec<String>),
}

/// A handle to a running driver, for the endpoint's and the HTTP API's
/// handlers.
#[derive(Debug, Clone)]
pub(crate) struct DriverHandle {
    inputs: mpsc::Sender<Input>,
}

fn unavailable() -> Response {
    Response::Error(ErrorReply {
        code: ErrorCode::Unavailable,
        message: "the node is shutting down".into(),
    })
}

impl DriverHandle {
    /// Hands `request` to the core and waits for its answer.
    pub(crate) async fn call(&self, caller: Caller, request: Request) -> Response {
        let (reply, answer) = oneshot::channel();
        let input = Input::Request {
            caller,
            request,
            reply,
        };
        if self.inputs.send(input).await.is_err() {
            return unavailable();
        }
        answer.await.unwrap_or_else(|_| unavailable())
    }

    /// Reads a view of the core; `None` once it stopped.
    /// Hands the core the trust of newly loaded certificates.
    pub(crate) async fn set_trust(&self, trust: Trust) {
        let _ = self.inputs.send(Input::Trust(trust)).await;
    }

    /// Hands the core the seeds DNS gave.
    pub(crate) async fn set_discovered_seeds(&self, addresses: Vec<String>) {
        let _ = self.inputs.send(Input::DiscoveredSeeds(addresses)).await;
    }

    pub(crate) async fn view<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> View) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.inputs.send(Input::View(make(tx))).await.ok()?;
        rx.await.ok()
    }
}

/// The timers the core set, earliest first.
#[derive(Debug, Default)]
struct Timers {
    due: BTreeMap<(u64, u64), Timer>,
    set: HashMap<Timer, (u64, u64)>,
    next_seq: u64,
}

impl Timers {
    /// Sets `timer` at `at_ms`, replacing an earlier setting of it.
    fn set(&mut self, at_ms: u64, timer: Timer) {
        if let Some(old) = self.set.remove(&timer) {
            self.due.remove(&old);
        }
        self.next_seq += 1;
        let slot = (at_ms, self.next_seq);
        self.due.insert(slot, timer);
        self.set.insert(timer, slot);
    }

    fn next_at(&self) -> Option<u64> {
        self.due.keys().next().map(|(at, _)| *at)
    }

    /// Takes every timer due at `now_ms`.
    fn take_due(&mut self, now_ms: u64) -> Vec<Timer> {
        let mut fired = Vec::new();
        while let Some((&slot, &timer)) = self.due.iter().next() {
            if slot.0 > now_ms {
                break;
            }
            self.due.remove(&slot);
            self.set.remove(&timer);
            fired.push(timer);
        }
        fired
    }
}

/// The task that owns a core.
pub(crate) struct Driver {
    core: Core,
    inputs: mpsc::Receiver<Input>,
    /// For the tasks the driver starts to report back.
    handle: mpsc::Sender<Input>,
    endpoint: Arc<Endpoint>,
    /// Peers' names, resolved once and kept.
    resolver: Resolver,
    storage: Arc<dyn Storage>,
    started: Instant,
    calls: HashMap<CallId, Waiting>,
    next_call: u64,
    timers: Timers,
    sync_running: bool,
    sync_waiting: Vec<SyncToken>,
    span: tracing::Span,
}

/// A caller waiting for the core's answer.
#[derive(Debug)]
struct Waiting {
    reply: oneshot::Sender<Response>,
    /// For a replica request, what its service time counts as and when it
    /// arrived.
    served: Option<(LatencyKind, Instant)>,
}

/// What serving `request` counts as, for the latency histograms.
fn service_kind(request: &Request) -> Option<LatencyKind> {
    match request {
        Request::ReplicaPut { .. } => Some(LatencyKind::WriteService),
        Request::ReplicaGet { .. } => Some(LatencyKind::ReadService),
        _ => None,
    }
}

/// What the round trip of `request` to `to` counts as.
fn round_trip_kind(to: &Destination, request: &Request) -> Option<LatencyKind> {
    match (to, request) {
        (Destination::Node { id, .. }, Request::ReplicaPut { .. }) => {
            Some(LatencyKind::WriteRoundTrip(*id))
        }
        (Destination::Node { id, .. }, Request::ReplicaGet { .. }) => {
            Some(LatencyKind::ReadRoundTrip(*id))
        }
        _ => None,
    }
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("core", &self.core.id())
            .field("calls", &self.calls.len())
            .finish()
    }
}

impl Driver {
    /// A driver of `core`, whose clock reads `started` as 0, and its handle.
    pub(crate) fn new(
        core: Core,
        endpoint: Arc<Endpoint>,
        storage: Arc<dyn Storage>,
        started: Instant,
        span: tracing::Span,
    ) -> (Driver, DriverHandle) {
        let (tx, rx) = mpsc::channel(INPUT_QUEUE);
        let driver = Driver {
            core,
            inputs: rx,
            handle: tx.clone(),
            endpoint,
            resolver: Resolver::default(),
            storage,
            started,
            calls: HashMap::new(),
            next_call: 0,
            timers: Timers::default(),
            sync_running: false,
            sync_waiting: Vec::new(),
            span,
        };
        (driver, DriverHandle { inputs: tx })
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Carries out what the core decided when it was made (its first
    /// timers, the certificates its ring revokes); call before the
    /// endpoint serves, so that no connection comes before them.
    pub(crate) fn start(&mut self) {
        let effects = self.core.take_effects();
        self.execute(effects);
    }

    /// Runs until `shutdown` completes; then syncs what the core wrote.
    pub(crate) async fn run(mut self, shutdown: oneshot::Receiver<()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let wake = self
                .timers
                .next_at()
                .map(|at| self.started + Duration::from_millis(at));
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                input = self.inputs.recv() => match input {
                    Some(input) => self.take_turn(input),
                    None => break,
                },
                _ = sleep => self.fire_timers(),
            }
            let effects = self.core.take_effects();
            self.execute(effects);
        }
        if let Err(e) = self.storage.sync() {
            tracing::error!(error = %e, "final sync failed");
        }
    }

    /// Hands `first` and whatever else is queued (up to a turn's worth) to
    /// the core.
    fn take_turn(&mut self, first: Input) {
        self.feed(first);
        for _ in 1..INPUTS_PER_TURN {
            match self.inputs.try_recv() {
                Ok(input) => self.feed(input),
                Err(_) => break,
            }
        }
        self.fire_timers();
    }

    fn fire_timers(&mut self) {
        let now = self.now_ms();
        for timer in self.timers.take_due(now) {
            self.core.on_timer(now, timer);
        }
    }

    fn feed(&mut self, input: Input) {
        let now = self.now_ms();
        match input {
            Input::Request {
                caller,
                request,
                reply,
            } => {
                self.next_call += 1;
                let call = CallId(self.next_call);
                let served = service_kind(&request).map(|kind| (kind, Instant::now()));
                self.calls.insert(call, Waiting { reply, served });
                self.core.on_request(now, call, caller, request);
            }
            Input::Reply {
                token,
                reply,
                round_trip,
            } => {
                if let Some((kind, micros)) = round_trip {
                    self.core.observe(now, kind, micros);
                }
                self.core.on_reply(now, token, reply);
            }
            Input::Synced { tokens, ok } => {
                self.sync_running = false;
                if ok {
                    for token in tokens {
                        self.core.on_synced(now, token);
                    }
                }
                self.start_sync();
            }
            Input::View(view) => self.answer_view(view),
            Input::Trust(trust) => self.core.set_trust(trust),
            Input::DiscoveredSeeds(addresses) => self.core.set_discovered_seeds(addresses),
        }
    }

    fn answer_view(&self, view: View) {
        match view {
            View::Metrics(tx) => {
                let _ = tx.send(self.core.render_metrics());
            }
            View::Ring(tx) => {
                let _ = tx.send(self.core.ring());
            }
            View::Members(tx) => {
                let _ = tx.send(self.core.members());
            }
            View::Latencies(tx) => {
                let _ = tx.send(self.core.latencies());
            }
            View::Status(tx) => {
                let _ = tx.send(self.core.status());
            }
        }
    }

    fn execute(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Send {
                    to,
                    token,
                    request,
                    timeout_ms,
                } => self.send(to, token, request, timeout_ms),
                Effect::Reply { call, response } => {
                    if let Some(waiting) = self.calls.remove(&call) {
                        if let Some((kind, arrived)) = waiting.served {
                            let micros = arrived.elapsed().as_micros() as u64;
                            self.core.observe(self.now_ms(), kind, micros);
                        }
                        let _ = waiting.reply.send(response);
                    }
                }
                Effect::Sync { token } => {
                    self.sync_waiting.push(token);
                    self.start_sync();
                }
                Effect::SetTimer { at_ms, timer } => self.timers.set(at_ms, timer),
                Effect::Refuse { certificates } => {
                    tracing::info!(
                        certificates = certificates.len(),
                        "refusing the certificates the ring revokes"
                    );
                    self.endpoint.refuse(&certificates);
                }
            }
        }
    }

    /// Sends on the endpoint from a task of its own; its outcome comes back
    /// as an input.
    fn send(&self, to: Destination, token: Token, request: Request, timeout_ms: u64) {
        let (endpoint, handle) = (self.endpoint.clone(), self.handle.clone());
        let resolver = self.resolver.clone();
        let timeout = Duration::from_millis(timeout_ms);
        let timed = round_trip_kind(&to, &request);
        let task = async move {
            let sent = Instant::now();
            let reply = match resolve(&resolver, &to).await {
                // A peer that restarted resets the pooled connection its
                // previous process held: what may arrive twice is sent again
                // on a fresh one, so the first request after a restart does
                // not fail for it.
                Ok(addr) => match (&to, request.is_repeatable()) {
                    (Destination::Node { id, .. }, true) => {
                        endpoint
                            .call_node_idempotent(*id, addr, &request, timeout)
                            .await
                    }
                    (Destination::Node { id, .. }, false) => {
                        endpoint.call_node(*id, addr, &request, timeout).await
                    }
                    (Destination::Address(_), true) => {
                        endpoint.call_idempotent(addr, &request, timeout).await
                    }
                    (Destination::Address(_), false) => {
                        endpoint.call(addr, &request, timeout).await
                    }
                }
                .map_err(|e| match e {
                    norn_net::NetError::Timeout { .. } => CallFailure::Timeout,
                    other => CallFailure::Unreachable(other.to_string()),
                }),
                Err(reason) => Err(CallFailure::Unreachable(reason)),
            };
            if let Err(failure) = &reply {
                tracing::debug!(peer = ?to, ?failure, "request failed");
            }
            let answered = matches!(
                reply,
                Ok(Response::Stored { .. } | Response::Replica { .. })
            );
            let round_trip = timed
                .filter(|_| answered)
                .map(|kind| (kind, sent.elapsed().as_micros() as u64));
            let input = Input::Reply {
                token,
                reply,
                round_trip,
            };
            let _ = handle.send(input).await;
        };
        tokio::spawn(task.instrument(self.span.clone()));
    }

    /// Starts a sync of every write so far for the syncs waiting, unless
    /// one runs (its end starts the next).
    fn start_sync(&mut self) {
        if self.sync_running || self.sync_waiting.is_empty() {
            return;
        }
        self.sync_running = true;
        let tokens = std::mem::take(&mut self.sync_waiting);
        let (storage, handle) = (self.storage.clone(), self.handle.clone());
        tokio::spawn(async move {
            let synced = tokio::task::spawn_blocking(move || storage.sync()).await;
            let ok = match synced {
                Ok(Ok(())) => true,
                Ok(Err(e)) => {
                    // What waited for this sync is never acknowledged as
                    // durable: its callers time out instead.
                    tracing::error!(error = %e, "storage sync failed");
                    false
                }
                Err(e) => {
                    tracing::error!(error = %e, "storage sync task failed");
                    false
                }
            };
            let _ = handle.send(Input::Synced { tokens, ok }).await;
        });
    }
}

/// The address a destination names, through `resolver`.
async fn resolve(resolver: &Resolver, to: &Destination) -> Result<SocketAddr, String> {
    let address = match to {
        Destination::Node { address, .. } | Destination::Address(address) => address,
    };
    resolver.resolve(address).await
}
