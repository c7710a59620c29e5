//! The key-value front a [`crate::Store`] runs on: four column families,
//! atomic batches, an explicit WAL sync, and bounded range scans.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::error::Result;

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
pub trait Backend: Send + Sync + std::fmt::Debug + 'static {
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

    /// A copy of what a backup of the disk would hold now: every synced
    /// write, none of the unsynced ones. Restoring it is restoring a node
    /// from an older copy of its data directory.
    pub fn backup(&self) -> MemBackend {
        let state = self.lock();
        let mut tables = state.tables.clone();
        for (key, previous) in state.undo.iter().rev() {
            match previous {
                Some(value) => tables.insert(key.clone(), value.clone()),
                None => tables.remove(key),
            };
        }
        MemBackend {
            state: Mutex::new(MemState {
                tables,
                undo: Vec::new(),
            }),
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
