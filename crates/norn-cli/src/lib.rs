//! The `norn` command-line tool. It speaks to the cluster through
//! norn-client (which finds the client configuration and the node to ask).
//!
//! - [`certs`]: `norn certs init | node | client`.
//! - [`data`]: `norn get | put | delete`, `norn admin replica-get | hints`.
//! - [`admin`]: `norn admin members | ring | join | plan | commit`, and their
//!   human and `--json` output.
//! - [`models`]: `norn admin pbs | model`.

pub mod admin;
pub mod certs;
pub mod data;
pub mod models;
