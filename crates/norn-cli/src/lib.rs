//! The `norn` command-line tool.
//!
//! - [`client_config`]: where `norn` finds the cluster (a TOML file: node
//!   addresses and client certificate), and how.
//! - [`certs`]: `norn certs init | node | client`.
//! - [`data`]: `norn get | put | delete`, `norn admin replica-get | hints`.
//! - [`admin`]: `norn admin members | ring | join | plan | commit`, and their
//!   human and `--json` output.

pub mod admin;
pub mod certs;
pub mod client_config;
pub mod data;
