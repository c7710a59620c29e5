//! A node's readiness, and what a ring change waits for on it: the answer
//! to `AdminStatus`, `/health/ready`, `norn admin leave --wait` and the
//! autopilot.

use norn_membership::ChangeKind;
use norn_proto::NodeStatus;

use crate::node::NodeState;
use crate::transfer::{pending_transfers, Transfers};

/// This node's status at `node.now`.
pub(crate) fn status(node: &NodeState, transfers: &Transfers) -> NodeStatus {
    let ring = node.ring();
    let ring_version = ring.as_ref().map_or(0, |r| r.version());
    let newest_ring_seen = node.membership.newest_ring_heard();
    let (ring_members, ring_members_up) = ring.as_ref().map_or((0, 0), |r| {
        let members = r.members();
        let up = members.keys().filter(|id| node.is_up(**id)).count();
        (members.len() as u32, up as u32)
    });
    let handoffs_pending = ring
        .as_ref()
        .map_or(0, |r| pending_transfers(node, r).len() as u32);
    let hints_pending = node.storage.hint_queues().values().map(|q| q.hints).sum();
    let transfers_failed = transfers.failed_count();
    let mut not_ready = Vec::new();
    if ring.is_none() {
        not_ready.push("holds no ring yet".to_string());
    } else if newest_ring_seen > ring_version {
        not_ready.push(format!(
            "holds ring {ring_version}, and a member holds {newest_ring_seen}"
        ));
    }
    let quorum = ring_members / 2 + 1;
    if ring.is_some() && ring_members_up < quorum {
        not_ready.push(format!(
            "sees {ring_members_up} of the ring's {ring_members} members up, fewer than a quorum ({quorum})"
        ));
    }
    if transfers_failed > 0 {
        not_ready.push(format!(
            "{transfers_failed} ownership transfers failed on this node's storage (see its log)"
        ));
    }
    NodeStatus {
        node: node.id,
        name: node.membership.me().name.clone(),
        ring_version,
        newest_ring_seen,
        in_ring: ring
            .as_ref()
            .is_some_and(|r| r.members().contains_key(&node.id)),
        departed: ring
            .as_ref()
            .is_some_and(|r| r.departed().contains(&node.id)),
        change_staged: node.membership.is_staged(node.id),
        ring_members,
        ring_members_up,
        handoffs_pending,
        hints_pending,
        transfers_failed,
        not_ready,
    }
}

/// Gossip rounds a node without a ring waits before it stages its own join:
/// time to pull the ring of a cluster that exists (it may list the node as
/// departed), so that only a node of a cluster with no ring yet joins
/// without knowing one.
const NO_RING_JOIN_DELAY_ROUNDS: u64 = 10;

/// With `cluster.auto_join`, stages this node's join when it is new to the
/// cluster: in no ring it holds, and not departed from one (a node that
/// left stays out until an admin joins it again), and no change of it is
/// staged. Only the staging is automatic: committing it takes an admin's
/// signature.
pub(crate) fn stage_own_join_if_new(node: &mut NodeState) {
    if !node.config.cluster.auto_join || node.membership.is_staged(node.id) {
        return;
    }
    match node.ring() {
        Some(ring) => {
            if ring.members().contains_key(&node.id) || ring.departed().contains(&node.id) {
                return;
            }
        }
        None => {
            let delay = NO_RING_JOIN_DELAY_ROUNDS * node.config.membership.gossip_interval_ms;
            if node.uptime_ms() < delay {
                return;
            }
        }
    }
    let change = node.membership.stage(node.id, ChangeKind::Join);
    tracing::info!(
        base_version = change.base_version,
        "auto_join: staged this node's join"
    );
}
