//! Simulated clusters under seeded faults lose no acknowledged write.
//! `NORN_SIM_SEEDS` sets how many seeds run (default 200), `NORN_SIM_FROM`
//! the first.

use norn_sim::{replay_command, simulate, SimOptions};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn no_acknowledged_write_is_lost_under_seeded_faults() {
    let (first, count) = (env("NORN_SIM_FROM", 0), env("NORN_SIM_SEEDS", 200));
    let mut failures = Vec::new();
    let mut acknowledged = 0;
    for seed in first..first + count {
        let (_, verdict) = simulate(seed, SimOptions::default());
        acknowledged += verdict.acknowledged;
        if !verdict.passed() {
            failures.push(format!(
                "seed {seed}: {verdict:?}\n  replay: {}",
                replay_command(seed)
            ));
        }
    }
    assert!(acknowledged > 0, "the workload acknowledged nothing");
    assert!(
        failures.is_empty(),
        "{} of {count} seeds failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn a_seed_replays_exactly() {
    let (first, _) = simulate(7, SimOptions::default());
    let (second, _) = simulate(7, SimOptions::default());
    assert_eq!(first.trace, second.trace);
    assert_eq!(first.messages, second.messages);
    assert_eq!(first.faults, second.faults);
    let (other, _) = simulate(8, SimOptions::default());
    assert_ne!(first.trace, other.trace);
}
