//! `/api/v1/agents/{agentId}/keys...`: the public keys an agent registers (for
//! `private_key_jwt` and its DID document). The handlers call [`crate::app::agent_keys`] and
//! render its results.

use serde::{Deserialize, Serialize};
use storage::AgentKey;
use utoipa::ToSchema;
use warp::http::StatusCode;
use warp::{Rejection, Reply};

use crate::app::{agent_keys, AppState};
use crate::clock::rfc3339;
use crate::http::extract::{created, Params};
use crate::http::Caller;
use crate::model::ErrorBody;

/// Body of `POST /api/v1/agents/{agentId}/keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddKeyRequest {
    /// A public JWK: EC P-256, OKP Ed25519 or RSA (at least 2048 bits). Private members are refused.
    #[schema(value_type = Object)]
    jwk: serde_json::Value,
}

/// A registered public key.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AgentKeyView {
    /// RFC 7638 thumbprint.
    kid: String,
    /// ES256, EdDSA or RS256.
    alg: String,
    #[schema(value_type = Object)]
    jwk: serde_json::Value,
    created_at: String,
}

impl AgentKeyView {
    fn new(k: &AgentKey) -> Self {
        AgentKeyView {
            kid: k.kid.clone(),
            alg: k.alg.clone(),
            jwk: k.jwk.clone(),
            created_at: rfc3339(k.created_at),
        }
    }
}

/// A list of keys.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AgentKeyList {
    data: Vec<AgentKeyView>,
}

/// Register a public key for an agent.
#[utoipa::path(post, operation_id = "addAgentKey", path = "/api/v1/agents/{agentId}/keys", tag = "Keys", security(("bearer" = ["agents:write"])),
    params(("agentId" = Uuid, Path)), request_body = AddKeyRequest,
    responses((status = 201, body = AgentKeyView),
        (status = 400, description = "INVALID_KEY, UNSUPPORTED_KEY, PRIVATE_KEY_MATERIAL", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "KEY_ALREADY_REGISTERED, KEY_LIMIT_EXCEEDED", body = ErrorBody)))]
pub(crate) async fn add_key(
    p: Params,
    caller: Caller,
    req: AddKeyRequest,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let key = agent_keys::add(&state, &caller, p.id("agentId")?, &req.jwk).await?;
    Ok(created(&AgentKeyView::new(&key)))
}

/// List an agent's public keys.
#[utoipa::path(get, operation_id = "listAgentKeys", path = "/api/v1/agents/{agentId}/keys", tag = "Keys", security(("bearer" = ["agents:read"])),
    params(("agentId" = Uuid, Path)), responses((status = 200, body = AgentKeyList), (status = 404, body = ErrorBody)))]
pub(crate) async fn list_keys(
    p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let keys = agent_keys::list(&state, &caller, p.id("agentId")?)?;
    let data = keys.iter().map(AgentKeyView::new).collect();
    Ok(warp::reply::json(&AgentKeyList { data }).into_response())
}

/// Remove an agent's public key; assertions signed with it are refused from now on.
#[utoipa::path(delete, operation_id = "removeAgentKey", path = "/api/v1/agents/{agentId}/keys/{kid}", tag = "Keys", security(("bearer" = ["agents:write"])),
    params(("agentId" = Uuid, Path), ("kid" = String, Path)),
    responses((status = 204, description = "Removed"), (status = 404, description = "AGENT_NOT_FOUND, KEY_NOT_FOUND", body = ErrorBody)))]
pub(crate) async fn remove_key(
    p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    agent_keys::remove(&state, &caller, p.id("agentId")?, p.raw("kid")).await?;
    Ok(warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response())
}
