//! The hash trees of a store: one per (partition, N), kept in memory and
//! persisted leaf by leaf in the `trees` column family, in the same batch as
//! the data they cover.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use norn_merkle::{Hash128, MerkleTree, TreeShape};
use norn_ring::Partition;
use xxhash_rust::xxh3::xxh3_64;

/// The version digest of a stored value: what the trees hash with its key.
pub fn version_digest(value: &[u8]) -> u64 {
    xxh3_64(value)
}

/// The trees of one partition, by N.
pub type PartitionTrees = BTreeMap<u8, MerkleTree>;

/// A partition's trees behind its write lock. A writer holds the lock from
/// reading the old value to committing its batch, so the trees on disk and
/// in memory change in one order.
pub type PartitionLock = Arc<Mutex<PartitionTrees>>;

/// Every partition's trees.
#[derive(Debug)]
pub struct TreeSet {
    shape: TreeShape,
    partitions: RwLock<HashMap<Partition, PartitionLock>>,
}

impl TreeSet {
    pub fn new(shape: TreeShape) -> TreeSet {
        TreeSet {
            shape,
            partitions: RwLock::new(HashMap::new()),
        }
    }

    pub fn shape(&self) -> TreeShape {
        self.shape
    }

    /// The lock of `partition`'s trees.
    pub fn partition(&self, partition: Partition) -> PartitionLock {
        if let Some(lock) = self.read().get(&partition) {
            return lock.clone();
        }
        let mut all = self.partitions.write().unwrap_or_else(|p| p.into_inner());
        all.entry(partition).or_default().clone()
    }

    /// A copy of the tree of `(partition, n)`; empty if it holds no keys.
    pub fn tree(&self, partition: Partition, n: u8) -> MerkleTree {
        let lock = self.partition(partition);
        let trees = lock_trees(&lock);
        trees
            .get(&n)
            .cloned()
            .unwrap_or_else(|| MerkleTree::new(self.shape))
    }

    /// The root hash of `(partition, n)`: zero if it holds no keys.
    pub fn root(&self, partition: Partition, n: u8) -> Hash128 {
        if !self.read().contains_key(&partition) {
            return Hash128::ZERO;
        }
        lock_trees(&self.partition(partition))
            .get(&n)
            .map_or(Hash128::ZERO, MerkleTree::root)
    }

    /// The Ns whose tree in `partition` holds any key.
    pub fn ns(&self, partition: Partition) -> Vec<u8> {
        lock_trees(&self.partition(partition))
            .iter()
            .filter(|(_, tree)| tree.root() != Hash128::ZERO)
            .map(|(n, _)| *n)
            .collect()
    }

    /// Partitions with a tree that holds any key, in order.
    pub fn partitions(&self) -> Vec<Partition> {
        let all: Vec<(Partition, PartitionLock)> = self
            .read()
            .iter()
            .map(|(p, lock)| (*p, lock.clone()))
            .collect();
        let mut partitions: Vec<Partition> = all
            .into_iter()
            .filter(|(_, lock)| {
                lock_trees(lock)
                    .values()
                    .any(|tree| tree.root() != Hash128::ZERO)
            })
            .map(|(p, _)| p)
            .collect();
        partitions.sort_unstable();
        partitions
    }

    /// Installs one persisted leaf at open.
    pub fn load_leaf(&self, partition: Partition, n: u8, segment: u32, hash: Hash128) {
        let lock = self.partition(partition);
        let shape = self.shape;
        lock_trees(&lock)
            .entry(n)
            .or_insert_with(|| MerkleTree::new(shape))
            .set_leaf(segment, hash);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Partition, PartitionLock>> {
        self.partitions.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// Locks a partition's trees. A writer that panicked mid-update left the
/// in-memory tree possibly ahead of disk; the store rebuilds trees it
/// suspects (see `Store::rebuild_trees`), so the poison is not fatal.
pub fn lock_trees(lock: &PartitionLock) -> MutexGuard<'_, PartitionTrees> {
    lock.lock().unwrap_or_else(|p| p.into_inner())
}
