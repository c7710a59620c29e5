//! The async Rust client of norn.
//!
//! A [`Client`] connects with a client certificate, learns the ring and the
//! members' addresses from any node, keeps them fresh, and sends each
//! request straight to a replica of its key, chosen by a [`Policy`]:
//! round-robin, least outstanding requests, or lowest latency (EWMA). A GET
//! is retried on the next replica after a timeout or a connection error; a
//! PUT or DELETE only when the node said nothing was written.
//!
//! - [`balancer`]: the policies (pure, unit-tested).
//! - [`client`]: [`Client`], [`ClientOptions`] and [`ClientError`].
//! - [`session`]: [`NodeSession`], one node at a time for admin and
//!   replica requests, and where the client configuration is found.

pub mod balancer;
pub mod client;
pub mod session;

pub use balancer::{Balancer, Policy};
pub use client::{Client, ClientError, ClientOptions};
pub use norn_clock::{Context, Sibling};
pub use norn_proto::{GetReply, PutReply, QuorumOptions, WriteReceipt};
pub use session::{ring_signer, NodeSession, DEFAULT_CONFIG};
