//! `/.well-known/jwks.json` and `/.well-known/openid-configuration` (OIDC Discovery 1.0 §3),
//! listing exactly what this node implements today.

use warp::{Filter, Rejection, Reply};

use crate::http::with_state;
use crate::model::ALL_SCOPES;
use crate::state::AppState;

pub(crate) fn routes(
    state: AppState,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    let st = with_state(state);
    let jwks = warp::path!(".well-known" / "jwks.json")
        .and(warp::get())
        .and(st.clone())
        .map(jwks);
    let discovery = warp::path!(".well-known" / "openid-configuration")
        .and(warp::get())
        .and(st)
        .map(discovery);
    jwks.or(discovery)
}

/// The node's public signing keys.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "Discovery",
    responses((status = 200, description = "JSON Web Key Set (RFC 7517)", body = Object)))]
pub(crate) fn jwks(state: AppState) -> warp::reply::Response {
    let keys = state.keys();
    warp::reply::with_header(
        warp::reply::json(&keys.jwks),
        "cache-control",
        "public, max-age=300",
    )
    .into_response()
}

/// OpenID Provider metadata.
#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "Discovery",
    responses((status = 200, description = "OpenID Provider Metadata", body = Object)))]
pub(crate) fn discovery(state: AppState) -> warp::reply::Response {
    let iss = &state.settings.issuer;
    let body = serde_json::json!({
        "issuer": iss,
        "token_endpoint": format!("{iss}/api/v1/token"),
        "jwks_uri": format!("{iss}/.well-known/jwks.json"),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "access_token_signing_alg_values_supported": ["ES256"],
        "scopes_supported": ALL_SCOPES,
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id", "scope",
            "organization_id", "agent_type", "deployment_env", "did"],
    });
    warp::reply::with_header(
        warp::reply::json(&body),
        "cache-control",
        "public, max-age=300",
    )
    .into_response()
}
