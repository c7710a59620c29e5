//! What a client certificate allows (the certificate's URI SAN names it;
//! norn-net reads it, norn-core enforces it).

/// What a client certificate allows its holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ClientRole {
    /// Reads and writes, and the ring and members to route them.
    Data,
    /// Everything a data client may, and ring changes, repair and the
    /// inspection of replicas and hints.
    Admin,
}

impl std::fmt::Display for ClientRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClientRole::Data => "data",
            ClientRole::Admin => "admin",
        })
    }
}

impl std::str::FromStr for ClientRole {
    type Err = String;

    fn from_str(s: &str) -> Result<ClientRole, String> {
        match s {
            "data" => Ok(ClientRole::Data),
            "admin" => Ok(ClientRole::Admin),
            other => Err(format!("role must be data or admin, not {other:?}")),
        }
    }
}

/// How a node certificate's URI SAN begins: `urn:norn:node:<id in hex>`.
pub const NODE_URI_PREFIX: &str = "urn:norn:node:";

/// The node id a node certificate's URI SAN names, if it is one.
pub fn node_from_uri(uri: &str) -> Option<norn_ring::NodeId> {
    let hex = uri.strip_prefix(NODE_URI_PREFIX)?;
    u64::from_str_radix(hex, 16).ok().map(norn_ring::NodeId)
}

/// How a client certificate's URI SAN begins: `urn:norn:client:<role>:<name>`.
pub const CLIENT_URI_PREFIX: &str = "urn:norn:client:";

/// The role and name a client certificate's URI SAN names, if it is one.
pub fn client_from_uri(uri: &str) -> Option<(ClientRole, &str)> {
    let (role, name) = uri.strip_prefix(CLIENT_URI_PREFIX)?.split_once(':')?;
    Some((role.parse().ok()?, name))
}
