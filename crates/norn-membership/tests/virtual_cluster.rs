//! Whole clusters of membership state machines on virtual time, over an
//! in-memory network with seeded delay and loss. Scenarios are data: a list
//! of steps, after chitchat's cluster tests.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use norn_membership::{
    Effect, GossipMessage, Member, MemberState, Membership, MembershipConfig, Sender,
};
use norn_ring::{NodeId, Ring, RingMember};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Virtual milliseconds between simulation steps.
const STEP_MS: u64 = 10;

struct Node {
    membership: Membership,
    running: bool,
    next_tick_ms: u64,
    /// Peers this node currently considers down, from its effects.
    down: BTreeSet<NodeId>,
    /// When each peer was last reported down.
    down_since: BTreeMap<NodeId, u64>,
}

struct Cluster {
    nodes: BTreeMap<NodeId, Node>,
    addresses: BTreeMap<String, NodeId>,
    in_flight: BinaryHeap<Reverse<(u64, u64, String)>>,
    messages: BTreeMap<u64, GossipMessage>,
    next_message: u64,
    now_ms: u64,
    loss: f64,
    rng: SmallRng,
    seed: u64,
}

fn address(i: u64) -> String {
    format!("10.0.0.{i}:7000")
}

fn member(i: u64, incarnation: u64) -> Member {
    Member {
        id: NodeId(i),
        name: format!("n{i}"),
        address: address(i),
        zone: format!("z{i}"),
        weight: 1,
        state: MemberState::Active,
        incarnation,
        heartbeat: 0,
        handoffs: Vec::new(),
        proof: None,
    }
}

impl Cluster {
    /// `size` nodes that know node 1 as their seed.
    fn new(size: u64, loss: f64, seed: u64) -> Cluster {
        let mut cluster = Cluster {
            nodes: BTreeMap::new(),
            addresses: BTreeMap::new(),
            in_flight: BinaryHeap::new(),
            messages: BTreeMap::new(),
            next_message: 0,
            now_ms: 0,
            loss,
            rng: SmallRng::seed_from_u64(seed),
            seed,
        };
        for i in 1..=size {
            cluster.start(i, 1);
        }
        cluster
    }

    fn start(&mut self, i: u64, incarnation: u64) {
        let ring = self
            .nodes
            .get(&NodeId(i))
            .and_then(|n| n.membership.ring().cloned());
        let mut membership = Membership::new(
            member(i, incarnation),
            ring,
            MembershipConfig::default(),
            self.seed ^ i ^ (incarnation << 32),
        );
        membership.add_seeds([address(1)]);
        let offset = self
            .rng
            .gen_range(0..MembershipConfig::default().gossip_interval_ms);
        self.addresses.insert(address(i), NodeId(i));
        self.nodes.insert(
            NodeId(i),
            Node {
                membership,
                running: true,
                next_tick_ms: self.now_ms + offset,
                down: BTreeSet::new(),
                down_since: BTreeMap::new(),
            },
        );
    }

    fn stop(&mut self, i: u64) {
        self.nodes.get_mut(&NodeId(i)).expect("node").running = false;
    }

    fn apply(&mut self, from: NodeId, effects: Vec<Effect>) {
        for effect in effects {
            let node = self.nodes.get_mut(&from).expect("node");
            match effect {
                Effect::Send { address, message } => {
                    if self.rng.gen_bool(self.loss) {
                        continue;
                    }
                    let delay = self.rng.gen_range(1..30);
                    let id = self.next_message;
                    self.next_message += 1;
                    self.messages.insert(id, message);
                    self.in_flight
                        .push(Reverse((self.now_ms + delay, id, address)));
                }
                Effect::PeerDown(peer) => {
                    node.down.insert(peer);
                    node.down_since.insert(peer, self.now_ms);
                }
                Effect::PeerUp(peer) => {
                    node.down.remove(&peer);
                }
                Effect::RingAdopted(_) => {}
            }
        }
    }

    fn run_for(&mut self, duration_ms: u64) {
        let end = self.now_ms + duration_ms;
        while self.now_ms < end {
            self.now_ms += STEP_MS;
            while let Some(Reverse((at, _, _))) = self.in_flight.peek() {
                if *at > self.now_ms {
                    break;
                }
                let Reverse((_, id, address)) = self.in_flight.pop().expect("peeked");
                let message = self.messages.remove(&id).expect("message");
                let Some(&to) = self.addresses.get(&address) else {
                    continue;
                };
                let node = self.nodes.get_mut(&to).expect("node");
                if !node.running {
                    continue;
                }
                let effects = node
                    .membership
                    .receive(self.now_ms, message, Sender::Admitted);
                self.apply(to, effects);
            }
            let due: Vec<NodeId> = self
                .nodes
                .iter()
                .filter(|(_, n)| n.running && n.next_tick_ms <= self.now_ms)
                .map(|(id, _)| *id)
                .collect();
            for id in due {
                let node = self.nodes.get_mut(&id).expect("node");
                node.next_tick_ms += node.membership.config().gossip_interval_ms;
                let effects = node.membership.tick(self.now_ms);
                self.apply(id, effects);
            }
        }
    }

    /// Commits `ring` on node `i` and carries out what that asks for.
    fn commit_on(&mut self, i: u64, ring: Ring) {
        let effects = self
            .nodes
            .get_mut(&NodeId(i))
            .expect("node")
            .membership
            .commit_ring(ring);
        self.apply(NodeId(i), effects);
    }

    fn running(&self) -> impl Iterator<Item = (&NodeId, &Node)> {
        self.nodes.iter().filter(|(_, n)| n.running)
    }

    fn everyone_sees_everyone_up(&self) -> bool {
        let ids: BTreeSet<NodeId> = self.running().map(|(id, _)| *id).collect();
        self.running()
            .all(|(_, n)| ids.iter().all(|id| n.membership.is_up(*id)))
    }
}

/// A ring of nodes 1..=3, one zone each.
fn three_node_ring() -> Ring {
    let members = (1..=3).map(|i| {
        (
            NodeId(i),
            RingMember {
                zone: format!("z{i}"),
                weight: 1,
            },
        )
    });
    Ring::new(6, members).expect("ring")
}

fn seed() -> u64 {
    std::env::var("NORN_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(42)
}

#[test]
fn a_cluster_forms_from_one_seed() {
    let mut cluster = Cluster::new(5, 0.0, seed());
    cluster.run_for(5_000);
    assert!(cluster.everyone_sees_everyone_up(), "seed {}", cluster.seed);
}

#[test]
fn a_silent_peer_is_marked_down_within_5_s() {
    let mut cluster = Cluster::new(3, 0.0, seed());
    cluster.run_for(20_000);
    assert!(cluster.everyone_sees_everyone_up());
    let stopped_at = cluster.now_ms;
    cluster.stop(3);
    cluster.run_for(5_000);
    for (id, node) in cluster.running() {
        let since = node.down_since.get(&NodeId(3)).copied();
        assert!(
            node.down.contains(&NodeId(3)),
            "node {id} still sees node 3 up (seed {})",
            cluster.seed
        );
        let after = since.expect("reported down") - stopped_at;
        assert!(after <= 5_000, "node {id} took {after} ms");
        println!("node {id} marked node 3 down after {after} ms");
    }
}

#[test]
fn no_peer_is_falsely_marked_down_over_10_minutes_with_20_percent_loss() {
    for size in [3, 5] {
        let mut cluster = Cluster::new(size, 0.2, seed() + size);
        cluster.run_for(10_000);
        assert!(
            cluster.everyone_sees_everyone_up(),
            "the cluster formed (seed {})",
            cluster.seed
        );
        cluster.run_for(600_000);
        for (id, node) in cluster.running() {
            assert!(
                node.down_since.is_empty(),
                "node {id} marked {:?} down (seed {})",
                node.down_since,
                cluster.seed
            );
        }
    }
}

#[test]
fn a_restarted_peer_is_up_again_within_5_s() {
    let mut cluster = Cluster::new(3, 0.0, seed());
    cluster.run_for(10_000);
    cluster.stop(3);
    cluster.run_for(15_000);
    assert!(cluster.running().all(|(_, n)| n.down.contains(&NodeId(3))));
    cluster.start(3, 2);
    cluster.run_for(5_000);
    for (id, node) in cluster.running() {
        assert!(
            !node.down.contains(&NodeId(3)),
            "node {id} still sees node 3 down (seed {})",
            cluster.seed
        );
        assert_eq!(
            node.membership
                .member(NodeId(3))
                .expect("known")
                .incarnation,
            2
        );
    }
}

/// A node that lost its data restarts with incarnation 1 while its peers
/// remember a later, short life (a small heartbeat): it must move past the
/// incarnation they remember, or they would ignore it forever.
#[test]
fn a_wiped_peer_moves_past_a_short_later_life_and_is_up_again() {
    let mut cluster = Cluster::new(3, 0.0, seed());
    cluster.run_for(5_000);
    cluster.stop(3);
    cluster.start(3, 2);
    cluster.run_for(600);
    cluster.stop(3);
    cluster.run_for(15_000);
    // Its heartbeat passes the remembered one before it hears from anyone.
    cluster.start(3, 1);
    cluster.loss = 1.0;
    cluster.run_for(3_000);
    cluster.loss = 0.0;
    cluster.run_for(5_000);
    for (id, node) in cluster.running() {
        assert!(
            !node.down.contains(&NodeId(3)),
            "node {id} still sees node 3 down (seed {})",
            cluster.seed
        );
        assert!(
            node.membership
                .member(NodeId(3))
                .expect("known")
                .incarnation
                > 2
        );
    }
}

#[test]
fn a_committed_ring_reaches_every_node_and_concurrent_commits_agree() {
    let mut cluster = Cluster::new(5, 0.1, seed());
    cluster.run_for(5_000);
    let base = three_node_ring();
    cluster.commit_on(1, base.clone());
    cluster.run_for(5_000);
    for (id, node) in cluster.running() {
        assert_eq!(node.membership.ring(), Some(&base), "node {id}");
    }
    // Two nodes commit different rings of the same version at once.
    let with4 = base
        .with_member(
            NodeId(4),
            RingMember {
                zone: "z4".into(),
                weight: 1,
            },
        )
        .expect("join");
    let with5 = base
        .with_member(
            NodeId(5),
            RingMember {
                zone: "z5".into(),
                weight: 1,
            },
        )
        .expect("join");
    let winner = if with4.supersedes(&with5) {
        with4.clone()
    } else {
        with5.clone()
    };
    cluster.commit_on(2, with4);
    cluster.commit_on(3, with5);
    cluster.run_for(5_000);
    for (id, node) in cluster.running() {
        assert_eq!(
            node.membership.ring(),
            Some(&winner),
            "node {id} (seed {})",
            cluster.seed
        );
    }
}

#[test]
fn staged_changes_spread_and_a_commit_clears_them() {
    let mut cluster = Cluster::new(3, 0.1, seed());
    cluster.run_for(5_000);
    for i in 1..=3 {
        cluster
            .nodes
            .get_mut(&NodeId(i))
            .expect("node")
            .membership
            .stage(NodeId(i), norn_membership::ChangeKind::Join);
    }
    cluster.run_for(5_000);
    for (id, node) in cluster.running() {
        assert_eq!(
            node.membership.staged().len(),
            3,
            "node {id} sees every staged join"
        );
    }
    let ring = three_node_ring();
    cluster.commit_on(2, ring);
    cluster.run_for(5_000);
    for (id, node) in cluster.running() {
        assert!(
            node.membership.staged().is_empty(),
            "node {id} dropped the committed changes"
        );
    }
}

/// The addresses a tick of `membership` gossips to.
fn gossiped_to(membership: &mut Membership, now_ms: u64) -> BTreeSet<String> {
    membership
        .tick(now_ms)
        .into_iter()
        .filter_map(|effect| match effect {
            Effect::Send { address, .. } => Some(address),
            _ => None,
        })
        .collect()
}

/// Seeds found by DNS may be IPs of members that advertise names: they are
/// gossiped to while the node knows fewer peers than there are of them,
/// replaced on each resolution, and never include the node itself.
#[test]
fn discovered_seeds_are_gossiped_to_until_their_nodes_are_known() {
    let config = MembershipConfig::default();
    let mut membership = Membership::new(member(1, 1), None, config, seed());
    let (a, b) = ("10.9.0.2:7000".to_string(), "10.9.0.3:7000".to_string());
    membership.set_discovered_seeds(vec![a.clone(), b.clone(), address(1)]);
    assert_eq!(
        gossiped_to(&mut membership, 0),
        BTreeSet::from([a.clone(), b.clone()])
    );
    membership.set_discovered_seeds(vec![b.clone()]);
    assert_eq!(
        gossiped_to(&mut membership, 500),
        BTreeSet::from([b.clone()])
    );

    // Node 2, advertising another address than its record in DNS, is now
    // known: one peer for one discovered seed, so only the peer is asked.
    let digest = GossipMessage::Digest {
        from: NodeId(2),
        members: vec![member(2, 1)],
        staged: Vec::new(),
        ring_version: 0,
        ring_fingerprint: 0,
    };
    membership.receive(600, digest, Sender::Admitted);
    assert_eq!(
        gossiped_to(&mut membership, 1_000),
        BTreeSet::from([address(2)])
    );
}
