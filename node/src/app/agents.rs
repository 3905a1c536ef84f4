//! The agent registry: registration (with supplied or generated keys), listing, reading,
//! updating (scopes, status) and decommissioning the agents of the caller's organization.
//!
//! Tenant isolation: the organization is always the caller's. Another organization's agent is
//! refused exactly like a missing one, so nothing about other tenants can be learnt or changed.
//!
//! Rules, each checked by the write that commits the change, against what that write reads:
//! - an organization holds at most `maxAgents` agents that are not decommissioned (a counter
//!   kept by the same writes that add or decommission agents);
//! - emails are unique within an organization;
//! - the caller holds `agents:write` now, may manage the agent, and grants only scopes it holds
//!   ([`super::authz`]);
//! - decommissioning is one-way, and an organization keeps at least one admin.

use storage::{Agent, AgentFilter, AgentKey, AgentStatus, OrgStatus, Outcome, Tx};
use uuid::Uuid;

use super::agent_keys::{jwk_error, MAX_KEYS_PER_AGENT};
use super::authz::{check_manage, keep_an_admin};
use super::error::DomainError;
use super::validate::{
    check_capabilities, check_card, check_email, check_metadata, check_one_of, check_scopes,
    check_text, check_version, page_params, parse_agent_status, CardFields, AGENT_TYPES,
    DEPLOYMENT_ENVS,
};
use super::vocab::{names_of, ErrorCode, Scope};
use super::{AppState, Caller};
use crate::jwk::{generate_p256, validate_public_jwk, PublicKey};
use crate::model::{
    AgentListQuery, LocatorView, RegisterAgentRequest, SkillView, UpdateAgentRequest,
};

/// What a registration made: the agent, and the key pair the node generated when the
/// registration supplied no key (its private half is shown this once and kept nowhere).
#[derive(Debug)]
pub(crate) struct Registered {
    pub(crate) agent: Agent,
    pub(crate) generated: Option<GeneratedPair>,
}

/// A P-256 key pair generated for an agent.
#[derive(Debug)]
pub(crate) struct GeneratedPair {
    /// RFC 7638 thumbprint.
    pub(crate) kid: String,
    pub(crate) alg: &'static str,
    /// The private JWK.
    pub(crate) private_jwk: serde_json::Value,
}

pub(crate) fn skills_of(v: &[SkillView]) -> Vec<storage::Skill> {
    v.iter()
        .map(|s| storage::Skill {
            id: s.id,
            name: s.name.clone(),
        })
        .collect()
}

pub(crate) fn locators_of(v: &[LocatorView]) -> Vec<storage::Locator> {
    v.iter()
        .map(|l| storage::Locator {
            kind: l.kind.clone(),
            urls: l.urls.clone(),
        })
        .collect()
}

/// Validates a registration and builds the agent record (not yet stored). Scopes default to
/// `agents:read` and must be ones `caller_scopes` holds and the organization grants.
pub(crate) fn new_agent(
    req: RegisterAgentRequest,
    org: Uuid,
    caller_scopes: &[Scope],
    system_org: bool,
    taxonomy: Option<&oasf::Taxonomy>,
    now: i64,
) -> Result<Agent, DomainError> {
    check_email(&req.email)?;
    if let Some(n) = &req.name {
        check_text("name", n)?;
    }
    check_one_of("agentType", &req.agent_type, AGENT_TYPES)?;
    check_version(&req.version)?;
    check_capabilities(&req.capabilities)?;
    check_text("owner", &req.owner)?;
    check_one_of("deploymentEnv", &req.deployment_env, DEPLOYMENT_ENVS)?;
    let mut scopes = req.scopes.unwrap_or_else(|| names_of(&[Scope::AgentsRead]));
    scopes.sort();
    scopes.dedup();
    check_scopes(&scopes, caller_scopes, system_org)?;
    let metadata = req.metadata.unwrap_or_else(|| serde_json::json!({}));
    check_metadata(&metadata)?;
    check_card(
        &CardFields {
            description: req.description.as_deref(),
            skills: &req.skills,
            domains: &req.domains,
            locators: &req.locators,
            endpoints: &req.endpoints,
        },
        taxonomy,
    )?;
    let id = Uuid::new_v4();
    Ok(Agent {
        id,
        org_id: org,
        // Never the email: the name is published (card, OASF record, badge).
        name: req
            .name
            .unwrap_or_else(|| super::artifacts::default_public_name(&id)),
        email: req.email,
        agent_type: req.agent_type,
        version: req.version,
        capabilities: req.capabilities,
        owner: req.owner,
        deployment_env: req.deployment_env,
        status: AgentStatus::Active,
        scopes,
        metadata,
        public: req.public,
        description: req.description,
        skills: skills_of(&req.skills),
        endpoints: req.endpoints,
        domains: skills_of(&req.domains),
        locators: locators_of(&req.locators),
        created_at: now,
        updated_at: now,
        last_auth_at: None,
        token_epoch: 0,
        published_at: req.public.then_some(now),
    })
}

/// The first admin agent of an organization (the instance admin for the node's own): validated
/// like any registration, with exactly `scopes`. `role` is recorded in its metadata.
pub(crate) fn admin_agent(
    org: Uuid,
    email: String,
    name: String,
    owner: String,
    scopes: &[Scope],
    role: &str,
    now: i64,
) -> Result<Agent, DomainError> {
    let req = RegisterAgentRequest {
        email,
        name: Some(name),
        agent_type: "custom".into(),
        version: "1.0.0".into(),
        capabilities: vec![],
        owner,
        deployment_env: "production".into(),
        scopes: Some(names_of(scopes)),
        metadata: Some(serde_json::json!({ "role": role })),
        public: false,
        description: None,
        skills: vec![],
        endpoints: vec![],
        domains: vec![],
        locators: vec![],
        keys: vec![],
        organization_id: None,
    };
    // The creator holds exactly these scopes; admin:orgs is grantable only in the node's org.
    let system = scopes.contains(&Scope::AdminOrgs);
    new_agent(req, org, scopes, system, None, now)
}

/// Inside a write job: stores a new agent, refusing a second agent with its email in its
/// organization and an organization at its `maxAgents`; counts it in the organization's agent
/// counter in the same write.
pub(crate) fn insert_agent(tx: &mut Tx<'_>, agent: &Agent) -> Result<(), DomainError> {
    if tx.agent_id_by_email(&agent.org_id, &agent.email)?.is_some() {
        return Err(DomainError::conflict(
            ErrorCode::AgentAlreadyExists,
            "An agent with this email is already registered.",
        )
        .with_details(serde_json::json!({ "email": agent.email })));
    }
    let org = tx
        .get_org(&agent.org_id)?
        .ok_or_else(DomainError::org_not_found)?;
    let count = tx.org_agent_count(&agent.org_id)?;
    if count >= org.max_agents {
        return Err(DomainError::forbidden(
            ErrorCode::AgentLimitExceeded,
            format!(
                "The organization's limit of {} agents is reached; decommission agents or raise maxAgents.",
                org.max_agents
            ),
        ));
    }
    tx.put_agent(agent)?;
    tx.set_org_agent_count(&agent.org_id, count + 1);
    Ok(())
}

/// Inside a write job: refuses to attach anything new (a key, a credential, a trust policy)
/// to a decommissioned agent or to an agent of an organization that is not active.
pub(crate) fn attachable(tx: &Tx<'_>, agent: &Agent) -> Result<(), DomainError> {
    if agent.status == AgentStatus::Decommissioned {
        return Err(DomainError::agent_decommissioned());
    }
    let org_active = tx
        .get_org(&agent.org_id)?
        .is_some_and(|o| o.status == OrgStatus::Active);
    if !org_active {
        return Err(DomainError::org_not_active());
    }
    Ok(())
}

/// Outside a write job: the caller's organization's agent, or the not-found error (also for
/// other tenants' agents).
pub(crate) fn read_own_agent(
    state: &AppState,
    caller: &Caller,
    id: &Uuid,
) -> Result<Agent, DomainError> {
    state
        .store
        .get_agent(id)?
        .filter(|a| a.org_id == caller.org_id)
        .ok_or_else(DomainError::agent_not_found)
}

/// Inside a write job: organization `org`'s agent, or the not-found error (also for other
/// tenants' agents).
pub(crate) fn own_agent(tx: &Tx<'_>, id: &Uuid, org: &Uuid) -> Result<Agent, DomainError> {
    tx.get_agent(id)?
        .filter(|a| &a.org_id == org)
        .ok_or_else(DomainError::agent_not_found)
}

/// Checks the keys a registration supplies: each a valid public JWK, no duplicates, at most
/// [`MAX_KEYS_PER_AGENT`].
fn supplied_keys(keys: &[serde_json::Value]) -> Result<Vec<PublicKey>, DomainError> {
    if keys.len() > MAX_KEYS_PER_AGENT {
        return Err(DomainError::validation(
            "keys",
            format!("at most {MAX_KEYS_PER_AGENT} keys"),
        ));
    }
    let mut out: Vec<PublicKey> = Vec::with_capacity(keys.len());
    for (i, k) in keys.iter().enumerate() {
        let field = format!("keys[{i}]");
        let k = validate_public_jwk(k).map_err(|e| jwk_error(Some(&field), e))?;
        if out.iter().any(|o| o.kid == k.kid) {
            return Err(DomainError::validation(
                &field,
                "the same key is given twice",
            ));
        }
        out.push(k);
    }
    Ok(out)
}

/// Registers an agent in the caller's organization, with its DID keys: the public JWKs given
/// in `keys`, or else a P-256 key generated here whose private JWK is returned once.
pub(crate) async fn register(
    state: &AppState,
    caller: &Caller,
    mut req: RegisterAgentRequest,
) -> Result<Registered, DomainError> {
    caller.require(Scope::AgentsWrite)?;
    let system = caller.org_id == state.settings.system_org;
    let mut keys = supplied_keys(&std::mem::take(&mut req.keys))?;
    let now = state.clock.now_ms();
    let agent = new_agent(
        req,
        caller.org_id,
        &caller.scopes,
        system,
        state.taxonomy.as_deref(),
        now,
    )?;
    let mut generated = None;
    if keys.is_empty() {
        let (public, private_jwk) = generate_p256().map_err(|e| {
            tracing::error!(error = %e, "generating an agent key failed");
            DomainError::Internal
        })?;
        generated = Some(GeneratedPair {
            kid: public.kid.clone(),
            alg: public.alg,
            private_jwk,
        });
        keys.push(public);
    }
    let records: Vec<AgentKey> = keys
        .into_iter()
        .map(|k| AgentKey {
            kid: k.kid,
            agent_id: agent.id,
            org_id: agent.org_id,
            alg: k.alg.to_string(),
            jwk: k.jwk,
            created_at: now,
            generated: generated.is_some(),
        })
        .collect();
    let kids: Vec<&str> = records.iter().map(|k| k.kid.as_str()).collect();
    let entry = state.audit_entry(
        &caller.actor,
        "agent.register",
        agent.id.to_string(),
        Outcome::Success,
        serde_json::json!({
            "email": agent.email, "agentType": agent.agent_type, "scopes": agent.scopes,
            "keys": kids, "keyGenerated": generated.is_some(),
        }),
    );
    let acting = caller.acting();
    let agent = state
        .write_audited(entry, move |tx| {
            // The caller's scopes as of this write: a demotion that committed first counts.
            let now_scopes = acting.require_now(tx, Scope::AgentsWrite)?;
            check_scopes(&agent.scopes, &now_scopes, system)?;
            insert_agent(tx, &agent)?;
            for k in &records {
                tx.put_agent_key(k);
            }
            Ok(agent)
        })
        .await?;
    state.metrics.agents_registered.inc();
    state.usage.count(
        agent.org_id,
        Some(agent.id),
        state.clock.now_ms(),
        storage::Usage {
            agents: 1,
            ..Default::default()
        },
    );
    state.directory.agent_changed(agent.id);
    Ok(Registered { agent, generated })
}

/// One page of a listing.
#[derive(Debug)]
pub(crate) struct Page<T> {
    pub(crate) items: Vec<T>,
    /// How many match in all.
    pub(crate) total: usize,
    /// The page number, from 1.
    pub(crate) page: usize,
    /// The page size.
    pub(crate) limit: usize,
}

/// A page of the caller's organization's agents, newest first.
pub(crate) fn list(
    state: &AppState,
    caller: &Caller,
    q: AgentListQuery,
) -> Result<Page<Agent>, DomainError> {
    caller.require(Scope::AgentsRead)?;
    let (page, limit) = page_params(q.page, q.limit)?;
    if let Some(t) = &q.agent_type {
        check_one_of("agentType", t, AGENT_TYPES)?;
    }
    let filter = AgentFilter {
        owner: q.owner,
        agent_type: q.agent_type,
        status: q.status.as_deref().map(parse_agent_status).transpose()?,
    };
    let (items, total) = state
        .store
        .list_agents(&caller.org_id, &filter, page, limit)?;
    Ok(Page {
        items,
        total,
        page,
        limit,
    })
}

/// One agent of the caller's organization.
pub(crate) fn get(state: &AppState, caller: &Caller, id: Uuid) -> Result<Agent, DomainError> {
    caller.require(Scope::AgentsRead)?;
    read_own_agent(state, caller, &id)
}

/// Changes the fields `req` gives. A new status other than active starts a new token epoch
/// (tokens issued until then stay dead after a reactivation); `decommissioned` is one-way and
/// frees a place of the organization's `maxAgents`.
pub(crate) async fn update(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    req: UpdateAgentRequest,
) -> Result<Agent, DomainError> {
    caller.require(Scope::AgentsWrite)?;
    let mut changed: Vec<&'static str> = Vec::new();
    // Validate everything before touching the store.
    if let Some(v) = &req.email {
        check_email(v)?;
        changed.push("email");
    }
    if let Some(v) = &req.name {
        check_text("name", v)?;
        changed.push("name");
    }
    if let Some(v) = &req.agent_type {
        check_one_of("agentType", v, AGENT_TYPES)?;
        changed.push("agentType");
    }
    if let Some(v) = &req.version {
        check_version(v)?;
        changed.push("version");
    }
    if let Some(v) = &req.capabilities {
        check_capabilities(v)?;
        changed.push("capabilities");
    }
    if let Some(v) = &req.owner {
        check_text("owner", v)?;
        changed.push("owner");
    }
    if let Some(v) = &req.deployment_env {
        check_one_of("deploymentEnv", v, DEPLOYMENT_ENVS)?;
        changed.push("deploymentEnv");
    }
    let new_status = req.status.as_deref().map(parse_agent_status).transpose()?;
    if new_status.is_some() {
        changed.push("status");
    }
    let system = caller.org_id == state.settings.system_org;
    let mut scopes = req.scopes.clone();
    if let Some(v) = &mut scopes {
        v.sort();
        v.dedup();
        check_scopes(v, &caller.scopes, system)?;
        changed.push("scopes");
    }
    if let Some(v) = &req.metadata {
        check_metadata(v)?;
        changed.push("metadata");
    }
    if req.public.is_some() {
        changed.push("public");
    }
    check_card(
        &CardFields {
            description: req.description.as_deref(),
            skills: req.skills.as_deref().unwrap_or(&[]),
            domains: req.domains.as_deref().unwrap_or(&[]),
            locators: req.locators.as_deref().unwrap_or(&[]),
            endpoints: req.endpoints.as_deref().unwrap_or(&[]),
        },
        state.taxonomy.as_deref(),
    )?;
    for (present, name) in [
        (req.description.is_some(), "description"),
        (req.skills.is_some(), "skills"),
        (req.endpoints.is_some(), "endpoints"),
        (req.domains.is_some(), "domains"),
        (req.locators.is_some(), "locators"),
    ] {
        if present {
            changed.push(name);
        }
    }
    if changed.is_empty() {
        return Err(DomainError::validation(
            "body",
            "give at least one field to change",
        ));
    }
    let now = state.clock.now_ms();
    let org = caller.org_id;
    let entry = state.audit_entry(
        &caller.actor,
        "agent.update",
        id.to_string(),
        Outcome::Success,
        serde_json::json!({ "fields": changed }),
    );
    let acting = caller.acting();
    state
        .write_audited(entry, move |tx| {
            let now_scopes = acting.require_now(tx, Scope::AgentsWrite)?;
            let mut a = own_agent(tx, &id, &org)?;
            if a.status == AgentStatus::Decommissioned {
                return Err(DomainError::agent_decommissioned());
            }
            check_manage(&now_scopes, &a)?;
            if let Some(v) = &scopes {
                check_scopes(v, &now_scopes, system)?;
            }
            let before = a.clone();
            if let Some(v) = req.email {
                if tx
                    .agent_id_by_email(&org, &v)?
                    .is_some_and(|other| other != a.id)
                {
                    return Err(DomainError::conflict(
                        ErrorCode::AgentAlreadyExists,
                        "An agent with this email is already registered in this organization.",
                    ));
                }
                a.email = v;
            }
            if let Some(v) = req.name {
                a.name = v;
            }
            if let Some(v) = req.agent_type {
                a.agent_type = v;
            }
            if let Some(v) = req.version {
                a.version = v;
            }
            if let Some(v) = req.capabilities {
                a.capabilities = v;
            }
            if let Some(v) = req.owner {
                a.owner = v;
            }
            if let Some(v) = req.deployment_env {
                a.deployment_env = v;
            }
            if let Some(v) = scopes {
                a.scopes = v;
            }
            if let Some(v) = req.metadata {
                a.metadata = v;
            }
            if let Some(v) = req.public {
                // The directory's publishedAt: set when the agent becomes public, kept while it
                // stays public, cleared when it is unpublished.
                if v && !a.public {
                    a.published_at = Some(now);
                } else if !v {
                    a.published_at = None;
                }
                a.public = v;
            }
            if let Some(v) = req.description {
                a.description = Some(v);
            }
            if let Some(v) = req.skills {
                a.skills = skills_of(&v);
            }
            if let Some(v) = req.endpoints {
                a.endpoints = v;
            }
            if let Some(v) = req.domains {
                a.domains = skills_of(&v);
            }
            if let Some(v) = req.locators {
                a.locators = locators_of(&v);
            }
            if let Some(s) = new_status {
                if s == AgentStatus::Decommissioned {
                    let n = tx.org_agent_count(&org)?;
                    tx.set_org_agent_count(&org, n.saturating_sub(1));
                }
                if s != AgentStatus::Active && before.status == AgentStatus::Active {
                    // A new token epoch: tokens issued until now stay dead after a reactivation.
                    a.token_epoch = a.token_epoch.wrapping_add(1);
                }
                a.status = s;
            }
            keep_an_admin(tx, &before, &a, system)?;
            a.updated_at = now;
            tx.put_agent(&a)?;
            Ok(a)
        })
        .await
        .inspect(|a| state.directory.agent_changed(a.id))
}

/// Decommissions an agent of the caller's organization: one-way; it gets no token afterwards,
/// and its place under `maxAgents` is freed.
pub(crate) async fn decommission(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
) -> Result<(), DomainError> {
    caller.require(Scope::AgentsWrite)?;
    let now = state.clock.now_ms();
    let org = caller.org_id;
    let entry = state.audit_entry(
        &caller.actor,
        "agent.decommission",
        id.to_string(),
        Outcome::Success,
        serde_json::json!({}),
    );
    let acting = caller.acting();
    let system = org == state.settings.system_org;
    state
        .write_audited(entry, move |tx| {
            let now_scopes = acting.require_now(tx, Scope::AgentsWrite)?;
            let mut a = own_agent(tx, &id, &org)?;
            if a.status == AgentStatus::Decommissioned {
                return Err(DomainError::conflict(
                    ErrorCode::AgentAlreadyDecommissioned,
                    "The agent is already decommissioned.",
                ));
            }
            check_manage(&now_scopes, &a)?;
            let before = a.clone();
            a.status = AgentStatus::Decommissioned;
            a.token_epoch = a.token_epoch.wrapping_add(1);
            keep_an_admin(tx, &before, &a, system)?;
            a.updated_at = now;
            tx.put_agent(&a)?;
            let n = tx.org_agent_count(&org)?;
            tx.set_org_agent_count(&org, n.saturating_sub(1));
            Ok(())
        })
        .await?;
    state.directory.agent_changed(id);
    Ok(())
}
