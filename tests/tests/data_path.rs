//! Multi-process tests of the data path: quorum reads and writes, sloppy
//! quorum and hinted handoff, siblings, deletes, read repair, durability.

use std::time::Duration;

use norn_clock::{Context, Sibling};
use norn_proto::{ErrorCode, GetReply, QuorumOptions, Response};
use norn_ring::Ring;
use norn_tests::cluster::{wait_until, TestCluster};

fn q(n: u8, r: u8, w: u8) -> QuorumOptions {
    QuorumOptions {
        n: Some(n),
        r: Some(r),
        w: Some(w),
        ..QuorumOptions::default()
    }
}

fn value(response: Response) -> GetReply {
    match response {
        Response::Value(reply) => reply,
        other => panic!("expected a value, got {other:?}"),
    }
}

fn live(reply: &GetReply) -> Vec<Vec<u8>> {
    let mut values: Vec<Vec<u8>> = reply
        .siblings
        .iter()
        .filter_map(|s| {
            if let Sibling::Value(v) = s {
                Some(v.clone())
            } else {
                None
            }
        })
        .collect();
    values.sort();
    values
}

/// Indexes of the primaries of `key` for N=3, then of the others.
fn placement(cluster: &TestCluster, ring: &Ring, key: &str) -> (Vec<usize>, Vec<usize>) {
    let list = ring.preference_list(ring.partition_of_key(b"test", key.as_bytes()), 3);
    let primaries = list
        .primaries()
        .iter()
        .map(|id| cluster.index_of(*id))
        .collect();
    let fallbacks = list
        .fallbacks()
        .iter()
        .map(|id| cluster.index_of(*id))
        .collect();
    (primaries, fallbacks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_of_small_and_8_mib_values_and_an_oversized_one_is_refused() {
    let mut cluster = TestCluster::new(3);
    cluster.form(3).await;
    let reply = cluster
        .put(0, "one-byte", Some(b"x"), None, q(3, 2, 2))
        .await;
    assert!(
        matches!(&reply, Response::Written(w) if w.receipt.acked() >= 2),
        "{reply:?}"
    );
    assert_eq!(
        live(&value(cluster.get(1, "one-byte", q(3, 2, 2)).await)),
        vec![b"x".to_vec()]
    );

    let big: Vec<u8> = (0..8 << 20).map(|i| (i % 251) as u8).collect();
    let reply = cluster
        .put(1, "eight-mib", Some(&big), None, q(3, 2, 2))
        .await;
    assert!(
        matches!(&reply, Response::Written(_)),
        "8 MiB write: {:?}",
        std::mem::discriminant(&reply)
    );
    assert_eq!(
        live(&value(cluster.get(2, "eight-mib", q(3, 2, 2)).await)),
        vec![big]
    );

    let too_big = vec![0u8; (8 << 20) + 1];
    let reply = cluster
        .put(0, "too-big", Some(&too_big), None, q(3, 2, 2))
        .await;
    assert!(
        matches!(&reply, Response::Error(e) if e.code == ErrorCode::TooLarge),
        "{:?}",
        std::mem::discriminant(&reply)
    );
    for index in 0..3 {
        assert_eq!(
            cluster.replica(index, "too-big").await,
            None,
            "node {index} stored a refused value"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_of_three_nodes_killed_quorums_of_two_work_and_w3_fails_with_two_acks() {
    let mut cluster = TestCluster::new(3);
    cluster.form(3).await;
    cluster.kill(2);
    wait_until(
        "node 3 is down for the others",
        Duration::from_secs(20),
        || async { !cluster.sees_up(0, 2).await && !cluster.sees_up(1, 2).await },
    )
    .await;
    let reply = cluster.put(0, "k", Some(b"v"), None, q(3, 2, 2)).await;
    assert!(
        matches!(&reply, Response::Written(w) if w.receipt.acked() == 2),
        "{reply:?}"
    );
    assert_eq!(
        live(&value(cluster.get(1, "k", q(3, 2, 2)).await)),
        vec![b"v".to_vec()]
    );
    let reply = cluster.put(1, "k3", Some(b"v"), None, q(3, 2, 3)).await;
    let Response::WriteFailed { receipt, message } = reply else {
        panic!("W=3 must fail: {reply:?}")
    };
    assert_eq!(receipt.acked(), 2, "{message}");
    assert!(message.contains("2 of"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sloppy_quorum_writes_through_fallbacks_and_hints_reach_the_restarted_primaries() {
    let mut cluster = TestCluster::new(5);
    let ring = cluster.form(5).await;
    let key = "hinted";
    let (primaries, fallbacks) = placement(&cluster, &ring, key);
    // A node outside the primaries forwards the write to a primary.
    let reply = cluster
        .put(fallbacks[0], key, Some(b"forwarded"), None, q(3, 2, 3))
        .await;
    assert!(
        matches!(&reply, Response::Written(w) if w.receipt.primaries.len() == 3),
        "{reply:?}"
    );
    let (down, coordinator) = ([primaries[1], primaries[2]], primaries[0]);
    for index in down {
        cluster.kill(index);
    }
    wait_until(
        "the coordinator sees both primaries down",
        Duration::from_secs(20),
        || async {
            !cluster.sees_up(coordinator, down[0]).await
                && !cluster.sees_up(coordinator, down[1]).await
        },
    )
    .await;
    let reply = cluster
        .put(coordinator, key, Some(b"handed"), None, q(3, 3, 3))
        .await;
    let Response::Written(written) = reply else {
        panic!("W=3 through fallbacks: {reply:?}")
    };
    assert_eq!(written.receipt.primaries.len(), 1);
    assert_eq!(
        written.receipt.fallbacks.len(),
        2,
        "the receipt names the fallbacks"
    );
    let pw3 = QuorumOptions {
        pw: Some(3),
        ..q(3, 2, 3)
    };
    let reply = cluster
        .put(coordinator, key, Some(b"strict"), None, pw3)
        .await;
    assert!(
        matches!(reply, Response::WriteFailed { .. }),
        "PW=3 must fail: {reply:?}"
    );
    let hinted: u64 = {
        let mut sum = 0;
        for &f in &fallbacks {
            sum += cluster.pending_hints(f).await;
        }
        sum
    };
    assert!(hinted >= 2, "fallbacks hold hints ({hinted})");

    for index in down {
        cluster.start(index);
    }
    wait_until(
        "the restarted primaries hold the value and no hints remain",
        Duration::from_secs(30),
        || async {
            for index in down {
                match cluster.replica(index, key).await {
                    Some(object) if object.live_values().any(|v| v == b"handed") => {}
                    _ => return false,
                }
            }
            for &f in &fallbacks {
                if cluster.pending_hints(f).await > 0 {
                    return false;
                }
            }
            true
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_become_siblings_and_a_merged_write_resolves_them() {
    let mut cluster = TestCluster::new(3);
    cluster.form(3).await;
    cluster
        .put(0, "cart", Some(b"start"), None, q(3, 2, 2))
        .await;
    let stale = value(cluster.get(0, "cart", q(3, 2, 2)).await).context;
    cluster
        .put(1, "cart", Some(b"milk"), Some(stale.clone()), q(3, 2, 2))
        .await;
    cluster
        .put(2, "cart", Some(b"eggs"), Some(stale), q(3, 2, 2))
        .await;
    let both = value(cluster.get(0, "cart", q(3, 3, 2)).await);
    assert_eq!(
        live(&both),
        vec![b"eggs".to_vec(), b"milk".to_vec()],
        "both writes survive as siblings"
    );
    cluster
        .put(
            0,
            "cart",
            Some(b"eggs+milk"),
            Some(both.context),
            q(3, 2, 2),
        )
        .await;
    assert_eq!(
        live(&value(cluster.get(1, "cart", q(3, 3, 2)).await)),
        vec![b"eggs+milk".to_vec()]
    );

    // Ten writers, each writing with the context of its own last read,
    // interleaved: never more than ten siblings.
    let mut contexts = vec![Context::default(); 10];
    for round in 0..3 {
        for (writer, context) in contexts.iter_mut().enumerate() {
            *context = value(cluster.get(writer % 3, "shared", q(3, 2, 2)).await).context;
        }
        for (writer, context) in contexts.iter().enumerate() {
            let v = format!("w{writer}r{round}");
            cluster
                .put(
                    writer % 3,
                    "shared",
                    Some(v.as_bytes()),
                    Some(context.clone()),
                    q(3, 2, 2),
                )
                .await;
        }
        let siblings = value(cluster.get(0, "shared", q(3, 3, 2)).await)
            .siblings
            .len();
        assert!(siblings <= 10, "{siblings} siblings for 10 writers");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_reads_as_not_found_and_a_stale_delete_keeps_the_concurrent_value() {
    let mut cluster = TestCluster::new(3);
    cluster.form(3).await;
    cluster.put(0, "gone", Some(b"v"), None, q(3, 2, 2)).await;
    let read = value(cluster.get(0, "gone", q(3, 2, 2)).await);
    let reply = cluster
        .put(1, "gone", None, Some(read.context), q(3, 2, 2))
        .await;
    assert!(matches!(reply, Response::Written(_)), "{reply:?}");
    assert!(value(cluster.get(2, "gone", q(3, 2, 2)).await).is_not_found());

    cluster.put(0, "kept", Some(b"old"), None, q(3, 2, 2)).await;
    let stale = value(cluster.get(0, "kept", q(3, 2, 2)).await).context;
    cluster
        .put(1, "kept", Some(b"new"), Some(stale.clone()), q(3, 2, 2))
        .await;
    cluster.put(2, "kept", None, Some(stale), q(3, 2, 2)).await;
    let after = value(cluster.get(0, "kept", q(3, 3, 2)).await);
    assert!(
        !after.is_not_found(),
        "the concurrent write survives the stale delete"
    );
    assert_eq!(live(&after), vec![b"new".to_vec()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_repair_brings_every_replica_to_the_same_object() {
    let mut cluster = TestCluster::new(3);
    cluster.form(3).await;
    cluster.kill(2);
    wait_until("node 3 is down", Duration::from_secs(20), || async {
        !cluster.sees_up(0, 2).await && !cluster.sees_up(1, 2).await
    })
    .await;
    let reply = cluster
        .put(0, "repair", Some(b"v1"), None, q(3, 1, 1))
        .await;
    assert!(matches!(reply, Response::Written(_)), "{reply:?}");
    cluster.start(2);
    wait_until("node 3 is up", Duration::from_secs(20), || async {
        cluster.sees_up(0, 2).await && cluster.sees_up(1, 2).await
    })
    .await;
    let read = value(cluster.get(0, "repair", q(3, 3, 2)).await);
    assert_eq!(live(&read), vec![b"v1".to_vec()]);
    wait_until(
        "every replica holds the same object",
        Duration::from_secs(10),
        || async {
            let first = cluster.replica(0, "repair").await;
            first.is_some()
                && cluster.replica(1, "repair").await == first
                && cluster.replica(2, "repair").await == first
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dw3_writes_survive_killing_every_node() {
    let mut cluster = TestCluster::new(3);
    cluster.form(3).await;
    let dw3 = QuorumOptions {
        dw: Some(3),
        ..q(3, 2, 3)
    };
    let mut acknowledged = Vec::new();
    for i in 0..50 {
        let key = format!("durable-{i}");
        if let Response::Written(written) = cluster
            .put(i % 3, &key, Some(key.as_bytes()), None, dw3)
            .await
        {
            assert_eq!(written.receipt.synced, 3);
            acknowledged.push(key);
        }
    }
    assert_eq!(acknowledged.len(), 50, "every DW=3 write was acknowledged");
    for index in 0..3 {
        cluster.kill(index);
    }
    for index in 0..3 {
        cluster.start(index);
    }
    for key in &acknowledged {
        for index in 0..3 {
            let object = cluster
                .replica(index, key)
                .await
                .unwrap_or_else(|| panic!("node {index} lost {key}"));
            assert!(object.live_values().any(|v| v == key.as_bytes()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hints_survive_a_kill_of_the_fallback_that_holds_them() {
    let mut cluster = TestCluster::new(5);
    let ring = cluster.form(5).await;
    let key = "survivor";
    let (primaries, fallbacks) = placement(&cluster, &ring, key);
    let (down, coordinator) = (primaries[2], primaries[0]);
    cluster.kill(down);
    wait_until(
        "the coordinator sees the primary down",
        Duration::from_secs(20),
        || async { !cluster.sees_up(coordinator, down).await },
    )
    .await;
    let reply = cluster
        .put(coordinator, key, Some(b"kept"), None, q(3, 2, 3))
        .await;
    let Response::Written(written) = reply else {
        panic!("{reply:?}")
    };
    let (fallback_id, _) = written.receipt.fallbacks[0];
    let fallback = cluster.index_of(fallback_id);
    assert!(fallbacks.contains(&fallback));
    assert_eq!(cluster.pending_hints(fallback).await, 1);
    cluster.kill(fallback);
    cluster.start(fallback);
    assert_eq!(
        cluster.pending_hints(fallback).await,
        1,
        "the hint survived SIGKILL"
    );
    cluster.start(down);
    wait_until(
        "the hint reaches the restarted primary",
        Duration::from_secs(30),
        || async {
            let holds = cluster
                .replica(down, key)
                .await
                .is_some_and(|o| o.live_values().any(|v| v == b"kept"));
            holds && cluster.pending_hints(fallback).await == 0
        },
    )
    .await;
}

/// The README's client example, run against a real cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_client_example_runs() {
    let mut cluster = TestCluster::new(3);
    cluster.form(3).await;
    let config = cluster.write_client_config();
    let example = norn_tests::cluster::bin_dir()
        .join("examples")
        .join("quickstart");
    let output = tokio::process::Command::new(&example)
        .arg(&config)
        .output()
        .await
        .expect("run the example");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}: {stdout}\n{}",
        example.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("siblings: 2") && stdout.contains("value: milk,eggs,bread"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_reach_r_when_a_replica_they_asked_is_gone() {
    let mut cluster = TestCluster::new(3);
    // Every read asks R replicas only, unless one fails or is slow.
    for index in 0..3 {
        cluster.configure(index, "[data]\nread_repair_percent = 0\n");
    }
    cluster.form(3).await;
    let keys: Vec<String> = (0..20).map(|i| format!("spare-{i}")).collect();
    for key in &keys {
        let reply = cluster
            .put(0, key, Some(key.as_bytes()), None, q(3, 2, 3))
            .await;
        assert!(matches!(reply, Response::Written(_)), "{reply:?}");
    }
    // Killed, and read from before the others see it down: a read that
    // asked it must turn to the replica it left out.
    cluster.kill(2);
    for key in &keys {
        let read = value(cluster.get(0, key, q(3, 2, 2)).await);
        assert_eq!(live(&read), vec![key.as_bytes().to_vec()], "{key}");
    }
}
