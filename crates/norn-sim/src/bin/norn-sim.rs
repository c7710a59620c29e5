//! `norn-sim`: runs simulation seeds and reports each failing one with the
//! command that replays it. `make sim SEEDS=10000` runs it over many seeds.

use std::process::ExitCode;

use norn_sim::{replay_command, simulate, SimOptions};

fn usage() -> ExitCode {
    eprintln!("usage: norn-sim [--seed SEED | --seeds COUNT [--from FIRST]] [--verbose]");
    ExitCode::from(2)
}

/// NORN_SIM_LOG=debug prints what the simulated nodes log (their virtual
/// time is not in the lines; the trace digest orders them).
fn init_logging() {
    if let Ok(filter) = std::env::var("NORN_SIM_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            // Colour only on a terminal: a log file gets plain text.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .without_time()
            .init();
    }
}

fn main() -> ExitCode {
    init_logging();
    let mut args = std::env::args().skip(1);
    let (mut first, mut count, mut verbose) = (0u64, 200u64, false);
    while let Some(arg) = args.next() {
        let mut number = || args.next().and_then(|v| v.parse::<u64>().ok());
        match arg.as_str() {
            "--seed" => match number() {
                Some(seed) => (first, count) = (seed, 1),
                None => return usage(),
            },
            "--seeds" => match number() {
                Some(n) => count = n,
                None => return usage(),
            },
            "--from" => match number() {
                Some(seed) => first = seed,
                None => return usage(),
            },
            "--verbose" => verbose = true,
            _ => return usage(),
        }
    }
    let options = SimOptions::default();
    let started = std::time::Instant::now();
    let (mut failed, mut acknowledged, mut lost, mut slowest) = (0u64, 0usize, 0usize, 0u64);
    let (mut blind_acknowledged, mut blind_lost) = (0usize, 0usize);
    for seed in first..first + count {
        let (run, verdict) = simulate(seed, options);
        acknowledged += verdict.acknowledged;
        lost += verdict.lost.len();
        blind_acknowledged += verdict.blind_acknowledged;
        blind_lost += verdict.blind_lost.len();
        slowest = slowest.max(verdict.converged_after_ms.unwrap_or(u64::MAX));
        if verbose {
            for (at, fault) in &run.faults {
                println!("  {at:>6} ms  {fault:?}");
            }
            println!(
                "seed {seed}: {} messages, trace {:016x}, most siblings read {:?}, extra writers {:?}, {verdict:?}",
                run.messages, run.trace, run.history.most_siblings, run.history.extra_writers
            );
        }
        if !verdict.passed() {
            failed += 1;
            println!(
                "seed {seed} FAILED: {verdict:?}\n  replay: {}",
                replay_command(seed)
            );
        }
    }
    println!(
        "{count} seeds from {first} in {:.1} s: {acknowledged} acknowledged elements, {lost} lost; {blind_acknowledged} acknowledged blind writes, {blind_lost} lost; {failed} failed runs, slowest convergence {} ms after healing",
        started.elapsed().as_secs_f64(),
        slowest
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
