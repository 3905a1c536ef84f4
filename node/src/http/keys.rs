//! Keys: the public keys agents register (`/api/v1/agents/{agentId}/keys`, used for
//! `private_key_jwt` and, later, the agent's DID document), and the node's own signing keys
//! (`/api/v1/keys`, rotation; scope `admin:orgs`).

use serde::{Deserialize, Serialize};
use storage::{AgentKey, AgentStatus, Outcome};
use utoipa::ToSchema;
use warp::http::StatusCode;
use warp::{Rejection, Reply};

use crate::app::authz::check_manage;
use crate::app::AppState;
use crate::clock::rfc3339;
use crate::http::agents::read_own_agent;
use crate::http::error::ApiError;
use crate::http::extract::{created, Params};
use crate::http::Caller;
use crate::jwk::{validate_public_jwk, JwkError};
use crate::model::ErrorBody;

/// Most public keys one agent may register.
pub(crate) const MAX_KEYS_PER_AGENT: usize = 10;

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

pub(crate) fn jwk_error(e: JwkError) -> ApiError {
    let code = match e {
        JwkError::Private(_) => "PRIVATE_KEY_MATERIAL",
        JwkError::Unsupported(_) => "UNSUPPORTED_KEY",
        JwkError::NotObject | JwkError::Invalid(_) => "INVALID_KEY",
    };
    ApiError::new(StatusCode::BAD_REQUEST, code, e.to_string())
}

fn key_not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "KEY_NOT_FOUND",
        "No key with this kid is registered for the agent.",
    )
}

/// Register a public key for an agent.
#[utoipa::path(post, path = "/api/v1/agents/{agentId}/keys", tag = "Keys", security(("bearer" = ["agents:write"])),
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
    caller.require(crate::app::Scope::AgentsWrite)?;
    let id = p.id("agentId")?;
    let k = validate_public_jwk(&req.jwk).map_err(jwk_error)?;
    let record = AgentKey {
        kid: k.kid,
        agent_id: id,
        org_id: caller.org_id,
        alg: k.alg.to_string(),
        jwk: k.jwk,
        created_at: state.clock.now_ms(),
        generated: false,
    };
    let entry = state.audit_entry(
        &caller.actor,
        "agent.key.add",
        id.to_string(),
        Outcome::Success,
        serde_json::json!({ "kid": record.kid, "alg": record.alg }),
    );
    let acting = caller.acting();
    let org = caller.org_id;
    // Status, permission and limit are checked by the write that adds the key, against what it
    // reads: a key add racing a decommission or another add cannot slip past either.
    let record = state
        .write_audited_api(entry, move |tx| {
            let now_scopes = acting.require_now(tx, crate::app::Scope::AgentsWrite)?;
            let agent = tx
                .get_agent(&id)?
                .filter(|a| a.org_id == org)
                .ok_or_else(ApiError::agent_not_found)?;
            if agent.status == AgentStatus::Decommissioned {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "AGENT_DECOMMISSIONED",
                    "The agent has been decommissioned.",
                ));
            }
            check_manage(&now_scopes, &agent)?;
            if tx.get_agent_key(&id, &record.kid)?.is_some() {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "KEY_ALREADY_REGISTERED",
                    "This key is already registered for the agent.",
                )
                .with_details(serde_json::json!({ "kid": record.kid })));
            }
            if tx.list_agent_keys(&id)?.len() >= MAX_KEYS_PER_AGENT {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "KEY_LIMIT_EXCEEDED",
                    format!(
                        "An agent may register at most {MAX_KEYS_PER_AGENT} keys; remove one first."
                    ),
                ));
            }
            tx.put_agent_key(&record);
            Ok(record)
        })
        .await?;
    Ok(created(&AgentKeyView::new(&record)))
}

/// List an agent's public keys.
#[utoipa::path(get, path = "/api/v1/agents/{agentId}/keys", tag = "Keys", security(("bearer" = ["agents:read"])),
    params(("agentId" = Uuid, Path)), responses((status = 200, body = AgentKeyList), (status = 404, body = ErrorBody)))]
pub(crate) async fn list_keys(
    p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    caller.require(crate::app::Scope::AgentsRead)?;
    let id = p.id("agentId")?;
    read_own_agent(&state, &caller, &id)?;
    let data = state
        .store
        .list_agent_keys(&id)
        .map_err(ApiError::from)?
        .iter()
        .map(AgentKeyView::new)
        .collect();
    Ok(warp::reply::json(&AgentKeyList { data }).into_response())
}

/// Remove an agent's public key; assertions signed with it are refused from now on.
#[utoipa::path(delete, path = "/api/v1/agents/{agentId}/keys/{kid}", tag = "Keys", security(("bearer" = ["agents:write"])),
    params(("agentId" = Uuid, Path), ("kid" = String, Path)),
    responses((status = 204, description = "Removed"), (status = 404, description = "AGENT_NOT_FOUND, KEY_NOT_FOUND", body = ErrorBody)))]
pub(crate) async fn remove_key(
    p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    caller.require(crate::app::Scope::AgentsWrite)?;
    let id = p.id("agentId")?;
    let kid = p.raw("kid").to_string();
    let org = caller.org_id;
    let entry = state.audit_entry(
        &caller.actor,
        "agent.key.remove",
        id.to_string(),
        Outcome::Success,
        serde_json::json!({ "kid": kid }),
    );
    let acting = caller.acting();
    state
        .write_audited_api(entry, move |tx| {
            let now_scopes = acting.require_now(tx, crate::app::Scope::AgentsWrite)?;
            let agent = tx
                .get_agent(&id)?
                .filter(|a| a.org_id == org)
                .ok_or_else(ApiError::agent_not_found)?;
            check_manage(&now_scopes, &agent)?;
            tx.get_agent_key(&id, &kid)?.ok_or_else(key_not_found)?;
            tx.delete_agent_key(&id, &kid);
            Ok(())
        })
        .await?;
    Ok(warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response())
}

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
#[utoipa::path(post, path = "/api/v1/keys/rotate", tag = "Keys", security(("bearer" = ["admin:orgs"])),
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
