//! Weighted claim: who owns each partition.
//!
//! Contract, for `Q` partitions and members of total weight `W`:
//! - balance: a member of weight `w` owns `floor(Q*w/W)` or `ceil(Q*w/W)`
//!   partitions;
//! - minimal movement: when a member joins, partitions move only to it; when a
//!   member leaves, only its partitions move.
//!
//! [`rebalance`] chooses per-member targets within the balance bounds that
//! stay as close to the current counts as the bounds allow, then moves only
//! the surplus of members above their target to members below it.
//!
//! Balance is the hard constraint. With unequal weights it can conflict
//! with minimal movement, both ways. On a leave, the remaining members'
//! floors may rise by more, in sum, than the leaver held; on a join, the
//! others may hold more above their lowered ceilings than the newcomer's
//! ceiling can take (members at the ceiling of shares just above an
//! integer). No balanced assignment then moves only to the newcomer, or only
//! the leaver's partitions, and [`rebalance`] moves the fewest others that
//! balance allows, from members that shrink to members that grow. With equal
//! weights this never happens. The property tests check both the exact
//! overflow and the direction of every move.

use std::collections::BTreeMap;

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::ring::NodeId;

/// Seed of the hash that orders a donor's partitions when it gives some away;
/// part of the placement contract, like the placement hash.
const RELEASE_ORDER_SEED: u64 = 0x6e6f_726e_636c_6169;

/// Balance bounds of one member: `floor(Q*w/W)..=ceil(Q*w/W)`, and the
/// remainder `(Q*w) mod W` that orders ties (a larger remainder is closer to
/// its ceiling).
#[derive(Debug, Clone, Copy)]
struct Share {
    floor: usize,
    ceil: usize,
    remainder: u64,
}

fn shares(partitions: usize, weights: &BTreeMap<NodeId, u32>) -> BTreeMap<NodeId, Share> {
    let total: u64 = weights.values().map(|&w| u64::from(w)).sum();
    weights
        .iter()
        .map(|(&node, &weight)| {
            let scaled = partitions as u64 * u64::from(weight);
            let floor = (scaled / total) as usize;
            let remainder = scaled % total;
            let ceil = floor + usize::from(remainder > 0);
            (
                node,
                Share {
                    floor,
                    ceil,
                    remainder,
                },
            )
        })
        .collect()
}

/// Reassigns `owners` (one entry per partition) so that exactly the members
/// of `weights` own partitions, each within its balance bounds, moving as few
/// partitions as the bounds allow.
///
/// Partitions owned by nodes that are not in `weights` (a member that left)
/// are always reassigned. `joining`, the member being added if any, is
/// preferred as receiver over members that happen to own nothing. `weights`
/// must not be empty and no weight may be 0.
pub fn rebalance(owners: &mut [NodeId], weights: &BTreeMap<NodeId, u32>, joining: Option<NodeId>) {
    assert!(!weights.is_empty(), "a ring needs at least one member");
    debug_assert!(weights.values().all(|&w| w > 0));
    let shares = shares(owners.len(), weights);
    let mut counts: BTreeMap<NodeId, usize> = weights.keys().map(|&n| (n, 0)).collect();
    for owner in owners.iter() {
        if let Some(count) = counts.get_mut(owner) {
            *count += 1;
        }
    }
    let targets = targets(owners.len(), &shares, &counts, joining);
    let pool = release_surplus(owners, &counts, &targets);
    assign_pool(owners, pool, &counts, &targets);
}

/// Per-member targets: the current count clamped to the balance bounds, then
/// adjusted one partition at a time until they sum to `Q`.
///
/// An increment goes first to a member clamped below its count (it then
/// gives away one partition fewer), then to the joining member, then to a
/// member already receiving, so that existing members do not trade
/// partitions among themselves. Decrements mirror this. Remainders break
/// ties, then node ids (the last member in order wins a tie).
fn targets(
    partitions: usize,
    shares: &BTreeMap<NodeId, Share>,
    counts: &BTreeMap<NodeId, usize>,
    joining: Option<NodeId>,
) -> BTreeMap<NodeId, usize> {
    let mut targets: BTreeMap<NodeId, usize> = shares
        .iter()
        .map(|(node, share)| (*node, counts[node].clamp(share.floor, share.ceil)))
        .collect();
    let mut sum: usize = targets.values().sum();
    while sum < partitions {
        let node = shares
            .iter()
            .filter(|(node, share)| targets[*node] < share.ceil)
            .max_by_key(|(node, share)| {
                let (target, count) = (targets[*node], counts[*node]);
                (
                    target < count,
                    Some(**node) == joining,
                    target > count,
                    share.remainder,
                )
            })
            .map(|(node, _)| *node)
            .expect("the ceilings sum to at least Q");
        *targets.get_mut(&node).expect("node has a target") += 1;
        sum += 1;
    }
    while sum > partitions {
        let node = shares
            .iter()
            .filter(|(node, share)| targets[*node] > share.floor)
            .max_by_key(|(node, share)| {
                let (target, count) = (targets[*node], counts[*node]);
                (target > count, target < count, u64::MAX - share.remainder)
            })
            .map(|(node, _)| *node)
            .expect("the floors sum to at most Q");
        *targets.get_mut(&node).expect("node has a target") -= 1;
        sum -= 1;
    }
    targets
}

/// Takes away the partitions of departed owners and the surplus of members
/// above their target, returning the freed partitions in ring order.
fn release_surplus(
    owners: &[NodeId],
    counts: &BTreeMap<NodeId, usize>,
    targets: &BTreeMap<NodeId, usize>,
) -> Vec<usize> {
    let mut pool: Vec<usize> = (0..owners.len())
        .filter(|&p| !targets.contains_key(&owners[p]))
        .collect();
    for (node, &target) in targets {
        let surplus = counts[node].saturating_sub(target);
        if surplus == 0 {
            continue;
        }
        let mut owned: Vec<usize> = (0..owners.len()).filter(|&p| owners[p] == *node).collect();
        owned.sort_by_key(|&p| release_order(*node, p));
        pool.extend(owned.into_iter().take(surplus));
    }
    pool.sort_unstable();
    pool
}

/// Pseudo-random but fixed order in which a member gives partitions away, so
/// that what a newcomer receives is spread around the ring.
fn release_order(node: NodeId, partition: usize) -> u64 {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&node.0.to_be_bytes());
    bytes[8..].copy_from_slice(&(partition as u64).to_be_bytes());
    xxh3_64_with_seed(&bytes, RELEASE_ORDER_SEED)
}

/// Gives each freed partition to a member below its target: the one with the
/// most still to receive, preferring one that differs from the partition's
/// ring neighbours so that preference lists stay diverse.
fn assign_pool(
    owners: &mut [NodeId],
    pool: Vec<usize>,
    counts: &BTreeMap<NodeId, usize>,
    targets: &BTreeMap<NodeId, usize>,
) {
    let mut wanting: BTreeMap<NodeId, usize> = targets
        .iter()
        .filter_map(|(node, &target)| {
            let deficit = target.saturating_sub(counts[node]);
            (deficit > 0).then_some((*node, deficit))
        })
        .collect();
    let len = owners.len();
    for partition in pool {
        let before = owners[(partition + len - 1) % len];
        let after = owners[(partition + 1) % len];
        let receiver = wanting
            .iter()
            .max_by_key(|(node, &deficit)| (**node != before && **node != after, deficit))
            .map(|(node, _)| *node)
            .expect("the pool size equals the total deficit");
        owners[partition] = receiver;
        let deficit = wanting.get_mut(&receiver).expect("receiver is wanting");
        *deficit -= 1;
        if *deficit == 0 {
            wanting.remove(&receiver);
        }
    }
    debug_assert!(wanting.is_empty(), "every target is met");
}
