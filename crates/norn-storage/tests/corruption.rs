//! A record damaged on disk is never served: the read names the key.

use norn_ring::Partition;
use norn_storage::backend::{Backend, Column};
use norn_storage::{
    Change, DataKey, Datum, Durability, Storage, StorageError, Store, StoreOptions,
};

#[test]
fn a_damaged_record_reads_as_a_checksum_error_naming_its_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_rocks(dir.path(), StoreOptions::default()).expect("open");
    let key = DataKey::new(Partition(7), b"photos", b"cat.jpg").expect("key");
    let datum = Datum {
        n: 3,
        value: b"meow".repeat(100),
    };
    store
        .update(&key, Durability::Synced, None, &mut |_| {
            Change::Put(datum.clone())
        })
        .expect("put");

    let mut raw = store
        .backend()
        .get(Column::Data, &key.encode())
        .expect("raw read")
        .expect("present");
    let middle = raw.len() / 2;
    raw[middle] ^= 0x40;
    store
        .backend()
        .raw_put(Column::Data, &key.encode(), &raw)
        .expect("damage it");

    let err = store.get(&key).expect_err("damaged record is not served");
    let StorageError::Corrupt {
        column, key: named, ..
    } = &err
    else {
        panic!("expected a checksum error, got {err}");
    };
    assert_eq!(*column, "data");
    assert_eq!(named, "7/photos/cat.jpg");
    assert!(err.to_string().contains("checksum"), "{err}");

    let page = store.scan_partition(Partition(7), None, 10).expect("scan");
    assert!(page.items.is_empty(), "scans skip it");
    assert_eq!(page.corrupt, vec![key.clone()]);

    // A repair write replaces it, and the partition's tree then covers only
    // the repaired value.
    store
        .update(&key, Durability::Synced, None, &mut |old| {
            assert_eq!(old, None, "the corrupt value is not handed out");
            Change::Put(datum.clone())
        })
        .expect("repair");
    assert_eq!(store.get(&key).expect("read"), Some(datum.clone()));
    let mut expected = norn_merkle::MerkleTree::new(StoreOptions::default().tree_shape);
    expected.apply(
        &key.tree_key(),
        None,
        Some(norn_storage::trees::version_digest(&datum.value)),
    );
    assert_eq!(store.tree(Partition(7), 3), expected);
}
