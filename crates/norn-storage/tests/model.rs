//! Model test (after sled's `fuzz_model`): random operations against a store
//! and a `BTreeMap` model, reopening the store between rounds. After every
//! round the store must equal the model: data, trees and hint queues.

use std::collections::BTreeMap;

use norn_merkle::MerkleTree;
use norn_ring::{NodeId, Partition};
use norn_storage::storage::NewHint;
use norn_storage::trees::version_digest;
use norn_storage::{
    Change, DataKey, Datum, Durability, HintId, MemBackend, RocksBackend, Storage, Store,
    StoreOptions,
};
use proptest::prelude::*;

const PARTITIONS: u16 = 4;
const TARGETS: u64 = 3;

#[derive(Debug, Clone)]
enum Op {
    Put {
        partition: u16,
        key: u8,
        n: u8,
        value: Vec<u8>,
        hint_for: Option<u64>,
    },
    Delete {
        partition: u16,
        key: u8,
    },
    DropPartition {
        partition: u16,
    },
    RemoveOldestHint {
        target: u64,
    },
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        6 => (0..PARTITIONS, 0u8..16, 1u8..=3, prop::collection::vec(any::<u8>(), 0..40), prop::option::of(0..TARGETS))
            .prop_map(|(partition, key, n, value, hint_for)| Op::Put { partition, key, n, value, hint_for }),
        2 => (0..PARTITIONS, 0u8..16).prop_map(|(partition, key)| Op::Delete { partition, key }),
        1 => (0..PARTITIONS).prop_map(|partition| Op::DropPartition { partition }),
        1 => (0..TARGETS).prop_map(|target| Op::RemoveOldestHint { target }),
    ];
    prop::collection::vec(op, 0..60)
}

#[derive(Debug, Default)]
struct Model {
    data: BTreeMap<DataKey, Datum>,
    hints: BTreeMap<u64, Vec<Vec<u8>>>,
}

fn data_key(partition: u16, key: u8) -> DataKey {
    DataKey::new(Partition(partition), b"bucket", &[key]).expect("valid key")
}

fn apply<S: Storage>(store: &S, model: &mut Model, op: &Op) -> Result<(), TestCaseError> {
    match op {
        Op::Put {
            partition,
            key,
            n,
            value,
            hint_for,
        } => {
            let key = data_key(*partition, *key);
            let datum = Datum {
                n: *n,
                value: value.clone(),
            };
            let hint = hint_for.map(|t| NewHint {
                target: NodeId(t),
                payload: key.key.clone(),
            });
            let stored = store
                .update(&key, Durability::Buffered, hint, &mut |_| {
                    Change::Put(datum.clone())
                })
                .expect("put");
            prop_assert_eq!(stored.as_ref(), Some(&datum));
            model.data.insert(key.clone(), datum);
            if let Some(t) = hint_for {
                model.hints.entry(*t).or_default().push(key.key.clone());
            }
        }
        Op::Delete { partition, key } => {
            let key = data_key(*partition, *key);
            store
                .update(&key, Durability::Buffered, None, &mut |_| Change::Delete)
                .expect("delete");
            model.data.remove(&key);
        }
        Op::DropPartition { partition } => {
            store.drop_partition(Partition(*partition)).expect("drop");
            model
                .data
                .retain(|k, _| k.partition != Partition(*partition));
        }
        Op::RemoveOldestHint { target } => {
            if let Some((id, _)) = store
                .hints(NodeId(*target), None, 1)
                .expect("hints")
                .first()
            {
                store.remove_hint(NodeId(*target), *id).expect("remove");
                model
                    .hints
                    .get_mut(target)
                    .expect("model has the hint")
                    .remove(0);
            }
        }
    }
    Ok(())
}

fn check<S: Storage>(store: &S, model: &Model) -> Result<(), TestCaseError> {
    for partition in 0..PARTITIONS {
        let partition = Partition(partition);
        let mut after: Option<DataKey> = None;
        let mut scanned = Vec::new();
        loop {
            let page = store
                .scan_partition(partition, after.as_ref(), 5)
                .expect("scan");
            prop_assert!(page.corrupt.is_empty());
            scanned.extend(page.items);
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let expected: Vec<(DataKey, Datum)> = model
            .data
            .iter()
            .filter(|(k, _)| k.partition == partition)
            .map(|(k, d)| (k.clone(), d.clone()))
            .collect();
        prop_assert_eq!(&scanned, &expected);
        for n in 1..=3u8 {
            let mut tree = MerkleTree::new(StoreOptions::default().tree_shape);
            for (key, datum) in expected.iter().filter(|(_, d)| d.n == n) {
                tree.apply(&key.tree_key(), None, Some(version_digest(&datum.value)));
            }
            prop_assert_eq!(
                store.tree(partition, n),
                tree,
                "tree of partition {} n {}",
                partition,
                n
            );
        }
    }
    for (key, datum) in &model.data {
        let stored = store.get(key).expect("get");
        prop_assert_eq!(stored.as_ref(), Some(datum));
    }
    for target in 0..TARGETS {
        let stored: Vec<Vec<u8>> = store
            .hints(NodeId(target), None, 1000)
            .expect("hints")
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        let expected = model.hints.get(&target).cloned().unwrap_or_default();
        let stats = store
            .hint_queues()
            .get(&NodeId(target))
            .copied()
            .unwrap_or_default();
        prop_assert_eq!(stats.hints as usize, expected.len());
        prop_assert_eq!(stored, expected);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn rocks_store_matches_the_model_across_reopens(rounds in prop::collection::vec(ops(), 1..5)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut model = Model::default();
        for round in &rounds {
            let store = Store::open(RocksBackend::open(dir.path(), StoreOptions::default().block_cache_bytes).expect("open"), StoreOptions::default()).expect("store");
            check(&store, &model)?;
            for op in round {
                apply(&store, &mut model, op)?;
            }
            check(&store, &model)?;
        }
    }

    #[test]
    fn mem_store_matches_the_model_across_reopens(rounds in prop::collection::vec(ops(), 1..5)) {
        let mut backend = MemBackend::new();
        let mut model = Model::default();
        for round in &rounds {
            let store = Store::open(backend, StoreOptions::default()).expect("store");
            check(&store, &model)?;
            for op in round {
                apply(&store, &mut model, op)?;
            }
            check(&store, &model)?;
            store.sync().expect("sync");
            backend = store.into_backend();
        }
    }
}

#[test]
fn a_power_cut_loses_only_unsynced_writes() {
    let store = Store::open(MemBackend::new(), StoreOptions::default()).expect("store");
    let (kept, lost) = (data_key(0, 1), data_key(0, 2));
    let datum = Datum {
        n: 3,
        value: b"v".to_vec(),
    };
    store
        .update(&kept, Durability::Synced, None, &mut |_| {
            Change::Put(datum.clone())
        })
        .expect("put");
    store
        .update(&lost, Durability::Buffered, None, &mut |_| {
            Change::Put(datum.clone())
        })
        .expect("put");
    let backend = store.into_backend();
    backend.crash();
    let store = Store::open(backend, StoreOptions::default()).expect("reopen");
    assert_eq!(store.get(&kept).expect("get"), Some(datum));
    assert_eq!(store.get(&lost).expect("get"), None);
}

#[test]
fn hint_queues_are_bounded_in_bytes() {
    let options = StoreOptions {
        hint_bytes_max_per_target: 100,
        ..StoreOptions::default()
    };
    let store = Store::open(MemBackend::new(), options).expect("store");
    let hint = || NewHint {
        target: NodeId(1),
        payload: vec![0; 40],
    };
    store
        .push_hint(hint(), Durability::Buffered)
        .expect("first fits");
    store
        .push_hint(hint(), Durability::Buffered)
        .expect("second fits");
    let key = data_key(0, 0);
    let err = store
        .update(&key, Durability::Buffered, Some(hint()), &mut |_| {
            Change::Put(Datum {
                n: 1,
                value: vec![],
            })
        })
        .expect_err("third does not fit");
    assert!(
        matches!(err, norn_storage::StorageError::HintQueueFull { .. }),
        "{err}"
    );
    assert_eq!(
        store.get(&key).expect("get"),
        None,
        "the write that came with the hint was not stored"
    );
    assert_eq!(store.hint_queues()[&NodeId(1)].hints, 2);
    let first = store.hints(NodeId(1), None, 1).expect("hints")[0].0;
    assert_eq!(first, HintId(1));
}
