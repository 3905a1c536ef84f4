//! `/.well-known/...` and `/did.json`: discovery and identity — `/.well-known/jwks.json` (with
//! ETag), `/.well-known/openid-configuration` (OIDC Discovery 1.0 §3),
//! `/.well-known/oauth-authorization-server` (RFC 8414), the node's did:web document
//! (`/.well-known/did.json`, and `/did.json` when its DID has a path); what they say is
//! [`crate::app::discovery`]'s and [`crate::app::dids`]'s. Also `/agent-info` (UserInfo-like),
//! and `/oauth2/authorize`, which exists only to say that there is no interactive authorization
//! here.

use warp::{Rejection, Reply};

use super::public_agents::{document, public_reply};
use crate::app::{dids, discovery, AppState};
use crate::http::extract::Params;
use crate::model::ErrorBody;

/// How long relying parties may cache the JWKS and metadata. Far below the rotation grace
/// period, so a cached set always still holds every key that signed a live token.
const CACHE_SECS: u64 = 300;

fn cacheable(body: &impl serde::Serialize) -> warp::reply::Response {
    warp::reply::with_header(
        warp::reply::json(body),
        "cache-control",
        format!("public, max-age={CACHE_SECS}"),
    )
    .into_response()
}

/// The node's public signing keys: the active key and retired keys still in their grace period.
#[utoipa::path(get, operation_id = "getJwks", path = "/.well-known/jwks.json", tag = "Discovery",
    responses((status = 200, description = "JSON Web Key Set (RFC 7517), with ETag", body = Object), (status = 304, description = "Not modified")))]
pub(crate) async fn jwks(
    _p: Params,
    if_none_match: Option<String>,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let r = discovery::jwks(&state);
    Ok(crate::http::extract::conditional(
        r.body,
        &r.etag,
        "application/json",
        if_none_match.as_deref(),
        CACHE_SECS,
    ))
}

/// RFC 8414 authorization server metadata.
#[utoipa::path(get, operation_id = "getAuthorizationServerMetadata", path = "/.well-known/oauth-authorization-server", tag = "Discovery",
    responses((status = 200, description = "RFC 8414 metadata", body = Object)))]
pub(crate) async fn oauth_authorization_server(
    _p: Params,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    Ok(cacheable(&discovery::server_metadata(&state)))
}

/// OpenID Provider metadata. The node issues access tokens to agents and no ID tokens; the
/// members OIDC Discovery requires anyway say so as precisely as the format allows:
/// `response_types_supported` is empty and `authorization_endpoint` answers every request with
/// `unsupported_response_type`.
#[utoipa::path(get, operation_id = "getOpenIdConfiguration", path = "/.well-known/openid-configuration", tag = "Discovery",
    responses((status = 200, description = "OpenID Provider Metadata", body = Object)))]
pub(crate) async fn openid_configuration(
    _p: Params,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    Ok(cacheable(&discovery::provider_metadata(&state)))
}

/// The node's DID document (`did:web:<host>`): its signing keys in force and its services.
#[utoipa::path(get, operation_id = "getNodeDidDocument", path = "/.well-known/did.json", tag = "DIDs",
    responses((status = 200, description = "DID document (application/did+ld+json when the Accept header asks for it)", content((Object = "application/did+json"), (Object = "application/did+ld+json"))),
        (status = 304, description = "Not modified")))]
pub(crate) async fn node_document(
    _p: Params,
    accept: Option<String>,
    inm: Option<String>,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let r = dids::node_document(&state);
    Ok(document(&r, accept.as_deref(), inm.as_deref()))
}

/// The node's DID document where did:web puts it when `--public-url` has a path
/// (`https://h/base` is `did:web:h:base`, whose document is `https://h/base/did.json`; the proxy
/// in front of the node strips `/base`). Without a path the DID's document is at
/// `/.well-known/did.json` only, and this answers 404.
#[utoipa::path(get, operation_id = "getNodeDidDocumentAtRoot", path = "/did.json", tag = "DIDs",
    responses((status = 200, description = "DID document of the node, when its public URL has a path", content((Object = "application/did+json"), (Object = "application/did+ld+json"))),
        (status = 304, description = "Not modified"), (status = 404, description = "DID_DOCUMENT_NOT_HERE", body = ErrorBody)))]
pub(crate) async fn node_document_at_path(
    _p: Params,
    accept: Option<String>,
    inm: Option<String>,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    Ok(public_reply(dids::node_document_at_path(&state), |r| {
        document(&r, accept.as_deref(), inm.as_deref())
    }))
}
