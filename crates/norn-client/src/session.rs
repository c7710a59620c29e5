//! [`NodeSession`]: one node at a time, for admin and replica requests
//! (what `norn` speaks), and where a client's configuration is found.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use norn_membership::{ChangeKind, StagedChange};
use norn_net::tls::{TlsFiles, TlsMaterial};
use norn_net::{Endpoint, EndpointLimits};
use norn_proto::{Request, Response};
use norn_ring::{CertificateFingerprint, NodeId, Ring};
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

/// Whether `proposed` is exactly what committing `staged` and revoking
/// `revoke` over `current` asks for: the next version, the revoked list
/// grown by `revoke` and nothing else, and members that differ only by
/// pending staged joins, leaves and removals (a revocation is refused while
/// changes are staged, so that it commits nothing else). The reason when
/// not.
pub fn check_proposal(
    current: Option<&Ring>,
    staged: &[StagedChange],
    revoke: &[CertificateFingerprint],
    proposed: &Ring,
) -> Result<(), String> {
    let version = current.map_or(1, |r| r.version().saturating_add(1));
    if proposed.version() != version {
        return Err(format!(
            "the node proposed ring version {}, not {version}",
            proposed.version()
        ));
    }
    let mut revoked = current.map(|r| r.revoked().clone()).unwrap_or_default();
    revoked.extend(revoke.iter().copied());
    if *proposed.revoked() != revoked {
        return Err(
            "the proposal's revoked certificates are not the current ones plus those asked".into(),
        );
    }
    let pending: Vec<&StagedChange> = staged
        .iter()
        .filter(|c| current.is_none_or(|r| !c.is_reflected_in(r)))
        .collect();
    if !revoke.is_empty() && !pending.is_empty() {
        return Err(
            "changes are staged: commit them first, so that a revocation commits nothing else"
                .into(),
        );
    }
    let before: BTreeSet<NodeId> = current
        .map(|r| r.members().keys().copied().collect())
        .unwrap_or_default();
    let after: BTreeSet<NodeId> = proposed.members().keys().copied().collect();
    let staged_as = |node: NodeId, join: bool| {
        pending
            .iter()
            .any(|c| c.node == node && (c.kind == ChangeKind::Join) == join)
    };
    for node in after.difference(&before) {
        if !staged_as(*node, true) {
            return Err(format!(
                "the proposal adds node {node}, whose join is not staged"
            ));
        }
    }
    for node in before.difference(&after) {
        if !staged_as(*node, false) {
            return Err(format!(
                "the proposal drops node {node}, whose leave is not staged"
            ));
        }
    }
    Ok(())
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
    ///
    /// Before signing it checks the proposal against the node's ring and
    /// staged changes (see [`check_proposal`]), so that the admin signs
    /// what it asked for and nothing a node slipped in.
    pub async fn commit(&self, revoke: Vec<CertificateFingerprint>) -> Result<u64, ClientError> {
        self.commit_if(revoke, |_| Ok(())).await
    }

    /// [`NodeSession::commit`] of the ring after version `judged` whose
    /// members are exactly `members`: what the autopilot judged safe on
    /// ring `judged` (0: none), with no ring committed and nothing staged
    /// since.
    pub async fn commit_members(
        &self,
        judged: u64,
        members: &BTreeSet<NodeId>,
    ) -> Result<u64, ClientError> {
        self.commit_if(Vec::new(), |ring| {
            let proposed: BTreeSet<NodeId> = ring.members().keys().copied().collect();
            if ring.version() != judged.saturating_add(1) {
                Err(format!(
                    "ring {} was committed since ring {judged} was judged",
                    ring.version().saturating_sub(1)
                ))
            } else if proposed != *members {
                Err("the staged changes changed since they were judged safe".into())
            } else {
                Ok(())
            }
        })
        .await
    }

    async fn commit_if(
        &self,
        revoke: Vec<CertificateFingerprint>,
        accept: impl Fn(&Ring) -> Result<(), String>,
    ) -> Result<u64, ClientError> {
        let signer = ring_signer(&self.options.tls)?;
        let current = match self.call(Request::AdminRing).await? {
            Response::Ring(ring) => ring,
            other => return Err(ClientError::Unexpected(format!("{other:?}"))),
        };
        let request = Request::AdminPropose {
            revoke: revoke.clone(),
        };
        let ring = match self.call(request).await? {
            Response::Proposed(ring) => ring,
            other => return Err(ClientError::Unexpected(format!("{other:?}"))),
        };
        // Asked after the proposal: a change staged meanwhile is among
        // these, so every change the proposal made is.
        let staged = match self.call(Request::AdminPlan).await? {
            Response::Plan(plan) => plan.staged,
            other => return Err(ClientError::Unexpected(format!("{other:?}"))),
        };
        check_proposal(current.as_deref(), &staged, &revoke, &ring)
            .and_then(|()| accept(&ring))
            .map_err(ClientError::NotSigned)?;
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

    /// Sends `request` to the node at `address` (`host:port`, a member's
    /// advertised address: a name is resolved); an error reply is an error.
    pub async fn call_address(
        &self,
        address: &str,
        request: Request,
    ) -> Result<Response, ClientError> {
        let node = Endpoint::resolve(address).await?;
        self.call_at(node, request).await
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

#[cfg(test)]
mod tests {
    use super::*;
    use norn_ring::RingMember;

    fn member() -> RingMember {
        RingMember {
            zone: "z".into(),
            weight: 1,
        }
    }

    fn staged(node: u64, kind: ChangeKind) -> StagedChange {
        StagedChange {
            node: NodeId(node),
            kind,
            base_version: 1,
            stamp: 1,
            staged_by: NodeId(1),
        }
    }

    #[test]
    fn an_admin_signs_only_what_it_asked_for() {
        let current = Ring::new(4, [(NodeId(1), member()), (NodeId(2), member())]).expect("ring");
        let joined = current
            .with_member(NodeId(3), member())
            .expect("join")
            .with_version(2);
        let join = [staged(3, ChangeKind::Join)];
        assert_eq!(check_proposal(Some(&current), &join, &[], &joined), Ok(()));
        // A node slipped in, a version skipped.
        assert!(check_proposal(Some(&current), &[], &[], &joined).is_err());
        assert!(check_proposal(Some(&current), &join, &[], &joined.with_version(3)).is_err());
        // A revocation commits nothing else, and exactly what was asked.
        let revoking = current
            .with_version(2)
            .with_revoked([[7; 32]])
            .expect("revoked");
        assert_eq!(
            check_proposal(Some(&current), &[], &[[7; 32]], &revoking),
            Ok(())
        );
        assert!(check_proposal(Some(&current), &[], &[[8; 32]], &revoking).is_err());
        assert!(check_proposal(Some(&current), &join, &[[7; 32]], &revoking).is_err());
        let dropped = current
            .without_member(NodeId(2))
            .expect("leave")
            .with_version(2);
        assert!(check_proposal(Some(&current), &[], &[], &dropped).is_err());
        let leave = [staged(2, ChangeKind::Leave)];
        assert_eq!(
            check_proposal(Some(&current), &leave, &[], &dropped),
            Ok(())
        );
    }
}
