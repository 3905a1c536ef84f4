//! Discovery: `/.well-known/jwks.json` (with ETag), `/.well-known/openid-configuration`
//! (OIDC Discovery 1.0 §3) and `/.well-known/oauth-authorization-server` (RFC 8414).

use warp::{Rejection, Reply};

use crate::app::AppState;
use crate::http::extract::Params;
use crate::model::ALL_SCOPES;

/// How long relying parties may cache the JWKS and metadata. Far below the rotation grace
/// period, so a cached set always still holds every key that signed a live token.
const CACHE_SECS: u64 = 300;

fn cacheable(body: &serde_json::Value) -> warp::reply::Response {
    warp::reply::with_header(
        warp::reply::json(body),
        "cache-control",
        format!("public, max-age={CACHE_SECS}"),
    )
    .into_response()
}

/// The node's public signing keys: the active key and retired keys still in their grace period.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "Discovery",
    responses((status = 200, description = "JSON Web Key Set (RFC 7517), with ETag", body = Object), (status = 304, description = "Not modified")))]
pub(crate) async fn jwks(
    _p: Params,
    if_none_match: Option<String>,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    Ok({
        let body = state.keys().jwks(state.clock.now_ms()).to_string();
        let r = crate::artifacts::Rendered::new(body.into_bytes());
        crate::http::extract::conditional(
            r.body,
            &r.etag,
            "application/json",
            if_none_match.as_deref(),
            CACHE_SECS,
        )
    })
}

/// What both metadata documents say: exactly what is implemented.
fn common_metadata(state: &AppState) -> serde_json::Map<String, serde_json::Value> {
    let iss = &state.settings.issuer;
    let auth_methods = [
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    ];
    let assertion_algs = ["ES256", "EdDSA", "RS256"];
    let v = serde_json::json!({
        "issuer": iss,
        "token_endpoint": format!("{iss}/api/v1/token"),
        "jwks_uri": format!("{iss}/.well-known/jwks.json"),
        "introspection_endpoint": format!("{iss}/api/v1/token/introspect"),
        "revocation_endpoint": format!("{iss}/api/v1/token/revoke"),
        "grant_types_supported": ["client_credentials"],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": auth_methods,
        "token_endpoint_auth_signing_alg_values_supported": assertion_algs,
        "introspection_endpoint_auth_methods_supported": auth_methods,
        "introspection_endpoint_auth_signing_alg_values_supported": assertion_algs,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_signing_alg_values_supported": assertion_algs,
        "scopes_supported": ALL_SCOPES,
        "service_documentation": format!("{iss}/openapi.json"),
    });
    match v {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

/// RFC 8414 authorization server metadata.
#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "Discovery",
    responses((status = 200, description = "RFC 8414 metadata", body = Object)))]
pub(crate) async fn oauth_authorization_server(
    _p: Params,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    Ok(cacheable(&serde_json::Value::Object(common_metadata(
        &state,
    ))))
}

/// OpenID Provider metadata. The node issues access tokens to agents and no ID tokens; the
/// members OIDC Discovery requires anyway say so as precisely as the format allows:
/// `response_types_supported` is empty and `authorization_endpoint` answers every request with
/// `unsupported_response_type`.
#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "Discovery",
    responses((status = 200, description = "OpenID Provider Metadata", body = Object)))]
pub(crate) async fn openid_configuration(
    _p: Params,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    Ok({
        let iss = state.settings.issuer.clone();
        let mut m = common_metadata(&state);
        let algs = state.keys().algs(state.clock.now_ms());
        for (k, v) in [
            (
                "authorization_endpoint",
                serde_json::json!(format!("{iss}/oauth2/authorize")),
            ),
            (
                "userinfo_endpoint",
                serde_json::json!(format!("{iss}/agent-info")),
            ),
            ("subject_types_supported", serde_json::json!(["public"])),
            (
                "id_token_signing_alg_values_supported",
                serde_json::json!(algs),
            ),
            (
                "userinfo_signing_alg_values_supported",
                serde_json::json!([]),
            ),
            (
                "claims_supported",
                serde_json::json!([
                    "iss",
                    "sub",
                    "aud",
                    "exp",
                    "iat",
                    "nbf",
                    "jti",
                    "client_id",
                    "scope",
                    "organization_id",
                    "agent_type",
                    "deployment_env",
                    "did"
                ]),
            ),
        ] {
            m.insert(k.to_string(), v);
        }
        cacheable(&serde_json::Value::Object(m))
    })
}
