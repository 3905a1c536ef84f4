//! The committer: one thread that owns every write (group commit).
//!
//! It waits for a job, then drains whatever else is queued (up to [`MAX_BATCH`] jobs), runs each
//! job against an in-memory overlay, and makes the whole batch durable with one
//! [`Engine::apply`]. Only then does it complete the jobs, which is when the node answers its
//! clients. Concurrent writers therefore share one flush instead of paying one each.
//!
//! Bounded latency for detached writes (token-issuance audit records): the queue holds at most
//! `MAX_BATCH` jobs, so a job that entered it is taken by the next batch at the latest; it waits
//! at most for the batch being committed and then its own. The time to disk is therefore bounded
//! by two batch commits of at most `MAX_BATCH` jobs (`agentidp_store_commit_max_seconds` shows the
//! slowest commit so far; a few milliseconds here).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::engine::{Batch, Engine, KvPair};
use crate::error::StoreError;
use crate::tx::{Overlay, Tx};

/// Most jobs in one committed batch; bounds the commit time and so the detached-write window.
pub(crate) const MAX_BATCH: usize = 512;

/// What a job leaves behind: whether to keep its writes, and what to do once the batch committed.
pub(crate) struct Completion {
    pub(crate) keep: bool,
    pub(crate) finish: Finish,
}

/// Called with the batch's commit outcome.
pub(crate) type Finish = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

pub(crate) type Job = Box<dyn FnOnce(&mut Tx<'_>) -> Completion + Send>;

pub(crate) enum Msg {
    Job(Job),
    Close,
}

/// Counters of the committer, for `/metrics`.
#[derive(Debug, Default)]
pub struct CommitStats {
    /// Batches committed.
    pub batches: AtomicU64,
    /// Jobs run (kept or not).
    pub jobs: AtomicU64,
    /// Batches whose commit failed.
    pub failures: AtomicU64,
    /// Total time spent in `Engine::apply`, in microseconds.
    pub commit_micros: AtomicU64,
    /// Largest batch so far.
    pub max_batch: AtomicU64,
    /// Slowest commit so far, in microseconds.
    pub max_commit_micros: AtomicU64,
    /// Bumped after every commit that changed organizations, agents, credentials, agent keys or
    /// revocations, before its writers are answered.
    pub identity_generation: AtomicU64,
    /// Set while the store cannot follow the commits of other nodes (a shared engine whose
    /// change notifications are interrupted): caches must not be trusted meanwhile.
    pub untrusted: AtomicBool,
    /// With a shared engine: the organizations and agents the notified batches changed, until
    /// [`crate::Store::take_shared_changes`] takes them.
    pub shared_changes: std::sync::Mutex<SharedChanges>,
}

/// An organization or agent record a batch changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Changed {
    Org(uuid::Uuid),
    Agent(uuid::Uuid),
}

/// The organizations and agents that batches committed on a shared store changed (this node's
/// batches included), as their notifications announced them; `everything` when some change
/// could not be told record by record (a batch too large for a notification, a gap in the
/// notifications) — then every record may have changed.
#[derive(Debug, Default)]
pub struct SharedChanges {
    pub records: std::collections::HashSet<Changed>,
    pub everything: bool,
}

impl SharedChanges {
    /// Most records remembered; past it, `everything`.
    const MAX: usize = 100_000;

    pub(crate) fn note(&mut self, c: Changed) {
        if self.everything {
            return;
        }
        if self.records.len() >= Self::MAX {
            self.everything = true;
            self.records.clear();
        } else {
            self.records.insert(c);
        }
    }

    pub(crate) fn note_everything(&mut self) {
        self.everything = true;
        self.records.clear();
    }
}

pub(crate) fn spawn(
    engine: Arc<dyn Engine>,
    mut rx: mpsc::Receiver<Msg>,
    stats: Arc<CommitStats>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("store-committer".into())
        .spawn(move || {
            let mut closing = false;
            while !closing {
                let first = match rx.blocking_recv() {
                    Some(Msg::Job(job)) => job,
                    Some(Msg::Close) | None => break,
                };
                let mut batch = Overlay::new();
                let mut done = Vec::with_capacity(16);
                // A shared engine's batch is a transaction that every read of the batch goes
                // through; the embedded engines are read directly.
                let (shared, begun) = match engine.begin_batch() {
                    Ok(b) => (b, Ok(())),
                    Err(e) => (None, Err(e)),
                };
                let direct = Direct(engine.as_ref());
                let failed = Failed(begun.clone().err());
                let through = shared.as_deref().map(Shared);
                let reader: &dyn Reader = match (&through, &begun) {
                    (_, Err(_)) => &failed,
                    (Some(b), _) => b,
                    (None, _) => &direct,
                };
                let mut identity = run_job(reader, &mut batch, first, &mut done);
                while done.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(Msg::Job(job)) => {
                            identity |= run_job(reader, &mut batch, job, &mut done)
                        }
                        Ok(Msg::Close) => {
                            closing = true;
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let result = if let Err(e) = begun {
                    Err(e)
                } else if batch.is_empty() && shared.is_none() {
                    Ok(())
                } else {
                    let started = Instant::now();
                    let writes: Vec<_> = batch.into_iter().collect();
                    let r = match shared {
                        Some(b) => b.commit(writes, identity),
                        None => engine.apply(writes),
                    };
                    let micros = started.elapsed().as_micros() as u64;
                    stats.commit_micros.fetch_add(micros, Ordering::Relaxed);
                    stats.max_commit_micros.fetch_max(micros, Ordering::Relaxed);
                    r
                };
                if let Err(e) = &result {
                    stats.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, jobs = done.len(), "store commit failed; the batch's writes were not acknowledged");
                }
                if identity && result.is_ok() {
                    stats.identity_generation.fetch_add(1, Ordering::AcqRel);
                }
                stats.batches.fetch_add(1, Ordering::Relaxed);
                stats.jobs.fetch_add(done.len() as u64, Ordering::Relaxed);
                stats.max_batch.fetch_max(done.len() as u64, Ordering::Relaxed);
                // The batch is durable (or failed): only now are clients answered.
                for finish in done {
                    finish(result.clone());
                }
            }
            // Whatever is still queued after Close was never run: its callers get `Closed`.
            rx.close();
        })
}

/// What a batch's jobs read through: the engine, a shared engine's open batch, or nothing (the
/// batch could not begin: every read fails with that error).
pub(crate) trait Reader {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<KvPair>, StoreError>;
}

pub(crate) struct Direct<'a>(pub(crate) &'a dyn Engine);

impl Reader for Direct<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.get(key)
    }
    fn scan(&self, s: &[u8], e: &[u8], r: bool, l: usize) -> Result<Vec<KvPair>, StoreError> {
        self.0.scan(s, e, r, l)
    }
}

struct Shared<'a, 'b>(&'a (dyn Batch + 'b));

impl Reader for Shared<'_, '_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.get(key)
    }
    fn scan(&self, s: &[u8], e: &[u8], r: bool, l: usize) -> Result<Vec<KvPair>, StoreError> {
        self.0.scan(s, e, r, l)
    }
}

struct Failed(Option<StoreError>);

impl Failed {
    fn err(&self) -> StoreError {
        self.0.clone().unwrap_or(StoreError::Closed)
    }
}

impl Reader for Failed {
    fn get(&self, _: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Err(self.err())
    }
    fn scan(&self, _: &[u8], _: &[u8], _: bool, _: usize) -> Result<Vec<KvPair>, StoreError> {
        Err(self.err())
    }
}

/// Runs one job; returns whether it kept writes that change identity records.
fn run_job(reader: &dyn Reader, batch: &mut Overlay, job: Job, done: &mut Vec<Finish>) -> bool {
    let mut tx = Tx::new(reader, batch);
    let completion = job(&mut tx);
    let (writes, identity) = tx.into_writes();
    let kept = completion.keep;
    if kept {
        batch.extend(writes);
    }
    done.push(completion.finish);
    kept && identity
}
