//! RocksDB backend.
//!
//! One column family per [`Column`]. Writes go through RocksDB's `WriteBatch`, which the
//! write-ahead log makes atomic across every column family, also across a crash. A
//! [`Durability::Sync`] write sets `WriteOptions::sync`, so the log is fsynced before `write`
//! returns. Compression is off: the values are SSZ of hashes and signatures, which barely
//! compress, and leaving the codecs out keeps the C++ build lean.

use std::path::Path;

use rocksdb::{ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, WriteOptions};

use super::{
    Column, Durability, Entry, Op, SCHEMA_VERSION, SCHEMA_VERSION_KEY, Store, StoreError,
    WriteBatch,
};

/// The RocksDB-backed store. Dropping it closes the database after flushing memtables.
pub struct RocksStore {
    db: DB,
    path: String,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl RocksStore {
    /// Opens the store at `path`, creating it (and the directory) if there is none.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_schema(path, SCHEMA_VERSION)
    }

    pub(crate) fn open_with_schema(path: &Path, schema: u32) -> Result<Self, StoreError> {
        let shown = path.display().to_string();
        let mut opts = Options::default();
        opts.set_keep_log_file_num(4);
        opts.set_max_open_files(512);

        if !path.join("CURRENT").exists() {
            std::fs::create_dir_all(path)
                .map_err(|source| StoreError::CreateDir { path: shown.clone(), source })?;
            if std::fs::read_dir(path).map(|mut d| d.next().is_some()).unwrap_or(false) {
                return Err(StoreError::NotAStore {
                    path: shown,
                    reason: "the directory is not empty and has no database".into(),
                });
            }
            opts.create_if_missing(true);
            opts.create_missing_column_families(true);
            let db =
                DB::open_cf_descriptors(&opts, path, descriptors(Column::ALL.map(Column::name)))?;
            let store = Self { db, path: shown };
            let mut batch = rocksdb::WriteBatch::default();
            batch.put_cf(store.cf(Column::Meta)?, SCHEMA_VERSION_KEY, schema.to_be_bytes());
            store.db.write_opt(batch, &sync_options(Durability::Sync))?;
            return Ok(store);
        }

        // An existing database: open exactly the families it has (RocksDB requires all of them),
        // then refuse it unless it is ours and of our schema.
        let existing = DB::list_cf(&opts, path)?;
        if !existing.iter().any(|name| name == Column::Meta.name()) {
            return Err(StoreError::NotAStore {
                path: shown,
                reason: "it has no meta column family".into(),
            });
        }
        let db =
            DB::open_cf_descriptors(&opts, path, descriptors(existing.iter().map(String::as_str)))?;
        let store = Self { db, path: shown };
        let raw =
            store.db.get_cf(store.cf(Column::Meta)?, SCHEMA_VERSION_KEY)?.ok_or_else(|| {
                StoreError::NotAStore {
                    path: store.path.clone(),
                    reason: "no schema version".into(),
                }
            })?;
        let found = decode_schema(&raw, &store.path)?;
        if found != schema {
            return Err(StoreError::SchemaMismatch {
                path: store.path.clone(),
                found,
                expected: schema,
            });
        }
        if let Some(missing) = Column::ALL.iter().find(|c| store.db.cf_handle(c.name()).is_none()) {
            return Err(StoreError::NotAStore {
                path: store.path.clone(),
                reason: format!("column family {} is missing", missing.name()),
            });
        }
        Ok(store)
    }

    fn cf(&self, column: Column) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db.cf_handle(column.name()).ok_or_else(|| StoreError::NotAStore {
            path: self.path.clone(),
            reason: format!("column family {} is missing", column.name()),
        })
    }
}

pub(super) fn decode_schema(raw: &[u8], path: &str) -> Result<u32, StoreError> {
    let bytes: [u8; 4] = raw.try_into().map_err(|_| StoreError::NotAStore {
        path: path.to_owned(),
        reason: format!("schema version has {} bytes, expected 4", raw.len()),
    })?;
    Ok(u32::from_be_bytes(bytes))
}

fn descriptors<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<ColumnFamilyDescriptor> {
    names.into_iter().map(|name| ColumnFamilyDescriptor::new(name, Options::default())).collect()
}

fn sync_options(durability: Durability) -> WriteOptions {
    let mut options = WriteOptions::default();
    options.set_sync(durability == Durability::Sync);
    options
}

impl Store for RocksStore {
    fn get(&self, column: Column, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(column)?, key)?)
    }

    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), StoreError> {
        batch.validate()?;
        let mut raw = rocksdb::WriteBatch::default();
        for op in batch.ops() {
            match op {
                Op::Put { column, key, value } => raw.put_cf(self.cf(*column)?, key, value),
                Op::Delete { column, key } => raw.delete_cf(self.cf(*column)?, key),
                Op::DeleteRange { column, start, end } => {
                    raw.delete_range_cf(self.cf(*column)?, start, end)
                }
            }
        }
        self.db.write_opt(raw, &sync_options(durability))?;
        Ok(())
    }

    fn range(&self, column: Column, start: &[u8], limit: usize) -> Result<Vec<Entry>, StoreError> {
        self.db
            .iterator_cf(self.cf(column)?, IteratorMode::From(start, Direction::Forward))
            .take(limit)
            .map(|item| item.map(|(k, v)| (k.into_vec(), v.into_vec())).map_err(StoreError::from))
            .collect()
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_wal(true)?;
        self.db.flush()?;
        Ok(())
    }
}
