//! What an unadmitted sender is heard about (itself alone), and counters
//! from the wire.

use norn_membership::{GossipMessage, Member, MemberState, Membership, MembershipConfig, Sender};
use norn_ring::{NodeId, Ring, RingMember};

fn member(i: u64, incarnation: u64, heartbeat: u64) -> Member {
    Member {
        id: NodeId(i),
        name: format!("n{i}"),
        address: format!("10.0.0.{i}:7000"),
        zone: "z".into(),
        weight: 1,
        state: MemberState::Active,
        incarnation,
        heartbeat,
        handoffs: Vec::new(),
        proof: None,
    }
}

fn digest(from: u64, members: Vec<Member>) -> GossipMessage {
    GossipMessage::Digest {
        from: NodeId(from),
        members,
        staged: Vec::new(),
        ring_version: 0,
        ring_fingerprint: 0,
    }
}

fn node_one() -> Membership {
    Membership::new(member(1, 1, 0), None, MembershipConfig::default(), 7)
}

#[test]
fn an_unadmitted_sender_is_heard_about_itself_only() {
    let mut one = node_one();
    let mut forged = member(3, 7, 7);
    forged.address = "10.6.6.6:7000".into();
    one.receive(
        0,
        digest(9, vec![member(9, 1, 1), forged]),
        Sender::Unadmitted,
    );
    assert!(one.member(NodeId(9)).is_some(), "a joiner announces itself");
    assert!(
        one.member(NodeId(3)).is_none(),
        "but speaks for no one else"
    );
    // It may pass a ring on (until rings are signed, refusing would
    // protect nothing and could strand a committed ring).
    let member = RingMember {
        zone: "z".into(),
        weight: 1,
    };
    let ring = Ring::new(4, [(NodeId(3), member)])
        .expect("ring")
        .with_version(99);
    let push = GossipMessage::RingPush {
        from: NodeId(9),
        ring,
    };
    one.receive(20, push, Sender::Unadmitted);
    assert_eq!(one.ring().map(Ring::version), Some(99));
}

#[test]
fn counters_from_the_wire_saturate() {
    let mut one = node_one();
    one.receive(0, digest(2, vec![member(1, u64::MAX, 0)]), Sender::Admitted);
    assert_eq!(one.me().incarnation, u64::MAX);
}
