//! Bearer authentication of `/api/v1` routes: a strictly verified token of ours, whose agent and
//! organization are still active. The organization of every request comes from here and only here.

use std::net::SocketAddr;
use std::sync::Arc;

use uuid::Uuid;
use warp::{Filter, Rejection};

use crate::app::{Actor, AppState, Caller};
use crate::clients::ClientEntry;
use crate::http::error::ApiError;
use crate::http::extract::with_state;
use storage::{Agent, AgentStatus, CredentialStatus};

use crate::token::Verified;

/// The client's IP address as recorded in the audit log and used as a throttling key.
pub(crate) fn client_ip(addr: Option<SocketAddr>) -> Option<String> {
    addr.map(|a| a.ip().to_string())
}

/// Extracts the [`Caller`] or rejects with 401 (audited within the failure bound).
pub(crate) fn bearer(
    state: AppState,
) -> impl Filter<Extract = (Caller,), Error = Rejection> + Clone {
    warp::header::optional::<String>("authorization")
        .and(crate::http::extract::client_addr())
        .and(with_state(state))
        .and_then(
            |header: Option<String>, addr: Option<SocketAddr>, state: AppState| async move {
                let client = client_ip(addr);
                // The token is checked first: a valid token is never refused by the failure
                // throttle, whatever else comes from its address. Failures are charged to the
                // address and audited within the bound of `app::failures`.
                match authenticate(header.as_deref(), &state) {
                    Ok(a) => Ok(Caller {
                        agent_id: a.claims.agent_id,
                        org_id: a.claims.org_id,
                        scopes: a.effective_scopes(),
                        token_scopes: crate::app::vocab::scopes_of(&a.claims.scopes),
                        actor: Actor {
                            id: a.claims.agent_id.to_string(),
                            org: a.claims.org_id,
                            client,
                        },
                    }),
                    Err((org, reason)) => {
                        let actor = Actor {
                            id: "anonymous".into(),
                            org: org.unwrap_or(state.settings.system_org),
                            client,
                        };
                        match state.auth_failure(&actor, "auth.bearer", &reason).await {
                            Ok(()) => Err(Rejection::from(ApiError::unauthorized(&reason))),
                            Err(wait) => Err(Rejection::from(ApiError::too_many(
                                "failed authentications from this address",
                                wait,
                            ))),
                        }
                    }
                }
            },
        )
}

fn authenticate(
    header: Option<&str>,
    state: &AppState,
) -> Result<ActiveToken, (Option<Uuid>, String)> {
    let header = header.ok_or((None, "no Authorization header".to_string()))?;
    let token = match header.split_once(' ') {
        Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim(),
        _ => return Err((None, "Authorization must use the Bearer scheme".to_string())),
    };
    check_token(state, token)
}

/// A token of ours that is active now.
pub(crate) struct ActiveToken {
    pub(crate) claims: Verified,
    entry: Arc<ClientEntry>,
}

impl ActiveToken {
    /// The token's agent (the cached record, shared).
    pub(crate) fn agent(&self) -> &Agent {
        &self.entry.agent
    }

    /// The token's scopes that its agent still holds.
    pub(crate) fn effective_scopes(&self) -> Vec<crate::app::Scope> {
        crate::app::authz::effective(
            &crate::app::vocab::scopes_of(&self.claims.scopes),
            &self.entry.agent.scopes,
        )
    }
}

/// Whether `token` is active: strictly verified (signature by a key in force, issuer, audience,
/// lifetime), not revoked, its credential (if any) still active, its agent and organization
/// active. The error carries the organization (when known) and a reason safe to return.
pub(crate) fn check_token(
    state: &AppState,
    token: &str,
) -> Result<ActiveToken, (Option<Uuid>, String)> {
    let s = &state.settings;
    let now_ms = state.clock.now_ms();
    let v = state
        .verified_tokens
        .verify(token, &state.keys(), &s.issuer, &s.issuer, now_ms)
        .map_err(|e| (None, e.to_string()))?;
    let org = Some(v.org_id);
    let store_err = |_| (org, "the node could not check the token".to_string());
    if state
        .store
        .is_token_revoked(&v.jti, now_ms.div_euclid(1000))
        .map_err(store_err)?
    {
        return Err((org, "the token was revoked".into()));
    }
    let entry = state
        .clients
        .get(&v.agent_id)
        .map_err(store_err)?
        .filter(|e| e.agent.org_id == v.org_id)
        .ok_or((org, "the token's agent no longer exists".to_string()))?;
    if let Some(cid) = v.cid {
        let active = entry.credentials.iter().any(|c| {
            c.id == cid
                && c.status == CredentialStatus::Active
                && c.expires_at.is_none_or(|e| e > now_ms)
        });
        if !active {
            return Err((
                org,
                "the credential the token was issued for is no longer active".into(),
            ));
        }
    }
    if let Some(kid) = &v.akid {
        if !entry.keys.iter().any(|k| &k.kid == kid) {
            return Err((
                org,
                "the key the token was obtained with is no longer registered".into(),
            ));
        }
    }
    // Suspending an agent or its organization starts a new token epoch: reactivation does not
    // bring back the tokens issued before.
    if v.tep != entry.token_epochs() {
        return Err((org, "the token was issued before a suspension".into()));
    }
    if entry.agent.status != AgentStatus::Active {
        return Err((org, "the token's agent is not active".into()));
    }
    if !entry.org_active {
        return Err((org, "the token's organization is not active".into()));
    }
    Ok(ActiveToken { claims: v, entry })
}
