//! `/api/v1/oauth2/token/delegate...` and `/api/v1/agents/{agentId}/delegations`: agent-to-agent
//! delegation (the predecessor's `delegation.txt` routes and shapes), over
//! [`crate::app::delegation`]. Redemption is at the token endpoint (`http::token`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
use warp::http::StatusCode;
use warp::{Rejection, Reply};

use crate::app::delegation::{self, GrantRequest};
use crate::app::AppState;
use crate::clock::rfc3339;
use crate::http::auth::TokenAuth;
use crate::http::extract::{created, Params};
use crate::http::Caller;
use crate::model::ErrorBody;
use storage::Delegation;

/// `POST /api/v1/oauth2/token/delegate` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CreateDelegationRequest {
    /// The agent to receive delegated authority (same organization).
    pub(crate) delegatee_agent_id: Uuid,
    /// Scopes to delegate: a subset of the delegator's token's effective scopes.
    pub(crate) scopes: Vec<String>,
    /// Lifetime, 60 to 86400 seconds (capped by the delegator's token's expiry).
    pub(crate) ttl_seconds: i64,
}

/// A delegation link as created (the predecessor's `DelegationChain`, plus the chain).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DelegationView {
    /// The chain id of this link (the delegation token's `jti`).
    pub(crate) id: Uuid,
    pub(crate) tenant_id: Uuid,
    /// The agent that granted this link.
    pub(crate) delegator_agent_id: Uuid,
    pub(crate) delegatee_agent_id: Uuid,
    /// The agent the chain acts for (the delegator of its first link; the `sub` of its tokens).
    pub(crate) principal_agent_id: Uuid,
    /// The link above this one, for a re-delegation.
    pub(crate) parent_chain_id: Option<Uuid>,
    /// Every chain id from the first link to this one.
    pub(crate) chain: Vec<Uuid>,
    pub(crate) scopes: Vec<String>,
    /// The delegation token: a JWT signed by the node (`typ: delegation+jwt`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) delegation_token: Option<String>,
    /// The delegation token's JWS signature part (base64url), kept for the predecessor's
    /// clients; the token itself carries it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) signature: Option<String>,
    pub(crate) ttl_seconds: i64,
    pub(crate) issued_at: String,
    pub(crate) expires_at: String,
    pub(crate) revoked_at: Option<String>,
    pub(crate) created_at: String,
}

impl DelegationView {
    fn new(l: &Delegation, token: Option<String>, revoked_at: Option<i64>) -> Self {
        let signature = token
            .as_deref()
            .and_then(|t| t.rsplit('.').next())
            .map(str::to_string);
        let mut chain = l.ancestors.clone();
        chain.push(l.id);
        DelegationView {
            id: l.id,
            tenant_id: l.org_id,
            delegator_agent_id: l.delegator,
            delegatee_agent_id: l.delegatee,
            principal_agent_id: l.principal,
            parent_chain_id: l.ancestors.last().copied(),
            chain,
            scopes: l.scopes.clone(),
            delegation_token: token,
            signature,
            ttl_seconds: (l.expires_at - l.issued_at).div_euclid(1000),
            issued_at: rfc3339(l.issued_at),
            expires_at: rfc3339(l.expires_at),
            revoked_at: revoked_at.map(rfc3339),
            created_at: rfc3339(l.issued_at),
        }
    }
}

/// Create a delegation link: the caller (with its bearer token, which may itself be delegated)
/// lets `delegateeAgentId` act for it within `scopes`.
#[utoipa::path(post, path = "/api/v1/oauth2/token/delegate", operation_id = "createDelegation", tag = "Delegation",
    security(("bearer" = [])), request_body = CreateDelegationRequest,
    responses(
        (status = 201, description = "Delegation created", body = DelegationView, content_type = "application/json"),
        (status = 400, description = "VALIDATION_ERROR, SCOPE_EXCEEDS_DELEGATOR (details.requested/available), CROSS_TENANT_DELEGATION (instance admin only), DELEGATION_DEPTH_EXCEEDED, DELEGATION_CYCLE, AGENT_NOT_ACTIVE, DELEGATION_REVOKED", body = ErrorBody, content_type = "application/json"),
        (status = 401, description = "UNAUTHORIZED: no active bearer token (a delegation token is not one)", body = ErrorBody, content_type = "application/json"),
        (status = 404, description = "AGENT_NOT_FOUND: no such delegatee in the caller's organization", body = ErrorBody, content_type = "application/json"),
        (status = 429, description = "RATE_LIMITED", body = ErrorBody, content_type = "application/json"),
    ))]
pub(crate) async fn create(
    _p: Params,
    auth: TokenAuth,
    req: CreateDelegationRequest,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let g = delegation::grant(
        &state,
        &auth.token,
        auth.client,
        GrantRequest {
            delegatee: req.delegatee_agent_id,
            scopes: req.scopes,
            ttl_secs: req.ttl_seconds,
        },
    )
    .await?;
    Ok(created(&DelegationView::new(&g.link, Some(g.token), None)))
}

/// `POST /api/v1/oauth2/token/verify-delegation` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct VerifyDelegationRequest {
    pub(crate) delegation_token: String,
}

/// The predecessor's `DelegationVerificationResult`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DelegationVerificationResult {
    /// In force now: verified, not expired, no link of its chain revoked, every agent of the
    /// chain active.
    pub(crate) valid: bool,
    pub(crate) chain_id: Uuid,
    pub(crate) delegator_agent_id: Uuid,
    pub(crate) delegatee_agent_id: Uuid,
    pub(crate) principal_agent_id: Uuid,
    pub(crate) chain: Vec<Uuid>,
    pub(crate) scopes: Vec<String>,
    pub(crate) issued_at: String,
    pub(crate) expires_at: String,
    pub(crate) revoked_at: Option<String>,
    /// Why it is not valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
}

/// Verify a delegation token online: `valid: false` (200) when it expired, a link of its chain
/// was revoked or an agent of the chain is no longer active.
#[utoipa::path(post, path = "/api/v1/oauth2/token/verify-delegation", operation_id = "verifyDelegation", tag = "Delegation",
    security(("bearer" = [])), request_body = VerifyDelegationRequest,
    responses(
        (status = 200, description = "Verification result", body = DelegationVerificationResult, content_type = "application/json"),
        (status = 400, description = "VALIDATION_ERROR, DELEGATION_TOKEN_INVALID (forged, malformed, not ours), WRONG_TOKEN_TYPE (not a delegation token)", body = ErrorBody, content_type = "application/json"),
        (status = 401, description = "UNAUTHORIZED", body = ErrorBody, content_type = "application/json"),
        (status = 404, description = "DELEGATION_NOT_FOUND: another organization's delegation", body = ErrorBody, content_type = "application/json"),
        (status = 429, description = "RATE_LIMITED", body = ErrorBody, content_type = "application/json"),
    ))]
pub(crate) async fn verify(
    _p: Params,
    caller: Caller,
    req: VerifyDelegationRequest,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let v = delegation::verify(&state, &caller, &req.delegation_token).await?;
    let l = &v.link;
    let mut chain = l.ancestors.clone();
    chain.push(l.id);
    Ok(warp::reply::json(&DelegationVerificationResult {
        valid: v.valid,
        chain_id: l.id,
        delegator_agent_id: l.delegator,
        delegatee_agent_id: l.delegatee,
        principal_agent_id: l.principal,
        chain,
        scopes: l.scopes.clone(),
        issued_at: rfc3339(l.issued_at),
        expires_at: rfc3339(l.expires_at),
        revoked_at: v.revoked_at.map(rfc3339),
        reason: v.reason,
    })
    .into_response())
}

/// Revoke a delegation link and every link under it (its delegator, its principal, an admin of
/// its organization). Idempotent.
#[utoipa::path(delete, path = "/api/v1/oauth2/token/delegate/{chainId}", operation_id = "revokeDelegation", tag = "Delegation",
    security(("bearer" = [])), params(("chainId" = Uuid, Path, description = "The link's chain id")),
    responses(
        (status = 204, description = "Revoked (or already revoked)"),
        (status = 400, description = "VALIDATION_ERROR: chainId is not a UUID", body = ErrorBody, content_type = "application/json"),
        (status = 401, description = "UNAUTHORIZED", body = ErrorBody, content_type = "application/json"),
        (status = 403, description = "AUTHORIZATION_ERROR: neither its delegator, its principal nor an admin", body = ErrorBody, content_type = "application/json"),
        (status = 404, description = "DELEGATION_NOT_FOUND", body = ErrorBody, content_type = "application/json"),
        (status = 429, description = "RATE_LIMITED", body = ErrorBody, content_type = "application/json"),
    ))]
pub(crate) async fn revoke(
    p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    delegation::revoke(&state, &caller, p.id("chainId")?).await?;
    Ok(warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response())
}

/// A link as listed for an agent.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DelegationListItem {
    #[serde(flatten)]
    pub(crate) link: DelegationView,
    /// `active`, `revoked` (this link or one above it), `expired`, or `inactive` (an agent of
    /// the chain suspended or decommissioned, or the delegator's credential revoked).
    pub(crate) status: &'static str,
    /// `given` (the agent is the delegator), `received` (the delegatee) or `principal` (a link
    /// further down a chain acting for the agent).
    pub(crate) direction: &'static str,
}

/// The delegations of an agent.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DelegationList {
    pub(crate) data: Vec<DelegationListItem>,
}

/// The delegations an agent gave, received or is the principal of, oldest first, with their
/// status now.
#[utoipa::path(get, path = "/api/v1/agents/{agentId}/delegations", operation_id = "listAgentDelegations", tag = "Delegation",
    security(("bearer" = ["agents:read"])), params(("agentId" = Uuid, Path)),
    responses(
        (status = 200, description = "The agent's delegations", body = DelegationList, content_type = "application/json"),
        (status = 400, description = "VALIDATION_ERROR", body = ErrorBody, content_type = "application/json"),
        (status = 401, description = "UNAUTHORIZED", body = ErrorBody, content_type = "application/json"),
        (status = 403, description = "AUTHORIZATION_ERROR: agents:read needed", body = ErrorBody, content_type = "application/json"),
        (status = 404, description = "AGENT_NOT_FOUND", body = ErrorBody, content_type = "application/json"),
        (status = 429, description = "RATE_LIMITED", body = ErrorBody, content_type = "application/json"),
    ))]
pub(crate) async fn list(
    p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let agent = p.id("agentId")?;
    let items = delegation::list(&state, &caller, agent)?;
    let data = items
        .into_iter()
        .map(|i| DelegationListItem {
            direction: if i.link.delegator == agent {
                "given"
            } else if i.link.delegatee == agent {
                "received"
            } else {
                "principal"
            },
            status: i.status,
            link: DelegationView::new(&i.link, None, i.revoked_at),
        })
        .collect();
    Ok(warp::reply::json(&DelegationList { data }).into_response())
}
