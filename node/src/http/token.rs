//! `/api/v1/token...`: the token endpoint (alias `/oauth2/token`), introspection (RFC 7662)
//! and revocation (RFC 7009). Errors in the RFC 6749 §5.2 shape, never cached.
//!
//! Token: RFC 6749 §4.4 client_credentials (`app::tokens`) and RFC 8693 token exchange
//! (`app::exchange`); client authentication by secret (basic or post) or `private_key_jwt`;
//! form-encoded as the RFC requires, or JSON for the predecessor's clients.

use std::net::SocketAddr;

use bytes::Bytes;
use serde::Serialize;
use warp::http::StatusCode;
use warp::{Rejection, Reply};

use crate::app::exchange::ExchangeRequest;
use crate::app::tokens::{Issued, ResourceCaller, ResourceCredentials};
use crate::app::OAuthKind;
use crate::app::{bearer::ActiveToken, AppState};
use crate::http::auth::client_ip;
use crate::http::error::OAuthError;
use crate::http::extract::Params;
use crate::http::oauth_form::{bearer_token, no_store, OAuthForm};
use crate::model::{OAuthErrorBody, TokenResponse};

/// RFC 8693 §2.1 `grant_type`.
pub(crate) const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 6749 §4.4 `grant_type`.
const CLIENT_CREDENTIALS: &str = "client_credentials";
/// Subject token types accepted (RFC 8693 §3): JWTs all.
const SUBJECT_TOKEN_TYPES: &[&str] = &[
    "urn:ietf:params:oauth:token-type:jwt",
    "urn:ietf:params:oauth:token-type:id_token",
    "urn:ietf:params:oauth:token-type:access_token",
    crate::app::delegation::TOKEN_TYPE,
];
/// RFC 8693 §3: what we issue.
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// RFC 6749 §5.1 answer.
fn token_response(i: Issued) -> TokenResponse {
    TokenResponse {
        access_token: i.access_token,
        token_type: "Bearer",
        expires_in: i.expires_in,
        scope: i.scope,
    }
}

/// The grant types of the token endpoint.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) enum GrantType {
    #[schema(rename = "client_credentials")]
    ClientCredentials,
    #[schema(rename = "urn:ietf:params:oauth:grant-type:token-exchange")]
    TokenExchange,
}

/// `client_assertion_type` of `private_key_jwt` (RFC 7523 §2.2).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) enum ClientAssertionType {
    #[schema(rename = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")]
    JwtBearer,
}

/// The parameters of the token endpoint (documentation of what [`OAuthForm`] accepts there):
/// the grant (RFC 6749 §4.4.2, RFC 8693 §2.1), and the client authentication when it is not
/// HTTP Basic: `client_id` + `client_secret` (`client_secret_post`), or `client_assertion_type`
/// + `client_assertion` (`private_key_jwt`, RFC 7523).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct TokenRequest {
    grant_type: GrantType,
    client_id: Option<String>,
    client_secret: Option<String>,
    client_assertion_type: Option<ClientAssertionType>,
    /// A JWT signed with one of the agent's keys (`iss` = `sub` = the agent id, `aud` the token endpoint).
    client_assertion: Option<String>,
    /// Space-separated scopes; default: all the agent holds.
    scope: Option<String>,
    /// Token exchange: the partner-issued JWT.
    subject_token: Option<String>,
    /// Token exchange: the type of `subject_token`.
    subject_token_type: Option<String>,
    /// Token exchange: `urn:ietf:params:oauth:token-type:access_token` when given.
    requested_token_type: Option<String>,
    /// Token exchange: the agent to act as (id or DID).
    audience: Option<String>,
}

/// The parameters of introspection (RFC 7662 §2.1) and revocation (RFC 7009 §2.1), with the
/// caller's authentication when it is neither a bearer token nor HTTP Basic.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct TokenActionRequest {
    /// The token in question.
    token: String,
    /// Accepted and ignored: the node issues one type of token.
    token_type_hint: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    client_assertion_type: Option<ClientAssertionType>,
    client_assertion: Option<String>,
}

/// Issue an access token: client_credentials (RFC 6749 §4.4) or token exchange (RFC 8693).
/// The client authenticates with HTTP Basic, `client_secret_post` or `private_key_jwt`.
#[utoipa::path(
    post,
    operation_id = "issueToken",
    path = "/api/v1/token",
    tag = "Tokens",
    security(("clientSecretBasic" = []), ()),
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Access token (RFC 9068 JWT); a token exchange adds `issued_token_type`", body = TokenResponse),
        (status = 400, description = "invalid_request, unsupported_grant_type, invalid_scope", body = OAuthErrorBody),
        (status = 401, description = "invalid_client", body = OAuthErrorBody),
        (status = 429, description = "temporarily_unavailable: per-client rate limit; see Retry-After", body = OAuthErrorBody),
    )
)]
pub(crate) async fn token(
    _p: Params,
    authorization: Option<String>,
    content_type: Option<String>,
    body: Bytes,
    addr: Option<SocketAddr>,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let form = OAuthForm::parse(content_type.as_deref(), &body)?;
    match form.grant_type.as_deref() {
        None => Err(OAuthError::new(OAuthKind::InvalidRequest, "grant_type is required").into()),
        Some(CLIENT_CREDENTIALS) => {
            let credentials = form.client_credentials(authorization.as_deref())?;
            let issued = crate::app::tokens::client_credentials(
                &state,
                &credentials,
                form.scope.as_deref(),
                client_ip(addr),
            )
            .await
            .map_err(OAuthError::from)?;
            Ok(no_store(
                warp::reply::json(&token_response(issued)).into_response(),
            ))
        }
        Some(TOKEN_EXCHANGE) => {
            check_exchange_params(
                form.subject_token_type.as_deref(),
                form.requested_token_type.as_deref(),
            )?;
            let subject_token = form
                .subject_token
                .as_deref()
                .ok_or_else(|| OAuthError::new(OAuthKind::InvalidRequest, "subject_token is required"))?;
            // A delegation token (its `typ`), or any exchange with an actor: a redemption.
            if form.actor_token.is_some()
                || crate::app::delegation::looks_like_delegation(subject_token)
            {
                let issued = crate::app::delegation::redeem(
                    &state,
                    crate::app::delegation::Redemption {
                        subject_token,
                        actor_token: form.actor_token.as_deref(),
                        actor_token_type: form.actor_token_type.as_deref(),
                        scope: form.scope.as_deref(),
                    },
                    client_ip(addr),
                )
                .await
                .map_err(OAuthError::from)?;
                return Ok(no_store(
                    warp::reply::json(&ExchangeResponse::from(issued)).into_response(),
                ));
            }
            let issued = crate::app::exchange::exchange(
                &state,
                ExchangeRequest {
                    subject_token,
                    scope: form.scope.as_deref(),
                    audience: form.audience.as_deref(),
                },
                client_ip(addr),
            )
            .await
            .map_err(OAuthError::from)?;
            Ok(no_store(
                warp::reply::json(&ExchangeResponse::from(issued)).into_response(),
            ))
        }
        Some(other) => Err(OAuthError::new(
            OAuthKind::UnsupportedGrantType,
            format!(
                "grant_type {other:?} is not supported; use {CLIENT_CREDENTIALS} or {TOKEN_EXCHANGE}"
            ),
        )
        .into()),
    }
}

/// Checks the RFC 8693 parameters of a token-endpoint exchange.
fn check_exchange_params(
    subject_token_type: Option<&str>,
    requested: Option<&str>,
) -> Result<(), OAuthError> {
    match subject_token_type {
        None => {
            return Err(OAuthError::new(
                OAuthKind::InvalidRequest,
                "subject_token_type is required",
            ))
        }
        Some(t) if !SUBJECT_TOKEN_TYPES.contains(&t) => {
            return Err(OAuthError::new(
                OAuthKind::InvalidRequest,
                format!(
                    "subject_token_type {t:?} is not supported; send a JWT ({})",
                    SUBJECT_TOKEN_TYPES.join(", ")
                ),
            ))
        }
        _ => {}
    }
    if requested.is_some_and(|r| r != ACCESS_TOKEN_TYPE) {
        return Err(OAuthError::new(
            OAuthKind::InvalidRequest,
            format!("requested_token_type must be {ACCESS_TOKEN_TYPE}"),
        ));
    }
    Ok(())
}

/// The RFC 8693 response members (§2.2.1).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ExchangeResponse {
    pub(crate) access_token: String,
    /// `urn:ietf:params:oauth:token-type:access_token`.
    pub(crate) issued_token_type: &'static str,
    pub(crate) token_type: &'static str,
    pub(crate) expires_in: i64,
    pub(crate) scope: String,
}

impl From<Issued> for ExchangeResponse {
    fn from(t: Issued) -> Self {
        ExchangeResponse {
            access_token: t.access_token,
            issued_token_type: ACCESS_TOKEN_TYPE,
            token_type: "Bearer",
            expires_in: t.expires_in,
            scope: t.scope,
        }
    }
}

/// An introspection or revocation request: parses it, authenticates the caller (audited as
/// `action` on failure) and returns the caller and the token in question.
async fn token_request(
    state: &AppState,
    authorization: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
    addr: Option<SocketAddr>,
    action: &str,
) -> Result<(ResourceCaller, String), OAuthError> {
    let form = OAuthForm::parse(content_type, body)?;
    let credentials;
    let client = match bearer_token(authorization) {
        // One authentication method per request (RFC 6749 §2.3): client credentials in the
        // body next to a bearer token are an error, not silently ignored.
        Some(_)
            if form.client_secret.is_some()
                || form.client_assertion.is_some()
                || form.client_assertion_type.is_some() =>
        {
            return Err(OAuthError::new(
                OAuthKind::InvalidRequest,
                "authenticate with a bearer token or with client credentials, not both",
            ))
        }
        Some(t) => ResourceCredentials::Bearer(t),
        None => {
            credentials = form.client_credentials(authorization)?;
            ResourceCredentials::Client(&credentials)
        }
    };
    let caller =
        crate::app::tokens::resource_caller(state, client, client_ip(addr), action).await?;
    let token = form
        .token
        .ok_or_else(|| OAuthError::new(OAuthKind::InvalidRequest, "token is required"))?;
    Ok((caller, token))
}

/// RFC 7662 §2.2 response.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub(crate) struct Introspection {
    active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nbf: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    organization_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deployment_env: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    did: Option<String>,
    /// RFC 8693 §4.1: who acts for `sub` (delegated and exchanged tokens), nested per hop.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    act: Option<serde_json::Value>,
    /// Delegated tokens: the chain ids of their delegation links, first link first.
    #[serde(skip_serializing_if = "Option::is_none")]
    delegation_chain: Option<Vec<String>>,
}

impl Introspection {
    fn active(state: &AppState, a: &ActiveToken) -> Self {
        let agent = a.agent();
        let c = &a.claims;
        Introspection {
            active: true,
            // What the token is good for now: its scopes that the agent still holds.
            scope: Some(crate::app::tokens::scope_string(&a.effective_scopes())),
            client_id: Some(c.client_id.clone()),
            token_type: Some("Bearer"),
            exp: Some(c.exp),
            iat: c.iat,
            nbf: c.nbf,
            sub: Some(c.agent_id.to_string()),
            aud: Some(state.settings.issuer.clone()),
            iss: Some(state.settings.issuer.clone()),
            jti: Some(c.jti.clone()),
            organization_id: Some(c.org_id.to_string()),
            agent_type: Some(agent.agent_type.clone()),
            deployment_env: Some(agent.deployment_env.clone()),
            did: Some(state.agent_did(&agent.id)),
            act: c.act.clone(),
            delegation_chain: (!c.chain.is_empty())
                .then(|| c.chain.iter().map(|id| id.to_string()).collect()),
        }
    }
}

/// Introspect a token (RFC 7662). Callers see tokens of their own organization only (the
/// instance admin: all); any other token is `{"active": false}`.
#[utoipa::path(post, operation_id = "introspectToken", path = "/api/v1/token/introspect", tag = "Tokens",
    security(("bearer" = []), ("clientSecretBasic" = []), ()),
    request_body(content = TokenActionRequest, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, body = Introspection), (status = 400, body = OAuthErrorBody), (status = 401, body = OAuthErrorBody)))]
pub(crate) async fn introspect(
    _p: Params,
    authorization: Option<String>,
    content_type: Option<String>,
    body: Bytes,
    addr: Option<SocketAddr>,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let (caller, token) = token_request(
        &state,
        authorization.as_deref(),
        content_type.as_deref(),
        &body,
        addr,
        crate::app::tokens::INTROSPECT_ACTION,
    )
    .await?;
    let body = match crate::app::tokens::introspect(&state, &caller, &token) {
        Some(a) => Introspection::active(&state, &a),
        None => Introspection::default(),
    };
    Ok(no_store(warp::reply::json(&body).into_response()))
}

/// Revoke a token (RFC 7009): the token's own client, or an agent of its organization holding
/// `agents:write`, or the instance admin. Unknown, invalid or expired tokens answer 200 too.
#[utoipa::path(post, operation_id = "revokeToken", path = "/api/v1/token/revoke", tag = "Tokens",
    security(("bearer" = []), ("clientSecretBasic" = []), ()),
    request_body(content = TokenActionRequest, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "Revoked, or nothing to revoke"), (status = 400, body = OAuthErrorBody), (status = 401, body = OAuthErrorBody)))]
pub(crate) async fn revoke(
    _p: Params,
    authorization: Option<String>,
    content_type: Option<String>,
    body: Bytes,
    addr: Option<SocketAddr>,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let (caller, token) = token_request(
        &state,
        authorization.as_deref(),
        content_type.as_deref(),
        &body,
        addr,
        crate::app::tokens::REVOKE_ACTION,
    )
    .await?;
    crate::app::tokens::revoke(&state, &caller, &token)
        .await
        .map_err(OAuthError::from)?;
    Ok(warp::reply::with_status(warp::reply(), StatusCode::OK).into_response())
}
