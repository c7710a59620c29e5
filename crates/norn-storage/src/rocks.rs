//! [`RocksBackend`]: the RocksDB engine behind a store, one column family
//! per [`Column`]. Built with the `rocksdb` feature (on by default); the
//! core and the simulator build without it.

use std::path::Path;

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch,
    WriteOptions, DB,
};

use crate::backend::{Backend, BatchOp, Column};
use crate::error::{Result, StorageError};
use crate::storage::{RocksStorage, Store, StoreOptions};

/// RocksDB, one column family per [`Column`].
#[derive(Debug)]
pub struct RocksBackend {
    db: DB,
}

/// Options of the data column, public so that benchmarks can give raw
/// RocksDB the same. Every write reads the key first (to merge versions and
/// update its tree leaf): a whole-key bloom filter on the memtable answers
/// that read for new keys without searching the skiplist, and bloom filters
/// on the SST files do the same below it. Blocks are cached in `cache`.
pub fn data_column_options(options: &mut Options, cache: &Cache) {
    let mut table = table_cached_in(cache);
    table.set_bloom_filter(10.0, false);
    table.set_cache_index_and_filter_blocks(true);
    options.set_block_based_table_factory(&table);
    options.set_memtable_whole_key_filtering(true);
    options.set_memtable_prefix_bloom_ratio(0.1);
}

/// RocksDB's table options, with blocks cached in `cache`.
fn table_cached_in(cache: &Cache) -> BlockBasedOptions {
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    table
}

impl RocksBackend {
    /// Opens (creating if missing) the database at `path`, with a block
    /// cache of `block_cache_bytes` shared by its columns.
    pub fn open(path: &Path, block_cache_bytes: usize) -> Result<RocksBackend> {
        RocksBackend::open_options(path, false, block_cache_bytes)
    }

    /// Opens the database at `path` with RocksDB's manual WAL flush: writes
    /// reach the log file only at [`Backend::sync`], so a killed process
    /// loses every write since the last sync, as a power cut would. For
    /// tests of durability claims.
    pub fn open_with_manual_wal_flush(
        path: &Path,
        block_cache_bytes: usize,
    ) -> Result<RocksBackend> {
        RocksBackend::open_options(path, true, block_cache_bytes)
    }

    fn open_options(
        path: &Path,
        manual_wal_flush: bool,
        block_cache_bytes: usize,
    ) -> Result<RocksBackend> {
        let cache = Cache::new_lru_cache(block_cache_bytes);
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
                data_column_options(&mut cf, &cache);
            } else {
                cf.set_block_based_table_factory(&table_cached_in(&cache));
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

    /// The data column's live SST files and memtables (writes not yet
    /// flushed to a file are data stored too).
    fn data_size_bytes(&self) -> u64 {
        let Ok(cf) = self.cf(Column::Data) else {
            return 0;
        };
        [
            "rocksdb.live-sst-files-size",
            "rocksdb.cur-size-all-mem-tables",
        ]
        .iter()
        .filter_map(|property| self.db.property_int_value_cf(cf, *property).ok().flatten())
        .sum()
    }
}

impl Store<RocksBackend> {
    /// Opens (creating if missing) a RocksDB store in `path`.
    pub fn open_rocks(path: &std::path::Path, options: StoreOptions) -> Result<RocksStorage> {
        let backend = if options.emulate_power_loss_on_kill {
            RocksBackend::open_with_manual_wal_flush(path, options.block_cache_bytes)?
        } else {
            RocksBackend::open(path, options.block_cache_bytes)?
        };
        Store::open(backend, options)
    }
}
