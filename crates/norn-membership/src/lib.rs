//! Membership of a norn cluster: who is in it, where they are, whether they
//! are alive, and which ring they hold. Sans-IO: the state machine takes
//! `now` and messages and returns effects; time and randomness are passed
//! in, so a test drives a whole cluster on virtual time.
//!
//! - [`detector`]: [`PhiAccrual`], the phi-accrual failure detector
//!   (Hayashibara et al., 2004), with the normal-distribution approximation
//!   Akka and Cassandra use.
//! - [`member`]: [`Member`], what is gossiped about each node.
//! - [`gossip`]: [`Membership`], the state machine, its [`GossipMessage`]s and
//!   [`Effect`]s.
//! - [`config`]: [`MembershipConfig`] and its bounds.

pub mod config;
pub mod detector;
pub mod gossip;
pub mod member;

pub use config::{ConfigError, MembershipConfig};
pub use detector::PhiAccrual;
pub use gossip::{Effect, GossipMessage, MemberView, Membership, Sender};
pub use member::{ChangeKind, Member, MemberState, RecordProof, StagedChange};
