//! The durability model's inputs from what a live cluster saw
//! (`AdminFailureHistory`).
//!
//! - **Failure rate**: every peer's down events over the time it was
//!   watched, each peer counted once, by the node that watched it longest.
//!   The failure detector sees every outage (a restart, a pause, a
//!   partition), and most lose no data, so this is an upper bound of the
//!   data-losing failure rate [`crate::durability`] asks for: the loss it
//!   predicts from it is pessimistic.
//! - **Node availability**: one minus the share of the watched time the
//!   peers were seen down.
//! - **Repair time**: re-creating a lost replica means copying a node's
//!   data (the mean stored bytes per node) at the rate finished repair
//!   work moved it (ownership transfers, and anti-entropy verifications
//!   that repaired keys, pooled over the nodes: bytes over busy time),
//!   after waiting for anti-entropy to reach every partition (the slowest
//!   node's sweep).

use std::collections::BTreeMap;

use norn_proto::NodeFailureHistory;
use serde::{Deserialize, Serialize};

use crate::durability::HOURS_PER_YEAR;

const MS_PER_HOUR: f64 = 3_600_000.0;

/// What the cluster's histories say about failures and repair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeasuredFailures {
    pub nodes_reporting: usize,
    /// Peer time watched, each peer once, in hours.
    pub peer_hours_watched: f64,
    pub down_events: u64,
    /// Down events per node and year; `None` before the first.
    pub failures_per_year: Option<f64>,
    /// Share of the watched time peers were up; `None` before any was
    /// watched.
    pub availability: Option<f64>,
    pub bytes_per_node: u64,
    pub repair_bytes: u64,
    pub repair_busy_ms: u64,
    /// `None` before finished repair work moved any data.
    pub repair_bytes_per_s: Option<f64>,
    /// The slowest node's anti-entropy sweep; `None` until every node
    /// verified each of its partitions once.
    pub sweep_ms: Option<u64>,
    /// `None` without a repair rate (or with nothing to repair).
    pub repair_hours: Option<f64>,
}

/// The measured inputs from every reporting node's history.
pub fn failures(histories: &[NodeFailureHistory]) -> MeasuredFailures {
    // Per peer: (watched ms, down events, down ms) of its longest watcher.
    let mut peers: BTreeMap<norn_ring::NodeId, (u64, u64, u64)> = BTreeMap::new();
    for history in histories {
        for p in &history.peers {
            let seen = peers.entry(p.node).or_default();
            if p.watched_ms > seen.0 {
                *seen = (p.watched_ms, p.down_events, p.down_ms);
            }
        }
    }
    let watched_ms: u64 = peers.values().map(|p| p.0).sum();
    let down_events: u64 = peers.values().map(|p| p.1).sum();
    let down_ms: u64 = peers.values().map(|p| p.2).sum();
    let peer_hours_watched = watched_ms as f64 / MS_PER_HOUR;
    let failures_per_year =
        (down_events > 0).then(|| down_events as f64 / (peer_hours_watched / HOURS_PER_YEAR));
    let availability =
        (watched_ms > 0).then(|| 1.0 - (down_ms.min(watched_ms) as f64 / watched_ms as f64));

    let reporting = histories.len().max(1) as u64;
    let bytes_per_node = histories.iter().map(|h| h.storage_bytes).sum::<u64>() / reporting;
    let repair_bytes: u64 = histories.iter().map(|h| h.repair_bytes).sum();
    let repair_busy_ms: u64 = histories.iter().map(|h| h.repair_busy_ms).sum();
    let repair_bytes_per_s = (repair_bytes > 0 && repair_busy_ms > 0)
        .then(|| repair_bytes as f64 / (repair_busy_ms as f64 / 1000.0));
    let sweep_ms = if histories.iter().all(|h| h.sweep_ms.is_some()) {
        histories.iter().filter_map(|h| h.sweep_ms).max()
    } else {
        None
    };
    let repair_hours = repair_bytes_per_s
        .map(|rate| {
            let copy_ms = bytes_per_node as f64 / rate * 1000.0;
            (copy_ms + sweep_ms.unwrap_or(0) as f64) / MS_PER_HOUR
        })
        .filter(|hours| *hours > 0.0);
    MeasuredFailures {
        nodes_reporting: histories.len(),
        peer_hours_watched,
        down_events,
        failures_per_year,
        availability,
        bytes_per_node,
        repair_bytes,
        repair_busy_ms,
        repair_bytes_per_s,
        sweep_ms,
        repair_hours,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use norn_proto::PeerOutages;
    use norn_ring::NodeId;

    fn history(
        node: u64,
        peers: &[(u64, u64, u64, u64)],
        repair: (u64, u64),
    ) -> NodeFailureHistory {
        NodeFailureHistory {
            node: NodeId(node),
            watched_ms: 0,
            peers: peers
                .iter()
                .map(|&(peer, watched_ms, down_events, down_ms)| PeerOutages {
                    node: NodeId(peer),
                    watched_ms,
                    down_events,
                    down_ms,
                })
                .collect(),
            storage_bytes: 360 << 20,
            repair_bytes: repair.0,
            repair_busy_ms: repair.1,
            sweep_ms: Some(60_000),
        }
    }

    #[test]
    fn each_peer_counts_once_by_its_longest_watcher() {
        let hour = 3_600_000;
        let a = history(1, &[(2, 10 * hour, 1, hour), (3, 10 * hour, 0, 0)], (0, 0));
        // Node 2 watched 3 for less time and saw its one outage as two.
        let b = history(
            2,
            &[(1, 10 * hour, 0, 0), (3, 5 * hour, 2, hour)],
            (1 << 20, 1_000),
        );
        let measured = failures(&[a, b]);
        assert_eq!(measured.down_events, 1);
        assert!((measured.peer_hours_watched - 30.0).abs() < 1e-9);
        let per_year = 1.0 / (30.0 / HOURS_PER_YEAR);
        assert!((measured.failures_per_year.expect("a rate") - per_year).abs() < 1e-9);
        assert!((measured.availability.expect("watched") - (1.0 - 1.0 / 30.0)).abs() < 1e-12);
        // 360 MiB per node at 1 MiB/s (pooled: 1 MiB in 1 s of busy
        // time) is 360 s, plus a 60 s sweep.
        let hours = measured.repair_hours.expect("a repair time");
        assert!((hours - 420.0 / 3_600.0).abs() < 1e-9, "{hours}");
    }

    #[test]
    fn nothing_seen_measures_nothing() {
        let measured = failures(&[history(1, &[(2, 1_000, 0, 0)], (0, 0))]);
        assert_eq!(
            (
                measured.failures_per_year,
                measured.repair_bytes_per_s,
                measured.repair_hours
            ),
            (None, None, None)
        );
        assert_eq!(measured.availability, Some(1.0));
    }
}
