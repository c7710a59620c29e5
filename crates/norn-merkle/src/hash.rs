//! Per-key hashes of the trees. Part of the on-disk format: trees persisted
//! by one version must mean the same to the next.

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::{xxh3_128, xxh3_64_with_seed};

/// Seed of the hash that spreads keys over segments, apart from the placement
/// hash (whose top bits are the same for every key of a partition).
const SEGMENT_SEED: u64 = 0x6e6f_726e_7365_676d;

/// A 128-bit node hash; the XOR of everything below it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Hash128(pub u128);

impl Hash128 {
    pub const ZERO: Hash128 = Hash128(0);

    pub fn xor(self, other: Hash128) -> Hash128 {
        Hash128(self.0 ^ other.0)
    }
}

/// The leaf contribution of `key` stored with version `digest`.
pub fn leaf_hash(key: &[u8], digest: u64) -> Hash128 {
    let mut bytes = Vec::with_capacity(key.len() + 8);
    bytes.extend_from_slice(key);
    bytes.extend_from_slice(&digest.to_le_bytes());
    Hash128(xxh3_128(&bytes))
}

/// The segment (leaf index) of `key` in a tree of `segments` leaves, a power
/// of two.
pub fn key_segment(key: &[u8], segments: u32) -> u32 {
    debug_assert!(segments.is_power_of_two());
    (xxh3_64_with_seed(key, SEGMENT_SEED) % u64::from(segments)) as u32
}
