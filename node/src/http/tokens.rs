//! The token endpoint: `POST /api/v1/token` and its alias `/oauth2/token`.
//!
//! RFC 6749 §4.4 client_credentials with client_secret_basic (§2.3.1) or client_secret_post,
//! form-encoded as the RFC requires, or JSON for the predecessor's clients. Errors use the §5.2
//! shape. The response is sent before the issuance audit record is durable: that record is
//! group-committed within the store's bounded window (see DESIGN.md, Durability).

use std::net::SocketAddr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use storage::{AgentStatus, CredentialStatus, OrgStatus, Outcome};
use uuid::Uuid;
use warp::http::{header, HeaderValue};
use warp::{Filter, Rejection, Reply};

use crate::error::OAuthError;
use crate::http::auth::client_addr;
use crate::http::{bounded_body, with_state};
use crate::model::{TokenRequest, TokenResponse};
use crate::secrets::secret_matches;
use crate::state::{Actor, AppState};
use crate::token::{mint, AccessClaims};

/// `lastAuthAt` is refreshed at most this often per agent, to keep the hot path light.
const LAST_AUTH_RESOLUTION_MS: i64 = 1000;

pub(crate) fn routes(
    state: AppState,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("api" / "v1" / "token")
        .or(warp::path!("oauth2" / "token"))
        .unify()
        .and(warp::post())
        .and(warp::header::optional::<String>("authorization"))
        .and(bounded_body())
        .and(warp::addr::remote())
        .and(with_state(state))
        .and_then(token)
}

/// Issue an access token (client_credentials).
#[utoipa::path(
    post,
    path = "/api/v1/token",
    tag = "Tokens",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Access token (RFC 9068 JWT)", body = TokenResponse),
        (status = 400, description = "invalid_request, unsupported_grant_type, invalid_scope", body = crate::model::OAuthErrorBody),
        (status = 401, description = "invalid_client", body = crate::model::OAuthErrorBody),
    )
)]
pub(crate) async fn token(
    authorization: Option<String>,
    content_type: Option<String>,
    body: Bytes,
    addr: Option<SocketAddr>,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let client = client_addr(addr);
    let req = parse_request(content_type.as_deref(), &body)?;
    match req.grant_type.as_deref() {
        None => return Err(OAuthError::new("invalid_request", "grant_type is required").into()),
        Some("client_credentials") => {}
        Some(other) => {
            return Err(OAuthError::new(
                "unsupported_grant_type",
                format!("grant_type {other:?} is not supported; use client_credentials"),
            )
            .into())
        }
    }
    let basic = authorization.as_deref().map(parse_basic).transpose()?;
    let used_basic = basic.is_some();
    let (client_id, secret) = match (basic, req.client_id, req.client_secret) {
        (Some(_), _, Some(_)) => {
            return Err(OAuthError::new(
                "invalid_request",
                "use one client authentication method: HTTP Basic or client_secret in the body, not both",
            )
            .into())
        }
        (Some((id, secret)), body_id, None) => {
            if body_id.as_ref().is_some_and(|b| b != &id) {
                return Err(OAuthError::new("invalid_request", "client_id in the body differs from HTTP Basic").into());
            }
            (id, secret)
        }
        (None, Some(id), Some(secret)) => (id, secret),
        (None, _, _) => {
            let mut e = OAuthError::new(
                "invalid_client",
                "client authentication is required: HTTP Basic, or client_id and client_secret in the body",
            );
            e.basic_challenge = true;
            return Err(e.into());
        }
    };
    let fail = |actor_org: Option<Uuid>, reason: &'static str| {
        let state = state.clone();
        let actor = Actor {
            id: client_id.clone(),
            org: actor_org.unwrap_or(state.settings.system_org),
            client: client.clone(),
        };
        async move {
            state
                .audit_auth_failure(&actor, "token.issue", reason)
                .await;
            let mut e = OAuthError::new("invalid_client", reason);
            e.basic_challenge = used_basic;
            Rejection::from(e)
        }
    };

    let now_ms = state.clock.now_ms();
    let Ok(agent_id) = Uuid::parse_str(&client_id) else {
        return Err(fail(None, "client authentication failed").await);
    };
    let Some(agent) = state.store.get_agent(&agent_id).map_err(OAuthError::from)? else {
        return Err(fail(None, "client authentication failed").await);
    };
    let creds = state
        .store
        .list_credentials(&agent_id)
        .map_err(OAuthError::from)?;
    let matched = creds.iter().find(|c| {
        c.status == CredentialStatus::Active
            && c.expires_at.is_none_or(|e| e > now_ms)
            && secret_matches(&secret, &c.secret_hash)
    });
    let Some(cred) = matched else {
        return Err(fail(Some(agent.org_id), "client authentication failed").await);
    };
    match agent.status {
        AgentStatus::Active => {}
        AgentStatus::Suspended => {
            return Err(fail(Some(agent.org_id), "the agent is suspended").await)
        }
        AgentStatus::Decommissioned => {
            return Err(fail(Some(agent.org_id), "the agent is decommissioned").await)
        }
    }
    let org_active = state
        .store
        .get_org(&agent.org_id)
        .map_err(OAuthError::from)?
        .is_some_and(|o| o.status == OrgStatus::Active);
    if !org_active {
        return Err(fail(Some(agent.org_id), "the agent's organization is not active").await);
    }

    let requested: Vec<String> = req
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
    let now = now_ms.div_euclid(1000);
    let jti = Uuid::new_v4().to_string();
    let claims = AccessClaims {
        iss: s.issuer.clone(),
        sub: agent.id.to_string(),
        aud: s.issuer.clone(),
        exp: now + s.token_ttl_secs,
        iat: now,
        nbf: now,
        jti: jti.clone(),
        client_id: client_id.clone(),
        scope: scope.clone(),
        organization_id: agent.org_id.to_string(),
        agent_type: agent.agent_type.clone(),
        deployment_env: agent.deployment_env.clone(),
        did: state.agent_did(&agent.id),
    };
    let keys = state.keys();
    let access_token = mint(&keys, &claims).map_err(|e| {
        tracing::error!(error = %e, "token signing failed");
        OAuthError::new("server_error", "the token could not be signed")
    })?;

    // Audit the issuance without holding the response (bounded-window group commit).
    let actor = Actor {
        id: agent.id.to_string(),
        org: agent.org_id,
        client,
    };
    let entry = state.audit_entry(
        &actor,
        "token.issue",
        agent.id.to_string(),
        Outcome::Success,
        serde_json::json!({
            "jti": jti, "scope": scope, "clientId": client_id,
            "credentialId": cred.id, "exp": claims.exp, "kid": keys.active.kid,
        }),
    );
    let stale = agent
        .last_auth_at
        .is_none_or(|t| now_ms - t >= LAST_AUTH_RESOLUTION_MS);
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
    let mut resp = warp::reply::json(&body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(resp)
}

fn parse_request(content_type: Option<&str>, body: &[u8]) -> Result<TokenRequest, OAuthError> {
    let mime = content_type
        .and_then(|c| c.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase());
    match mime.as_deref() {
        Some("application/x-www-form-urlencoded") => serde_urlencoded::from_bytes(body)
            .map_err(|e| OAuthError::new("invalid_request", format!("malformed form body: {e}"))),
        Some("application/json") => serde_json::from_slice(body)
            .map_err(|e| OAuthError::new("invalid_request", format!("malformed JSON body: {e}"))),
        _ => Err(OAuthError::new(
            "invalid_request",
            "send the token request as application/x-www-form-urlencoded (or application/json)",
        )),
    }
}

/// RFC 6749 §2.3.1: `Basic base64(urlencode(client_id) ":" urlencode(client_secret))`.
fn parse_basic(header: &str) -> Result<(String, String), OAuthError> {
    let bad = || {
        let mut e = OAuthError::new("invalid_client", "malformed HTTP Basic credentials");
        e.basic_challenge = true;
        e
    };
    let (scheme, value) = header.split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::new(
            "invalid_request",
            "the token endpoint takes HTTP Basic client authentication, not a bearer token",
        ));
    }
    let decoded = STANDARD.decode(value.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = text.split_once(':').ok_or_else(bad)?;
    Ok((
        form_decode(id).ok_or_else(bad)?,
        form_decode(secret).ok_or_else(bad)?,
    ))
}

fn form_decode(s: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&format!("v={s}")).ok()?;
    match pairs.as_slice() {
        [(_, v)] => Some(v.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let h = format!("Basic {}", STANDARD.encode("my%20id:se%3Acret+x"));
        assert_eq!(
            parse_basic(&h).unwrap(),
            ("my id".to_string(), "se:cret x".to_string())
        );
        assert!(parse_basic("Basic !!!").is_err());
        assert_eq!(
            parse_basic("Bearer abc").unwrap_err().error,
            "invalid_request"
        );
    }
}
