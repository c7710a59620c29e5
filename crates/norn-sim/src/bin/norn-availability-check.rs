//! `norn-availability-check`: quorum availability measured on a simulated
//! 5-node cluster whose nodes are each up with probability `--up`, beside
//! norn-model's prediction, for sloppy and strict reads and writes of N=3;
//! fails when any case is more than 3 percentage points off.
//! `make availability-check TRIALS=2000 UP=0.7`.

use std::process::ExitCode;

use norn_sim::availability::{self, Op};
use norn_sim::compare::{self, Compared};

/// The largest gap allowed between measured and predicted, in points:
/// about three standard errors at 2,000 trials.
const BOUND_POINTS: f64 = 3.0;

fn usage() -> ExitCode {
    eprintln!("usage: norn-availability-check [--trials N] [--up P] [--seed SEED]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let (mut trials, mut up, mut seed) = (2_000u32, 0.7f64, 1u64);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next();
        let parsed = match arg.as_str() {
            "--trials" => value.and_then(|v| v.parse().ok()).map(|v| trials = v),
            "--up" => value
                .and_then(|v| v.parse().ok())
                .filter(|v: &f64| (0.0..=1.0).contains(v))
                .map(|v| up = v),
            "--seed" => value.and_then(|v| v.parse().ok()).map(|v| seed = v),
            _ => None,
        };
        if parsed.is_none() || trials == 0 {
            return usage();
        }
    }
    let started = std::time::Instant::now();
    let rows = match availability::check(trials, up, seed) {
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "{} nodes, N={}, each node up with probability {up}, {trials} trials, seed {seed}",
        availability::NODES,
        availability::N
    );
    let compared: Vec<Compared> = rows
        .iter()
        .map(|row| {
            let (op, quorum, strict) = match row.case.op {
                Op::Read => ("read", "R", "PR"),
                Op::Write => ("write", "W", "PW"),
            };
            Compared {
                label: format!(
                    "{op} {quorum}={} {strict}={}",
                    row.case.k, row.case.primaries
                ),
                measured: row.measured,
                predicted: row.predicted,
            }
        })
        .collect();
    compare::report("probe", &compared, BOUND_POINTS, started)
}
