//! The running node: its endpoint, its gossip loop, and its request
//! handlers. Every task runs inside the node's span, so every log line
//! carries the node's id and name.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use norn_membership::{ChangeKind, Effect, GossipMessage, Member, MemberState, Membership};
use norn_net::tls::{check_private_key_mode, TlsMaterial};
use norn_net::{Endpoint, Handler, PeerIdentity};
use norn_proto::{codec, ErrorCode, ErrorReply, MemberInfo, Request, Response};
use norn_ring::{NodeId, Ring};
use norn_storage::{RocksStorage, Storage, Store, StoreOptions};
use tracing::Instrument;

use crate::config::NodeConfig;
use crate::error::NodeError;
use crate::identity::{self, Identity};
use crate::plan;

const RING_META: &str = "ring";
/// Name of the file in the data directory that holds the advertised address.
pub const ADDRESS_FILE: &str = "address";
/// Name of the file in the data directory that holds the HTTP address.
pub const HTTP_ADDRESS_FILE: &str = "http_address";

/// A running norn node.
#[derive(Debug)]
pub struct Node {
    pub(crate) config: NodeConfig,
    pub(crate) identity: Identity,
    /// This run of the node: the actors its dots belong to.
    pub(crate) lifetime: norn_clock::Lifetime,
    pub(crate) storage: Arc<RocksStorage>,
    pub(crate) endpoint: Arc<Endpoint>,
    membership: Mutex<Membership>,
    /// The current ring, shared with requests without copying it.
    ring: RwLock<Option<Arc<Ring>>>,
    pub(crate) started: Instant,
    pub(crate) metrics: crate::metrics::Metrics,
    pub(crate) anti_entropy: crate::anti_entropy::AntiEntropyState,
    pub(crate) transfers: crate::transfer::TransferTable,
    /// The newest ring version a peer sent data by (see
    /// [`Request::ReplicaPutMany`]).
    pub(crate) newest_ring_seen: std::sync::atomic::AtomicU64,
    pub(crate) span: tracing::Span,
}

pub(crate) fn error(code: ErrorCode, message: impl Into<String>) -> Response {
    Response::Error(ErrorReply {
        code,
        message: message.into(),
    })
}

impl Node {
    /// Opens the node's storage and endpoint, as `config` says. Refuses to
    /// start with a private key readable by others, a certificate that is not
    /// a node's, or a data directory of another node.
    pub async fn start(config: NodeConfig) -> Result<Arc<Node>, NodeError> {
        check_private_key_mode(&config.tls.key)?;
        let tls = TlsMaterial::load(&config.tls_files())?;
        let node_id = match tls.own_identity()? {
            PeerIdentity::Node(id) => id,
            other => {
                return Err(NodeError::NotANodeCertificate {
                    found: other.to_string(),
                })
            }
        };
        let data_dir = &config.node.data_dir;
        std::fs::create_dir_all(data_dir).map_err(|e| NodeError::Io {
            path: data_dir.display().to_string(),
            reason: e.to_string(),
        })?;
        let options = StoreOptions {
            tree_shape: config.tree_shape(),
            sync_every_write: config.storage.sync_every_write,
            hint_bytes_max_per_target: config.storage.hint_bytes_max_per_target,
            emulate_power_loss_on_kill: config.storage.emulate_power_loss_on_kill,
        };
        let storage = Arc::new(Store::open_rocks(&data_dir.join("db"), options)?);
        let identity =
            identity::load_or_create(&*storage, node_id, &data_dir.display().to_string())?;
        let ring = match storage.get_meta(RING_META)? {
            Some(bytes) => Some(codec::decode::<Ring>(&bytes).map_err(|e| NodeError::Meta {
                what: "ring",
                reason: e.to_string(),
            })?),
            None => None,
        };
        let endpoint = Arc::new(Endpoint::bind(
            config.node.listen,
            &tls,
            config.endpoint_limits(),
        )?);
        let advertised = config.node.advertise.unwrap_or(endpoint.local_addr()?);
        let address_file = data_dir.join(ADDRESS_FILE);
        std::fs::write(&address_file, format!("{advertised}\n")).map_err(|e| NodeError::Io {
            path: address_file.display().to_string(),
            reason: e.to_string(),
        })?;
        let me = Member {
            id: node_id,
            name: config.node.name.clone(),
            address: advertised.to_string(),
            zone: config.node.zone.clone(),
            weight: config.node.weight,
            state: MemberState::Active,
            incarnation: identity.incarnation,
            heartbeat: 0,
            handoffs: Vec::new(),
        };
        let ring_cache = RwLock::new(ring.clone().map(Arc::new));
        let mut membership = Membership::new(me, ring, config.membership, rand::random());
        membership.add_seeds(config.node.seeds.iter().cloned());
        let span = tracing::info_span!("node", id = %node_id, name = %config.node.name);
        span.in_scope(|| {
            tracing::info!(address = %advertised, incarnation = identity.incarnation, "node started");
        });
        let lifetime = norn_clock::Lifetime::new(rand::random());
        span.in_scope(|| tracing::info!(lifetime = %format_args!("{:016x}", lifetime.id()), "dots of this run belong to a fresh lifetime"));
        Ok(Arc::new(Node {
            config,
            identity,
            lifetime,
            storage,
            endpoint,
            membership: Mutex::new(membership),
            ring: ring_cache,
            started: Instant::now(),
            metrics: crate::metrics::Metrics::default(),
            anti_entropy: Default::default(),
            transfers: Default::default(),
            newest_ring_seen: Default::default(),
            span,
        }))
    }

    pub fn id(&self) -> NodeId {
        self.identity.node
    }

    /// This node's replica: its storage, this run's actors, the limits.
    pub(crate) fn replica(&self) -> crate::replica::LocalReplica<'_> {
        crate::replica::LocalReplica {
            storage: &*self.storage,
            lifetime: &self.lifetime,
            limits: crate::replica::ObjectLimits {
                siblings_max: self.config.data.siblings_max as usize,
                object_bytes_max: self.config.data.max_object_bytes,
                wire_object_bytes_max: self.config.limits.max_frame_bytes - (64 << 10),
                batch_bytes_max: crate::replica::BATCH_BYTES_MAX,
            },
        }
    }

    /// Serves and gossips until `shutdown` completes, then closes the
    /// endpoint and syncs storage.
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()>) -> Result<(), NodeError> {
        let handler: Handler = {
            let node = self.clone();
            Arc::new(move |peer, request| {
                let node = node.clone();
                let span = node.span.clone();
                Box::pin(async move { node.handle(peer, request).await }.instrument(span))
            })
        };
        let serve = tokio::spawn({
            let endpoint = self.endpoint.clone();
            async move { endpoint.serve(handler).await }.instrument(self.span.clone())
        });
        let http = self.clone().start_http().await?;
        let gossip = tokio::spawn(self.clone().gossip_loop().instrument(self.span.clone()));
        let background = [
            tokio::spawn(self.clone().handoff_loop().instrument(self.span.clone())),
            tokio::spawn(
                self.clone()
                    .anti_entropy_loop()
                    .instrument(self.span.clone()),
            ),
            tokio::spawn(self.clone().transfer_loop().instrument(self.span.clone())),
        ];
        shutdown.await;
        self.span.in_scope(|| tracing::info!("shutting down"));
        gossip.abort();
        for task in background {
            task.abort();
        }
        http.abort();
        self.endpoint.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
        serve.abort();
        self.storage.sync()?;
        self.span.in_scope(|| tracing::info!("stopped"));
        Ok(())
    }

    /// Binds the HTTP API, writes its address to the data directory, and
    /// serves it until the returned task is aborted.
    async fn start_http(self: Arc<Self>) -> Result<tokio::task::JoinHandle<()>, NodeError> {
        let listen = self.config.http.listen;
        let io_error = |path: String, e: std::io::Error| NodeError::Io {
            path,
            reason: e.to_string(),
        };
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| io_error(listen.to_string(), e))?;
        let bound = listener
            .local_addr()
            .map_err(|e| io_error(listen.to_string(), e))?;
        let file = self.config.node.data_dir.join(HTTP_ADDRESS_FILE);
        std::fs::write(&file, format!("{bound}\n"))
            .map_err(|e| io_error(file.display().to_string(), e))?;
        self.span
            .in_scope(|| tracing::info!(address = %bound, "HTTP API listening"));
        let app = crate::http::router(self.clone());
        let span = self.span.clone();
        Ok(tokio::spawn(
            async move {
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!(error = %e, "HTTP API stopped");
                }
            }
            .instrument(span),
        ))
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub(crate) fn membership(&self) -> MutexGuard<'_, Membership> {
        self.membership.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn gossip_loop(self: Arc<Self>) {
        let interval_ms = self.config.membership.gossip_interval_ms;
        let mut ticker = tokio::time::interval(Duration::from_millis(interval_ms));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let effects = self.membership().tick(self.now_ms());
            self.metrics
                .gossip_rounds
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.apply(effects);
        }
    }

    /// Carries out what the membership state machine asked for.
    fn apply(self: &Arc<Self>, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Send { address, message } => {
                    let node = self.clone();
                    tokio::spawn(
                        async move { node.send_gossip(address, message).await }
                            .instrument(self.span.clone()),
                    );
                }
                Effect::PeerUp(peer) => tracing::info!(peer = %peer, "peer up"),
                Effect::PeerDown(peer) => tracing::warn!(peer = %peer, "peer down"),
                Effect::RingAdopted(ring) => self.persist_ring(&ring),
            }
        }
    }

    async fn send_gossip(&self, address: String, message: GossipMessage) {
        let addr = match address.parse::<SocketAddr>() {
            Ok(addr) => addr,
            Err(_) => match Endpoint::resolve(&address).await {
                Ok(addr) => addr,
                Err(e) => {
                    tracing::debug!(peer = %address, error = %e, "cannot resolve gossip target");
                    return;
                }
            },
        };
        let timeout = Duration::from_millis(self.config.limits.peer_request_timeout_ms);
        if let Err(e) = self
            .endpoint
            .call(addr, &Request::Gossip(message), timeout)
            .await
        {
            tracing::debug!(peer = %addr, error = %e, "gossip not delivered");
        }
    }

    /// The current ring, if the node holds one.
    pub(crate) fn ring(&self) -> Option<Arc<Ring>> {
        self.ring.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn persist_ring(&self, ring: &Ring) {
        *self.ring.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(ring.clone()));
        let stored = codec::encode(ring)
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
    }

    async fn handle(self: Arc<Self>, peer: PeerIdentity, request: Request) -> Response {
        match request {
            Request::Ping => Response::Pong,
            Request::Gossip(message) => self.handle_gossip(peer, message),
            Request::ReplicaGet { bucket, key } => self.replica_get(&bucket, &key),
            Request::ReplicaPut {
                bucket,
                key,
                n,
                object,
                hint_for,
                sync,
            } => self.replica_put(&bucket, &key, n, &object, hint_for, sync),
            Request::Get {
                bucket,
                key,
                options,
                timeout_ms,
            } => self.coordinate_get(bucket, key, options, timeout_ms).await,
            Request::Put {
                bucket,
                key,
                value,
                context,
                options,
                timeout_ms,
                forwarded,
            } => {
                self.coordinate_put(bucket, key, value, context, options, timeout_ms, forwarded)
                    .await
            }
            Request::AdminHints => Response::Hints(
                self.storage
                    .hint_queues()
                    .into_iter()
                    .map(|(target, q)| (target, q.hints, q.bytes))
                    .collect(),
            ),
            Request::AdminMembers => Response::Members(self.member_infos()),
            Request::AdminRing => Response::Ring(self.membership().ring().cloned()),
            Request::AdminJoin { seed } => self.admin_join(seed),
            Request::AdminStage { node, kind } => self.admin_stage(&node, kind),
            Request::AdminPlan => Response::Plan(self.plan()),
            Request::AdminCommit => self.admin_commit(),
            Request::AdminRepair { partition } => self.admin_repair(partition),
            Request::AdminRepairProgress => self.repair_progress(),
            Request::AdminRepairStatus => Response::RepairStatus(self.repair_status()),
            Request::AdminTransfers => Response::Transfers(self.transfer_views()),
            exchange @ (Request::TreeNodes { .. }
            | Request::SegmentDigests { .. }
            | Request::KeyDigests { .. }
            | Request::ReplicaGetMany { .. }
            | Request::ReplicaPutMany { .. }
            | Request::Reap { .. }
            | Request::TreeRoots { .. }) => self.serve_replica(peer, &exchange),
        }
    }

    /// The replica side of exchanges and transfers. Reads are open to admin
    /// clients (to inspect replicas); writes and removals only to nodes.
    fn serve_replica(&self, peer: PeerIdentity, request: &Request) -> Response {
        let writes = matches!(
            request,
            Request::ReplicaPutMany { .. } | Request::Reap { .. }
        );
        if writes && !matches!(peer, PeerIdentity::Node(_)) {
            return error(
                ErrorCode::Forbidden,
                format!("{peer} may not make replica requests"),
            );
        }
        if let Request::ReplicaPutMany { ring_version, .. } = request {
            self.newest_ring_seen
                .fetch_max(*ring_version, std::sync::atomic::Ordering::Relaxed);
        }
        let Some(ring) = self.ring() else {
            return error(ErrorCode::Unavailable, "this node holds no ring yet");
        };
        let handing_off = |partition| !self.membership().handing_off(partition).is_empty();
        let cluster = crate::replica::ClusterView {
            ring: &ring,
            handing_off: &handing_off,
        };
        self.replica()
            .serve(cluster, request)
            .unwrap_or_else(|| error(ErrorCode::BadRequest, "not a replica request"))
    }

    fn handle_gossip(self: &Arc<Self>, peer: PeerIdentity, message: GossipMessage) -> Response {
        let sender = message.sender();
        if peer != PeerIdentity::Node(sender) {
            tracing::warn!(peer = %peer, claimed = %sender, "refused gossip claiming another node's id");
            return error(
                ErrorCode::Forbidden,
                format!("{peer} may not speak for node {sender}"),
            );
        }
        let effects = self.membership().receive(self.now_ms(), message);
        self.apply(effects);
        Response::Ack
    }

    /// The metrics text, with its gauges read now.
    pub(crate) fn render_metrics(&self) -> String {
        let queues = self.storage.hint_queues();
        let views = self.membership().view(self.now_ms());
        let (oldest_verified_s, partitions_unverified) = self.verification_gauges();
        let peers_up = views.iter().skip(1).filter(|v| v.up).count() as u64;
        let gauges = crate::metrics::Gauges {
            hints_pending: queues.values().map(|q| q.hints).sum(),
            hint_bytes_pending: queues.values().map(|q| q.bytes).sum(),
            peers_up,
            peers_down: views.len().saturating_sub(1) as u64 - peers_up,
            storage_bytes: self.storage.data_size_bytes(),
            ring_version: self.ring().map_or(0, |r| r.version()),
            oldest_verified_s,
            partitions_unverified,
        };
        self.metrics.render(gauges)
    }

    pub(crate) fn member_infos(&self) -> Vec<MemberInfo> {
        self.membership()
            .view(self.now_ms())
            .into_iter()
            .map(|view| MemberInfo {
                member: view.member,
                up: view.up,
                phi: view.phi,
            })
            .collect()
    }

    fn admin_join(self: &Arc<Self>, seed: String) -> Response {
        let mut membership = self.membership();
        membership.add_seeds([seed.clone()]);
        let change = membership.stage(self.id(), ChangeKind::Join);
        tracing::info!(seed = %seed, "join staged");
        Response::Staged(change)
    }

    fn admin_stage(&self, node: &str, kind: ChangeKind) -> Response {
        let mut membership = self.membership();
        let found = membership.view(0).into_iter().map(|v| v.member).find(|m| {
            m.name == node || m.id.to_string() == node || format!("{:x}", m.id.0) == node
        });
        let Some(member) = found else {
            return error(
                ErrorCode::BadRequest,
                format!("no member is named {node:?}; see `norn admin members`"),
            );
        };
        if kind != ChangeKind::Join
            && !membership
                .ring()
                .is_some_and(|r| r.members().contains_key(&member.id))
        {
            return error(
                ErrorCode::Conflict,
                format!("{} is not in the ring", member.name),
            );
        }
        let change = membership.stage(member.id, kind);
        tracing::info!(node = %member.id, ?kind, "change staged");
        Response::Staged(change)
    }

    fn known_members(membership: &Membership) -> BTreeMap<NodeId, Member> {
        membership
            .view(0)
            .into_iter()
            .map(|v| (v.member.id, v.member))
            .collect()
    }

    fn plan(&self) -> norn_proto::PlanView {
        let membership = self.membership();
        let members = Self::known_members(&membership);
        plan::view(
            membership.ring(),
            &membership.staged(),
            &members,
            self.config.ring.partition_bits,
            self.config.ring.default_n,
        )
    }

    fn admin_commit(self: &Arc<Self>) -> Response {
        let effects = {
            let mut membership = self.membership();
            let members = Self::known_members(&membership);
            let proposed = plan::propose(
                membership.ring(),
                &membership.staged(),
                &members,
                self.config.ring.partition_bits,
            );
            match proposed {
                Ok(ring) => membership.commit_ring(ring),
                Err(reason) => return error(ErrorCode::Conflict, reason),
            }
        };
        let version = effects.iter().find_map(|e| match e {
            Effect::RingAdopted(ring) => Some(ring.version()),
            _ => None,
        });
        self.apply(effects);
        match version {
            Some(version) => Response::Committed { version },
            None => error(
                ErrorCode::Conflict,
                "a newer ring arrived meanwhile; plan again",
            ),
        }
    }
}
