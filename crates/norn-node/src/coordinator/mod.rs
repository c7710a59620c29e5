//! The request state machines of the data path (sans-IO): which replicas a
//! request goes to, and when enough of them have answered.
//!
//! - [`quorum`]: [`Quorum`], the per-request N, R, W, PR, PW and DW, resolved
//!   from a request's options and the node's defaults, and checked before
//!   anything is sent.
//! - [`write`]: sloppy-quorum targets of a write and the [`WriteTally`] of
//!   its acknowledgements, ending in a [`WriteReceipt`].
//! - [`read`]: the [`ReadTally`] of a read's replies: the merged object and
//!   the replicas that need read repair.

pub mod quorum;
pub mod read;
pub mod write;

pub use quorum::{Quorum, QuorumDefaults, QuorumError, QuorumOptions};
pub use read::{ReadOutcome, ReadTally};
pub use write::{choose_write_targets, WriteOutcome, WriteReceipt, WriteTally, WriteTarget};
