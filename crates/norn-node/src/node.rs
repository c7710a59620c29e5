//! The running node: opens its storage, identity and endpoint, builds its
//! [`Core`], and serves QUIC and HTTP through the core's [`Driver`] until
//! told to stop. Every task runs inside the node's span, so every log line
//! carries the node's id and name.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use norn_core::{Caller, Core, NodeIdentity, Trust};
use norn_net::tls::TlsMaterial;
use norn_net::{Endpoint, Handler, PeerIdentity};
use norn_proto::MemberInfo;
use norn_ring::{NodeId, Ring};
use norn_storage::{RocksStorage, Storage, Store, StoreOptions};
use norn_trust::{Authority, RecordSigner};
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::config::NodeConfig;
use crate::driver::{Driver, DriverHandle, View};
use crate::error::NodeError;
use crate::identity;

/// Name of the file in the data directory that holds the advertised address.
pub const ADDRESS_FILE: &str = "address";
/// Name of the file in the data directory that holds the HTTP address.
pub const HTTP_ADDRESS_FILE: &str = "http_address";

/// A norn node: its endpoint and the driver of its core.
#[derive(Debug)]
pub struct Node {
    pub(crate) config: NodeConfig,
    id: NodeId,
    endpoint: Arc<Endpoint>,
    pub(crate) driver: DriverHandle,
    /// The driver, until [`Node::run`] takes it.
    unstarted: Mutex<Option<Driver>>,
    pub(crate) span: tracing::Span,
    pub(crate) http_counters: Arc<crate::http::HttpCounters>,
    /// When the node's certificate stops being valid (replaced on reload).
    pub(crate) certificate_expires: Mutex<SystemTime>,
}

fn io_error(path: impl std::fmt::Display, e: std::io::Error) -> NodeError {
    NodeError::Io {
        path: path.to_string(),
        reason: e.to_string(),
    }
}

/// Creates `dir` readable by its owner only, or narrows an existing one
/// to that.
fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Days before its certificate expires that a node starts warning.
pub const EXPIRY_WARNING_DAYS: u64 = 30;

fn check_expiry(path: &str, not_after: SystemTime) -> Result<(), NodeError> {
    match not_after.duration_since(SystemTime::now()) {
        Err(expired) => Err(NodeError::CertificateExpired {
            path: path.to_string(),
            days_ago: expired.duration().as_secs() / 86_400,
        }),
        Ok(left) if left.as_secs() < EXPIRY_WARNING_DAYS * 86_400 => {
            let days_left = left.as_secs() / 86_400;
            tracing::warn!(
                certificate = path,
                days_left,
                "the node certificate expires soon: issue a new one"
            );
            Ok(())
        }
        Ok(_) => Ok(()),
    }
}

/// What a node with `tls` (loaded from `config`'s files) trusts, and the
/// key it signs its member record with.
fn trust_of(config: &NodeConfig, tls: &TlsMaterial) -> Result<Trust, NodeError> {
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path).map_err(|e| io_error(path.display(), e))
    };
    Ok(Trust {
        authority: Authority::new(tls.ca_der().to_vec())?,
        own_key: Arc::new(RecordSigner::from_pem(
            &read(&config.tls.cert)?,
            &read(&config.tls.key)?,
        )?),
    })
}

impl Node {
    /// Opens the node's storage and endpoint, as `config` says. Refuses to
    /// start with a private key readable by others, a certificate that is not
    /// a node's or has expired, or a data directory of another node. Warns
    /// when the certificate expires within [`EXPIRY_WARNING_DAYS`]. The data
    /// directory is made (or narrowed to) mode 0700.
    pub async fn start(config: NodeConfig) -> Result<Arc<Node>, NodeError> {
        crate::limits::raise_open_file_limit(config.http.max_connections);
        let tls = TlsMaterial::load(&config.tls_files())?;
        let certificate_expires = tls.own_not_after()?;
        check_expiry(&config.tls.cert.display().to_string(), certificate_expires)?;
        let node_id = match tls.own_identity()? {
            PeerIdentity::Node(id) => id,
            other => {
                return Err(NodeError::NotANodeCertificate {
                    found: other.to_string(),
                })
            }
        };
        let data_dir = &config.node.data_dir;
        private_dir(data_dir).map_err(|e| io_error(data_dir.display(), e))?;
        let options = StoreOptions {
            tree_shape: config.tree_shape(),
            sync_every_write: config.storage.sync_every_write,
            hint_bytes_max_per_target: config.storage.hint_bytes_max_per_target,
            emulate_power_loss_on_kill: config.storage.emulate_power_loss_on_kill,
            block_cache_bytes: config.storage.block_cache_bytes,
        };
        let storage: Arc<RocksStorage> =
            Arc::new(Store::open_rocks(&data_dir.join("db"), options)?);
        let identity =
            identity::load_or_create(&*storage, node_id, &data_dir.display().to_string())?;
        let endpoint = Arc::new(Endpoint::bind(
            config.node.listen,
            &tls,
            config.endpoint_limits(),
        )?);
        let advertised = match &config.node.advertise {
            Some(address) => address.clone(),
            None => endpoint.local_addr()?.to_string(),
        };
        let address_file = data_dir.join(ADDRESS_FILE);
        std::fs::write(&address_file, format!("{advertised}\n"))
            .map_err(|e| io_error(address_file.display(), e))?;
        let span = tracing::info_span!("node", id = %node_id, name = %config.node.name);
        let me = NodeIdentity {
            id: node_id,
            name: config.node.name.clone(),
            address: advertised.clone(),
            zone: config.node.zone.clone(),
            weight: config.node.weight,
            incarnation: identity.incarnation,
        };
        let storage: Arc<dyn Storage> = storage;
        let trust = trust_of(&config, &tls)?;
        let core = span.in_scope(|| {
            tracing::info!(address = %advertised, incarnation = identity.incarnation, "node started");
            Core::new(
                config.core(),
                trust,
                me,
                config.node.seeds.clone(),
                storage.clone(),
                rand::random(),
                0,
            )
        })?;
        let (driver, handle) = Driver::new(
            core,
            endpoint.clone(),
            storage,
            Instant::now(),
            span.clone(),
        );
        Ok(Arc::new(Node {
            config,
            id: node_id,
            endpoint,
            driver: handle,
            unstarted: Mutex::new(Some(driver)),
            span,
            http_counters: Arc::default(),
            certificate_expires: Mutex::new(certificate_expires),
        }))
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Serves and gossips until `shutdown` completes, then closes the
    /// endpoint and syncs storage.
    pub async fn run(
        self: Arc<Self>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), NodeError> {
        let Some(mut driver) = self
            .unstarted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return Ok(());
        };
        let (stop, stopped) = oneshot::channel();
        self.span.in_scope(|| driver.start());
        let driving = tokio::spawn(driver.run(stopped).instrument(self.span.clone()));
        let handler: Handler = {
            let driver = self.driver.clone();
            Arc::new(move |peer, request| {
                let driver = driver.clone();
                let caller = match peer {
                    PeerIdentity::Node(id) => Caller::Node(id),
                    PeerIdentity::Client { name, role } => Caller::Client { name, role },
                };
                Box::pin(async move { driver.call(caller, request).await })
            })
        };
        let serve = tokio::spawn({
            let endpoint = self.endpoint.clone();
            async move { endpoint.serve(handler).await }.instrument(self.span.clone())
        });
        let http = self.clone().start_http().await?;
        let mut watchers = vec![tokio::spawn(
            crate::watch::watch_certificates(self.clone()).instrument(self.span.clone()),
        )];
        if !self.config.node.seed_names.is_empty() {
            watchers.push(tokio::spawn(
                crate::watch::discover_seeds(self.clone()).instrument(self.span.clone()),
            ));
        }
        shutdown.await;
        for watcher in &watchers {
            watcher.abort();
        }
        self.span.in_scope(|| tracing::info!("shutting down"));
        http.abort();
        self.endpoint.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
        serve.abort();
        let _ = stop.send(());
        let _ = driving.await;
        self.span.in_scope(|| tracing::info!("stopped"));
        Ok(())
    }

    /// Binds the HTTP API, writes its address to the data directory, and
    /// serves it until the returned task is aborted.
    async fn start_http(self: Arc<Self>) -> Result<tokio::task::JoinHandle<()>, NodeError> {
        let listen = self.config.http.listen;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| io_error(listen, e))?;
        let bound = listener.local_addr().map_err(|e| io_error(listen, e))?;
        let file = self.config.node.data_dir.join(HTTP_ADDRESS_FILE);
        std::fs::write(&file, format!("{bound}\n")).map_err(|e| io_error(file.display(), e))?;
        self.span
            .in_scope(|| tracing::info!(address = %bound, "HTTP API listening"));
        let app = crate::http::router(self.clone());
        let span = self.span.clone();
        Ok(tokio::spawn(
            crate::http::serve(listener, app, self.clone()).instrument(span),
        ))
    }

    /// Loads the node's certificate, key and CA again from their files (a
    /// rotation; nornd does this on SIGHUP): new connections use them at
    /// once, older ones are closed after a short grace. Refused, with the
    /// old ones kept, when the new certificate is expired, names another
    /// node or its key is readable by others.
    pub async fn reload_certificates(&self) -> Result<(), NodeError> {
        let tls = TlsMaterial::load(&self.config.tls_files())?;
        let expires = tls.own_not_after()?;
        check_expiry(&self.config.tls.cert.display().to_string(), expires)?;
        let trust = trust_of(&self.config, &tls)?;
        if trust.own_key.node() != self.id {
            return Err(NodeError::NotANodeCertificate {
                found: format!("node {}, not this node ({})", trust.own_key.node(), self.id),
            });
        }
        self.endpoint.reload(&tls).await?;
        self.driver.set_trust(trust).await;
        *self
            .certificate_expires
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = expires;
        Ok(())
    }

    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// The address the QUIC endpoint is bound to.
    pub fn local_addr(&self) -> Result<std::net::SocketAddr, NodeError> {
        Ok(self.endpoint.local_addr()?)
    }

    /// Hands the core the seeds DNS gave (see [`crate::watch`]).
    pub(crate) async fn set_discovered_seeds(&self, addresses: Vec<String>) {
        self.driver.set_discovered_seeds(addresses).await;
    }

    /// The ring the core holds.
    pub(crate) async fn ring(&self) -> Option<Arc<Ring>> {
        self.driver.view(View::Ring).await.flatten()
    }

    pub(crate) async fn members(&self) -> Vec<MemberInfo> {
        self.driver.view(View::Members).await.unwrap_or_default()
    }

    /// What this node measured, for staleness predictions; `None` once
    /// its core stopped.
    pub(crate) async fn latencies(&self) -> Option<norn_proto::NodeLatencies> {
        self.driver.view(View::Latencies).await
    }

    /// Readiness as the core sees it; `None` once its core stopped.
    pub(crate) async fn status(&self) -> Option<norn_proto::NodeStatus> {
        self.driver.view(View::Status).await
    }

    /// The core's metrics, the HTTP server's, and the certificate's expiry.
    pub(crate) async fn metrics(&self) -> String {
        let core = self.driver.view(View::Metrics).await.unwrap_or_default();
        let expires = *self
            .certificate_expires
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let left = match expires.duration_since(SystemTime::now()) {
            Ok(left) => left.as_secs_f64(),
            Err(expired) => -expired.duration().as_secs_f64(),
        };
        format!(
            "{core}{}# HELP norn_certificate_expiry_seconds Seconds until the node certificate expires (negative: expired).\n\
             # TYPE norn_certificate_expiry_seconds gauge\n\
             norn_certificate_expiry_seconds {left:.0}\n\
             # HELP norn_quic_handshakes_refused_total Incoming QUIC connections refused at the TLS handshake (no certificate, another CA's, expired, revoked).\n\
             # TYPE norn_quic_handshakes_refused_total counter\n\
             norn_quic_handshakes_refused_total {}\n",
            self.http_counters.render(),
            self.endpoint.handshakes_refused()
        )
    }
}
