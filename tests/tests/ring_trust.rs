//! Who may change the ring, and revocation: a node adopts only rings an
//! admin of the cluster's CA signed (whoever relays them), and refuses the
//! certificates its ring revokes at the handshake, closing their open
//! connections. Certificates are reloaded on SIGHUP.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use norn_membership::GossipMessage;
use norn_net::certs::{self, Issued, Validity};
use norn_net::Endpoint;
use norn_proto::{ClientRole, ErrorCode, Request, Response};
use norn_ring::{NodeId, Ring, RingMember, RingProof};
use norn_tests::cluster::{wait_until, TestCluster};
use norn_trust::{fingerprint_of_pem, Authority, RingSigner, TrustError};
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// `ring` with a proof that `issued` (any certificate and its key, not
/// only an admin's) signed it, made the way [`RingSigner`] makes one.
fn signed_by_any(issued: &Issued, ring: &Ring, signed_at: u64) -> Ring {
    let key = PrivatePkcs8KeyDer::from_pem_slice(issued.key_pem.as_bytes()).expect("key");
    let random = ring::rand::SystemRandom::new();
    let pair = EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_ASN1_SIGNING,
        key.secret_pkcs8_der(),
        &random,
    )
    .expect("key pair");
    let mut message = b"norn ring proof v1\0".to_vec();
    message.extend_from_slice(&signed_at.to_be_bytes());
    message.extend_from_slice(&ring.signed_content());
    let signature = pair.sign(&random, &message).expect("signature");
    let der = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).expect("certificate");
    ring.with_proof(RingProof {
        signer: der.as_ref().to_vec(),
        signed_at,
        signature: signature.as_ref().to_vec(),
    })
}

fn small_ring() -> Ring {
    let member = RingMember {
        zone: "z".into(),
        weight: 1,
    };
    Ring::new(4, [(NodeId(1), member)]).expect("ring")
}

fn days(days: i64) -> SystemTime {
    let offset = Duration::from_secs(days.unsigned_abs() * 86_400);
    if days < 0 {
        SystemTime::now() - offset
    } else {
        SystemTime::now() + offset
    }
}

#[test]
fn a_ring_proof_names_an_admin_of_this_ca_and_covers_the_whole_ring() {
    let ca = certs::new_ca("proofs").expect("CA");
    let authority = Authority::from_pem(&ca.cert_pem).expect("authority");
    let admin = certs::issue_client(&ca, "alice", ClientRole::Admin).expect("admin");
    let signer = RingSigner::from_pem(&admin.cert_pem, &admin.key_pem).expect("signer");
    let ring = small_ring();
    let none = Default::default();

    let signed = signer.sign_now(&ring).expect("signed");
    assert_eq!(authority.check(&signed, &none), Ok("alice".to_string()));
    assert_eq!(authority.check(&ring, &none), Err(TrustError::Unsigned));

    // Moved onto another ring (a later version), the proof fails.
    let forged = ring
        .with_version(9)
        .with_proof(signed.proof().expect("proof").clone());
    assert_eq!(
        authority.check(&forged, &none),
        Err(TrustError::BadSignature)
    );

    // A data client, a node, and another CA's admin cannot sign.
    let data = certs::issue_client(&ca, "bob", ClientRole::Data).expect("data");
    assert!(matches!(
        RingSigner::from_pem(&data.cert_pem, &data.key_pem),
        Err(TrustError::NotAdmin)
    ));
    let by_data = signed_by_any(&data, &ring, now_secs());
    assert_eq!(authority.check(&by_data, &none), Err(TrustError::NotAdmin));
    let node = certs::issue_node(&ca, "n1", NodeId(1)).expect("node");
    let by_node = signed_by_any(&node, &ring, now_secs());
    assert!(authority.check(&by_node, &none).is_err());
    let other_ca = certs::new_ca("elsewhere").expect("CA");
    let outsider = certs::issue_client(&other_ca, "eve", ClientRole::Admin).expect("admin");
    let by_outsider = signed_by_any(&outsider, &ring, now_secs());
    assert!(matches!(
        authority.check(&by_outsider, &none),
        Err(TrustError::Untrusted { .. })
    ));

    // A revoked signer is refused, by the ring itself or by the receiver's.
    let alice = fingerprint_of_pem(&admin.cert_pem).expect("fingerprint");
    let revoking_itself = signer
        .sign_now(&ring.with_revoked([alice]).expect("revoked"))
        .expect("signed");
    assert_eq!(
        authority.check(&revoking_itself, &none),
        Err(TrustError::Revoked)
    );
    let revoked_here = [alice].into_iter().collect();
    assert_eq!(
        authority.check(&signed, &revoked_here),
        Err(TrustError::Revoked)
    );

    // A ring outlives its signer's certificate: checked at signing time.
    let expired = Validity {
        not_before: days(-400),
        not_after: days(-35),
    };
    let old_admin =
        certs::issue_client_valid(&ca, "carol", ClientRole::Admin, expired).expect("admin");
    let old_signer = RingSigner::from_pem(&old_admin.cert_pem, &old_admin.key_pem).expect("signer");
    let signed_then = days(-100)
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let old_ring = old_signer.sign(&ring, signed_then).expect("signed");
    assert_eq!(authority.check(&old_ring, &none), Ok("carol".to_string()));
    let signed_now = old_signer.sign_now(&ring).expect("signed");
    assert!(matches!(
        authority.check(&signed_now, &none),
        Err(TrustError::Untrusted { .. })
    ));
}

fn ring_push(from: NodeId, ring: Ring) -> Request {
    Request::Gossip(GossipMessage::RingPush { from, ring })
}

fn refused_count(cluster: &TestCluster, index: usize) -> u64 {
    metric(cluster, index, "norn_requests_refused_total")
}

fn metric(cluster: &TestCluster, index: usize, name: &str) -> u64 {
    cluster.metric(index, name) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_no_admin_signed_is_refused_from_members_and_strangers_alike() {
    let mut cluster = TestCluster::new(3);
    let formed = cluster.form(3).await;
    let stranger_index = cluster.add_node();
    let stranger = cluster.endpoint_as_node(stranger_index);
    let stranger_id = cluster.nodes[stranger_index].id;
    let member = cluster.endpoint_as_node(1);
    let member_id = cluster.nodes[1].id;
    let before = refused_count(&cluster, 0);

    // A ring that hands every partition to the stranger.
    let takeover = Ring::new(
        formed.partition_bits(),
        [(
            stranger_id,
            RingMember {
                zone: "z".into(),
                weight: 1,
            },
        )],
    )
    .expect("ring")
    .with_version(formed.version() + 10);
    let stranger_key = &cluster.nodes[stranger_index].issued;
    let forgeries = [
        ("unsigned", takeover.clone()),
        (
            "signed by a node",
            signed_by_any(stranger_key, &takeover, now_secs()),
        ),
        (
            "an admin's proof of another ring",
            takeover.with_proof(cluster.sign(&formed).proof().expect("proof").clone()),
        ),
    ];
    for (what, ring) in &forgeries {
        for (sender, id) in [(&stranger, stranger_id), (&member, member_id)] {
            let response = cluster
                .ask_as(sender, 0, &ring_push(id, ring.clone()))
                .await;
            assert!(
                matches!(&response, Response::Error(e) if e.code == ErrorCode::Forbidden),
                "{what} from {id}: {response:?}"
            );
        }
    }
    assert_eq!(refused_count(&cluster, 0) - before, 6);
    for index in 0..3 {
        let ring = cluster.ring(index).await.expect("ring");
        assert_eq!(ring, formed, "node {index}'s ring");
    }
    assert!(cluster
        .log(0)
        .lines()
        .any(|l| l.contains("refused a ring no admin signed")));

    // An admin-signed ring, though, spreads from whoever holds it: the
    // stranger relays one (it revokes a made-up certificate).
    let Response::Proposed(next) = cluster
        .ask(
            0,
            Request::AdminPropose {
                revoke: vec![[7; 32]],
            },
        )
        .await
    else {
        panic!("a proposal");
    };
    let next = cluster.sign(&next);
    let relayed = cluster
        .ask_as(&stranger, 2, &ring_push(stranger_id, next.clone()))
        .await;
    assert!(matches!(relayed, Response::Ack), "{relayed:?}");
    cluster.wait_converged(0..3, &next).await;
}

/// Whether `endpoint` can reach node `index` (a fresh handshake).
async fn reachable(endpoint: &Endpoint, cluster: &TestCluster, index: usize) -> bool {
    endpoint
        .call(
            cluster.address(index),
            &Request::Ping,
            Duration::from_secs(2),
        )
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_certificate_is_refused_everywhere_within_seconds() {
    let mut cluster = TestCluster::new(3);
    cluster.form(3).await;
    let mallory = certs::issue_client(&cluster.ca, "mallory", ClientRole::Data).expect("cert");
    let client = cluster.endpoint_with(&mallory, "mallory");
    for index in 0..3 {
        assert!(
            reachable(&client, &cluster, index).await,
            "before, node {index}"
        );
    }
    let fingerprint = fingerprint_of_pem(&mallory.cert_pem).expect("fingerprint");
    let started = Instant::now();
    let committed = cluster.commit_revoking(0, vec![fingerprint]).await;
    assert!(
        matches!(committed, Ok(Response::Committed { .. })),
        "{committed:?}"
    );
    // Its open connections are closed and new ones refused at the
    // handshake, on every node.
    wait_until(
        "every node refuses the revoked certificate",
        Duration::from_secs(20),
        || async {
            let mut refused = true;
            for index in 0..3 {
                refused &= !reachable(&client, &cluster, index).await;
            }
            refused
        },
    )
    .await;
    eprintln!("revoked everywhere after {:?}", started.elapsed());
    let fresh = cluster.endpoint_with(&mallory, "mallory-again");
    for index in 0..3 {
        assert!(
            !reachable(&fresh, &cluster, index).await,
            "after, node {index}"
        );
        // Refused, counted, and logged once with the identity it names.
        assert!(metric(&cluster, index, "norn_quic_handshakes_refused_total") >= 1);
        let refusals = cluster
            .log(index)
            .lines()
            .filter(|l| l.contains("refused a revoked certificate") && l.contains("mallory"))
            .count();
        assert_eq!(refusals, 1, "node {index}");
    }
    // Others are still served.
    let admin = cluster.endpoint_as_client("other", ClientRole::Data);
    for index in 0..3 {
        assert!(
            reachable(&admin, &cluster, index).await,
            "others, node {index}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_takes_a_new_certificate_on_sighup_without_restarting() {
    let mut cluster = TestCluster::new(3);
    let ring = cluster.form(3).await;
    let year = metric(&cluster, 0, "norn_certificate_expiry_seconds");
    assert!(year > 300 * 86_400, "{year}");
    let old = cluster.nodes[0].issued.clone();
    let renewed = certs::issue_node_valid(
        &cluster.ca,
        &cluster.nodes[0].name,
        cluster.nodes[0].id,
        Validity::days_from_now(90),
    )
    .expect("renewed");
    cluster.replace_certificate(0, &renewed);
    cluster.hangup(0);
    wait_until(
        "node 0 serves the renewed certificate",
        Duration::from_secs(20),
        || async { metric(&cluster, 0, "norn_certificate_expiry_seconds") < 91 * 86_400 },
    )
    .await;
    // Its member record, as its peers hold it, is signed with the new key.
    let renewed_fingerprint = fingerprint_of_pem(&renewed.cert_pem).expect("fingerprint");
    let n1 = cluster.nodes[0].id;
    wait_until(
        "peers hold n1's record signed anew",
        Duration::from_secs(20),
        || async {
            cluster.members(1).await.iter().any(|m| {
                m.member.id == n1
                    && m.member.proof.as_ref().is_some_and(|p| {
                        norn_trust::fingerprint(&p.certificate) == renewed_fingerprint
                    })
            })
        },
    )
    .await;
    // `norn admin members` shows what each member presents now.
    let members: Vec<serde_json::Value> =
        serde_json::from_str(&cluster.norn(&["admin", "members", "--json"])).expect("json");
    let days_of = |name: &str| {
        members
            .iter()
            .find(|m| m["member"]["name"] == name)
            .and_then(|m| m["certificate_days_left"].as_i64())
            .unwrap_or_else(|| panic!("{name} in {members:?}"))
    };
    assert!((88..=90).contains(&days_of("n1")), "{members:?}");
    assert!((363..=365).contains(&days_of("n2")), "{members:?}");
    // Revoking the old certificate cuts nobody off: node 0's connections
    // now carry the new one, both ways.
    let old_fingerprint = fingerprint_of_pem(&old.cert_pem).expect("fingerprint");
    let committed = cluster.commit_revoking(1, vec![old_fingerprint]).await;
    assert!(
        matches!(committed, Ok(Response::Committed { .. })),
        "{committed:?}"
    );
    let revoked = cluster.ring(1).await.expect("ring");
    assert!(revoked.supersedes(&ring));
    cluster.wait_converged(0..3, &revoked).await;
    // Writes to all three replicas, coordinated by the rotated node (its
    // outgoing connections) and by another (its incoming ones).
    for coordinator in [0, 1] {
        let written = cluster
            .put(
                coordinator,
                &format!("after-rotation-{coordinator}"),
                Some(b"v"),
                None,
                norn_proto::QuorumOptions {
                    w: Some(3),
                    ..Default::default()
                },
            )
            .await;
        assert!(
            matches!(&written, Response::Written(reply) if reply.receipt.quorum_met),
            "coordinated by node {coordinator}: {written:?}"
        );
    }
    // A certificate naming another node is refused, and the node keeps
    // serving with its own.
    let impostor = certs::issue_node(&cluster.ca, "n1", NodeId(0xbad)).expect("impostor");
    cluster.replace_certificate(0, &impostor);
    cluster.hangup(0);
    wait_until(
        "node 0 logs the refused reload",
        Duration::from_secs(10),
        || async { cluster.log(0).contains("certificates not reloaded") },
    )
    .await;
    assert!(metric(&cluster, 0, "norn_certificate_expiry_seconds") < 91 * 86_400);
}
