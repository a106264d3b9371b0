//! In-memory backend with the same semantics as RocksDB, for tests.
//!
//! The data lives in a [`MemoryDb`] that outlives any one [`MemoryStore`] opened on it, so
//! tests can close and reopen a store, and the schema check behaves as it does on disk.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{
    Column, Durability, Entry, Op, SCHEMA_VERSION, SCHEMA_VERSION_KEY, Store, StoreError,
    WriteBatch,
};

type Tables = BTreeMap<Column, BTreeMap<Vec<u8>, Vec<u8>>>;

/// The "disk" of the memory backend: shared, reopenable.
#[derive(Debug, Clone, Default)]
pub struct MemoryDb {
    tables: Arc<Mutex<Tables>>,
}

/// A store handle on a [`MemoryDb`].
#[derive(Debug)]
pub struct MemoryStore {
    db: MemoryDb,
}

impl MemoryStore {
    /// A fresh, empty store.
    pub fn new() -> Self {
        Self::open(&MemoryDb::default()).expect("a fresh memory database has no schema to mismatch")
    }

    /// Opens `db`, initialising it on first use and checking its schema version afterwards.
    pub fn open(db: &MemoryDb) -> Result<Self, StoreError> {
        Self::open_with_schema(db, SCHEMA_VERSION)
    }

    pub(crate) fn open_with_schema(db: &MemoryDb, schema: u32) -> Result<Self, StoreError> {
        let store = Self { db: db.clone() };
        {
            let mut tables = store.lock();
            let meta = tables.entry(Column::Meta).or_default();
            match meta.get(SCHEMA_VERSION_KEY) {
                None => {
                    meta.insert(SCHEMA_VERSION_KEY.to_vec(), schema.to_be_bytes().to_vec());
                }
                Some(raw) => {
                    let found = super::rocks::decode_schema(raw, "memory")?;
                    if found != schema {
                        return Err(StoreError::SchemaMismatch {
                            path: "memory".into(),
                            found,
                            expected: schema,
                        });
                    }
                }
            }
        }
        Ok(store)
    }

    fn lock(&self) -> MutexGuard<'_, Tables> {
        // A panic while holding the lock cannot leave a half-applied batch (batches are applied
        // after validation, and inserting into a BTreeMap does not fail), so the data is sound.
        self.db.tables.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl Store for MemoryStore {
    fn get(&self, column: Column, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().get(&column).and_then(|t| t.get(key)).cloned())
    }

    fn write(&self, batch: WriteBatch, _durability: Durability) -> Result<(), StoreError> {
        batch.validate()?;
        let mut tables = self.lock();
        for op in batch.ops() {
            match op {
                Op::Put { column, key, value } => {
                    tables.entry(*column).or_default().insert(key.clone(), value.clone());
                }
                Op::Delete { column, key } => {
                    if let Some(t) = tables.get_mut(column) {
                        t.remove(key);
                    }
                }
                Op::DeleteRange { column, start, end } => {
                    if let Some(t) = tables.get_mut(column) {
                        let doomed: Vec<Vec<u8>> =
                            t.range(start.clone()..end.clone()).map(|(k, _)| k.clone()).collect();
                        for key in doomed {
                            t.remove(&key);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn range(&self, column: Column, start: &[u8], limit: usize) -> Result<Vec<Entry>, StoreError> {
        let tables = self.lock();
        Ok(tables
            .get(&column)
            .map(|t| {
                t.range(start.to_vec()..).take(limit).map(|(k, v)| (k.clone(), v.clone())).collect()
            })
            .unwrap_or_default())
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A [`MemoryStore`] that counts the batches written, the ranges and the keys read through it,
/// so a test can show what a path did not write, scan or read.
#[cfg(test)]
#[derive(Debug, Default)]
pub struct CountingStore {
    pub inner: MemoryStore,
    pub writes: std::sync::atomic::AtomicU64,
    pub ranges: std::sync::atomic::AtomicU64,
    pub gets: std::sync::atomic::AtomicU64,
}

#[cfg(test)]
impl CountingStore {
    /// Counts the calls made on `inner`.
    pub fn over(inner: MemoryStore) -> Self {
        Self { inner, ..Self::default() }
    }
}

#[cfg(test)]
impl Store for CountingStore {
    fn get(&self, column: Column, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.gets.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.get(column, key)
    }

    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), StoreError> {
        self.writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.write(batch, durability)
    }

    fn range(&self, column: Column, start: &[u8], limit: usize) -> Result<Vec<Entry>, StoreError> {
        self.ranges.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.range(column, start, limit)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush()
    }
}
