//! Transport errors. None of them says whether the remote side acted on a
//! request that was sent: a timeout or a lost connection leaves it unknown.

use std::net::SocketAddr;

/// Why a transport operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot read {path}: {reason}")]
    File { path: String, reason: String },
    #[error("bad TLS material: {reason}")]
    Tls { reason: String },
    #[error("private key {path} is readable by others (mode {mode:o}); run: chmod 600 {path}")]
    KeyPermissions { path: String, mode: u32 },
    #[error("cannot create certificate: {reason}")]
    Certificate { reason: String },
    #[error("cannot bind {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: SocketAddr, reason: String },
    #[error("peer {addr} is not a norn node or client of this cluster: {reason}")]
    PeerIdentity { addr: SocketAddr, reason: String },
    #[error("connection to {addr} lost: {reason}")]
    ConnectionLost { addr: SocketAddr, reason: String },
    #[error("request to {addr} timed out after {timeout_ms} ms")]
    Timeout { addr: SocketAddr, timeout_ms: u64 },
    #[error("frame error from {addr}: {source}")]
    Frame {
        addr: SocketAddr,
        source: norn_proto::ProtoError,
    },
    #[error("cannot resolve {address}: {reason}")]
    Resolve { address: String, reason: String },
}
