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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::engine::Engine;
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
                let mut identity = run_job(engine.as_ref(), &mut batch, first, &mut done);
                while done.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(Msg::Job(job)) => {
                            identity |= run_job(engine.as_ref(), &mut batch, job, &mut done)
                        }
                        Ok(Msg::Close) => {
                            closing = true;
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let result = if batch.is_empty() {
                    Ok(())
                } else {
                    let started = Instant::now();
                    let r = engine.apply(batch.into_iter().collect());
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

/// Runs one job; returns whether it kept writes that change identity records.
fn run_job(engine: &dyn Engine, batch: &mut Overlay, job: Job, done: &mut Vec<Finish>) -> bool {
    let mut tx = Tx::new(engine, batch);
    let completion = job(&mut tx);
    let (writes, identity) = tx.into_writes();
    let kept = completion.keep;
    if kept {
        batch.extend(writes);
    }
    done.push(completion.finish);
    kept && identity
}
