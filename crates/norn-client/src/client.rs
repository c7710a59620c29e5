//! The client itself.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use norn_clock::Context;
use norn_net::tls::TlsMaterial;
use norn_net::{Endpoint, EndpointLimits, NetError, TlsFiles};
use norn_proto::{ErrorCode, GetReply, PutReply, QuorumOptions, Request, Response, WriteReceipt};
use norn_ring::{NodeId, Ring};
use norn_trust::Authority;
use serde::Deserialize;

use crate::balancer::{Balancer, Policy};

/// How a client connects and behaves.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Nodes to learn the cluster from, `host:port`.
    pub seeds: Vec<String>,
    /// The client's certificate, key, and the cluster CA.
    pub tls: TlsFiles,
    /// An admin certificate and key (same CA), for admin requests; see
    /// [`ClientOptions::as_admin`].
    pub admin_tls: Option<TlsFiles>,
    pub policy: Policy,
    /// How long to wait for one node's answer.
    pub timeout: Duration,
    /// How often to refresh the ring and the members' addresses.
    pub ring_refresh: Duration,
    /// The N used to find a key's replicas when a request does not set one.
    pub default_n: u8,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    nodes: Vec<String>,
    tls: ConfigTls,
    admin_tls: Option<ConfigAdminTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigAdminTls {
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigTls {
    ca_cert: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl ClientOptions {
    /// These options with the admin certificate as the client's own, when
    /// the config names one (`[admin_tls]`); else unchanged.
    pub fn as_admin(&self) -> ClientOptions {
        let mut options = self.clone();
        if let Some(admin) = &self.admin_tls {
            options.tls = admin.clone();
        }
        options
    }

    /// Options from a client config file (the `cluster/client.toml` that
    /// `make cluster` writes), with default policy and timeouts.
    pub fn from_config_file(path: impl AsRef<Path>) -> Result<ClientOptions, ClientError> {
        let path = path.as_ref();
        let invalid = |reason: String| ClientError::Config {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| invalid(e.to_string()))?;
        let file: ConfigFile = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: PathBuf| if p.is_relative() { base.join(p) } else { p };
        let ca_cert = resolve(file.tls.ca_cert);
        Ok(ClientOptions {
            seeds: file.nodes,
            admin_tls: file.admin_tls.map(|admin| TlsFiles {
                ca_cert: ca_cert.clone(),
                cert: resolve(admin.cert),
                key: resolve(admin.key),
            }),
            tls: TlsFiles {
                ca_cert,
                cert: resolve(file.tls.cert),
                key: resolve(file.tls.key),
            },
            policy: Policy::default(),
            timeout: Duration::from_secs(5),
            ring_refresh: Duration::from_secs(10),
            default_n: 3,
        })
    }
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("client config {path}: {reason}")]
    Config { path: String, reason: String },
    #[error(transparent)]
    Net(#[from] NetError),
    /// No node could be reached (nothing was written).
    #[error("no node answered: {failures}")]
    NoNode { failures: String },
    /// A node refused or failed the request.
    #[error("{message} ({code:?})")]
    Server { code: ErrorCode, message: String },
    /// A write missed its quorum; the receipt says how many replicas did write.
    #[error("{message}")]
    QuorumNotMet {
        receipt: WriteReceipt,
        message: String,
    },
    #[error("unexpected response: {0}")]
    Unexpected(String),
    /// The admin did not sign the ring the node proposed: it is not what
    /// was asked for.
    #[error("ring not signed: {0}")]
    NotSigned(String),
    /// The ring could not be signed (the admin certificate or key).
    #[error(transparent)]
    Trust(#[from] norn_trust::TrustError),
}

#[derive(Debug, Default)]
struct Routing {
    ring: Option<Arc<Ring>>,
    addresses: HashMap<NodeId, SocketAddr>,
}

/// A connection to a norn cluster. Cheap to share behind an `Arc`; its
/// ring refresh stops when it is dropped.
#[derive(Debug)]
pub struct Client {
    endpoint: Arc<Endpoint>,
    routing: Arc<RwLock<Routing>>,
    balancer: Balancer,
    seeds: Vec<SocketAddr>,
    options: ClientOptions,
    refresher: tokio::task::JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.refresher.abort();
    }
}

impl Client {
    /// Connects, learns the ring and the members from the first seed that
    /// answers, and starts refreshing them.
    pub async fn connect(options: ClientOptions) -> Result<Client, ClientError> {
        let material = TlsMaterial::load(&options.tls)?;
        let endpoint = Arc::new(Endpoint::client(&material, EndpointLimits::default())?);
        let mut seeds = Vec::new();
        for seed in &options.seeds {
            seeds.push(Endpoint::resolve(seed).await?);
        }
        let routing = Arc::new(RwLock::new(Routing::default()));
        let refresher = Refresher {
            endpoint: endpoint.clone(),
            routing: routing.clone(),
            seeds: seeds.clone(),
            timeout: options.timeout,
            authority: Authority::new(material.ca_der().to_vec())?,
        };
        refresher.refresh().await?;
        let refresher = {
            let every = options.ring_refresh;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    if let Err(e) = refresher.refresh().await {
                        tracing::warn!(error = %e, "ring refresh failed");
                    }
                }
            })
        };
        Ok(Client {
            endpoint,
            routing,
            balancer: Balancer::new(options.policy),
            seeds,
            options,
            refresher,
        })
    }

    /// The ring the client routes by.
    pub fn ring(&self) -> Option<Arc<Ring>> {
        self.routing
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .ring
            .clone()
    }

    /// The nodes to try for a key: its primaries, in the policy's order; the
    /// seeds if the client knows no ring yet.
    fn candidates(&self, bucket: &[u8], key: &[u8], n: Option<u8>) -> Vec<(NodeId, SocketAddr)> {
        let routing = self.routing.read().unwrap_or_else(|p| p.into_inner());
        let Some(ring) = &routing.ring else {
            return self
                .seeds
                .iter()
                .enumerate()
                .map(|(i, a)| (NodeId(i as u64), *a))
                .collect();
        };
        let n = usize::from(n.unwrap_or(self.options.default_n)).min(ring.members().len());
        let list = ring.preference_list(ring.partition_of_key(bucket, key), n);
        let primaries: Vec<NodeId> = list.primaries().to_vec();
        self.balancer
            .order(&primaries)
            .into_iter()
            .filter_map(|node| routing.addresses.get(&node).map(|a| (node, *a)))
            .collect()
    }

    async fn send(
        &self,
        node: NodeId,
        addr: SocketAddr,
        request: &Request,
        idempotent: bool,
    ) -> Result<Response, NetError> {
        self.balancer.started(node);
        let started = Instant::now();
        let outcome = if idempotent {
            self.endpoint
                .call_idempotent(addr, request, self.options.timeout)
                .await
        } else {
            self.endpoint
                .call(addr, request, self.options.timeout)
                .await
        };
        self.balancer
            .finished(node, outcome.as_ref().ok().map(|_| started.elapsed()));
        outcome
    }

    /// Reads `key`: every sibling and the causal context. Tries the next
    /// replica after a timeout or a connection error.
    pub async fn get(
        &self,
        bucket: &str,
        key: &str,
        options: QuorumOptions,
    ) -> Result<GetReply, ClientError> {
        let request = Request::Get {
            bucket: bucket.as_bytes().to_vec(),
            key: key.as_bytes().to_vec(),
            options,
            timeout_ms: Some(self.options.timeout.as_millis() as u64),
        };
        let mut failures = Vec::new();
        for (node, addr) in self.candidates(bucket.as_bytes(), key.as_bytes(), options.n) {
            match self.send(node, addr, &request, true).await {
                Ok(Response::Value(reply)) => return Ok(reply),
                Ok(Response::Error(e)) if e.code == ErrorCode::Unavailable => {
                    failures.push(e.message)
                }
                Ok(other) => return Err(server_error(other)),
                Err(e) => failures.push(e.to_string()),
            }
        }
        Err(ClientError::NoNode {
            failures: failures.join("; "),
        })
    }

    /// Writes `value` over what `context` covers (`None`: a blind write).
    pub async fn put(
        &self,
        bucket: &str,
        key: &str,
        value: Vec<u8>,
        context: Option<Context>,
        options: QuorumOptions,
    ) -> Result<PutReply, ClientError> {
        self.write(bucket, key, Some(value), context, options).await
    }

    /// Deletes what `context` covers (a tombstone).
    pub async fn delete(
        &self,
        bucket: &str,
        key: &str,
        context: Option<Context>,
        options: QuorumOptions,
    ) -> Result<PutReply, ClientError> {
        self.write(bucket, key, None, context, options).await
    }

    /// Sends a write to a primary; moves on to the next only when the node
    /// said nothing was written (unreachable, or refused as unavailable).
    async fn write(
        &self,
        bucket: &str,
        key: &str,
        value: Option<Vec<u8>>,
        context: Option<Context>,
        options: QuorumOptions,
    ) -> Result<PutReply, ClientError> {
        let request = Request::Put {
            bucket: bucket.as_bytes().to_vec(),
            key: key.as_bytes().to_vec(),
            value,
            context,
            options,
            timeout_ms: Some(self.options.timeout.as_millis() as u64),
            forwarded: false,
        };
        let mut failures = Vec::new();
        for (node, addr) in self.candidates(bucket.as_bytes(), key.as_bytes(), options.n) {
            match self.send(node, addr, &request, false).await {
                Ok(Response::Written(reply)) => return Ok(reply),
                Ok(Response::WriteFailed { receipt, message }) => {
                    return Err(ClientError::QuorumNotMet { receipt, message })
                }
                Ok(Response::Error(e)) if e.code == ErrorCode::Unavailable => {
                    failures.push(e.message)
                }
                Ok(other) => return Err(server_error(other)),
                Err(e @ NetError::Connect { .. }) => failures.push(e.to_string()),
                Err(e) => return Err(e.into()),
            }
        }
        Err(ClientError::NoNode {
            failures: failures.join("; "),
        })
    }
}

fn server_error(response: Response) -> ClientError {
    match response {
        Response::Error(e) => ClientError::Server {
            code: e.code,
            message: e.message,
        },
        other => ClientError::Unexpected(format!("{other:?}")),
    }
}

/// What keeps a client's routing current.
struct Refresher {
    endpoint: Arc<Endpoint>,
    routing: Arc<RwLock<Routing>>,
    seeds: Vec<SocketAddr>,
    timeout: Duration,
    /// Rings are taken only when an admin signed them; their revoked
    /// certificates are then refused by this client too.
    authority: Authority,
}

impl Refresher {
    /// Learns the ring and the members' addresses from the first node that
    /// answers, trying the known members and then the seeds.
    async fn refresh(&self) -> Result<(), ClientError> {
        let (endpoint, routing, seeds, timeout) =
            (&*self.endpoint, &*self.routing, &self.seeds, self.timeout);
        let known: Vec<SocketAddr> = routing
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .addresses
            .values()
            .copied()
            .collect();
        let mut failures = Vec::new();
        for addr in known.into_iter().chain(seeds.iter().copied()) {
            let members = match endpoint
                .call_idempotent(addr, &Request::AdminMembers, timeout)
                .await
            {
                Ok(Response::Members(members)) => members,
                Ok(other) => {
                    failures.push(format!("{addr}: {other:?}"));
                    continue;
                }
                Err(e) => {
                    failures.push(e.to_string());
                    continue;
                }
            };
            let ring = match endpoint
                .call_idempotent(addr, &Request::AdminRing, timeout)
                .await
            {
                Ok(Response::Ring(ring)) => ring,
                _ => None,
            };
            let addresses = members
                .iter()
                .filter_map(|m| Some((m.member.id, m.member.address.parse().ok()?)))
                .collect();
            let mut routing = routing.write().unwrap_or_else(|p| p.into_inner());
            routing.addresses = addresses;
            if let Some(ring) = ring {
                let current = routing.ring.as_deref();
                let newer = current.is_none_or(|current| ring.supersedes(current));
                if newer && self.authority.check_successor(&ring, current).is_ok() {
                    endpoint.refuse(ring.revoked());
                    routing.ring = Some(Arc::from(ring));
                }
            }
            return Ok(());
        }
        Err(ClientError::NoNode {
            failures: failures.join("; "),
        })
    }
}
