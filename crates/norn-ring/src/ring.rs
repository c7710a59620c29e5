//! The versioned ring and its preference lists.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use crate::claim::rebalance;
use crate::hash::{partition_of, placement_hash, Partition};

/// Fewest partition bits a ring may have (16 partitions).
pub const PARTITION_BITS_MIN: u8 = 4;
/// Most partition bits a ring may have (65,536 partitions).
pub const PARTITION_BITS_MAX: u8 = 16;
/// Partition bits of a new ring unless configured (256 partitions).
pub const PARTITION_BITS_DEFAULT: u8 = 8;
/// Largest weight a member may have.
pub const WEIGHT_MAX: u32 = 1 << 16;
/// Most members a ring may have.
pub const MEMBERS_MAX: usize = 1024;
/// Distinct members clockwise a preference list holds (primaries, then
/// fallbacks), plus at most as many more from zones not among them: what a
/// ring keeps per partition, so that its size is bounded by partitions
/// times twice this, whatever a decoded ring claims.
pub const PREFERENCE_LIST_MAX: usize = 32;
/// Longest zone name, in bytes.
pub const ZONE_BYTES_MAX: usize = 64;
/// Most revoked certificates a ring lists.
pub const REVOKED_MAX: usize = 4096;
/// Longest signer certificate a ring's proof may carry, in bytes.
pub const PROOF_CERTIFICATE_BYTES_MAX: usize = 16 * 1024;
/// Longest signature a ring's proof may carry, in bytes.
pub const PROOF_SIGNATURE_BYTES_MAX: usize = 512;

/// The SHA-256 digest of a certificate's DER encoding: how a ring names a
/// revoked certificate.
pub type CertificateFingerprint = [u8; 32];

/// Who committed a ring: the admin's certificate (DER) and its signature
/// over [`Ring::signed_content`] and `signed_at`. Checked by the node (see
/// `norn_trust::Authority::check`), not by this crate, which only bounds
/// its size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingProof {
    #[serde(with = "serde_bytes")]
    pub signer: Vec<u8>,
    /// When the admin signed, in seconds since the Unix epoch: the signer's
    /// certificate must have been valid then.
    pub signed_at: u64,
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// A node's persistent identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u64);

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A failure domain (a rack, a host, an availability zone).
pub type Zone = String;

/// What the ring knows of a member: where it is and how much it should own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingMember {
    pub zone: Zone,
    /// Relative capacity, `1..=WEIGHT_MAX`.
    pub weight: u32,
}

/// Why a ring could not be built or changed. No ring is changed by a failed
/// call: every change returns a new ring.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    #[error("partition bits must be {PARTITION_BITS_MIN}..={PARTITION_BITS_MAX}, got {bits}")]
    PartitionBits { bits: u8 },
    #[error("weight of node {node} must be 1..={WEIGHT_MAX}, got {weight}")]
    Weight { node: NodeId, weight: u32 },
    #[error("node {node} is already a member")]
    AlreadyMember { node: NodeId },
    #[error("node {node} is not a member")]
    NotMember { node: NodeId },
    #[error("the last member cannot leave the ring")]
    LastMember,
    #[error("ring needs at least one member")]
    NoMembers,
    #[error("a ring holds at most {MEMBERS_MAX} members")]
    TooManyMembers,
    #[error("zone of node {node} is longer than {ZONE_BYTES_MAX} bytes")]
    ZoneTooLong { node: NodeId },
    #[error("a ring lists at most {REVOKED_MAX} revoked certificates")]
    TooManyRevoked,
    #[error("ring version {version} is the last one")]
    VersionExhausted { version: u64 },
    #[error("malformed ring: {reason}")]
    Malformed { reason: String },
}

/// The serialized form of a ring; checked by [`Ring::try_from`] on decode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct RingData {
    version: u64,
    partition_bits: u8,
    members: BTreeMap<NodeId, RingMember>,
    owners: Vec<NodeId>,
    /// Nodes an earlier ring held and this one does not (see
    /// [`Ring::departed`]), at most [`MEMBERS_MAX`].
    departed: BTreeSet<NodeId>,
    /// Certificates no node accepts any more, at most [`REVOKED_MAX`].
    revoked: BTreeSet<CertificateFingerprint>,
    /// The committing admin's signature; `None` on a ring not yet signed.
    proof: Option<Box<RingProof>>,
}

/// A versioned assignment of `2^partition_bits` partitions to members.
///
/// Rings are values: every change returns a new ring with the next version.
/// Two rings of the same version made by concurrent commits are ordered by
/// [`Ring::supersedes`], the same way on every node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RingData", into = "RingData")]
pub struct Ring {
    data: RingData,
    /// Per partition, the distinct members in clockwise order from it.
    walks: Vec<Vec<NodeId>>,
}

impl TryFrom<RingData> for Ring {
    type Error = RingError;

    fn try_from(data: RingData) -> Result<Self, RingError> {
        check_partition_bits(data.partition_bits)?;
        if data.members.is_empty() {
            return Err(RingError::NoMembers);
        }
        if data.members.len() > MEMBERS_MAX || data.departed.len() > MEMBERS_MAX {
            return Err(RingError::TooManyMembers);
        }
        if data.revoked.len() > REVOKED_MAX {
            return Err(RingError::TooManyRevoked);
        }
        if let Some(proof) = &data.proof {
            if proof.signer.len() > PROOF_CERTIFICATE_BYTES_MAX
                || proof.signature.len() > PROOF_SIGNATURE_BYTES_MAX
            {
                return Err(RingError::Malformed {
                    reason: "proof too large".into(),
                });
            }
        }
        if let Some(both) = data.departed.iter().find(|d| data.members.contains_key(d)) {
            return Err(RingError::Malformed {
                reason: format!("node {both} is both a member and departed"),
            });
        }
        for (&node, member) in &data.members {
            check_member(node, member)?;
        }
        if data.owners.len() != 1usize << data.partition_bits {
            return Err(RingError::Malformed {
                reason: format!(
                    "{} owners for {} partitions",
                    data.owners.len(),
                    1usize << data.partition_bits
                ),
            });
        }
        if let Some(stranger) = data.owners.iter().find(|o| !data.members.contains_key(o)) {
            return Err(RingError::Malformed {
                reason: format!("partition owner {stranger} is not a member"),
            });
        }
        Ok(Ring::from_valid(data))
    }
}

impl From<Ring> for RingData {
    fn from(ring: Ring) -> Self {
        ring.data
    }
}

impl Ring {
    /// A ring of version 1 whose members are `members`, claimed as if they
    /// joined one after another in the given order.
    pub fn new(
        partition_bits: u8,
        members: impl IntoIterator<Item = (NodeId, RingMember)>,
    ) -> Result<Ring, RingError> {
        check_partition_bits(partition_bits)?;
        let mut owners = Vec::new();
        let mut weights = BTreeMap::new();
        let mut all = BTreeMap::new();
        for (node, member) in members {
            check_member(node, &member)?;
            if all.len() == MEMBERS_MAX {
                return Err(RingError::TooManyMembers);
            }
            if owners.is_empty() {
                owners = vec![node; 1usize << partition_bits];
            }
            weights.insert(node, member.weight);
            if all.insert(node, member).is_some() {
                return Err(RingError::AlreadyMember { node });
            }
            rebalance(&mut owners, &weights, Some(node));
        }
        if all.is_empty() {
            return Err(RingError::NoMembers);
        }
        Ok(Ring::from_valid(RingData {
            version: 1,
            partition_bits,
            members: all,
            owners,
            departed: BTreeSet::new(),
            revoked: BTreeSet::new(),
            proof: None,
        }))
    }

    fn from_valid(data: RingData) -> Ring {
        let owner_count = data.owners.iter().collect::<BTreeSet<_>>().len();
        let walks = (0..data.owners.len())
            .map(|p| distinct_walk(&data.owners, &data.members, p, owner_count))
            .collect();
        Ring { data, walks }
    }

    /// The next ring with `node` added; partitions move only to `node`.
    pub fn with_member(&self, node: NodeId, member: RingMember) -> Result<Ring, RingError> {
        check_member(node, &member)?;
        if self.data.members.contains_key(&node) {
            return Err(RingError::AlreadyMember { node });
        }
        if self.data.members.len() == MEMBERS_MAX {
            return Err(RingError::TooManyMembers);
        }
        let mut members = self.data.members.clone();
        members.insert(node, member);
        self.reclaimed(members, Some(node))
    }

    /// The next ring without `node`; only its partitions move.
    pub fn without_member(&self, node: NodeId) -> Result<Ring, RingError> {
        if !self.data.members.contains_key(&node) {
            return Err(RingError::NotMember { node });
        }
        if self.data.members.len() == 1 {
            return Err(RingError::LastMember);
        }
        let mut members = self.data.members.clone();
        members.remove(&node);
        self.reclaimed(members, None)
    }

    fn reclaimed(
        &self,
        members: BTreeMap<NodeId, RingMember>,
        joining: Option<NodeId>,
    ) -> Result<Ring, RingError> {
        let version = self.data.version;
        let next = version
            .checked_add(1)
            .ok_or(RingError::VersionExhausted { version })?;
        let weights = members.iter().map(|(&n, m)| (n, m.weight)).collect();
        let mut owners = self.data.owners.clone();
        rebalance(&mut owners, &weights, joining);
        let mut departed = self.data.departed.clone();
        departed.extend(self.data.members.keys().copied());
        departed.retain(|node| !members.contains_key(node));
        while departed.len() > MEMBERS_MAX {
            departed.pop_first();
        }
        Ok(Ring::from_valid(RingData {
            version: next,
            partition_bits: self.data.partition_bits,
            members,
            departed,
            owners,
            revoked: self.data.revoked.clone(),
            proof: None,
        }))
    }

    /// The same assignment under another version, unsigned: a commit of
    /// several staged changes is one new version, not one per change.
    pub fn with_version(&self, version: u64) -> Ring {
        Ring {
            data: RingData {
                version,
                proof: None,
                ..self.data.clone()
            },
            walks: self.walks.clone(),
        }
    }

    /// The same ring, unsigned, with `revoked` added to its revoked
    /// certificates (give it the next version with [`Ring::with_version`]).
    /// Past [`REVOKED_MAX`] it is refused rather than forgetting the
    /// oldest, which would admit them again.
    pub fn with_revoked(
        &self,
        revoked: impl IntoIterator<Item = CertificateFingerprint>,
    ) -> Result<Ring, RingError> {
        let mut all = self.data.revoked.clone();
        all.extend(revoked);
        if all.len() > REVOKED_MAX {
            return Err(RingError::TooManyRevoked);
        }
        Ok(Ring {
            data: RingData {
                revoked: all,
                proof: None,
                ..self.data.clone()
            },
            walks: self.walks.clone(),
        })
    }

    /// This ring carrying `proof`.
    pub fn with_proof(&self, proof: RingProof) -> Ring {
        Ring {
            data: RingData {
                proof: Some(Box::new(proof)),
                ..self.data.clone()
            },
            walks: self.walks.clone(),
        }
    }

    /// The committing admin's signature, if the ring carries one.
    pub fn proof(&self) -> Option<&RingProof> {
        self.data.proof.as_deref()
    }

    /// The certificates no node of this ring accepts.
    pub fn revoked(&self) -> &BTreeSet<CertificateFingerprint> {
        &self.data.revoked
    }

    pub fn version(&self) -> u64 {
        self.data.version
    }

    /// Nodes that earlier rings of this one's history held and it does not:
    /// they may still be handing their data over, so peers still admit them
    /// (at most [`MEMBERS_MAX`]; beyond, the lowest ids are forgotten).
    pub fn departed(&self) -> &BTreeSet<NodeId> {
        &self.data.departed
    }

    pub fn partition_bits(&self) -> u8 {
        self.data.partition_bits
    }

    /// Every partition of the ring, in order: `0..partition_count()`,
    /// all 65,536 of them at 16 bits (a count a `u16` cannot hold).
    pub fn partitions(&self) -> impl Iterator<Item = Partition> {
        (0..self.partition_count()).map(|p| Partition(p as u16))
    }

    pub fn partition_count(&self) -> usize {
        self.data.owners.len()
    }

    pub fn members(&self) -> &BTreeMap<NodeId, RingMember> {
        &self.data.members
    }

    /// The owner of each partition, in partition order.
    pub fn owners(&self) -> &[NodeId] {
        &self.data.owners
    }

    pub fn owner(&self, partition: Partition) -> NodeId {
        self.data.owners[usize::from(partition.0)]
    }

    /// The partition that holds `(bucket, key)`.
    pub fn partition_of_key(&self, bucket: &[u8], key: &[u8]) -> Partition {
        partition_of(placement_hash(bucket, key), self.data.partition_bits)
    }

    /// A fingerprint of the whole ring but its proof, to tell rings of one
    /// version apart.
    pub fn fingerprint(&self) -> u64 {
        xxh3_64(&self.signed_content())
    }

    /// Every field of the ring but its proof, in one canonical encoding:
    /// what an admin signs.
    pub fn signed_content(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.data.owners.len() * 8 + 64);
        bytes.extend_from_slice(&self.data.version.to_be_bytes());
        bytes.push(self.data.partition_bits);
        bytes.extend_from_slice(&(self.data.members.len() as u64).to_be_bytes());
        for (node, member) in &self.data.members {
            bytes.extend_from_slice(&node.0.to_be_bytes());
            bytes.extend_from_slice(&member.weight.to_be_bytes());
            bytes.extend_from_slice(&(member.zone.len() as u64).to_be_bytes());
            bytes.extend_from_slice(member.zone.as_bytes());
        }
        for owner in &self.data.owners {
            bytes.extend_from_slice(&owner.0.to_be_bytes());
        }
        bytes.extend_from_slice(&(self.data.departed.len() as u64).to_be_bytes());
        for node in &self.data.departed {
            bytes.extend_from_slice(&node.0.to_be_bytes());
        }
        bytes.extend_from_slice(&(self.data.revoked.len() as u64).to_be_bytes());
        for fingerprint in &self.data.revoked {
            bytes.extend_from_slice(fingerprint);
        }
        bytes
    }

    /// Whether this ring should replace `other`: a higher version wins, and
    /// of two different rings with one version the higher fingerprint wins.
    pub fn supersedes(&self, other: &Ring) -> bool {
        (self.version(), self.fingerprint()) > (other.version(), other.fingerprint())
    }

    /// The preference list of `partition` for `n` replicas: the first `n`
    /// distinct members clockwise, taking members from zones not yet used
    /// first, then the other members as fallbacks in clockwise order (the
    /// first [`PREFERENCE_LIST_MAX`] distinct members and the first of each
    /// zone beyond them).
    pub fn preference_list(&self, partition: Partition, n: usize) -> PreferenceList {
        let walk = &self.walks[usize::from(partition.0)];
        let primaries_wanted = n.min(walk.len());
        let mut chosen = vec![false; walk.len()];
        let mut zones_used = BTreeSet::new();
        let mut nodes = Vec::with_capacity(walk.len());
        for (i, node) in walk.iter().enumerate() {
            if nodes.len() == primaries_wanted {
                break;
            }
            if zones_used.insert(&self.data.members[node].zone) {
                chosen[i] = true;
                nodes.push(*node);
            }
        }
        for (i, node) in walk.iter().enumerate() {
            if nodes.len() == primaries_wanted {
                break;
            }
            if !chosen[i] {
                chosen[i] = true;
                nodes.push(*node);
            }
        }
        nodes.extend(
            walk.iter()
                .zip(&chosen)
                .filter(|(_, c)| !**c)
                .map(|(n, _)| *n),
        );
        debug_assert_eq!(nodes.iter().collect::<BTreeSet<_>>().len(), nodes.len());
        PreferenceList {
            nodes,
            primaries: primaries_wanted,
        }
    }
}

impl Ring {
    /// Partitions whose `n` primaries do not span `min(n, zones)` zones,
    /// counting the zones of the nodes that own partitions.
    pub fn zone_violations(&self, n: usize) -> usize {
        let owners: BTreeSet<&NodeId> = self.data.owners.iter().collect();
        let zones: BTreeSet<&Zone> = owners.iter().map(|o| &self.data.members[*o].zone).collect();
        let wanted = n.min(zones.len());
        (0..self.partition_count())
            .filter(|&p| {
                let list = self.preference_list(Partition(p as u16), n);
                let spanned: BTreeSet<&Zone> = list
                    .primaries()
                    .iter()
                    .map(|o| &self.data.members[o].zone)
                    .collect();
                spanned.len() < wanted
            })
            .count()
    }
}

/// The distinct owners met walking clockwise from `start`, at most `limit`.
/// The distinct owners clockwise from `start`: the first
/// [`PREFERENCE_LIST_MAX`], then the first of each zone not seen among them
/// (up to as many more), so that primaries can span zones however long the
/// walk would be. Stops once all `owner_count` owners were seen.
fn distinct_walk(
    owners: &[NodeId],
    members: &BTreeMap<NodeId, RingMember>,
    start: usize,
    owner_count: usize,
) -> Vec<NodeId> {
    let mut seen = BTreeSet::new();
    let mut zones = BTreeSet::new();
    let mut walk = Vec::with_capacity(owner_count.min(PREFERENCE_LIST_MAX));
    let mut zone_firsts = 0;
    for offset in 0..owners.len() {
        let node = owners[(start + offset) % owners.len()];
        if !seen.insert(node) {
            continue;
        }
        let new_zone = zones.insert(&members[&node].zone);
        if walk.len() < PREFERENCE_LIST_MAX {
            walk.push(node);
        } else if new_zone {
            walk.push(node);
            zone_firsts += 1;
        }
        if seen.len() == owner_count || zone_firsts == PREFERENCE_LIST_MAX {
            break;
        }
    }
    walk
}

fn check_partition_bits(bits: u8) -> Result<(), RingError> {
    if (PARTITION_BITS_MIN..=PARTITION_BITS_MAX).contains(&bits) {
        Ok(())
    } else {
        Err(RingError::PartitionBits { bits })
    }
}

fn check_member(node: NodeId, member: &RingMember) -> Result<(), RingError> {
    if member.zone.len() > ZONE_BYTES_MAX {
        return Err(RingError::ZoneTooLong { node });
    }
    let weight = member.weight;
    if (1..=WEIGHT_MAX).contains(&weight) {
        Ok(())
    } else {
        Err(RingError::Weight { node, weight })
    }
}

/// The nodes that hold a partition's data: primaries, then fallbacks.
///
/// Members that own no partition (possible when there are more members than
/// partitions) appear in no preference list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreferenceList {
    nodes: Vec<NodeId>,
    primaries: usize,
}

impl PreferenceList {
    /// The first `n` distinct nodes (fewer only when the ring has fewer).
    pub fn primaries(&self) -> &[NodeId] {
        &self.nodes[..self.primaries]
    }

    /// The nodes that stand in for unreachable primaries, in order.
    pub fn fallbacks(&self) -> &[NodeId] {
        &self.nodes[self.primaries..]
    }

    /// Primaries then fallbacks.
    pub fn all(&self) -> &[NodeId] {
        &self.nodes
    }

    pub fn is_primary(&self, node: NodeId) -> bool {
        self.primaries().contains(&node)
    }
}
