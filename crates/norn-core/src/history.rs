//! What a node has seen of failures and repairs since it started, the
//! measured inputs of `norn admin model`: each peer's outages as the
//! failure detector saw them (from the peer's first time seen up), and
//! the bytes and time of the work that re-creates replicas (ownership
//! transfers, and anti-entropy verifications that repaired keys).

use std::collections::BTreeMap;

use norn_proto::{NodeFailureHistory, PeerOutages};
use norn_ring::NodeId;

/// One peer's outages as this node saw them.
#[derive(Debug, Clone, Copy)]
struct Outages {
    first_up_ms: u64,
    down_since: Option<u64>,
    down_events: u64,
    down_ms: u64,
}

/// Outages of peers and the repair work of this node.
#[derive(Debug, Default)]
pub(crate) struct FailureHistory {
    peers: BTreeMap<NodeId, Outages>,
    repair_bytes: u64,
    repair_busy_ms: u64,
}

impl FailureHistory {
    /// The failure detector sees `peer` up at `now`.
    pub(crate) fn peer_up(&mut self, peer: NodeId, now: u64) {
        let outages = self.peers.entry(peer).or_insert(Outages {
            first_up_ms: now,
            down_since: None,
            down_events: 0,
            down_ms: 0,
        });
        if let Some(since) = outages.down_since.take() {
            outages.down_ms += now.saturating_sub(since);
        }
    }

    /// The failure detector sees `peer` down at `now`; a peer never seen
    /// up is not watched yet.
    pub(crate) fn peer_down(&mut self, peer: NodeId, now: u64) {
        if let Some(outages) = self.peers.get_mut(&peer) {
            if outages.down_since.is_none() {
                outages.down_since = Some(now);
                outages.down_events += 1;
            }
        }
    }

    /// Repair work finished: `bytes` moved in `busy_ms`.
    pub(crate) fn repaired(&mut self, bytes: u64, busy_ms: u64) {
        self.repair_bytes += bytes;
        self.repair_busy_ms += busy_ms;
    }

    /// The report `AdminFailureHistory` answers, read at `now`.
    pub(crate) fn report(
        &self,
        node: NodeId,
        watched_ms: u64,
        now: u64,
        storage_bytes: u64,
        sweep_ms: Option<u64>,
    ) -> NodeFailureHistory {
        let peers = self
            .peers
            .iter()
            .map(|(&peer, o)| PeerOutages {
                node: peer,
                watched_ms: now.saturating_sub(o.first_up_ms),
                down_events: o.down_events,
                down_ms: o.down_ms + o.down_since.map_or(0, |s| now.saturating_sub(s)),
            })
            .collect();
        NodeFailureHistory {
            node,
            watched_ms,
            peers,
            storage_bytes,
            repair_bytes: self.repair_bytes,
            repair_busy_ms: self.repair_busy_ms,
            sweep_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_count_from_the_first_time_up_and_include_the_current_one() {
        let mut history = FailureHistory::default();
        let peer = NodeId(7);
        history.peer_down(peer, 100);
        history.peer_up(peer, 1_000);
        history.peer_down(peer, 5_000);
        history.peer_down(peer, 5_500);
        history.peer_up(peer, 6_000);
        history.peer_down(peer, 9_000);
        history.repaired(4_096, 20);
        let report = history.report(NodeId(1), 10_000, 10_000, 1 << 20, Some(3_000));
        let outages = report.peers[0];
        assert_eq!(
            (outages.watched_ms, outages.down_events, outages.down_ms),
            (9_000, 2, 1_000 + 1_000)
        );
        assert_eq!((report.repair_bytes, report.repair_busy_ms), (4_096, 20));
    }
}
