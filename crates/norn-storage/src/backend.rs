//! The key-value front a [`crate::Store`] runs on: four column families,
//! atomic batches, an explicit WAL sync, and bounded range scans.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use rocksdb::{
    BlockBasedOptions, ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch,
    WriteOptions, DB,
};

use crate::error::{Result, StorageError};

/// The column families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Column {
    Data,
    Hints,
    Trees,
    Meta,
}

impl Column {
    pub const ALL: [Column; 4] = [Column::Data, Column::Hints, Column::Trees, Column::Meta];

    pub fn name(self) -> &'static str {
        match self {
            Column::Data => "data",
            Column::Hints => "hints",
            Column::Trees => "trees",
            Column::Meta => "meta",
        }
    }
}

/// One change in an atomic batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOp {
    Put(Column, Vec<u8>, Vec<u8>),
    Delete(Column, Vec<u8>),
    /// Deletes `[start, end)`.
    DeleteRange(Column, Vec<u8>, Vec<u8>),
}

/// What a store needs of a database.
pub trait Backend: Send + Sync + 'static {
    fn get(&self, column: Column, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Applies `ops` atomically, in the write-ahead log but not yet fsynced.
    fn write(&self, ops: Vec<BatchOp>) -> Result<()>;
    /// Makes every write that returned before this call durable.
    fn sync(&self) -> Result<()>;
    /// Up to `limit` entries with `start <= key < end`, in key order.
    fn scan(
        &self,
        column: Column,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
    /// Approximate bytes on disk (or in memory) of the data column.
    fn data_size_bytes(&self) -> u64;
}

/// RocksDB, one column family per [`Column`].
#[derive(Debug)]
pub struct RocksBackend {
    db: DB,
}

/// Options of the data column, public so that benchmarks can give raw
/// RocksDB the same. Every write reads the key first (to merge versions and
/// update its tree leaf): a whole-key bloom filter on the memtable answers
/// that read for new keys without searching the skiplist, and bloom filters
/// on the SST files do the same below it.
pub fn data_column_options(options: &mut Options) {
    let mut table = BlockBasedOptions::default();
    table.set_bloom_filter(10.0, false);
    table.set_cache_index_and_filter_blocks(true);
    options.set_block_based_table_factory(&table);
    options.set_memtable_whole_key_filtering(true);
    options.set_memtable_prefix_bloom_ratio(0.1);
}

impl RocksBackend {
    /// Opens (creating if missing) the database at `path`.
    pub fn open(path: &Path) -> Result<RocksBackend> {
        RocksBackend::open_options(path, false)
    }

    /// Opens the database at `path` with RocksDB's manual WAL flush: writes
    /// reach the log file only at [`Backend::sync`], so a killed process
    /// loses every write since the last sync, as a power cut would. For
    /// tests of durability claims.
    pub fn open_with_manual_wal_flush(path: &Path) -> Result<RocksBackend> {
        RocksBackend::open_options(path, true)
    }

    fn open_options(path: &Path, manual_wal_flush: bool) -> Result<RocksBackend> {
        let mut options = Options::default();
        options.set_manual_wal_flush(manual_wal_flush);
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_compression_type(rocksdb::DBCompressionType::Lz4);
        options.increase_parallelism(2);
        let descriptors = Column::ALL.map(|column| {
            let mut cf = Options::default();
            cf.set_compression_type(rocksdb::DBCompressionType::Lz4);
            if column == Column::Data {
                data_column_options(&mut cf);
            }
            ColumnFamilyDescriptor::new(column.name(), cf)
        });
        let db = DB::open_cf_descriptors(&options, path, descriptors)?;
        Ok(RocksBackend { db })
    }

    fn cf(&self, column: Column) -> Result<&rocksdb::ColumnFamily> {
        self.db
            .cf_handle(column.name())
            .ok_or_else(|| StorageError::Backend {
                reason: format!("column family {} is missing", column.name()),
            })
    }

    /// The raw database, for tests that damage records on purpose.
    pub fn raw_put(&self, column: Column, key: &[u8], value: &[u8]) -> Result<()> {
        Ok(self.db.put_cf(self.cf(column)?, key, value)?)
    }
}

impl Backend for RocksBackend {
    fn get(&self, column: Column, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(self.cf(column)?, key)?)
    }

    fn write(&self, ops: Vec<BatchOp>) -> Result<()> {
        let mut batch = WriteBatch::default();
        for op in ops {
            match op {
                BatchOp::Put(column, key, value) => batch.put_cf(self.cf(column)?, key, value),
                BatchOp::Delete(column, key) => batch.delete_cf(self.cf(column)?, key),
                BatchOp::DeleteRange(column, start, end) => {
                    batch.delete_range_cf(self.cf(column)?, start, end)
                }
            }
        }
        let mut options = WriteOptions::default();
        options.set_sync(false);
        Ok(self.db.write_opt(batch, &options)?)
    }

    fn sync(&self) -> Result<()> {
        Ok(self.db.flush_wal(true)?)
    }

    fn scan(
        &self,
        column: Column,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        let iter = self.db.iterator_cf(
            self.cf(column)?,
            IteratorMode::From(start, Direction::Forward),
        );
        for item in iter {
            let (key, value) = item?;
            if &*key >= end || out.len() == limit {
                break;
            }
            out.push((key.into_vec(), value.into_vec()));
        }
        Ok(out)
    }

    fn data_size_bytes(&self) -> u64 {
        self.cf(Column::Data)
            .ok()
            .and_then(|cf| {
                self.db
                    .property_int_value_cf(cf, "rocksdb.live-sst-files-size")
                    .ok()
                    .flatten()
            })
            .unwrap_or(0)
    }
}

/// An in-memory backend that can lose its unsynced writes, as a power cut
/// would: [`MemBackend::crash`] undoes every write since the last sync.
#[derive(Debug, Default)]
pub struct MemBackend {
    state: Mutex<MemState>,
}

/// A key of the in-memory tables: its column and its bytes.
type MemKey = (Column, Vec<u8>);

#[derive(Debug, Default)]
struct MemState {
    tables: BTreeMap<MemKey, Vec<u8>>,
    /// Previous values of keys written since the last sync, oldest first.
    undo: Vec<(MemKey, Option<Vec<u8>>)>,
}

impl MemBackend {
    pub fn new() -> MemBackend {
        MemBackend::default()
    }

    /// Loses every write since the last sync.
    pub fn crash(&self) {
        let mut state = self.lock();
        while let Some((key, previous)) = state.undo.pop() {
            match previous {
                Some(value) => state.tables.insert(key, value),
                None => state.tables.remove(&key),
            };
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemState> {
        // A panic while holding the lock leaves whole tables behind: each
        // write below is applied entry by entry, never half an entry.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl MemState {
    fn set(&mut self, key: MemKey, value: Option<Vec<u8>>) {
        let previous = match value {
            Some(value) => self.tables.insert(key.clone(), value),
            None => self.tables.remove(&key),
        };
        self.undo.push((key, previous));
    }
}

impl Backend for MemBackend {
    fn get(&self, column: Column, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.lock().tables.get(&(column, key.to_vec())).cloned())
    }

    fn write(&self, ops: Vec<BatchOp>) -> Result<()> {
        let mut state = self.lock();
        for op in ops {
            match op {
                BatchOp::Put(column, key, value) => state.set((column, key), Some(value)),
                BatchOp::Delete(column, key) => state.set((column, key), None),
                BatchOp::DeleteRange(column, start, end) => {
                    let doomed: Vec<_> = state
                        .tables
                        .range((column, start)..(column, end))
                        .map(|(k, _)| k.clone())
                        .collect();
                    for key in doomed {
                        state.set(key, None);
                    }
                }
            }
        }
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        self.lock().undo.clear();
        Ok(())
    }

    fn scan(
        &self,
        column: Column,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let state = self.lock();
        Ok(state
            .tables
            .range((column, start.to_vec())..(column, end.to_vec()))
            .take(limit)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }

    fn data_size_bytes(&self) -> u64 {
        let state = self.lock();
        state
            .tables
            .iter()
            .filter(|((column, _), _)| *column == Column::Data)
            .map(|((_, k), v)| (k.len() + v.len()) as u64)
            .sum()
    }
}
