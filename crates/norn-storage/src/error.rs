//! Storage errors. Each variant says whether anything changed.

use norn_ring::NodeId;

/// Why a storage call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// A stored record failed its checksum or could not be parsed. Nothing
    /// was changed; the record is never served.
    #[error("corrupt record in {column} at key {key}: {reason}")]
    Corrupt {
        column: &'static str,
        key: String,
        reason: String,
    },
    /// RocksDB (or the disk under it) failed. A write may or may not have
    /// reached the write-ahead log; it was not acknowledged.
    #[error("storage backend failed: {reason}")]
    Backend { reason: String },
    /// The hint queue of `target` is full; neither the hint nor the write it
    /// came with was stored.
    #[error("hint queue for {target} is full: {queued_bytes} bytes queued, {hint_bytes} more would pass the limit of {max_bytes}")]
    HintQueueFull {
        target: NodeId,
        queued_bytes: u64,
        hint_bytes: u64,
        max_bytes: u64,
    },
    /// The caller passed something out of bounds; nothing changed.
    #[error("invalid argument: {reason}")]
    Invalid { reason: String },
}

#[cfg(feature = "rocksdb")]
impl From<rocksdb::Error> for StorageError {
    fn from(e: rocksdb::Error) -> Self {
        StorageError::Backend {
            reason: e.into_string(),
        }
    }
}

/// Shorthand for storage results.
pub type Result<T> = std::result::Result<T, StorageError>;
