//! The redb engine (default).
//!
//! redb allows one write transaction at a time, and a durable commit costs an fsync. The
//! [`crate::Store`] committer therefore batches many jobs into one `apply` (group commit); this
//! engine only has to make each batch one `Durability::Immediate` transaction.

use std::path::Path;

use redb::{Database, Durability, ReadableDatabase, TableDefinition};

use crate::engine::{Engine, KvPair};
use crate::error::StoreError;

pub(crate) const FILE_NAME: &str = "agentidp.redb";
/// redb's page cache. Its default (1 GiB) made the node's memory grow with every audit record
/// written; the hot data (agents, credentials, the audit head) is small, and the OS page cache
/// keeps the rest of the file close anyway.
const CACHE_BYTES: usize = 16 * 1024 * 1024;
const KV: TableDefinition<'static, &'static [u8], &'static [u8]> = TableDefinition::new("kv");

type RangeItem<'a> = Result<
    (
        redb::AccessGuard<'a, &'static [u8]>,
        redb::AccessGuard<'a, &'static [u8]>,
    ),
    redb::StorageError,
>;

pub(crate) struct RedbEngine {
    db: Database,
}

impl RedbEngine {
    pub(crate) fn open(path: &Path) -> Result<Self, StoreError> {
        if !path.exists() {
            create_atomically(path)?;
        }
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .open(path)
            .map_err(StoreError::engine)?;
        Ok(RedbEngine { db })
    }
}

/// Creates a new database beside `path`, with its table, and renames it into place only when it
/// is complete and synced: a crash during the very first start must not leave a half-written
/// header that every later start would refuse.
fn create_atomically(path: &Path) -> Result<(), StoreError> {
    let tmp = path.with_extension("redb.creating");
    let _ = std::fs::remove_file(&tmp);
    {
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&tmp)
            .map_err(StoreError::engine)?;
        let txn = db.begin_write().map_err(StoreError::engine)?;
        txn.open_table(KV).map_err(StoreError::engine)?;
        txn.commit().map_err(StoreError::engine)?;
    }
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(StoreError::engine)?;
    std::fs::rename(&tmp, path).map_err(StoreError::engine)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(StoreError::engine)?;
    }
    Ok(())
}

impl Engine for RedbEngine {
    fn name(&self) -> &'static str {
        "redb"
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::engine)?;
        let table = txn.open_table(KV).map_err(StoreError::engine)?;
        let value = table.get(key).map_err(StoreError::engine)?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<KvPair>, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::engine)?;
        let table = txn.open_table(KV).map_err(StoreError::engine)?;
        let range = table.range(start..end).map_err(StoreError::engine)?;
        let items: Box<dyn Iterator<Item = RangeItem<'_>>> = if reverse {
            Box::new(range.rev())
        } else {
            Box::new(range)
        };
        let mut out = Vec::new();
        for item in items.take(limit) {
            let (k, v) = item.map_err(StoreError::engine)?;
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }

    fn apply(&self, writes: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(StoreError::engine)?;
        // Immediate: commit() returns only after the data is on stable storage.
        txn.set_durability(Durability::Immediate)
            .map_err(StoreError::engine)?;
        {
            let mut table = txn.open_table(KV).map_err(StoreError::engine)?;
            for (k, v) in &writes {
                match v {
                    Some(v) => {
                        table
                            .insert(k.as_slice(), v.as_slice())
                            .map_err(StoreError::engine)?;
                    }
                    None => {
                        table.remove(k.as_slice()).map_err(StoreError::engine)?;
                    }
                }
            }
        }
        txn.commit().map_err(StoreError::engine)
    }
}
