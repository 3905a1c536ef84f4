//! The storage error type.

use std::path::PathBuf;

/// Everything that can go wrong in the store. No HTTP types here: the node maps these to responses.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The underlying engine failed (I/O, corruption, a failed commit or flush).
    #[error("storage engine error: {0}")]
    Engine(String),
    /// A stored value could not be decoded (unknown version or malformed bytes).
    #[error("stored value under key {key} could not be decoded: {reason}")]
    Decode {
        /// The key, hex-encoded.
        key: String,
        /// Why decoding failed.
        reason: String,
    },
    /// The data directory was written by a newer agentidp whose schema this binary does not know.
    #[error(
        "the data directory was written with store schema {found}, but this agentidp supports schema {supported} at most; \
         upgrade agentidp, or point --data-dir at another directory"
    )]
    SchemaTooNew {
        /// Schema version found in the store.
        found: u32,
        /// Highest schema version this binary understands.
        supported: u32,
    },
    /// The data directory holds a store of another engine than the one requested.
    #[error("{path} holds a {found} store, but --store {requested} was requested; run with --store {found}, or use another --data-dir")]
    WrongEngine {
        /// The data directory.
        path: PathBuf,
        /// Engine whose files were found.
        found: &'static str,
        /// Engine that was requested.
        requested: &'static str,
    },
    /// The data directory could not be created or opened.
    #[error("cannot use data directory {path}: {reason}")]
    DataDir {
        /// The data directory.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// The database cannot be reached (or did not answer in time); the operation was not done
    /// (a write may not have been applied; it was not acknowledged). Retry later.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// The committer has stopped (the node is shutting down); the write was not applied.
    #[error("the store is closed")]
    Closed,
}

impl StoreError {
    pub(crate) fn engine(e: impl std::fmt::Display) -> Self {
        StoreError::Engine(e.to_string())
    }
}
