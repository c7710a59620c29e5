//! The tree's contracts: a diff finds every changed key's segment, identical
//! key sets diff to nothing, and updates are incremental (the tree after a
//! series of changes equals the tree built from the final set).

use std::collections::BTreeMap;

use norn_merkle::{diff, key_segment, MerkleTree, TreeShape};
use proptest::prelude::*;

type KeySet = BTreeMap<Vec<u8>, u64>;

fn build(shape: TreeShape, keys: &KeySet) -> MerkleTree {
    let mut tree = MerkleTree::new(shape);
    for (key, digest) in keys {
        tree.apply(key, None, Some(*digest));
    }
    tree
}

fn shapes() -> impl Strategy<Value = TreeShape> {
    (1u32..=4, 1u8..=3).prop_map(|(f, d)| TreeShape::new(1 << f, d).expect("valid shape"))
}

fn key_sets() -> impl Strategy<Value = KeySet> {
    prop::collection::btree_map(
        prop::collection::vec(any::<u8>(), 0..12),
        any::<u64>(),
        0..200,
    )
}

#[derive(Debug, Clone)]
enum Change {
    Insert(Vec<u8>, u64),
    Modify(prop::sample::Index, u64),
    Remove(prop::sample::Index),
}

fn changes() -> impl Strategy<Value = Vec<Change>> {
    let change = prop_oneof![
        (prop::collection::vec(any::<u8>(), 0..12), any::<u64>())
            .prop_map(|(k, d)| Change::Insert(k, d)),
        (any::<prop::sample::Index>(), any::<u64>()).prop_map(|(i, d)| Change::Modify(i, d)),
        any::<prop::sample::Index>().prop_map(Change::Remove),
    ];
    prop::collection::vec(change, 0..30)
}

/// Applies `changes` to both the set and the tree incrementally; returns the
/// keys whose version differs from the original set.
fn apply_changes(keys: &mut KeySet, tree: &mut MerkleTree, changes: Vec<Change>) -> Vec<Vec<u8>> {
    let original = keys.clone();
    for change in changes {
        let existing = |i: prop::sample::Index| keys.keys().nth(i.index(keys.len())).cloned();
        let (key, new) = match change {
            Change::Insert(key, digest) => (key, Some(digest)),
            _ if keys.is_empty() => continue,
            Change::Modify(i, digest) => (existing(i).expect("a key"), Some(digest)),
            Change::Remove(i) => (existing(i).expect("a key"), None),
        };
        let old = keys.get(&key).copied();
        tree.apply(&key, old, new);
        match new {
            Some(digest) => keys.insert(key, digest),
            None => keys.remove(&key),
        };
    }
    let mut changed: Vec<Vec<u8>> = keys
        .iter()
        .filter(|(k, d)| original.get(*k) != Some(*d))
        .map(|(k, _)| k.clone())
        .collect();
    changed.extend(original.keys().filter(|k| !keys.contains_key(*k)).cloned());
    changed
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn identical_sets_diff_to_nothing(shape in shapes(), keys in key_sets()) {
        let (a, b) = (build(shape, &keys), build(shape, &keys));
        prop_assert!(diff(&a, &b).is_empty());
        prop_assert_eq!(a.root(), b.root());
    }

    #[test]
    fn every_changed_key_lies_in_a_differing_segment(
        shape in shapes(), keys in key_sets(), changes in changes(),
    ) {
        let original = build(shape, &keys);
        let mut keys = keys;
        let mut changed_tree = original.clone();
        let changed_keys = apply_changes(&mut keys, &mut changed_tree, changes);
        let segments = diff(&original, &changed_tree);
        for key in &changed_keys {
            let segment = key_segment(key, shape.segments());
            prop_assert!(segments.contains(&segment), "key {:?} in segment {} missed", key, segment);
        }
        prop_assert_eq!(diff(&changed_tree, &original), segments.clone(), "diff is symmetric");
        // The diff descends only into differing branches: it reports no
        // segment whose leaves agree.
        for segment in &segments {
            prop_assert_ne!(original.leaves()[*segment as usize], changed_tree.leaves()[*segment as usize]);
        }
    }

    /// Incremental updates equal a rebuild from the final set, and a rebuild
    /// from persisted leaves equals the tree.
    #[test]
    fn incremental_updates_equal_a_rebuild(shape in shapes(), keys in key_sets(), changes in changes()) {
        let mut keys = keys;
        let mut tree = build(shape, &keys);
        apply_changes(&mut keys, &mut tree, changes);
        prop_assert_eq!(&tree, &build(shape, &keys));
        let leaves = tree.leaves().iter().enumerate().map(|(i, h)| (i as u32, *h));
        prop_assert_eq!(&MerkleTree::from_leaves(shape, leaves), &tree);
    }
}

#[test]
fn shapes_out_of_bounds_are_refused() {
    assert!(TreeShape::new(3, 2).is_err());
    assert!(TreeShape::new(128, 2).is_err());
    assert!(TreeShape::new(16, 0).is_err());
    assert!(TreeShape::new(16, 5).is_err());
    assert_eq!(TreeShape::default().segments(), 256);
}
