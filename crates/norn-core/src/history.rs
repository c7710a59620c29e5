//! What a node has seen of failures and repairs since it started, the
//! measured inputs of `norn admin model`: each peer's outages as the
//! failure detector saw them (from the peer's first time seen up), and
//! the bytes and time of the work that re-creates replicas (ownership
//! transfers, and anti-entropy verifications that repaired keys). A peer
//! is watched only while it is a member of the ring: one that left (a
//! scale-down) is not down ever after.

use std::collections::BTreeMap;

use norn_proto::{NodeFailureHistory, PeerOutages};
use norn_ring::{NodeId, Ring};

/// One peer's outages as this node saw them.
#[derive(Debug, Clone, Copy)]
struct Outages {
    first_up_ms: u64,
    down_since: Option<u64>,
    down_events: u64,
    down_ms: u64,
    /// When a ring without the peer was adopted, if one was since it was
    /// last in one: its watch stopped there.
    left_ms: Option<u64>,
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
            left_ms: None,
        });
        if let Some(since) = outages.down_since.take() {
            outages.down_ms += now.saturating_sub(since);
        }
    }

    /// The failure detector sees `peer` down at `now`; a peer never seen
    /// up, or out of the ring, is not watched.
    pub(crate) fn peer_down(&mut self, peer: NodeId, now: u64) {
        if let Some(outages) = self.peers.get_mut(&peer) {
            if outages.down_since.is_none() && outages.left_ms.is_none() {
                outages.down_since = Some(now);
                outages.down_events += 1;
            }
        }
    }

    /// This node adopted `ring` at `now`: the watch of a peer it leaves
    /// out stops (an outage in progress ends there), and that of a peer
    /// back in it goes on, the time away not counted.
    pub(crate) fn ring_adopted(&mut self, ring: &Ring, now: u64) {
        for (peer, outages) in &mut self.peers {
            let member = ring.members().contains_key(peer);
            match (member, outages.left_ms) {
                (false, None) => {
                    if let Some(since) = outages.down_since.take() {
                        outages.down_ms += now.saturating_sub(since);
                    }
                    outages.left_ms = Some(now);
                }
                (true, Some(left)) => {
                    outages.first_up_ms += now.saturating_sub(left);
                    outages.left_ms = None;
                }
                _ => {}
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
            .map(|(&peer, o)| {
                let end = o.left_ms.unwrap_or(now);
                PeerOutages {
                    node: peer,
                    watched_ms: end.saturating_sub(o.first_up_ms),
                    down_events: o.down_events,
                    down_ms: o.down_ms + o.down_since.map_or(0, |s| end.saturating_sub(s)),
                }
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

    #[test]
    fn a_peer_out_of_the_ring_is_not_watched() {
        let member = norn_ring::RingMember {
            zone: "z".into(),
            weight: 1,
        };
        let with = |ids: &[u64]| {
            Ring::new(4, ids.iter().map(|id| (NodeId(*id), member.clone()))).expect("ring")
        };
        let mut history = FailureHistory::default();
        let peer = NodeId(7);
        history.peer_up(peer, 0);
        history.peer_down(peer, 4_000);
        history.ring_adopted(&with(&[1]), 5_000);
        history.peer_down(peer, 6_000);
        let left = history.report(NodeId(1), 50_000, 50_000, 0, None).peers[0];
        assert_eq!(
            (left.watched_ms, left.down_events, left.down_ms),
            (5_000, 1, 1_000)
        );
        history.ring_adopted(&with(&[1, 7]), 60_000);
        history.peer_up(peer, 60_000);
        let back = history.report(NodeId(1), 70_000, 70_000, 0, None).peers[0];
        assert_eq!(
            (back.watched_ms, back.down_events, back.down_ms),
            (15_000, 1, 1_000)
        );
    }
}
