//! Causality for norn: dotted version vector sets (Almeida, Baquero,
//! Gonçalves, Preguiça, Fonte: "Scalable and Accurate Causality Tracking for
//! Eventually Consistent Stores", DAIS 2014), following the layout of
//! riak_core's `dvvset`. Pure: no I/O, no clock.
//!
//! - [`dvvset`]: [`DvvSet`], the stored object: concurrent values with their
//!   dots, and the causal history they summarize.
//! - [`context`]: [`Context`], the version vector a client reads and sends
//!   back with a write, and [`ActorId`], who made a dot.
//! - [`lifetime`]: [`Lifetime`], one run of a node, and the rule for which
//!   actor its next dot of a key belongs to, so no dot is issued twice.
//! - [`sibling`]: [`Sibling`], a stored value or a tombstone, and [`Object`],
//!   the `DvvSet<Sibling>` that norn stores.

pub mod context;
pub mod dvvset;
pub mod lifetime;
pub mod sibling;

pub use context::{ActorId, Context, MalformedHistory, MAX_COUNTER};
pub use dvvset::DvvSet;
pub use lifetime::Lifetime;
pub use sibling::{Object, Sibling};
