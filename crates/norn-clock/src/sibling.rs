//! What norn stores under a dot.

use serde::{Deserialize, Serialize};

use crate::dvvset::DvvSet;

/// One concurrent version of a key: a value, or the tombstone a delete left.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Sibling {
    Value(#[serde(with = "serde_bytes")] Vec<u8>),
    Tombstone,
}

/// The stored object of a key.
pub type Object = DvvSet<Sibling>;

impl DvvSet<Sibling> {
    /// The live values, leaving out tombstones.
    pub fn live_values(&self) -> impl Iterator<Item = &[u8]> {
        self.values().filter_map(|s| match s {
            Sibling::Value(bytes) => Some(bytes.as_slice()),
            Sibling::Tombstone => None,
        })
    }

    /// Whether the key reads as not found: every sibling is a tombstone (or
    /// there is none).
    pub fn is_deleted(&self) -> bool {
        self.values().all(|s| matches!(s, Sibling::Tombstone))
    }
}
