//! `/api/v1/agents/{agentId}/did...`: the predecessor's DID routes — the per-agent DID document
//! with its `agntcy` extension and the AGNTCY card (public, CORS-open), and W3C DID Resolution
//! of one of the caller's organization's agents (authenticated). Kept apart from
//! `/api/v1/agents/...`'s registry routes because they render the DID area's artifacts
//! ([`crate::app::dids`]).

use did_method::RESOLUTION_CONTENT_TYPE;
use warp::http::{header, HeaderValue};
use warp::{Rejection, Reply};

use super::public_agents::{about_agent, cors};
use crate::app::dids;
use crate::app::AppState;
use crate::http::extract::Params;
use crate::http::Caller;
use crate::model::ErrorBody;

/// The predecessor's per-agent DID document: the DID document with its `agntcy` extension.
#[utoipa::path(get, operation_id = "getAgentDidDocumentLegacy", path = "/api/v1/agents/{agentId}/did", tag = "DIDs",
    params(("agentId" = Uuid, Path)),
    responses((status = 200, description = "DID document with the `agntcy` extension", body = Object),
        (status = 404, body = ErrorBody), (status = 410, body = ErrorBody)))]
pub(crate) async fn legacy_document(
    p: Params,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    Ok(about_agent(
        &p,
        |id| dids::predecessor_document(&state, id),
        |v| cors(warp::reply::json(&v).into_response()),
    ))
}

/// The predecessor's AGNTCY agent card.
#[utoipa::path(get, operation_id = "getAgentDidCardLegacy", path = "/api/v1/agents/{agentId}/did/card", tag = "DIDs",
    params(("agentId" = Uuid, Path)),
    responses((status = 200, description = "AGNTCY card (predecessor shape)", body = Object),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 410, body = ErrorBody)))]
pub(crate) async fn legacy_card(
    p: Params,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    Ok(about_agent(
        &p,
        |id| dids::predecessor_card(&state, id),
        |v| cors(warp::reply::json(&v).into_response()),
    ))
}

/// W3C DID Resolution of one of the caller's organization's agents (the same result as
/// `/1.0/identifiers/{did}` gives for its DID).
#[utoipa::path(get, operation_id = "resolveAgentDid", path = "/api/v1/agents/{agentId}/did/resolve", tag = "DIDs", security(("bearer" = ["agents:read"])),
    params(("agentId" = Uuid, Path)),
    responses((status = 200, description = "DID Resolution result", body = Object, content_type = "application/ld+json;profile=\"https://w3id.org/did-resolution\""),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn resolve(
    p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let id = p.id("agentId")?;
    let body = dids::resolve(&state, &caller, &id)?;
    let mut resp = warp::reply::Response::new(body.into());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(RESOLUTION_CONTENT_TYPE),
    );
    Ok(resp)
}
