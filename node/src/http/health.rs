//! `GET /health` (liveness and the store's health, cheap), `GET /health/detailed` (a fresh
//! store probe with latency), `GET /metrics`. The checks are `app::health`'s.

use serde::Serialize;
use utoipa::ToSchema;
use warp::http::StatusCode;
use warp::{Rejection, Reply};

use crate::app::health::{self, ProbeStatus};
use crate::app::AppState;
use crate::http::extract::Params;

/// Liveness, and whether the store can be read and written.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Health {
    /// `ok`, or `unavailable` (with `problem`, status 503) when the store cannot be read or
    /// written.
    status: &'static str,
    version: &'static str,
    /// Seconds since start.
    uptime: u64,
    /// The storage engine (`redb` or `sled`).
    store: &'static str,
    /// What is wrong, when `status` is `unavailable`.
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<&'static str>,
}

/// Liveness: 200 `ok`, or 503 `unavailable` when the store cannot be read or its commits fail.
/// Cheap: the store is checked at most once a second, whatever the polling rate.
#[utoipa::path(get, operation_id = "getHealth", path = "/health", tag = "Health",
    responses((status = 200, body = Health), (status = 503, description = "The store cannot be read or written", body = Health)))]
pub(crate) async fn health(
    _p: Params,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let problem = health::liveness(&state).await.problem();
    let body = Health {
        status: if problem.is_none() {
            "ok"
        } else {
            "unavailable"
        },
        version: env!("CARGO_PKG_VERSION"),
        uptime: state.started.elapsed().as_secs(),
        store: state.store.engine().name(),
        problem,
    };
    let code = if problem.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok(warp::reply::with_status(warp::reply::json(&body), code).into_response())
}

/// One probed dependency.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Probe {
    /// healthy, degraded (over 1 s) or unreachable.
    status: &'static str,
    latency_ms: u64,
}

/// Detailed health.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DetailedHealth {
    status: &'static str,
    version: &'static str,
    uptime: u64,
    services: std::collections::BTreeMap<String, Probe>,
}

/// Probes the store (a read of its schema record) and reports latency: 200 healthy, 207
/// degraded, 503 unreachable (also when its commits fail), as the predecessor.
#[utoipa::path(get, operation_id = "getDetailedHealth", path = "/health/detailed", tag = "Health",
    responses((status = 200, body = DetailedHealth), (status = 207, body = DetailedHealth), (status = 503, body = DetailedHealth)))]
pub(crate) async fn detailed(
    _p: Params,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let (status, latency_ms) = health::probe(&state).await;
    let code = match status {
        ProbeStatus::Healthy => StatusCode::OK,
        ProbeStatus::Degraded => StatusCode::MULTI_STATUS,
        ProbeStatus::Unreachable => StatusCode::SERVICE_UNAVAILABLE,
    };
    let mut services = std::collections::BTreeMap::new();
    services.insert(
        state.store.engine().name().to_string(),
        Probe {
            status: status.as_str(),
            latency_ms,
        },
    );
    let body = DetailedHealth {
        status: status.as_str(),
        version: env!("CARGO_PKG_VERSION"),
        uptime: state.started.elapsed().as_secs(),
        services,
    };
    Ok(warp::reply::with_status(warp::reply::json(&body), code).into_response())
}

/// The metrics, as OpenMetrics text (Prometheus scrapes it; see `crate::metrics`).
#[utoipa::path(get, operation_id = "getMetrics", path = "/metrics", tag = "Health",
    responses((status = 200, description = "OpenMetrics text format 1.0.0", content_type = "application/openmetrics-text")))]
pub(crate) async fn metrics(
    _p: Params,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let body = state.metrics.render(crate::metrics::Sampled {
        store: crate::metrics::StoreSample::of(&state.store),
        fetches: state.fetcher.stats().snapshot(),
        key_cache: state.key_cache.counters(),
        gossip: state.gossip.metrics_sample(),
        webhooks: state.webhooks.sample(&state.store, state.clock.now_ms()),
    });
    Ok(
        warp::reply::with_header(body, "content-type", crate::metrics::CONTENT_TYPE)
            .into_response(),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use crate::app::health::tests::Breakable;
    use crate::app::testing;

    async fn get(state: &crate::app::AppState, path: &str) -> (u16, serde_json::Value) {
        let resp = warp::test::request()
            .path(path)
            .reply(&crate::http::routes(state.clone()))
            .await;
        (
            resp.status().as_u16(),
            serde_json::from_slice(resp.body()).unwrap(),
        )
    }

    /// `/health` says 200 `ok` on a sound store, and 503 with the reason when the store
    /// cannot be read, or when its commits fail; `/health/detailed` agrees.
    #[tokio::test]
    async fn health_is_503_when_the_store_cannot_be_read_or_written() {
        let sound = tempfile::tempdir().unwrap();
        let state = testing::state_over(sound.path(), Breakable::open(sound.path())).await;
        let (status, body) = get(&state, "/health").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "ok");
        assert_eq!(body["store"], "redb");
        assert!(body.get("problem").is_none(), "{body}");

        let unreadable = tempfile::tempdir().unwrap();
        let engine = Breakable::open(unreadable.path());
        let state = testing::state_over(unreadable.path(), engine.clone()).await;
        engine.reads_fail.store(true, Ordering::SeqCst);
        let (status, body) = get(&state, "/health").await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["status"], "unavailable");
        assert!(
            body["problem"].as_str().unwrap().contains("cannot be read"),
            "{body}"
        );
        let (status, body) = get(&state, "/health/detailed").await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["services"]["redb"]["status"], "unreachable");

        let unwritable = tempfile::tempdir().unwrap();
        let engine = Breakable::open(unwritable.path());
        let state = testing::state_over(unwritable.path(), engine.clone()).await;
        engine.writes_fail.store(true, Ordering::SeqCst);
        let failed = state
            .store
            .write(|tx| {
                tx.put_meta("test_record", &1u64);
                Ok::<_, storage::StoreError>(())
            })
            .await;
        assert!(failed.is_err());
        let (status, body) = get(&state, "/health").await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["status"], "unavailable");
        assert!(
            body["problem"]
                .as_str()
                .unwrap()
                .contains("cannot be written"),
            "{body}"
        );
    }
}
