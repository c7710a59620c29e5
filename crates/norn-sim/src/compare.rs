//! The report the simulator's model checks print (`make pbs-check`, `make
//! availability-check`): each measured share beside its prediction, the
//! gap in percentage points, and the verdict.

use std::process::ExitCode;
use std::time::Instant;

/// One line of a report: a share measured, named by `label`, and its
/// prediction (both 0..=1).
#[derive(Debug, Clone, PartialEq)]
pub struct Compared {
    pub label: String,
    pub measured: f64,
    pub predicted: f64,
}

/// Prints a header (`label_header` over the labels) and every row with its
/// gap in points, marking those past `bound_points` `OUT`, then the largest
/// gap and the seconds since `started`. `FAILURE` when any row is past the
/// bound.
pub fn report(
    label_header: &str,
    rows: &[Compared],
    bound_points: f64,
    started: Instant,
) -> ExitCode {
    let width = rows
        .iter()
        .map(|row| row.label.len())
        .chain([label_header.len()])
        .max()
        .unwrap_or(0);
    println!(
        "{label_header:<width$} {:>10} {:>10} {:>8}",
        "measured", "predicted", "diff"
    );
    let mut worst = 0.0f64;
    for row in rows {
        let diff = 100.0 * (row.measured - row.predicted);
        worst = worst.max(diff.abs());
        println!(
            "{:<width$} {:>9.2}% {:>9.2}% {:>+7.2}{}",
            row.label,
            100.0 * row.measured,
            100.0 * row.predicted,
            diff,
            if diff.abs() > bound_points {
                "  OUT"
            } else {
                ""
            }
        );
    }
    println!(
        "largest gap {worst:.2} points (bound {bound_points}); {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if worst > bound_points {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
