//! The HTTP API with a real HTTP client (curl).

use norn_tests::cluster::TestCluster;
use norn_tests::http::{curl, header};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_siblings_deletes_and_errors_over_http() {
    let mut cluster = TestCluster::new(3);
    cluster.form(3).await;
    let base = format!("http://{}", cluster.http_address(0));
    let url = format!("{base}/buckets/cart/keys/alice");

    let (status, head, _) = curl(&["-X", "PUT", "--data-binary", "milk", &format!("{url}?w=3")]);
    assert_eq!(status, 204);
    assert_eq!(
        header(&head, "x-norn-acked").as_deref(),
        Some("3"),
        "{head}"
    );
    assert_eq!(header(&head, "x-norn-synced").as_deref(), Some("0"));

    let (status, head, body) = curl(&[&url]);
    assert_eq!((status, body.as_str()), (200, "milk"));
    let context = header(&head, "x-norn-context").expect("a context header");

    // Two writes over the same context: 300 with both siblings.
    let context_header = format!("X-Norn-Context: {context}");
    curl(&[
        "-X",
        "PUT",
        "-H",
        &context_header,
        "--data-binary",
        "eggs",
        &url,
    ]);
    curl(&[
        "-X",
        "PUT",
        "-H",
        &context_header,
        "--data-binary",
        "bread",
        &url,
    ]);
    let (status, head, body) = curl(&[&format!("{url}?r=3")]);
    assert_eq!(status, 300, "{body}");
    let siblings: serde_json::Value = serde_json::from_str(&body).expect("JSON siblings");
    let mut values: Vec<&str> = siblings["siblings"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|s| s["value"].as_str())
        .collect();
    values.sort_unstable();
    assert_eq!(values, ["bread", "eggs"]);

    // A delete with the merged context: 404 afterwards.
    let merged = format!(
        "X-Norn-Context: {}",
        header(&head, "x-norn-context").expect("context")
    );
    let (status, _, _) = curl(&["-X", "DELETE", "-H", &merged, &url]);
    assert_eq!(status, 204);
    let (status, _, body) = curl(&[&url]);
    assert_eq!(status, 404);
    assert!(body.contains("\"not_found\""), "{body}");

    // Errors are JSON with a stable code; nothing is written.
    let (status, _, body) = curl(&[&format!("{url}?r=4")]);
    assert_eq!(status, 400);
    assert!(body.contains("\"code\":\"bad_request\""), "{body}");
    let (status, _, body) = curl(&[
        "-X",
        "PUT",
        "-H",
        "X-Norn-Context: zz",
        "--data-binary",
        "x",
        &url,
    ]);
    assert_eq!(
        (status, body.contains("bad_request")),
        (400, true),
        "{body}"
    );

    let (status, head, metrics) = curl(&[&format!("{base}/metrics")]);
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/plain"), "{head}");
    for expected in [
        "norn_requests_total{op=\"put\",outcome=\"ok\"} 3",
        "norn_requests_total{op=\"delete\",outcome=\"ok\"} 1",
        "norn_requests_total{op=\"get\",outcome=\"not_found\"} 1",
        "norn_requests_total{op=\"get\",outcome=\"bad_request\"} 1",
        "norn_request_duration_seconds_bucket{op=\"get\",outcome=\"ok\",le=\"+Inf\"} 2",
        "norn_peers_up 2",
        "norn_peers_down 0",
        "norn_hints_pending 0",
        "norn_ring_version 1",
    ] {
        assert!(
            metrics.contains(expected),
            "missing {expected:?} in\n{metrics}"
        );
    }
    for family in [
        "norn_quorum_failures_total",
        "norn_read_repairs_total",
        "norn_hints_delivered_total",
        "norn_storage_bytes",
    ] {
        assert!(
            metrics.contains(&format!("# TYPE {family}")),
            "missing {family}"
        );
    }
    let gossip_rounds: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("norn_gossip_rounds_total "))
        .and_then(|v| v.parse().ok())
        .expect("gossip rounds");
    assert!(gossip_rounds > 0);

    for path in ["/health", "/ring", "/members"] {
        let (status, _, body) = curl(&[&format!("{base}{path}")]);
        assert_eq!(status, 200, "{path}");
        serde_json::from_str::<serde_json::Value>(&body)
            .unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_bearer_token_is_required_except_for_health() {
    let mut cluster = TestCluster::new(1);
    cluster.set_http_token(0, "0123456789abcdef-token");
    cluster.start(0);
    let base = format!("http://{}", cluster.http_address(0));
    let (status, _, body) = curl(&[&format!("{base}/members")]);
    assert_eq!(status, 401);
    assert!(body.contains("\"unauthorized\""), "{body}");
    let (status, _, _) = curl(&[
        "-H",
        "Authorization: Bearer 0123456789abcdef-token",
        &format!("{base}/members"),
    ]);
    assert_eq!(status, 200);
    let (status, _, _) = curl(&[&format!("{base}/health")]);
    assert_eq!(status, 200);
}
