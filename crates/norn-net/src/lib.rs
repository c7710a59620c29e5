//! The QUIC transport of norn: the only crate that uses quinn and rustls.
//!
//! - [`certs`]: the cluster CA and the node and client certificates it signs
//!   (rcgen). A certificate names its holder in a URI SAN,
//!   `urn:norn:node:<id>` or `urn:norn:client:<name>`.
//! - [`tls`]: loading PEM files into rustls configurations with mutual TLS
//!   against the cluster CA, ALPN `norn/1`, and reading a verified peer's
//!   [`PeerIdentity`] from its certificate.
//! - [`rpc`]: requests and responses as norn-proto frames with request ids,
//!   multiplexed over a few long-lived bidirectional streams per connection,
//!   with per-request timeouts and bounds on frames and requests in flight.
//! - [`endpoint`]: [`Endpoint`], one per node for peers and clients, and its
//!   pool of one connection per remote address.
//! - [`error`]: [`NetError`], what can go wrong.

pub mod certs;
pub mod endpoint;
pub mod error;
pub mod rpc;
pub mod tls;

pub use endpoint::{Endpoint, EndpointLimits, Handler};
pub use error::NetError;
pub use rpc::RpcConnection;
pub use tls::{PeerIdentity, TlsFiles};
