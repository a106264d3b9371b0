//! The node's durable store: a few column families of bytes, written in atomic batches.
//!
//! The consensus needs two guarantees from here. A multi-key change (a block with its
//! certificate and the new chain state) lands entirely or not at all, so every write goes
//! through one [`WriteBatch`]. And an own vote is on disk before it is sent, so a write can ask
//! for [`Durability::Sync`] (fsync of the write-ahead log before returning); everything else uses
//! [`Durability::Buffered`], which survives a process crash but not a power cut.
//!
//! Two backends implement [`Store`]: [`RocksStore`] (RocksDB, the real one) and
//! [`MemoryStore`] (for tests). One test suite (`tests.rs`) runs against both. The schema
//! version is recorded at creation and checked at every open: a database written by an
//! incompatible version is refused with an error, never read.
//!
//! Keys and values are opaque bytes here; typed encodings (SSZ) live with their owners.

mod memory;
mod rocks;
#[cfg(test)]
mod tests;

#[cfg(test)]
pub use memory::CountingStore;
pub use memory::{MemoryDb, MemoryStore};
pub use rocks::RocksStore;

use thiserror::Error;

/// Version of the on-disk layout. Bump it with any incompatible change of columns or encodings.
/// 2: own votes and certificates keyed for reads from the finalized view on, an index of
/// unfinalized blocks, epoch-ending finalizations and evidence (issue 12).
/// 3: `ChainState` (the anchor's state) carries `task_states`; a history floor key.
/// 4: `TaskResult` carries the performer's signature, `GenesisConfig` the AVS task
/// definitions; the `tasks` column.
/// 5: the `automation` column (client automations, docs/protocol.md 7.5).
pub const SCHEMA_VERSION: u32 = 5;

/// Key in [`Column::Meta`] that holds the schema version as a big-endian `u32`.
pub const SCHEMA_VERSION_KEY: &[u8] = b"schema_version";

/// The column families. Each is its own key space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Column {
    /// Blocks by root.
    Blocks,
    /// Certificates (notarization, nullification, finalization) by kind and view.
    Certificates,
    /// Chain state: finalized head, epoch, operator set.
    ChainState,
    /// This node's own votes, written with [`Durability::Sync`] before they are published.
    Votes,
    /// The operator pool (check-ins), one row per operator address.
    OperatorPool,
    /// AVS tasks: pending submissions and finished tasks' records (`crate::avs`).
    Tasks,
    /// Store metadata: schema version.
    Meta,
    /// Client automations (`crate::automation`): definitions by owner and id, the id index, and
    /// the sign-in token secret.
    Automation,
}

impl Column {
    pub const ALL: [Column; 8] = [
        Column::Blocks,
        Column::Certificates,
        Column::ChainState,
        Column::Votes,
        Column::OperatorPool,
        Column::Tasks,
        Column::Meta,
        Column::Automation,
    ];

    /// The column family's name on disk. Never change one: that is a schema change.
    pub const fn name(self) -> &'static str {
        match self {
            Column::Blocks => "blocks",
            Column::Certificates => "certificates",
            Column::ChainState => "chain_state",
            Column::Votes => "votes",
            Column::OperatorPool => "operator_pool",
            Column::Tasks => "tasks",
            Column::Meta => "meta",
            Column::Automation => "automation",
        }
    }
}

/// How far a write must have gone before [`Store::write`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The write-ahead log is fsynced: the write survives a power cut. Used for own votes.
    Sync,
    /// The write is in the log but not synced: it survives a process crash, not a power cut.
    Buffered,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    Put {
        column: Column,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        column: Column,
        key: Vec<u8>,
    },
    /// Every key `>= start` and `< end`.
    DeleteRange {
        column: Column,
        start: Vec<u8>,
        end: Vec<u8>,
    },
}

/// A set of puts and deletes applied atomically, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<Op>,
}

impl WriteBatch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn put(&mut self, column: Column, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(Op::Put { column, key: key.into(), value: value.into() });
    }

    pub fn delete(&mut self, column: Column, key: impl Into<Vec<u8>>) {
        self.ops.push(Op::Delete { column, key: key.into() });
    }

    /// Deletes every key of `column` in `start..end` (`start` inclusive, `end` exclusive).
    pub fn delete_range(
        &mut self,
        column: Column,
        start: impl Into<Vec<u8>>,
        end: impl Into<Vec<u8>>,
    ) {
        self.ops.push(Op::DeleteRange { column, start: start.into(), end: end.into() });
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// What a read of `key` in `column` will see once this batch is written, when the batch
    /// decides it: `Some(Some(value))` after a put, `Some(None)` after a delete, `None` when
    /// the batch does not touch the key.
    pub fn pending(&self, column: Column, key: &[u8]) -> Option<Option<&[u8]>> {
        self.ops.iter().rev().find_map(|op| match op {
            Op::Put { column: c, key: k, value } if *c == column && k.as_slice() == key => {
                Some(Some(value.as_slice()))
            }
            Op::Delete { column: c, key: k } if *c == column && k.as_slice() == key => Some(None),
            Op::DeleteRange { column: c, start, end }
                if *c == column && start.as_slice() <= key && key < end.as_slice() =>
            {
                Some(None)
            }
            _ => None,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Checks every operation before any is applied, so a refused batch changes nothing.
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        for op in &self.ops {
            let (column, key) = match op {
                Op::Put { column, key, .. } | Op::Delete { column, key } => (*column, key),
                Op::DeleteRange { column, start, end } => {
                    if *column == Column::Meta {
                        return Err(StoreError::ReservedKey);
                    }
                    if start >= end {
                        return Err(StoreError::EmptyRange(*column));
                    }
                    (*column, start)
                }
            };
            if key.is_empty() {
                return Err(StoreError::EmptyKey(column));
            }
            if column == Column::Meta && key.as_slice() == SCHEMA_VERSION_KEY {
                return Err(StoreError::ReservedKey);
            }
        }
        Ok(())
    }

    pub(crate) fn ops(&self) -> &[Op] {
        &self.ops
    }
}

#[derive(Debug, Error)]
pub enum StoreError {
    #[error(
        "database at {path} has schema version {found}, this avs-node needs {expected}; \
         use a binary of the matching version or start from a fresh --data-dir"
    )]
    SchemaMismatch { path: String, found: u32, expected: u32 },
    #[error(
        "{path} holds a database that avs-node did not create ({reason}); choose another --data-dir"
    )]
    NotAStore { path: String, reason: String },
    #[error("empty key in column {0:?}")]
    EmptyKey(Column),
    #[error("empty or inverted key range in column {0:?}")]
    EmptyRange(Column),
    #[error("the schema version key is managed by the store and cannot be written")]
    ReservedKey,
    #[error("cannot create data directory {path}: {source}")]
    CreateDir { path: String, source: std::io::Error },
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
}

/// One key-value pair as returned by [`Store::range`].
pub type Entry = (Vec<u8>, Vec<u8>);

/// A key-value store with column families, atomic batches and selectable durability.
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    fn get(&self, column: Column, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Applies the whole batch atomically, or nothing if it is refused or fails.
    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), StoreError>;

    /// Up to `limit` entries of `column` with key `>= start`, in ascending key order.
    fn range(&self, column: Column, start: &[u8], limit: usize) -> Result<Vec<Entry>, StoreError>;

    /// Flushes buffered writes to disk; called on shutdown.
    fn flush(&self) -> Result<(), StoreError>;

    /// One put as its own batch.
    fn put(
        &self,
        column: Column,
        key: &[u8],
        value: &[u8],
        durability: Durability,
    ) -> Result<(), StoreError> {
        let mut batch = WriteBatch::new();
        batch.put(column, key, value);
        self.write(batch, durability)
    }
}
