//! Predictions from a live cluster's own latencies: every node times its
//! replica traffic, `AdminLatencies` returns it (to admins only), and
//! `norn admin pbs`, `/pbs` and `norn admin model` answer from it and from
//! the ring; every node records the outages it sees and its repair work,
//! and `norn admin model` takes its inputs from them.

use std::time::Duration;

use norn_proto::{ClientRole, ErrorCode, LatencyBuckets, QuorumOptions, Request, Response};
use norn_tests::cluster::{wait_until, TestCluster};
use norn_tests::http::curl;

fn samples(histogram: &LatencyBuckets) -> u64 {
    histogram.buckets.iter().map(|(_, count)| count).sum()
}

fn quorum(r: u8, w: u8) -> QuorumOptions {
    QuorumOptions {
        r: Some(r),
        w: Some(w),
        ..QuorumOptions::default()
    }
}

/// The predictions of a PBS table: three rows for N=3, each probability
/// in [0, 1], never falling as t grows, and nearly 1 by 500 ms.
fn check_table(table: &serde_json::Value) {
    let rows = table["predictions"].as_array().expect("predictions");
    let pairs: Vec<(u64, u64)> = rows
        .iter()
        .map(|p| (p["r"].as_u64().expect("r"), p["w"].as_u64().expect("w")))
        .collect();
    assert_eq!(pairs, [(1, 1), (1, 2), (2, 1)], "{table}");
    for row in rows {
        let fresh: Vec<f64> = row["fresh"]
            .as_array()
            .expect("fresh")
            .iter()
            .map(|f| f["probability"].as_f64().expect("a probability"))
            .collect();
        assert!(fresh.iter().all(|p| (0.0..=1.0).contains(p)), "{row}");
        assert!(fresh.windows(2).all(|p| p[0] <= p[1]), "{row}");
        assert!(fresh.last().is_some_and(|&p| p > 0.99), "{row}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_measures_its_replica_latencies_and_predicts_from_them() {
    let mut cluster = TestCluster::new(3);
    cluster.form(3).await;
    let keys: Vec<String> = (0..200).map(|i| format!("k{i}")).collect();
    cluster.put_keys(0, &keys, b"v", quorum(2, 3)).await;
    cluster.get_keys(0, &keys, quorum(3, 2)).await;

    // Node 0 coordinated: it timed round trips to both peers, which timed
    // serving them.
    let Response::Latencies(coordinator) = cluster.ask(0, Request::AdminLatencies).await else {
        panic!("node 0 answers with its latencies");
    };
    assert_eq!(coordinator.peers.len(), 2, "{coordinator:?}");
    for peer in &coordinator.peers {
        assert!(samples(&peer.write_round_trip) >= 200, "{peer:?}");
        assert!(samples(&peer.read_round_trip) >= 200, "{peer:?}");
    }
    for replica in [1, 2] {
        let Response::Latencies(served) = cluster.ask(replica, Request::AdminLatencies).await
        else {
            panic!("node {replica} answers with its latencies");
        };
        assert!(samples(&served.write_service) >= 200, "{served:?}");
        assert!(samples(&served.read_service) >= 200, "{served:?}");
    }
    let data = cluster.endpoint_as_client("reader", ClientRole::Data);
    match cluster.ask_as(&data, 0, &Request::AdminLatencies).await {
        Response::Error(e) => assert_eq!(e.code, ErrorCode::Forbidden),
        other => panic!("a data client read the latencies: {other:?}"),
    }

    let table: serde_json::Value =
        serde_json::from_str(&cluster.norn(&["admin", "pbs", "--json", "--trials", "20000"]))
            .expect("JSON");
    check_table(&table);
    assert_eq!(table["source"], "live");
    assert!(
        table["samples"]["write_round_trips"].as_u64() >= Some(400),
        "{table}"
    );

    let (status, _, body) = curl(&[&format!(
        "http://{}/pbs?trials=20000",
        cluster.http_address(0)
    )]);
    assert_eq!(status, 200, "{body}");
    check_table(&serde_json::from_str(&body).expect("JSON"));
    let (status, _, body) = curl(&[&format!("http://{}/pbs?n=0", cluster.http_address(0))]);
    assert_eq!(status, 400, "{body}");

    let model: serde_json::Value =
        serde_json::from_str(&cluster.norn(&["admin", "model", "--json"])).expect("JSON");
    assert_eq!(model["loss"]["query"]["nodes"], 3, "{model}");
    assert_eq!(model["loss"]["query"]["replica_sets"], 1, "{model}");
    let loss = model["loss"]["key_loss_per_year"]
        .as_f64()
        .expect("a probability");
    assert!(loss > 0.0 && loss < 1e-6, "{model}");
}

/// With a node that coordinated nothing, no samples: a clear error, not a
/// made-up table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prediction_without_measurements_says_so() {
    let mut cluster = TestCluster::new(3);
    cluster.form(3).await;
    let (status, _, body) = curl(&[&format!("http://{}/pbs", cluster.http_address(0))]);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("measured yet"), "{body}");
}

/// A node's outage, seen by the others, and the repair that brought its
/// replicas back are what `norn admin model` measures its failure rate,
/// node availability and repair time from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_measures_outages_and_repairs_on_the_cluster() {
    let mut cluster = TestCluster::new(3);
    for index in 0..3 {
        cluster.configure(index, "[data]\nhinted_handoff = false\n");
    }
    cluster.form(3).await;
    cluster.kill(2);
    wait_until("node 2 is seen down", Duration::from_secs(20), || async {
        !cluster.sees_up(0, 2).await && !cluster.sees_up(1, 2).await
    })
    .await;
    let keys: Vec<String> = (0..300).map(|i| format!("missed{i}")).collect();
    cluster
        .put_keys(0, &keys, b"written while node 2 was down", quorum(1, 2))
        .await;
    cluster.start(2);
    wait_until("node 2 is seen up", Duration::from_secs(20), || async {
        cluster.sees_up(0, 2).await && cluster.sees_up(1, 2).await
    })
    .await;
    let repair = cluster.repair(0, None).await;
    assert!(repair.keys_repaired >= 300, "{repair:?}");

    let Response::FailureHistory(history) = cluster.ask(0, Request::AdminFailureHistory).await
    else {
        panic!("node 0 answers with its failure history");
    };
    let node_2 = cluster.nodes[2].id;
    let outages = history
        .peers
        .iter()
        .find(|p| p.node == node_2)
        .expect("node 0 watched node 2");
    assert_eq!(outages.down_events, 1, "{history:?}");
    assert!(
        outages.down_ms > 0 && outages.down_ms < outages.watched_ms,
        "{history:?}"
    );
    assert!(
        history.repair_bytes > 0 && history.repair_busy_ms > 0,
        "{history:?}"
    );
    let data = cluster.endpoint_as_client("reader", ClientRole::Data);
    match cluster
        .ask_as(&data, 0, &Request::AdminFailureHistory)
        .await
    {
        Response::Error(e) => assert_eq!(e.code, ErrorCode::Forbidden),
        other => panic!("a data client read the failure history: {other:?}"),
    }

    let model: serde_json::Value =
        serde_json::from_str(&cluster.norn(&["admin", "model", "--json"])).expect("JSON");
    let inputs = &model["inputs"];
    for name in ["failures_per_year", "availability", "repair_hours"] {
        assert_eq!(inputs[name]["source"], "measured", "{name}: {model}");
    }
    assert!(
        model["measured"]["down_events"].as_u64() >= Some(1),
        "{model}"
    );
    let up = inputs["availability"]["value"].as_f64().expect("a share");
    assert!(up > 0.0 && up < 1.0, "{model}");
    let given: serde_json::Value = serde_json::from_str(&cluster.norn(&[
        "admin",
        "model",
        "--json",
        "--failures-per-year",
        "0.1",
    ]))
    .expect("JSON");
    assert_eq!(
        given["inputs"]["failures_per_year"]["source"], "flag",
        "{given}"
    );
    assert_eq!(given["loss"]["query"]["failures_per_year"], 0.1, "{given}");
}
