//! The norn node: wires storage, transport and membership together.
//!
//! - [`config`]: [`NodeConfig`], the TOML configuration, validated at load.
//! - [`coordinator`]: the data path's request state machines (sans-IO).
//! - [`datapath`]: quorum reads and writes, read repair, the replica side.
//! - [`handoff`]: hinted handoff from fallbacks to primaries.
//! - [`replica`]: a replica's operations on its own storage (merge, digests,
//!   the replica side of exchanges and transfers).
//! - [`exchange`]: one anti-entropy exchange (sans-IO).
//! - [`anti_entropy`]: background exchanges, `norn admin repair`, tombstone
//!   removal.
//! - [`transfer`]: ownership transfers after ring changes.
//! - [`http`]: the HTTP API.
//! - [`metrics`]: Prometheus counters, histograms and gauges.
//! - [`identity`]: the node's persistent id, incarnation and actor id.
//! - [`plan`]: pure planning of ring changes from staged changes.
//! - [`node`]: [`Node`], the running node: gossip loop, request handling,
//!   admin service, shutdown.
//! - [`error`]: [`NodeError`], why a node cannot start or serve.

pub mod anti_entropy;
pub mod config;
pub mod coordinator;
pub mod datapath;
pub mod error;
pub mod exchange;
pub mod handoff;
pub mod http;
pub mod identity;
pub mod metrics;
pub mod node;
pub mod plan;
pub mod replica;
pub mod transfer;

pub use config::NodeConfig;
pub use error::NodeError;
pub use node::Node;
