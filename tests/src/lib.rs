//! Harnesses for norn's cluster-level tests.
//!
//! - [`cluster`]: [`cluster::TestCluster`], real `nornd` processes on
//!   loopback with their own CA, free ports and data directories, stopped by
//!   pid when the test ends, however it ends.

pub mod cluster;
