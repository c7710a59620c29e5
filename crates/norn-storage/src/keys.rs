//! Byte layout of keys in each column family. All integers are big-endian so
//! that byte order is numeric order.
//!
//! - data: `partition u16 | bucket length u8 | bucket | key`
//! - trees: `partition u16 | n u8 | segment u32`
//! - hints: `target node u64 | sequence u64`
//! - meta: the name, as UTF-8

use norn_ring::{NodeId, Partition};

use crate::error::{Result, StorageError};

/// Longest bucket name the data layout can hold.
pub const BUCKET_BYTES_MAX: usize = u8::MAX as usize;

/// Where a stored object lives: its partition, bucket and key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DataKey {
    pub partition: Partition,
    pub bucket: Vec<u8>,
    pub key: Vec<u8>,
}

impl DataKey {
    /// A key, refused when the bucket is longer than [`BUCKET_BYTES_MAX`].
    pub fn new(partition: Partition, bucket: &[u8], key: &[u8]) -> Result<DataKey> {
        if bucket.len() > BUCKET_BYTES_MAX {
            return Err(StorageError::Invalid {
                reason: format!(
                    "bucket of {} bytes exceeds {BUCKET_BYTES_MAX}",
                    bucket.len()
                ),
            });
        }
        Ok(DataKey {
            partition,
            bucket: bucket.to_vec(),
            key: key.to_vec(),
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(3 + self.bucket.len() + self.key.len());
        out.extend_from_slice(&self.partition.0.to_be_bytes());
        out.push(self.bucket.len() as u8);
        out.extend_from_slice(&self.bucket);
        out.extend_from_slice(&self.key);
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<DataKey> {
        let (partition, rest) = bytes.split_first_chunk::<2>()?;
        let (&bucket_len, rest) = rest.split_first()?;
        let (bucket, key) = rest.split_at_checked(usize::from(bucket_len))?;
        Some(DataKey {
            partition: Partition(u16::from_be_bytes(*partition)),
            bucket: bucket.to_vec(),
            key: key.to_vec(),
        })
    }

    /// The bytes the hash trees hash for this key: bucket and key, without
    /// the partition (implied by the tree).
    pub fn tree_key(&self) -> Vec<u8> {
        let encoded = self.encode();
        encoded[2..].to_vec()
    }
}

impl std::fmt::Display for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.partition,
            self.bucket.escape_ascii(),
            self.key.escape_ascii()
        )
    }
}

/// The range of data keys of one partition: `[start, end)`.
pub fn partition_range(partition: Partition) -> (Vec<u8>, Vec<u8>) {
    let start = partition.0.to_be_bytes().to_vec();
    let end = match partition.0.checked_add(1) {
        Some(next) => next.to_be_bytes().to_vec(),
        None => vec![0xff, 0xff, 0xff],
    };
    (start, end)
}

pub fn tree_leaf_key(partition: Partition, n: u8, segment: u32) -> [u8; 7] {
    let mut out = [0u8; 7];
    out[..2].copy_from_slice(&partition.0.to_be_bytes());
    out[2] = n;
    out[3..].copy_from_slice(&segment.to_be_bytes());
    out
}

pub fn decode_tree_leaf_key(bytes: &[u8]) -> Option<(Partition, u8, u32)> {
    let bytes: &[u8; 7] = bytes.try_into().ok()?;
    let partition = Partition(u16::from_be_bytes([bytes[0], bytes[1]]));
    let segment = u32::from_be_bytes([bytes[3], bytes[4], bytes[5], bytes[6]]);
    Some((partition, bytes[2], segment))
}

pub fn hint_key(target: NodeId, sequence: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&target.0.to_be_bytes());
    out[8..].copy_from_slice(&sequence.to_be_bytes());
    out
}

pub fn decode_hint_key(bytes: &[u8]) -> Option<(NodeId, u64)> {
    let bytes: &[u8; 16] = bytes.try_into().ok()?;
    let (target, sequence) = bytes.split_at(8);
    Some((
        NodeId(u64::from_be_bytes(target.try_into().ok()?)),
        u64::from_be_bytes(sequence.try_into().ok()?),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_keys_round_trip_and_sort_by_partition() {
        let a = DataKey::new(Partition(1), b"zz", b"k").expect("key");
        let b = DataKey::new(Partition(2), b"", b"").expect("key");
        assert_eq!(DataKey::decode(&a.encode()), Some(a.clone()));
        assert!(a.encode() < b.encode());
        let (start, end) = partition_range(Partition(1));
        assert!(start <= a.encode() && a.encode() < end);
    }

    #[test]
    fn long_buckets_are_refused() {
        assert!(DataKey::new(Partition(0), &[0; 256], b"k").is_err());
    }
}
