//! Multi-process tests of the cluster layer: real `nornd` processes on
//! loopback, QUIC with mutual TLS, gossip, failure detection, ring changes.

use std::time::{Duration, Instant};

use norn_net::certs;
use norn_net::tls::TlsMaterial;
use norn_net::{Endpoint, EndpointLimits, TlsFiles};
use norn_proto::{Request, Response};
use norn_ring::NodeId;
use norn_tests::cluster::{wait_until, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_form_a_cluster_and_agree_on_the_ring() {
    let mut cluster = TestCluster::new(3);
    let ring = cluster.form(3).await;
    assert_eq!(ring.version(), 1);
    assert_eq!(ring.members().len(), 3);
    let fingerprints: Vec<u64> = {
        let mut all = Vec::new();
        for index in 0..3 {
            all.push(cluster.ring(index).await.expect("ring").fingerprint());
        }
        all
    };
    assert!(
        fingerprints.iter().all(|f| *f == ring.fingerprint()),
        "rings differ: {fingerprints:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_is_reported_down_within_10_s_and_returns_with_its_id() {
    let mut cluster = TestCluster::new(3);
    cluster.form(3).await;
    cluster.kill(2);
    let killed_at = Instant::now();
    wait_until(
        "nodes 1 and 2 report node 3 down",
        Duration::from_secs(20),
        || async { !cluster.sees_up(0, 2).await && !cluster.sees_up(1, 2).await },
    )
    .await;
    let took = killed_at.elapsed();
    println!("node 3 reported down after {took:?}");
    assert!(
        took <= Duration::from_secs(10),
        "reported down after {took:?}"
    );

    cluster.start(2);
    wait_until(
        "node 3 is up again everywhere",
        Duration::from_secs(20),
        || async { cluster.sees_up(0, 2).await && cluster.sees_up(1, 2).await },
    )
    .await;
    let members = cluster.members(0).await;
    let returned = members
        .iter()
        .find(|m| m.member.name == "n3")
        .expect("n3 is a member");
    assert_eq!(
        returned.member.id, cluster.nodes[2].id,
        "same id after restart"
    );
    assert_eq!(
        returned.member.incarnation, 2,
        "a restart is a new incarnation"
    );
}

/// Calls node 0 with `tls`; the call must fail.
async fn assert_refused(cluster: &TestCluster, tls: &TlsMaterial, what: &str) {
    let endpoint = Endpoint::client(tls, EndpointLimits::default()).expect("endpoint");
    let outcome = endpoint
        .call(cluster.address(0), &Request::Ping, Duration::from_secs(3))
        .await;
    assert!(outcome.is_err(), "{what} was accepted: {outcome:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_self_signed_and_missing_certificates_are_refused_and_logged() {
    let mut cluster = TestCluster::new(1);
    cluster.start(0);
    let dir = cluster.dir.path().to_path_buf();
    let save = |name: &str, issued: &certs::Issued, ca_pem: &str| {
        let files = TlsFiles {
            ca_cert: dir.join(format!("{name}-ca.pem")),
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        };
        certs::write_pem(&files.ca_cert, ca_pem, false).expect("ca");
        certs::write_pem(&files.cert, &issued.cert_pem, false).expect("cert");
        certs::write_pem(&files.key, &issued.key_pem, true).expect("key");
        TlsMaterial::load(&files).expect("load")
    };
    // A node certificate from another CA (it trusts the real CA, so only the
    // node's verdict on its certificate is tested).
    let other_ca = certs::new_ca("other").expect("other CA");
    let foreign = certs::issue_node(&other_ca, "intruder", NodeId(99)).expect("foreign cert");
    assert_refused(
        &cluster,
        &save("foreign", &foreign, &cluster.ca.cert_pem),
        "a certificate of another CA",
    )
    .await;
    // A self-signed certificate: a CA of its own presented as a leaf.
    let self_signed = certs::new_ca("self").expect("self-signed");
    assert_refused(
        &cluster,
        &save("self", &self_signed, &cluster.ca.cert_pem),
        "a self-signed certificate",
    )
    .await;
    // No certificate at all.
    let anonymous = TlsMaterial::anonymous(&dir.join("ca.pem")).expect("anonymous");
    assert_refused(&cluster, &anonymous, "a client without a certificate").await;

    wait_until(
        "the node logged three refusals",
        Duration::from_secs(10),
        || async { cluster.log(0).matches("refused connection").count() >= 3 },
    )
    .await;
    // The node still serves a proper client.
    assert!(matches!(
        cluster.call(0, Request::Ping).await,
        Ok(Response::Pong)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fourth_node_joins_through_plan_and_commit_and_every_node_holds_the_ring() {
    let mut cluster = TestCluster::new(4);
    let first = cluster.form(3).await;
    cluster.start(3);
    let seed = cluster.address(0).to_string();
    let staged = cluster.call(3, Request::AdminJoin { seed }).await;
    assert!(matches!(staged, Ok(Response::Staged(_))), "{staged:?}");
    let joiner = cluster.nodes[3].id;
    wait_until("node 0 plans the join", Duration::from_secs(30), || async {
        match cluster.call(0, Request::AdminPlan).await {
            Ok(Response::Plan(plan)) => {
                plan.refusal.is_none() && plan.nodes.iter().any(|n| n.id == joiner && n.gained > 0)
            }
            _ => false,
        }
    })
    .await;
    let Ok(Response::Plan(plan)) = cluster.call(0, Request::AdminPlan).await else {
        panic!("plan")
    };
    for node in &plan.nodes {
        if node.id != joiner {
            assert_eq!(node.gained, 0, "only the joiner gains partitions: {node:?}");
        }
    }
    let committed = cluster.commit(1).await;
    assert!(
        matches!(committed, Ok(Response::Committed { version: 2 })),
        "{committed:?}"
    );
    let ring = cluster.ring(1).await.expect("ring");
    assert_eq!(ring.members().len(), 4);
    assert!(ring.supersedes(&first));
    cluster.wait_converged(0..4, &ring).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_node_cleanly_and_it_keeps_its_identity() {
    let mut cluster = TestCluster::new(1);
    cluster.start(0);
    let status = cluster.terminate(0);
    assert!(status.success(), "exit status {status}");
    assert!(
        cluster.log(0).contains("stopped"),
        "log:\n{}",
        cluster.log(0)
    );
    cluster.start(0);
    let members = cluster.members(0).await;
    assert_eq!(members[0].member.id, cluster.nodes[0].id);
    assert_eq!(members[0].member.incarnation, 2);
}

#[tokio::test]
async fn a_node_refuses_to_start_with_a_key_readable_by_others() {
    use std::os::unix::fs::PermissionsExt;
    let cluster = TestCluster::new(1);
    let key = cluster.dir.path().join("n1.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let output = cluster.run_to_exit(0);
    assert!(
        !output.status.success(),
        "nornd started with a world-readable key"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("readable by others") && stderr.contains("chmod 600"),
        "stderr: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_claiming_another_nodes_id_is_refused() {
    use norn_membership::GossipMessage;
    use norn_proto::ErrorCode;
    let mut cluster = TestCluster::new(1);
    cluster.start(0);
    let dir = cluster.dir.path().to_path_buf();
    let impostor = certs::issue_node(&cluster.ca, "impostor", NodeId(0x77)).expect("cert");
    let files = TlsFiles {
        ca_cert: dir.join("ca.pem"),
        cert: dir.join("impostor.pem"),
        key: dir.join("impostor.key"),
    };
    certs::write_pem(&files.cert, &impostor.cert_pem, false).expect("cert");
    certs::write_pem(&files.key, &impostor.key_pem, true).expect("key");
    let endpoint = Endpoint::client(
        &TlsMaterial::load(&files).expect("tls"),
        EndpointLimits::default(),
    )
    .expect("endpoint");
    let lie = GossipMessage::RingPull {
        from: cluster.nodes[0].id,
    };
    let reply = endpoint
        .call(
            cluster.address(0),
            &Request::Gossip(lie),
            Duration::from_secs(3),
        )
        .await;
    assert!(
        matches!(&reply, Ok(Response::Error(e)) if e.code == ErrorCode::Forbidden),
        "{reply:?}"
    );
    let truth = GossipMessage::RingPull { from: NodeId(0x77) };
    let reply = endpoint
        .call(
            cluster.address(0),
            &Request::Gossip(truth),
            Duration::from_secs(3),
        )
        .await;
    assert!(matches!(reply, Ok(Response::Ack)), "{reply:?}");
    assert!(cluster
        .log(0)
        .contains("refused gossip claiming another node's id"));
}

fn status(response: Response) -> norn_proto::NodeStatus {
    match response {
        Response::Status(status) => status,
        other => panic!("status: {other:?}"),
    }
}

/// Whether every node of `nodes` holds a ring of `count` members.
async fn members_on_every_node(
    cluster: &TestCluster,
    count: usize,
    nodes: std::ops::Range<usize>,
) -> bool {
    for index in nodes {
        match cluster.ring(index).await {
            Some(ring) if ring.members().len() == count => {}
            _ => return false,
        }
    }
    true
}

/// `/health/ready` of node `index`: its HTTP status and body.
fn ready(cluster: &TestCluster, index: usize) -> (u16, String) {
    let url = format!("http://{}/health/ready", cluster.http_address(index));
    let (code, _, body) = norn_tests::http::curl(&[&url]);
    (code, body)
}

/// Nodes with `cluster.auto_join` stage their own joins and the autopilot
/// commits them: the first ring once three have, a fourth node on its
/// own. `norn admin leave --wait` takes it out again and returns once its
/// data moved: every key is then on its three primaries, the node does not
/// join again, a leave that would leave fewer than N nodes is refused, and
/// the departed node, stopped, is no outage in the failure history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_join_by_themselves_and_leave_safely() {
    let mut cluster = TestCluster::new(4);
    for index in 0..3 {
        cluster.configure(index, "[cluster]\nauto_join = true\n");
    }
    // The fourth node hands off slowly (about 5 s for its share of the
    // keys), so that a leave that did not wait would be caught.
    cluster.configure(
        3,
        "[cluster]\nauto_join = true\n[transfers]\nmax_bytes_per_sec = 65536\n",
    );
    for index in 0..3 {
        cluster.start(index);
    }
    let (code, body) = ready(&cluster, 0);
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("holds no ring yet"), "{body}");
    let autopilot = cluster.spawn_norn(
        &[
            "admin",
            "autopilot",
            "--min-nodes",
            "3",
            "--interval-ms",
            "300",
        ],
        "autopilot.log",
    );
    wait_until(
        "the autopilot commits the first ring",
        Duration::from_secs(60),
        || members_on_every_node(&cluster, 3, 0..3),
    )
    .await;
    wait_until("every node is ready", Duration::from_secs(30), || async {
        (0..3).all(|index| ready(&cluster, index).0 == 200)
    })
    .await;
    let keys: Vec<String> = (0..200).map(|i| format!("k{i}")).collect();
    let options = norn_proto::QuorumOptions {
        w: Some(2),
        ..Default::default()
    };
    cluster.put_keys(0, &keys, &[7; 2048], options).await;

    cluster.start(3);
    wait_until(
        "the fourth node joins by itself",
        Duration::from_secs(60),
        || members_on_every_node(&cluster, 4, 0..4),
    )
    .await;
    wait_until(
        "the join's transfers end",
        Duration::from_secs(60),
        || async {
            for index in 0..4 {
                if status(cluster.ask(index, Request::AdminStatus).await).handoffs_pending > 0 {
                    return false;
                }
            }
            true
        },
    )
    .await;

    let left = cluster.norn(&["admin", "leave", "n4", "--wait", "--timeout-s", "60"]);
    assert!(left.contains("handed off all its data"), "{left}");

    let n4 = status(cluster.ask(3, Request::AdminStatus).await);
    assert!(
        !n4.in_ring && n4.departed && n4.handoffs_pending == 0,
        "{n4:?}"
    );
    drop(autopilot);
    let mut args = vec!["admin", "replicas", "test"];
    args.extend(keys.iter().map(String::as_str));
    let placed = cluster.norn_output(&args);
    assert!(
        placed.status.success(),
        "after the leave: {}{}",
        String::from_utf8_lossy(&placed.stdout),
        String::from_utf8_lossy(&placed.stderr)
    );
    // A few gossip rounds later the departed node has not staged a join.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let n4 = status(cluster.ask(3, Request::AdminStatus).await);
    assert!(!n4.change_staged, "{n4:?}");
    cluster.kill(3);

    let refused = cluster.norn_output(&["admin", "leave", "n3", "--timeout-s", "3"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "a leave below N went through");
    assert!(stderr.contains("fewer than N = 3"), "{stderr}");
    let ring = cluster.ring(0).await.expect("ring");
    assert_eq!(ring.members().len(), 3);

    // Stopped after it left, the node is not an outage of the cluster's.
    wait_until(
        "n1 sees the stopped n4 down",
        Duration::from_secs(30),
        || async { !cluster.sees_up(0, 3).await },
    )
    .await;
    let Response::FailureHistory(history) = cluster.ask(0, Request::AdminFailureHistory).await
    else {
        panic!("no failure history");
    };
    let n4 = history
        .peers
        .iter()
        .find(|p| p.node == cluster.nodes[3].id)
        .expect("n1 watched n4 while it was a member");
    assert_eq!((n4.down_events, n4.down_ms), (0, 0), "{n4:?}");
}
