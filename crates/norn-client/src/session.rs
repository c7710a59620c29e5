//! [`NodeSession`]: one node at a time, for admin and replica requests
//! (what `norn` speaks), and where a client's configuration is found.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use norn_net::tls::{TlsFiles, TlsMaterial};
use norn_net::{Endpoint, EndpointLimits};
use norn_proto::{Request, Response};
use norn_ring::CertificateFingerprint;
use norn_trust::RingSigner;

use crate::client::{ClientError, ClientOptions};

/// Where `make cluster` writes the client configuration.
pub const DEFAULT_CONFIG: &str = "cluster/client.toml";

impl ClientOptions {
    /// Finds and loads the client configuration: `explicit`, else
    /// `$NORN_CONFIG`, else [`DEFAULT_CONFIG`] in the current directory.
    pub fn locate(explicit: Option<&Path>) -> Result<ClientOptions, ClientError> {
        let from_env = std::env::var_os("NORN_CONFIG").map(PathBuf::from);
        let path = match explicit.map(Path::to_path_buf).or(from_env) {
            Some(path) => path,
            None if Path::new(DEFAULT_CONFIG).exists() => PathBuf::from(DEFAULT_CONFIG),
            None => {
                return Err(ClientError::Config {
                    path: DEFAULT_CONFIG.into(),
                    reason: "no client config: pass --config FILE, set NORN_CONFIG, or run `make cluster` here first".into(),
                })
            }
        };
        let options = ClientOptions::from_config_file(&path)?;
        if options.seeds.is_empty() {
            return Err(ClientError::Config {
                path: path.display().to_string(),
                reason: "it lists no nodes".into(),
            });
        }
        Ok(options)
    }
}

/// The signer of rings for the admin certificate and key in `tls`;
/// refuses a key that others can read.
pub fn ring_signer(tls: &TlsFiles) -> Result<RingSigner, ClientError> {
    norn_net::tls::check_private_key_mode(&tls.key)?;
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|e| ClientError::Config {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    };
    Ok(RingSigner::from_pem(&read(&tls.cert)?, &read(&tls.key)?)?)
}

/// A connection to one node (the first of the configured nodes that
/// answers, or one named), for requests that go to a node rather than to a
/// key's replicas.
#[derive(Debug)]
pub struct NodeSession {
    endpoint: Endpoint,
    node: SocketAddr,
    options: ClientOptions,
}

impl NodeSession {
    /// Connects to `node` if given (an address, or a member's name or id),
    /// else to the first configured node that answers a ping.
    pub async fn open(
        options: &ClientOptions,
        node: Option<&str>,
    ) -> Result<NodeSession, ClientError> {
        let material = TlsMaterial::load(&options.tls)?;
        let endpoint = Endpoint::client(&material, EndpointLimits::default())?;
        let mut session = NodeSession {
            endpoint,
            node: SocketAddr::from(([0, 0, 0, 0], 0)),
            options: options.clone(),
        };
        let by_name = node.filter(|n| n.parse::<SocketAddr>().is_err() && !n.contains(':'));
        session.node = session.first_answering(&options.seeds).await?;
        match (by_name, node) {
            (Some(name), _) => session.node = session.address_of(name).await?,
            (None, Some(address)) => {
                session.node = session.first_answering(&[address.to_string()]).await?
            }
            (None, None) => {}
        }
        Ok(session)
    }

    async fn first_answering(&self, candidates: &[String]) -> Result<SocketAddr, ClientError> {
        let mut failures = Vec::new();
        for candidate in candidates {
            let addr = match Endpoint::resolve(candidate).await {
                Ok(addr) => addr,
                Err(e) => {
                    failures.push(e.to_string());
                    continue;
                }
            };
            match self
                .endpoint
                .call(addr, &Request::Ping, self.options.timeout)
                .await
            {
                Ok(_) => return Ok(addr),
                Err(e) => failures.push(e.to_string()),
            }
        }
        Err(ClientError::NoNode {
            failures: failures.join("; "),
        })
    }

    /// The address of the member named (or numbered) `name`.
    async fn address_of(&self, name: &str) -> Result<SocketAddr, ClientError> {
        let Response::Members(members) = self.call(Request::AdminMembers).await? else {
            return Err(ClientError::Unexpected("reply to a members request".into()));
        };
        let member = members
            .iter()
            .map(|m| &m.member)
            .find(|m| m.name == name || m.id.to_string() == name)
            .ok_or_else(|| ClientError::Server {
                code: norn_proto::ErrorCode::BadRequest,
                message: format!("no member is named {name:?}; see `norn admin members`"),
            })?;
        self.first_answering(std::slice::from_ref(&member.address))
            .await
    }

    /// Commits the next ring on the session's node: asks it for the ring
    /// its staged changes make (with `revoke` added to the revoked
    /// certificates), signs that ring with the session's certificate (an
    /// admin's), and hands it back to be adopted. Returns its version.
    pub async fn commit(&self, revoke: Vec<CertificateFingerprint>) -> Result<u64, ClientError> {
        let signer = ring_signer(&self.options.tls)?;
        let ring = match self.call(Request::AdminPropose { revoke }).await? {
            Response::Proposed(ring) => ring,
            other => return Err(ClientError::Unexpected(format!("{other:?}"))),
        };
        let ring = signer.sign_now(&ring)?;
        match self.call(Request::AdminCommit { ring }).await? {
            Response::Committed { version } => Ok(version),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// When the certificate of the node at `address` stops being valid, as
    /// that node presents it now.
    pub async fn certificate_expiry(
        &self,
        address: &str,
    ) -> Result<std::time::SystemTime, ClientError> {
        let addr = Endpoint::resolve(address).await?;
        Ok(self.endpoint.certificate_expiry(addr).await?)
    }

    /// The node this session talks to.
    pub fn node(&self) -> SocketAddr {
        self.node
    }

    /// Sends `request` to the session's node; an error reply is an error.
    pub async fn call(&self, request: Request) -> Result<Response, ClientError> {
        self.call_at(self.node, request).await
    }

    /// Sends `request` to `node`; an error reply is an error.
    pub async fn call_at(
        &self,
        node: SocketAddr,
        request: Request,
    ) -> Result<Response, ClientError> {
        match self
            .endpoint
            .call(node, &request, self.options.timeout)
            .await?
        {
            Response::Error(e) => Err(ClientError::Server {
                code: e.code,
                message: e.message,
            }),
            response => Ok(response),
        }
    }
}
