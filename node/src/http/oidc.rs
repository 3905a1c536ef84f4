//! `/api/v1/oidc/...`: tenants' trust policies (`app::policies`) and the predecessor's token
//! exchange endpoint `POST /api/v1/oidc/token` (`app::exchange`; RFC 8693 exchange at the token
//! endpoint is `http::token`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use storage::TrustPolicy;
use utoipa::ToSchema;
use uuid::Uuid;
use warp::http::StatusCode;
use warp::{Rejection, Reply};

use crate::app::exchange::ExchangeRequest;
use crate::app::{AppState, Caller};
use crate::clock::rfc3339;
use crate::http::extract::{created, parse_id, Params};
use crate::http::token::ExchangeResponse;
use crate::model::{CreateTrustPolicyRequest, ErrorBody};

/// A trust policy.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TrustPolicyView {
    id: Uuid,
    /// Exactly the `iss` of the subject tokens (a federation partner).
    issuer: String,
    /// `sub` pattern; `*` matches any run of characters.
    subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    audience: Option<String>,
    /// Claims that must equal these strings.
    claims: BTreeMap<String, String>,
    agent_id: Uuid,
    /// Scopes an exchanged token may carry.
    scopes: Vec<String>,
    created_at: String,
}

impl TrustPolicyView {
    fn new(p: &TrustPolicy) -> Self {
        TrustPolicyView {
            id: p.id,
            issuer: p.issuer.clone(),
            subject: p.subject.clone(),
            audience: p.audience.clone(),
            claims: p.claims.clone(),
            agent_id: p.agent_id,
            scopes: p.scopes.clone(),
            created_at: rfc3339(p.created_at),
        }
    }
}

/// A list of trust policies.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TrustPolicyList {
    data: Vec<TrustPolicyView>,
}

/// Create a trust policy for one of the caller's organization's agents.
#[utoipa::path(post, operation_id = "createTrustPolicy", path = "/api/v1/oidc/trust-policies", tag = "Token exchange", security(("bearer" = ["agents:write"])),
    request_body = CreateTrustPolicyRequest,
    responses((status = 201, body = TrustPolicyView),
        (status = 400, description = "VALIDATION_ERROR, POLICY_TOO_BROAD", body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "AUTHORIZATION_ERROR, SCOPE_ESCALATION, AGENT_PROTECTED, AGENT_DECOMMISSIONED, ORG_NOT_ACTIVE", body = ErrorBody),
        (status = 404, description = "AGENT_NOT_FOUND", body = ErrorBody), (status = 409, description = "TRUST_POLICY_LIMIT", body = ErrorBody)))]
pub(crate) async fn create(
    _p: Params,
    caller: Caller,
    req: CreateTrustPolicyRequest,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let p = crate::app::policies::create(&state, &caller, req).await?;
    Ok(created(&TrustPolicyView::new(&p)))
}

/// Query of the trust-policy listing.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PolicyListQuery {
    /// Only the policies of this agent (the predecessor's filter).
    #[param(format = Uuid)]
    agent_id: Option<String>,
}

/// The caller's organization's trust policies, optionally of one agent.
#[utoipa::path(get, operation_id = "listTrustPolicies", path = "/api/v1/oidc/trust-policies", tag = "Token exchange", security(("bearer" = ["agents:read"])),
    params(PolicyListQuery),
    responses((status = 200, body = TrustPolicyList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn list(
    _p: Params,
    caller: Caller,
    q: PolicyListQuery,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let agent = q
        .agent_id
        .as_deref()
        .map(|a| parse_id("agentId", a))
        .transpose()?;
    let data = crate::app::policies::list(&state, &caller, agent)?
        .iter()
        .map(TrustPolicyView::new)
        .collect();
    Ok(warp::reply::json(&TrustPolicyList { data }).into_response())
}

/// One of the caller's organization's trust policies.
#[utoipa::path(get, operation_id = "getTrustPolicy", path = "/api/v1/oidc/trust-policies/{id}", tag = "Token exchange", security(("bearer" = ["agents:read"])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = TrustPolicyView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn get(
    p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let id = p.id("id")?;
    let p = crate::app::policies::get(&state, &caller, &id)?;
    Ok(warp::reply::json(&TrustPolicyView::new(&p)).into_response())
}

/// Delete a trust policy: exchanges under it stop at once.
#[utoipa::path(delete, operation_id = "deleteTrustPolicy", path = "/api/v1/oidc/trust-policies/{id}", tag = "Token exchange", security(("bearer" = ["agents:write"])),
    params(("id" = Uuid, Path)),
    responses((status = 204, description = "Deleted"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn delete(
    p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let id = p.id("id")?;
    crate::app::policies::delete(&state, &caller, &id).await?;
    Ok(warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response())
}

/// Body of the predecessor's `POST /api/v1/oidc/token`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct OidcTokenRequest {
    /// The workload's OIDC JWT (e.g. GitHub Actions' ID token).
    token: String,
    /// The agent to act as (its id or DID). Required unless the subject token's `aud` is the
    /// agent's DID (or id).
    agent_id: Option<String>,
    /// Space-separated scopes (default: all the policy allows).
    scope: Option<String>,
}

/// Exchange a workload's OIDC JWT for an agent's access token (the predecessor's endpoint; the
/// same as RFC 8693 token exchange at `/api/v1/token`).
#[utoipa::path(post, operation_id = "exchangeOidcToken", path = "/api/v1/oidc/token", tag = "Token exchange",
    request_body = OidcTokenRequest,
    responses((status = 200, body = ExchangeResponse), (status = 400, description = "TARGET_REQUIRED, INVALID_TARGET, VALIDATION_ERROR", body = ErrorBody),
        (status = 401, description = "TRUST_POLICY_NOT_FOUND, AGENT_NOT_ACTIVE, UNKNOWN_FEDERATION_ISSUER, SIGNATURE_INVALID, TOKEN_EXPIRED, ...", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED: failed exchanges from this address; see Retry-After", body = ErrorBody)))]
pub(crate) async fn oidc_token(
    _p: Params,
    req: OidcTokenRequest,
    addr: Option<std::net::SocketAddr>,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let issued = crate::app::exchange::exchange(
        &state,
        ExchangeRequest {
            subject_token: &req.token,
            scope: req.scope.as_deref(),
            audience: req.agent_id.as_deref(),
        },
        crate::http::auth::client_ip(addr),
    )
    .await?;
    let mut resp = warp::reply::json(&ExchangeResponse::from(issued)).into_response();
    resp.headers_mut().insert(
        warp::http::header::CACHE_CONTROL,
        warp::http::HeaderValue::from_static("no-store"),
    );
    Ok(resp)
}
