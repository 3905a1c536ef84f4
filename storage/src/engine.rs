//! The engine trait: an ordered byte key-value space with atomic, durable batches.

use std::path::Path;
use std::sync::Arc;

use crate::error::StoreError;

/// A key and its value.
pub type KvPair = (Vec<u8>, Vec<u8>);

/// A put (`Some`) or delete (`None`) of one key.
pub type Write = (Vec<u8>, Option<Vec<u8>>);

/// One committer batch of an engine shared by several processes (PostgreSQL): reads through it
/// see every batch committed before it began, by any process, and its commit is serialized with
/// every other batch. See [`Engine::begin_batch`].
pub trait Batch: Send {
    /// Reads one key inside the batch.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Scans inside the batch, like [`Engine::scan`].
    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<KvPair>, StoreError>;
    /// Applies the batch's writes atomically and durably and ends it. `identity`: the writes
    /// change what authentication depends on (the shared generation is bumped and announced).
    fn commit(self: Box<Self>, writes: Vec<Write>, identity: bool) -> Result<(), StoreError>;
}

/// An embedded key-value engine. Every engine must pass the shared suite in `suite.rs`.
///
/// The contract that matters for durability: when [`Engine::apply`] returns `Ok`, the whole batch
/// is on stable storage (survives `kill -9` and a power cut) and was applied atomically.
pub trait Engine: Send + Sync + 'static {
    /// The engine's name, as given to `--store`.
    fn name(&self) -> &'static str;
    /// Reads one key.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Reads up to `limit` pairs with `start <= key < end`, ascending or descending.
    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<KvPair>, StoreError>;
    /// Applies puts (`Some`) and deletes (`None`) atomically and durably.
    fn apply(&self, writes: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<(), StoreError>;

    /// Opens a committer batch, for engines that several processes write at once. `None` (the
    /// embedded engines): the process's one committer already orders every write, and the batch
    /// reads the engine directly and ends with one [`Engine::apply`].
    fn begin_batch(&self) -> Result<Option<Box<dyn Batch + '_>>, StoreError> {
        Ok(None)
    }

    /// Whether the engine answers (for `/health`). Embedded engines always do.
    fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Starts following other processes' commits: bumps `stats.identity_generation` on each of
    /// their identity changes, and keeps `stats.untrusted` set while it cannot follow them.
    /// Embedded engines have no other writers.
    fn watch(&self, stats: Arc<crate::committer::CommitStats>) {
        let _ = stats;
    }
}

/// The engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// redb: the default; ACID, durable on commit.
    Redb,
    /// sled 0.34: selectable; made power-safe by an `fdatasync` of its data file after each flush.
    Sled,
    /// PostgreSQL (`--database-url`): one database shared by several nodes.
    Postgres,
}

impl EngineKind {
    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Redb => "redb",
            EngineKind::Sled => "sled",
            EngineKind::Postgres => "postgres",
        }
    }
}

impl std::str::FromStr for EngineKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "redb" => Ok(EngineKind::Redb),
            "sled" => Ok(EngineKind::Sled),
            "postgres" => Ok(EngineKind::Postgres),
            other => Err(format!(
                "unknown store engine {other:?}: use redb, sled or postgres"
            )),
        }
    }
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Opens (creating if needed) the engine's files inside `dir`.
///
/// Refuses a directory that already holds the other engine's files, so that a mistyped `--store`
/// never starts an empty node next to real data.
pub fn open_engine(dir: &Path, kind: EngineKind) -> Result<Arc<dyn Engine>, StoreError> {
    std::fs::create_dir_all(dir).map_err(|e| StoreError::DataDir {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    let redb_file = dir.join(crate::redb_engine::FILE_NAME);
    let sled_dir = dir.join(crate::sled_engine::DIR_NAME);
    match kind {
        EngineKind::Redb if sled_dir.exists() && !redb_file.exists() => {
            return Err(StoreError::WrongEngine {
                path: dir.to_path_buf(),
                found: "sled",
                requested: "redb",
            })
        }
        EngineKind::Sled if redb_file.exists() && !sled_dir.exists() => {
            return Err(StoreError::WrongEngine {
                path: dir.to_path_buf(),
                found: "redb",
                requested: "sled",
            })
        }
        _ => {}
    }
    Ok(match kind {
        EngineKind::Redb => Arc::new(crate::redb_engine::RedbEngine::open(&redb_file)?),
        EngineKind::Sled => Arc::new(crate::sled_engine::SledEngine::open(&sled_dir)?),
        EngineKind::Postgres => {
            return Err(StoreError::Engine(
                "the postgres store lives in a database, not a data directory: give --database-url"
                    .into(),
            ))
        }
    })
}
