//! The norn node as a deterministic state machine (sans-IO), after
//! quinn-proto and raft-rs: a [`Core`] takes `now`, inputs (a request, the
//! answer to a request it sent, a timer, a finished sync) and a seed, and
//! returns [`Effect`]s (send, reply, sync, set a timer). Every decision a
//! node makes lives here once; nornd (tokio, QUIC, HTTP, RocksDB) and the
//! simulator (virtual network and clock, memory storage) both drive it.
//!
//! - [`core`]: [`Core`], the inputs it takes and the views it gives.
//! - [`io`]: [`Effect`], [`Caller`], [`Timer`] and the handles that tie
//!   answers to questions.
//! - [`access`]: who may ask what, the one table checked before a request
//!   is handled.
//! - [`config`]: [`CoreConfig`], typed and validated, with `for_test()`.
//! - [`coordinator`]: quorum reads and writes, forwarding, read repair.
//! - [`replica`] and [`serve`]: a replica's operations on its own storage,
//!   and its side of exchanges, transfers and reaps.
//! - [`exchange`]: one anti-entropy exchange of a partition with a peer.
//! - [`verify`], [`repair`], [`reap`]: background verification of
//!   partitions, `norn admin repair`, tombstone removal.
//! - [`handoff`]: hint delivery.
//! - [`transfer`]: ownership transfers after ring changes, with checkpoints.
//! - [`admin`]: members, plans and commits, repair and transfer views.
//! - `status`: readiness (`AdminStatus`, `/health/ready`) and `auto_join`.
//! - [`plan`]: the next ring from the staged changes (pure).
//! - [`metrics`]: counters, latency histograms, the Prometheus text.
//! - [`error`]: [`CoreError`], what can go wrong.

pub mod access;
pub mod admin;
pub mod config;
pub mod coordinator;
pub mod core;
pub mod error;
pub mod exchange;
pub mod handoff;
mod history;
pub mod io;
pub mod latency;
pub mod metrics;
mod node;
mod outbox;
pub mod plan;
pub mod reap;
pub mod repair;
pub mod replica;
pub mod serve;
mod status;
pub mod transfer;
pub mod verify;

pub use crate::config::CoreConfig;
pub use crate::core::{Core, InProgress, NodeIdentity, Trust};
pub use crate::error::CoreError;
pub use crate::io::{
    CallFailure, CallId, Caller, Destination, Effect, Job, SyncToken, Timer, Token,
};
pub use crate::latency::LatencyKind;
