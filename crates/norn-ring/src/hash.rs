//! The placement hash: XXH3-64 (seed 0) of the length-prefixed bucket and key.
//!
//! Each of bucket and key is preceded by its length as a big-endian `u32`, so
//! `("ab", "c")` and `("a", "bc")` hash apart. This function decides where
//! every stored object lives: it must never change between versions, and the
//! golden-value tests below pin it.

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

/// A partition of the ring: the top `q` bits of a key's placement hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Partition(pub u16);

impl std::fmt::Display for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The stable 64-bit placement hash of `(bucket, key)`.
pub fn placement_hash(bucket: &[u8], key: &[u8]) -> u64 {
    let mut hasher = Xxh3::new();
    hasher.update(&length_prefix(bucket));
    hasher.update(bucket);
    hasher.update(&length_prefix(key));
    hasher.update(key);
    hasher.digest()
}

/// The partition of a placement hash on a ring of `2^partition_bits`
/// partitions: its top `partition_bits` bits.
pub fn partition_of(hash: u64, partition_bits: u8) -> Partition {
    debug_assert!((1..=16).contains(&partition_bits));
    Partition((hash >> (64 - u32::from(partition_bits))) as u16)
}

fn length_prefix(bytes: &[u8]) -> [u8; 4] {
    // Buckets and keys are bounded far below 4 GiB by the data-model limits.
    (bytes.len() as u32).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden values: if one of these changes, every stored key would move.
    #[test]
    fn placement_hash_is_pinned() {
        let golden: [(&[u8], &[u8], u64); 4] = [
            (b"", b"", 0xc77b_3abb_6f87_acd9),
            (b"users", b"alice", 0xb648_79d7_b091_ff08),
            (b"ab", b"c", 0xf810_c440_2b3d_6836),
            (b"a", b"bc", 0x709f_43fa_cff9_3728),
        ];
        for (bucket, key, expected) in golden {
            assert_eq!(
                placement_hash(bucket, key),
                expected,
                "placement hash of ({bucket:?}, {key:?})"
            );
        }
    }

    /// The algorithm is XXH3-64 as published: its reference value of the
    /// empty input.
    #[test]
    fn xxh3_matches_the_reference() {
        assert_eq!(xxhash_rust::xxh3::xxh3_64(b""), 0x2d06_8005_38d3_94c2);
    }

    #[test]
    fn length_prefix_separates_bucket_from_key() {
        assert_ne!(placement_hash(b"ab", b"c"), placement_hash(b"a", b"bc"));
    }

    #[test]
    fn partition_is_the_top_bits() {
        assert_eq!(partition_of(u64::MAX, 8), Partition(255));
        assert_eq!(partition_of(0x0123_4567_89ab_cdef, 8), Partition(0x01));
        assert_eq!(partition_of(0x0123_4567_89ab_cdef, 16), Partition(0x0123));
        assert_eq!(partition_of(0x8000_0000_0000_0000, 4), Partition(8));
    }
}
