//! What a run measured.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

/// The results of one run.
#[derive(Debug, Serialize)]
pub struct Report {
    pub workload: String,
    pub operations: u64,
    pub seconds: f64,
    pub ops_per_s: f64,
    pub p50_us: u64,
    pub p95_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    /// Failed operations by kind.
    pub errors: BTreeMap<String, u64>,
    /// CPU time of this bench process per operation, in microseconds.
    pub bench_cpu_us_per_op: f64,
}

/// CPU time (user + system) this process has used so far, in seconds.
pub fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().filter_map(|v| v.parse::<f64>().ok()).sum()
    });
    // Linux reports these in clock ticks of 100 Hz on every common build.
    ticks / 100.0
}

impl Report {
    pub fn new(
        workload: String,
        latencies: &Histogram<u64>,
        seconds: f64,
        errors: BTreeMap<String, u64>,
        cpu_seconds: f64,
    ) -> Report {
        let operations = latencies.len();
        Report {
            bench_cpu_us_per_op: cpu_seconds * 1e6 / operations.max(1) as f64,
            workload,
            operations,
            seconds,
            ops_per_s: operations as f64 / seconds.max(f64::EPSILON),
            p50_us: latencies.value_at_quantile(0.50),
            p95_us: latencies.value_at_quantile(0.95),
            p99_us: latencies.value_at_quantile(0.99),
            p999_us: latencies.value_at_quantile(0.999),
            max_us: latencies.max(),
            errors,
        }
    }

    /// One line for humans.
    pub fn line(&self) -> String {
        let errors: u64 = self.errors.values().sum();
        format!(
            "{:<6} {:>10.0} ops/s  p50 {:>6} us  p95 {:>6} us  p99 {:>6} us  p99.9 {:>6} us  ({} ops in {:.1} s, {} errors{})",
            self.workload,
            self.ops_per_s,
            self.p50_us,
            self.p95_us,
            self.p99_us,
            self.p999_us,
            self.operations,
            self.seconds,
            errors,
            if errors == 0 { String::new() } else { format!(": {:?}", self.errors) }
        )
    }
}
