//! Multi-process tests of the promise that an acknowledged write is never
//! silently lost and no input makes a key unreadable: dots are never
//! issued twice (however a node lost or gave away its copy), causal
//! contexts and objects from outside are validated, objects are bounded
//! so that every one fits a frame, rings of 65,536 partitions repair,
//! delivered hints are on disk before they are deleted, and a reap removes
//! only tombstones.

use std::time::Duration;

use norn_clock::Sibling;
use norn_membership::ChangeKind;
use norn_proto::{codec, KeyDigest, KeyRef, QuorumOptions, Request, Response};
use norn_ring::{NodeId, Ring};
use norn_tests::cluster::{copy_dir, wait_until, TestCluster};
use norn_tests::http::{curl, header};

fn q(n: u8, r: u8, w: u8) -> QuorumOptions {
    QuorumOptions {
        n: Some(n),
        r: Some(r),
        w: Some(w),
        ..QuorumOptions::default()
    }
}

/// The live values of an object or a read, sorted.
fn live<'a>(siblings: impl IntoIterator<Item = &'a Sibling>) -> Vec<Vec<u8>> {
    let mut values: Vec<Vec<u8>> = siblings
        .into_iter()
        .filter_map(|s| match s {
            Sibling::Value(v) => Some(v.clone()),
            Sibling::Tombstone => None,
        })
        .collect();
    values.sort();
    values
}

/// The first key `k-{i}` whose preference list for `n` satisfies `wanted`
/// (primaries, fallbacks).
fn key_where(ring: &Ring, n: usize, wanted: impl Fn(&[NodeId], &[NodeId]) -> bool) -> String {
    (0..10_000)
        .map(|i| format!("k-{i}"))
        .find(|key| {
            let list = ring.preference_list(ring.partition_of_key(b"test", key.as_bytes()), n);
            wanted(list.primaries(), list.fallbacks())
        })
        .expect("a key with that placement")
}

/// Indexes of the primaries and fallbacks of `key` for `n`.
fn placement(cluster: &TestCluster, ring: &Ring, key: &str, n: usize) -> (Vec<usize>, Vec<usize>) {
    let list = ring.preference_list(ring.partition_of_key(b"test", key.as_bytes()), n);
    let indexes = |ids: &[NodeId]| ids.iter().map(|id| cluster.index_of(*id)).collect();
    (indexes(list.primaries()), indexes(list.fallbacks()))
}

async fn wait_seen(cluster: &TestCluster, observers: &[usize], node: usize, up: bool) {
    let what = format!("node {node} is seen {}", if up { "up" } else { "down" });
    wait_until(&what, Duration::from_secs(30), || async {
        for &observer in observers {
            if cluster.sees_up(observer, node).await != up {
                return false;
            }
        }
        true
    })
    .await;
}

/// A key of N=2 on a cluster of three whose first primary `down` is
/// killed and seen down by the others: `other` is its second primary and
/// `fallback` stands in for `down`.
struct PrimaryDown {
    key: String,
    down: usize,
    other: usize,
    fallback: usize,
}

async fn kill_a_primary(cluster: &mut TestCluster, ring: &Ring) -> PrimaryDown {
    let key = key_where(ring, 2, |_, _| true);
    let (primaries, fallbacks) = placement(cluster, ring, &key, 2);
    let (down, other, fallback) = (primaries[0], primaries[1], fallbacks[0]);
    cluster.kill(down);
    wait_seen(cluster, &[other, fallback], down, false).await;
    PrimaryDown {
        key,
        down,
        other,
        fallback,
    }
}

/// The reply of a write that at least `acked` replicas acknowledged.
fn written(response: Response, acked: u8) -> norn_proto::PutReply {
    match response {
        Response::Written(reply) if reply.receipt.acked() >= acked => reply,
        other => panic!("expected a write acknowledged by {acked}: {other:?}"),
    }
}

async fn replica_live(cluster: &TestCluster, index: usize, key: &str) -> Vec<Vec<u8>> {
    match cluster.replica(index, key).await {
        Some(object) => live(object.values()),
        None => Vec::new(),
    }
}

/// Repairs `key`'s partition from node `index` and asserts that every
/// node of `replicas` then holds the same version, with `value` live.
async fn assert_repaired_with(
    cluster: &TestCluster,
    ring: &Ring,
    index: usize,
    replicas: &[usize],
    key: &str,
    value: &[u8],
) {
    let partition = ring.partition_of_key(b"test", key.as_bytes());
    let repair = cluster.repair(index, Some(partition)).await;
    assert_eq!(repair.exchanges_failed, 0, "{repair:?}");
    let keys = [key.to_string()];
    let first = cluster.digests(replicas[0], &keys).await;
    for &replica in replicas {
        assert!(
            replica_live(cluster, replica, key)
                .await
                .contains(&value.to_vec()),
            "node {replica} lost the acknowledged write {:?}: it holds {:?}",
            String::from_utf8_lossy(value),
            cluster.replica(replica, key).await
        );
        assert_eq!(
            cluster.digests(replica, &keys).await,
            first,
            "replicas {} and {replica} differ after the repair",
            replicas[0]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_that_handed_off_and_dropped_its_copy_issues_fresh_dots() {
    let mut cluster = TestCluster::new(3);
    let ring = cluster.form(3).await;
    let PrimaryDown {
        key,
        down,
        other,
        fallback,
    } = kill_a_primary(&mut cluster, &ring).await;
    written(
        cluster
            .put(fallback, &key, Some(b"v1"), None, q(2, 2, 2))
            .await,
        2,
    );
    cluster.start(down);
    wait_seen(&cluster, &[fallback], down, true).await;
    wait_until(
        "the fallback handed its copy off and dropped it",
        Duration::from_secs(30),
        || async {
            cluster.pending_hints(fallback).await == 0
                && cluster.replica(fallback, &key).await.is_none()
        },
    )
    .await;

    cluster.kill(down);
    wait_seen(&cluster, &[other, fallback], down, false).await;
    written(
        cluster
            .put(fallback, &key, Some(b"v2"), None, q(2, 2, 2))
            .await,
        2,
    );
    cluster.start(down);
    wait_seen(&cluster, &[fallback, other], down, true).await;
    wait_until(
        "the second hint is delivered",
        Duration::from_secs(30),
        || async { cluster.pending_hints(fallback).await == 0 },
    )
    .await;
    match cluster.get(other, &key, q(2, 2, 2)).await {
        Response::Value(reply) => assert_eq!(
            live(&reply.siblings),
            vec![b"v1".to_vec(), b"v2".to_vec()],
            "a blind write adds a sibling; neither acknowledged write may vanish"
        ),
        other => panic!("{other:?}"),
    }
    assert_repaired_with(&cluster, &ring, other, &[down, other], &key, b"v2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_whose_copy_moved_away_and_back_issues_fresh_dots() {
    let mut cluster = TestCluster::new(4);
    // The fourth node never hands its data back during the test, so the
    // first node is a primary again before it holds the key again.
    cluster.configure(3, "[transfers]\ninterval_ms = 600000\n");
    cluster.form(3).await;
    let candidates: Vec<String> = (0..64).map(|i| format!("move-{i}")).collect();
    for key in &candidates {
        written(cluster.put(0, key, Some(b"v1"), None, q(3, 3, 3)).await, 3);
    }

    let grown = cluster.join(3).await;
    let node_0 = cluster.nodes[0].id;
    let key = candidates
        .iter()
        .find(|key| {
            let partition = grown.partition_of_key(b"test", key.as_bytes());
            !grown.preference_list(partition, 3).is_primary(node_0)
        })
        .expect("a key node 0 is no longer a primary of")
        .clone();
    wait_until(
        "node 0 moved the key to its new owners and dropped it",
        Duration::from_secs(60),
        || async { cluster.replica(0, &key).await.is_none() },
    )
    .await;

    let shrunk = cluster
        .change_ring(0, 3, ChangeKind::Leave, &[0, 1, 2, 3])
        .await;
    assert!(shrunk
        .preference_list(shrunk.partition_of_key(b"test", key.as_bytes()), 3)
        .is_primary(node_0));
    assert!(cluster.replica(0, &key).await.is_none());
    written(cluster.put(0, &key, Some(b"v2"), None, q(3, 2, 2)).await, 2);
    assert_repaired_with(&cluster, &shrunk, 0, &[0, 1, 2], &key, b"v2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tombstone_reaped_on_some_replicas_only_never_shadows_a_new_write() {
    let mut cluster = TestCluster::new(3);
    let ring = cluster.form(3).await;
    let key = "reaped";
    let first = written(cluster.put(0, key, Some(b"v1"), None, q(3, 3, 3)).await, 3);
    written(
        cluster
            .put(0, key, None, Some(first.context), q(3, 3, 3))
            .await,
        3,
    );
    let keys = [key.to_string()];
    let digest = cluster.digests(0, &keys).await[0].expect("the tombstone");
    for index in 1..3 {
        assert_eq!(cluster.digests(index, &keys).await, vec![Some(digest)]);
    }
    // A reaper whose removal reached two of the three replicas.
    let as_node_0 = cluster.endpoint_as_node(0);
    let reap = Request::Reap {
        items: vec![KeyDigest {
            key: KeyRef {
                bucket: b"test".to_vec(),
                key: key.as_bytes().to_vec(),
            },
            digest,
        }],
    };
    for index in 0..2 {
        let reply = as_node_0
            .call(cluster.address(index), &reap, Duration::from_secs(5))
            .await
            .expect("reap answered");
        assert!(
            matches!(reply, Response::StoredMany { count: 1 }),
            "{reply:?}"
        );
        assert!(cluster.replica(index, key).await.is_none());
    }
    assert!(cluster
        .replica(2, key)
        .await
        .is_some_and(|o| o.is_deleted()));

    written(cluster.put(0, key, Some(b"v2"), None, q(3, 3, 3)).await, 3);
    assert_repaired_with(&cluster, &ring, 0, &[0, 1, 2], key, b"v2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restored_from_an_older_copy_of_its_data_issues_fresh_dots() {
    let mut cluster = TestCluster::new(3);
    let ring = cluster.form(3).await;
    let key = "restored";
    let first = written(cluster.put(0, key, Some(b"v1"), None, q(3, 3, 3)).await, 3);

    assert!(cluster.terminate(0).success());
    let backup = cluster.dir.path().join("n1-backup");
    copy_dir(&cluster.nodes[0].data_dir, &backup);
    cluster.start(0);
    cluster.wait_converged(0..3, &ring).await;
    written(
        cluster
            .put(0, key, Some(b"v2"), Some(first.context), q(3, 3, 3))
            .await,
        3,
    );

    assert!(cluster.terminate(0).success());
    std::fs::remove_dir_all(&cluster.nodes[0].data_dir).expect("remove the data directory");
    copy_dir(&backup, &cluster.nodes[0].data_dir);
    cluster.start(0);
    cluster.wait_converged(0..3, &ring).await;
    assert_eq!(replica_live(&cluster, 0, key).await, vec![b"v1".to_vec()]);
    written(cluster.put(0, key, Some(b"v3"), None, q(3, 3, 3)).await, 3);
    assert_repaired_with(&cluster, &ring, 0, &[0, 1, 2], key, b"v3").await;
    assert_repaired_with(&cluster, &ring, 0, &[0, 1, 2], key, b"v2").await;
}

/// A context in the wire layout, built by hand so that it can break the
/// invariants a real one keeps: `((lifetime, epoch), counter)` pairs.
fn raw_context(pairs: &[((u64, u64), u64)]) -> String {
    let bytes = codec::encode(&pairs.to_vec()).expect("encodes");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_context_is_refused_with_nothing_written_and_the_key_stays_readable() {
    let mut cluster = TestCluster::new(3);
    cluster.form(3).await;
    let url = format!(
        "http://{}/buckets/test/keys/bricked?n=1&w=1&r=1",
        cluster.http_address(0)
    );
    let (status, _, _) = curl(&["-X", "PUT", "--data-binary", "v0", &url]);
    assert_eq!(status, 204);
    let malformed = [
        // One actor twice, as the review sent it.
        "0202010101".to_string(),
        raw_context(&[((1, 1), 1), ((1, 1), 1)]),
        raw_context(&[((2, 1), 1), ((1, 1), 1)]),
        raw_context(&[((1, 1), 0)]),
        raw_context(&[((1, 1), u64::MAX)]),
        "zz".to_string(),
    ];
    for context in &malformed {
        let context_header = format!("X-Norn-Context: {context}");
        let (status, _, body) = curl(&[
            "-X",
            "PUT",
            "-H",
            &context_header,
            "--data-binary",
            "v1",
            &url,
        ]);
        assert_eq!(status, 400, "context {context}: {body}");
        let (status, _, body) = curl(&[&url]);
        assert_eq!(
            (status, body.as_str()),
            (200, "v0"),
            "after the context {context}"
        );
    }
    let (status, head, _) = curl(&[&url]);
    assert_eq!(status, 200);
    let good = header(&head, "x-norn-context").expect("a context");
    let context_header = format!("X-Norn-Context: {good}");
    let (status, _, _) = curl(&[
        "-X",
        "PUT",
        "-H",
        &context_header,
        "--data-binary",
        "v1",
        &url,
    ]);
    assert_eq!(status, 204);
    let (status, _, body) = curl(&[&url]);
    assert_eq!((status, body.as_str()), (200, "v1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_record_that_breaks_the_clock_invariants_is_not_served_and_is_repaired() {
    use norn_storage::{Change, DataKey, Datum, Durability, Storage, Store, StoreOptions};

    let mut cluster = TestCluster::new(3);
    let ring = cluster.form(3).await;
    let keys: Vec<String> = (0..20).map(|i| format!("checked-{i}")).collect();
    cluster.put_keys(0, &keys, b"valid", q(3, 3, 3)).await;
    let victim = DataKey::new(
        ring.partition_of_key(b"test", b"checked-3"),
        b"test",
        b"checked-3",
    )
    .expect("key");

    assert!(cluster.terminate(1).success());
    {
        // Entries out of order: the record passes its checksum (it was
        // written whole) but is no valid object.
        #[derive(serde::Serialize)]
        struct RawEntry {
            actor: (u64, u64),
            counter: u64,
            values: Vec<Sibling>,
        }
        #[derive(serde::Serialize)]
        struct RawObject {
            entries: Vec<RawEntry>,
            anonymous: Vec<Sibling>,
        }
        let invalid = codec::encode(&RawObject {
            entries: vec![
                RawEntry {
                    actor: (9, 9),
                    counter: 1,
                    values: vec![Sibling::Value(b"forged".to_vec())],
                },
                RawEntry {
                    actor: (1, 1),
                    counter: 1,
                    values: vec![],
                },
            ],
            anonymous: vec![],
        })
        .expect("encodes");
        let store = Store::open_rocks(
            &cluster.nodes[1].data_dir.join("db"),
            StoreOptions::default(),
        )
        .expect("open the stopped node's store");
        store
            .update(&victim, Durability::Synced, None, &mut |_| {
                Change::Put(Datum {
                    n: 3,
                    value: invalid.clone(),
                })
            })
            .expect("write the invalid record");
    }
    cluster.start(1);
    cluster.wait_converged(0..3, &ring).await;
    let served = cluster
        .ask(
            1,
            Request::ReplicaGet {
                bucket: b"test".to_vec(),
                key: b"checked-3".to_vec(),
            },
        )
        .await;
    assert!(
        !matches!(&served, Response::Replica { object: Some(_) }),
        "an invalid record is never served: {served:?}"
    );
    let repair = cluster.repair(1, Some(victim.partition)).await;
    assert_eq!(repair.exchanges_failed, 0, "{repair:?}");
    assert_eq!(
        replica_live(&cluster, 1, "checked-3").await,
        vec![b"valid".to_vec()]
    );
    assert_eq!(
        cluster.digests(1, &keys).await,
        cluster.digests(0, &keys).await
    );
}

/// Writes `bytes` to a file in the cluster's directory for curl to send.
fn body_file(cluster: &TestCluster, name: &str, bytes: &[u8]) -> String {
    let path = cluster.dir.path().join(name);
    std::fs::write(&path, bytes).expect("body file");
    format!("@{}", path.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_would_pass_the_object_limit_is_refused_on_every_replica() {
    let mut cluster = TestCluster::new(3);
    let ring = cluster.form(3).await;
    let six_mib: Vec<u8> = (0..6 << 20).map(|i| (i % 253) as u8).collect();
    let body = body_file(&cluster, "six-mib", &six_mib);
    let url = format!(
        "http://{}/buckets/test/keys/large?w=3",
        cluster.http_address(0)
    );
    let keys = ["large".to_string()];
    for _ in 0..2 {
        let (status, _, body) = curl(&["-X", "PUT", "--data-binary", &body, &url]);
        assert_eq!(status, 204, "{body}");
    }
    let before: Vec<Vec<Option<u64>>> = {
        let mut all = Vec::new();
        for index in 0..3 {
            all.push(cluster.digests(index, &keys).await);
        }
        all
    };
    let (status, _, reply) = curl(&["-X", "PUT", "--data-binary", &body, &url]);
    assert_eq!(status, 413, "{reply}");
    assert!(reply.contains("too_large"), "{reply}");
    for (index, digests) in before.iter().enumerate() {
        assert_eq!(
            &cluster.digests(index, &keys).await,
            digests,
            "node {index} changed on a refused write"
        );
    }
    let repair = cluster
        .repair(0, Some(ring.partition_of_key(b"test", b"large")))
        .await;
    assert_eq!(repair.exchanges_failed, 0, "{repair:?}");
    // Other requests on the same connections keep working.
    written(
        cluster.put(0, "small", Some(b"s"), None, q(3, 3, 3)).await,
        3,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_of_large_objects_moves_them_in_batches_that_fit_a_frame() {
    let mut cluster = TestCluster::new(4);
    let ring = cluster.form(3).await;
    let six_mib: Vec<u8> = (0..6 << 20).map(|i| (i % 251) as u8).collect();
    // Two keys of twelve MiB (two siblings each) in each of four partitions.
    let mut keys = Vec::new();
    let mut partitions = std::collections::BTreeSet::new();
    for i in 0..10_000 {
        let key = format!("heavy-{i}");
        let partition = ring.partition_of_key(b"test", key.as_bytes());
        let in_partition = keys
            .iter()
            .filter(|k: &&String| ring.partition_of_key(b"test", k.as_bytes()) == partition)
            .count();
        if (partitions.len() < 4 || partitions.contains(&partition)) && in_partition < 2 {
            partitions.insert(partition);
            keys.push(key);
        }
        if keys.len() == 8 {
            break;
        }
    }
    for key in &keys {
        for _ in 0..2 {
            written(
                cluster
                    .put(0, key, Some(six_mib.as_slice()), None, q(3, 3, 3))
                    .await,
                3,
            );
        }
    }

    let grown = cluster.join(3).await;
    wait_until(
        "every large key sits on exactly its new primaries",
        Duration::from_secs(120),
        || async {
            for key in &keys {
                let partition = grown.partition_of_key(b"test", key.as_bytes());
                let list = grown.preference_list(partition, 3);
                for index in 0..4 {
                    let holds =
                        cluster.digests(index, std::slice::from_ref(key)).await[0].is_some();
                    if holds != list.is_primary(cluster.nodes[index].id) {
                        return false;
                    }
                }
            }
            true
        },
    )
    .await;
    for key in &keys {
        let (primaries, _) = placement(&cluster, &grown, key, 3);
        for index in primaries {
            assert_eq!(
                cluster.replica(index, key).await.map(|o| o.value_count()),
                Some(2),
                "{key} on node {index}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_of_65536_partitions_runs_repair() {
    let mut cluster = TestCluster::new(3);
    cluster.set_partition_bits(16);
    for index in 0..3 {
        cluster.configure(index, "[data]\nhinted_handoff = false\n");
    }
    let ring = cluster.form(3).await;
    assert_eq!(ring.partition_count(), 65_536);
    cluster.kill(2);
    wait_seen(&cluster, &[0, 1], 2, false).await;
    let keys: Vec<String> = (0..200).map(|i| format!("wide-{i}")).collect();
    cluster.put_keys(0, &keys, b"v", q(3, 2, 2)).await;
    cluster.start(2);
    cluster.wait_converged(0..3, &ring).await;
    assert!(cluster.digests(2, &keys).await.iter().all(Option::is_none));

    let repair = cluster.repair(0, None).await;
    assert_eq!(repair.partitions_total, 65_536, "{repair:?}");
    assert_eq!(repair.exchanges_failed, 0, "{repair:?}");
    assert!(repair.keys_repaired >= 200, "{repair:?}");
    assert_eq!(
        cluster.digests(2, &keys).await,
        cluster.digests(0, &keys).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivered_hint_is_on_the_targets_disk_before_it_is_deleted() {
    let mut cluster = TestCluster::new(3);
    let ring = cluster.form(3).await;
    let PrimaryDown {
        key,
        down: target,
        other,
        fallback,
    } = kill_a_primary(&mut cluster, &ring).await;
    // kill -9 of the target then loses what it did not fsync, as a power
    // cut would.
    cluster.configure(target, "[storage]\nemulate_power_loss_on_kill = true\n");
    written(
        cluster
            .put(other, &key, Some(b"hinted"), None, q(2, 2, 2))
            .await,
        2,
    );
    assert_eq!(cluster.pending_hints(fallback).await, 1);
    cluster.start(target);
    wait_until("the hint is delivered", Duration::from_secs(30), || async {
        cluster.pending_hints(fallback).await == 0
    })
    .await;
    cluster.kill(target);
    cluster.start(target);
    cluster.wait_converged(0..3, &ring).await;
    assert_eq!(
        replica_live(&cluster, target, &key).await,
        vec![b"hinted".to_vec()],
        "the delivered write survived the target's power cut"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_keeps_a_copy_it_is_a_primary_of_for_the_objects_larger_n() {
    let mut cluster = TestCluster::new(3);
    let ring = cluster.form(3).await;
    let PrimaryDown {
        key,
        down,
        other,
        fallback,
    } = kill_a_primary(&mut cluster, &ring).await;
    let first = written(
        cluster
            .put(other, &key, Some(b"n2"), None, q(2, 2, 2))
            .await,
        2,
    );
    assert_eq!(cluster.pending_hints(fallback).await, 1);
    // The same key written again with N=3: every node is now one of its
    // primaries, the fallback of N=2 included.
    written(
        cluster
            .put(other, &key, Some(b"n3"), Some(first.context), q(3, 2, 2))
            .await,
        2,
    );
    cluster.start(down);
    wait_until(
        "the N=2 hint is delivered",
        Duration::from_secs(30),
        || async { cluster.pending_hints(fallback).await == 0 },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        replica_live(&cluster, fallback, &key).await,
        vec![b"n3".to_vec()],
        "a primary of the object's N keeps its copy"
    );
}

fn reap_of(key: &str, digest: u64) -> Request {
    Request::Reap {
        items: vec![KeyDigest {
            key: KeyRef {
                bucket: b"test".to_vec(),
                key: key.as_bytes().to_vec(),
            },
            digest,
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reap_removes_only_tombstones_and_never_while_a_hint_is_pending() {
    let mut cluster = TestCluster::new(3);
    let ring = cluster.form(3).await;
    written(
        cluster.put(0, "alive", Some(b"v"), None, q(3, 3, 3)).await,
        3,
    );
    let digest = cluster.digests(1, &["alive".to_string()]).await[0].expect("held");
    let as_node_0 = cluster.endpoint_as_node(0);
    let reply = as_node_0
        .call(
            cluster.address(1),
            &reap_of("alive", digest),
            Duration::from_secs(5),
        )
        .await
        .expect("answered");
    assert!(
        !matches!(reply, Response::StoredMany { count: 1 }),
        "{reply:?}"
    );
    assert_eq!(
        replica_live(&cluster, 1, "alive").await,
        vec![b"v".to_vec()]
    );

    // A tombstone on a fallback that still holds its hint.
    let PrimaryDown {
        key,
        down: _,
        other,
        fallback,
    } = kill_a_primary(&mut cluster, &ring).await;
    let first = written(
        cluster.put(other, &key, Some(b"v"), None, q(2, 2, 2)).await,
        2,
    );
    written(
        cluster
            .put(other, &key, None, Some(first.context), q(2, 2, 2))
            .await,
        2,
    );
    let digest = cluster.digests(fallback, std::slice::from_ref(&key)).await[0].expect("held");
    assert!(cluster.pending_hints(fallback).await > 0);
    let reply = as_node_0
        .call(
            cluster.address(fallback),
            &reap_of(&key, digest),
            Duration::from_secs(5),
        )
        .await
        .expect("answered");
    assert!(
        !matches!(reply, Response::StoredMany { count: 1 }),
        "{reply:?}"
    );
    assert!(cluster
        .replica(fallback, &key)
        .await
        .is_some_and(|o| o.is_deleted()));
}
