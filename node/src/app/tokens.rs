//! Access tokens at the OAuth endpoints: issuance for client_credentials (RFC 6749 §4.4),
//! introspection (RFC 7662) and revocation (RFC 7009), and the claims every access token of
//! this node carries (also those token exchange issues, `app::exchange`).
//!
//! An issued token is answered before its issuance audit record is durable: that record is
//! group-committed within the store's bounded window (README, Durability).

use storage::{Agent, Outcome as AuditOutcome};
use uuid::Uuid;

use super::authz::{check_manage, Acting};
use super::bearer::{check_token, ActiveToken};
use super::client_auth::{authenticate, Client, ClientCredentials};
use super::error::{DomainError, OAuthKind, Outcome};
use super::state::{Actor, AppState};
use super::vocab::{scopes_of, ErrorCode, Scope};
use crate::token::{mint, AccessClaims, LEEWAY_SECS};

/// `lastAuthAt` is refreshed at most this often per agent, to keep the hot path light.
const LAST_AUTH_RESOLUTION_MS: i64 = 1000;
/// Audit action of an issuance (and of its failed client authentications).
const ISSUE_ACTION: &str = "token.issue";
/// Audit action of a revocation (and of its failed client authentications).
pub(crate) const REVOKE_ACTION: &str = "token.revoke";
/// Audit action of failed client authentications at introspection.
pub(crate) const INTROSPECT_ACTION: &str = "token.introspect";

/// An access token just issued.
#[derive(Debug)]
pub(crate) struct Issued {
    pub(crate) access_token: String,
    pub(crate) expires_in: i64,
    /// The granted scopes, space-separated.
    pub(crate) scope: String,
}

/// The scopes a token request gets out of `allowed`: all of them when it names none, else
/// exactly those it names, each of which must be allowed (else `Err` with the first that is
/// not). `requested` is the space-separated `scope` parameter.
pub(crate) fn select_scopes<'a>(
    allowed: &[Scope],
    requested: Option<&'a str>,
) -> Result<Vec<Scope>, &'a str> {
    let names: Vec<&str> = requested
        .unwrap_or("")
        .split(' ')
        .filter(|s| !s.is_empty())
        .collect();
    if names.is_empty() {
        return Ok(allowed.to_vec());
    }
    names
        .into_iter()
        .map(|n| Scope::parse(n).filter(|s| allowed.contains(s)).ok_or(n))
        .collect()
}

/// Scopes as a `scope` claim or parameter: space-separated names.
pub(crate) fn scope_string(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

fn signing_failed(e: impl std::fmt::Display, description: &str) -> DomainError {
    tracing::error!(error = %e, "token signing failed");
    DomainError::oauth(
        OAuthKind::ServerError,
        ErrorCode::InternalServerError,
        description,
    )
}

/// The client_credentials grant: authenticates the client from `client_addr` and issues it an
/// access token with the scopes it asks for (`scope`, space-separated; none: all of its
/// agent's).
pub(crate) async fn client_credentials(
    state: &AppState,
    credentials: &ClientCredentials,
    scope: Option<&str>,
    client_addr: Option<String>,
) -> Outcome<Issued> {
    let client = authenticate(state, credentials, client_addr, ISSUE_ACTION).await?;
    issue(state, &client, scope).await
}

/// Issues `client` an access token (see [`client_credentials`]).
async fn issue(state: &AppState, client: &Client, requested: Option<&str>) -> Outcome<Issued> {
    let agent = client.agent();
    let granted = select_scopes(&scopes_of(&agent.scopes), requested).map_err(|bad| {
        DomainError::oauth(
            OAuthKind::InvalidScope,
            ErrorCode::InvalidScope,
            format!("scope {bad:?} is not allowed for this client"),
        )
    })?;
    let scope = scope_string(&granted);
    let now_ms = state.clock.now_ms();
    let jti = Uuid::new_v4().to_string();
    let claims = access_claims(
        state,
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
    let quota = super::usage::reserve(state, client.entry(), now_ms)?;
    let keys = state.keys();
    let access_token =
        mint(&keys, &claims).map_err(|e| signing_failed(e, "the token could not be signed"))?;
    quota.issued(now_ms);

    // Audit the issuance without holding the response (bounded-window group commit).
    let entry = state.audit_entry(
        &client.actor,
        ISSUE_ACTION,
        agent.id.to_string(),
        AuditOutcome::Success,
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
    let st = state.clone();
    let usage = state.usage.clone();
    state
        .store
        .write_detached(move |tx| {
            crate::app::webhooks::audit(tx, &st, entry)?;
            usage.drain_into(tx);
            if stale {
                if let Some(mut a) = tx.get_agent(&agent_id)? {
                    a.last_auth_at = Some(now_ms);
                    tx.put_agent(&a)?;
                }
            }
            Ok(())
        })
        .await;
    Ok(Issued {
        access_token,
        expires_in: state.settings.token_ttl_secs,
        scope,
    })
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
        delegation_chain: None,
    }
}

/// Signs `claims` with the node's active key (token exchange's answer).
pub(crate) fn sign(state: &AppState, claims: &AccessClaims) -> Outcome<(String, String)> {
    let keys = state.keys();
    let token =
        mint(&keys, claims).map_err(|e| signing_failed(e, "The token could not be signed."))?;
    Ok((token, keys.active.kid.clone()))
}

/// Who is asking, at the introspection and revocation endpoints: a client authenticating
/// itself, or the holder of one of our bearer tokens.
#[derive(Debug, Clone)]
pub(crate) struct ResourceCaller {
    pub(crate) agent_id: Uuid,
    pub(crate) org_id: Uuid,
    /// Effective scopes as authenticated.
    pub(crate) scopes: Vec<Scope>,
    /// The scopes the caller presented (a bearer token's; a client's agent's), which write jobs
    /// intersect with the agent's record as they read it.
    token_scopes: Vec<Scope>,
    pub(crate) actor: Actor,
}

/// What the caller of introspection or revocation presented.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ResourceCredentials<'a> {
    /// One of our access tokens, as a bearer token.
    Bearer(&'a str),
    /// Client credentials.
    Client(&'a ClientCredentials),
}

/// Authenticates the caller of introspection or revocation (`action`) from `client_addr`.
/// Failures are `invalid_client`, charged to the address and audited within the bound of
/// `app::failures`.
pub(crate) async fn resource_caller(
    state: &AppState,
    credentials: ResourceCredentials<'_>,
    client_addr: Option<String>,
    action: &str,
) -> Outcome<ResourceCaller> {
    let client = match credentials {
        ResourceCredentials::Client(c) => authenticate(state, c, client_addr, action).await?,
        ResourceCredentials::Bearer(t) => {
            return match check_token(state, t) {
                Ok(a) => Ok(ResourceCaller {
                    agent_id: a.claims.agent_id,
                    org_id: a.claims.org_id,
                    scopes: a.effective_scopes(),
                    token_scopes: a.token_scopes(),
                    actor: Actor {
                        id: a.claims.agent_id.to_string(),
                        org: a.claims.org_id,
                        client: client_addr,
                    },
                }),
                Err(inactive) => {
                    let actor = Actor {
                        id: "anonymous".into(),
                        org: inactive.org.unwrap_or(state.settings.system_org),
                        client: client_addr,
                    };
                    match state.auth_failure(&actor, action, &inactive.reason).await {
                        Ok(()) => Err(DomainError::invalid_client(
                            format!("the bearer token is not active: {}", inactive.reason),
                            false,
                        )),
                        Err(wait) => Err(DomainError::oauth_throttled(
                            format!("too many failed authentications from this address; retry in {wait} s"),
                            wait,
                        )),
                    }
                }
            };
        }
    };
    let agent = client.agent();
    let scopes = scopes_of(&agent.scopes);
    Ok(ResourceCaller {
        agent_id: agent.id,
        org_id: agent.org_id,
        token_scopes: scopes.clone(),
        scopes,
        actor: client.actor,
    })
}

/// Introspection: the token when it is active and the caller may see it (its own
/// organization's tokens; the instance admin: all); `None` answers `{"active": false}`.
pub(crate) fn introspect(
    state: &AppState,
    caller: &ResourceCaller,
    token: &str,
) -> Option<ActiveToken> {
    check_token(state, token)
        .ok()
        .filter(|a| a.claims.org_id == caller.org_id || caller.scopes.contains(&Scope::AdminOrgs))
}

/// What a revocation request may do with a live token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Revocation {
    /// Revoke it.
    Revoke,
    /// Answer as if the token were invalid (RFC 7009 §2.2), revoking nothing.
    Ignore,
}

/// Who may revoke a live token of agent `target` (of organization `token_org`): the token's own
/// agent; within the organization, a caller holding `agents:write` that may manage the target
/// (every scope of the target held by the caller, `authz::check_manage`); the instance admin.
/// Another organization's token is answered like an invalid one: the answer must not tell a
/// caller whether some other tenant's token is live.
pub(crate) fn revocation_right(
    caller_agent: Uuid,
    caller_org: Uuid,
    caller_scopes: &[Scope],
    token_org: Uuid,
    target: &Agent,
) -> Outcome<Revocation> {
    let admin = caller_scopes.contains(&Scope::AdminOrgs);
    if token_org != caller_org && !admin {
        return Ok(Revocation::Ignore);
    }
    let allowed = target.id == caller_agent
        || (token_org == caller_org
            && caller_scopes.contains(&Scope::AgentsWrite)
            && check_manage(caller_scopes, target).is_ok())
        || admin;
    if !allowed {
        return Err(DomainError::oauth(
            OAuthKind::UnauthorizedClient,
            ErrorCode::AuthorizationError,
            "this token belongs to an agent holding scopes the caller does not hold",
        ));
    }
    Ok(Revocation::Revoke)
}

/// Revokes `token` for `caller` (RFC 7009): unknown, invalid or expired tokens, and other
/// organizations' tokens, revoke nothing and are not an error. The right is checked inside the
/// write that records the revocation, against the caller's and the target's records as it
/// reads them. Returns whether a token was revoked.
pub(crate) async fn revoke(
    state: &AppState,
    caller: &ResourceCaller,
    token: &str,
) -> Outcome<bool> {
    let Ok(a) = check_token(state, token) else {
        // RFC 7009 §2.2: an invalid token is not an error; there is nothing left to revoke.
        return Ok(false);
    };
    let c = a.claims;
    if c.org_id != caller.org_id && !caller.scopes.contains(&Scope::AdminOrgs) {
        return Ok(false);
    }
    let entry = state.audit_entry(
        &Actor {
            org: c.org_id,
            ..caller.actor.clone()
        },
        REVOKE_ACTION,
        c.agent_id.to_string(),
        AuditOutcome::Success,
        serde_json::json!({ "jti": c.jti, "exp": c.exp }),
    );
    let acting = Acting {
        agent_id: caller.agent_id,
        org_id: caller.org_id,
        token_scopes: caller.token_scopes.clone(),
    };
    let (jti, until, target_id, token_org) = (c.jti, c.exp + LEEWAY_SECS, c.agent_id, c.org_id);
    let st = state.clone();
    let revoked = state
        .store
        .write(move |tx| {
            let scopes = acting.scopes_now(tx).map_err(|e| match e {
                DomainError::Unauthenticated { reason } => {
                    DomainError::invalid_client(reason, false)
                }
                other => other,
            })?;
            let Some(target) = tx.get_agent(&target_id)? else {
                return Ok(false);
            };
            match revocation_right(acting.agent_id, acting.org_id, &scopes, token_org, &target)? {
                Revocation::Ignore => Ok(false),
                Revocation::Revoke => {
                    tx.revoke_token(&jti, until);
                    crate::app::webhooks::audit(tx, &st, entry)?;
                    Ok::<_, DomainError>(true)
                }
            }
        })
        .await?;
    if revoked {
        state.metrics.audit_appends.inc();
    }
    Ok(revoked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::testing;
    use crate::app::token_fixture::{agent, Fixture};

    #[test]
    fn scope_selection() {
        let held = [Scope::AgentsRead, Scope::AuditRead];
        assert_eq!(select_scopes(&held, None), Ok(held.to_vec()));
        assert_eq!(select_scopes(&held, Some("  ")), Ok(held.to_vec()));
        assert_eq!(
            select_scopes(&held, Some("audit:read")),
            Ok(vec![Scope::AuditRead])
        );
        assert_eq!(
            select_scopes(&held, Some("audit:read  agents:read")),
            Ok(vec![Scope::AuditRead, Scope::AgentsRead]),
            "in the order asked"
        );
        assert_eq!(
            select_scopes(&held, Some("agents:read agents:write")),
            Err("agents:write")
        );
        assert_eq!(
            select_scopes(&held, Some("agents:delete")),
            Err("agents:delete")
        );
        assert_eq!(select_scopes(&[], Some("agents:read")), Err("agents:read"));
        assert_eq!(scope_string(&held), "agents:read audit:read");
    }

    #[test]
    fn revocation_rights() {
        let (org, other_org) = (Uuid::new_v4(), Uuid::new_v4());
        let writer = [Scope::AgentsRead, Scope::AgentsWrite];
        let reader = agent(org, &[Scope::AgentsRead]);
        let admin = agent(org, &Scope::TENANT);
        let me = Uuid::new_v4();
        let refused = |r: Outcome<Revocation>| {
            let e = r.unwrap_err();
            assert!(matches!(
                e,
                DomainError::OAuth {
                    kind: OAuthKind::UnauthorizedClient,
                    ..
                }
            ));
        };
        // A writer revokes the tokens of agents it may manage, not of stronger ones.
        assert_eq!(
            revocation_right(me, org, &writer, org, &reader).unwrap(),
            Revocation::Revoke
        );
        refused(revocation_right(me, org, &writer, org, &admin));
        // Without agents:write, only its own tokens.
        refused(revocation_right(
            me,
            org,
            &[Scope::AgentsRead],
            org,
            &reader,
        ));
        let mut mine = reader.clone();
        mine.id = me;
        assert_eq!(
            revocation_right(me, org, &[], org, &mine).unwrap(),
            Revocation::Revoke
        );
        // Another organization's token is none of the caller's business, and says so by
        // answering as for an invalid token.
        let theirs = agent(other_org, &[Scope::AgentsRead]);
        assert_eq!(
            revocation_right(me, org, &Scope::TENANT, other_org, &theirs).unwrap(),
            Revocation::Ignore
        );
        // The instance admin revokes anyone's.
        assert_eq!(
            revocation_right(me, org, &[Scope::AdminOrgs], other_org, &theirs).unwrap(),
            Revocation::Revoke
        );
    }

    #[tokio::test]
    async fn issued_tokens_carry_the_scopes_asked_for_within_the_agents() {
        let dir = tempfile::tempdir().unwrap();
        let state = testing::state(dir.path()).await;
        let f = Fixture::new(&state).await;
        let creds = f.client(&state, f.writer).await;
        let all = client_credentials(&state, &creds, None, None)
            .await
            .unwrap();
        assert_eq!(all.scope, "agents:read agents:write");
        assert_eq!(all.expires_in, state.settings.token_ttl_secs);
        let a = check_token(&state, &all.access_token).unwrap();
        assert_eq!(a.claims.agent_id, f.writer);
        let some = client_credentials(&state, &creds, Some("agents:read"), None)
            .await
            .unwrap();
        assert_eq!(some.scope, "agents:read");
        let e = client_credentials(&state, &creds, Some("audit:read"), None)
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                DomainError::OAuth {
                    kind: OAuthKind::InvalidScope,
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "scope \"audit:read\" is not allowed for this client"
        );
    }

    #[tokio::test]
    async fn introspection_and_revocation_stay_within_the_organization() {
        let dir = tempfile::tempdir().unwrap();
        let state = testing::state(dir.path()).await;
        let f = Fixture::new(&state).await;
        let other = Fixture::new(&state).await;
        let (admin_token, _) = f.token_of(&state, f.admin, &Scope::TENANT).await;
        let (target_token, _) = f.token_of(&state, f.target, &[Scope::AgentsRead]).await;
        let (theirs, _) = other
            .token_of(&state, other.target, &[Scope::AgentsRead])
            .await;
        let as_caller = |creds: ClientCredentials| {
            let state = state.clone();
            async move {
                resource_caller(
                    &state,
                    ResourceCredentials::Client(&creds),
                    None,
                    REVOKE_ACTION,
                )
                .await
                .unwrap()
            }
        };
        let writer = as_caller(f.client(&state, f.writer).await).await;
        assert!(introspect(&state, &writer, &admin_token).is_some());
        assert!(
            introspect(&state, &writer, &theirs).is_none(),
            "another tenant's"
        );
        assert!(introspect(&state, &writer, "junk").is_none());

        // Nothing to revoke: 200 and nothing revoked.
        assert!(!revoke(&state, &writer, "junk").await.unwrap());
        assert!(!revoke(&state, &writer, &theirs).await.unwrap());
        assert!(
            check_token(&state, &theirs).is_ok(),
            "another tenant's token lives on"
        );
        // Not a stronger agent's.
        assert!(revoke(&state, &writer, &admin_token).await.is_err());
        assert!(check_token(&state, &admin_token).is_ok());
        // A weaker one's, by its bearer token as well.
        let (writer_token, _) = f
            .token_of(&state, f.writer, &[Scope::AgentsRead, Scope::AgentsWrite])
            .await;
        let by_bearer = resource_caller(
            &state,
            ResourceCredentials::Bearer(&writer_token),
            None,
            REVOKE_ACTION,
        )
        .await
        .unwrap();
        assert!(revoke(&state, &by_bearer, &target_token).await.unwrap());
        assert_eq!(
            check_token(&state, &target_token).err().unwrap().reason,
            "the token was revoked"
        );
        // A bearer token that is not active authenticates nobody.
        let e = resource_caller(
            &state,
            ResourceCredentials::Bearer(&target_token),
            None,
            REVOKE_ACTION,
        )
        .await
        .unwrap_err();
        assert!(matches!(
            e,
            DomainError::OAuth {
                kind: OAuthKind::InvalidClient,
                ..
            }
        ));
        // The writer losing agents:write since it authenticated counts at the write.
        let (reader_token, _) = f.token_of(&state, f.target, &[Scope::AgentsRead]).await;
        f.set_agent(&state, f.writer, |a| a.scopes = vec!["agents:read".into()])
            .await;
        assert!(revoke(&state, &writer, &reader_token).await.is_err());
        assert!(check_token(&state, &reader_token).is_ok());
    }
}
