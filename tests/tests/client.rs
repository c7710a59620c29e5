//! The Rust client against real nodes: routing by the ring, and retries.

use std::time::Duration;

use norn_client::{Client, ClientOptions, Policy, QuorumOptions};
use norn_net::TlsFiles;
use norn_tests::cluster::TestCluster;

fn options(cluster: &TestCluster, policy: Policy) -> ClientOptions {
    let dir = cluster.dir.path();
    ClientOptions {
        seeds: (0..cluster.nodes.len())
            .map(|i| cluster.address(i).to_string())
            .collect(),
        tls: TlsFiles {
            ca_cert: dir.join("ca.pem"),
            cert: dir.join("admin.pem"),
            key: dir.join("admin.key"),
        },
        admin_tls: None,
        policy,
        timeout: Duration::from_secs(3),
        ring_refresh: Duration::from_secs(1),
        default_n: 3,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_policy_reads_and_writes_and_survives_a_dead_replica() {
    let mut cluster = TestCluster::new(3);
    cluster.form(3).await;
    for policy in [
        Policy::RoundRobin,
        Policy::LeastOutstanding,
        Policy::LowestLatency,
    ] {
        let client = Client::connect(options(&cluster, policy))
            .await
            .expect("connect");
        assert_eq!(
            client
                .ring()
                .expect("the client learned the ring")
                .members()
                .len(),
            3
        );
        for i in 0..10 {
            let key = format!("{policy:?}-{i}");
            let written = client
                .put(
                    "c",
                    &key,
                    key.clone().into_bytes(),
                    None,
                    QuorumOptions::default(),
                )
                .await
                .expect("put");
            assert!(written.receipt.quorum_met);
            let read = client
                .get("c", &key, QuorumOptions::default())
                .await
                .expect("get");
            assert_eq!(read.siblings.len(), 1, "{policy:?}");
        }
    }
    // With one replica dead and never contacted by this client, every GET
    // and PUT still succeeds: a connection that cannot be made is retried
    // on the next replica (nothing was written), whatever the order.
    cluster.kill(2);
    let client = Client::connect(ClientOptions {
        seeds: vec![cluster.address(0).to_string()],
        ..options(&cluster, Policy::RoundRobin)
    })
    .await
    .expect("connect");
    for i in 0..6 {
        let key = format!("after-kill-{i}");
        let reply = client
            .put("c", &key, b"v".to_vec(), None, QuorumOptions::default())
            .await;
        assert!(reply.is_ok(), "put {i}: {reply:?}");
        let read = client.get("c", &key, QuorumOptions::default()).await;
        assert!(read.is_ok(), "get {i}: {read:?}");
    }
}

/// norn-bench runs every workload against a real cluster and prints one
/// JSON object with its throughput and percentiles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn norn_bench_runs_each_workload_and_prints_json() {
    let mut cluster = TestCluster::new(3);
    cluster.form(3).await;
    let config = cluster.write_client_config();
    let bench = norn_tests::cluster::bin_dir().join("norn-bench");
    let runs = [
        ("a", "uniform", true),
        ("b", "zipfian", false),
        ("c", "uniform", false),
        ("f", "zipfian", false),
    ];
    for (workload, distribution, preload) in runs {
        let mut command = tokio::process::Command::new(&bench);
        command.arg("--config").arg(&config).args([
            "--workload",
            workload,
            "--distribution",
            distribution,
            "--keys",
            "200",
            "--ops",
            "300",
            "--in-flight",
            "4",
            "--value-bytes",
            "100",
            "--json",
        ]);
        if preload {
            command.arg("--preload");
        }
        let output = command.output().await.expect("norn-bench runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{workload}: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let report: serde_json::Value =
            serde_json::from_str(stdout.trim()).expect("one JSON object");
        assert!(report["ops_per_s"].as_f64().expect("ops_per_s") > 0.0);
        assert_eq!(report["operations"], 300, "{workload}: {report}");
        for field in ["p50_us", "p95_us", "p99_us", "p999_us"] {
            assert!(report[field].as_u64().is_some(), "{field}");
        }
        assert_eq!(
            report["errors"],
            serde_json::json!({}),
            "{workload}: {report}"
        );
    }
}
