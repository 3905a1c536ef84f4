//! The engine trait: an ordered byte key-value space with atomic, durable batches.

use std::path::Path;
use std::sync::Arc;

use crate::error::StoreError;

/// A key and its value.
pub type KvPair = (Vec<u8>, Vec<u8>);

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
}

/// The embedded engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// redb: the default; ACID, durable on commit.
    Redb,
    /// sled 0.34: selectable; made power-safe by an `fdatasync` of its data file after each flush.
    Sled,
}

impl EngineKind {
    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Redb => "redb",
            EngineKind::Sled => "sled",
        }
    }
}

impl std::str::FromStr for EngineKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "redb" => Ok(EngineKind::Redb),
            "sled" => Ok(EngineKind::Sled),
            other => Err(format!("unknown store engine {other:?}: use redb or sled")),
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
    })
}
