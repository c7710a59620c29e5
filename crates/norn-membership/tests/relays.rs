//! Who may change a member's record: only the member itself; relays carry
//! heartbeats, and an unadmitted sender is heard about itself alone.

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
fn a_relay_cannot_rewrite_the_address_of_a_member_heard_first_hand() {
    let mut one = node_one();
    one.receive(0, digest(2, vec![member(2, 1, 1)]), Sender::Admitted);
    let mut forged = member(2, 9, 100);
    forged.address = "10.6.6.6:7000".into();
    forged.state = MemberState::Leaving;
    one.receive(
        10,
        digest(3, vec![member(3, 1, 1), forged]),
        Sender::Admitted,
    );
    let two = one.member(NodeId(2)).expect("known");
    assert_eq!(two.address, "10.0.0.2:7000");
    assert_eq!((two.incarnation, two.state), (1, MemberState::Active));
    // The same life's heartbeat does travel by relay.
    one.receive(20, digest(3, vec![member(2, 1, 5)]), Sender::Admitted);
    assert_eq!(one.member(NodeId(2)).expect("known").heartbeat, 5);
}

#[test]
fn a_member_heard_only_by_relay_is_learnt_and_then_corrected_by_its_own_word() {
    let mut one = node_one();
    let mut relayed = member(2, 4, 50);
    relayed.address = "10.6.6.6:7000".into();
    one.receive(
        0,
        digest(3, vec![member(3, 1, 1), relayed]),
        Sender::Admitted,
    );
    assert_eq!(
        one.member(NodeId(2)).expect("learnt").address,
        "10.6.6.6:7000"
    );
    one.receive(10, digest(2, vec![member(2, 1, 1)]), Sender::Admitted);
    assert_eq!(
        one.member(NodeId(2)).expect("known").address,
        "10.0.0.2:7000"
    );
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
