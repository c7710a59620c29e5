//! `norn-pbs-check`: staleness measured on a quiet simulated cluster beside
//! norn-model's prediction, for N=3 and (R, W) in (1,1), (1,2), (2,1),
//! (2,2) at every t of the PBS table; fails when any cell is more than
//! 2 percentage points off. `make pbs-check PROBES=5000 DELAY_MS=5`.

use std::process::ExitCode;

use norn_sim::compare::{self, Compared};

/// The largest gap allowed between measured and predicted, in points.
const BOUND_POINTS: f64 = 2.0;

fn usage() -> ExitCode {
    eprintln!("usage: norn-pbs-check [--probes N] [--mean-delay-ms MS] [--seed SEED]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let (mut probes, mut mean_delay_ms, mut seed) = (5_000u32, 5.0f64, 1u64);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next();
        let parsed = match arg.as_str() {
            "--probes" => value.and_then(|v| v.parse().ok()).map(|v| probes = v),
            "--mean-delay-ms" => value
                .and_then(|v| v.parse().ok())
                .filter(|v: &f64| v.is_finite() && *v > 0.0)
                .map(|v| mean_delay_ms = v),
            "--seed" => value.and_then(|v| v.parse().ok()).map(|v| seed = v),
            _ => None,
        };
        if parsed.is_none() || probes == 0 {
            return usage();
        }
    }
    let started = std::time::Instant::now();
    let cells = match norn_sim::pbs::check(probes, mean_delay_ms, seed) {
        Ok(cells) => cells,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "N=3, network delays 1 + floor(Exp(mean {mean_delay_ms} ms)) ms, {probes} probes per cell, seed {seed}"
    );
    let compared: Vec<Compared> = cells
        .iter()
        .map(|cell| Compared {
            label: format!("{:<6} {:>7}", format!("{} {}", cell.r, cell.w), cell.t_ms),
            measured: cell.measured,
            predicted: cell.predicted,
        })
        .collect();
    let header = format!("{:<6} {:>7}", "R W", "t ms");
    compare::report(&header, &compared, BOUND_POINTS, started)
}
