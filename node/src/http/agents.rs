//! The agent registry (`/api/v1/agents`) and agent credentials (`.../credentials`).
//!
//! Tenant isolation: the organization is the caller's token's, always. An agent (or credential)
//! of another organization is answered exactly like a missing one — same status, same body — so
//! that nothing about other tenants can be learnt, and nothing of theirs is changed.

use serde::Deserialize;
use storage::{
    Agent, AgentFilter, AgentKey, AgentStatus, Credential, CredentialStatus, Outcome, Tx,
};
use uuid::Uuid;
use warp::http::StatusCode;
use warp::{Rejection, Reply};

use crate::app::authz::{check_manage, keep_an_admin};
use crate::app::AppState;
use crate::clock::parse_rfc3339;
use crate::http::error::ApiError;
use crate::http::extract::{created, Params};
use crate::http::keys::{jwk_error, MAX_KEYS_PER_AGENT};
use crate::http::Caller;
use crate::jwk::{generate_p256, validate_public_jwk};
use crate::model::*;
use crate::secrets::{hash_secret, new_secret};

/// Longest rotation grace period: 30 days.
const MAX_GRACE_SECS: u64 = 30 * 24 * 3600;

/// Query of the agent listing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListQuery {
    /// Page number, from 1.
    page: Option<usize>,
    /// Page size, 1 to 100 (default 20).
    limit: Option<usize>,
    owner: Option<String>,
    agent_type: Option<String>,
    /// active, suspended or decommissioned.
    status: Option<String>,
}

pub(crate) fn page_params(
    page: Option<usize>,
    limit: Option<usize>,
) -> Result<(usize, usize), ApiError> {
    let page = page.unwrap_or(1);
    let limit = limit.unwrap_or(20);
    if page == 0 {
        return Err(ApiError::validation("page", "must be at least 1"));
    }
    if !(1..=100).contains(&limit) {
        return Err(ApiError::validation("limit", "must be between 1 and 100"));
    }
    Ok((page, limit))
}

fn parse_status(v: &str) -> Result<AgentStatus, ApiError> {
    match v {
        "active" => Ok(AgentStatus::Active),
        "suspended" => Ok(AgentStatus::Suspended),
        "decommissioned" => Ok(AgentStatus::Decommissioned),
        _ => Err(ApiError::validation(
            "status",
            "must be one of: active, suspended, decommissioned",
        )),
    }
}

/// Validates a registration and builds the agent record (not yet stored).
pub(crate) fn new_agent(
    req: RegisterAgentRequest,
    org: Uuid,
    caller_scopes: &[crate::app::Scope],
    system_org: bool,
    taxonomy: Option<&oasf::Taxonomy>,
    now: i64,
) -> Result<Agent, ApiError> {
    check_email(&req.email)?;
    if let Some(n) = &req.name {
        check_text("name", n)?;
    }
    check_one_of("agentType", &req.agent_type, AGENT_TYPES)?;
    check_version(&req.version)?;
    check_capabilities(&req.capabilities)?;
    check_text("owner", &req.owner)?;
    check_one_of("deploymentEnv", &req.deployment_env, DEPLOYMENT_ENVS)?;
    let mut scopes = req
        .scopes
        .unwrap_or_else(|| vec!["agents:read".to_string()]);
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
    Ok(Agent {
        id: Uuid::new_v4(),
        org_id: org,
        name: req.name.unwrap_or_else(|| req.email.clone()),
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
    })
}

/// The first admin agent of an organization (the instance admin for the node's own): validated
/// like any registration, with the given scopes.
pub(crate) fn admin_agent(
    org: Uuid,
    email: String,
    name: String,
    owner: String,
    scopes: &[&str],
    role: &str,
    now: i64,
) -> Result<Agent, ApiError> {
    let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
    let req = RegisterAgentRequest {
        email,
        name: Some(name),
        agent_type: "custom".into(),
        version: "1.0.0".into(),
        capabilities: vec![],
        owner,
        deployment_env: "production".into(),
        scopes: Some(scopes.clone()),
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
    let system = scopes.iter().any(|s| s == "admin:orgs");
    new_agent(
        req,
        org,
        &crate::app::vocab::scopes_of(&scopes),
        system,
        None,
        now,
    )
}

/// Stores a new agent inside a write job: unique email, organization limit, counter.
pub(crate) fn insert_agent(tx: &mut Tx<'_>, agent: &Agent) -> Result<(), ApiError> {
    if tx.agent_id_by_email(&agent.org_id, &agent.email)?.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "AGENT_ALREADY_EXISTS",
            "An agent with this email is already registered.",
        )
        .with_details(serde_json::json!({ "email": agent.email })));
    }
    let org = tx
        .get_org(&agent.org_id)?
        .ok_or_else(ApiError::org_not_found)?;
    let count = tx.org_agent_count(&agent.org_id)?;
    if count >= org.max_agents {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "AGENT_LIMIT_EXCEEDED",
            format!("The organization's limit of {} agents is reached; decommission agents or raise maxAgents.", org.max_agents),
        ));
    }
    tx.put_agent(agent)?;
    tx.set_org_agent_count(&agent.org_id, count + 1);
    Ok(())
}

/// A new credential record for `agent` and its secret (returned once).
pub(crate) fn new_credential(
    agent: &Agent,
    now: i64,
    expires_at: Option<i64>,
    rotated_from: Option<Uuid>,
) -> Result<(Credential, String), ApiError> {
    let secret = new_secret().map_err(|e| {
        tracing::error!(error = %e, "the OS random generator failed");
        ApiError::internal()
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

/// Outside a write job: the caller's organization's agent, or the not-found error (also for
/// other tenants' agents).
pub(crate) fn read_own_agent(
    state: &AppState,
    caller: &Caller,
    id: &Uuid,
) -> Result<Agent, ApiError> {
    state
        .store
        .get_agent(id)?
        .filter(|a| a.org_id == caller.org_id)
        .ok_or_else(ApiError::agent_not_found)
}

/// Inside a write job: the caller's organization's agent, or the not-found error (also for
/// other tenants' agents).
fn own_agent(tx: &Tx<'_>, id: &Uuid, org: &Uuid) -> Result<Agent, ApiError> {
    tx.get_agent(id)?
        .filter(|a| &a.org_id == org)
        .ok_or_else(ApiError::agent_not_found)
}

fn agent_decommissioned() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "AGENT_DECOMMISSIONED",
        "The agent has been decommissioned; it cannot be changed or given credentials.",
    )
}

/// A registration's answer: the agent, and the private half of the key the node generated when
/// the registration supplied none (shown this once; the node keeps only the public key).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RegisteredAgent {
    #[serde(flatten)]
    agent: AgentView,
    #[serde(skip_serializing_if = "Option::is_none")]
    generated_key: Option<GeneratedKey>,
}

/// A key pair the node generated for an agent.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GeneratedKey {
    /// RFC 7638 thumbprint; the verification method is `<agent DID>#<kid>`.
    kid: String,
    /// `ES256`.
    alg: &'static str,
    /// The private JWK (P-256). Store it now: it is not shown again.
    #[schema(value_type = Object)]
    private_jwk: serde_json::Value,
}

/// Checks the keys a registration supplies: each a valid public JWK, no duplicates, at most
/// [`MAX_KEYS_PER_AGENT`].
fn supplied_keys(keys: &[serde_json::Value]) -> Result<Vec<crate::jwk::PublicKey>, ApiError> {
    if keys.len() > MAX_KEYS_PER_AGENT {
        return Err(ApiError::validation(
            "keys",
            format!("at most {MAX_KEYS_PER_AGENT} keys"),
        ));
    }
    let mut out: Vec<crate::jwk::PublicKey> = Vec::with_capacity(keys.len());
    for (i, k) in keys.iter().enumerate() {
        let k = validate_public_jwk(k).map_err(|e| {
            let e = jwk_error(e);
            let message = format!("keys[{i}]: {}", e.message);
            ApiError { message, ..e }
        })?;
        if out.iter().any(|o| o.kid == k.kid) {
            return Err(ApiError::validation(
                &format!("keys[{i}]"),
                "the same key is given twice",
            ));
        }
        out.push(k);
    }
    Ok(out)
}

/// Register an agent in the caller's organization, with its DID keys: the public JWKs given in
/// `keys`, or else a P-256 key generated here whose private JWK is returned once.
#[utoipa::path(post, path = "/api/v1/agents", tag = "Agents", security(("bearer" = ["agents:write"])),
    request_body = RegisterAgentRequest,
    responses((status = 201, body = RegisteredAgent),
        (status = 400, description = "VALIDATION_ERROR, INVALID_KEY, UNSUPPORTED_KEY, PRIVATE_KEY_MATERIAL", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "AUTHORIZATION_ERROR, SCOPE_ESCALATION, AGENT_LIMIT_EXCEEDED", body = ErrorBody),
        (status = 409, description = "AGENT_ALREADY_EXISTS", body = ErrorBody)))]
pub(crate) async fn register(
    _p: Params,
    caller: Caller,
    mut req: RegisterAgentRequest,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    caller.require(crate::app::Scope::AgentsWrite)?;
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
    let mut generated_key = None;
    if keys.is_empty() {
        let (public, private_jwk) = generate_p256().map_err(|e| {
            tracing::error!(error = %e, "generating an agent key failed");
            ApiError::internal()
        })?;
        generated_key = Some(GeneratedKey {
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
            generated: generated_key.is_some(),
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
            "keys": kids, "keyGenerated": generated_key.is_some(),
        }),
    );
    let acting = caller.acting();
    let agent = state
        .write_audited_api(entry, move |tx| {
            // The caller's scopes as of this write: a demotion that committed first counts.
            let now_scopes = acting.require_now(tx, crate::app::Scope::AgentsWrite)?;
            check_scopes(&agent.scopes, &now_scopes, system)?;
            insert_agent(tx, &agent)?;
            for k in &records {
                tx.put_agent_key(k);
            }
            Ok(agent)
        })
        .await?;
    state.metrics.agents_registered.inc();
    let mut resp = created(&RegisteredAgent {
        agent: AgentView::new(&agent, state.agent_did(&agent.id)),
        generated_key,
    });
    resp.headers_mut().insert(
        warp::http::header::CACHE_CONTROL,
        warp::http::HeaderValue::from_static("no-store"),
    );
    Ok(resp)
}

/// List the caller's organization's agents, newest first.
#[utoipa::path(get, path = "/api/v1/agents", tag = "Agents", security(("bearer" = ["agents:read"])),
    params(ListQuery),
    responses((status = 200, body = AgentPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn list(
    _p: Params,
    caller: Caller,
    q: ListQuery,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    caller.require(crate::app::Scope::AgentsRead)?;
    let (page, limit) = page_params(q.page, q.limit)?;
    let filter = AgentFilter {
        owner: q.owner,
        agent_type: q.agent_type,
        status: q.status.as_deref().map(parse_status).transpose()?,
    };
    let (agents, total) = state
        .store
        .list_agents(&caller.org_id, &filter, page, limit)
        .map_err(ApiError::from)?;
    let data = agents
        .iter()
        .map(|a| AgentView::new(a, state.agent_did(&a.id)))
        .collect();
    Ok(warp::reply::json(&AgentPage {
        data,
        total,
        page,
        limit,
    })
    .into_response())
}

/// Get one agent of the caller's organization.
#[utoipa::path(get, path = "/api/v1/agents/{agentId}", tag = "Agents", security(("bearer" = ["agents:read"])),
    params(("agentId" = Uuid, Path)),
    responses((status = 200, body = AgentView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, description = "AGENT_NOT_FOUND", body = ErrorBody)))]
pub(crate) async fn get(
    p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    caller.require(crate::app::Scope::AgentsRead)?;
    let id = p.id("agentId")?;
    let agent = read_own_agent(&state, &caller, &id)?;
    Ok(warp::reply::json(&AgentView::new(&agent, state.agent_did(&agent.id))).into_response())
}

/// Update an agent (only the fields given). `status: decommissioned` is one-way.
#[utoipa::path(patch, path = "/api/v1/agents/{agentId}", tag = "Agents", security(("bearer" = ["agents:write"])),
    params(("agentId" = Uuid, Path)), request_body = UpdateAgentRequest,
    responses((status = 200, body = AgentView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "AGENT_DECOMMISSIONED, SCOPE_ESCALATION", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn update(
    p: Params,
    caller: Caller,
    req: UpdateAgentRequest,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    caller.require(crate::app::Scope::AgentsWrite)?;
    let id = p.id("agentId")?;
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
    let new_status = req.status.as_deref().map(parse_status).transpose()?;
    if new_status.is_some() {
        changed.push("status");
    }
    let mut scopes = req.scopes.clone();
    if let Some(v) = &mut scopes {
        v.sort();
        v.dedup();
        check_scopes(
            v,
            &caller.scopes,
            caller.org_id == state.settings.system_org,
        )?;
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
        return Err(ApiError::validation("body", "give at least one field to change").into());
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
    let system = org == state.settings.system_org;
    let agent = state
        .write_audited_api(entry, move |tx| {
            let now_scopes = acting.require_now(tx, crate::app::Scope::AgentsWrite)?;
            let mut a = own_agent(tx, &id, &org)?;
            if a.status == AgentStatus::Decommissioned {
                return Err(agent_decommissioned());
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
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        "AGENT_ALREADY_EXISTS",
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
        .await?;
    Ok(warp::reply::json(&AgentView::new(&agent, state.agent_did(&agent.id))).into_response())
}

/// Decommission an agent: one-way; it can get no token afterwards.
#[utoipa::path(delete, path = "/api/v1/agents/{agentId}", tag = "Agents", security(("bearer" = ["agents:write"])),
    params(("agentId" = Uuid, Path)),
    responses((status = 204, description = "Decommissioned"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "AGENT_ALREADY_DECOMMISSIONED", body = ErrorBody)))]
pub(crate) async fn decommission(
    p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    caller.require(crate::app::Scope::AgentsWrite)?;
    let id = p.id("agentId")?;
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
        .write_audited_api(entry, move |tx| {
            let now_scopes = acting.require_now(tx, crate::app::Scope::AgentsWrite)?;
            let mut a = own_agent(tx, &id, &org)?;
            if a.status == AgentStatus::Decommissioned {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "AGENT_ALREADY_DECOMMISSIONED",
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
    Ok(warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response())
}

/// Generate a client secret credential (the secret is shown once).
#[utoipa::path(post, path = "/api/v1/agents/{agentId}/credentials", tag = "Credentials", security(("bearer" = ["agents:write"])),
    params(("agentId" = Uuid, Path)), request_body(content = Option<CreateCredentialRequest>),
    responses((status = 201, body = IssuedCredential), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn create_credential(
    p: Params,
    caller: Caller,
    req: CreateCredentialRequest,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    caller.require(crate::app::Scope::AgentsWrite)?;
    let id = p.id("agentId")?;
    let now = state.clock.now_ms();
    let expires_at = match &req.expires_at {
        None => None,
        Some(s) => match parse_rfc3339(s) {
            Some(t) if t > now => Some(t),
            Some(_) => {
                return Err(ApiError::validation("expiresAt", "must be in the future").into())
            }
            None => {
                return Err(ApiError::validation("expiresAt", "must be an RFC 3339 time").into())
            }
        },
    };
    let org = caller.org_id;
    let actor = caller.actor.clone();
    let acting = caller.acting();
    let st = state.clone();
    let (cred, secret) = state
        .store
        .write(move |tx| {
            let now_scopes = acting.require_now(tx, crate::app::Scope::AgentsWrite)?;
            let a = own_agent(tx, &id, &org)?;
            if a.status == AgentStatus::Decommissioned {
                return Err(agent_decommissioned());
            }
            check_manage(&now_scopes, &a)?;
            let (cred, secret) = new_credential(&a, now, expires_at, None)?;
            tx.put_credential(&cred);
            tx.audit(st.audit_entry(
                &actor,
                "credential.generate",
                id.to_string(),
                Outcome::Success,
                serde_json::json!({ "credentialId": cred.id }),
            ))?;
            Ok::<_, ApiError>((cred, secret))
        })
        .await?;
    state.metrics.audit_appends.inc();
    Ok(created(&IssuedCredential {
        credential: CredentialView::new(&cred, now),
        client_secret: secret,
    }))
}

/// List an agent's credentials (never their secrets).
#[utoipa::path(get, path = "/api/v1/agents/{agentId}/credentials", tag = "Credentials", security(("bearer" = ["agents:read"])),
    params(("agentId" = Uuid, Path)),
    responses((status = 200, body = CredentialList), (status = 404, body = ErrorBody)))]
pub(crate) async fn list_credentials(
    p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    caller.require(crate::app::Scope::AgentsRead)?;
    let id = p.id("agentId")?;
    read_own_agent(&state, &caller, &id)?;
    let now = state.clock.now_ms();
    let data = state
        .store
        .list_credentials(&id)
        .map_err(ApiError::from)?
        .iter()
        .map(|c| CredentialView::new(c, now))
        .collect();
    Ok(warp::reply::json(&CredentialList { data }).into_response())
}

/// Rotate a credential: a new secret now; the old one works for `graceSeconds` more.
#[utoipa::path(post, path = "/api/v1/agents/{agentId}/credentials/{credentialId}/rotate", tag = "Credentials",
    security(("bearer" = ["agents:write"])),
    params(("agentId" = Uuid, Path), ("credentialId" = Uuid, Path)), request_body(content = Option<RotateCredentialRequest>),
    responses((status = 201, body = IssuedCredential), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "CREDENTIAL_REVOKED", body = ErrorBody)))]
pub(crate) async fn rotate_credential(
    p: Params,
    caller: Caller,
    req: RotateCredentialRequest,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    caller.require(crate::app::Scope::AgentsWrite)?;
    let id = p.id("agentId")?;
    let cred_id = p.id("credentialId")?;
    let grace = req.grace_seconds.unwrap_or(0);
    if grace > MAX_GRACE_SECS {
        return Err(ApiError::validation(
            "graceSeconds",
            format!("must be between 0 and {MAX_GRACE_SECS}"),
        )
        .into());
    }
    let now = state.clock.now_ms();
    let org = caller.org_id;
    let actor = caller.actor.clone();
    let acting = caller.acting();
    let st = state.clone();
    let (cred, secret) = state
        .store
        .write(move |tx| {
            let now_scopes = acting.require_now(tx, crate::app::Scope::AgentsWrite)?;
            let a = own_agent(tx, &id, &org)?;
            check_manage(&now_scopes, &a)?;
            let mut old = tx
                .get_credential(&cred_id)?
                .filter(|c| c.agent_id == a.id)
                .ok_or_else(ApiError::credential_not_found)?;
            if a.status == AgentStatus::Decommissioned {
                return Err(agent_decommissioned());
            }
            if old.status == CredentialStatus::Revoked || old.expires_at.is_some_and(|e| e <= now) {
                return Err(ApiError::new(StatusCode::CONFLICT, "CREDENTIAL_REVOKED",
                    "The credential is revoked or expired; generate a new one instead."));
            }
            let (cred, secret) = new_credential(&a, now, None, Some(old.id))?;
            old.replaced_by = Some(cred.id);
            if grace == 0 {
                old.status = CredentialStatus::Revoked;
                old.revoked_at = Some(now);
            } else {
                let until = now + (grace as i64) * 1000;
                old.expires_at = Some(old.expires_at.map_or(until, |e| e.min(until)));
            }
            tx.put_credential(&old);
            tx.put_credential(&cred);
            tx.audit(st.audit_entry(&actor, "credential.rotate", id.to_string(), Outcome::Success,
                serde_json::json!({ "credentialId": cred.id, "rotatedFrom": old.id, "graceSeconds": grace })))?;
            Ok::<_, ApiError>((cred, secret))
        })
        .await?;
    state.metrics.audit_appends.inc();
    Ok(created(&IssuedCredential {
        credential: CredentialView::new(&cred, now),
        client_secret: secret,
    }))
}

/// Revoke a credential at once.
#[utoipa::path(delete, path = "/api/v1/agents/{agentId}/credentials/{credentialId}", tag = "Credentials",
    security(("bearer" = ["agents:write"])), params(("agentId" = Uuid, Path), ("credentialId" = Uuid, Path)),
    responses((status = 204, description = "Revoked"), (status = 404, body = ErrorBody),
        (status = 409, description = "CREDENTIAL_ALREADY_REVOKED", body = ErrorBody)))]
pub(crate) async fn revoke_credential(
    p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    caller.require(crate::app::Scope::AgentsWrite)?;
    let id = p.id("agentId")?;
    let cred_id = p.id("credentialId")?;
    let now = state.clock.now_ms();
    let org = caller.org_id;
    let entry = state.audit_entry(
        &caller.actor,
        "credential.revoke",
        id.to_string(),
        Outcome::Success,
        serde_json::json!({ "credentialId": cred_id }),
    );
    let acting = caller.acting();
    state
        .write_audited_api(entry, move |tx| {
            let now_scopes = acting.require_now(tx, crate::app::Scope::AgentsWrite)?;
            let a = own_agent(tx, &id, &org)?;
            check_manage(&now_scopes, &a)?;
            let mut c = tx
                .get_credential(&cred_id)?
                .filter(|c| c.agent_id == a.id)
                .ok_or_else(ApiError::credential_not_found)?;
            if c.status == CredentialStatus::Revoked {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "CREDENTIAL_ALREADY_REVOKED",
                    "The credential is already revoked.",
                ));
            }
            c.status = CredentialStatus::Revoked;
            c.revoked_at = Some(now);
            tx.put_credential(&c);
            Ok(())
        })
        .await?;
    Ok(warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response())
}
