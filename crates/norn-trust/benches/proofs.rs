//! What signatures cost: signing and checking a ring (256 partitions, 5
//! members) and a member record, medians of 5 runs of 200 each.
//! `cargo bench -p norn-trust --bench proofs`.

use std::time::Instant;

use norn_membership::{Member, MemberState};
use norn_proto::ClientRole;
use norn_ring::{NodeId, Ring, RingMember};
use norn_trust::{Authority, RecordSigner, RingSigner};

const RUNS: usize = 5;
const EACH: u32 = 200;

/// Median microseconds per call of `f`.
fn median_us(mut f: impl FnMut()) -> f64 {
    let mut runs: Vec<f64> = (0..RUNS)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..EACH {
                f();
            }
            started.elapsed().as_secs_f64() * 1e6 / f64::from(EACH)
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[RUNS / 2]
}

fn main() {
    let ca = norn_net::certs::new_ca("bench").expect("CA");
    let admin = norn_net::certs::issue_client(&ca, "admin", ClientRole::Admin).expect("admin");
    let node = norn_net::certs::issue_node(&ca, "n1", NodeId(1)).expect("node");
    let authority = Authority::from_pem(&ca.cert_pem).expect("authority");
    let ring_signer = RingSigner::from_pem(&admin.cert_pem, &admin.key_pem).expect("signer");
    let record_signer = RecordSigner::from_pem(&node.cert_pem, &node.key_pem).expect("signer");
    let members = (1..=5).map(|i| {
        let member = RingMember {
            zone: format!("z{i}"),
            weight: 1,
        };
        (NodeId(i), member)
    });
    let ring = Ring::new(8, members).expect("ring");
    let signed = ring_signer.sign_now(&ring).expect("signed");
    let mut member = Member {
        id: NodeId(1),
        name: "n1".into(),
        address: "127.0.0.1:7000".into(),
        zone: "z1".into(),
        weight: 1,
        state: MemberState::Active,
        incarnation: 3,
        heartbeat: 10,
        handoffs: Vec::new(),
        proof: None,
    };
    member.proof = Some(Box::new(record_signer.sign_now(&member).expect("signed")));
    let none = Default::default();
    println!("{:<28} {:>10}", "operation", "us/call");
    let sign_ring = median_us(|| drop(ring_signer.sign_now(&ring)));
    println!("{:<28} {sign_ring:>10.1}", "sign a ring");
    let check_ring = median_us(|| assert!(authority.check(&signed, &none).is_ok()));
    println!("{:<28} {check_ring:>10.1}", "check a ring");
    let sign_record = median_us(|| drop(record_signer.sign_now(&member)));
    println!("{:<28} {sign_record:>10.1}", "sign a member record");
    let check_record = median_us(|| assert!(authority.check_record(&member, &none).is_ok()));
    println!("{:<28} {check_record:>10.1}", "check a member record");
}
