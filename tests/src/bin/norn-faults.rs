//! `make faults`: runs every network-namespace fault scenario on real nodes
//! and prints, per scenario, acknowledged writes, lost, never read, the most
//! siblings seen, and the time to converge after healing. Needs root.

use std::process::ExitCode;

use norn_tests::netns::{is_root, run_scenario, SCENARIOS};

fn main() -> ExitCode {
    if !is_root() {
        eprintln!("make faults needs root (network namespaces and nftables)");
        return ExitCode::from(2);
    }
    let seconds = std::env::var("FAULT_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    println!(
        "{:<16}{:>14}{:>6}{:>12}{:>15}{:>14}",
        "scenario", "acknowledged", "lost", "never read", "most siblings", "converge s"
    );
    let mut failed = false;
    for name in SCENARIOS {
        match run_scenario(name, seconds) {
            Ok(r) => {
                failed |= r.lost > 0;
                println!(
                    "{:<16}{:>14}{:>6}{:>12}{:>15}{:>14}",
                    r.name,
                    r.acknowledged,
                    r.lost,
                    r.never_read,
                    r.most_siblings,
                    r.converge
                        .map_or("-".into(), |d| format!("{:.1}", d.as_secs_f64()))
                );
            }
            Err(e) => {
                failed = true;
                println!("{name:<16} failed: {e}");
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
