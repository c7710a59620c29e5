//! Helpers for norn's cluster-level tests. Multi-process, namespace and
//! history-checking harnesses land here with the cluster, data-path and
//! proof work; for now it holds cross-crate checks of the foundation.
