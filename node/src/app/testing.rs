//! A real application state over a store in a temporary directory (either engine), for the
//! domain layer's unit tests and the HTTP layer's filter tests.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::app::AppState;
use crate::clock::Clock;
use crate::server::ServeConfig;

pub(crate) const ISSUER: &str = "http://127.0.0.1:8080";

/// A fresh node state over a redb store in `dir` (bootstrapped: the node's organization, its
/// instance admin and signing key exist).
pub(crate) async fn state(dir: &std::path::Path) -> AppState {
    state_on(dir, storage::EngineKind::Redb).await
}

/// Like [`state`], on the given engine.
pub(crate) async fn state_on(dir: &std::path::Path, engine: storage::EngineKind) -> AppState {
    state_with(dir, engine, |_| {}).await
}

/// The configuration [`state`] uses.
pub(crate) fn config(dir: &std::path::Path, engine: storage::EngineKind) -> ServeConfig {
    ServeConfig {
        database: None,
        listen: "127.0.0.1:0".parse().unwrap(),
        public_url: Some(ISSUER.into()),
        tls: None,
        data_dir: dir.to_path_buf(),
        store: engine,
        token_ttl_secs: 3600,
        signing_alg: "ES256".into(),
        key_grace_secs: None,
        token_rate_limit: 0,
        oasf_schema: None,
        allow_private_fetch: false,
        allow_http_fetch: false,
        directory: true,
        directory_rate_limit: 0,
        gossip: Default::default(),
        connections: Default::default(),
        test_clock_file: None,
        tenancy: Default::default(),
    }
}

/// Like [`state_on`], with the configuration changed by `adjust` first (e.g. to let the
/// outbound client fetch a test server on loopback over plain http).
pub(crate) async fn state_with(
    dir: &std::path::Path,
    engine: storage::EngineKind,
    adjust: impl FnOnce(&mut ServeConfig),
) -> AppState {
    state_at(dir, engine, Arc::new(crate::SystemClock), adjust).await
}

/// Like [`state_with`], on `clock` (e.g. a [`ManualClock`]).
pub(crate) async fn state_at(
    dir: &std::path::Path,
    engine: storage::EngineKind,
    clock: Arc<dyn Clock>,
    adjust: impl FnOnce(&mut ServeConfig),
) -> AppState {
    let mut cfg = config(dir, engine);
    adjust(&mut cfg);
    let did = did_method::DidWeb::from_base_url(ISSUER, &[]).unwrap();
    crate::app::boot::open_state(&cfg, ISSUER.into(), did, clock, std::time::Instant::now())
        .await
        .unwrap()
}

/// A clock that stands still until the test moves it.
#[derive(Debug)]
pub(crate) struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock standing at the system time.
    pub(crate) fn now() -> Arc<ManualClock> {
        Arc::new(ManualClock(AtomicI64::new(crate::SystemClock.now_ms())))
    }

    /// Moves it forward by `d`.
    pub(crate) fn advance(&self, d: Duration) {
        let ms = i64::try_from(d.as_millis()).unwrap();
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A fresh node state over a store on `engine` (already opened in `dir`), e.g. an engine a test
/// can make fail.
pub(crate) async fn state_over(
    dir: &std::path::Path,
    engine: Arc<dyn storage::Engine>,
) -> AppState {
    let cfg = config(dir, storage::EngineKind::Redb);
    let store = Arc::new(storage::Store::from_engine(engine).unwrap());
    let did = did_method::DidWeb::from_base_url(ISSUER, &[]).unwrap();
    crate::app::boot::state_over(
        &cfg,
        store,
        ISSUER.into(),
        did,
        Arc::new(crate::SystemClock),
        std::time::Instant::now(),
    )
    .await
    .unwrap()
}

/// The instance admin, as an authenticated caller holding every scope.
pub(crate) fn instance_admin(state: &AppState) -> crate::app::Caller {
    let org = state.settings.system_org;
    let (agents, _) = state
        .store
        .list_agents(&org, &storage::AgentFilter::default(), 1, 10)
        .unwrap();
    let admin = agents
        .into_iter()
        .find(|a| crate::app::authz::is_admin(a, true))
        .unwrap();
    caller_as(&admin.id, org, &crate::app::Scope::ALL)
}

/// A caller of the node's organization holding `scopes` (an agent that need not exist: for
/// operations that check the token's scopes only).
pub(crate) fn caller_with(state: &AppState, scopes: &[crate::app::Scope]) -> crate::app::Caller {
    caller_as(&uuid::Uuid::new_v4(), state.settings.system_org, scopes)
}

fn caller_as(id: &uuid::Uuid, org: uuid::Uuid, scopes: &[crate::app::Scope]) -> crate::app::Caller {
    crate::app::Caller {
        agent_id: *id,
        org_id: org,
        scopes: scopes.to_vec(),
        token_scopes: scopes.to_vec(),
        actor: crate::app::Actor {
            id: id.to_string(),
            org,
            client: Some("127.0.0.1".into()),
        },
    }
}
