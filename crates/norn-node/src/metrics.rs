//! Prometheus metrics of a node, rendered in the text exposition format at
//! `/metrics`. Counters and histograms are updated where things happen;
//! gauges (hints pending, peers up and down, storage size) are read at
//! scrape time.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use norn_proto::{ErrorCode, Response};

/// Upper bounds of the latency buckets, in seconds.
const LATENCY_BUCKETS_S: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Observations at or below each bound (not cumulative; summed when
    /// rendered).
    buckets: [u64; LATENCY_BUCKETS_S.len()],
    count: u64,
    sum_s: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if let Some(i) = LATENCY_BUCKETS_S.iter().position(|bound| seconds <= *bound) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum_s += seconds;
    }
}

/// A node's counters and latency histograms.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, &'static str), Histogram>>,
    pub(crate) quorum_failures: AtomicU64,
    pub(crate) read_repairs: AtomicU64,
    pub(crate) hints_delivered: AtomicU64,
    pub(crate) gossip_rounds: AtomicU64,
    pub(crate) exchanges: AtomicU64,
    pub(crate) exchange_keys_repaired: AtomicU64,
    pub(crate) exchange_bytes: AtomicU64,
    pub(crate) tombstones_reaped: AtomicU64,
    pub(crate) transfer_keys: AtomicU64,
    pub(crate) transfer_bytes: AtomicU64,
}

/// The outcome label of a data request's reply.
pub fn outcome_of(response: &Response) -> &'static str {
    match response {
        Response::Value(reply) if reply.is_not_found() => "not_found",
        Response::Value(_) | Response::Written(_) => "ok",
        Response::WriteFailed { .. } => "quorum_not_met",
        Response::Error(e) => match e.code {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::QuorumNotMet => "quorum_not_met",
            ErrorCode::Timeout => "timeout",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::TooManySiblings => "too_many_siblings",
            _ => "error",
        },
        _ => "error",
    }
}

/// The gauges read at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    pub hints_pending: u64,
    pub hint_bytes_pending: u64,
    pub peers_up: u64,
    pub peers_down: u64,
    pub storage_bytes: u64,
    pub ring_version: u64,
    /// Seconds since the least recently verified partition this node
    /// replicates was last verified (since start, if never).
    pub oldest_verified_s: u64,
    /// Partitions this node replicates not verified since it started.
    pub partitions_unverified: u64,
}

impl Metrics {
    /// Records one data request (`op`: get, put or delete).
    pub fn observe(&self, op: &'static str, response: &Response, latency: Duration) {
        let outcome = outcome_of(response);
        if outcome == "quorum_not_met" {
            self.quorum_failures.fetch_add(1, Ordering::Relaxed);
        }
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        requests
            .entry((op, outcome))
            .or_default()
            .observe(latency.as_secs_f64());
    }

    /// The text exposition of every metric.
    pub fn render(&self, gauges: Gauges) -> String {
        let mut out = String::with_capacity(4096);
        let requests = self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let _ = writeln!(
            out,
            "# HELP norn_requests_total Data requests coordinated, by operation and outcome."
        );
        let _ = writeln!(out, "# TYPE norn_requests_total counter");
        for ((op, outcome), histogram) in &requests {
            let _ = writeln!(
                out,
                "norn_requests_total{{op=\"{op}\",outcome=\"{outcome}\"}} {}",
                histogram.count
            );
        }
        let _ = writeln!(out, "# HELP norn_request_duration_seconds Latency of data requests, by operation and outcome.");
        let _ = writeln!(out, "# TYPE norn_request_duration_seconds histogram");
        for ((op, outcome), histogram) in &requests {
            let labels = format!("op=\"{op}\",outcome=\"{outcome}\"");
            let mut cumulative = 0;
            for (bound, count) in LATENCY_BUCKETS_S.iter().zip(histogram.buckets) {
                cumulative += count;
                let _ = writeln!(
                    out,
                    "norn_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "norn_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                histogram.count
            );
            let _ = writeln!(
                out,
                "norn_request_duration_seconds_sum{{{labels}}} {}",
                histogram.sum_s
            );
            let _ = writeln!(
                out,
                "norn_request_duration_seconds_count{{{labels}}} {}",
                histogram.count
            );
        }
        let counters = [
            (
                "norn_quorum_failures_total",
                "Reads and writes that missed their quorum.",
                &self.quorum_failures,
            ),
            (
                "norn_read_repairs_total",
                "Stale replicas sent the merged object after a read.",
                &self.read_repairs,
            ),
            (
                "norn_hints_delivered_total",
                "Hints handed to their primary and deleted.",
                &self.hints_delivered,
            ),
            (
                "norn_gossip_rounds_total",
                "Gossip rounds run.",
                &self.gossip_rounds,
            ),
            (
                "norn_anti_entropy_exchanges_total",
                "Anti-entropy exchanges finished with a peer.",
                &self.exchanges,
            ),
            (
                "norn_anti_entropy_keys_repaired_total",
                "Keys made equal by anti-entropy exchanges.",
                &self.exchange_keys_repaired,
            ),
            (
                "norn_anti_entropy_bytes_total",
                "Request and reply bytes of anti-entropy exchanges.",
                &self.exchange_bytes,
            ),
            (
                "norn_tombstones_reaped_total",
                "Tombstones removed after every replica held them.",
                &self.tombstones_reaped,
            ),
            (
                "norn_transfer_keys_total",
                "Keys sent to their new owners by ownership transfers.",
                &self.transfer_keys,
            ),
            (
                "norn_transfer_bytes_total",
                "Bytes sent by ownership transfers.",
                &self.transfer_bytes,
            ),
        ];
        for (name, help, counter) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        let gauges = [
            (
                "norn_hints_pending",
                "Hints waiting for their primary.",
                gauges.hints_pending,
            ),
            (
                "norn_hint_bytes_pending",
                "Bytes of hints waiting for their primary.",
                gauges.hint_bytes_pending,
            ),
            (
                "norn_peers_up",
                "Peers this node considers up.",
                gauges.peers_up,
            ),
            (
                "norn_peers_down",
                "Peers this node considers down.",
                gauges.peers_down,
            ),
            (
                "norn_storage_bytes",
                "Approximate bytes of stored data on disk.",
                gauges.storage_bytes,
            ),
            (
                "norn_ring_version",
                "Version of the ring this node holds (0: none).",
                gauges.ring_version,
            ),
            (
                "norn_anti_entropy_oldest_verified_seconds",
                "Seconds since the least recently verified partition of this node was found equal on all its replicas (since start if never).",
                gauges.oldest_verified_s,
            ),
            (
                "norn_anti_entropy_partitions_unverified",
                "Partitions of this node not verified since it started.",
                gauges.partitions_unverified,
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use norn_proto::{ErrorReply, PutReply, WriteReceipt};

    use super::*;

    #[test]
    fn histograms_are_cumulative_and_outcomes_labelled() {
        let metrics = Metrics::default();
        let ok = Response::Written(PutReply {
            receipt: WriteReceipt::default(),
            context: norn_clock::Context::default(),
            siblings: 1,
            warning: None,
        });
        metrics.observe("put", &ok, Duration::from_micros(700));
        metrics.observe("put", &ok, Duration::from_millis(20));
        let failed = Response::Error(ErrorReply {
            code: ErrorCode::QuorumNotMet,
            message: String::new(),
        });
        metrics.observe("get", &failed, Duration::from_millis(3));
        let text = metrics.render(Gauges {
            peers_up: 2,
            ..Gauges::default()
        });
        assert!(
            text.contains("norn_requests_total{op=\"put\",outcome=\"ok\"} 2"),
            "{text}"
        );
        assert!(text.contains(
            "norn_request_duration_seconds_bucket{op=\"put\",outcome=\"ok\",le=\"0.001\"} 1"
        ));
        assert!(text.contains(
            "norn_request_duration_seconds_bucket{op=\"put\",outcome=\"ok\",le=\"0.025\"} 2"
        ));
        assert!(text.contains(
            "norn_request_duration_seconds_bucket{op=\"put\",outcome=\"ok\",le=\"+Inf\"} 2"
        ));
        assert!(text.contains("norn_quorum_failures_total 1"));
        assert!(text.contains("norn_peers_up 2"));
    }
}
