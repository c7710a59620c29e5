//! The consistent-hash ring of norn. Pure: no I/O, no clock, no randomness.
//!
//! - [`hash`]: the placement hash of a `(bucket, key)` and its partition. The
//!   hash is part of the on-disk and on-wire contract and never changes.
//! - [`claim`]: which node owns each partition. Ownership is balanced by
//!   weight (every node owns the floor or the ceiling of its share) and moves
//!   as little as possible when nodes join or leave.
//! - [`ring`]: the versioned, serializable [`Ring`] and its zone-aware
//!   [`PreferenceList`]s.

pub mod claim;
pub mod hash;
pub mod ring;

pub use hash::{partition_of, placement_hash, Partition};
pub use ring::{
    CertificateFingerprint, NodeId, PreferenceList, Ring, RingError, RingMember, RingProof, Zone,
    MEMBERS_MAX, PARTITION_BITS_DEFAULT, PARTITION_BITS_MAX, PARTITION_BITS_MIN,
    PREFERENCE_LIST_MAX, PROOF_CERTIFICATE_BYTES_MAX, PROOF_SIGNATURE_BYTES_MAX, REVOKED_MAX,
    ZONE_BYTES_MAX,
};
