//! Property tests of the ring's contracts (DESIGN.md, "Data model and
//! placement"): balance, minimal movement, preference lists, zone diversity,
//! serialization. Names cite the Dynamo paper where the idea comes from it.

use std::collections::{BTreeMap, BTreeSet};

use norn_ring::{NodeId, Partition, Ring, RingMember};
use proptest::prelude::*;

/// Up to 64 members in up to 8 zones with weights 1..=16.
fn members() -> impl Strategy<Value = Vec<(NodeId, RingMember)>> {
    (1usize..=8).prop_flat_map(|zones| {
        prop::collection::vec((0..zones, 1u32..=16), 1..=64).prop_map(|specs| {
            specs
                .into_iter()
                .enumerate()
                .map(|(i, (zone, weight))| {
                    let member = RingMember {
                        zone: format!("z{zone}"),
                        weight,
                    };
                    (NodeId(1000 + i as u64 * 7919), member)
                })
                .collect()
        })
    })
}

fn counts(ring: &Ring) -> BTreeMap<NodeId, usize> {
    let mut counts: BTreeMap<NodeId, usize> = ring.members().keys().map(|&n| (n, 0)).collect();
    for owner in ring.owners() {
        *counts.get_mut(owner).expect("owners are members") += 1;
    }
    counts
}

fn assert_balanced(ring: &Ring) -> Result<(), TestCaseError> {
    let total: u64 = ring.members().values().map(|m| u64::from(m.weight)).sum();
    let q = ring.partition_count() as u64;
    for (node, count) in counts(ring) {
        let scaled = q * u64::from(ring.members()[&node].weight);
        let floor = scaled / total;
        let ceil = floor + u64::from(!scaled.is_multiple_of(total));
        prop_assert!(
            (floor..=ceil).contains(&(count as u64)),
            "node {node} owns {count}, bounds {floor}..={ceil}"
        );
    }
    Ok(())
}

/// How many partitions members that stay must give up after a leave for
/// the ring to be balanced: `sum(max(count, new floor)) - Q`, or 0.
fn unavoidable_overflow(after: &Ring, counts_before: &BTreeMap<NodeId, usize>) -> usize {
    let total: u64 = after.members().values().map(|m| u64::from(m.weight)).sum();
    let q = after.partition_count();
    let least: usize = after
        .members()
        .iter()
        .map(|(node, member)| {
            let floor = (q as u64 * u64::from(member.weight) / total) as usize;
            counts_before[node].max(floor)
        })
        .sum();
    least.saturating_sub(q)
}

/// How many partitions must go to members other than `newcomer` after a
/// join for the ring to be balanced: what the others hold above their new
/// ceilings, less what the newcomer's ceiling takes, or 0.
fn join_overflow(after: &Ring, newcomer: NodeId, counts_before: &BTreeMap<NodeId, usize>) -> usize {
    let total: u64 = after.members().values().map(|m| u64::from(m.weight)).sum();
    let q = after.partition_count() as u64;
    let ceil = |weight: u32| {
        let scaled = q * u64::from(weight);
        (scaled / total + u64::from(!scaled.is_multiple_of(total))) as usize
    };
    let excess: usize = after
        .members()
        .iter()
        .filter(|(node, _)| **node != newcomer)
        .map(|(node, member)| counts_before[node].saturating_sub(ceil(member.weight)))
        .sum();
    excess.saturating_sub(ceil(after.members()[&newcomer].weight))
}

/// With equal weights a join moves partitions only to the newcomer.
#[test]
fn equal_weight_join_moves_only_to_the_newcomer() {
    for nodes in 1..=40u64 {
        for bits in [4u8, 6, 8] {
            let members = (0..nodes).map(|i| {
                (
                    NodeId(100 + i),
                    RingMember {
                        zone: "z".into(),
                        weight: 4,
                    },
                )
            });
            let before = Ring::new(bits, members).expect("valid ring");
            let after = before
                .with_member(
                    NodeId(7),
                    RingMember {
                        zone: "z".into(),
                        weight: 4,
                    },
                )
                .expect("join");
            for (p, _, to) in moved(&before, &after) {
                assert_eq!(to, NodeId(7), "{nodes} nodes, {bits} bits: partition {p}");
            }
        }
    }
}

/// With equal weights a leave never needs more than the leaver's partitions.
#[test]
fn equal_weight_leave_moves_only_the_leavers_partitions() {
    for nodes in 2..=40u64 {
        for bits in [4u8, 6, 8] {
            let members = (0..nodes).map(|i| {
                (
                    NodeId(i),
                    RingMember {
                        zone: "z".into(),
                        weight: 4,
                    },
                )
            });
            let before = Ring::new(bits, members).expect("valid ring");
            let after = before.without_member(NodeId(nodes / 2)).expect("leave");
            assert_eq!(unavoidable_overflow(&after, &counts(&before)), 0);
            for (p, from, _) in moved(&before, &after) {
                assert_eq!(
                    from,
                    NodeId(nodes / 2),
                    "{nodes} nodes, {bits} bits: partition {p}"
                );
            }
        }
    }
}

fn moved(before: &Ring, after: &Ring) -> Vec<(usize, NodeId, NodeId)> {
    before
        .owners()
        .iter()
        .zip(after.owners())
        .enumerate()
        .filter(|(_, (b, a))| b != a)
        .map(|(p, (b, a))| (p, *b, *a))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Dynamo §4.2 (strategy 3): equal-sized partitions, balanced by weight.
    #[test]
    fn claim_is_balanced_by_weight(members in members(), bits in 4u8..=10) {
        let ring = Ring::new(bits, members).expect("valid ring");
        assert_balanced(&ring)?;
    }

    /// Dynamo §4.2: a joining node takes partitions only from others, and the
    /// ring stays balanced. Partitions go to other members only when balance
    /// forces it (see `claim`): exactly the overflow the newcomer's ceiling
    /// cannot take, and only from members that shrink to members that grow.
    #[test]
    fn join_moves_partitions_only_to_the_new_node(
        members in members(), bits in 4u8..=10, zone in 0u8..8, weight in 1u32..=16,
    ) {
        let before = Ring::new(bits, members).expect("valid ring");
        let newcomer = NodeId(7);
        let after = before
            .with_member(newcomer, RingMember { zone: format!("z{zone}"), weight })
            .expect("join");
        prop_assert_eq!(after.version(), before.version() + 1);
        assert_balanced(&after)?;
        let (counts_before, counts_after) = (counts(&before), counts(&after));
        let forced = join_overflow(&after, newcomer, &counts_before);
        let to_others = moved(&before, &after).iter().filter(|(_, _, to)| *to != newcomer).count();
        prop_assert_eq!(to_others, forced, "partitions given to members other than the newcomer");
        for (partition, from, to) in moved(&before, &after) {
            prop_assert!(counts_after[&from] < counts_before[&from], "partition {} left {}, which did not shrink", partition, from);
            let grew = counts_after[&to] > counts_before.get(&to).copied().unwrap_or(0);
            prop_assert!(grew, "partition {} went to {}, which did not grow", partition, to);
        }
    }

    /// Dynamo §4.2: a leaving node's partitions are spread over the others.
    /// Nothing else moves unless balance forces it (see `claim`), and then
    /// only the unavoidable overflow moves, from members that keep their
    /// balance bounds, never to a member that is giving partitions away.
    #[test]
    fn leave_moves_only_the_leavers_partitions(
        members in members(), bits in 4u8..=10, pick in any::<prop::sample::Index>(),
    ) {
        prop_assume!(members.len() >= 2);
        let before = Ring::new(bits, members.clone()).expect("valid ring");
        let leaver = members[pick.index(members.len())].0;
        let after = before.without_member(leaver).expect("leave");
        assert_balanced(&after)?;
        prop_assert!(!after.members().contains_key(&leaver));
        let (counts_before, counts_after) = (counts(&before), counts(&after));
        let forced = unavoidable_overflow(&after, &counts_before);
        let from_others = moved(&before, &after).iter().filter(|(_, from, _)| *from != leaver).count();
        prop_assert_eq!(from_others, forced, "partitions taken from members that stay");
        for (partition, from, to) in moved(&before, &after) {
            prop_assert!(counts_after[&to] > counts_before[&to],
                "partition {} moved {} -> {}, a member that did not grow", partition, from, to);
        }
    }

    /// Dynamo §4.3: the preference list holds distinct nodes; its first N are
    /// primaries, taken from unused zones first; when the ring has at least N
    /// zones among its owners, the primaries span N zones.
    #[test]
    fn preference_lists_are_distinct_and_zone_diverse(
        members in members(), bits in 4u8..=8, n in 1usize..=5,
    ) {
        let ring = Ring::new(bits, members).expect("valid ring");
        let owners: BTreeSet<NodeId> = ring.owners().iter().copied().collect();
        let owner_zones: BTreeSet<&String> =
            owners.iter().map(|o| &ring.members()[o].zone).collect();
        for p in 0..ring.partition_count() {
            let partition = Partition(p as u16);
            let list = ring.preference_list(partition, n);
            let all: BTreeSet<NodeId> = list.all().iter().copied().collect();
            prop_assert_eq!(all.len(), list.all().len(), "duplicates in {:?}", list);
            if owners.len() <= norn_ring::PREFERENCE_LIST_MAX {
                prop_assert_eq!(&all, &owners, "every owner appears once");
            } else {
                prop_assert!(all.is_subset(&owners));
                prop_assert!(all.len() >= norn_ring::PREFERENCE_LIST_MAX);
                prop_assert!(all.len() <= 2 * norn_ring::PREFERENCE_LIST_MAX);
            }
            prop_assert_eq!(list.primaries().len(), n.min(owners.len()));
            prop_assert_eq!(list.primaries()[0], ring.owner(partition), "the owner leads");
            let zones: BTreeSet<&String> =
                list.primaries().iter().map(|o| &ring.members()[o].zone).collect();
            prop_assert_eq!(zones.len(), n.min(owner_zones.len()).min(list.primaries().len()),
                "primaries {:?} of partition {}", list.primaries(), p);
        }
    }

    /// Rings survive encoding, and a decoded ring is the same ring.
    #[test]
    fn ring_round_trips_through_serde(members in members(), bits in 4u8..=8) {
        let ring = Ring::new(bits, members).expect("valid ring");
        let json = serde_json::to_string(&ring).expect("encode");
        let decoded: Ring = serde_json::from_str(&json).expect("decode");
        prop_assert_eq!(decoded.fingerprint(), ring.fingerprint());
        prop_assert_eq!(decoded, ring);
    }
}

#[test]
fn largest_ring_is_balanced() {
    let members = (0..5).map(|i| {
        (
            NodeId(i),
            RingMember {
                zone: format!("z{}", i % 3),
                weight: 1 + i as u32,
            },
        )
    });
    let ring = Ring::new(16, members).expect("valid ring");
    assert_eq!(ring.partition_count(), 65_536);
    assert_balanced(&ring).expect("balanced");
}

#[test]
fn malformed_rings_are_refused_on_decode() {
    let ring = Ring::new(
        4,
        [(
            NodeId(1),
            RingMember {
                zone: "a".into(),
                weight: 1,
            },
        )],
    )
    .expect("valid ring");
    let json = serde_json::to_string(&ring).expect("encode");
    let short = json.replace("[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]", "[1,1,1]");
    assert_ne!(short, json, "the test edits the owners list");
    assert!(serde_json::from_str::<Ring>(&short).is_err());
    let stranger = json.replace(
        "[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]",
        "[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,2]",
    );
    assert!(serde_json::from_str::<Ring>(&stranger).is_err());
}

#[test]
fn concurrent_commits_resolve_the_same_way_everywhere() {
    let base = Ring::new(
        6,
        [(
            NodeId(1),
            RingMember {
                zone: "a".into(),
                weight: 1,
            },
        )],
    )
    .expect("valid ring");
    let left = base
        .with_member(
            NodeId(2),
            RingMember {
                zone: "b".into(),
                weight: 1,
            },
        )
        .expect("join");
    let right = base
        .with_member(
            NodeId(3),
            RingMember {
                zone: "c".into(),
                weight: 1,
            },
        )
        .expect("join");
    assert_eq!(left.version(), right.version());
    assert_ne!(left.supersedes(&right), right.supersedes(&left));
    assert!(!left.supersedes(&left));
    assert!(left.supersedes(&base));
}

/// A ring as JSON with `members` members (`zone` z<i % zones>) owning
/// `2^partition_bits` partitions round-robin, built without `Ring::new`'s
/// checks.
fn json_ring(members: usize, zones: usize, partition_bits: u8) -> serde_json::Value {
    let listed: serde_json::Map<String, serde_json::Value> = (0..members)
        .map(|i| {
            let member = serde_json::json!({ "zone": format!("z{}", i % zones), "weight": 1 });
            (i.to_string(), member)
        })
        .collect();
    let owners: Vec<usize> = (0..1usize << partition_bits).map(|p| p % members).collect();
    serde_json::json!({
        "version": 1,
        "partition_bits": partition_bits,
        "members": listed,
        "owners": owners,
        "departed": [],
        "revoked": [],
        "proof": null,
    })
}

/// A decoded ring's size is bounded before its preference lists are built:
/// members by `MEMBERS_MAX`, each list by twice `PREFERENCE_LIST_MAX`
/// (unbounded, 65,536 partitions of 1,024 distinct owners would ask for
/// 512 MiB).
#[test]
fn a_decoded_ring_is_bounded_in_members_and_preference_list_length() {
    let too_many = serde_json::from_value::<Ring>(json_ring(norn_ring::MEMBERS_MAX + 1, 1, 4));
    assert!(too_many.is_err(), "{too_many:?}");
    let ring: Ring = serde_json::from_value(json_ring(
        norn_ring::MEMBERS_MAX,
        norn_ring::MEMBERS_MAX,
        16,
    ))
    .expect("ring");
    let list = ring.preference_list(Partition(7), 3);
    assert_eq!(list.primaries().len(), 3);
    assert_eq!(list.all().len(), 2 * norn_ring::PREFERENCE_LIST_MAX);
}

/// A ring remembers the members its history dropped (peers still admit
/// them while they hand their data over), and forgets one that rejoins.
#[test]
fn a_ring_carries_the_nodes_its_history_dropped() {
    let member = |zone: &str| RingMember {
        zone: zone.into(),
        weight: 1,
    };
    let ring = Ring::new(4, [(NodeId(1), member("a")), (NodeId(2), member("b"))]).expect("ring");
    let left = ring.without_member(NodeId(2)).expect("leave");
    assert!(left.departed().contains(&NodeId(2)));
    let back = left.with_member(NodeId(2), member("b")).expect("rejoin");
    assert!(back.departed().is_empty());
    let decoded: Ring =
        serde_json::from_str(&serde_json::to_string(&left).expect("json")).expect("decodes");
    assert_eq!(decoded.departed(), left.departed());
}

/// What an admin signs is the whole ring but its proof: a proof changes
/// neither the fingerprint nor which ring supersedes which, and revoking a
/// certificate makes a different ring. A decoded ring bounds its revoked
/// list and its proof.
#[test]
fn a_ring_signature_covers_everything_but_itself() {
    let member = RingMember {
        zone: "a".into(),
        weight: 1,
    };
    let ring = Ring::new(4, [(NodeId(1), member)]).expect("ring");
    let proof = norn_ring::RingProof {
        signer: vec![1; 100],
        signed_at: 7,
        signature: vec![2; 70],
    };
    let signed = ring.with_proof(proof.clone());
    assert_eq!(signed.fingerprint(), ring.fingerprint());
    assert_eq!(signed.signed_content(), ring.signed_content());
    assert!(!signed.supersedes(&ring) && !ring.supersedes(&signed));
    let revoking = signed.with_revoked([[9; 32]]).expect("revoked");
    assert!(revoking.proof().is_none(), "a changed ring is unsigned");
    assert_ne!(revoking.signed_content(), ring.signed_content());
    assert_eq!(revoking.version(), ring.version());

    let mut json = json_ring(2, 1, 4);
    let too_many: Vec<[u8; 32]> = (0..=norn_ring::REVOKED_MAX as u64)
        .map(|i| {
            let mut fingerprint = [0u8; 32];
            fingerprint[..8].copy_from_slice(&i.to_be_bytes());
            fingerprint
        })
        .collect();
    json["revoked"] = serde_json::json!(too_many);
    assert!(serde_json::from_value::<Ring>(json).is_err());
    let mut json = json_ring(2, 1, 4);
    json["proof"] = serde_json::json!({
        "signer": vec![0u8; norn_ring::PROOF_CERTIFICATE_BYTES_MAX + 1],
        "signed_at": 1,
        "signature": [],
    });
    assert!(serde_json::from_value::<Ring>(json).is_err());
}
