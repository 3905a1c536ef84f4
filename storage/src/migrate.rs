//! Migrations of older store schemas, run by [`crate::Store::from_engine`] before the committer
//! starts (so nothing else writes meanwhile).
//!
//! Schema 1 → 2:
//! - agent emails become unique per organization: the index `(org, lower-cased email) -> id` is
//!   built from every agent, and every key of schema 1's node-wide email index is deleted;
//! - audit entries get the indexes `list_audit` filters with: by action, actor, target and time
//!   within their organization.
//!
//! A store can hold hundreds of thousands of audit entries, so the work is applied in chunks of a
//! few thousand writes, each one durable `Engine::apply`. Every step is idempotent (puts of what
//! the data implies, deletes of what must go), and only the last write sets the schema version:
//! a crash in the middle leaves a schema 1 store whose migration simply runs again at the next
//! open.

use std::collections::HashMap;
use std::time::Instant;

use uuid::Uuid;

use crate::engine::{Engine, KvPair};
use crate::error::StoreError;
use crate::keys;
use crate::records::{decode, encode, Agent, AuditEntry};

/// Writes per `Engine::apply` while migrating.
pub(crate) const CHUNK_WRITES: usize = 4096;
/// Audit entries between two progress lines in the log.
const PROGRESS_EVERY: u64 = 50_000;

type Write = (Vec<u8>, Option<Vec<u8>>);

/// Migrates a schema 1 store to schema 2, `chunk` writes per apply, and finally records
/// `schema_key = 2`. Tests pass a small `chunk` to cross many chunk boundaries.
pub(crate) fn v1_to_v2(
    engine: &dyn Engine,
    schema_key: &[u8],
    chunk: usize,
) -> Result<(), StoreError> {
    let chunk = chunk.max(4);
    let started = Instant::now();
    tracing::info!(
        "migrating the store from schema 1 to schema 2 (per-organization agent emails, audit indexes)"
    );
    let agents = email_index(engine, chunk)?;
    let dropped = drop_v1_email_index(engine, chunk)?;
    tracing::info!(
        agents,
        old_email_keys_deleted = dropped,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "schema 2 migration: per-organization email index built"
    );
    let entries = audit_indexes(engine, chunk, started)?;
    // The last write: until it is durable, the store is schema 1 and the migration reruns.
    engine.apply(vec![(schema_key.to_vec(), Some(encode(&2u32)))])?;
    tracing::info!(
        agents,
        audit_entries = entries,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "store migrated to schema 2"
    );
    Ok(())
}

/// Calls `f` on every pair under `prefix`, in key order, `chunk` pairs per engine read.
fn for_each(
    engine: &dyn Engine,
    prefix: &[u8],
    chunk: usize,
    mut f: impl FnMut(&[u8], &[u8]) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let (mut start, end) = keys::prefix_range(prefix);
    loop {
        let pairs: Vec<KvPair> = engine.scan(&start, &end, false, chunk)?;
        for (k, v) in &pairs {
            f(k, v)?;
        }
        match pairs.last() {
            Some((last, _)) if pairs.len() == chunk => {
                start = last.clone();
                start.push(0);
            }
            _ => return Ok(()),
        }
    }
}

/// Applies `writes` once it holds `chunk` of them (or `force`), leaving it empty.
fn flush(
    engine: &dyn Engine,
    writes: &mut Vec<Write>,
    chunk: usize,
    force: bool,
) -> Result<(), StoreError> {
    if writes.len() >= chunk || (force && !writes.is_empty()) {
        engine.apply(std::mem::take(writes))?;
    }
    Ok(())
}

/// Puts `(org, email) -> id` for every agent; returns how many agents were seen.
///
/// Schema 1 compared emails with ASCII case folding only, so two agents of one organization may
/// have emails that are equal under Unicode lower-casing (`É@x`, `é@x`). The index can name one:
/// the first in id order keeps it (the same one on every rerun), and the other is logged; both
/// agents keep working, and no third agent can take that email.
fn email_index(engine: &dyn Engine, chunk: usize) -> Result<u64, StoreError> {
    let mut writes: Vec<Write> = Vec::with_capacity(chunk);
    // Index keys written by this run, so a collision is seen before its chunk is applied.
    let mut taken: HashMap<Vec<u8>, Uuid> = HashMap::new();
    let mut agents = 0u64;
    for_each(engine, &keys::agent_prefix(), chunk, |k, v| {
        let agent: Agent = decode(k, v)?;
        agents += 1;
        let key = keys::agent_email(&agent.org_id, &agent.email);
        let holder = match taken.get(&key) {
            Some(id) => Some(*id),
            None => engine
                .get(&key)?
                .map(|bytes| decode::<Uuid>(&key, &bytes))
                .transpose()?,
        };
        match holder {
            Some(id) if id != agent.id => {
                tracing::warn!(
                    agent = %agent.id,
                    holder = %id,
                    org = %agent.org_id,
                    "schema 2 migration: two agents of one organization have the same email once \
                     lower-cased; the email index names the holder, rename the other agent's email"
                );
            }
            _ => {
                taken.insert(key.clone(), agent.id);
                writes.push((key, Some(encode(&agent.id))));
            }
        }
        if writes.len() >= chunk {
            flush(engine, &mut writes, chunk, true)?;
            // Applied: the engine answers for these keys from now on.
            taken.clear();
        }
        Ok(())
    })?;
    flush(engine, &mut writes, chunk, true)?;
    Ok(agents)
}

/// Deletes every key of schema 1's node-wide email index; returns how many there were.
fn drop_v1_email_index(engine: &dyn Engine, chunk: usize) -> Result<u64, StoreError> {
    let (start, end) = keys::prefix_range(&keys::agent_email_v1_prefix());
    let mut dropped = 0u64;
    loop {
        // Deleted keys are gone from the next read, so every read starts at the beginning.
        let doomed = engine.scan(&start, &end, false, chunk)?;
        if doomed.is_empty() {
            return Ok(dropped);
        }
        dropped += doomed.len() as u64;
        engine.apply(doomed.into_iter().map(|(k, _)| (k, None)).collect())?;
    }
}

/// Puts the four index keys of every audit entry; returns how many entries were indexed.
fn audit_indexes(engine: &dyn Engine, chunk: usize, started: Instant) -> Result<u64, StoreError> {
    let per_entry = 4;
    let mut writes: Vec<Write> = Vec::with_capacity(chunk + per_entry);
    let mut entries = 0u64;
    let mut undecodable = 0u64;
    for_each(engine, &keys::audit_prefix(), chunk / per_entry, |k, v| {
        match decode::<AuditEntry>(k, v) {
            Ok(e) => {
                entries += 1;
                for index in keys::audit_index_keys(&e.body, e.seq) {
                    writes.push((index, Some(Vec::new())));
                }
                if entries.is_multiple_of(PROGRESS_EVERY) {
                    tracing::info!(
                        audit_entries = entries,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "schema 2 migration: indexing audit entries"
                    );
                }
            }
            // A damaged entry must not keep the node from starting: verifying the chain reports
            // it, with its sequence number.
            Err(e) => {
                undecodable += 1;
                tracing::warn!(error = %e, "schema 2 migration: an audit entry cannot be decoded; not indexed");
            }
        }
        flush(engine, &mut writes, chunk, false)
    })?;
    flush(engine, &mut writes, chunk, true)?;
    if undecodable > 0 {
        tracing::warn!(
            undecodable,
            "schema 2 migration: audit entries that could not be decoded were not indexed; run an audit verification"
        );
    }
    Ok(entries)
}
