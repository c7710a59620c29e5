//! The storage engine of norn: the only crate that uses RocksDB.
//!
//! - [`storage`]: the [`Storage`] trait the node uses, and its one
//!   implementation [`Store`] over a [`backend::Backend`].
//! - [`backend`]: the small key-value front a store runs on, and
//!   [`MemBackend`] (in memory, able to lose unsynced writes like a power
//!   cut, for the simulator).
//! - `rocks` (feature `rocksdb`, on by default): `RocksBackend`, column
//!   families `data`, `hints`, `trees`, `meta`; the only user of RocksDB.
//! - [`keys`]: [`DataKey`] and the byte layout of every column family's keys;
//!   data keys start with their partition, so a partition is one range.
//! - [`record`]: every stored value is sealed with a format version and a
//!   CRC32 of key and body; a record that fails it is an error naming the key.
//! - [`trees`]: the hash tree of each (partition, N), changed in the same
//!   write batch as the data.
//! - [`group_commit`]: fsync shared by concurrent writers.
//! - [`error`]: [`StorageError`], what can go wrong.

pub mod backend;
pub mod error;
pub mod group_commit;
pub mod keys;
pub mod record;
#[cfg(feature = "rocksdb")]
pub mod rocks;
pub mod storage;
pub mod trees;

pub use backend::MemBackend;
pub use error::StorageError;
pub use keys::DataKey;
#[cfg(feature = "rocksdb")]
pub use rocks::RocksBackend;
#[cfg(feature = "rocksdb")]
pub use storage::RocksStorage;
pub use storage::{
    Change, Datum, Durability, HintId, HintQueueStats, MemStorage, ScanPage, Storage, Store,
    StoreOptions,
};
