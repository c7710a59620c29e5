//! nornd: the tokio driver of a [`norn_core::Core`]. It owns the QUIC
//! endpoint, the HTTP API, RocksDB and the clock, and feeds the core; every
//! decision is the core's.
//!
//! - [`config`]: [`NodeConfig`], the TOML configuration, validated at load;
//!   the core's sections come from `norn_core::config`.
//! - [`node`]: [`Node`], start-up (storage, identity, endpoint) and the run
//!   until shutdown.
//! - `driver`: the task that owns the core: inputs in, effects out, timers,
//!   group-committed syncs.
//! - [`http`]: the HTTP API.
//! - [`identity`]: the node's persistent id and incarnation.
//! - `resolver`: peers' names resolved once and kept, off the send path.
//! - [`watch`]: seeds from DNS names, and certificate files reloaded when
//!   they change.
//! - [`error`]: [`NodeError`], why a node cannot start.

pub mod config;
mod driver;
pub mod error;
pub mod http;
pub mod identity;
pub mod limits;
pub mod node;
mod resolver;
pub mod watch;

pub use config::NodeConfig;
pub use error::NodeError;
pub use node::Node;
