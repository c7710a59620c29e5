//! Models that answer an operator's questions about norn with numbers:
//!
//! - [`pbs`]: *if I read R replicas t ms after a write to W of N was
//!   acknowledged, how likely am I to see it?* Probabilistically Bounded
//!   Staleness (Bailis et al., VLDB 2012): a Monte Carlo over the WARS
//!   delays of each replica, and the closed form of k-staleness.
//! - [`durability`]: *how likely is it that a key is lost this year?* A
//!   Markov chain of replica loss and repair, and the availability of read
//!   and write quorums, strict and sloppy.
//! - [`live`]: the WARS delays from what a running cluster measured;
//!   [`measured`]: the durability model's failure rate, node availability
//!   and repair time from what it saw.
//!
//! Everything here is pure and seeded: the same inputs give the same
//! numbers.

pub mod distribution;
pub mod durability;
pub mod live;
pub mod measured;
pub mod pbs;

pub use distribution::Distribution;
