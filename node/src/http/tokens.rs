//! The OAuth endpoints: token (`POST /api/v1/token`, alias `/oauth2/token`), introspection
//! (RFC 7662, `POST /api/v1/token/introspect`) and revocation (RFC 7009,
//! `POST /api/v1/token/revoke`).
//!
//! Token: RFC 6749 §4.4 client_credentials; client authentication by secret (basic or post) or
//! `private_key_jwt`; form-encoded as the RFC requires, or JSON for the predecessor's clients;
//! errors in the §5.2 shape. The response is sent before the issuance audit record is durable:
//! that record is group-committed within the store's bounded window (README, Durability).

use std::net::SocketAddr;

use bytes::Bytes;
use serde::Serialize;
use storage::Outcome;
use uuid::Uuid;
use warp::http::{header, HeaderValue, StatusCode};
use warp::{Rejection, Reply};

use crate::app::{Actor, AppState};
use crate::http::auth::{check_token, client_ip};
use crate::http::client_auth::{authenticate, OAuthForm};
use crate::http::error::OAuthError;
use crate::http::extract::Params;
use crate::model::{OAuthErrorBody, TokenResponse};
use crate::token::{mint, AccessClaims, LEEWAY_SECS};

/// `lastAuthAt` is refreshed at most this often per agent, to keep the hot path light.
const LAST_AUTH_RESOLUTION_MS: i64 = 1000;

fn no_store(mut resp: warp::reply::Response) -> warp::reply::Response {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

/// Issue an access token (client_credentials).
#[utoipa::path(
    post,
    path = "/api/v1/token",
    tag = "Tokens",
    request_body(content = OAuthForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Access token (RFC 9068 JWT)", body = TokenResponse),
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
        None => return Err(OAuthError::new("invalid_request", "grant_type is required").into()),
        Some("client_credentials") => {}
        Some(crate::http::exchange::TOKEN_EXCHANGE) => {
            crate::http::exchange::check_params(
                form.subject_token_type.as_deref(),
                form.requested_token_type.as_deref(),
            )?;
            let subject_token = form
                .subject_token
                .as_deref()
                .ok_or_else(|| OAuthError::new("invalid_request", "subject_token is required"))?;
            let r = crate::http::exchange::exchange(
                &state,
                crate::http::exchange::ExchangeRequest {
                    subject_token,
                    scope: form.scope.as_deref(),
                    audience: form.audience.as_deref(),
                    client: client_ip(addr),
                },
            )
            .await
            .map_err(crate::http::exchange::ExchangeFailure::into_oauth)?;
            return Ok(no_store(
                warp::reply::json(&crate::http::exchange::ExchangeResponse::from(r))
                    .into_response(),
            ));
        }
        Some(other) => {
            return Err(OAuthError::new(
                "unsupported_grant_type",
                format!(
                    "grant_type {other:?} is not supported; use client_credentials or {}",
                    crate::http::exchange::TOKEN_EXCHANGE
                ),
            )
            .into())
        }
    }
    let client = authenticate(
        &state,
        authorization.as_deref(),
        &form,
        client_ip(addr),
        "token.issue",
    )
    .await?;
    let agent = client.agent();
    let requested: Vec<String> = form
        .scope
        .as_deref()
        .unwrap_or("")
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let granted = if requested.is_empty() {
        agent.scopes.clone()
    } else {
        if let Some(bad) = requested.iter().find(|s| !agent.scopes.contains(s)) {
            return Err(OAuthError::new(
                "invalid_scope",
                format!("scope {bad:?} is not allowed for this client"),
            )
            .into());
        }
        requested
    };
    let scope = granted.join(" ");

    let s = &state.settings;
    let now_ms = state.clock.now_ms();
    let jti = Uuid::new_v4().to_string();
    let claims = access_claims(
        &state,
        Grant {
            entry: client.entry(),
            scope: &scope,
            jti: &jti,
            cid: client.credential.map(|c| c.to_string()),
            akid: client.akid.clone(),
            act: None,
        },
        now_ms,
    );
    let keys = state.keys();
    let access_token = mint(&keys, &claims).map_err(|e| {
        tracing::error!(error = %e, "token signing failed");
        OAuthError::new("server_error", "the token could not be signed")
    })?;

    // Audit the issuance without holding the response (bounded-window group commit).
    let entry = state.audit_entry(
        &client.actor,
        "token.issue",
        agent.id.to_string(),
        Outcome::Success,
        serde_json::json!({
            "jti": jti, "scope": scope, "clientId": claims.client_id, "authMethod": client.method.as_str(),
            "credentialId": client.credential, "exp": claims.exp, "kid": keys.active.kid,
        }),
    );
    let stale = agent
        .last_auth_at
        .is_none_or(|t| now_ms - t >= LAST_AUTH_RESOLUTION_MS);
    let agent_id = agent.id;
    state.metrics.tokens_issued.inc();
    state.metrics.audit_appends.inc();
    state
        .store
        .write_detached(move |tx| {
            tx.audit(entry)?;
            if stale {
                if let Some(mut a) = tx.get_agent(&agent_id)? {
                    a.last_auth_at = Some(now_ms);
                    tx.put_agent(&a)?;
                }
            }
            Ok(())
        })
        .await;

    let body = TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: s.token_ttl_secs,
        scope,
    };
    Ok(no_store(warp::reply::json(&body).into_response()))
}

/// What an access token is issued for.
pub(crate) struct Grant<'a> {
    /// The agent (with its organization's state).
    pub(crate) entry: &'a crate::clients::ClientEntry,
    pub(crate) scope: &'a str,
    pub(crate) jti: &'a str,
    /// The credential the client authenticated with (secret methods).
    pub(crate) cid: Option<String>,
    /// The agent key that signed the client assertion (`private_key_jwt`).
    pub(crate) akid: Option<String>,
    /// RFC 8693 §4.1 actor (token exchange).
    pub(crate) act: Option<serde_json::Value>,
}

/// The claims of an access token issued now (DESIGN.md, Tokens), in the agent's and its
/// organization's current token epochs.
pub(crate) fn access_claims(state: &AppState, g: Grant<'_>, now_ms: i64) -> AccessClaims {
    let s = &state.settings;
    let agent = &g.entry.agent;
    let now = now_ms.div_euclid(1000);
    let tep = g.entry.token_epochs();
    AccessClaims {
        iss: s.issuer.clone(),
        sub: agent.id.to_string(),
        aud: s.issuer.clone(),
        exp: now + s.token_ttl_secs,
        iat: now,
        nbf: now,
        jti: g.jti.to_string(),
        client_id: agent.id.to_string(),
        scope: g.scope.to_string(),
        organization_id: agent.org_id.to_string(),
        agent_type: agent.agent_type.clone(),
        deployment_env: agent.deployment_env.clone(),
        did: state.agent_did(&agent.id),
        cid: g.cid,
        tep: (tep != [0, 0]).then_some(tep),
        akid: g.akid,
        act: g.act,
    }
}

/// Who is asking, at the introspection and revocation endpoints: a client authenticating
/// itself, or the holder of one of our bearer tokens.
struct ResourceCaller {
    agent_id: Uuid,
    org_id: Uuid,
    scopes: Vec<crate::app::Scope>,
    actor: Actor,
}

async fn resource_caller(
    state: &AppState,
    authorization: Option<&str>,
    form: &OAuthForm,
    addr: Option<String>,
    action: &str,
) -> Result<ResourceCaller, OAuthError> {
    if let Some(t) = authorization.and_then(|h| {
        h.split_once(' ')
            .filter(|(s, _)| s.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
    }) {
        return match check_token(state, t) {
            Ok(a) => Ok(ResourceCaller {
                agent_id: a.claims.agent_id,
                org_id: a.claims.org_id,
                scopes: a.effective_scopes(),
                actor: Actor {
                    id: a.claims.agent_id.to_string(),
                    org: a.claims.org_id,
                    client: addr,
                },
            }),
            Err((org, reason)) => {
                let actor = Actor {
                    id: "anonymous".into(),
                    org: org.unwrap_or(state.settings.system_org),
                    client: addr,
                };
                match state.auth_failure(&actor, action, &reason).await {
                    Ok(()) => Err(OAuthError::new(
                        "invalid_client",
                        format!("the bearer token is not active: {reason}"),
                    )),
                    Err(wait) => {
                        let mut e = OAuthError::new(
                            "temporarily_unavailable",
                            format!("too many failed authentications from this address; retry in {wait} s"),
                        );
                        e.status = StatusCode::TOO_MANY_REQUESTS;
                        e.retry_after = Some(wait);
                        Err(e)
                    }
                }
            }
        };
    }
    let client = authenticate(state, authorization, form, addr, action).await?;
    let agent = client.agent();
    Ok(ResourceCaller {
        agent_id: agent.id,
        org_id: agent.org_id,
        scopes: crate::app::vocab::scopes_of(&agent.scopes),
        actor: client.actor,
    })
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
    let caller = resource_caller(state, authorization, &form, client_ip(addr), action).await?;
    let token = form
        .token
        .ok_or_else(|| OAuthError::new("invalid_request", "token is required"))?;
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
}

/// Introspect a token (RFC 7662). Callers see tokens of their own organization only (the
/// instance admin: all); any other token is `{"active": false}`.
#[utoipa::path(post, path = "/api/v1/token/introspect", tag = "Tokens",
    request_body(content = OAuthForm, content_type = "application/x-www-form-urlencoded"),
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
        "token.introspect",
    )
    .await?;
    let token = token.as_str();
    state.metrics.introspections.inc();
    let body = match check_token(&state, token) {
        Ok(a)
            if a.claims.org_id == caller.org_id
                || caller.scopes.contains(&crate::app::Scope::AdminOrgs) =>
        {
            let agent = a.agent();
            let c = &a.claims;
            Introspection {
                active: true,
                // What the token is good for now: its scopes that the agent still holds.
                scope: Some(
                    a.effective_scopes()
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(" "),
                ),
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
            }
        }
        _ => Introspection::default(),
    };
    Ok(no_store(warp::reply::json(&body).into_response()))
}

/// Revoke a token (RFC 7009): the token's own client, or an agent of its organization holding
/// `agents:write`, or the instance admin. Unknown, invalid or expired tokens answer 200 too.
#[utoipa::path(post, path = "/api/v1/token/revoke", tag = "Tokens",
    request_body(content = OAuthForm, content_type = "application/x-www-form-urlencoded"),
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
        "token.revoke",
    )
    .await?;
    let token = token.as_str();
    let Ok(a) = check_token(&state, token) else {
        // RFC 7009 §2.2: an invalid token is not an error; there is nothing left to revoke.
        return Ok(warp::reply::with_status(warp::reply(), StatusCode::OK).into_response());
    };
    let target_scopes = a.agent().scopes.clone();
    let c = a.claims;
    let has = |s: &str| caller.scopes.iter().any(|x| x.as_str() == s);
    // Another organization's token is answered like an invalid one (RFC 7009 §2.2): the
    // answer must not tell a caller whether some other tenant's token is live.
    if c.org_id != caller.org_id && !has("admin:orgs") {
        return Ok(warp::reply::with_status(warp::reply(), StatusCode::OK).into_response());
    }
    // Within the organization: its own token, or one of an agent it may manage (every scope
    // of that agent held by the caller), with `agents:write`; or the instance admin.
    let allowed = c.agent_id == caller.agent_id
        || (c.org_id == caller.org_id
            && has("agents:write")
            && target_scopes.iter().all(|s| has(s)))
        || has("admin:orgs");
    if !allowed {
        return Err(OAuthError::new(
            "unauthorized_client",
            "this token belongs to an agent holding scopes the caller does not hold",
        )
        .into());
    }
    let entry = state.audit_entry(
        &Actor {
            org: c.org_id,
            ..caller.actor.clone()
        },
        "token.revoke",
        c.agent_id.to_string(),
        Outcome::Success,
        serde_json::json!({ "jti": c.jti, "exp": c.exp }),
    );
    let (jti, until) = (c.jti.clone(), c.exp + LEEWAY_SECS);
    state
        .store
        .write(move |tx| {
            tx.revoke_token(&jti, until);
            tx.audit(entry)?;
            Ok::<_, storage::StoreError>(())
        })
        .await
        .map_err(OAuthError::from)?;
    state.metrics.audit_appends.inc();
    Ok(warp::reply::with_status(warp::reply(), StatusCode::OK).into_response())
}
