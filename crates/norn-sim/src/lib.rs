//! Deterministic simulation of whole norn clusters.
//!
//! Every node is norn's own `norn_core::Core`, the very state machine nornd
//! drives, over MemStorage, in one thread, on a virtual clock, talking over
//! an in-memory network; [`node`] only carries its effects. So every
//! decision the simulator checks (routing, quorums, read repair, hinted
//! handoff, anti-entropy and its throttles, tombstone removal, transfers,
//! membership) is the shipped node's. One seed drives
//! everything: the fault schedule (full, one-way and bridge partitions,
//! message loss, duplication, reordering and delay, crashes with and
//! without losing unsynced writes, restarts, a wiped node) and every random
//! choice, so a seed replays its run exactly (same trace digest).
//!
//! Clients run the set-add, register and blind write/delete workloads
//! ([`workload`]); after the faults stop, the cluster heals, hints are
//! delivered and exchanges run until every key's replicas are byte-equal,
//! then runs on quietly (tombstones are reaped) and must be equal again;
//! then [`checker`] classifies every acknowledged write.
//!
//! [`pbs`] measures staleness on a quiet simulated cluster beside
//! norn-model's prediction (`make pbs-check`); [`availability`] measures
//! quorum availability with nodes up at random beside norn-model's
//! (`make availability-check`).
//!
//! Replay a seed: `cargo run -p norn-sim --release -- --seed SEED`.

pub mod availability;
pub mod checker;
pub mod compare;
pub mod node;
pub mod pbs;
mod trust;
pub mod workload;
pub mod world;

pub use checker::{check, Verdict};
pub use world::{Run, SimOptions, World};

/// Runs one seed and checks it.
pub fn simulate(seed: u64, options: SimOptions) -> (Run, Verdict) {
    let run = World::new(seed, options).run();
    let verdict = check(&run, options.clients);
    (run, verdict)
}

/// The command that replays `seed`.
pub fn replay_command(seed: u64) -> String {
    format!("cargo run -p norn-sim --release -- --seed {seed} --verbose")
}
