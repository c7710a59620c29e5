//! Anti-entropy exchanges between two in-memory replicas, driven directly
//! (no network): they repair exactly the differing keys, in both
//! directions, and an exchange of equal trees sends only the root.

use norn_clock::{ActorId, Context, Object, Sibling};
use norn_node::exchange::{Exchange, ExchangeReport, Step};
use norn_node::replica;
use norn_proto::{codec, KeyRef, Request, Response};
use norn_ring::{NodeId, Partition, Ring, RingMember};
use norn_storage::trees::version_digest;
use norn_storage::{DataKey, Durability, MemStorage, Storage, Store, StoreOptions};

const N: u8 = 3;

fn ring() -> Ring {
    let members = (1..=3).map(|i| {
        (
            NodeId(i),
            RingMember {
                zone: "z".into(),
                weight: 1,
            },
        )
    });
    Ring::new(6, members).expect("ring")
}

fn store() -> MemStorage {
    Store::in_memory(StoreOptions::default()).expect("store")
}

fn key_of(ring: &Ring, i: u32) -> DataKey {
    let key = KeyRef {
        bucket: b"b".to_vec(),
        key: format!("key-{i}").into_bytes(),
    };
    replica::data_key(ring, &key).expect("key")
}

fn write(store: &MemStorage, ring: &Ring, i: u32, value: &str, actor: u64) {
    let object = Object::new().update(
        &Context::default(),
        ActorId(actor),
        Sibling::Value(value.as_bytes().to_vec()),
    );
    replica::merge_object(
        store,
        &key_of(ring, i),
        N,
        &object,
        Durability::Buffered,
        None,
    )
    .expect("write");
}

/// Runs one exchange of `partition` from `local` against `remote`; returns
/// its report and the bytes of every request and reply.
fn exchange(
    local: &MemStorage,
    remote: &MemStorage,
    ring: &Ring,
    partition: Partition,
) -> (ExchangeReport, usize) {
    let (mut exchange, mut request) =
        Exchange::start(partition, N, local.tree(partition, N), 100_000);
    let mut bytes = 0;
    loop {
        let reply: Response = replica::serve(remote, ring, &request).expect("replica request");
        bytes += codec::encode(&request).expect("encode").len();
        bytes += codec::encode(&reply).expect("encode").len();
        match exchange.on_reply(reply, local, ring).expect("exchange") {
            Step::Send(next) => request = next,
            Step::Done(report) => return (report, bytes),
        }
    }
}

fn exchange_all(local: &MemStorage, remote: &MemStorage, ring: &Ring) -> (ExchangeReport, usize) {
    let mut total = ExchangeReport::default();
    let mut bytes = 0;
    for p in 0..ring.partition_count() as u16 {
        let (report, b) = exchange(local, remote, ring, Partition(p));
        total.keys_compared += report.keys_compared;
        total.keys_different += report.keys_different;
        total.keys_repaired += report.keys_repaired;
        bytes += b;
    }
    (total, bytes)
}

fn digest(store: &MemStorage, key: &DataKey) -> Option<u64> {
    store
        .get(key)
        .expect("get")
        .map(|d| version_digest(&d.value))
}

#[test]
fn an_exchange_repairs_exactly_the_differing_keys_both_ways() {
    let ring = ring();
    let (a, b) = (store(), store());
    for i in 0..1000 {
        write(&a, &ring, i, "same", 1);
        write(&b, &ring, i, "same", 1);
    }
    for i in 1000..1010 {
        write(&a, &ring, i, "only-a", 1);
    }
    for i in 1010..1020 {
        write(&b, &ring, i, "only-b", 2);
    }
    for i in 0..10 {
        write(&b, &ring, i, "concurrent", 2);
    }
    let (report, _) = exchange_all(&a, &b, &ring);
    assert_eq!(report.keys_different, 30, "{report:?}");
    assert_eq!(report.keys_repaired, 30, "{report:?}");
    for p in 0..ring.partition_count() as u16 {
        assert_eq!(
            a.tree(Partition(p), N),
            b.tree(Partition(p), N),
            "partition {p}"
        );
    }
    for i in 0..1020 {
        let key = key_of(&ring, i);
        assert!(digest(&a, &key).is_some(), "key {i} missing");
        assert_eq!(digest(&a, &key), digest(&b, &key), "key {i}");
    }
    let merged = replica::read_object(&a, &key_of(&ring, 3))
        .expect("read")
        .expect("present");
    assert_eq!(merged.value_count(), 2, "concurrent writes stay siblings");
    let (again, _) = exchange_all(&a, &b, &ring);
    assert_eq!(again.keys_different, 0, "{again:?}");
}

#[test]
fn equal_trees_exchange_only_their_roots() {
    let ring = ring();
    let (a, b) = (store(), store());
    for i in 0..500 {
        write(&a, &ring, i, "v", 1);
        write(&b, &ring, i, "v", 1);
    }
    let partition = key_of(&ring, 0).partition;
    let (report, bytes) = exchange(&a, &b, &ring, partition);
    assert_eq!(report, ExchangeReport::default());
    let root_only = codec::encode(&Request::TreeNodes {
        partition,
        n: N,
        level: 0,
        indices: vec![0],
    })
    .expect("encode")
    .len()
        + codec::encode(&Response::Hashes(vec![0]))
            .expect("encode")
            .len();
    assert!(bytes <= root_only + 16, "{bytes} bytes for equal trees");
}

#[test]
fn a_budget_limits_one_exchange_and_the_next_finishes() {
    let ring = ring();
    let (a, b) = (store(), store());
    for i in 0..400 {
        write(&a, &ring, i, "a", 1);
    }
    let partition = key_of(&ring, 0).partition;
    let (mut exchange, mut request) = Exchange::start(partition, N, a.tree(partition, N), 2);
    let report = loop {
        let reply = replica::serve(&b, &ring, &request).expect("replica request");
        match exchange.on_reply(reply, &a, &ring).expect("exchange") {
            Step::Send(next) => request = next,
            Step::Done(report) => break report,
        }
    };
    assert!(report.truncated);
    assert_eq!(report.keys_repaired, 2);
    let (rest, _) = self::exchange(&a, &b, &ring, partition);
    assert_eq!(rest.keys_repaired, rest.keys_different);
    assert_eq!(a.tree(partition, N), b.tree(partition, N));
}
