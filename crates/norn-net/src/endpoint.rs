//! One QUIC endpoint per node (or per client), and its connection pool.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use norn_proto::{Request, Response};
use norn_ring::{CertificateFingerprint, NodeId};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use tokio::sync::Mutex;

use crate::certs::NODE_SERVER_NAME;
use crate::error::NetError;
pub use crate::rpc::Handler;
use crate::rpc::{serve_connection, RpcConnection};
use crate::tls::{peer_certificate, PeerIdentity, Revoked, TlsMaterial};

/// Bounds of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointLimits {
    /// Largest frame accepted, in bytes (an 8 MiB value plus headers fits).
    pub max_frame_bytes: usize,
    /// Requests in flight per connection, each way.
    pub max_in_flight_per_connection: usize,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout_ms: u64,
    /// Keep-alive pings keep idle connections open.
    pub keep_alive_ms: u64,
    /// How long a connection attempt may take.
    pub connect_timeout_ms: u64,
    /// UDP socket send and receive buffers.
    pub udp_buffer_bytes: usize,
    /// A write that makes no progress this long (the peer stopped reading)
    /// closes the connection.
    pub write_stall_timeout_ms: u64,
    /// Bytes of requests a connection's peer may have queued or running on
    /// this side at once, and bytes of responses waiting to be written;
    /// past that this side stops reading its requests (QUIC flow control
    /// pushes back). At least one frame.
    pub queued_bytes_per_connection: usize,
}

impl Default for EndpointLimits {
    fn default() -> Self {
        EndpointLimits {
            max_frame_bytes: (32 << 20) + (64 << 10),
            max_in_flight_per_connection: 1024,
            idle_timeout_ms: 30_000,
            keep_alive_ms: 5_000,
            connect_timeout_ms: 3_000,
            udp_buffer_bytes: 4 << 20,
            write_stall_timeout_ms: 10_000,
            queued_bytes_per_connection: 64 << 20,
        }
    }
}

/// How long connections made before a certificate reload may finish what
/// they carry before they are closed (their peers then redial).
const RELOAD_GRACE: Duration = Duration::from_secs(5);

/// A QUIC endpoint with mutual TLS, able to accept and to connect.
#[derive(Debug)]
pub struct Endpoint {
    endpoint: quinn::Endpoint,
    /// Replaced when the certificates are reloaded.
    client_config: RwLock<quinn::ClientConfig>,
    accepts: bool,
    limits: EndpointLimits,
    identity: Option<PeerIdentity>,
    /// One slot per remote address; a slot's lock is held while dialing, so
    /// a slow or dead peer delays only its own callers.
    pool: std::sync::Mutex<HashMap<SocketAddr, PoolSlot>>,
    /// Certificates refused at the handshake (see [`Endpoint::refuse`]).
    revoked: Revoked,
    /// Connections being served, by QUIC stable id, with the fingerprint
    /// of the peer's certificate: closed when it is revoked.
    served: Arc<std::sync::Mutex<HashMap<usize, (quinn::Connection, CertificateFingerprint)>>>,
    /// Incoming connections refused at the handshake (no certificate,
    /// another CA's, expired, revoked, no norn identity).
    handshakes_refused: Arc<std::sync::atomic::AtomicU64>,
}

/// The pooled connection to one address, if any; locked while dialing.
type PoolSlot = Arc<Mutex<Option<Arc<RpcConnection>>>>;

fn transport(limits: &EndpointLimits) -> Result<Arc<quinn::TransportConfig>, NetError> {
    let mut transport = quinn::TransportConfig::default();
    let idle = quinn::IdleTimeout::try_from(Duration::from_millis(limits.idle_timeout_ms))
        .map_err(|e| NetError::Tls {
            reason: e.to_string(),
        })?;
    transport.max_idle_timeout(Some(idle));
    transport.keep_alive_interval(Some(Duration::from_millis(limits.keep_alive_ms)));
    transport.max_concurrent_bidi_streams(1024u32.into());
    transport.max_concurrent_uni_streams(0u32.into());
    Ok(Arc::new(transport))
}

fn is_revoked(connection: &quinn::Connection, revoked: &Revoked) -> bool {
    peer_certificate(connection)
        .is_ok_and(|(_, certificate)| revoked.covers_fingerprint(&certificate))
}

fn close_revoked(connection: &quinn::Connection) {
    tracing::warn!(peer = %connection.remote_address(), "closing the connection of a revoked certificate");
    connection.close(3u32.into(), b"certificate revoked");
}

fn server_config(
    tls: &TlsMaterial,
    revoked: &Revoked,
    limits: &EndpointLimits,
) -> Result<quinn::ServerConfig, NetError> {
    let crypto =
        QuicServerConfig::try_from(tls.server_crypto(revoked)?).map_err(|e| NetError::Tls {
            reason: e.to_string(),
        })?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(transport(limits)?);
    Ok(server)
}

fn client_config(
    tls: &TlsMaterial,
    revoked: &Revoked,
    limits: &EndpointLimits,
) -> Result<quinn::ClientConfig, NetError> {
    let crypto =
        QuicClientConfig::try_from(tls.client_crypto(revoked)?).map_err(|e| NetError::Tls {
            reason: e.to_string(),
        })?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    client.transport_config(transport(limits)?);
    Ok(client)
}

fn udp_socket(addr: SocketAddr, buffer_bytes: usize) -> Result<std::net::UdpSocket, NetError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let bind_error = |e: std::io::Error| NetError::Bind {
        addr,
        reason: e.to_string(),
    };
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
        .map_err(bind_error)?;
    // Best effort: the kernel caps buffers at net.core.[rw]mem_max.
    let _ = socket.set_recv_buffer_size(buffer_bytes);
    let _ = socket.set_send_buffer_size(buffer_bytes);
    socket.bind(&addr.into()).map_err(bind_error)?;
    Ok(socket.into())
}

/// Random 8-byte connection ids that any process accepts as its own.
/// quinn's default ids validate only under a per-process key, so a
/// restarted node would drop its predecessor's packets instead of answering
/// them with a stateless reset.
#[derive(Debug, Clone, Copy)]
struct RandomCids;

impl quinn::ConnectionIdGenerator for RandomCids {
    fn generate_cid(&mut self) -> quinn::ConnectionId {
        quinn::ConnectionId::new(&rand::random::<[u8; 8]>())
    }

    fn cid_len(&self) -> usize {
        8
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

impl Endpoint {
    /// An endpoint listening on `addr` (peers and clients) that can also
    /// connect out.
    pub fn bind(
        addr: SocketAddr,
        tls: &TlsMaterial,
        limits: EndpointLimits,
    ) -> Result<Endpoint, NetError> {
        let revoked = Revoked::default();
        let server = server_config(tls, &revoked, &limits)?;
        Endpoint::new(addr, Some(server), tls, limits, revoked)
    }

    /// An endpoint that only connects out (a client).
    pub fn client(tls: &TlsMaterial, limits: EndpointLimits) -> Result<Endpoint, NetError> {
        let any = SocketAddr::from(([0, 0, 0, 0], 0));
        Endpoint::new(any, None, tls, limits, Revoked::default())
    }

    fn new(
        addr: SocketAddr,
        server: Option<quinn::ServerConfig>,
        tls: &TlsMaterial,
        limits: EndpointLimits,
        revoked: Revoked,
    ) -> Result<Endpoint, NetError> {
        let accepts = server.is_some();
        let socket = udp_socket(addr, limits.udp_buffer_bytes)?;
        let runtime = Arc::new(quinn::TokioRuntime);
        let endpoint_config = match tls.reset_secret() {
            Some(secret) => {
                let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
                let mut config = quinn::EndpointConfig::new(Arc::new(key));
                config.cid_generator(|| Box::new(RandomCids));
                config
            }
            None => quinn::EndpointConfig::default(),
        };
        let endpoint =
            quinn::Endpoint::new(endpoint_config, server, socket, runtime).map_err(|e| {
                NetError::Bind {
                    addr,
                    reason: e.to_string(),
                }
            })?;
        let client_config = client_config(tls, &revoked, &limits)?;
        Ok(Endpoint {
            endpoint,
            client_config: RwLock::new(client_config),
            accepts,
            limits,
            identity: tls.own_identity().ok(),
            pool: Default::default(),
            revoked,
            served: Default::default(),
            handshakes_refused: Default::default(),
        })
    }

    /// From now on refuses peers presenting one of `certificates` (the
    /// whole revoked set, replacing the last) at the handshake, and closes
    /// the open connections of any that do. Call within a tokio runtime.
    pub fn refuse(&self, certificates: &BTreeSet<CertificateFingerprint>) {
        self.revoked.replace(certificates);
        let served = self.served.lock().unwrap_or_else(|p| p.into_inner());
        for (connection, certificate) in served.values() {
            if certificates.contains(certificate) {
                close_revoked(connection);
            }
        }
        for slot in self.slots() {
            let revoked = self.revoked.clone();
            let close_if_revoked = move |pooled: &Option<Arc<RpcConnection>>| {
                let quic = pooled.as_ref().map(|c| c.quic());
                if let Some(quic) = quic.filter(|q| is_revoked(q, &revoked)) {
                    close_revoked(quic);
                }
            };
            if let Ok(pooled) = slot.try_lock() {
                close_if_revoked(&pooled);
                continue;
            }
            // Dialing (or being replaced): look once it is done.
            tokio::spawn(async move { close_if_revoked(&*slot.lock().await) });
        }
    }

    /// Takes new certificates (a rotation): new connections, both ways,
    /// present and check them at once; connections made before are closed
    /// after a short grace, so that their peers redial and handshake again.
    /// Refused when the new certificate names another identity.
    pub async fn reload(&self, tls: &TlsMaterial) -> Result<(), NetError> {
        let identity = tls.own_identity().ok();
        if identity != self.identity {
            return Err(NetError::Tls {
                reason: format!(
                    "the new certificate names {}, not {}",
                    identity.map_or("no one".into(), |i| i.to_string()),
                    self.identity
                        .as_ref()
                        .map_or("no one".into(), ToString::to_string)
                ),
            });
        }
        if self.accepts {
            let server = server_config(tls, &self.revoked, &self.limits)?;
            self.endpoint.set_server_config(Some(server));
        }
        let client = client_config(tls, &self.revoked, &self.limits)?;
        *self
            .client_config
            .write()
            .unwrap_or_else(|p| p.into_inner()) = client;
        let mut old: Vec<quinn::Connection> = Vec::new();
        for slot in self.slots() {
            if let Some(connection) = slot.lock().await.take() {
                old.push(connection.quic().clone());
            }
        }
        old.extend(
            self.served
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .map(|(connection, _)| connection.clone()),
        );
        tracing::info!(
            connections = old.len(),
            "certificates reloaded; older connections close in {RELOAD_GRACE:?}"
        );
        tokio::spawn(async move {
            tokio::time::sleep(RELOAD_GRACE).await;
            for connection in old {
                connection.close(0u32.into(), b"certificate reloaded");
            }
        });
        Ok(())
    }

    fn slots(&self) -> Vec<PoolSlot> {
        let pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        pool.values().cloned().collect()
    }

    pub fn local_addr(&self) -> Result<SocketAddr, NetError> {
        self.endpoint.local_addr().map_err(|e| NetError::Bind {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            reason: e.to_string(),
        })
    }

    /// Incoming connections refused at the handshake so far.
    pub fn handshakes_refused(&self) -> u64 {
        self.handshakes_refused
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// This endpoint's own identity, from its certificate (none when
    /// anonymous).
    pub fn identity(&self) -> Option<&PeerIdentity> {
        self.identity.as_ref()
    }

    /// Accepts connections until the endpoint closes, serving each with
    /// `handler`. A peer that fails the handshake (no certificate, another
    /// CA, a self-signed one) is refused and the refusal logged.
    pub async fn serve(&self, handler: Handler) {
        while let Some(incoming) = self.endpoint.accept().await {
            let (handler, limits) = (handler.clone(), self.limits);
            let (served, revoked) = (self.served.clone(), self.revoked.clone());
            let refused = self.handshakes_refused.clone();
            let count_refusal = move || refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::spawn(async move {
                let remote = incoming.remote_address();
                let connection = match incoming.await {
                    Ok(connection) => connection,
                    Err(e) => {
                        count_refusal();
                        tracing::warn!(peer = %remote, error = %e, "refused connection: TLS handshake failed");
                        return;
                    }
                };
                let (peer, certificate) = match peer_certificate(&connection) {
                    Ok(peer) => peer,
                    Err(e) => {
                        count_refusal();
                        tracing::warn!(peer = %remote, error = %e, "refused connection");
                        connection.close(1u32.into(), b"no norn identity");
                        return;
                    }
                };
                tracing::debug!(peer = %remote, identity = %peer, "accepted connection");
                let id = connection.stable_id();
                served
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id, (connection.clone(), certificate));
                // Revoked while this handshake ran, before `refuse` could
                // see it among the served.
                if revoked.covers_fingerprint(&certificate) {
                    close_revoked(&connection);
                } else {
                    serve_connection(connection, peer, handler, &limits).await;
                }
                served.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
            });
        }
    }

    /// A pooled connection to the node at `addr`, opened if needed.
    pub async fn connection(&self, addr: SocketAddr) -> Result<Arc<RpcConnection>, NetError> {
        let slot = self.slot(addr);
        let mut slot = slot.lock().await;
        if let Some(existing) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(existing.clone());
        }
        let connection = Arc::new(self.connect(addr).await?);
        *slot = Some(connection.clone());
        Ok(connection)
    }

    fn slot(&self, addr: SocketAddr) -> PoolSlot {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        pool.entry(addr).or_default().clone()
    }

    async fn connect(&self, addr: SocketAddr) -> Result<RpcConnection, NetError> {
        let connect_error = |e: &dyn std::fmt::Display| NetError::Connect {
            addr,
            reason: e.to_string(),
        };
        let config = self
            .client_config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let connecting = self
            .endpoint
            .connect_with(config, addr, NODE_SERVER_NAME)
            .map_err(|e| connect_error(&e))?;
        let timeout = Duration::from_millis(self.limits.connect_timeout_ms);
        let connection = tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| connect_error(&"timed out"))?
            .map_err(|e| connect_error(&e))?;
        let (peer, certificate) = peer_certificate(&connection)?;
        // Revoked while this handshake ran.
        if self.revoked.covers_fingerprint(&certificate) {
            close_revoked(&connection);
            return Err(NetError::PeerIdentity {
                addr,
                reason: format!("{peer} presents a revoked certificate"),
            });
        }
        if !matches!(peer, PeerIdentity::Node(_)) {
            connection.close(1u32.into(), b"not a node");
            return Err(NetError::PeerIdentity {
                addr,
                reason: format!("{peer} is not a node"),
            });
        }
        RpcConnection::open(connection, peer, &self.limits).await
    }

    /// Sends `request` to the node at `addr` and waits for its response.
    /// A broken pooled connection is dropped so that the next call redials.
    pub async fn call(
        &self,
        addr: SocketAddr,
        request: &Request,
        timeout: Duration,
    ) -> Result<Response, NetError> {
        self.call_expecting(None, addr, request, timeout).await
    }

    /// [`Endpoint::call`] to the node `expected` at `addr`: refused, with
    /// nothing sent, when the certificate at that address names another
    /// node (an address reused by a new node, or an impostor).
    pub async fn call_node(
        &self,
        expected: NodeId,
        addr: SocketAddr,
        request: &Request,
        timeout: Duration,
    ) -> Result<Response, NetError> {
        self.call_expecting(Some(expected), addr, request, timeout)
            .await
    }

    async fn call_expecting(
        &self,
        expected: Option<NodeId>,
        addr: SocketAddr,
        request: &Request,
        timeout: Duration,
    ) -> Result<Response, NetError> {
        let connection = self.connection(addr).await?;
        if let Some(expected) = expected {
            if *connection.peer() != PeerIdentity::Node(expected) {
                return Err(NetError::PeerIdentity {
                    addr,
                    reason: format!("dialed node {expected}, reached {}", connection.peer()),
                });
            }
        }
        let outcome = connection.call(request, timeout).await;
        if matches!(outcome, Err(NetError::ConnectionLost { .. })) {
            self.forget(addr, &connection).await;
        }
        outcome
    }

    /// [`Endpoint::call_node`] for requests that may safely arrive twice:
    /// when the pooled connection turns out to be dead (the peer restarted
    /// and reset it), the request is sent once more on a fresh one.
    pub async fn call_node_idempotent(
        &self,
        expected: NodeId,
        addr: SocketAddr,
        request: &Request,
        timeout: Duration,
    ) -> Result<Response, NetError> {
        match self.call_node(expected, addr, request, timeout).await {
            Err(NetError::ConnectionLost { .. }) => {
                self.call_node(expected, addr, request, timeout).await
            }
            outcome => outcome,
        }
    }

    /// Like [`Endpoint::call`], for requests that may safely arrive twice
    /// (reads, merges, gossip): when the pooled connection turns out to be
    /// dead (its peer restarted, say), the request is sent once more on a
    /// fresh one.
    pub async fn call_idempotent(
        &self,
        addr: SocketAddr,
        request: &Request,
        timeout: Duration,
    ) -> Result<Response, NetError> {
        match self.call(addr, request, timeout).await {
            Err(NetError::ConnectionLost { .. }) => self.call(addr, request, timeout).await,
            outcome => outcome,
        }
    }

    /// Drops `connection` from the pool, unless another call replaced it.
    async fn forget(&self, addr: SocketAddr, connection: &Arc<RpcConnection>) {
        let slot = self.slot(addr);
        let mut slot = slot.lock().await;
        if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, connection)) {
            *slot = None;
        }
    }

    /// When the certificate of the node at `addr` (as it presents it now)
    /// stops being valid.
    pub async fn certificate_expiry(
        &self,
        addr: SocketAddr,
    ) -> Result<std::time::SystemTime, NetError> {
        let connection = self.connection(addr).await?;
        crate::tls::peer_not_after(connection.quic())
    }

    /// Resolves `host:port`.
    pub async fn resolve(address: &str) -> Result<SocketAddr, NetError> {
        let resolve_error = |reason: String| NetError::Resolve {
            address: address.to_string(),
            reason,
        };
        tokio::net::lookup_host(address)
            .await
            .map_err(|e| resolve_error(e.to_string()))?
            .next()
            .ok_or_else(|| resolve_error("no address".into()))
    }

    /// Closes every connection and stops accepting.
    pub fn close(&self) {
        self.endpoint.close(0u32.into(), b"shutting down");
    }

    /// Waits until every connection has closed cleanly.
    pub async fn wait_idle(&self) {
        self.endpoint.wait_idle().await;
    }
}
