//! `agentidp migrate`: copies a whole store from one engine to another (a redb or sled data
//! directory into PostgreSQL, or back), verifying the audit chain on both sides.
//!
//! The source is verified first (a broken chain is not copied), the destination must be empty
//! (nothing is merged or overwritten), every pair is copied in key order in chunks (each one
//! durable `apply`), and at the end the destination's chain is verified and must end at the same
//! head, and both sides must hold the same number of pairs. Nodes must be stopped on both sides
//! while it runs.

use std::sync::Arc;

use crate::audit::ChainReport;
use crate::engine::{Engine, KvPair};
use crate::error::StoreError;
use crate::store::Store;

/// Pairs per read and per `apply`.
const CHUNK: usize = 2048;

/// What a copy did.
#[derive(Debug, Clone)]
pub struct CopyReport {
    /// Key-value pairs copied.
    pub pairs: u64,
    /// The source's audit chain.
    pub source: ChainReport,
    /// The destination's audit chain after the copy.
    pub destination: ChainReport,
}

/// Why a copy was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The source holds no agentidp store.
    #[error("the source holds no agentidp store (no schema record)")]
    EmptySource,
    /// The destination already holds data.
    #[error("the destination is not empty; migrate only into a new, empty store")]
    DestinationNotEmpty,
    /// An audit chain does not verify.
    #[error("the {side} audit chain is broken at entry {seq:?}: {reason}")]
    Broken {
        /// `source` or `destination`.
        side: &'static str,
        /// First broken entry.
        seq: Option<u64>,
        /// Why.
        reason: String,
    },
    /// The copy does not match the source.
    #[error("the copy differs from the source: {0}")]
    Mismatch(String),
}

fn full_range() -> (Vec<u8>, Vec<u8>) {
    // Every key agentidp writes starts with a table byte below 0xff.
    (Vec::new(), vec![0xff; 64])
}

fn count(engine: &dyn Engine) -> Result<u64, StoreError> {
    let (mut start, end) = full_range();
    let mut n = 0u64;
    loop {
        let chunk: Vec<KvPair> = engine.scan(&start, &end, false, CHUNK)?;
        n += chunk.len() as u64;
        match chunk.last() {
            Some((k, _)) if chunk.len() == CHUNK => {
                start = k.clone();
                start.push(0);
            }
            _ => return Ok(n),
        }
    }
}

fn verified(store: &Store, side: &'static str) -> Result<ChainReport, CopyError> {
    let report = store.verify_audit()?;
    if let Some(seq) = report.first_broken_seq {
        return Err(CopyError::Broken {
            side,
            seq: Some(seq),
            reason: report.reason.clone().unwrap_or_default(),
        });
    }
    Ok(report)
}

/// Copies every pair of `from` into the empty `to`; see the module documentation.
pub fn copy_store(from: Arc<dyn Engine>, to: Arc<dyn Engine>) -> Result<CopyReport, CopyError> {
    if from
        .get(&crate::keys::meta(crate::store::META_SCHEMA))?
        .is_none()
    {
        return Err(CopyError::EmptySource);
    }
    let (start, end) = full_range();
    if !to.scan(&start, &end, false, 1)?.is_empty() {
        return Err(CopyError::DestinationNotEmpty);
    }
    // Opening the source brings it to the current schema (as a node start would).
    let source_store = Store::from_engine(from.clone())?;
    let source = verified(&source_store, "source")?;
    source_store.close();

    let (mut cursor, end) = full_range();
    let mut pairs = 0u64;
    loop {
        let chunk: Vec<KvPair> = from.scan(&cursor, &end, false, CHUNK)?;
        let full = chunk.len() == CHUNK;
        if let Some((k, _)) = chunk.last() {
            cursor = k.clone();
            cursor.push(0);
        }
        pairs += chunk.len() as u64;
        if !chunk.is_empty() {
            to.apply(chunk.into_iter().map(|(k, v)| (k, Some(v))).collect())?;
        }
        if pairs.is_multiple_of(CHUNK as u64 * 50) && pairs > 0 {
            tracing::info!(pairs, "migrate: copying");
        }
        if !full {
            break;
        }
    }
    let dest_store = Store::from_engine(to.clone())?;
    let destination = verified(&dest_store, "destination")?;
    dest_store.close();
    if destination.entries != source.entries || destination.head_hash != source.head_hash {
        return Err(CopyError::Mismatch(format!(
            "audit head {} {:?} in the source, {} {:?} in the copy",
            source.entries, source.head_hash, destination.entries, destination.head_hash
        )));
    }
    let copied = count(to.as_ref())?;
    let original = count(from.as_ref())?;
    if copied != original {
        return Err(CopyError::Mismatch(format!(
            "{original} pairs in the source, {copied} in the copy"
        )));
    }
    Ok(CopyReport {
        pairs,
        source,
        destination,
    })
}
