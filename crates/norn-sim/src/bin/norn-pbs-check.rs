//! `norn-pbs-check`: staleness measured on a quiet simulated cluster beside
//! norn-model's prediction, for N=3 and (R, W) in (1,1), (1,2), (2,1),
//! (2,2) at every t of the PBS table; fails when any cell is more than
//! 2 percentage points off. `make pbs-check PROBES=5000 DELAY_MS=5`.

use std::process::ExitCode;

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
    println!(
        "{:<6} {:>7} {:>10} {:>10} {:>8}",
        "R W", "t ms", "measured", "predicted", "diff"
    );
    let mut worst = 0.0f64;
    for cell in &cells {
        let diff = 100.0 * (cell.measured - cell.predicted);
        worst = worst.max(diff.abs());
        println!(
            "{:<6} {:>7} {:>9.2}% {:>9.2}% {:>+7.2}{}",
            format!("{} {}", cell.r, cell.w),
            cell.t_ms,
            100.0 * cell.measured,
            100.0 * cell.predicted,
            diff,
            if diff.abs() > BOUND_POINTS {
                "  OUT"
            } else {
                ""
            }
        );
    }
    println!(
        "largest gap {worst:.2} points (bound {BOUND_POINTS}); {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if worst > BOUND_POINTS {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
