//! The `norn` command-line tool. It speaks to the cluster through
//! norn-client (which finds the client configuration and the node to ask).
//!
//! - [`certs`]: `norn certs init | node | client`.
//! - [`data`]: `norn get | put | delete`, `norn admin replica-get |
//!   replicas | hints`.
//! - [`admin`]: `norn admin members | ring | join | plan | commit | status`,
//!   and their human and `--json` output.
//! - [`models`]: `norn admin pbs | model`.
//! - [`autopilot`]: `norn admin autopilot | leave`, and the rule of when a
//!   ring change is safe to commit.

pub mod admin;
pub mod autopilot;
pub mod certs;
pub mod data;
pub mod models;
