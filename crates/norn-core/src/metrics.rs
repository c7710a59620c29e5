//! Prometheus metrics of a node, rendered in the text exposition format
//! (nornd serves it at `/metrics`). Counters and histograms are updated by
//! the core where things happen; gauges (hints pending, peers up and down,
//! storage size) are read at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write;
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

/// The counters of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Counter {
    QuorumFailures,
    ReadRepairs,
    SpeculativeReads,
    HintsDelivered,
    GossipRounds,
    Exchanges,
    ExchangeKeysRepaired,
    ExchangeBytes,
    TombstonesReaped,
    TransferKeys,
    TransferBytes,
    RequestsRefused,
    RecordsRefused,
}

impl Counter {
    const ALL: [Counter; 13] = [
        Counter::QuorumFailures,
        Counter::ReadRepairs,
        Counter::SpeculativeReads,
        Counter::HintsDelivered,
        Counter::GossipRounds,
        Counter::Exchanges,
        Counter::ExchangeKeysRepaired,
        Counter::ExchangeBytes,
        Counter::TombstonesReaped,
        Counter::TransferKeys,
        Counter::TransferBytes,
        Counter::RequestsRefused,
        Counter::RecordsRefused,
    ];

    /// Name and help text.
    fn describe(self) -> (&'static str, &'static str) {
        match self {
            Counter::QuorumFailures => (
                "norn_quorum_failures_total",
                "Reads and writes that missed their quorum.",
            ),
            Counter::ReadRepairs => (
                "norn_read_repairs_total",
                "Stale replicas sent the merged object after a read.",
            ),
            Counter::SpeculativeReads => (
                "norn_speculative_reads_total",
                "Reads that asked the replicas they left out, R replies not in after data.speculative_read_ms.",
            ),
            Counter::HintsDelivered => (
                "norn_hints_delivered_total",
                "Hints handed to their primary and deleted.",
            ),
            Counter::GossipRounds => ("norn_gossip_rounds_total", "Gossip rounds run."),
            Counter::Exchanges => (
                "norn_anti_entropy_exchanges_total",
                "Anti-entropy exchanges finished with a peer.",
            ),
            Counter::ExchangeKeysRepaired => (
                "norn_anti_entropy_keys_repaired_total",
                "Keys made equal by anti-entropy exchanges.",
            ),
            Counter::ExchangeBytes => (
                "norn_anti_entropy_bytes_total",
                "Request and reply bytes of anti-entropy exchanges.",
            ),
            Counter::TombstonesReaped => (
                "norn_tombstones_reaped_total",
                "Tombstones removed after every replica held them.",
            ),
            Counter::TransferKeys => (
                "norn_transfer_keys_total",
                "Keys sent to their new owners by ownership transfers.",
            ),
            Counter::TransferBytes => (
                "norn_transfer_bytes_total",
                "Bytes sent by ownership transfers.",
            ),
            Counter::RequestsRefused => (
                "norn_requests_refused_total",
                "Requests refused because the caller's certificate or standing does not allow them.",
            ),
            Counter::RecordsRefused => (
                "norn_gossip_records_refused_total",
                "Relayed member records dropped: a changed identity without its node's signature.",
            ),
        }
    }
}

/// A node's counters and latency histograms.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: BTreeMap<(&'static str, &'static str), Histogram>,
    counters: BTreeMap<Counter, u64>,
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
    pub fn observe(&mut self, op: &'static str, response: &Response, latency: Duration) {
        let outcome = outcome_of(response);
        if outcome == "quorum_not_met" {
            self.count(Counter::QuorumFailures, 1);
        }
        self.requests
            .entry((op, outcome))
            .or_default()
            .observe(latency.as_secs_f64());
    }

    /// Adds `n` to `counter`.
    pub fn count(&mut self, counter: Counter, n: u64) {
        *self.counters.entry(counter).or_default() += n;
    }

    pub fn get(&self, counter: Counter) -> u64 {
        self.counters.get(&counter).copied().unwrap_or(0)
    }

    /// The text exposition of every metric.
    pub fn render(&self, gauges: Gauges) -> String {
        let mut out = String::with_capacity(4096);
        self.render_requests(&mut out);
        for counter in Counter::ALL {
            let (name, help) = counter.describe();
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                self.get(counter)
            );
        }
        for (name, help, value) in gauges.described() {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        out
    }

    fn render_requests(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP norn_requests_total Data requests coordinated, by operation and outcome."
        );
        let _ = writeln!(out, "# TYPE norn_requests_total counter");
        for ((op, outcome), histogram) in &self.requests {
            let _ = writeln!(
                out,
                "norn_requests_total{{op=\"{op}\",outcome=\"{outcome}\"}} {}",
                histogram.count
            );
        }
        let _ = writeln!(out, "# HELP norn_request_duration_seconds Latency of data requests, by operation and outcome.");
        let _ = writeln!(out, "# TYPE norn_request_duration_seconds histogram");
        for ((op, outcome), histogram) in &self.requests {
            histogram.render(out, &format!("op=\"{op}\",outcome=\"{outcome}\""));
        }
    }
}

impl Histogram {
    fn render(&self, out: &mut String, labels: &str) {
        let name = "norn_request_duration_seconds";
        let mut cumulative = 0;
        for (bound, count) in LATENCY_BUCKETS_S.iter().zip(self.buckets) {
            cumulative += count;
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum_s);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

impl Gauges {
    fn described(&self) -> [(&'static str, &'static str, u64); 8] {
        [
            ("norn_hints_pending", "Hints waiting for their primary.", self.hints_pending),
            ("norn_hint_bytes_pending", "Bytes of hints waiting for their primary.", self.hint_bytes_pending),
            ("norn_peers_up", "Peers this node considers up.", self.peers_up),
            ("norn_peers_down", "Peers this node considers down.", self.peers_down),
            ("norn_storage_bytes", "Approximate bytes of stored data (files and memtables).", self.storage_bytes),
            ("norn_ring_version", "Version of the ring this node holds (0: none).", self.ring_version),
            ("norn_anti_entropy_oldest_verified_seconds", "Seconds since the least recently verified partition of this node was found equal on all its replicas (since start if never).", self.oldest_verified_s),
            ("norn_anti_entropy_partitions_unverified", "Partitions of this node not verified since it started.", self.partitions_unverified),
        ]
    }
}

#[cfg(test)]
mod tests {
    use norn_proto::{ErrorReply, PutReply, WriteReceipt};

    use super::*;

    #[test]
    fn histograms_are_cumulative_and_outcomes_labelled() {
        let mut metrics = Metrics::default();
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
