//! `/api/v1/keys...`: the node's own signing keys (listing, rotation; scope `admin:orgs`). The
//! keys agents register are under `/api/v1/agents/{agentId}/keys` (`http/agents/keys.rs`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warp::{Rejection, Reply};

use crate::app::AppState;
use crate::clock::rfc3339;
use crate::http::error::ApiError;
use crate::http::extract::{created, Params};
use crate::http::Caller;
use crate::model::ErrorBody;

/// One of the node's signing keys.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SigningKeyView {
    kid: String,
    alg: String,
    /// `active` (signs), `retired` (still published), `expired` (no longer published).
    status: &'static str,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    retired_at: Option<String>,
    /// When a retired key leaves the JWKS.
    #[serde(skip_serializing_if = "Option::is_none")]
    published_until: Option<String>,
}

/// The node's signing keys.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SigningKeyList {
    data: Vec<SigningKeyView>,
}

/// List the node's signing keys, newest first.
#[utoipa::path(get, path = "/api/v1/keys", tag = "Keys", security(("bearer" = ["admin:orgs"])),
    responses((status = 200, body = SigningKeyList), (status = 403, body = ErrorBody)))]
pub(crate) async fn signing_keys(
    _p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    caller.require(crate::app::Scope::AdminOrgs)?;
    let now = state.clock.now_ms();
    let grace = state.settings.key_grace_ms;
    let mut keys = state.store.signing_keys().map_err(ApiError::from)?;
    keys.sort_by_key(|k| std::cmp::Reverse(k.created_at));
    let data = keys
        .iter()
        .map(|k| SigningKeyView {
            kid: k.kid.clone(),
            alg: k.alg.clone(),
            status: match k.retired_at {
                None => "active",
                Some(r) if r + grace > now => "retired",
                Some(_) => "expired",
            },
            created_at: rfc3339(k.created_at),
            retired_at: k.retired_at.map(rfc3339),
            published_until: k.retired_at.map(|r| rfc3339(r + grace)),
        })
        .collect();
    Ok(warp::reply::json(&SigningKeyList { data }).into_response())
}

/// Body of `POST /api/v1/keys/rotate` (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RotateRequest {
    /// ES256 or RS256; default: the algorithm of the key in force.
    alg: Option<String>,
}

/// Result of a rotation.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Rotated {
    kid: String,
    alg: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    retired_kid: Option<String>,
    /// When the retired key leaves the JWKS.
    retired_key_published_until: String,
}

/// Rotate the node's signing key: the new key signs at once; the old one stays published for
/// the grace period.
#[utoipa::path(post, path = "/api/v1/keys/rotate", tag = "Keys", security(("bearer" = ["admin:orgs"])),
    request_body(content = Option<RotateRequest>),
    responses((status = 201, body = Rotated), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn rotate(
    _p: Params,
    caller: Caller,
    req: RotateRequest,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    caller.require(crate::app::Scope::AdminOrgs)?;
    let alg = match req.alg {
        Some(a) if crate::keys::SIGNING_ALGS.contains(&a.as_str()) => a,
        Some(_) => return Err(ApiError::validation("alg", "must be ES256 or RS256").into()),
        None => state.keys().active.alg.to_string(),
    };
    let started = state.clock.now_ms();
    let (kid, retired) = crate::server::rotate_stored(
        &state.store,
        state.clock.as_ref(),
        state.settings.system_org,
        &alg,
        &caller.actor.id,
    )
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "key rotation failed");
        ApiError::internal()
    })?;
    state.reload_keys().await.map_err(|e| {
        tracing::error!(error = %e, "reloading keys after rotation failed");
        ApiError::internal()
    })?;
    state.metrics.audit_appends.inc();
    tracing::info!(%kid, ?retired, %alg, "signing key rotated");
    let body = Rotated {
        kid,
        alg,
        retired_kid: retired,
        retired_key_published_until: rfc3339(started + state.settings.key_grace_ms),
    };
    Ok(created(&body))
}
