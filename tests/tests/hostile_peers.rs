//! The hostile-peer suite: a real cluster, and each attack from its own
//! certificate. Every attack must be refused, logged with the caller's
//! identity, counted in `norn_requests_refused_total`, and change nothing
//! (the test reads the replicas, the hint queues and the ring afterwards).
//! Certificates of another CA, self-signed and missing ones are refused at
//! the handshake (`tests/cluster.rs`); forged rings, revoked certificates
//! and rotation are in `tests/ring_trust.rs`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use norn_clock::{ActorId, Context, Object, Sibling};
use norn_membership::{GossipMessage, Member, MemberState};
use norn_net::Endpoint;
use norn_proto::{ClientRole, ErrorCode, KeyDigest, KeyObject, KeyRef, Request, Response};
use norn_ring::NodeId;
use norn_tests::cluster::{wait_until, TestCluster};
use norn_tests::http::curl;

/// A node id no certificate names.
const MADE_UP: NodeId = NodeId(0xbad);

fn key(name: &str) -> KeyRef {
    KeyRef {
        bucket: b"test".to_vec(),
        key: name.as_bytes().to_vec(),
    }
}

/// An object under a dot no coordinator issued.
fn forged_object() -> Object {
    Object::new().update(
        &Context::default(),
        ActorId::new(0xf0f0, 1),
        Sibling::Value(b"forged".to_vec()),
    )
}

/// The writes, removals and ring moves a node would make, all forged.
fn replica_attacks(victim: &str) -> Vec<Request> {
    vec![
        Request::ReplicaPut {
            bucket: b"test".to_vec(),
            key: victim.as_bytes().to_vec(),
            n: 3,
            object: forged_object(),
            hint_for: Some(MADE_UP),
            sync: false,
        },
        Request::ReplicaPutMany {
            n: 3,
            ring_version: 1,
            items: vec![KeyObject {
                key: key(victim),
                object: forged_object(),
            }],
            admission: None,
        },
        Request::Reap {
            items: vec![KeyDigest {
                key: key("kept"),
                digest: 0,
            }],
        },
    ]
}

fn assert_forbidden(response: &Response, what: &str) {
    assert!(
        matches!(response, Response::Error(e) if e.code == ErrorCode::Forbidden),
        "{what} was not refused: {response:?}"
    );
}

/// The node's `norn_requests_refused_total`.
fn refused_count(cluster: &TestCluster, index: usize) -> u64 {
    cluster.metric(index, "norn_requests_refused_total") as u64
}

/// Nothing the attacks aimed at changed: no replica holds `victim`, `kept`
/// is still there, no hint queue names the made-up node, and the ring is
/// the one formed.
async fn assert_unchanged(cluster: &TestCluster, victim: &str, ring_version: u64) {
    for index in 0..3 {
        assert_eq!(
            cluster.replica(index, victim).await,
            None,
            "node {index} holds {victim}"
        );
        assert!(
            cluster.replica(index, "kept").await.is_some(),
            "node {index} lost kept"
        );
        let Response::Hints(queues) = cluster.ask(index, Request::AdminHints).await else {
            panic!("hints of node {index}");
        };
        assert!(
            queues.iter().all(|(target, ..)| *target != MADE_UP),
            "{queues:?}"
        );
        let ring = cluster.ring(index).await.expect("ring");
        assert_eq!(ring.version(), ring_version, "node {index}'s ring");
    }
}

/// Requests only an admin client may make (of those a client sends).
fn admin_requests() -> Vec<Request> {
    vec![
        Request::AdminPropose { revoke: Vec::new() },
        Request::AdminStage {
            node: "n2".into(),
            kind: norn_membership::ChangeKind::Leave,
        },
        Request::AdminRepair { partition: None },
        Request::AdminHints,
        Request::ReplicaGet {
            bucket: b"test".to_vec(),
            key: b"kept".to_vec(),
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_cannot_act_as_nodes_and_data_clients_cannot_administer() {
    let mut cluster = TestCluster::new(3);
    let ring = cluster.form(3).await;
    cluster
        .put(0, "kept", Some(b"v"), None, Default::default())
        .await;
    let admin = cluster.endpoint_as_client("mallory-admin", ClientRole::Admin);
    let data = cluster.endpoint_as_client("mallory-data", ClientRole::Data);
    let before = refused_count(&cluster, 0);

    let gossip = Request::Gossip(GossipMessage::RingPull {
        from: cluster.nodes[1].id,
    });
    for (endpoint, who) in [(&admin, "an admin client"), (&data, "a data client")] {
        for request in replica_attacks("forged-by-client").iter().chain([&gossip]) {
            let response = cluster.ask_as(endpoint, 0, request).await;
            assert_forbidden(&response, &format!("{who}'s {request:?}"));
        }
    }
    let admin_only = admin_requests();
    for request in &admin_only {
        assert_forbidden(
            &cluster.ask_as(&data, 0, request).await,
            &format!("{request:?}"),
        );
    }
    // What each may do still works: a data client reads and routes, an
    // admin inspects.
    let read = Request::Get {
        bucket: b"test".to_vec(),
        key: b"kept".to_vec(),
        options: Default::default(),
        timeout_ms: None,
    };
    assert!(matches!(
        cluster.ask_as(&data, 0, &read).await,
        Response::Value(_)
    ));
    assert!(matches!(
        cluster.ask_as(&data, 0, &Request::AdminRing).await,
        Response::Ring(Some(_))
    ));
    assert!(matches!(
        cluster.ask_as(&admin, 0, &Request::AdminHints).await,
        Response::Hints(_)
    ));

    assert_unchanged(&cluster, "forged-by-client", ring.version()).await;
    let refused = refused_count(&cluster, 0) - before;
    assert_eq!(refused, 2 * 4 + admin_only.len() as u64);
    let log = cluster.log(0);
    for identity in ["admin client mallory-admin", "data client mallory-data"] {
        let lines = log
            .lines()
            .filter(|l| l.contains("refused a request") && l.contains(identity))
            .count();
        assert!(lines >= 1, "no refusal of {identity} logged");
    }
    let reap_lines = log
        .lines()
        .filter(|l| l.contains("mallory-admin") && l.contains("\"reap\""))
        .count();
    assert_eq!(reap_lines, 1, "each refusal kind is logged once per caller");
}

/// Node 0's record of member `id`.
async fn member_record(cluster: &TestCluster, id: NodeId) -> Member {
    cluster
        .members(0)
        .await
        .into_iter()
        .find(|m| m.member.id == id)
        .expect("a member")
        .member
}

/// A digest from `stranger` announcing itself and relaying a rewrite of
/// `victim`'s record: another address, a later life, leaving.
fn stranger_digest(stranger: NodeId, victim: &Member) -> Request {
    let forged = Member {
        address: "127.0.0.1:9".into(),
        incarnation: victim.incarnation + 5,
        state: MemberState::Leaving,
        ..victim.clone()
    };
    let own = Member {
        id: stranger,
        name: "stranger".into(),
        address: "127.0.0.1:9".into(),
        zone: "zone-0".into(),
        weight: 1,
        state: MemberState::Active,
        incarnation: 1,
        heartbeat: 1,
        handoffs: Vec::new(),
        proof: None,
    };
    Request::Gossip(GossipMessage::Digest {
        from: stranger,
        members: vec![own, forged],
        staged: Vec::new(),
        ring_version: 0,
        ring_fingerprint: 0,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unadmitted_node_may_announce_itself_and_nothing_more() {
    let mut cluster = TestCluster::new(3);
    let ring = cluster.form(3).await;
    cluster
        .put(0, "kept", Some(b"v"), None, Default::default())
        .await;
    // Issued by the cluster's CA, never joined.
    let stranger_index = cluster.add_node();
    let stranger = cluster.endpoint_as_node(stranger_index);
    let stranger_id = cluster.nodes[stranger_index].id;
    let before = refused_count(&cluster, 0);

    let write = Request::Put {
        bucket: b"test".to_vec(),
        key: b"forged-by-stranger".to_vec(),
        value: Some(b"x".to_vec()),
        context: None,
        options: Default::default(),
        timeout_ms: None,
        forwarded: true,
    };
    // A hand-over proves admission with an admin-signed ring naming its
    // sender: one no admin signed, or one that does not name it, is no
    // proof.
    let hand_over = |admission: Option<norn_ring::Ring>, victim: &str| Request::ReplicaPutMany {
        n: 3,
        ring_version: ring.version(),
        items: vec![KeyObject {
            key: key(victim),
            object: forged_object(),
        }],
        admission: admission.map(Box::new),
    };
    let naming_stranger = ring
        .with_member(
            stranger_id,
            norn_ring::RingMember {
                zone: "zone-0".into(),
                weight: 1,
            },
        )
        .expect("a ring naming the stranger");
    let unproven = [
        hand_over(Some(naming_stranger.clone()), "forged-by-stranger"),
        hand_over(Some(cluster.sign(&ring)), "forged-by-stranger"),
    ];
    let attacks = replica_attacks("forged-by-stranger");
    for request in attacks.iter().chain(&unproven).chain([&write]) {
        let response = cluster.ask_as(&stranger, 0, request).await;
        assert_forbidden(&response, &format!("an unadmitted node's {request:?}"));
    }
    // With the proof, its hand-over is taken (merged, as from a member
    // that left).
    let proven = hand_over(Some(cluster.sign(&naming_stranger)), "handed-over");
    let taken = cluster.ask_as(&stranger, 0, &proven).await;
    assert!(matches!(taken, Response::StoredMany { .. }), "{taken:?}");
    // Its digest is heard about itself only: the record of n2 it relays
    // (another address, a later life, leaving) changes nothing.
    let n2 = cluster.nodes[1].id;
    let honest_n2 = member_record(&cluster, n2).await;
    let digest = stranger_digest(stranger_id, &honest_n2);
    assert!(matches!(
        cluster.ask_as(&stranger, 0, &digest).await,
        Response::Ack
    ));
    let seen_n2 = member_record(&cluster, n2).await;
    assert_eq!(seen_n2.address, honest_n2.address);
    assert_eq!(seen_n2.state, MemberState::Active);
    assert!(seen_n2.incarnation < honest_n2.incarnation + 5);
    // A spoofed sender id is refused whoever sends it.
    let spoofed = Request::Gossip(GossipMessage::RingPull { from: n2 });
    assert_forbidden(
        &cluster.ask_as(&stranger, 0, &spoofed).await,
        "a spoofed node id",
    );

    assert_unchanged(&cluster, "forged-by-stranger", ring.version()).await;
    assert_eq!(refused_count(&cluster, 0) - before, 7);
    assert!(cluster
        .log(0)
        .lines()
        .any(|l| l.contains("refused a request") && l.contains(&stranger_id.to_string())));
}

/// The node's `norn_gossip_records_refused_total`.
fn records_refused(cluster: &TestCluster, index: usize) -> u64 {
    cluster.metric(index, "norn_gossip_records_refused_total") as u64
}

/// A digest from member `from` carrying its own record and `relayed`.
fn relay(own: &Member, relayed: Member) -> Request {
    Request::Gossip(GossipMessage::Digest {
        from: own.id,
        members: vec![own.clone(), relayed],
        staged: Vec::new(),
        ring_version: 0,
        ring_fingerprint: 0,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admitted_node_relays_member_records_but_cannot_rewrite_them() {
    let mut cluster = TestCluster::new(3);
    cluster.form(3).await;
    let (n2, n3) = (cluster.nodes[1].id, cluster.nodes[2].id);
    let as_n2 = cluster.endpoint_as_node(1);
    let own = member_record(&cluster, n2).await;
    let honest = member_record(&cluster, n3).await;
    let before = records_refused(&cluster, 0);

    // A rewrite of n3 (another address, a later life, leaving), carrying
    // n3's real signature of its current identity.
    let forged = Member {
        address: "127.0.0.1:9".into(),
        incarnation: honest.incarnation + 5,
        state: MemberState::Leaving,
        heartbeat: honest.heartbeat + 1_000,
        ..honest.clone()
    };
    let reply = cluster.ask_as(&as_n2, 0, &relay(&own, forged)).await;
    assert!(matches!(reply, Response::Ack), "{reply:?}");
    let seen = member_record(&cluster, n3).await;
    assert_eq!(seen.address, honest.address);
    assert_eq!(seen.state, MemberState::Active);
    assert!(seen.incarnation < honest.incarnation + 5);
    assert_eq!(records_refused(&cluster, 0) - before, 1);
    assert!(cluster
        .log(0)
        .lines()
        .any(|l| l.contains("dropped relayed member records") && l.contains(&n2.to_string())));

    // A change n3 signed itself is carried by the relay.
    let n3_files = |ext: &str| {
        cluster
            .dir
            .path()
            .join(format!("{}.{ext}", cluster.nodes[2].name))
    };
    let read = |path: std::path::PathBuf| std::fs::read_to_string(path).expect("n3's files");
    let n3_key = norn_trust::RecordSigner::from_pem(&read(n3_files("pem")), &read(n3_files("key")))
        .expect("n3's key");
    let mut later = Member {
        incarnation: honest.incarnation + 1,
        heartbeat: 0,
        proof: None,
        ..honest.clone()
    };
    later.proof = Some(Box::new(n3_key.sign_now(&later).expect("signed")));
    let reply = cluster.ask_as(&as_n2, 0, &relay(&own, later)).await;
    assert!(matches!(reply, Response::Ack), "{reply:?}");
    assert!(member_record(&cluster, n3).await.incarnation > honest.incarnation);
    assert_eq!(records_refused(&cluster, 0) - before, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dialer_refuses_a_node_that_is_not_the_one_it_dialed() {
    let mut cluster = TestCluster::new(2);
    cluster.form(2).await;
    let as_n1 = cluster.endpoint_as_node(0);
    let wrong = as_n1
        .call_node(
            MADE_UP,
            cluster.address(1),
            &Request::Ping,
            Duration::from_secs(3),
        )
        .await;
    assert!(
        matches!(&wrong, Err(norn_net::NetError::PeerIdentity { reason, .. }) if reason.contains("dialed")),
        "{wrong:?}"
    );
    let right = as_n1
        .call_node(
            cluster.nodes[1].id,
            cluster.address(1),
            &Request::Ping,
            Duration::from_secs(3),
        )
        .await;
    assert!(matches!(right, Ok(Response::Pong)), "{right:?}");
}

/// Opens `count` connections that each send half a request line and stop.
fn half_requests(http: std::net::SocketAddr, count: usize) -> Vec<TcpStream> {
    (0..count)
        .filter_map(|_| {
            let mut stream = TcpStream::connect(http).ok()?;
            stream.write_all(b"GET /hea").ok()?;
            Some(stream)
        })
        .collect()
}

/// Whether the server closed `stream` (a read sees the end, or a reset).
fn closed_by_server(mut stream: &TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => true,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_http_clients_are_cut_off_and_health_and_metrics_stay_reachable() {
    let mut cluster = TestCluster::new(1);
    cluster.configure(
        0,
        "[http]\nheader_timeout_ms = 2000\nbody_timeout_ms = 2000\nmax_connections = 400\n",
    );
    cluster.form(1).await;
    let http = cluster.http_address(0);
    let slow = half_requests(http, 300);
    assert_eq!(slow.len(), 300);
    // The node answers its probes while the slow clients hang on.
    let (status, _, _) = curl(&[&format!("http://{http}/health")]);
    assert_eq!(status, 200);
    let (status, _, body) = curl(&[&format!("http://{http}/metrics")]);
    assert_eq!(status, 200);
    assert!(body.contains("norn_http_connections_open"), "{body}");
    // Every slow connection is closed by the node once its head is late.
    wait_until(
        "the node closed every slow connection",
        Duration::from_secs(20),
        || {
            let all_closed = slow.iter().all(closed_by_server);
            async move { all_closed }
        },
    )
    .await;

    // A body declared too large is refused before it is sent; one that
    // stalls is answered 408.
    let url = format!("http://{http}/buckets/test/keys/big");
    let (status, _, body) = curl(&[
        "-X",
        "PUT",
        "-H",
        "content-length: 1073741824",
        "-H",
        "expect:",
        "--data-binary",
        "x",
        &url,
    ]);
    assert_eq!(status, 413, "{body}");
    let mut stalled = TcpStream::connect(http).expect("connect");
    stalled
        .write_all(
            b"PUT /buckets/test/keys/stall HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nhalf",
        )
        .expect("write");
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut answer = String::new();
    let _ = stalled.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let (status, _, _) = curl(&[&format!("http://{http}/buckets/test/keys/stall?n=1&r=1")]);
    assert_eq!(status, 404, "nothing of the stalled write was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_are_closed_at_accept_and_counted() {
    let mut cluster = TestCluster::new(1);
    cluster.configure(
        0,
        "[http]\nheader_timeout_ms = 2000\nmax_connections = 20\n",
    );
    cluster.form(1).await;
    let http = cluster.http_address(0);
    let held = half_requests(http, 30);
    std::thread::sleep(Duration::from_millis(500));
    let closed_at_once = held.iter().filter(|s| closed_by_server(s)).count();
    assert!(
        closed_at_once >= 10,
        "{closed_at_once} of 30 closed at once"
    );
    // Once the held ones time out, the node is reachable again and says
    // what it refused.
    drop(held);
    let metrics = format!("http://{http}/metrics");
    wait_until("metrics reachable again", Duration::from_secs(10), || {
        let reachable = std::process::Command::new("curl")
            .args(["-sf", "--max-time", "2", &metrics])
            .status()
            .is_ok_and(|s| s.success());
        async move { reachable }
    })
    .await;
    let (_, _, body) = curl(&[&metrics]);
    let refused: u64 = body
        .lines()
        .find_map(|l| l.strip_prefix("norn_http_connections_refused_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the counter");
    assert!(refused >= 10, "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_directories_are_private_and_keys_readable_by_others_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let mut cluster = TestCluster::new(1);
    cluster.form(1).await;
    let mode = std::fs::metadata(&cluster.nodes[0].data_dir)
        .expect("data dir")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    let key = cluster.dir.path().join("admin.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let config = cluster.write_client_config();
    let output = std::process::Command::new(norn_tests::cluster::bin_dir().join("norn"))
        .args([
            "--config",
            config.to_str().expect("utf-8"),
            "admin",
            "members",
        ])
        .output()
        .expect("norn runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("readable by others"), "{stderr}");
}

/// A validity window `from_days..to_days` around now (negative: past).
fn window(from_days: i64, to_days: i64) -> norn_net::certs::Validity {
    let at = |days: i64| {
        let offset = Duration::from_secs(days.unsigned_abs() * 86_400);
        if days < 0 {
            std::time::SystemTime::now() - offset
        } else {
            std::time::SystemTime::now() + offset
        }
    };
    norn_net::certs::Validity {
        not_before: at(from_days),
        not_after: at(to_days),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_not_yet_valid_certificates_are_refused() {
    use norn_net::certs::{issue_client_valid, issue_node_valid, write_pem};
    let mut cluster = TestCluster::new(2);
    cluster.form(1).await;
    let dir = cluster.dir.path().to_path_buf();
    for (name, validity) in [("expired", window(-3, -1)), ("early", window(1, 3))] {
        let issued = issue_client_valid(&cluster.ca, name, ClientRole::Admin, validity)
            .expect("certificate");
        let files = norn_net::TlsFiles {
            ca_cert: dir.join("ca.pem"),
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        };
        write_pem(&files.cert, &issued.cert_pem, false).expect("cert");
        write_pem(&files.key, &issued.key_pem, true).expect("key");
        let tls = norn_net::tls::TlsMaterial::load(&files).expect("load");
        let endpoint =
            Endpoint::client(&tls, norn_net::EndpointLimits::default()).expect("endpoint");
        let outcome = endpoint
            .call(cluster.address(0), &Request::Ping, Duration::from_secs(3))
            .await;
        assert!(
            outcome.is_err(),
            "the {name} certificate was accepted: {outcome:?}"
        );
    }
    // A node whose own certificate expired refuses to start, and says why.
    let expired = issue_node_valid(&cluster.ca, "n2", cluster.nodes[1].id, window(-3, -1))
        .expect("node certificate");
    for (file, pem, private) in [
        ("n2.pem", &expired.cert_pem, false),
        ("n2.key", &expired.key_pem, true),
    ] {
        let path = dir.join(file);
        std::fs::remove_file(&path).expect("remove");
        write_pem(&path, pem, private).expect("write");
    }
    let output = cluster.run_to_exit(1);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("expired"), "{stderr}");
    let seconds = cluster.metric(0, "norn_certificate_expiry_seconds");
    assert!(seconds > 300.0 * 86_400.0, "{seconds}");
}
