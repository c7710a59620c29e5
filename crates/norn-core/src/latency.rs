//! Latency histograms for staleness predictions (`norn admin pbs`). The
//! shell times what the core cannot (its clock is in milliseconds): the
//! round trip of each replica write and read this node sends, per peer,
//! and how long this node took to serve each it received, from arrival at
//! the core to the answer. It hands them to [`crate::Core::observe`]; the
//! core keeps them in two windows of [`WINDOW_MS`] and answers
//! `AdminLatencies` with both, so a read covers the last 5 to 10 minutes.
//! Memory is bounded: per window, two histograms per peer (a member of the
//! ring) and two of service times, of about 20 KiB each at most.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use norn_proto::{LatencyBuckets, NodeLatencies, PeerLatencies};
use norn_ring::NodeId;

/// The length of one window, ms.
pub const WINDOW_MS: u64 = 300_000;
/// The largest latency kept, in microseconds (a minute); longer ones count
/// as this.
const HIGHEST_US: u64 = 60_000_000;

/// What a latency sample measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatencyKind {
    /// A replica write to `peer`, sent until answered.
    WriteRoundTrip(NodeId),
    /// A replica read of `peer`, sent until answered.
    ReadRoundTrip(NodeId),
    /// A replica write this node served.
    WriteService,
    /// A replica read this node served.
    ReadService,
}

fn histogram() -> Histogram<u32> {
    Histogram::new_with_bounds(1, HIGHEST_US, 2).expect("valid histogram bounds")
}

#[derive(Debug)]
struct Window {
    started_ms: u64,
    write_service: Histogram<u32>,
    read_service: Histogram<u32>,
    /// Per peer: write and read round trips.
    peers: BTreeMap<NodeId, (Histogram<u32>, Histogram<u32>)>,
}

impl Window {
    fn new(started_ms: u64) -> Window {
        Window {
            started_ms,
            write_service: histogram(),
            read_service: histogram(),
            peers: BTreeMap::new(),
        }
    }
}

/// The latencies of the current and the previous window.
#[derive(Debug)]
pub struct LatencyBook {
    current: Window,
    previous: Option<Window>,
}

impl LatencyBook {
    pub fn new(now_ms: u64) -> LatencyBook {
        LatencyBook {
            current: Window::new(now_ms),
            previous: None,
        }
    }

    /// Records one sample of `micros` taken at `now_ms`.
    pub fn record(&mut self, now_ms: u64, kind: LatencyKind, micros: u64) {
        if now_ms.saturating_sub(self.current.started_ms) >= WINDOW_MS {
            let fresh = Window::new(now_ms);
            self.previous = Some(std::mem::replace(&mut self.current, fresh));
        }
        let window = &mut self.current;
        let histogram = match kind {
            LatencyKind::WriteService => &mut window.write_service,
            LatencyKind::ReadService => &mut window.read_service,
            LatencyKind::WriteRoundTrip(peer) => {
                &mut window
                    .peers
                    .entry(peer)
                    .or_insert_with(|| (histogram(), histogram()))
                    .0
            }
            LatencyKind::ReadRoundTrip(peer) => {
                &mut window
                    .peers
                    .entry(peer)
                    .or_insert_with(|| (histogram(), histogram()))
                    .1
            }
        };
        histogram.saturating_record(micros.clamp(1, HIGHEST_US));
    }

    /// Both windows, merged, as `node` measured them.
    pub fn report(&self, node: NodeId) -> NodeLatencies {
        let windows: Vec<&Window> = std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .collect();
        let merged = |pick: &dyn Fn(&Window) -> Option<&Histogram<u32>>| {
            let mut sum = histogram();
            for window in &windows {
                if let Some(h) = pick(window) {
                    // Both have the same bounds, so adding cannot fail.
                    let _ = sum.add(h);
                }
            }
            buckets(&sum)
        };
        let peers: std::collections::BTreeSet<NodeId> = windows
            .iter()
            .flat_map(|w| w.peers.keys().copied())
            .collect();
        NodeLatencies {
            node,
            write_service: merged(&|w| Some(&w.write_service)),
            read_service: merged(&|w| Some(&w.read_service)),
            peers: peers
                .into_iter()
                .map(|peer| PeerLatencies {
                    peer,
                    write_round_trip: merged(&|w| w.peers.get(&peer).map(|p| &p.0)),
                    read_round_trip: merged(&|w| w.peers.get(&peer).map(|p| &p.1)),
                })
                .collect(),
        }
    }
}

fn buckets(histogram: &Histogram<u32>) -> LatencyBuckets {
    LatencyBuckets {
        buckets: histogram
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), u64::from(v.count_at_value())))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_land_in_their_histograms_and_old_windows_age_out() {
        let mut book = LatencyBook::new(0);
        book.record(10, LatencyKind::WriteRoundTrip(NodeId(2)), 500);
        book.record(20, LatencyKind::WriteRoundTrip(NodeId(2)), 500);
        book.record(30, LatencyKind::ReadService, 40);
        let report = book.report(NodeId(1));
        assert_eq!(report.peers.len(), 1);
        let writes = &report.peers[0].write_round_trip.buckets;
        assert_eq!(writes.iter().map(|b| b.1).sum::<u64>(), 2);
        assert!(
            writes.iter().all(|b| (495..=505).contains(&b.0)),
            "{writes:?}"
        );
        assert!(report.peers[0].read_round_trip.buckets.is_empty());
        assert_eq!(
            report.read_service.buckets.iter().map(|b| b.1).sum::<u64>(),
            1
        );
        assert!(report.write_service.buckets.is_empty());

        // One window later the samples are still read; two, they are gone.
        book.record(WINDOW_MS, LatencyKind::WriteService, 7);
        assert_eq!(book.report(NodeId(1)).peers.len(), 1);
        book.record(2 * WINDOW_MS, LatencyKind::WriteService, 7);
        let report = book.report(NodeId(1));
        assert!(report.peers.is_empty());
        assert_eq!(
            report
                .write_service
                .buckets
                .iter()
                .map(|b| b.1)
                .sum::<u64>(),
            2
        );
    }
}
