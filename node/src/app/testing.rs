//! A real application state over a store in a temporary directory (either engine), for the
//! domain layer's unit tests and the HTTP layer's filter tests.

use std::sync::Arc;

use crate::app::AppState;
use crate::server::{open_state, ServeConfig};

pub(crate) const ISSUER: &str = "http://127.0.0.1:8080";

/// A fresh node state over a redb store in `dir` (bootstrapped: the node's organization, its
/// instance admin and signing key exist).
pub(crate) async fn state(dir: &std::path::Path) -> AppState {
    state_on(dir, storage::EngineKind::Redb).await
}

/// Like [`state`], on the given engine.
pub(crate) async fn state_on(dir: &std::path::Path, engine: storage::EngineKind) -> AppState {
    let cfg = ServeConfig {
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
        gossip: Default::default(),
        connections: Default::default(),
    };
    let did = did_method::DidWeb::from_base_url(ISSUER, &[]).unwrap();
    open_state(
        &cfg,
        ISSUER.into(),
        did,
        Arc::new(crate::SystemClock),
        std::time::Instant::now(),
    )
    .await
    .unwrap()
}
