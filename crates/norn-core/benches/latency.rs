//! What the latency capture costs a request: two clock reads (as the
//! driver takes them around a replica request) and one histogram record,
//! over 1,000,000 samples spread over 4 peers; the median of 5 runs. Also
//! the encoded size of a full report. `cargo bench -p norn-core --bench
//! latency` (`make bench-latency`).

use std::time::Instant;

use norn_core::latency::{LatencyBook, LatencyKind};
use norn_ring::NodeId;

const SAMPLES: u64 = 1_000_000;

fn run(book: &mut LatencyBook) -> f64 {
    let started = Instant::now();
    for i in 0..SAMPLES {
        let sent = Instant::now();
        let peer = NodeId(2 + i % 4);
        let kind = match i % 4 {
            0 => LatencyKind::WriteRoundTrip(peer),
            1 => LatencyKind::ReadRoundTrip(peer),
            2 => LatencyKind::WriteService,
            _ => LatencyKind::ReadService,
        };
        // A spread of values, as real round trips have.
        let micros = sent.elapsed().as_micros() as u64 + 100 + (i * 7919) % 20_000;
        book.record(i / 1_000, kind, micros);
    }
    started.elapsed().as_nanos() as f64 / SAMPLES as f64
}

fn main() {
    let mut book = LatencyBook::new(0);
    let mut runs: Vec<f64> = (0..5).map(|_| run(&mut book)).collect();
    runs.sort_by(f64::total_cmp);
    let report = book.report(NodeId(1));
    let encoded = norn_proto::codec::encode(&norn_proto::Response::Latencies(report))
        .expect("a report encodes");
    println!(
        "latency capture: {:.1} ns per sample (median of 5 runs of {SAMPLES}; runs {:.1}..{:.1} ns); a report of 4 peers encodes to {} KiB",
        runs[2],
        runs[0],
        runs[4],
        encoded.len() / 1024
    );
}
