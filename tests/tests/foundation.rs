//! Cross-crate checks of the foundation: what a node will do on a write,
//! end to end through ring, clock, codec and storage, without a network.

use norn_clock::{ActorId, Context, Object, Sibling};
use norn_proto::codec;
use norn_ring::{NodeId, Ring, RingMember};
use norn_storage::{Change, DataKey, Datum, Durability, Storage, Store, StoreOptions};

/// Two replicas take concurrent writes to one key, then sync through
/// storage: both end with the same bytes, and both siblings survive.
#[test]
fn replicas_converge_to_byte_equal_objects() {
    let members = (1..=3).map(|i| {
        (
            NodeId(i),
            RingMember {
                zone: format!("z{i}"),
                weight: 1,
            },
        )
    });
    let ring = Ring::new(8, members).expect("ring");
    let partition = ring.partition_of_key(b"cart", b"alice");
    let replicas = ring.preference_list(partition, 3);
    assert_eq!(replicas.primaries().len(), 3);

    let key = DataKey::new(partition, b"cart", b"alice").expect("key");
    let stores: Vec<_> = (0..2)
        .map(|_| Store::in_memory(StoreOptions::default()).expect("store"))
        .collect();
    let write = |store: &norn_storage::MemStorage, actor: u64, value: &[u8]| {
        store
            .update(&key, Durability::Buffered, None, &mut |old| {
                let old: Object = old
                    .map(|d| codec::decode(&d.value).expect("decodes"))
                    .unwrap_or_default();
                let new = old.update(
                    &Context::default(),
                    ActorId::new(actor, 1),
                    Sibling::Value(value.to_vec()),
                );
                Change::Put(Datum {
                    n: 3,
                    value: codec::encode(&new).expect("encodes"),
                })
            })
            .expect("write")
    };
    write(&stores[0], 1, b"milk");
    write(&stores[1], 2, b"eggs");
    let objects: Vec<Object> = stores
        .iter()
        .map(|s| {
            codec::decode(&s.get(&key).expect("get").expect("present").value).expect("decodes")
        })
        .collect();
    let merged = [objects[0].sync(&objects[1]), objects[1].sync(&objects[0])];
    assert_eq!(
        codec::encode(&merged[0]).expect("encodes"),
        codec::encode(&merged[1]).expect("encodes")
    );
    let mut values: Vec<&[u8]> = merged[0].live_values().collect();
    values.sort_unstable();
    assert_eq!(values, [b"eggs".as_slice(), b"milk".as_slice()]);
}
