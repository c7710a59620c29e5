//! Multi-process tests of convergence: anti-entropy repair, ownership
//! transfers after a join (also interrupted by kill -9), tombstone removal,
//! a wiped node, a corrupt record.

use std::collections::BTreeSet;
use std::time::Duration;

use norn_proto::{QuorumOptions, Request, Response, TransferState, TransferView};
use norn_ring::{Partition, Ring};
use norn_storage::backend::Column;
use norn_storage::{DataKey, RocksBackend, Storage, Store, StoreOptions};
use norn_tests::cluster::{wait_until, TestCluster};

fn q(n: u8, r: u8, w: u8) -> QuorumOptions {
    QuorumOptions {
        n: Some(n),
        r: Some(r),
        w: Some(w),
        ..QuorumOptions::default()
    }
}

fn keys(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i}")).collect()
}

fn partition_of(ring: &Ring, key: &str) -> Partition {
    ring.partition_of_key(b"test", key.as_bytes())
}

/// Opens a stopped node's storage directly.
fn open_store(cluster: &TestCluster, index: usize) -> norn_storage::RocksStorage {
    Store::open_rocks(
        &cluster.nodes[index].data_dir.join("db"),
        StoreOptions::default(),
    )
    .expect("open the stopped node's store")
}

async fn transfers(cluster: &TestCluster, index: usize) -> Vec<TransferView> {
    match cluster.ask(index, Request::AdminTransfers).await {
        Response::Transfers(views) => views,
        other => panic!("transfers of node {index}: {other:?}"),
    }
}

/// Whether every node of `indexes` holds exactly the keys it is a primary
/// of (N=3), with one version per key across its primaries; prints the
/// first misplaced key otherwise.
async fn placed_by(cluster: &TestCluster, indexes: &[usize], ring: &Ring, keys: &[String]) -> bool {
    let mut by_node = Vec::new();
    for &index in indexes {
        by_node.push(cluster.digests(index, keys).await);
    }
    for (k, key) in keys.iter().enumerate() {
        let list = ring.preference_list(partition_of(ring, key), 3);
        let mut versions = BTreeSet::new();
        for (slot, &index) in indexes.iter().enumerate() {
            let digest = by_node[slot][k];
            let primary = list.is_primary(cluster.nodes[index].id);
            if primary != digest.is_some() {
                eprintln!(
                    "{key} (partition {}): node {index} primary={primary} holds={}",
                    partition_of(ring, key),
                    digest.is_some()
                );
                return false;
            }
            versions.extend(digest);
        }
        if versions.len() != 1 {
            eprintln!("{key}: {} versions across its primaries", versions.len());
            return false;
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_repair_makes_every_replica_equal_and_the_next_finds_nothing() {
    let mut cluster = TestCluster::new(3);
    for index in 0..3 {
        cluster.configure(index, "[data]\nhinted_handoff = false\n");
    }
    let ring = cluster.form(3).await;
    cluster.kill(2);
    wait_until("node 2 is seen down", Duration::from_secs(20), || async {
        !cluster.sees_up(0, 2).await && !cluster.sees_up(1, 2).await
    })
    .await;
    let keys = keys("ae", 3000);
    cluster
        .put_keys(0, &keys, b"written while n3 was down", q(3, 1, 1))
        .await;
    cluster.start(2);
    cluster.wait_converged(0..3, &ring).await;
    let missing = cluster
        .digests(2, &keys)
        .await
        .iter()
        .filter(|d| d.is_none())
        .count();
    assert_eq!(
        missing, 3000,
        "hinted handoff is off: node 2 missed every write"
    );

    let repair = cluster.repair(0, None).await;
    assert_eq!(repair.exchanges_failed, 0, "{repair:?}");
    assert!(repair.keys_repaired >= 3000, "{repair:?}");
    let reference = cluster.digests(0, &keys).await;
    assert!(reference.iter().all(Option::is_some));
    for index in 1..3 {
        assert_eq!(
            cluster.digests(index, &keys).await,
            reference,
            "node {index}"
        );
    }
    for index in 0..3 {
        let again = cluster.repair(index, None).await;
        assert_eq!(again.keys_different, 0, "node {index}: {again:?}");
        assert_eq!(again.partitions_done, again.partitions_total);
    }
    match cluster.ask(0, Request::AdminRepairStatus).await {
        Response::RepairStatus(status) => {
            assert_eq!(status.len(), ring.partition_count());
            assert!(status.iter().all(|s| s.ago_ms.is_some()), "{status:?}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_partition_is_restored_by_repair() {
    let mut cluster = TestCluster::new(3);
    let ring = cluster.form(3).await;
    let keys = keys("wipe", 300);
    cluster.put_keys(0, &keys, b"v", q(3, 3, 3)).await;
    let partition = partition_of(&ring, &keys[0]);
    let in_partition: Vec<String> = keys
        .iter()
        .filter(|k| partition_of(&ring, k) == partition)
        .cloned()
        .collect();
    assert!(!in_partition.is_empty());

    assert!(cluster.terminate(1).success());
    open_store(&cluster, 1)
        .drop_partition(partition)
        .expect("drop");
    cluster.start(1);
    cluster.wait_converged(0..3, &ring).await;
    assert!(cluster
        .digests(1, &in_partition)
        .await
        .iter()
        .all(Option::is_none));

    let repair = cluster.repair(1, Some(partition)).await;
    assert_eq!(repair.partitions_total, 1);
    assert_eq!(
        repair.keys_repaired,
        in_partition.len() as u64,
        "{repair:?}"
    );
    assert_eq!(
        cluster.digests(1, &keys).await,
        cluster.digests(0, &keys).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_node_receives_its_partitions_and_old_owners_drop_them() {
    let mut cluster = TestCluster::new(4);
    let ring = cluster.form(3).await;
    let keys = keys("move", 10_000);
    cluster
        .put_keys(0, &keys, b"ten thousand keys", q(3, 3, 3))
        .await;

    cluster.start(3);
    let seed = cluster.address(0).to_string();
    assert!(matches!(
        cluster.ask(3, Request::AdminJoin { seed }).await,
        Response::Staged(_)
    ));
    wait_until("the join reaches node 0", Duration::from_secs(30), || async {
        matches!(cluster.ask(0, Request::AdminPlan).await, Response::Plan(p) if p.staged.len() == 1)
    })
    .await;
    assert!(matches!(
        cluster.commit(0).await,
        Ok(Response::Committed { version: 2 })
    ));
    let grown = cluster.ring(0).await.expect("ring");
    assert_ne!(grown, ring);
    cluster.wait_converged(0..4, &grown).await;

    let took = wait_until(
        "every key sits on exactly its new primaries",
        Duration::from_secs(180),
        || async { placed_by(&cluster, &[0, 1, 2, 3], &grown, &keys).await },
    )
    .await;
    eprintln!("transfers of 10,000 keys finished {took:?} after the ring converged");
    let mut moved = 0;
    for index in 0..3 {
        for view in transfers(&cluster, index).await {
            assert_eq!(view.state, TransferState::Done, "node {index}: {view:?}");
            moved += view.keys_sent;
        }
    }
    assert!(moved > 0, "old owners sent their partitions");
    for (key, reply) in keys
        .iter()
        .zip(cluster.get_keys(3, &keys, q(3, 3, 2)).await)
    {
        match reply {
            Response::Value(value) => {
                assert_eq!(value.replies, 3, "{key}");
                assert!(!value.is_not_found(), "{key} reads as not found");
            }
            other => panic!("read of {key} with R=3: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_killed_midway_resumes_from_its_checkpoint_and_finishes() {
    let mut cluster = TestCluster::new(4);
    for index in 0..4 {
        cluster.configure(
            index,
            "[transfers]\ninterval_ms = 200\nbatch_keys = 16\nmax_bytes_per_sec = 262144\n",
        );
    }
    let ring = cluster.form(3).await;
    let keys = keys("resume", 3000);
    let value = vec![b'x'; 2048];
    cluster.put_keys(0, &keys, &value, q(3, 3, 3)).await;

    cluster.start(3);
    let seed = cluster.address(0).to_string();
    cluster.ask(3, Request::AdminJoin { seed }).await;
    wait_until("the join reaches node 0", Duration::from_secs(30), || async {
        matches!(cluster.ask(0, Request::AdminPlan).await, Response::Plan(p) if p.staged.len() == 1)
    })
    .await;
    cluster.commit(0).await.expect("node 0 answers");
    let grown = cluster.ring(0).await.expect("ring");
    assert_ne!(grown, ring);

    let sender = std::sync::Mutex::new(None);
    wait_until(
        "a transfer is under way",
        Duration::from_secs(60),
        || async {
            for index in 0..3 {
                if transfers(&cluster, index)
                    .await
                    .iter()
                    .any(|v| v.keys_sent > 0 && v.state == TransferState::Running)
                {
                    *sender.lock().expect("lock") = Some(index);
                    return true;
                }
            }
            false
        },
    )
    .await;
    let sender = sender.into_inner().expect("lock").expect("a sending node");
    cluster.kill(sender);
    cluster.start(sender);
    cluster.wait_converged(0..4, &grown).await;

    wait_until(
        "every key sits on exactly its new primaries",
        Duration::from_secs(180),
        || async { placed_by(&cluster, &[0, 1, 2, 3], &grown, &keys).await },
    )
    .await;
    let views = transfers(&cluster, sender).await;
    assert!(
        views
            .iter()
            .any(|v| v.resumed && v.state == TransferState::Done),
        "the killed node resumed a transfer from its checkpoint: {views:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tombstone_is_removed_only_once_every_replica_holds_it() {
    let mut cluster = TestCluster::new(3);
    for index in 0..3 {
        cluster.configure(index, "[anti_entropy]\ninterval_ms = 20\n");
    }
    let ring = cluster.form(3).await;
    let written = cluster
        .put(0, "gone", Some(b"old".as_slice()), None, q(3, 3, 3))
        .await;
    let Response::Written(written) = written else {
        panic!("{written:?}")
    };
    cluster.kill(2);
    wait_until("node 2 is seen down", Duration::from_secs(20), || async {
        !cluster.sees_up(0, 2).await && !cluster.sees_up(1, 2).await
    })
    .await;
    let deleted = cluster
        .put(0, "gone", None, Some(written.context), q(3, 2, 2))
        .await;
    assert!(matches!(deleted, Response::Written(_)), "{deleted:?}");

    // Exchanges run every 20 ms, but node 2 is away: the tombstone stays.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for index in 0..2 {
        let object = cluster
            .replica(index, "gone")
            .await
            .expect("the tombstone is kept");
        assert!(object.is_deleted());
    }

    // Read through its store while it is down: once started, exchanges
    // bring it the tombstone within milliseconds.
    let gone = DataKey::new(partition_of(&ring, "gone"), b"test", b"gone").expect("key");
    let old_copy = open_store(&cluster, 2)
        .get(&gone)
        .expect("read")
        .expect("node 2 still holds the key");
    let old_copy: norn_clock::Object =
        norn_proto::codec::decode(&old_copy.value).expect("an object");
    assert!(
        !old_copy.is_deleted(),
        "node 2 comes back with its old copy"
    );
    cluster.start(2);
    cluster.wait_converged(0..3, &ring).await;
    wait_until(
        "every replica removed the tombstone",
        Duration::from_secs(60),
        || async {
            for index in 0..3 {
                if cluster.replica(index, "gone").await.is_some() {
                    return false;
                }
            }
            true
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for index in 0..3 {
        assert!(
            cluster.replica(index, "gone").await.is_none(),
            "node {index}"
        );
        match cluster.get(index, "gone", q(3, 3, 2)).await {
            Response::Value(reply) => assert!(reply.is_not_found(), "{reply:?}"),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_node_comes_back_as_a_new_actor_and_its_new_writes_survive() {
    let mut cluster = TestCluster::new(3);
    let ring = cluster.form(3).await;
    let mut context = None;
    for i in 0..5 {
        let value = format!("before wipe {i}");
        match cluster
            .put(
                0,
                "k679",
                Some(value.as_bytes()),
                context.take(),
                q(3, 3, 3),
            )
            .await
        {
            Response::Written(reply) => context = Some(reply.context),
            other => panic!("{other:?}"),
        }
    }
    let keys = keys("refill", 200);
    cluster.put_keys(0, &keys, b"v", q(3, 3, 3)).await;
    let incarnation_before = cluster
        .members(1)
        .await
        .iter()
        .find(|m| m.member.id == cluster.nodes[0].id)
        .expect("node 0")
        .member
        .incarnation;

    assert!(cluster.terminate(0).success());
    std::fs::remove_dir_all(cluster.nodes[0].data_dir.join("db")).expect("wipe");
    cluster.start(0);
    cluster.wait_converged(0..3, &ring).await;
    let node_0 = cluster.nodes[0].id;
    wait_until(
        "the others see node 0 with a newer incarnation",
        Duration::from_secs(20),
        || async {
            cluster
                .members(1)
                .await
                .iter()
                .any(|m| m.member.id == node_0 && m.member.incarnation > incarnation_before)
        },
    )
    .await;

    // A read through the others gives the old context; node 0 coordinates
    // the next write with a fresh actor, so no old dot can shadow it.
    let Response::Value(read) = cluster.get(1, "k679", q(3, 2, 2)).await else {
        panic!("read")
    };
    let written = cluster
        .put(
            0,
            "k679",
            Some(b"after wipe".as_slice()),
            Some(read.context),
            q(3, 2, 1),
        )
        .await;
    assert!(matches!(written, Response::Written(_)), "{written:?}");
    wait_until(
        "every replica holds the write made after the wipe",
        Duration::from_secs(20),
        || async {
            match cluster.get(1, "k679", q(3, 3, 2)).await {
                Response::Value(reply) => {
                    reply.siblings == vec![norn_clock::Sibling::Value(b"after wipe".to_vec())]
                }
                _ => false,
            }
        },
    )
    .await;

    let repair = cluster.repair(0, None).await;
    assert_eq!(repair.exchanges_failed, 0, "{repair:?}");
    assert_eq!(
        cluster.digests(0, &keys).await,
        cluster.digests(1, &keys).await
    );
    assert!(cluster.digests(0, &keys).await.iter().all(Option::is_some));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_record_is_not_served_and_the_next_exchange_repairs_it() {
    let mut cluster = TestCluster::new(3);
    let ring = cluster.form(3).await;
    let keys = keys("crc", 50);
    cluster
        .put_keys(0, &keys, b"checked on every read", q(3, 3, 3))
        .await;
    let victim = DataKey::new(partition_of(&ring, "crc-7"), b"test", b"crc-7").expect("key");

    assert!(cluster.terminate(1).success());
    {
        let backend = RocksBackend::open(
            &cluster.nodes[1].data_dir.join("db"),
            StoreOptions::default().block_cache_bytes,
        )
        .expect("open");
        let store = Store::open(backend, StoreOptions::default()).expect("store");
        let mut raw =
            norn_storage::backend::Backend::get(store.backend(), Column::Data, &victim.encode())
                .expect("raw read")
                .expect("present");
        let middle = raw.len() / 2;
        raw[middle] ^= 0x10;
        store
            .backend()
            .raw_put(Column::Data, &victim.encode(), &raw)
            .expect("corrupt");
        assert!(
            store.get(&victim).is_err(),
            "the flipped record fails its checksum"
        );
    }
    cluster.start(1);
    cluster.wait_converged(0..3, &ring).await;
    let served = cluster
        .ask(
            1,
            Request::ReplicaGet {
                bucket: b"test".to_vec(),
                key: b"crc-7".to_vec(),
            },
        )
        .await;
    assert!(
        matches!(served, Response::Error(_)),
        "a corrupt record is never served: {served:?}"
    );

    let repair = cluster.repair(1, Some(victim.partition)).await;
    assert!(repair.keys_repaired >= 1, "{repair:?}");
    assert_eq!(
        cluster.replica(1, "crc-7").await,
        cluster.replica(0, "crc-7").await
    );
    assert_eq!(
        cluster.digests(1, &keys).await,
        cluster.digests(0, &keys).await
    );
}
