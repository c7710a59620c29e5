//! `make bench-repair`: anti-entropy exchanges between two RocksDB replicas
//! in one process, as a repair runs them (every partition, N=3), counting
//! the bytes of every request and reply as framed on the wire. Prints:
//! - a repair of 100,000 keys of which 1% differ (a third missing on each
//!   side, a third concurrent versions): time and bytes;
//! - an exchange of identical trees: bytes per partition.
//!
//! Network round trips are not included (both replicas are in-process);
//! `norn admin repair` on a cluster adds one round trip per request.

use std::time::Instant;

use norn_clock::{ActorId, Context, Lifetime, Object, Sibling};
use norn_core::exchange::{Exchange, ExchangeReport, Step};
use norn_core::replica::{self, LocalReplica, ObjectLimits};
use norn_core::serve::ClusterView;
use norn_proto::{codec, KeyRef, Request, Response, FRAME_HEADER_BYTES};
use norn_ring::{NodeId, Ring, RingMember};
use norn_storage::{Durability, RocksStorage, Storage, Store, StoreOptions};

const KEYS: u32 = 100_000;
const DIFFERENT: u32 = KEYS / 100;
const N: u8 = 3;

/// The run every replica of these exchanges belongs to.
static RUN: std::sync::LazyLock<Lifetime> = std::sync::LazyLock::new(|| Lifetime::new(42));

fn local<'a>(store: &'a RocksStorage, limits: ObjectLimits) -> LocalReplica<'a> {
    LocalReplica {
        storage: store,
        lifetime: &RUN,
        limits,
    }
}

fn serve(store: &RocksStorage, ring: &Ring, request: &Request, limits: ObjectLimits) -> Response {
    let cluster = ClusterView {
        ring,
        handing_off: &|_| false,
    };
    local(store, limits)
        .serve(cluster, request)
        .expect("a replica request")
        .response
}

fn wire<T: serde::Serialize>(message: &T) -> usize {
    codec::encode(message).expect("encode").len() + FRAME_HEADER_BYTES
}

fn write(store: &RocksStorage, ring: &Ring, i: u32, value: &[u8], actor: u64) {
    let key = KeyRef {
        bucket: b"bench".to_vec(),
        key: format!("key-{i:08}").into_bytes(),
    };
    let object = Object::new().update(
        &Context::default(),
        ActorId::new(actor, 1),
        Sibling::Value(value.to_vec()),
    );
    let key = replica::data_key(ring, &key).expect("key");
    local(store, ObjectLimits::for_test())
        .merge(&key, N, &object, Durability::Buffered, None)
        .expect("write");
}

/// Exchanges every partition of `local` with `remote`; returns the summed
/// report, the bytes moved and the requests sent.
fn repair(
    local: &RocksStorage,
    remote: &RocksStorage,
    ring: &Ring,
) -> (ExchangeReport, usize, usize) {
    let mut total = ExchangeReport::default();
    let (mut bytes, mut requests) = (0, 0);
    for partition in ring.partitions() {
        let (mut exchange, mut request) =
            Exchange::start(partition, N, local.tree(partition, N), 1_000_000);
        loop {
            let reply = serve(remote, ring, &request, ObjectLimits::for_test());
            bytes += wire(&request) + wire(&reply);
            requests += 1;
            match exchange
                .on_reply(reply, self::local(local, ObjectLimits::for_test()), ring)
                .expect("exchange")
            {
                Step::Send(next) => request = next,
                Step::Done(report) => {
                    total.keys_compared += report.keys_compared;
                    total.keys_different += report.keys_different;
                    total.keys_repaired += report.keys_repaired;
                    break;
                }
            }
        }
    }
    (total, bytes, requests)
}

fn main() {
    let members = (1..=3).map(|i| {
        (
            NodeId(i),
            RingMember {
                zone: format!("z{i}"),
                weight: 1,
            },
        )
    });
    let ring = Ring::new(norn_ring::PARTITION_BITS_DEFAULT, members).expect("ring");
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Store::open_rocks(&dir.path().join("a"), StoreOptions::default()).expect("store a");
    let b = Store::open_rocks(&dir.path().join("b"), StoreOptions::default()).expect("store b");
    let value = vec![b'v'; 1024];
    let started = Instant::now();
    for i in 0..KEYS {
        let differs = i % (KEYS / DIFFERENT) == 0;
        match (differs, i / (KEYS / DIFFERENT) % 3) {
            (false, _) => {
                write(&a, &ring, i, &value, 1);
                write(&b, &ring, i, &value, 1);
            }
            (true, 0) => write(&a, &ring, i, &value, 1),
            (true, 1) => write(&b, &ring, i, &value, 2),
            (true, _) => {
                write(&a, &ring, i, &value, 1);
                write(&b, &ring, i, b"concurrent", 2);
            }
        }
    }
    println!(
        "loaded {KEYS} keys of 1 KiB on two replicas, {DIFFERENT} different, in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let (report, bytes, requests) = repair(&a, &b, &ring);
    let took = started.elapsed();
    println!(
        "repair of {KEYS} keys, 1% different: {:.3} s, {bytes} bytes ({:.1} KiB) in {requests} requests; compared {}, different {}, repaired {}",
        took.as_secs_f64(),
        bytes as f64 / 1024.0,
        report.keys_compared,
        report.keys_different,
        report.keys_repaired
    );
    let payload = DIFFERENT as usize * 1024;
    println!(
        "  bytes sent per differing key: {:.0} (value 1 KiB; the differing values alone are {} KiB)",
        bytes as f64 / f64::from(DIFFERENT),
        payload / 1024
    );

    let started = Instant::now();
    let (again, bytes, requests) = repair(&a, &b, &ring);
    let partitions = ring.partition_count();
    println!(
        "exchange of identical trees: {} partitions in {:.3} s, {bytes} bytes ({} bytes per partition, {} requests), {} keys different",
        partitions,
        started.elapsed().as_secs_f64(),
        bytes / partitions,
        requests,
        again.keys_different
    );
}
