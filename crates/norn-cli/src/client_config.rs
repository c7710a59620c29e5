//! The client configuration: which nodes to reach and with which
//! certificate. `norn` looks for it in `--config`, then `$NORN_CONFIG`, then
//! `cluster/client.toml` (what `make cluster` writes) in the current
//! directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use norn_net::tls::TlsMaterial;
use norn_net::{Endpoint, EndpointLimits, TlsFiles};
use norn_proto::{Request, Response};
use serde::Deserialize;

/// Where `make cluster` writes the client configuration.
pub const DEFAULT_CONFIG: &str = "cluster/client.toml";

/// `nodes` to try in order, and the client's TLS files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// Node addresses, `host:port`; the first that answers is used.
    pub nodes: Vec<String>,
    pub tls: ClientTls,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTls {
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl ClientConfig {
    /// Finds and loads the configuration.
    pub fn locate(explicit: Option<&Path>) -> anyhow::Result<ClientConfig> {
        let from_env = std::env::var_os("NORN_CONFIG").map(PathBuf::from);
        let path = match explicit.map(Path::to_path_buf).or(from_env) {
            Some(path) => path,
            None if Path::new(DEFAULT_CONFIG).exists() => PathBuf::from(DEFAULT_CONFIG),
            None => bail!("no client config: pass --config FILE, set NORN_CONFIG, or run `make cluster` here first"),
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let mut config: ClientConfig =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut config.tls.ca_cert,
            &mut config.tls.cert,
            &mut config.tls.key,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if config.nodes.is_empty() {
            bail!("{} lists no nodes", path.display());
        }
        Ok(config)
    }

    pub fn endpoint(&self) -> anyhow::Result<Endpoint> {
        let files = TlsFiles {
            ca_cert: self.tls.ca_cert.clone(),
            cert: self.tls.cert.clone(),
            key: self.tls.key.clone(),
        };
        let material = TlsMaterial::load(&files)?;
        Ok(Endpoint::client(&material, EndpointLimits::default())?)
    }
}

/// A connected `norn`: one endpoint and the node it talks to.
#[derive(Debug)]
pub struct Session {
    pub endpoint: Endpoint,
    pub node: SocketAddr,
    pub timeout: Duration,
}

impl Session {
    /// Connects to `node` if given (an address, or a member's name or id),
    /// else to the first node of `config` that answers a ping.
    pub async fn open(
        config: &ClientConfig,
        node: Option<&str>,
        timeout: Duration,
    ) -> anyhow::Result<Session> {
        if let Some(name) = node.filter(|n| n.parse::<SocketAddr>().is_err() && !n.contains(':')) {
            let any = Box::pin(Session::open(config, None, timeout)).await?;
            let Response::Members(members) = any.call(Request::AdminMembers).await? else {
                bail!("unexpected reply to a members request");
            };
            let member = members
                .iter()
                .map(|m| &m.member)
                .find(|m| m.name == name || m.id.to_string() == name)
                .ok_or_else(|| {
                    anyhow::anyhow!("no member is named {name:?}; see `norn admin members`")
                })?;
            let address = member.address.clone();
            return Box::pin(Session::open(config, Some(&address), timeout)).await;
        }
        let endpoint = config.endpoint()?;
        let candidates: Vec<String> = match node {
            Some(node) => vec![node.to_string()],
            None => config.nodes.clone(),
        };
        let mut failures = Vec::new();
        for candidate in candidates {
            let addr = match Endpoint::resolve(&candidate).await {
                Ok(addr) => addr,
                Err(e) => {
                    failures.push(e.to_string());
                    continue;
                }
            };
            match endpoint.call(addr, &Request::Ping, timeout).await {
                Ok(_) => {
                    return Ok(Session {
                        endpoint,
                        node: addr,
                        timeout,
                    })
                }
                Err(e) => failures.push(e.to_string()),
            }
        }
        bail!("no node answered:\n  {}", failures.join("\n  "))
    }

    /// Sends `request` and turns an error response into an error.
    pub async fn call(&self, request: Request) -> anyhow::Result<Response> {
        match self
            .endpoint
            .call(self.node, &request, self.timeout)
            .await?
        {
            Response::Error(e) => bail!("{} ({:?})", e.message, e.code),
            response => Ok(response),
        }
    }
}
