//! The public keys agents register: used to verify their `private_key_jwt` client assertions
//! and published as the verification methods of their DID documents.
//!
//! Rules, each checked by the write that adds the key, against what that write reads:
//! - the caller holds `agents:write` now and may manage the agent ([`super::authz`]);
//! - the agent is not decommissioned and its organization is active ([`super::agents::attachable`]);
//! - an agent holds at most [`MAX_KEYS_PER_AGENT`] keys, each once.

use storage::{AgentKey, Outcome};
use uuid::Uuid;

use super::agents::{attachable, own_agent, read_own_agent};
use super::authz::check_manage;
use super::error::DomainError;
use super::vocab::{ErrorCode, Scope};
use super::{AppState, Caller};
use crate::jwk::{validate_public_jwk, JwkError};

/// Most public keys one agent may register.
pub(crate) const MAX_KEYS_PER_AGENT: usize = 10;

/// The error code of a refused JWK.
fn jwk_code(e: &JwkError) -> ErrorCode {
    match e {
        JwkError::Private(_) => ErrorCode::PrivateKeyMaterial,
        JwkError::Unsupported(_) => ErrorCode::UnsupportedKey,
        // NotObject, Invalid, and whatever else the JOSE core may refuse a key for.
        _ => ErrorCode::InvalidKey,
    }
}

/// A refused JWK, as the caller sees it (`field` prefixes the message, e.g. `keys[1]`).
pub(crate) fn jwk_error(field: Option<&str>, e: JwkError) -> DomainError {
    let message = match field {
        Some(f) => format!("{f}: {e}"),
        None => e.to_string(),
    };
    DomainError::invalid(jwk_code(&e), message)
}

fn key_not_found() -> DomainError {
    DomainError::not_found(
        ErrorCode::KeyNotFound,
        "No key with this kid is registered for the agent.",
    )
}

/// Registers a public key (a JWK: EC P-256, OKP Ed25519 or RSA ≥ 2048 bits) for an agent of
/// the caller's organization.
pub(crate) async fn add(
    state: &AppState,
    caller: &Caller,
    agent_id: Uuid,
    jwk: &serde_json::Value,
) -> Result<AgentKey, DomainError> {
    caller.require(Scope::AgentsWrite)?;
    let k = validate_public_jwk(jwk).map_err(|e| jwk_error(None, e))?;
    let record = AgentKey {
        kid: k.kid,
        agent_id,
        org_id: caller.org_id,
        alg: k.alg.to_string(),
        jwk: k.jwk,
        created_at: state.clock.now_ms(),
        generated: false,
    };
    let entry = state.audit_entry(
        &caller.actor,
        "agent.key.add",
        agent_id.to_string(),
        Outcome::Success,
        serde_json::json!({ "kid": record.kid, "alg": record.alg }),
    );
    let acting = caller.acting();
    let org = caller.org_id;
    // Status, permission and limit are checked by the write that adds the key, against what it
    // reads: a key add racing a decommission or another add cannot slip past either.
    state
        .write_audited(entry, move |tx| {
            let now_scopes = acting.require_now(tx, Scope::AgentsWrite)?;
            let agent = own_agent(tx, &agent_id, &org)?;
            attachable(tx, &agent)?;
            check_manage(&now_scopes, &agent)?;
            if tx.get_agent_key(&agent_id, &record.kid)?.is_some() {
                return Err(DomainError::conflict(
                    ErrorCode::KeyAlreadyRegistered,
                    "This key is already registered for the agent.",
                )
                .with_details(serde_json::json!({ "kid": record.kid })));
            }
            if tx.list_agent_keys(&agent_id)?.len() >= MAX_KEYS_PER_AGENT {
                return Err(DomainError::conflict(
                    ErrorCode::KeyLimitExceeded,
                    format!(
                        "An agent may register at most {MAX_KEYS_PER_AGENT} keys; remove one first."
                    ),
                ));
            }
            tx.put_agent_key(&record);
            Ok(record)
        })
        .await
}

/// The public keys of an agent of the caller's organization, in `kid` order.
pub(crate) fn list(
    state: &AppState,
    caller: &Caller,
    agent_id: Uuid,
) -> Result<Vec<AgentKey>, DomainError> {
    caller.require(Scope::AgentsRead)?;
    read_own_agent(state, caller, &agent_id)?;
    Ok(state.store.list_agent_keys(&agent_id)?)
}

/// Removes an agent's public key; assertions signed with it are refused from then on.
pub(crate) async fn remove(
    state: &AppState,
    caller: &Caller,
    agent_id: Uuid,
    kid: &str,
) -> Result<(), DomainError> {
    caller.require(Scope::AgentsWrite)?;
    let org = caller.org_id;
    let kid = kid.to_string();
    let entry = state.audit_entry(
        &caller.actor,
        "agent.key.remove",
        agent_id.to_string(),
        Outcome::Success,
        serde_json::json!({ "kid": kid }),
    );
    let acting = caller.acting();
    state
        .write_audited(entry, move |tx| {
            let now_scopes = acting.require_now(tx, Scope::AgentsWrite)?;
            let agent = own_agent(tx, &agent_id, &org)?;
            check_manage(&now_scopes, &agent)?;
            tx.get_agent_key(&agent_id, &kid)?
                .ok_or_else(key_not_found)?;
            tx.delete_agent_key(&agent_id, &kid);
            Ok(())
        })
        .await
}
