//! `make bench-storage`: put and get throughput of norn-storage (1 KiB
//! values, tree updates and CRC included) beside the raw rocksdb crate doing
//! the same puts and gets in the same run, with the ratios.
//!
//! `NORN_BENCH_OPS` overrides the operation count (default 1,000,000).

use std::time::Instant;

use norn_ring::Partition;
use norn_storage::{Change, DataKey, Datum, Durability, Storage, Store, StoreOptions};
use rocksdb::{Options, WriteOptions, DB};

const VALUE_BYTES: usize = 1024;

fn ops() -> u64 {
    std::env::var("NORN_BENCH_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// Keys spread over 256 partitions in a scattered order, as hashing would.
/// The raw side stores under the same bytes (`DataKey::encode`).
fn key_of(i: u64) -> DataKey {
    let scrambled = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let partition = Partition((scrambled >> 56) as u16);
    DataKey::new(
        partition,
        b"bench",
        format!("key-{scrambled:016x}").as_bytes(),
    )
    .expect("key")
}

fn value_of(i: u64) -> Vec<u8> {
    let mut value = vec![0u8; VALUE_BYTES];
    value[..8].copy_from_slice(&i.to_le_bytes());
    value
}

fn rate(ops: u64, started: Instant) -> f64 {
    ops as f64 / started.elapsed().as_secs_f64()
}

fn bench_norn(ops: u64) -> (f64, f64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_rocks(dir.path(), StoreOptions::default()).expect("open");
    let started = Instant::now();
    for i in 0..ops {
        let key = key_of(i);
        let datum = Datum {
            n: 3,
            value: value_of(i),
        };
        store
            .update(&key, Durability::Buffered, None, &mut |_| {
                Change::Put(datum.clone())
            })
            .expect("put");
    }
    let puts = rate(ops, started);
    let started = Instant::now();
    for i in 0..ops {
        assert!(store.get(&key_of(i)).expect("get").is_some());
    }
    (puts, rate(ops, started))
}

fn bench_raw(ops: u64) -> (f64, f64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut options = Options::default();
    options.create_if_missing(true);
    options.set_compression_type(rocksdb::DBCompressionType::Lz4);
    options.increase_parallelism(2);
    let cache = rocksdb::Cache::new_lru_cache(StoreOptions::default().block_cache_bytes);
    norn_storage::rocks::data_column_options(&mut options, &cache);
    let db = DB::open(&options, dir.path()).expect("open");
    let mut write = WriteOptions::default();
    write.set_sync(false);
    let started = Instant::now();
    for i in 0..ops {
        db.put_opt(key_of(i).encode(), value_of(i), &write)
            .expect("put");
    }
    let puts = rate(ops, started);
    let started = Instant::now();
    for i in 0..ops {
        assert!(db.get(key_of(i).encode()).expect("get").is_some());
    }
    (puts, rate(ops, started))
}

fn main() {
    let ops = ops();
    println!(
        "norn-storage vs raw rocksdb: {ops} operations, {VALUE_BYTES}-byte values, one thread"
    );
    let (raw_puts, raw_gets) = bench_raw(ops);
    let (norn_puts, norn_gets) = bench_norn(ops);
    println!(
        "{:<8} {:>14} {:>14} {:>8} {:>8}",
        "op", "norn ops/s", "raw ops/s", "ratio", "target"
    );
    println!(
        "{:<8} {:>14.0} {:>14.0} {:>7.0}% {:>7}%",
        "put",
        norn_puts,
        raw_puts,
        100.0 * norn_puts / raw_puts,
        70
    );
    println!(
        "{:<8} {:>14.0} {:>14.0} {:>7.0}% {:>7}%",
        "get",
        norn_gets,
        raw_gets,
        100.0 * norn_gets / raw_gets,
        85
    );
}
