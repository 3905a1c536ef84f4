//! Bearer authentication of `/api/v1` routes: a strictly verified token of ours, whose agent and
//! organization are still active. The organization of every request comes from here and only here.

use std::net::SocketAddr;

use uuid::Uuid;
use warp::{Filter, Rejection};

use crate::error::ApiError;
use crate::http::with_state;
use crate::state::{Actor, AppState};
use storage::{AgentStatus, OrgStatus};

/// The authenticated caller.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) org_id: Uuid,
    pub(crate) scopes: Vec<String>,
    pub(crate) actor: Actor,
}

impl Caller {
    /// Refuses with 403 unless the token carries `scope`.
    pub(crate) fn require(&self, scope: &str) -> Result<(), ApiError> {
        if self.scopes.iter().any(|s| s == scope) {
            Ok(())
        } else {
            Err(ApiError::missing_scope(scope))
        }
    }
}

pub(crate) fn client_addr(addr: Option<SocketAddr>) -> Option<String> {
    addr.map(|a| a.ip().to_string())
}

/// Extracts the [`Caller`] or rejects with 401 (audited).
pub(crate) fn bearer(
    state: AppState,
) -> impl Filter<Extract = (Caller,), Error = Rejection> + Clone {
    warp::header::optional::<String>("authorization")
        .and(warp::addr::remote())
        .and(with_state(state))
        .and_then(
            |header: Option<String>, addr: Option<SocketAddr>, state: AppState| async move {
                let client = client_addr(addr);
                match authenticate(header.as_deref(), &state) {
                    Ok((agent_id, org_id, scopes)) => Ok(Caller {
                        org_id,
                        scopes,
                        actor: Actor {
                            id: agent_id.to_string(),
                            org: org_id,
                            client,
                        },
                    }),
                    Err((org, reason)) => {
                        let actor = Actor {
                            id: "anonymous".into(),
                            org: org.unwrap_or(state.settings.system_org),
                            client,
                        };
                        state
                            .audit_auth_failure(&actor, "auth.bearer", &reason)
                            .await;
                        Err(Rejection::from(ApiError::unauthorized(&reason)))
                    }
                }
            },
        )
}

type AuthOk = (Uuid, Uuid, Vec<String>);

fn authenticate(header: Option<&str>, state: &AppState) -> Result<AuthOk, (Option<Uuid>, String)> {
    let header = header.ok_or((None, "no Authorization header".to_string()))?;
    let token = match header.split_once(' ') {
        Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim(),
        _ => return Err((None, "Authorization must use the Bearer scheme".to_string())),
    };
    let s = &state.settings;
    let v = crate::token::verify(
        token,
        &state.keys(),
        &s.issuer,
        &s.issuer,
        state.clock.now_secs(),
    )
    .map_err(|e| (None, e.to_string()))?;
    let agent = state
        .store
        .get_agent(&v.agent_id)
        .map_err(|_| (Some(v.org_id), "agent lookup failed".to_string()))?
        .filter(|a| a.org_id == v.org_id)
        .ok_or((
            Some(v.org_id),
            "the token's agent no longer exists".to_string(),
        ))?;
    if agent.status != AgentStatus::Active {
        return Err((
            Some(v.org_id),
            "the token's agent is not active".to_string(),
        ));
    }
    let org = state
        .store
        .get_org(&v.org_id)
        .map_err(|_| (Some(v.org_id), "organization lookup failed".to_string()))?
        .ok_or((
            Some(v.org_id),
            "the token's organization no longer exists".to_string(),
        ))?;
    if org.status != OrgStatus::Active {
        return Err((
            Some(v.org_id),
            "the token's organization is not active".to_string(),
        ));
    }
    Ok((v.agent_id, v.org_id, v.scopes))
}
