//! `/api/v1/agents` and `/api/v1/agents/{agentId}`: the agent registry. The handlers call
//! [`crate::app::agents`] and render its results; `credentials` and `keys` serve the paths
//! below an agent.

pub(crate) mod credentials;
pub(crate) mod keys;

use warp::http::StatusCode;
use warp::{Rejection, Reply};

use crate::app::{agents, AppState};
use crate::http::extract::{created, Params};
use crate::http::Caller;
use crate::model::*;

/// A registration's answer: the agent, and the private half of the key the node generated when
/// the registration supplied none (shown this once; the node keeps only the public key).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RegisteredAgent {
    #[serde(flatten)]
    agent: AgentView,
    #[serde(skip_serializing_if = "Option::is_none")]
    generated_key: Option<GeneratedKey>,
}

/// A key pair the node generated for an agent.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GeneratedKey {
    /// RFC 7638 thumbprint; the verification method is `<agent DID>#<kid>`.
    kid: String,
    /// `ES256`.
    alg: &'static str,
    /// The private JWK (P-256). Store it now: it is not shown again.
    #[schema(value_type = Object)]
    private_jwk: serde_json::Value,
}

/// Register an agent in the caller's organization, with its DID keys: the public JWKs given in
/// `keys`, or else a P-256 key generated here whose private JWK is returned once.
#[utoipa::path(post, operation_id = "createAgent", path = "/api/v1/agents", tag = "Agents", security(("bearer" = ["agents:write"])),
    request_body = RegisterAgentRequest,
    responses((status = 201, body = RegisteredAgent),
        (status = 400, description = "VALIDATION_ERROR, INVALID_KEY, UNSUPPORTED_KEY, PRIVATE_KEY_MATERIAL", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "AUTHORIZATION_ERROR, SCOPE_ESCALATION, AGENT_LIMIT_EXCEEDED", body = ErrorBody),
        (status = 409, description = "AGENT_ALREADY_EXISTS", body = ErrorBody)))]
pub(crate) async fn register(
    _p: Params,
    caller: Caller,
    req: RegisterAgentRequest,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let r = agents::register(&state, &caller, req).await?;
    let mut resp = created(&RegisteredAgent {
        agent: AgentView::new(&r.agent, state.agent_did(&r.agent.id)),
        generated_key: r.generated.map(|g| GeneratedKey {
            kid: g.kid,
            alg: g.alg,
            private_jwk: g.private_jwk,
        }),
    });
    resp.headers_mut().insert(
        warp::http::header::CACHE_CONTROL,
        warp::http::HeaderValue::from_static("no-store"),
    );
    Ok(resp)
}

/// List the caller's organization's agents, newest first.
#[utoipa::path(get, operation_id = "listAgents", path = "/api/v1/agents", tag = "Agents", security(("bearer" = ["agents:read"])),
    params(AgentListQuery),
    responses((status = 200, body = AgentPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn list(
    _p: Params,
    caller: Caller,
    q: AgentListQuery,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let page = agents::list(&state, &caller, q)?;
    let data = page
        .items
        .iter()
        .map(|a| AgentView::new(a, state.agent_did(&a.id)))
        .collect();
    Ok(warp::reply::json(&AgentPage {
        data,
        total: page.total,
        page: page.page,
        limit: page.limit,
    })
    .into_response())
}

/// Get one agent of the caller's organization.
#[utoipa::path(get, operation_id = "getAgent", path = "/api/v1/agents/{agentId}", tag = "Agents", security(("bearer" = ["agents:read"])),
    params(("agentId" = Uuid, Path)),
    responses((status = 200, body = AgentView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, description = "AGENT_NOT_FOUND", body = ErrorBody)))]
pub(crate) async fn get(
    p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let agent = agents::get(&state, &caller, p.id("agentId")?)?;
    Ok(warp::reply::json(&AgentView::new(&agent, state.agent_did(&agent.id))).into_response())
}

/// Update an agent (only the fields given). `status: decommissioned` is one-way.
#[utoipa::path(patch, operation_id = "updateAgent", path = "/api/v1/agents/{agentId}", tag = "Agents", security(("bearer" = ["agents:write"])),
    params(("agentId" = Uuid, Path)), request_body = UpdateAgentRequest,
    responses((status = 200, body = AgentView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "AGENT_DECOMMISSIONED, SCOPE_ESCALATION", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn update(
    p: Params,
    caller: Caller,
    req: UpdateAgentRequest,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let agent = agents::update(&state, &caller, p.id("agentId")?, req).await?;
    Ok(warp::reply::json(&AgentView::new(&agent, state.agent_did(&agent.id))).into_response())
}

/// Decommission an agent: one-way; it can get no token afterwards.
#[utoipa::path(delete, operation_id = "decommissionAgent", path = "/api/v1/agents/{agentId}", tag = "Agents", security(("bearer" = ["agents:write"])),
    params(("agentId" = Uuid, Path)),
    responses((status = 204, description = "Decommissioned"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "AGENT_ALREADY_DECOMMISSIONED", body = ErrorBody)))]
pub(crate) async fn decommission(
    p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    agents::decommission(&state, &caller, p.id("agentId")?).await?;
    Ok(warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response())
}
