//! The membership state machine.
//!
//! Every round a node bumps its own heartbeat and sends its whole view (each
//! member's latest record, and the version and fingerprint of its ring) to a
//! few random peers. A receiver keeps, per member, the newest record; each
//! time a member's heartbeat advances, that member's failure detector hears
//! a heartbeat, whoever relayed it. So a live node whose direct messages are
//! lost is still heard through others.
//!
//! Rings spread by push-pull: a receiver whose ring is superseded by the
//! digest it got asks the sender for its ring; one whose ring supersedes the
//! digest pushes its ring back. Being down is a local opinion and never
//! changes the ring.
//!
//! Who may say what ([`Sender`]): records relayed by an admitted node are
//! merged by `(incarnation, heartbeat)` as the node's own are. A sender
//! that is not an admitted member may announce itself, ask to join (a
//! staged join of itself), and pull and pass on rings; its relays of other
//! members' records and staged changes are not heard. Counters from the
//! wire saturate.

use std::collections::BTreeMap;

use norn_ring::{NodeId, Partition, Ring};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::config::MembershipConfig;
use crate::detector::PhiAccrual;
use crate::member::{ChangeKind, Member, MemberState, RecordProof, StagedChange};

/// What nodes send each other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GossipMessage {
    /// The sender's view: every member it knows, the staged ring changes,
    /// and its ring's identity.
    Digest {
        from: NodeId,
        members: Vec<Member>,
        staged: Vec<StagedChange>,
        ring_version: u64,
        ring_fingerprint: u64,
    },
    /// Asks the receiver for its ring.
    RingPull { from: NodeId },
    /// A ring the receiver should adopt if it supersedes its own.
    RingPush { from: NodeId, ring: Ring },
}

impl GossipMessage {
    /// Who claims to have sent it; the transport checks this against the
    /// sender's certificate.
    pub fn sender(&self) -> NodeId {
        match self {
            GossipMessage::Digest { from, .. }
            | GossipMessage::RingPull { from }
            | GossipMessage::RingPush { from, .. } => *from,
        }
    }
}

/// What the state machine asks its shell to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send `message` to the node listening at `address`.
    Send {
        address: String,
        message: GossipMessage,
    },
    /// A peer is considered up (again).
    PeerUp(NodeId),
    /// A peer is considered down (locally).
    PeerDown(NodeId),
    /// A new ring was adopted; persist it and act on it.
    RingAdopted(Ring),
}

/// One member as this node sees it, for admin views.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberView {
    pub member: Member,
    pub up: bool,
    /// Current suspicion; 0 for this node itself.
    pub phi: f64,
}

#[derive(Debug, Clone)]
struct Peer {
    member: Member,
    detector: PhiAccrual,
    up: bool,
    /// The ring version the peer's last digest said it holds.
    ring_version: u64,
}

impl Peer {
    /// A heartbeat of the peer was heard: its detector learns of it, and a
    /// peer that is active and no longer suspected is up again.
    fn heard(&mut self, now_ms: u64, phi_threshold: f64, effects: &mut Vec<Effect>) {
        self.detector.heartbeat(now_ms);
        let alive =
            self.member.state == MemberState::Active && self.detector.phi(now_ms) <= phi_threshold;
        if !self.up && alive {
            self.up = true;
            effects.push(Effect::PeerUp(self.member.id));
        }
    }
}

/// The standing of a gossip message's sender, which the node's access rules
/// decide (see norn-core's `access`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// A node of a ring this node holds or held: its relays are heard.
    Admitted,
    /// Any other node: only its own record, its own staged join and rings
    /// are heard.
    Unadmitted,
}

/// The membership of one node.
#[derive(Debug)]
pub struct Membership {
    config: MembershipConfig,
    me: Member,
    peers: BTreeMap<NodeId, Peer>,
    /// Addresses to contact before their node ids are known (join seeds).
    seeds: Vec<String>,
    /// Seeds found by DNS, replaced on each resolution.
    discovered: Vec<String>,
    ring: Option<Ring>,
    staged: BTreeMap<NodeId, StagedChange>,
    rng: SmallRng,
}

impl Membership {
    /// The membership of node `me`, holding `ring` if it has one. `seed`
    /// drives the choice of gossip targets.
    pub fn new(me: Member, ring: Option<Ring>, config: MembershipConfig, seed: u64) -> Membership {
        Membership {
            config,
            me,
            peers: BTreeMap::new(),
            seeds: Vec::new(),
            discovered: Vec::new(),
            ring,
            staged: BTreeMap::new(),
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    pub fn me(&self) -> &Member {
        &self.me
    }

    /// Drops the signature of this node's own record, to be signed again.
    pub fn clear_own_proof(&mut self) {
        self.me.proof = None;
    }

    /// Sets the signature of this node's own record (over its identity as
    /// it is now).
    pub fn set_own_proof(&mut self, proof: RecordProof) {
        self.me.proof = Some(Box::new(proof));
    }

    /// The record this node keeps of peer `id`, if any.
    pub fn peer(&self, id: NodeId) -> Option<&Member> {
        self.peers.get(&id).map(|p| &p.member)
    }

    pub fn ring(&self) -> Option<&Ring> {
        self.ring.as_ref()
    }

    pub fn config(&self) -> &MembershipConfig {
        &self.config
    }

    /// Adds addresses to gossip with until their nodes are known.
    pub fn add_seeds(&mut self, addresses: impl IntoIterator<Item = String>) {
        for address in addresses {
            if address != self.me.address && !self.seeds.contains(&address) {
                self.seeds.push(address);
            }
        }
    }

    /// Replaces the seeds found by DNS. A name's records need not match
    /// the addresses members advertise (IPs beside names), so whether they
    /// are known cannot be told by address: while this node sees fewer
    /// peers up than there are of them, up to `gossip_fanout` of them (not
    /// known by address), drawn at random, are gossiped to each round. The
    /// shell leaves this node's own addresses out.
    pub fn set_discovered_seeds(&mut self, addresses: Vec<String>) {
        self.discovered.clear();
        for address in addresses {
            if address != self.me.address && !self.discovered.contains(&address) {
                self.discovered.push(address);
            }
        }
    }

    /// Whether `node` is this node or a peer considered up.
    pub fn is_up(&self, node: NodeId) -> bool {
        node == self.me.id || self.peers.get(&node).is_some_and(|p| p.up)
    }

    /// The record of a known member.
    pub fn member(&self, node: NodeId) -> Option<&Member> {
        if node == self.me.id {
            return Some(&self.me);
        }
        self.peers.get(&node).map(|p| &p.member)
    }

    /// Every known member, this node first.
    pub fn view(&self, now_ms: u64) -> Vec<MemberView> {
        let mut views = vec![MemberView {
            member: self.me.clone(),
            up: true,
            phi: 0.0,
        }];
        views.extend(self.peers.values().map(|p| MemberView {
            member: p.member.clone(),
            up: p.up,
            phi: p.detector.phi(now_ms),
        }));
        views
    }

    /// Stages a ring change of `node`, to be gossiped until committed.
    pub fn stage(&mut self, node: NodeId, kind: ChangeKind) -> StagedChange {
        let stamp = self.staged.values().map(|c| c.stamp).max().unwrap_or(0) + 1;
        let change = StagedChange {
            node,
            kind,
            base_version: self.ring.as_ref().map_or(0, Ring::version),
            stamp,
            staged_by: self.me.id,
        };
        self.merge_staged(change);
        change
    }

    /// The newest ring version this node holds or that an up member of its
    /// ring said, in its last digest, it holds (a newer one is pulled as
    /// soon as it is heard of). Only members count, and only their latest
    /// word: no other node can hold this node back by claiming a ring it
    /// does not have.
    pub fn newest_ring_heard(&self) -> u64 {
        let Some(ring) = &self.ring else { return 0 };
        self.peers
            .values()
            .filter(|p| p.up && ring.members().contains_key(&p.member.id))
            .map(|p| p.ring_version)
            .fold(ring.version(), u64::max)
    }

    /// Whether a change of `node` is staged.
    pub fn is_staged(&self, node: NodeId) -> bool {
        self.staged.contains_key(&node)
    }

    /// The changes staged against the current ring, by node.
    pub fn staged(&self) -> Vec<StagedChange> {
        self.staged.values().copied().collect()
    }

    fn merge_staged(&mut self, change: StagedChange) {
        if self
            .ring
            .as_ref()
            .is_some_and(|ring| change.is_reflected_in(ring))
        {
            return;
        }
        let newer = self
            .staged
            .get(&change.node)
            .is_none_or(|existing| change.supersedes(existing));
        if newer {
            self.staged.insert(change.node, change);
        }
    }

    /// Sets the partitions this node is handing off; the next rounds tell
    /// the others.
    pub fn set_handoffs(&mut self, partitions: Vec<Partition>) {
        self.me.handoffs = partitions;
    }

    /// The up members, other than this node, handing off `partition`.
    pub fn handing_off(&self, partition: Partition) -> Vec<NodeId> {
        self.peers
            .values()
            .filter(|p| p.up && p.member.handoffs.contains(&partition))
            .map(|p| p.member.id)
            .collect()
    }

    /// Adopts a ring committed on this node, if it supersedes the current one.
    pub fn commit_ring(&mut self, ring: Ring) -> Vec<Effect> {
        let mut effects = Vec::new();
        self.adopt_ring(ring, &mut effects);
        effects
    }

    /// One gossip round: bump the heartbeat, re-evaluate every peer, and send
    /// the digest to up to `gossip_fanout` peers (and to every seed not yet
    /// known by address; see [`Membership::set_discovered_seeds`] for those
    /// found by DNS).
    pub fn tick(&mut self, now_ms: u64) -> Vec<Effect> {
        self.me.heartbeat = self.me.heartbeat.saturating_add(1);
        let mut effects = Vec::new();
        for (id, peer) in &mut self.peers {
            let suspected = peer.member.state == MemberState::Leaving
                || peer.detector.phi(now_ms) > self.config.phi_threshold;
            if peer.up && suspected {
                peer.up = false;
                effects.push(Effect::PeerDown(*id));
            }
        }
        // A join staged for a node that is down would hold back every ring
        // change (a joiner must be up to take its partitions): it is
        // dropped, to be staged again once the node is back.
        let (me, peers) = (self.me.id, &self.peers);
        self.staged.retain(|id, change| {
            change.kind != ChangeKind::Join || *id == me || peers.get(id).is_some_and(|p| p.up)
        });
        let digest = self.digest();
        let mut targets: Vec<String> = self
            .peers
            .values()
            .map(|p| p.member.address.clone())
            .collect();
        targets.shuffle(&mut self.rng);
        targets.truncate(self.config.gossip_fanout);
        let known: Vec<&str> = self
            .peers
            .values()
            .map(|p| p.member.address.as_str())
            .collect();
        let peers_up = self.peers.values().filter(|p| p.up).count();
        let mut discovered: Vec<String> = if peers_up < self.discovered.len() {
            self.discovered
                .iter()
                .filter(|s| !known.contains(&s.as_str()))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        discovered.shuffle(&mut self.rng);
        discovered.truncate(self.config.gossip_fanout);
        let unknown_seeds: Vec<String> = self
            .seeds
            .iter()
            .filter(|s| !known.contains(&s.as_str()))
            .cloned()
            .chain(discovered)
            .collect();
        for address in targets.into_iter().chain(unknown_seeds) {
            effects.push(Effect::Send {
                address,
                message: digest.clone(),
            });
        }
        effects
    }

    fn digest(&self) -> GossipMessage {
        let mut members = vec![self.me.clone()];
        members.extend(self.peers.values().map(|p| p.member.clone()));
        let (ring_version, ring_fingerprint) = self
            .ring
            .as_ref()
            .map_or((0, 0), |r| (r.version(), r.fingerprint()));
        let staged = self.staged();
        GossipMessage::Digest {
            from: self.me.id,
            members,
            staged,
            ring_version,
            ring_fingerprint,
        }
    }

    /// Handles a message from a peer whose id the transport verified to be
    /// `message.sender()`.
    pub fn receive(&mut self, now_ms: u64, message: GossipMessage, sender: Sender) -> Vec<Effect> {
        let mut effects = Vec::new();
        match message {
            GossipMessage::Digest {
                from,
                members,
                staged,
                ring_version,
                ring_fingerprint,
            } => {
                for member in members {
                    if member.id == from || sender == Sender::Admitted {
                        self.merge_member(now_ms, member, &mut effects);
                    }
                }
                for change in staged {
                    let own_join = change.node == from && change.kind == ChangeKind::Join;
                    if sender == Sender::Admitted || own_join {
                        self.merge_staged(change);
                    }
                }
                if let Some(peer) = self.peers.get_mut(&from) {
                    peer.ring_version = ring_version;
                }
                self.compare_rings(from, ring_version, ring_fingerprint, &mut effects);
            }
            GossipMessage::RingPull { from } => {
                if let (Some(ring), Some(address)) = (&self.ring, self.address_of(from)) {
                    let message = GossipMessage::RingPush {
                        from: self.me.id,
                        ring: ring.clone(),
                    };
                    effects.push(Effect::Send { address, message });
                }
            }
            // Any node may pass a ring on (its admin signature is checked
            // before this, by the core): refusing the relays of unadmitted
            // nodes would lose the only copy of a committed ring when its
            // committer was restored from an older backup (norn-sim seed
            // 5532).
            GossipMessage::RingPush { ring, .. } => self.adopt_ring(ring, &mut effects),
        }
        effects
    }

    fn address_of(&self, node: NodeId) -> Option<String> {
        self.peers.get(&node).map(|p| p.member.address.clone())
    }

    /// Merges a record of `member`, from the member itself or relayed.
    fn merge_member(&mut self, now_ms: u64, member: Member, effects: &mut Vec<Effect>) {
        if member.id == self.me.id {
            // Someone remembers a later life of this node (its data was lost
            // and it restarted with an old incarnation): move past it. Any
            // record that is newer than this node's own counts, whatever its
            // heartbeat: a life that ended early has a small one.
            if member.newer_than(&self.me) {
                self.me.incarnation = member.incarnation.saturating_add(1);
                self.me.heartbeat = 0;
                // Signed again by the core, for the new incarnation.
                self.me.proof = None;
            }
            return;
        }
        let config = self.config;
        let new_detector = || {
            PhiAccrual::new(
                config.phi_window,
                config.gossip_interval_ms,
                config.phi_min_std_dev_ms,
                config.acceptable_pause_ms,
            )
        };
        match self.peers.get_mut(&member.id) {
            None => {
                let mut detector = new_detector();
                detector.heartbeat(now_ms);
                let up = member.state == MemberState::Active;
                if up {
                    effects.push(Effect::PeerUp(member.id));
                }
                self.peers.insert(
                    member.id,
                    Peer {
                        member,
                        detector,
                        up,
                        ring_version: 0,
                    },
                );
            }
            Some(peer) if member.newer_than(&peer.member) => {
                if member.incarnation != peer.member.incarnation {
                    // A restart: the old intervals say nothing of the new life.
                    peer.detector = new_detector();
                }
                peer.member = member;
                peer.heard(now_ms, config.phi_threshold, effects);
            }
            Some(_) => {}
        }
    }

    fn compare_rings(
        &mut self,
        from: NodeId,
        version: u64,
        fingerprint: u64,
        effects: &mut Vec<Effect>,
    ) {
        let Some(address) = self.address_of(from) else {
            return;
        };
        let mine = self
            .ring
            .as_ref()
            .map_or((0, 0), |r| (r.version(), r.fingerprint()));
        if (version, fingerprint) > mine {
            effects.push(Effect::Send {
                address,
                message: GossipMessage::RingPull { from: self.me.id },
            });
        } else if (version, fingerprint) < mine {
            if let Some(ring) = &self.ring {
                let message = GossipMessage::RingPush {
                    from: self.me.id,
                    ring: ring.clone(),
                };
                effects.push(Effect::Send { address, message });
            }
        }
    }

    fn adopt_ring(&mut self, ring: Ring, effects: &mut Vec<Effect>) {
        let newer = self
            .ring
            .as_ref()
            .is_none_or(|current| ring.supersedes(current));
        if newer {
            self.staged
                .retain(|_, change| !change.is_reflected_in(&ring));
            self.ring = Some(ring.clone());
            effects.push(Effect::RingAdopted(ring));
        }
    }
}
