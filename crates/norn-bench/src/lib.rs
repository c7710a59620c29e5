//! `norn-bench`, a YCSB-style load generator for norn.
//!
//! - [`workload`]: YCSB core workloads A, B, C and F as operation mixes.
//! - [`keys`]: uniform and zipfian key choice (YCSB's generator, after Gray
//!   et al., "Quickly generating billion-record synthetic databases").
//! - [`report`]: throughput, HDR-histogram percentiles, errors by kind.
//! - `etcd` (feature `etcd`): the same workloads against etcd, for
//!   `make bench-etcd`.

#[cfg(feature = "etcd")]
pub mod etcd;
pub mod keys;
pub mod report;
pub mod workload;
