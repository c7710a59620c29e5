//! The async Rust client of norn.
//!
//! Empty until the clients work (issue 5) fills it: ring-aware routing,
//! load-balancing policies and retries.
