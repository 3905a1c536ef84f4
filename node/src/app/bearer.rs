//! Bearer authentication: whether one of our access tokens is active now, what it is good for
//! (its effective scopes), and the [`Caller`] it makes of a request. The organization of every
//! authenticated request comes from here and only here.
//!
//! A token is active when it verifies strictly (`crate::token`: signature by a key in force,
//! issuer, audience, lifetime), is not revoked, its credential (secret methods) or agent key
//! (`private_key_jwt`) is still in force, it was issued in the agent's and organization's
//! current token epochs, and its agent and organization are active.

use std::sync::Arc;

use storage::{Agent, AgentStatus, CredentialStatus};
use uuid::Uuid;

use super::authz::effective;
use super::error::{DomainError, Outcome};
use super::state::{Actor, AppState, Caller};
use super::vocab::{scopes_of, Scope};
use crate::clients::ClientEntry;
use crate::token::Verified;

/// Audit action of a refused bearer token.
const BEARER_ACTION: &str = "auth.bearer";

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

    /// The scopes the token carries (those this build knows).
    pub(crate) fn token_scopes(&self) -> Vec<Scope> {
        scopes_of(&self.claims.scopes)
    }

    /// The token's scopes that its agent still holds.
    pub(crate) fn effective_scopes(&self) -> Vec<Scope> {
        effective(&self.token_scopes(), &self.entry.agent.scopes)
    }

    /// The caller this token makes of a request from `client`.
    pub(crate) fn caller(&self, client: Option<String>) -> Caller {
        Caller {
            agent_id: self.claims.agent_id,
            org_id: self.claims.org_id,
            scopes: self.effective_scopes(),
            token_scopes: self.token_scopes(),
            // A delegated token: the audit names the agent acting (`act.sub`), not the
            // principal it acts for.
            actor: Actor {
                id: self
                    .claims
                    .actor
                    .unwrap_or(self.claims.agent_id)
                    .to_string(),
                org: self.claims.org_id,
                client,
            },
        }
    }
}

/// Why a token is not active: the organization it names (when it verified) and a reason that
/// is safe to return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Inactive {
    pub(crate) org: Option<Uuid>,
    pub(crate) reason: String,
    /// The store could not be reached to check the token: not the caller's fault (503).
    pub(crate) store_unavailable: bool,
}

impl Inactive {
    fn new(org: Option<Uuid>, reason: impl Into<String>) -> Self {
        Inactive {
            org,
            reason: reason.into(),
            store_unavailable: false,
        }
    }
}

/// Whether `token` is active now (see the module docs).
pub(crate) fn check_token(state: &AppState, token: &str) -> Result<ActiveToken, Inactive> {
    let s = &state.settings;
    let now_ms = state.clock.now_ms();
    let v = state
        .verified_tokens
        .verify(token, &state.keys(), &s.issuer, &s.issuer, now_ms)
        .map_err(|e| Inactive::new(None, e.to_string()))?;
    let org = Some(v.org_id);
    let store_err = |e: storage::StoreError| Inactive {
        store_unavailable: matches!(e, storage::StoreError::Unavailable(_)),
        ..Inactive::new(org, "the node could not check the token")
    };
    if state
        .store
        .is_token_revoked(&v.jti, now_ms.div_euclid(1000))
        .map_err(store_err)?
    {
        return Err(Inactive::new(org, "the token was revoked"));
    }
    let entry = state
        .clients
        .get(&v.agent_id)
        .map_err(store_err)?
        .filter(|e| e.agent.org_id == v.org_id)
        .ok_or_else(|| Inactive::new(org, "the token's agent no longer exists"))?;
    if v.chain.is_empty() {
        check_credential(&entry, &v, now_ms).map_err(|r| Inactive::new(org, r))?;
    } else {
        // A delegated token: its credential is its actor's, and every link of its chain must
        // still be in force (an in-memory check, `app::delegation`).
        super::delegation::check_delegated(state, &v, now_ms).map_err(|r| Inactive::new(org, r))?;
    }
    // Suspending an agent or its organization starts a new token epoch: reactivation does not
    // bring back the tokens issued before.
    if v.tep != entry.token_epochs() {
        return Err(Inactive::new(
            org,
            "the token was issued before a suspension",
        ));
    }
    if entry.agent.status != AgentStatus::Active {
        return Err(Inactive::new(org, "the token's agent is not active"));
    }
    if !entry.org_active {
        return Err(Inactive::new(org, "the token's organization is not active"));
    }
    Ok(ActiveToken { claims: v, entry })
}

/// Whether the credential (secret methods) or agent key (`private_key_jwt`) token `v` was
/// obtained with is still in force in `entry` (the agent that authenticated).
pub(crate) fn check_credential(
    entry: &ClientEntry,
    v: &Verified,
    now_ms: i64,
) -> Result<(), &'static str> {
    if let Some(cid) = v.cid {
        let active = entry.credentials.iter().any(|c| {
            c.id == cid
                && c.status == CredentialStatus::Active
                && c.expires_at.is_none_or(|e| e > now_ms)
        });
        if !active {
            return Err("the credential the token was issued for is no longer active");
        }
    }
    if let Some(kid) = &v.akid {
        if !entry.keys.iter().any(|k| &k.kid == kid) {
            return Err("the key the token was obtained with is no longer registered");
        }
    }
    Ok(())
}

/// What a request presented in its `Authorization` header.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Presented<'a> {
    /// A bearer token.
    Bearer(&'a str),
    /// No `Authorization` header.
    Nothing,
    /// An `Authorization` header of another scheme.
    OtherScheme,
}

/// Authenticates an API request from `client` by its bearer token: the caller, or `401`
/// (audited within the failure bound of `app::failures`), or `429` when the address is over
/// its failure budget. The token is checked first: a valid token is never refused by the
/// failure throttle, whatever else comes from its address.
pub(crate) async fn authenticate(
    state: &AppState,
    presented: Presented<'_>,
    client: Option<String>,
) -> Outcome<Caller> {
    let active = authenticate_token(state, presented, client.clone()).await?;
    state
        .usage
        .api_call(
            active.claims.org_id,
            active.claims.agent_id,
            active.entry.org_limits,
            state.clock.now_ms(),
        )
        .inspect_err(|_| {
            state.metrics.tier_rate_limited.inc();
        })?;
    Ok(active.caller(client))
}

/// [`authenticate`], answering the active token itself (for operations that depend on the
/// token, not only on its caller: a delegation grant).
pub(crate) async fn authenticate_token(
    state: &AppState,
    presented: Presented<'_>,
    client: Option<String>,
) -> Outcome<ActiveToken> {
    let checked = match presented {
        Presented::Bearer(token) => check_token(state, token),
        Presented::Nothing => Err(Inactive::new(None, "no Authorization header")),
        Presented::OtherScheme => Err(Inactive::new(
            None,
            "Authorization must use the Bearer scheme",
        )),
    };
    match checked {
        Ok(a) => Ok(a),
        Err(Inactive {
            store_unavailable: true,
            reason,
            ..
        }) => Err(DomainError::from(storage::StoreError::Unavailable(reason))),
        Err(Inactive { org, reason, .. }) => {
            let actor = Actor {
                id: "anonymous".into(),
                org: org.unwrap_or(state.settings.system_org),
                client,
            };
            match state.auth_failure(&actor, BEARER_ACTION, &reason).await {
                Ok(()) => Err(DomainError::unauthenticated(reason)),
                Err(wait) => Err(DomainError::rate_limited(
                    "failed authentications from this address",
                    wait,
                )),
            }
        }
    }
}

/// The calling agent's record (`/agent-info`).
pub(crate) fn caller_agent(state: &AppState, caller: &Caller) -> Outcome<Agent> {
    // The bearer check has just seen the agent active in the caller's organization.
    state
        .store
        .get_agent(&caller.agent_id)?
        .filter(|a| a.org_id == caller.org_id)
        .ok_or_else(DomainError::agent_not_found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::testing;
    use crate::app::token_fixture::Fixture;

    #[tokio::test]
    async fn a_token_is_active_only_while_its_agent_and_credential_are() {
        let dir = tempfile::tempdir().unwrap();
        let state = testing::state(dir.path()).await;
        let f = Fixture::new(&state).await;
        let (token, cid) = f.token_of(&state, f.writer, &[Scope::AgentsRead]).await;

        let active = check_token(&state, &token).unwrap();
        assert_eq!(active.effective_scopes(), vec![Scope::AgentsRead]);
        let caller = active.caller(Some("192.0.2.1".into()));
        assert_eq!((caller.agent_id, caller.org_id), (f.writer, f.org));
        assert_eq!(caller_agent(&state, &caller).unwrap().id, f.writer);

        // Taking the scope from the agent takes it from the token at once.
        f.set_agent(&state, f.writer, |a| {
            a.scopes = vec![Scope::AgentsWrite.to_string()]
        })
        .await;
        assert!(check_token(&state, &token)
            .unwrap()
            .effective_scopes()
            .is_empty());

        // Revoking the credential ends the token.
        f.revoke_credential(&state, cid).await;
        let e = check_token(&state, &token).err().unwrap();
        assert_eq!(e.org, Some(f.org));
        assert!(e.reason.contains("credential"), "{e:?}");

        let e = check_token(&state, "not.a.token").err().unwrap();
        assert_eq!(e.org, None);
    }

    #[tokio::test]
    async fn refused_bearer_tokens_are_unauthenticated_then_throttled() {
        let dir = tempfile::tempdir().unwrap();
        let state = testing::state(dir.path()).await;
        let client = Some("192.0.2.9".to_string());
        let e = authenticate(&state, Presented::Nothing, client.clone())
            .await
            .unwrap_err();
        assert!(matches!(e, DomainError::Unauthenticated { .. }), "{e:?}");
        assert!(e.to_string().contains("no Authorization header"), "{e}");
        // The test state's failure budget is unlimited; a failure is still counted.
        assert_eq!(state.metrics.auth_failures.get(), 1);
        let e = authenticate(&state, Presented::OtherScheme, client)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("Bearer scheme"), "{e}");
    }
}
