//! Health of the node's store, for `/health` (polled often, so cheap) and `/health/detailed`
//! (a fresh probe with its latency).
//!
//! `/health` is unhealthy when the store cannot be read (a read of its schema record fails or
//! takes over two seconds) or cannot be written (every commit since the last check failed: the
//! committer's failure counter grew as much as its commit counter). The read probe runs at
//! most once a second, whatever the request rate; requests arriving while one runs answer with
//! the last result. While writes are failing and nothing else is committed, the check writes
//! one small `meta` record itself (at most once a second), so that a store that recovered is
//! seen as such.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use storage::{Store, StoreError};

use crate::app::AppState;
use crate::clock::Clock;

/// How long a `/health` verdict is reused.
pub(crate) const PROBE_EVERY: Duration = Duration::from_secs(1);
/// A store read or write slower than this counts as failed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// A `/health/detailed` probe slower than this is `degraded`.
const DEGRADED_AFTER_MS: u64 = 1000;
/// The `meta` record the write check writes (the time of the check, ms).
const META_HEALTH_PROBE: &str = "health_probe";

/// What `/health` says of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreHealth {
    Ok,
    /// The store cannot be read.
    Unreadable,
    /// The store's commits fail.
    WritesFailing,
}

impl StoreHealth {
    /// Why the node is unhealthy, for the operator; `None` when it is not.
    pub(crate) fn problem(self) -> Option<&'static str> {
        match self {
            StoreHealth::Ok => None,
            StoreHealth::Unreadable => Some(
                "The store cannot be read; see the node's log for the engine's error (disk, permissions, a removed data directory).",
            ),
            StoreHealth::WritesFailing => Some(
                "The store cannot be written: its commits fail, so no change is acknowledged; see the node's log for the engine's error (disk full, permissions, I/O errors).",
            ),
        }
    }
}

/// One check of the store, and the committer's counters it saw.
#[derive(Debug, Clone, Copy)]
struct Check {
    at: Instant,
    health: StoreHealth,
    commits: u64,
    failures: u64,
}

/// The last verdict on the store, shared by every `/health` request.
#[derive(Debug)]
pub(crate) struct HealthMonitor {
    last: Mutex<Option<Check>>,
    /// The committer's counters when the node started: the first check judges the commits
    /// made since.
    start: (u64, u64),
    /// Held by the one request that checks; the others answer with the last verdict.
    checking: tokio::sync::Mutex<()>,
    /// The node's clock: the time the write probe records.
    clock: Arc<dyn Clock>,
}

impl HealthMonitor {
    /// A monitor of `store`, whose commits so far (the start-up's) are not judged.
    pub(crate) fn new(store: &Store, clock: Arc<dyn Clock>) -> Self {
        HealthMonitor {
            last: Mutex::new(None),
            start: commit_counters(store),
            checking: tokio::sync::Mutex::new(()),
            clock,
        }
    }

    fn last(&self) -> Option<Check> {
        match self.last.lock() {
            Ok(g) => *g,
            Err(p) => *p.into_inner(),
        }
    }

    fn fresh(&self, max_age: Duration) -> Option<StoreHealth> {
        self.last()
            .filter(|c| c.at.elapsed() < max_age)
            .map(|c| c.health)
    }

    /// The store's health, checked again when the last verdict is `max_age` old.
    pub(crate) async fn store_health(&self, store: &Arc<Store>, max_age: Duration) -> StoreHealth {
        if let Some(h) = self.fresh(max_age) {
            return h;
        }
        let _checking = match self.checking.try_lock() {
            Ok(g) => g,
            Err(_) => match self.last() {
                // A check is running (maybe stuck on a slow disk): do not queue behind it.
                Some(c) => return c.health,
                None => self.checking.lock().await,
            },
        };
        if let Some(h) = self.fresh(max_age) {
            return h;
        }
        let prev = self.last();
        let check = check(store, self.clock.as_ref(), prev, self.start).await;
        if prev.map_or(StoreHealth::Ok, |c| c.health) != check.health {
            match check.health.problem() {
                None => tracing::info!("store health: the store reads and writes again"),
                Some(p) => tracing::error!(problem = p, "store health: unhealthy"),
            }
        }
        match self.last.lock() {
            Ok(mut g) => *g = Some(check),
            Err(p) => *p.into_inner() = Some(check),
        }
        check.health
    }
}

fn commit_counters(store: &Store) -> (u64, u64) {
    let s = store.stats();
    (
        s.batches.load(Ordering::Acquire),
        s.failures.load(Ordering::Acquire),
    )
}

/// Reads the schema record, off the async workers, within [`PROBE_TIMEOUT`].
async fn read_probe(store: &Arc<Store>) -> Result<(), String> {
    let s = store.clone();
    match tokio::time::timeout(
        PROBE_TIMEOUT,
        tokio::task::spawn_blocking(move || s.get_meta::<u32>("schema_version")),
    )
    .await
    {
        Ok(Ok(Ok(Some(_)))) => Ok(()),
        Ok(Ok(Ok(None))) => Err("the store has no schema record".into()),
        Ok(Ok(Err(e))) => Err(e.to_string()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
    }
}

/// Commits one small record, within [`PROBE_TIMEOUT`].
async fn write_probe(store: &Arc<Store>, clock: &dyn Clock) -> Result<(), String> {
    // What is written does not matter; that the commit succeeds does.
    let now = u64::try_from(clock.now_ms()).unwrap_or(0);
    let write = store.write(move |tx| {
        tx.put_meta(META_HEALTH_PROBE, &now);
        Ok::<_, StoreError>(())
    });
    match tokio::time::timeout(PROBE_TIMEOUT, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no commit within {PROBE_TIMEOUT:?}")),
    }
}

async fn check(
    store: &Arc<Store>,
    clock: &dyn Clock,
    prev: Option<Check>,
    start: (u64, u64),
) -> Check {
    let (mut commits, mut failures) = commit_counters(store);
    if let Err(e) = read_probe(store).await {
        tracing::error!(error = %e, "store health: the store cannot be read");
        return Check {
            at: Instant::now(),
            health: StoreHealth::Unreadable,
            commits,
            failures,
        };
    }
    let (commits0, failures0, was_failing) = prev.map_or((start.0, start.1, false), |c| {
        (
            c.commits,
            c.failures,
            c.health == StoreHealth::WritesFailing,
        )
    });
    let (new_commits, new_failures) = (
        commits.saturating_sub(commits0),
        failures.saturating_sub(failures0),
    );
    let mut failing = if new_commits > 0 {
        // Some commit since the last check succeeded: writes work (the failures were passing).
        new_failures >= new_commits
    } else {
        was_failing
    };
    if failing && new_commits == 0 {
        // Nothing was committed since writes were last seen failing: try one write.
        failing = match write_probe(store, clock).await {
            Ok(()) => false,
            Err(e) => {
                tracing::error!(error = %e, "store health: the store cannot be written");
                true
            }
        };
        (commits, failures) = commit_counters(store);
    }
    Check {
        at: Instant::now(),
        health: if failing {
            StoreHealth::WritesFailing
        } else {
            StoreHealth::Ok
        },
        commits,
        failures,
    }
}

/// The store's health for `/health`: at most one check a second.
pub(crate) async fn liveness(state: &AppState) -> StoreHealth {
    state.health.store_health(&state.store, PROBE_EVERY).await
}

/// The result of `/health/detailed`'s probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProbeStatus {
    /// Read within a second, and writes are not failing.
    Healthy,
    /// Read, but slower than a second.
    Degraded,
    /// Not read (or writes are failing).
    Unreachable,
}

impl ProbeStatus {
    /// The wire name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ProbeStatus::Healthy => "healthy",
            ProbeStatus::Degraded => "degraded",
            ProbeStatus::Unreachable => "unreachable",
        }
    }
}

/// A fresh read probe of the store with its latency, and the write verdict of [`liveness`].
pub(crate) async fn probe(state: &AppState) -> (ProbeStatus, u64) {
    let started = Instant::now();
    let read = read_probe(&state.store).await;
    let latency_ms = started.elapsed().as_millis() as u64;
    let status = match read {
        Err(_) => ProbeStatus::Unreachable,
        Ok(()) if liveness(state).await == StoreHealth::WritesFailing => ProbeStatus::Unreachable,
        Ok(()) if latency_ms > DEGRADED_AFTER_MS => ProbeStatus::Degraded,
        Ok(()) => ProbeStatus::Healthy,
    };
    (status, latency_ms)
}

#[cfg(test)]
pub(crate) mod tests;
