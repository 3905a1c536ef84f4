//! `GET /health` (liveness), `GET /health/detailed` (store probe with latency), `GET /metrics`.

use std::time::Instant;

use serde::Serialize;
use utoipa::ToSchema;
use warp::http::StatusCode;
use warp::{Rejection, Reply};

use crate::app::AppState;
use crate::http::extract::Params;

/// Liveness.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Health {
    /// Always `ok` when the process answers.
    status: &'static str,
    version: &'static str,
    /// Seconds since start.
    uptime: u64,
    /// The storage engine (`redb` or `sled`).
    store: &'static str,
}

/// Liveness: answers without touching the store.
#[utoipa::path(get, path = "/health", tag = "Health", responses((status = 200, body = Health)))]
pub(crate) async fn health(
    _p: Params,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    Ok({
        warp::reply::json(&Health {
            status: "ok",
            version: env!("CARGO_PKG_VERSION"),
            uptime: state.started.elapsed().as_secs(),
            store: state.store.engine().name(),
        })
        .into_response()
    })
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
/// degraded, 503 unreachable, as the predecessor.
#[utoipa::path(get, path = "/health/detailed", tag = "Health",
    responses((status = 200, body = DetailedHealth), (status = 207, body = DetailedHealth), (status = 503, body = DetailedHealth)))]
pub(crate) async fn detailed(
    _p: Params,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let store = state.store.clone();
    let started = Instant::now();
    let probe = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        tokio::task::spawn_blocking(move || store.get_meta::<u32>("schema_version")),
    )
    .await;
    let latency_ms = started.elapsed().as_millis() as u64;
    let status = match probe {
        Ok(Ok(Ok(Some(_)))) if latency_ms <= 1000 => "healthy",
        Ok(Ok(Ok(Some(_)))) => "degraded",
        _ => "unreachable",
    };
    let code = match status {
        "healthy" => StatusCode::OK,
        "degraded" => StatusCode::MULTI_STATUS,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    let mut services = std::collections::BTreeMap::new();
    services.insert(
        state.store.engine().name().to_string(),
        Probe { status, latency_ms },
    );
    let body = DetailedHealth {
        status,
        version: env!("CARGO_PKG_VERSION"),
        uptime: state.started.elapsed().as_secs(),
        services,
    };
    Ok(warp::reply::with_status(warp::reply::json(&body), code).into_response())
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "Health",
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain")))]
pub(crate) async fn metrics(
    _p: Params,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    Ok({
        let mut body = state.metrics.render(&state.store);
        body.push_str(&state.metrics.render_federation(
            &state.fetcher.stats().snapshot(),
            &state.key_cache.counters(),
        ));
        body.push_str(&state.gossip.render_metrics());
        warp::reply::with_header(
            body,
            "content-type",
            "text/plain; version=0.0.4; charset=utf-8",
        )
        .into_response()
    })
}
