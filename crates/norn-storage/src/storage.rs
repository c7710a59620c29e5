//! The [`Storage`] trait and [`Store`], its implementation over a backend.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use norn_merkle::{Hash128, MerkleTree, TreeShape};
use norn_ring::{NodeId, Partition};

use crate::backend::{Backend, BatchOp, Column, MemBackend};
use crate::error::{Result, StorageError};
use crate::group_commit::GroupCommit;
use crate::keys::{self, DataKey};
use crate::record::{open, seal};
use crate::trees::{lock_trees, version_digest, PartitionTrees, TreeSet};

/// A stored object: its replication factor and its encoded bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datum {
    /// The largest N the object was written with; selects its tree.
    pub n: u8,
    pub value: Vec<u8>,
}

/// What an [`Storage::update`] does with the current datum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Keep,
    Put(Datum),
    Delete,
}

/// When a write is acknowledged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// Once in the write-ahead log, not yet fsynced: survives a process
    /// crash, not a power cut.
    #[default]
    Buffered,
    /// Once fsynced; concurrent writers share fsyncs (group commit).
    Synced,
}

impl Durability {
    /// [`Durability::Synced`] when `sync`, else [`Durability::Buffered`].
    pub fn synced_if(sync: bool) -> Durability {
        if sync {
            Durability::Synced
        } else {
            Durability::Buffered
        }
    }
}

/// A hint's place in its target's queue; queues are FIFO by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HintId(pub u64);

/// A hint to store with a write: `payload` is for `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewHint {
    pub target: NodeId,
    pub payload: Vec<u8>,
}

/// Pending hints for one target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HintQueueStats {
    pub hints: u64,
    pub bytes: u64,
}

/// One page of a partition scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanPage {
    pub items: Vec<(DataKey, Datum)>,
    /// Keys whose records failed their checksum: skipped, never served.
    pub corrupt: Vec<DataKey>,
    /// Where the next page starts (pass it as `after`), if there may be one.
    pub next: Option<DataKey>,
}

/// How a store behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Shape of every hash tree; must match the cluster's.
    pub tree_shape: TreeShape,
    /// Every write is [`Durability::Synced`], whatever it asks for.
    pub sync_every_write: bool,
    /// Most bytes of hints queued for one target.
    pub hint_bytes_max_per_target: u64,
    /// RocksDB only, for tests: unsynced writes stay in the process's
    /// write-ahead-log buffer until the next sync, so that kill -9 loses
    /// them exactly as a power cut loses what was not fsynced.
    pub emulate_power_loss_on_kill: bool,
    /// RocksDB only: bytes of the block cache every column shares (data
    /// blocks, and the index and filter blocks that find them). Reads of
    /// blocks outside it pay a file read and a checksum each.
    pub block_cache_bytes: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            tree_shape: TreeShape::default(),
            sync_every_write: false,
            hint_bytes_max_per_target: 256 << 20,
            emulate_power_loss_on_kill: false,
            block_cache_bytes: 128 << 20,
        }
    }
}

/// What the node needs from storage. Every method is atomic: it changes
/// all it says, or (on error) nothing.
pub trait Storage: Send + Sync + std::fmt::Debug + 'static {
    /// One datum; a record failing its checksum is [`StorageError::Corrupt`].
    fn get(&self, key: &DataKey) -> Result<Option<Datum>>;

    /// Reads the datum at `key`, lets `change` decide, and writes the outcome
    /// with its tree leaves (and `hint`, if any) in one batch, all under the
    /// partition's write lock. `change` sees `None` for a corrupt record.
    /// Returns the datum now stored.
    fn update(
        &self,
        key: &DataKey,
        durability: Durability,
        hint: Option<NewHint>,
        change: &mut dyn FnMut(Option<Datum>) -> Change,
    ) -> Result<Option<Datum>>;

    /// Up to `limit` data of `partition` in key order, after `after`.
    fn scan_partition(
        &self,
        partition: Partition,
        after: Option<&DataKey>,
        limit: usize,
    ) -> Result<ScanPage>;

    /// Removes every datum and tree of `partition`.
    fn drop_partition(&self, partition: Partition) -> Result<()>;

    /// A copy of the tree of `(partition, n)`.
    fn tree(&self, partition: Partition, n: u8) -> MerkleTree;

    /// The root hash of the tree of `(partition, n)`, without copying it.
    fn tree_root(&self, partition: Partition, n: u8) -> Hash128;

    /// The Ns with a non-empty tree in `partition`.
    fn tree_ns(&self, partition: Partition) -> Vec<u8>;

    /// The partitions with any non-empty tree, in order: the partitions
    /// this store holds data of.
    fn tree_partitions(&self) -> Vec<Partition>;

    /// Recomputes `partition`'s trees from its data (after corruption).
    fn rebuild_trees(&self, partition: Partition) -> Result<()>;

    /// Queues a hint for `target` on its own.
    fn push_hint(&self, hint: NewHint, durability: Durability) -> Result<HintId>;

    /// Up to `limit` of `target`'s hints after `after`, oldest first.
    fn hints(
        &self,
        target: NodeId,
        after: Option<HintId>,
        limit: usize,
    ) -> Result<Vec<(HintId, Vec<u8>)>>;

    /// Deletes one delivered hint.
    fn remove_hint(&self, target: NodeId, id: HintId) -> Result<()>;

    /// Pending hints per target.
    fn hint_queues(&self) -> BTreeMap<NodeId, HintQueueStats>;

    fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>>;

    /// Stores a metadata value, fsynced before it returns.
    fn put_meta(&self, name: &str, value: &[u8]) -> Result<()>;

    /// Removes a metadata value, fsynced before it returns.
    fn delete_meta(&self, name: &str) -> Result<()>;

    /// Makes every acknowledged write durable.
    fn sync(&self) -> Result<()>;

    /// Approximate size of the stored data.
    fn data_size_bytes(&self) -> u64;
}

/// Storage on RocksDB.
#[cfg(feature = "rocksdb")]
pub type RocksStorage = Store<crate::rocks::RocksBackend>;
/// Storage in memory, for the simulator.
pub type MemStorage = Store<MemBackend>;

const TREE_SHAPE_META: &str = "tree-shape";
const SCAN_PAGE: usize = 4096;

/// A [`Storage`] over any [`Backend`].
#[derive(Debug)]
pub struct Store<B: Backend> {
    backend: B,
    options: StoreOptions,
    trees: TreeSet,
    hint_queues: Mutex<BTreeMap<NodeId, HintQueueStats>>,
    next_hint: AtomicU64,
    group_commit: GroupCommit,
    /// Data keys (encoded) seen failing their checksum whose partition's
    /// trees were rebuilt without them; cleared when the key is rewritten.
    known_corrupt: Mutex<HashSet<Vec<u8>>>,
}

impl Store<MemBackend> {
    /// An empty in-memory store.
    pub fn in_memory(options: StoreOptions) -> Result<MemStorage> {
        Store::open(MemBackend::new(), options)
    }
}

impl<B: Backend> Store<B> {
    /// A store over `backend`, loading its trees and hint queues. Trees
    /// persisted with another shape are rebuilt from the data.
    pub fn open(backend: B, options: StoreOptions) -> Result<Store<B>> {
        let store = Store {
            backend,
            options,
            trees: TreeSet::new(options.tree_shape),
            hint_queues: Mutex::new(BTreeMap::new()),
            next_hint: AtomicU64::new(1),
            group_commit: GroupCommit::default(),
            known_corrupt: Mutex::new(HashSet::new()),
        };
        let shape = encode_shape(options.tree_shape);
        if store.get_meta(TREE_SHAPE_META)?.as_deref() == Some(shape.as_slice()) {
            store.load_trees()?;
        } else {
            store.rebuild_all_trees()?;
            store.put_meta(TREE_SHAPE_META, &shape)?;
        }
        store.load_hint_queues()?;
        Ok(store)
    }

    /// The backend, for tests that reach under the store.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Gives the backend back, to reopen it (as after a restart).
    pub fn into_backend(self) -> B {
        self.backend
    }

    /// How many fsyncs the store ran.
    pub fn sync_count(&self) -> u64 {
        self.group_commit.sync_count()
    }

    fn finish(&self, durability: Durability) -> Result<()> {
        if durability == Durability::Synced || self.options.sync_every_write {
            self.group_commit.wait_durable(|| self.backend.sync())?;
        }
        Ok(())
    }

    /// Reads a whole column range page by page.
    fn for_each(
        &self,
        column: Column,
        start: &[u8],
        end: &[u8],
        mut f: impl FnMut(&[u8], &[u8]) -> Result<()>,
    ) -> Result<()> {
        let mut from = start.to_vec();
        loop {
            let page = self.backend.scan(column, &from, end, SCAN_PAGE)?;
            for (key, value) in &page {
                f(key, value)?;
            }
            match page.last() {
                Some((last, _)) if page.len() == SCAN_PAGE => {
                    from = last.clone();
                    from.push(0);
                }
                _ => return Ok(()),
            }
        }
    }

    fn load_trees(&self) -> Result<()> {
        let segments = self.options.tree_shape.segments();
        self.for_each(Column::Trees, &[], &[0xff; 8], |key, record| {
            let show = || key.escape_ascii().to_string();
            let body = open(Column::Trees.name(), key, record, show)?;
            let leaf = keys::decode_tree_leaf_key(key).filter(|(_, _, s)| *s < segments);
            let (Some((partition, n, segment)), Ok(hash)) = (leaf, <[u8; 16]>::try_from(body))
            else {
                return Err(corrupt_tree(key));
            };
            self.trees
                .load_leaf(partition, n, segment, Hash128(u128::from_le_bytes(hash)));
            Ok(())
        })
    }

    fn rebuild_all_trees(&self) -> Result<()> {
        let mut partitions = Vec::new();
        self.for_each(Column::Data, &[], &[0xff; 3], |key, _| {
            if let Some(data_key) = DataKey::decode(key) {
                if partitions.last() != Some(&data_key.partition) {
                    partitions.push(data_key.partition);
                }
            }
            Ok(())
        })?;
        self.backend.write(vec![BatchOp::DeleteRange(
            Column::Trees,
            vec![],
            vec![0xff; 8],
        )])?;
        for partition in partitions {
            self.rebuild_trees(partition)?;
        }
        Ok(())
    }

    fn load_hint_queues(&self) -> Result<()> {
        let mut queues = BTreeMap::<NodeId, HintQueueStats>::new();
        let mut last_sequence = 0;
        self.for_each(Column::Hints, &[], &[0xff; 17], |key, record| {
            let Some((target, sequence)) = keys::decode_hint_key(key) else {
                return Err(StorageError::Corrupt {
                    column: Column::Hints.name(),
                    key: key.escape_ascii().to_string(),
                    reason: "malformed hint key".into(),
                });
            };
            let stats = queues.entry(target).or_default();
            stats.hints += 1;
            stats.bytes += record.len() as u64;
            last_sequence = last_sequence.max(sequence);
            Ok(())
        })?;
        *self.lock_hint_queues() = queues;
        self.next_hint.store(last_sequence + 1, Ordering::SeqCst);
        Ok(())
    }

    fn lock_hint_queues(&self) -> std::sync::MutexGuard<'_, BTreeMap<NodeId, HintQueueStats>> {
        self.hint_queues.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a hint to `ops` if its target's queue has room, reserving its
    /// bytes so that concurrent writers cannot overfill the queue together.
    /// A caller whose batch then fails calls [`Store::release_hint`].
    fn stage_hint(&self, hint: NewHint, ops: &mut Vec<BatchOp>) -> Result<(NodeId, HintId, u64)> {
        let id = HintId(self.next_hint.fetch_add(1, Ordering::SeqCst));
        let key = keys::hint_key(hint.target, id.0);
        let record = seal(&key, &hint.payload);
        let bytes = record.len() as u64;
        let max = self.options.hint_bytes_max_per_target;
        let mut queues = self.lock_hint_queues();
        let queue = queues.entry(hint.target).or_default();
        if queue.bytes + bytes > max {
            let queued_bytes = queue.bytes;
            if queue.hints == 0 {
                queues.remove(&hint.target);
            }
            return Err(StorageError::HintQueueFull {
                target: hint.target,
                queued_bytes,
                hint_bytes: bytes,
                max_bytes: max,
            });
        }
        queue.hints += 1;
        queue.bytes += bytes;
        ops.push(BatchOp::Put(Column::Hints, key.to_vec(), record));
        Ok((hint.target, id, bytes))
    }

    /// Takes back a reservation of [`Store::stage_hint`], or accounts for a
    /// removed hint.
    fn release_hint(&self, target: NodeId, bytes: u64) {
        let mut queues = self.lock_hint_queues();
        if let Some(queue) = queues.get_mut(&target) {
            queue.hints = queue.hints.saturating_sub(1);
            queue.bytes = queue.bytes.saturating_sub(bytes);
            if queue.hints == 0 {
                queues.remove(&target);
            }
        }
    }

    /// Takes a corrupt record out of its partition's trees (once), so the
    /// trees no longer claim a version this store cannot serve and the next
    /// exchange fetches the key from a peer.
    fn exclude_corrupt(&self, key: &DataKey, encoded: &[u8]) {
        let first_sighting = self
            .known_corrupt
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(encoded.to_vec());
        if first_sighting {
            tracing::warn!(key = %key, "corrupt record: rebuilding its partition's trees without it");
            if let Err(e) = self.rebuild_trees(key.partition) {
                tracing::error!(partition = %key.partition, error = %e, "trees not rebuilt");
            }
        }
    }

    fn read_datum(&self, key: &DataKey, encoded: &[u8]) -> Result<Option<Datum>> {
        let Some(record) = self.backend.get(Column::Data, encoded)? else {
            return Ok(None);
        };
        decode_datum(key, encoded, &record).map(Some)
    }

    /// Applies a datum change to the trees in memory and stages the changed
    /// leaves. XOR is its own inverse: applying the same change again undoes
    /// it, which is how a failed write is rolled back.
    fn stage_tree_change(
        &self,
        trees: &mut PartitionTrees,
        key: &DataKey,
        old: Option<&Datum>,
        new: Option<&Datum>,
        ops: &mut Vec<BatchOp>,
    ) {
        let tree_key = key.tree_key();
        let shape = self.options.tree_shape;
        let mut touch = |n: u8, old_digest: Option<u64>, new_digest: Option<u64>| {
            let tree = trees.entry(n).or_insert_with(|| MerkleTree::new(shape));
            let (segment, hash) = tree.apply(&tree_key, old_digest, new_digest);
            let leaf_key = keys::tree_leaf_key(key.partition, n, segment);
            ops.push(match hash {
                Hash128::ZERO => BatchOp::Delete(Column::Trees, leaf_key.to_vec()),
                hash => BatchOp::Put(
                    Column::Trees,
                    leaf_key.to_vec(),
                    seal(&leaf_key, &hash.0.to_le_bytes()),
                ),
            });
        };
        let digest = |d: &Datum| version_digest(&d.value);
        match (old, new) {
            (Some(o), Some(n)) if o.n == n.n => touch(n.n, Some(digest(o)), Some(digest(n))),
            _ => {
                if let Some(o) = old {
                    touch(o.n, Some(digest(o)), None);
                }
                if let Some(n) = new {
                    touch(n.n, None, Some(digest(n)));
                }
            }
        }
    }

    fn undo_tree_change(
        &self,
        trees: &mut PartitionTrees,
        key: &DataKey,
        old: Option<&Datum>,
        new: Option<&Datum>,
    ) {
        self.stage_tree_change(trees, key, old, new, &mut Vec::new());
    }
}

fn encode_shape(shape: TreeShape) -> Vec<u8> {
    let mut out = shape.fanout.to_be_bytes().to_vec();
    out.push(shape.depth);
    out
}

fn corrupt_tree(key: &[u8]) -> StorageError {
    StorageError::Corrupt {
        column: Column::Trees.name(),
        key: key.escape_ascii().to_string(),
        reason: "malformed tree leaf".into(),
    }
}

fn encode_datum(encoded_key: &[u8], datum: &Datum) -> Vec<u8> {
    let mut body = Vec::with_capacity(1 + datum.value.len());
    body.push(datum.n);
    body.extend_from_slice(&datum.value);
    seal(encoded_key, &body)
}

fn decode_datum(key: &DataKey, encoded_key: &[u8], record: &[u8]) -> Result<Datum> {
    let body = open(Column::Data.name(), encoded_key, record, || key.to_string())?;
    let Some((&n, value)) = body.split_first() else {
        return Err(StorageError::Corrupt {
            column: Column::Data.name(),
            key: key.to_string(),
            reason: "empty body".into(),
        });
    };
    Ok(Datum {
        n,
        value: value.to_vec(),
    })
}

impl<B: Backend> Storage for Store<B> {
    fn get(&self, key: &DataKey) -> Result<Option<Datum>> {
        let encoded = key.encode();
        let read = self.read_datum(key, &encoded);
        if let Err(StorageError::Corrupt { .. }) = &read {
            self.exclude_corrupt(key, &encoded);
        }
        read
    }

    fn update(
        &self,
        key: &DataKey,
        durability: Durability,
        hint: Option<NewHint>,
        change: &mut dyn FnMut(Option<Datum>) -> Change,
    ) -> Result<Option<Datum>> {
        let encoded = key.encode();
        let lock = self.trees.partition(key.partition);
        let mut trees = lock_trees(&lock);
        let (old, was_corrupt) = match self.read_datum(key, &encoded) {
            Ok(old) => (old, false),
            Err(StorageError::Corrupt { reason, .. }) => {
                tracing::warn!(key = %key, reason, "overwriting a corrupt record");
                (None, true)
            }
            Err(other) => return Err(other),
        };
        let new = match change(old.clone()) {
            Change::Keep => return Ok(old),
            Change::Put(datum) => Some(datum),
            Change::Delete => None,
        };
        let mut ops = Vec::with_capacity(4);
        ops.push(match &new {
            Some(datum) => {
                BatchOp::Put(Column::Data, encoded.clone(), encode_datum(&encoded, datum))
            }
            None => BatchOp::Delete(Column::Data, encoded.clone()),
        });
        let staged_hint = hint.map(|h| self.stage_hint(h, &mut ops)).transpose()?;
        self.stage_tree_change(&mut trees, key, old.as_ref(), new.as_ref(), &mut ops);
        if let Err(e) = self.backend.write(ops) {
            self.undo_tree_change(&mut trees, key, old.as_ref(), new.as_ref());
            if let Some((target, _, bytes)) = staged_hint {
                self.release_hint(target, bytes);
            }
            return Err(e);
        }
        drop(trees);
        if was_corrupt {
            self.known_corrupt
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&encoded);
            self.rebuild_trees(key.partition)?;
        }
        self.finish(durability)?;
        Ok(new)
    }

    fn scan_partition(
        &self,
        partition: Partition,
        after: Option<&DataKey>,
        limit: usize,
    ) -> Result<ScanPage> {
        let (start, end) = keys::partition_range(partition);
        let from = match after {
            Some(after) => {
                let mut from = after.encode();
                from.push(0);
                from
            }
            None => start,
        };
        let rows = self.backend.scan(Column::Data, &from, &end, limit)?;
        let mut page = ScanPage::default();
        for (encoded, record) in &rows {
            let Some(key) = DataKey::decode(encoded) else {
                tracing::warn!(key = %encoded.escape_ascii(), "malformed data key skipped");
                continue;
            };
            match decode_datum(&key, encoded, record) {
                Ok(datum) => page.items.push((key, datum)),
                Err(_) => {
                    self.exclude_corrupt(&key, encoded);
                    page.corrupt.push(key);
                }
            }
        }
        if rows.len() == limit {
            page.next = rows.last().and_then(|(k, _)| DataKey::decode(k));
        }
        Ok(page)
    }

    fn drop_partition(&self, partition: Partition) -> Result<()> {
        let lock = self.trees.partition(partition);
        let mut trees = lock_trees(&lock);
        let (start, end) = keys::partition_range(partition);
        let tree_end = match partition.0.checked_add(1) {
            Some(next) => next.to_be_bytes().to_vec(),
            None => vec![0xff; 8],
        };
        self.backend.write(vec![
            BatchOp::DeleteRange(Column::Data, start.clone(), end),
            BatchOp::DeleteRange(Column::Trees, start, tree_end),
        ])?;
        trees.clear();
        Ok(())
    }

    fn tree(&self, partition: Partition, n: u8) -> MerkleTree {
        self.trees.tree(partition, n)
    }

    fn tree_root(&self, partition: Partition, n: u8) -> Hash128 {
        self.trees.root(partition, n)
    }

    fn tree_ns(&self, partition: Partition) -> Vec<u8> {
        self.trees.ns(partition)
    }

    fn tree_partitions(&self) -> Vec<Partition> {
        self.trees.partitions()
    }

    fn rebuild_trees(&self, partition: Partition) -> Result<()> {
        let lock = self.trees.partition(partition);
        let mut trees = lock_trees(&lock);
        let shape = self.options.tree_shape;
        let mut rebuilt = PartitionTrees::new();
        let (start, end) = keys::partition_range(partition);
        self.for_each(Column::Data, &start, &end, |encoded, record| {
            let Some(key) = DataKey::decode(encoded) else {
                return Ok(());
            };
            if let Ok(datum) = decode_datum(&key, encoded, record) {
                let tree = rebuilt
                    .entry(datum.n)
                    .or_insert_with(|| MerkleTree::new(shape));
                tree.apply(&key.tree_key(), None, Some(version_digest(&datum.value)));
            }
            Ok(())
        })?;
        let tree_end = match partition.0.checked_add(1) {
            Some(next) => next.to_be_bytes().to_vec(),
            None => vec![0xff; 8],
        };
        let mut ops = vec![BatchOp::DeleteRange(Column::Trees, start, tree_end)];
        for (&n, tree) in &rebuilt {
            for (segment, hash) in (0u32..).zip(tree.leaves()) {
                if *hash != Hash128::ZERO {
                    let key = keys::tree_leaf_key(partition, n, segment);
                    ops.push(BatchOp::Put(
                        Column::Trees,
                        key.to_vec(),
                        seal(&key, &hash.0.to_le_bytes()),
                    ));
                }
            }
        }
        self.backend.write(ops)?;
        *trees = rebuilt;
        Ok(())
    }

    fn push_hint(&self, hint: NewHint, durability: Durability) -> Result<HintId> {
        let mut ops = Vec::with_capacity(1);
        let (target, id, bytes) = self.stage_hint(hint, &mut ops)?;
        if let Err(e) = self.backend.write(ops) {
            self.release_hint(target, bytes);
            return Err(e);
        }
        self.finish(durability)?;
        Ok(id)
    }

    fn hints(
        &self,
        target: NodeId,
        after: Option<HintId>,
        limit: usize,
    ) -> Result<Vec<(HintId, Vec<u8>)>> {
        let start = keys::hint_key(target, after.map_or(0, |a| a.0.saturating_add(1)));
        let end = keys::hint_key(target, u64::MAX);
        let rows = self.backend.scan(Column::Hints, &start, &end, limit)?;
        rows.into_iter()
            .map(|(key, record)| {
                let (_, sequence) = keys::decode_hint_key(&key).unwrap_or((target, 0));
                let show = || format!("hint {sequence} for {target}");
                let body = open(Column::Hints.name(), &key, &record, show)?;
                Ok((HintId(sequence), body.to_vec()))
            })
            .collect()
    }

    fn remove_hint(&self, target: NodeId, id: HintId) -> Result<()> {
        let key = keys::hint_key(target, id.0);
        let Some(record) = self.backend.get(Column::Hints, &key)? else {
            return Ok(());
        };
        self.backend
            .write(vec![BatchOp::Delete(Column::Hints, key.to_vec())])?;
        self.release_hint(target, record.len() as u64);
        Ok(())
    }

    fn hint_queues(&self) -> BTreeMap<NodeId, HintQueueStats> {
        self.lock_hint_queues().clone()
    }

    fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let Some(record) = self.backend.get(Column::Meta, name.as_bytes())? else {
            return Ok(None);
        };
        let body = open(Column::Meta.name(), name.as_bytes(), &record, || {
            name.to_string()
        })?;
        Ok(Some(body.to_vec()))
    }

    fn put_meta(&self, name: &str, value: &[u8]) -> Result<()> {
        let record = seal(name.as_bytes(), value);
        self.backend.write(vec![BatchOp::Put(
            Column::Meta,
            name.as_bytes().to_vec(),
            record,
        )])?;
        self.finish(Durability::Synced)
    }

    fn delete_meta(&self, name: &str) -> Result<()> {
        self.backend.write(vec![BatchOp::Delete(
            Column::Meta,
            name.as_bytes().to_vec(),
        )])?;
        self.finish(Durability::Synced)
    }

    fn sync(&self) -> Result<()> {
        self.finish(Durability::Synced)
    }

    fn data_size_bytes(&self) -> u64 {
        self.backend.data_size_bytes()
    }
}
