//! `/agent-info`: the calling agent's identity claims (the predecessor's UserInfo-like
//! endpoint).

use warp::{Rejection, Reply};

use crate::app::{AppState, Caller};
use crate::http::extract::Params;
use crate::model::ErrorBody;

/// Identity claims of the calling agent (UserInfo-like).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct AgentInfo {
    sub: String,
    name: String,
    email: String,
    agent_type: String,
    deployment_env: String,
    organization_id: String,
    did: String,
    /// The scopes of the token used to call this endpoint.
    scope: String,
    version: String,
    owner: String,
    capabilities: Vec<String>,
}

/// Identity claims of the calling agent (the predecessor's `/agent-info`).
#[utoipa::path(get, operation_id = "getAgentInfo", path = "/agent-info", tag = "Discovery", security(("bearer" = [])),
    responses((status = 200, body = AgentInfo), (status = 401, body = ErrorBody)))]
pub(crate) async fn agent_info(
    _p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let a = crate::app::bearer::caller_agent(&state, &caller)?;
    let body = AgentInfo {
        sub: a.id.to_string(),
        did: state.agent_did(&a.id),
        name: a.name,
        email: a.email,
        agent_type: a.agent_type,
        deployment_env: a.deployment_env,
        organization_id: a.org_id.to_string(),
        scope: crate::app::tokens::scope_string(&caller.scopes),
        version: a.version,
        owner: a.owner,
        capabilities: a.capabilities,
    };
    Ok(
        warp::reply::with_header(warp::reply::json(&body), "cache-control", "no-store")
            .into_response(),
    )
}
