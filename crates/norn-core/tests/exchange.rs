//! Anti-entropy exchanges between two in-memory replicas, driven directly
//! (no network): they repair exactly the differing keys, in both
//! directions, and an exchange of equal trees sends only the root.

use norn_clock::{ActorId, Context, Lifetime, Object, Sibling};
use norn_core::exchange::{Exchange, ExchangeReport, Step};
use norn_core::replica::{self, LocalReplica, ObjectLimits};
use norn_core::serve::ClusterView;
use norn_proto::{codec, KeyRef, Request, Response};
use norn_ring::{NodeId, Partition, Ring, RingMember};
use norn_storage::trees::version_digest;
use norn_storage::{DataKey, Durability, MemStorage, Storage, Store, StoreOptions};

const N: u8 = 3;

/// The run every replica of these exchanges belongs to.
static RUN: std::sync::LazyLock<Lifetime> = std::sync::LazyLock::new(|| Lifetime::new(42));

fn local<'a>(store: &'a MemStorage, limits: ObjectLimits) -> LocalReplica<'a> {
    LocalReplica {
        storage: store,
        lifetime: &RUN,
        limits,
    }
}

fn serve(store: &MemStorage, ring: &Ring, request: &Request, limits: ObjectLimits) -> Response {
    let cluster = ClusterView {
        ring,
        handing_off: &|_| false,
    };
    local(store, limits)
        .serve(cluster, request)
        .expect("a replica request")
        .response
}

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
        ActorId::new(actor, 1),
        Sibling::Value(value.as_bytes().to_vec()),
    );
    local(store, ObjectLimits::for_test())
        .merge(&key_of(ring, i), N, &object, Durability::Buffered, None)
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
    let (report, bytes, _) =
        exchange_with(local, remote, ring, partition, ObjectLimits::for_test());
    (report, bytes)
}

/// [`exchange`] with both replicas keeping `limits`; also returns the
/// largest reply.
fn exchange_with(
    local: &MemStorage,
    remote: &MemStorage,
    ring: &Ring,
    partition: Partition,
    limits: ObjectLimits,
) -> (ExchangeReport, usize, usize) {
    let (mut exchange, mut request) =
        Exchange::start(partition, N, local.tree(partition, N), 100_000);
    let (mut bytes, mut largest_reply) = (0, 0);
    loop {
        let reply: Response = serve(remote, ring, &request, limits);
        let reply_bytes = codec::encode(&reply).expect("encode").len();
        bytes += codec::encode(&request).expect("encode").len() + reply_bytes;
        largest_reply = largest_reply.max(reply_bytes);
        match exchange
            .on_reply(reply, self::local(local, limits), ring)
            .expect("exchange")
        {
            Step::Send(next) => request = next,
            Step::Done(report) => return (report, bytes, largest_reply),
        }
    }
}

fn exchange_all(local: &MemStorage, remote: &MemStorage, ring: &Ring) -> (ExchangeReport, usize) {
    let mut total = ExchangeReport::default();
    let mut bytes = 0;
    for p in ring.partitions().map(|p| p.0) {
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
    for p in ring.partitions().map(|p| p.0) {
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
        let reply = serve(&b, &ring, &request, ObjectLimits::for_test());
        match exchange
            .on_reply(reply, self::local(&a, ObjectLimits::for_test()), &ring)
            .expect("exchange")
        {
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

#[test]
fn replies_capped_by_a_small_batch_budget_still_repair_every_key() {
    let ring = ring();
    let (a, b) = (store(), store());
    let partition = key_of(&ring, 0).partition;
    let in_partition: Vec<u32> = (0..20_000)
        .filter(|&i| key_of(&ring, i).partition == partition)
        .take(120)
        .collect();
    let value = "x".repeat(300);
    for (n, &i) in in_partition.iter().enumerate() {
        match n % 3 {
            0 => write(&a, &ring, i, &value, 1),
            1 => write(&b, &ring, i, &value, 2),
            _ => {
                write(&a, &ring, i, &value, 1);
                write(&b, &ring, i, "other", 2);
            }
        }
    }
    let limits = ObjectLimits {
        batch_bytes_max: 2048,
        ..ObjectLimits::for_test()
    };
    let (report, _, largest) = exchange_with(&a, &b, &ring, partition, limits);
    assert_eq!(report.keys_different, 120, "{report:?}");
    assert_eq!(report.keys_repaired, 120, "{report:?}");
    assert!(largest < 2 * 2048 + 1024, "a reply of {largest} bytes");
    assert_eq!(a.tree(partition, N), b.tree(partition, N));
}
