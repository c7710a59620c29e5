//! Harnesses for norn's cluster-level tests.
//!
//! - [`cluster`]: [`cluster::TestCluster`], real `nornd` processes on
//!   loopback with their own CA, free ports and data directories, stopped by
//!   pid when the test ends, however it ends.
//! - [`http`]: requests to a node's HTTP API with curl.
//! - [`netns`]: [`netns::FaultCluster`], nodes in network namespaces on a
//!   bridge with nftables faults and kill -9, driven by the set-add
//!   workload; needs root.

pub mod cluster;
pub mod http;
pub mod netns;
