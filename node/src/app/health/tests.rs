use std::sync::atomic::{AtomicBool, AtomicU64};

use storage::{Engine, KvPair};

use super::*;
use crate::app::testing;

/// An engine whose reads or writes a test can make fail (as a full disk, a removed data
/// directory or an I/O error would), counting the reads it serves.
pub(crate) struct Breakable {
    inner: Arc<dyn Engine>,
    pub(crate) reads_fail: AtomicBool,
    pub(crate) writes_fail: AtomicBool,
    pub(crate) reads: AtomicU64,
}

impl Breakable {
    pub(crate) fn open(dir: &std::path::Path) -> Arc<Breakable> {
        Arc::new(Breakable {
            inner: storage::open_engine(dir, storage::EngineKind::Redb).unwrap(),
            reads_fail: AtomicBool::new(false),
            writes_fail: AtomicBool::new(false),
            reads: AtomicU64::new(0),
        })
    }

    fn refuse(&self, flag: &AtomicBool, what: &str) -> Result<(), StoreError> {
        if flag.load(Ordering::SeqCst) {
            Err(StoreError::Engine(format!("injected {what} failure")))
        } else {
            Ok(())
        }
    }
}

impl Engine for Breakable {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.refuse(&self.reads_fail, "read")?;
        self.inner.get(key)
    }
    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<KvPair>, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.refuse(&self.reads_fail, "read")?;
        self.inner.scan(start, end, reverse, limit)
    }
    fn apply(&self, writes: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<(), StoreError> {
        self.refuse(&self.writes_fail, "write")?;
        self.inner.apply(writes)
    }
}

async fn write_something(state: &AppState) -> Result<(), StoreError> {
    state
        .store
        .write(|tx| {
            tx.put_meta("test_record", &7u64);
            Ok::<_, StoreError>(())
        })
        .await
}

#[tokio::test]
async fn a_store_that_cannot_be_read_is_unhealthy_until_it_can() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Breakable::open(dir.path());
    let state = testing::state_over(dir.path(), engine.clone()).await;
    let monitor = &state.health;
    assert_eq!(
        monitor.store_health(&state.store, Duration::ZERO).await,
        StoreHealth::Ok
    );
    engine.reads_fail.store(true, Ordering::SeqCst);
    assert_eq!(
        monitor.store_health(&state.store, Duration::ZERO).await,
        StoreHealth::Unreadable
    );
    let (status, _) = probe(&state).await;
    assert_eq!(status, ProbeStatus::Unreachable);
    engine.reads_fail.store(false, Ordering::SeqCst);
    assert_eq!(
        monitor.store_health(&state.store, Duration::ZERO).await,
        StoreHealth::Ok
    );
    assert_eq!(probe(&state).await.0, ProbeStatus::Healthy);
}

#[tokio::test]
async fn failing_commits_make_the_store_unhealthy_until_a_write_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Breakable::open(dir.path());
    let state = testing::state_over(dir.path(), engine.clone()).await;
    let health = || state.health.store_health(&state.store, Duration::ZERO);
    assert_eq!(health().await, StoreHealth::Ok);

    engine.writes_fail.store(true, Ordering::SeqCst);
    // Nobody wrote yet: nothing says the writes fail (reads work).
    assert_eq!(health().await, StoreHealth::Ok);
    write_something(&state).await.unwrap_err();
    assert_eq!(health().await, StoreHealth::WritesFailing);
    // Idle since: the check writes itself, which fails too.
    assert_eq!(health().await, StoreHealth::WritesFailing);
    assert_eq!(probe(&state).await.0, ProbeStatus::Unreachable);

    // The disk recovers while the node is idle: the check's own write sees it.
    engine.writes_fail.store(false, Ordering::SeqCst);
    assert_eq!(health().await, StoreHealth::Ok);
    assert!(state
        .store
        .get_meta::<u64>(META_HEALTH_PROBE)
        .unwrap()
        .is_some());

    // Failures mixed with a success since the last check: the writes work.
    engine.writes_fail.store(true, Ordering::SeqCst);
    write_something(&state).await.unwrap_err();
    engine.writes_fail.store(false, Ordering::SeqCst);
    write_something(&state).await.unwrap();
    assert_eq!(health().await, StoreHealth::Ok);
}

/// `/health` is polled often: within a second, one read probe serves every request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verdict_is_reused_for_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Breakable::open(dir.path());
    let state = testing::state_over(dir.path(), engine.clone()).await;
    assert_eq!(liveness(&state).await, StoreHealth::Ok);
    let reads = engine.reads.load(Ordering::SeqCst);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let state = state.clone();
        tasks.spawn(async move { liveness(&state).await });
    }
    while let Some(h) = tasks.join_next().await {
        assert_eq!(h.unwrap(), StoreHealth::Ok);
    }
    // At most one more probe (if the second elapsed meanwhile on a slow machine).
    assert!(engine.reads.load(Ordering::SeqCst) - reads <= 1);
}
