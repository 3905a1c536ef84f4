//! Agent credentials: client secrets for the client-credentials grant. A secret is generated
//! with the OS random generator, shown once, and stored only as its hash.
//!
//! Rules, each checked by the write that commits the change, against what that write reads:
//! - the caller holds `agents:write` now and may manage the agent ([`super::authz`]);
//! - no new credential (generated or rotated) for a decommissioned agent or an agent of an
//!   organization that is not active ([`super::agents::attachable`]);
//! - a revoked or expired credential cannot be rotated; rotation keeps the old secret working
//!   for at most [`MAX_GRACE_SECS`].

use storage::{Agent, Credential, CredentialStatus, Outcome};
use uuid::Uuid;

use super::agents::{attachable, own_agent, read_own_agent};
use super::authz::check_manage;
use super::error::DomainError;
use super::vocab::{ErrorCode, Scope};
use super::{AppState, Caller};
use crate::clock::parse_rfc3339;
use crate::model::{CreateCredentialRequest, RotateCredentialRequest};
use crate::secrets::{hash_secret, new_secret};

/// Longest rotation grace period: 30 days.
pub(crate) const MAX_GRACE_SECS: u64 = 30 * 24 * 3600;

/// A new credential record for `agent` and its secret (returned once, stored only hashed).
pub(crate) fn new_credential(
    agent: &Agent,
    now: i64,
    expires_at: Option<i64>,
    rotated_from: Option<Uuid>,
) -> Result<(Credential, String), DomainError> {
    let secret = new_secret().map_err(|e| {
        tracing::error!(error = %e, "the OS random generator failed");
        DomainError::Internal
    })?;
    Ok((
        Credential {
            id: Uuid::new_v4(),
            agent_id: agent.id,
            org_id: agent.org_id,
            secret_hash: hash_secret(&secret),
            status: CredentialStatus::Active,
            created_at: now,
            expires_at,
            revoked_at: None,
            rotated_from,
            replaced_by: None,
        },
        secret,
    ))
}

/// A credential just made, with its secret (shown once).
#[derive(Debug)]
pub(crate) struct Issued {
    pub(crate) credential: Credential,
    pub(crate) secret: String,
}

/// Generates a credential for an agent of the caller's organization; `expiresAt`, if given, is
/// an RFC 3339 time in the future.
pub(crate) async fn generate(
    state: &AppState,
    caller: &Caller,
    agent_id: Uuid,
    req: CreateCredentialRequest,
) -> Result<Issued, DomainError> {
    caller.require(Scope::AgentsWrite)?;
    let now = state.clock.now_ms();
    let expires_at = match &req.expires_at {
        None => None,
        Some(s) => match parse_rfc3339(s) {
            Some(t) if t > now => Some(t),
            Some(_) => {
                return Err(DomainError::validation(
                    "expiresAt",
                    "must be in the future",
                ));
            }
            None => {
                return Err(DomainError::validation(
                    "expiresAt",
                    "must be an RFC 3339 time",
                ));
            }
        },
    };
    let org = caller.org_id;
    let actor = caller.actor.clone();
    let acting = caller.acting();
    let st = state.clone();
    // The audit entry names the new credential, so it is made inside the job.
    let issued = state
        .store
        .write(move |tx| {
            let now_scopes = acting.require_now(tx, Scope::AgentsWrite)?;
            let a = own_agent(tx, &agent_id, &org)?;
            attachable(tx, &a)?;
            check_manage(&now_scopes, &a)?;
            let (credential, secret) = new_credential(&a, now, expires_at, None)?;
            tx.put_credential(&credential);
            crate::app::webhooks::audit(
                tx,
                &st,
                st.audit_entry(
                    &actor,
                    "credential.generate",
                    agent_id.to_string(),
                    Outcome::Success,
                    serde_json::json!({ "credentialId": credential.id }),
                ),
            )?;
            Ok::<_, DomainError>(Issued { credential, secret })
        })
        .await?;
    state.metrics.audit_appends.inc();
    state.usage.count(
        caller.org_id,
        Some(agent_id),
        state.clock.now_ms(),
        storage::Usage {
            credentials: 1,
            ..Default::default()
        },
    );
    Ok(issued)
}

/// The credentials of an agent of the caller's organization (never their secrets).
pub(crate) fn list(
    state: &AppState,
    caller: &Caller,
    agent_id: Uuid,
) -> Result<Vec<Credential>, DomainError> {
    caller.require(Scope::AgentsRead)?;
    read_own_agent(state, caller, &agent_id)?;
    Ok(state.store.list_credentials(&agent_id)?)
}

/// Rotates a credential: a new secret now; the old one works for `graceSeconds` more (0, the
/// default: revoked at once).
pub(crate) async fn rotate(
    state: &AppState,
    caller: &Caller,
    agent_id: Uuid,
    credential_id: Uuid,
    req: RotateCredentialRequest,
) -> Result<Issued, DomainError> {
    caller.require(Scope::AgentsWrite)?;
    let grace = req.grace_seconds.unwrap_or(0);
    if grace > MAX_GRACE_SECS {
        return Err(DomainError::validation(
            "graceSeconds",
            format!("must be between 0 and {MAX_GRACE_SECS}"),
        ));
    }
    let now = state.clock.now_ms();
    let org = caller.org_id;
    let actor = caller.actor.clone();
    let acting = caller.acting();
    let st = state.clone();
    let issued =
        state
            .store
            .write(move |tx| {
                let now_scopes = acting.require_now(tx, Scope::AgentsWrite)?;
                let a = own_agent(tx, &agent_id, &org)?;
                check_manage(&now_scopes, &a)?;
                let mut old = tx
                    .get_credential(&credential_id)?
                    .filter(|c| c.agent_id == a.id)
                    .ok_or_else(DomainError::credential_not_found)?;
                attachable(tx, &a)?;
                if old.status == CredentialStatus::Revoked
                    || old.expires_at.is_some_and(|e| e <= now)
                {
                    return Err(DomainError::conflict(
                        ErrorCode::CredentialRevoked,
                        "The credential is revoked or expired; generate a new one instead.",
                    ));
                }
                let (credential, secret) = new_credential(&a, now, None, Some(old.id))?;
                old.replaced_by = Some(credential.id);
                if grace == 0 {
                    old.status = CredentialStatus::Revoked;
                    old.revoked_at = Some(now);
                } else {
                    let until = now + (grace as i64) * 1000;
                    old.expires_at = Some(old.expires_at.map_or(until, |e| e.min(until)));
                }
                tx.put_credential(&old);
                tx.put_credential(&credential);
                crate::app::webhooks::audit(tx, &st, st.audit_entry(
                &actor,
                "credential.rotate",
                agent_id.to_string(),
                Outcome::Success,
                serde_json::json!({
                    "credentialId": credential.id, "rotatedFrom": old.id, "graceSeconds": grace,
                }),
            ))?;
                Ok::<_, DomainError>(Issued { credential, secret })
            })
            .await?;
    state.metrics.audit_appends.inc();
    Ok(issued)
}

/// Revokes a credential at once.
pub(crate) async fn revoke(
    state: &AppState,
    caller: &Caller,
    agent_id: Uuid,
    credential_id: Uuid,
) -> Result<(), DomainError> {
    caller.require(Scope::AgentsWrite)?;
    let now = state.clock.now_ms();
    let org = caller.org_id;
    let entry = state.audit_entry(
        &caller.actor,
        "credential.revoke",
        agent_id.to_string(),
        Outcome::Success,
        serde_json::json!({ "credentialId": credential_id }),
    );
    let acting = caller.acting();
    state
        .write_audited(entry, move |tx| {
            let now_scopes = acting.require_now(tx, Scope::AgentsWrite)?;
            let a = own_agent(tx, &agent_id, &org)?;
            check_manage(&now_scopes, &a)?;
            let mut c = tx
                .get_credential(&credential_id)?
                .filter(|c| c.agent_id == a.id)
                .ok_or_else(DomainError::credential_not_found)?;
            if c.status == CredentialStatus::Revoked {
                return Err(DomainError::conflict(
                    ErrorCode::CredentialAlreadyRevoked,
                    "The credential is already revoked.",
                ));
            }
            c.status = CredentialStatus::Revoked;
            c.revoked_at = Some(now);
            tx.put_credential(&c);
            Ok(())
        })
        .await
}
