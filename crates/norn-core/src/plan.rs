//! Planning ring changes (pure): from the current ring and the staged
//! changes, the next ring, and what it would move.

use std::collections::{BTreeMap, BTreeSet};

use norn_membership::{ChangeKind, Member, StagedChange};
use norn_proto::{PlanNode, PlanView};
use norn_ring::{NodeId, Ring, RingMember};

use crate::error::CoreError;

/// The ring a commit of `staged` would produce. Leaves and removes apply
/// first, then joins, each in node-id order, so every node proposes the same
/// ring from the same inputs.
pub fn propose(
    current: Option<&Ring>,
    staged: &[StagedChange],
    members: &BTreeMap<NodeId, Member>,
    partition_bits: u8,
) -> Result<Ring, CoreError> {
    next_ring(current, staged, members, partition_bits)
        .map_err(|reason| CoreError::PlanRefused { reason })
}

fn next_ring(
    current: Option<&Ring>,
    staged: &[StagedChange],
    members: &BTreeMap<NodeId, Member>,
    partition_bits: u8,
) -> Result<Ring, String> {
    let pending: Vec<&StagedChange> = staged
        .iter()
        .filter(|c| current.is_none_or(|r| !c.is_reflected_in(r)))
        .collect();
    if pending.is_empty() {
        return Err("nothing is staged: stage a change with `norn admin join`, `plan leave` or `plan remove`".into());
    }
    let ring_member = |node: NodeId| {
        members
            .get(&node)
            .map(|m| RingMember {
                zone: m.zone.clone(),
                weight: m.weight,
            })
            .ok_or_else(|| {
                format!("node {node} is staged but not known to this node's membership yet")
            })
    };
    let mut departures: Vec<NodeId> = pending
        .iter()
        .filter(|c| c.kind != ChangeKind::Join)
        .map(|c| c.node)
        .collect();
    let mut joins: Vec<NodeId> = pending
        .iter()
        .filter(|c| c.kind == ChangeKind::Join)
        .map(|c| c.node)
        .collect();
    departures.sort_unstable();
    joins.sort_unstable();
    let mut ring = match current {
        Some(ring) => ring.clone(),
        None => {
            let first = joins
                .first()
                .copied()
                .ok_or("there is no ring yet: stage joins first")?;
            let ring = Ring::new(partition_bits, [(first, ring_member(first)?)])
                .map_err(|e| e.to_string())?;
            joins.remove(0);
            ring
        }
    };
    let base_version = current.map_or(0, Ring::version);
    for node in departures {
        ring = ring.without_member(node).map_err(|e| e.to_string())?;
    }
    for node in joins {
        ring = ring
            .with_member(node, ring_member(node)?)
            .map_err(|e| e.to_string())?;
    }
    Ok(ring.with_version(base_version + 1))
}

/// What committing `staged` would do, per node, with the zone-diversity
/// violations of the proposed ring for `n` replicas.
pub fn view(
    current: Option<&Ring>,
    staged: &[StagedChange],
    members: &BTreeMap<NodeId, Member>,
    partition_bits: u8,
    n: u8,
) -> PlanView {
    let mut plan = PlanView {
        current_version: current.map_or(0, Ring::version),
        staged: staged.to_vec(),
        nodes: Vec::new(),
        n,
        zone_violations: 0,
        refusal: None,
    };
    let proposed = match propose(current, staged, members, partition_bits) {
        Ok(ring) => ring,
        Err(reason) => {
            plan.refusal = Some(reason.to_string());
            if let Some(ring) = current {
                plan.nodes = per_node(Some(ring), ring, members);
                plan.zone_violations = ring.zone_violations(usize::from(n)) as u32;
            }
            return plan;
        }
    };
    plan.nodes = per_node(current, &proposed, members);
    plan.zone_violations = proposed.zone_violations(usize::from(n)) as u32;
    plan
}

fn per_node(
    current: Option<&Ring>,
    proposed: &Ring,
    members: &BTreeMap<NodeId, Member>,
) -> Vec<PlanNode> {
    let owners_now: &[NodeId] = current.map_or(&[], |r| r.owners());
    let nodes: BTreeSet<NodeId> = owners_now
        .iter()
        .chain(proposed.owners())
        .copied()
        .chain(proposed.members().keys().copied())
        .collect();
    nodes
        .into_iter()
        .map(|id| {
            let owned = |owners: &[NodeId]| owners.iter().filter(|o| **o == id).count() as u32;
            let (mut gained, mut lost) = (0, 0);
            for (p, after) in proposed.owners().iter().enumerate() {
                let before = owners_now.get(p);
                if *after == id && before != Some(&id) {
                    gained += 1;
                }
                if before == Some(&id) && *after != id {
                    lost += 1;
                }
            }
            PlanNode {
                id,
                name: members
                    .get(&id)
                    .map_or_else(|| id.to_string(), |m| m.name.clone()),
                owned_now: owned(owners_now),
                owned_after: owned(proposed.owners()),
                gained,
                lost,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use norn_membership::MemberState;

    use super::*;

    fn member(i: u64) -> Member {
        Member {
            id: NodeId(i),
            name: format!("n{i}"),
            address: format!("127.0.0.1:{}", 7000 + i),
            zone: format!("z{i}"),
            weight: 1,
            state: MemberState::Active,
            incarnation: 1,
            heartbeat: 1,
            handoffs: Vec::new(),
            proof: None,
        }
    }

    fn change(node: u64, kind: ChangeKind) -> StagedChange {
        StagedChange {
            node: NodeId(node),
            kind,
            base_version: 0,
            stamp: node,
            staged_by: NodeId(1),
        }
    }

    #[test]
    fn first_commit_creates_version_1_and_a_join_moves_only_to_the_joiner() {
        let members: BTreeMap<NodeId, Member> = (1..=4).map(|i| (NodeId(i), member(i))).collect();
        let staged: Vec<_> = (1..=3).map(|i| change(i, ChangeKind::Join)).collect();
        let first = propose(None, &staged, &members, 6).expect("first ring");
        assert_eq!(first.version(), 1);
        assert_eq!(first.members().len(), 3);
        let plan = view(Some(&first), &[change(4, ChangeKind::Join)], &members, 6, 3);
        assert_eq!(plan.refusal, None);
        let joiner = plan
            .nodes
            .iter()
            .find(|n| n.id == NodeId(4))
            .expect("joiner planned");
        assert_eq!(joiner.owned_now, 0);
        assert_eq!(joiner.owned_after, 16);
        assert_eq!(joiner.gained, 16);
        assert!(plan
            .nodes
            .iter()
            .filter(|n| n.id != NodeId(4))
            .all(|n| n.gained == 0));
        let next =
            propose(Some(&first), &[change(4, ChangeKind::Join)], &members, 6).expect("next");
        assert_eq!(next.version(), 2);
    }

    #[test]
    fn nothing_staged_is_refused() {
        let members: BTreeMap<NodeId, Member> = (1..=3).map(|i| (NodeId(i), member(i))).collect();
        let ring = propose(None, &[change(1, ChangeKind::Join)], &members, 4).expect("ring");
        let plan = view(Some(&ring), &[change(1, ChangeKind::Join)], &members, 4, 3);
        assert!(plan.refusal.expect("refused").contains("nothing is staged"));
    }

    #[test]
    fn zone_violations_count_partitions_without_spread() {
        let mut members: BTreeMap<NodeId, Member> =
            (1..=3).map(|i| (NodeId(i), member(i))).collect();
        let staged: Vec<_> = (1..=3).map(|i| change(i, ChangeKind::Join)).collect();
        let spread = propose(None, &staged, &members, 6).expect("ring");
        assert_eq!(spread.zone_violations(3), 0);
        for m in members.values_mut() {
            m.zone = "same".into();
        }
        let flat = propose(None, &staged, &members, 6).expect("ring");
        assert_eq!(flat.zone_violations(3), 0, "one zone: min(N, zones) is 1");
    }
}
