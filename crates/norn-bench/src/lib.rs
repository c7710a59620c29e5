//! `norn-bench`, a YCSB-style load generator.
//!
//! Empty until the clients work (issue 5) fills it.
