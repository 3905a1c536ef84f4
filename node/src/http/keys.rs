//! `/api/v1/keys...`: the node's own signing keys (listing, rotation; scope `admin:orgs`). The
//! keys agents register are under `/api/v1/agents/{agentId}/keys` (`http/agents/keys.rs`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warp::{Rejection, Reply};

use crate::app::AppState;
use crate::clock::rfc3339;
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
#[utoipa::path(get, operation_id = "listSigningKeys", path = "/api/v1/keys", tag = "Keys", security(("bearer" = ["admin:orgs"])),
    responses((status = 200, body = SigningKeyList), (status = 403, body = ErrorBody)))]
pub(crate) async fn signing_keys(
    _p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let data = crate::app::signing_keys::list(&state, &caller)?
        .into_iter()
        .map(|k| SigningKeyView {
            kid: k.kid,
            alg: k.alg,
            status: k.status.as_str(),
            created_at: rfc3339(k.created_at),
            retired_at: k.retired_at.map(rfc3339),
            published_until: k.published_until.map(rfc3339),
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
#[utoipa::path(post, operation_id = "rotateSigningKey", path = "/api/v1/keys/rotate", tag = "Keys", security(("bearer" = ["admin:orgs"])),
    request_body(content = Option<RotateRequest>),
    responses((status = 201, body = Rotated), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn rotate(
    _p: Params,
    caller: Caller,
    req: RotateRequest,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let r = crate::app::signing_keys::rotate(&state, &caller, req.alg).await?;
    let body = Rotated {
        kid: r.kid,
        alg: r.alg,
        retired_kid: r.retired_kid,
        retired_key_published_until: rfc3339(r.retired_published_until),
    };
    Ok(created(&body))
}
