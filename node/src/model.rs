//! Wire types of the REST API (camelCase, as the predecessor's API) and their validation.
//!
//! Request bodies deny unknown fields, so a typo is a 400 naming the field instead of a silently
//! ignored setting. Parse, don't validate: handlers get values that already passed these checks.

use serde::{Deserialize, Serialize};
use storage::{Agent, Credential, CredentialStatus, Locator, Organization, Skill};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::clock::rfc3339;
use crate::http::error::ApiError;

/// Agent types (the predecessor's enum).
pub(crate) const AGENT_TYPES: &[&str] = &[
    "screener",
    "classifier",
    "orchestrator",
    "extractor",
    "summarizer",
    "router",
    "monitor",
    "custom",
];
/// Deployment environments.
pub(crate) const DEPLOYMENT_ENVS: &[&str] = &["development", "staging", "production"];
/// Scopes an organization may give its agents. `admin:orgs` is the instance admin's only.
pub(crate) const TENANT_SCOPES: &[&str] = &["agents:read", "agents:write", "audit:read"];
/// Every scope this node knows.
pub(crate) const ALL_SCOPES: &[&str] = &["agents:read", "agents:write", "audit:read", "admin:orgs"];

// ---------- agents ----------

/// A skill in OASF shape.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SkillView {
    /// OASF taxonomy id.
    pub(crate) id: u64,
    /// OASF taxonomy name, e.g. `natural_language_processing/summarization`.
    pub(crate) name: String,
}

/// An OASF locator: where the agent's artifacts are (`type` is an OASF locator type).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LocatorView {
    /// unspecified, helm_chart, container_image, package, source_code, binary or url.
    #[serde(rename = "type")]
    pub(crate) kind: String,
    /// Where to fetch it (1 to 10 entries).
    pub(crate) urls: Vec<String>,
}

/// An agent identity.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AgentView {
    pub(crate) agent_id: Uuid,
    pub(crate) organization_id: Uuid,
    pub(crate) email: String,
    pub(crate) name: String,
    pub(crate) agent_type: String,
    pub(crate) version: String,
    pub(crate) capabilities: Vec<String>,
    pub(crate) owner: String,
    pub(crate) deployment_env: String,
    /// `active`, `suspended` or `decommissioned`.
    pub(crate) status: String,
    /// OAuth scopes the agent may request.
    pub(crate) scopes: Vec<String>,
    #[schema(value_type = Object)]
    pub(crate) metadata: serde_json::Value,
    pub(crate) public: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) description: Option<String>,
    pub(crate) skills: Vec<SkillView>,
    pub(crate) endpoints: Vec<String>,
    /// OASF domains.
    pub(crate) domains: Vec<SkillView>,
    /// OASF locators.
    pub(crate) locators: Vec<LocatorView>,
    /// The agent's did:web.
    pub(crate) did: String,
    pub(crate) created_at: String,
    pub(crate) updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) last_auth_at: Option<String>,
}

impl AgentView {
    pub(crate) fn new(a: &Agent, did: String) -> Self {
        AgentView {
            agent_id: a.id,
            organization_id: a.org_id,
            email: a.email.clone(),
            name: a.name.clone(),
            agent_type: a.agent_type.clone(),
            version: a.version.clone(),
            capabilities: a.capabilities.clone(),
            owner: a.owner.clone(),
            deployment_env: a.deployment_env.clone(),
            status: a.status.as_str().to_string(),
            scopes: a.scopes.clone(),
            metadata: a.metadata.clone(),
            public: a.public,
            description: a.description.clone(),
            skills: views_of(&a.skills),
            endpoints: a.endpoints.clone(),
            domains: views_of(&a.domains),
            locators: a
                .locators
                .iter()
                .map(|l| LocatorView {
                    kind: l.kind.clone(),
                    urls: l.urls.clone(),
                })
                .collect(),
            did,
            created_at: rfc3339(a.created_at),
            updated_at: rfc3339(a.updated_at),
            last_auth_at: a.last_auth_at.map(rfc3339),
        }
    }
}

/// Body of `POST /api/v1/agents`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RegisterAgentRequest {
    /// Unique within the organization (case-insensitive).
    pub(crate) email: String,
    /// Defaults to the email.
    pub(crate) name: Option<String>,
    /// One of screener, classifier, orchestrator, extractor, summarizer, router, monitor, custom.
    pub(crate) agent_type: String,
    /// Semantic version, e.g. `1.4.2`.
    pub(crate) version: String,
    #[serde(default)]
    pub(crate) capabilities: Vec<String>,
    pub(crate) owner: String,
    /// development, staging or production.
    pub(crate) deployment_env: String,
    /// Scopes the agent may request; a subset of the caller's. Defaults to `agents:read`.
    pub(crate) scopes: Option<Vec<String>>,
    #[schema(value_type = Option<Object>)]
    pub(crate) metadata: Option<serde_json::Value>,
    #[serde(default)]
    pub(crate) public: bool,
    pub(crate) description: Option<String>,
    #[serde(default)]
    pub(crate) skills: Vec<SkillView>,
    #[serde(default)]
    pub(crate) endpoints: Vec<String>,
    /// OASF domains (`{id, name}` from the OASF domain taxonomy).
    #[serde(default)]
    pub(crate) domains: Vec<SkillView>,
    /// OASF locators.
    #[serde(default)]
    pub(crate) locators: Vec<LocatorView>,
    /// Public JWKs (EC P-256, OKP Ed25519, RSA ≥ 2048) that become the agent's DID verification
    /// methods. Without any, the node generates a P-256 key and returns its private JWK once.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub(crate) keys: Vec<serde_json::Value>,
    /// Accepted and ignored: the organization comes only from the caller's token.
    #[schema(value_type = Option<String>)]
    #[allow(dead_code)]
    pub(crate) organization_id: Option<serde::de::IgnoredAny>,
}

/// Body of `PATCH /api/v1/agents/{agentId}`: only the fields given change.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct UpdateAgentRequest {
    pub(crate) email: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) agent_type: Option<String>,
    pub(crate) version: Option<String>,
    pub(crate) capabilities: Option<Vec<String>>,
    pub(crate) owner: Option<String>,
    pub(crate) deployment_env: Option<String>,
    /// active, suspended, or decommissioned (one-way).
    pub(crate) status: Option<String>,
    pub(crate) scopes: Option<Vec<String>>,
    #[schema(value_type = Option<Object>)]
    pub(crate) metadata: Option<serde_json::Value>,
    pub(crate) public: Option<bool>,
    pub(crate) description: Option<String>,
    pub(crate) skills: Option<Vec<SkillView>>,
    pub(crate) endpoints: Option<Vec<String>>,
    pub(crate) domains: Option<Vec<SkillView>>,
    pub(crate) locators: Option<Vec<LocatorView>>,
}

/// A page of agents.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AgentPage {
    pub(crate) data: Vec<AgentView>,
    pub(crate) total: usize,
    pub(crate) page: usize,
    pub(crate) limit: usize,
}

fn check_len(field: &str, v: &str, min: usize, max: usize) -> Result<(), ApiError> {
    crate::app::text::check_text(v, min, max)
        .map_err(|e| ApiError::validation(field, e.to_string()))
}

pub(crate) fn check_email(v: &str) -> Result<(), ApiError> {
    check_len("email", v, 3, 254)?;
    match v.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !v.chars().any(char::is_whitespace) =>
        {
            Ok(())
        }
        _ => Err(ApiError::validation("email", "must look like name@domain")),
    }
}

pub(crate) fn check_one_of(field: &str, v: &str, allowed: &[&str]) -> Result<(), ApiError> {
    if allowed.contains(&v) {
        Ok(())
    } else {
        Err(ApiError::validation(
            field,
            format!("must be one of: {}", allowed.join(", ")),
        ))
    }
}

pub(crate) fn check_version(v: &str) -> Result<(), ApiError> {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    let ok = v.len() <= 64
        && parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-+".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::validation(
            "version",
            "must be a semantic version like 1.4.2",
        ))
    }
}

pub(crate) fn check_capabilities(v: &[String]) -> Result<(), ApiError> {
    if v.len() > 100 {
        return Err(ApiError::validation("capabilities", "at most 100 entries"));
    }
    let part_ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.*-".contains(c))
    };
    for c in v {
        match c.split_once(':') {
            Some((r, a)) if c.len() <= 128 && part_ok(r) && part_ok(a) => {}
            _ => {
                return Err(ApiError::validation(
                    "capabilities",
                    format!("{c:?} is not in resource:action form"),
                ))
            }
        }
    }
    Ok(())
}

/// Scopes must be known, grantable within a tenant (or the instance org), and held by the caller:
/// nobody can mint an agent stronger than themselves.
pub(crate) fn check_scopes(
    v: &[String],
    caller_scopes: &[crate::app::Scope],
    system_org: bool,
) -> Result<(), ApiError> {
    use crate::app::Scope;
    for s in v {
        let Some(scope) = Scope::parse(s) else {
            return Err(ApiError::validation(
                "scopes",
                format!("unknown scope {s:?}; known: {}", ALL_SCOPES.join(", ")),
            ));
        };
        if !Scope::grantable(system_org).contains(&scope) || !caller_scopes.contains(&scope) {
            return Err(ApiError::new(
                warp::http::StatusCode::FORBIDDEN,
                "SCOPE_ESCALATION",
                format!("You cannot give an agent the scope {s:?}: it is not one you hold and may grant."),
            ));
        }
    }
    Ok(())
}

/// Free-form metadata: a JSON object of at most 16 KiB whose strings are all visible text. It
/// is stored and shown to the agent's organization, and never put in a public document.
pub(crate) fn check_metadata(v: &serde_json::Value) -> Result<(), ApiError> {
    if !v.is_object() {
        return Err(ApiError::validation("metadata", "must be a JSON object"));
    }
    if v.to_string().len() > 16 * 1024 {
        return Err(ApiError::validation("metadata", "must be at most 16 KiB"));
    }
    crate::app::text::check_json_visible(v)
        .map_err(|e| ApiError::validation("metadata", e.to_string()))
}

/// The card fields of a registration or an update, checked together.
pub(crate) struct CardFields<'a> {
    pub(crate) description: Option<&'a str>,
    pub(crate) skills: &'a [SkillView],
    pub(crate) domains: &'a [SkillView],
    pub(crate) locators: &'a [LocatorView],
    pub(crate) endpoints: &'a [String],
}

pub(crate) fn check_card(
    c: &CardFields<'_>,
    taxonomy: Option<&oasf::Taxonomy>,
) -> Result<(), ApiError> {
    if let Some(d) = c.description {
        check_len("description", d, 1, 2048)?;
    }
    check_taxonomy_refs("skills", c.skills)?;
    check_taxonomy_refs("domains", c.domains)?;
    if let Some(t) = taxonomy {
        for (i, s) in c.skills.iter().enumerate() {
            t.check_skill(Some(s.id), Some(&s.name))
                .map_err(|e| ApiError::validation(&format!("skills[{i}]"), e.to_string()))?;
        }
        for (i, d) in c.domains.iter().enumerate() {
            t.check_domain(Some(d.id), Some(&d.name))
                .map_err(|e| ApiError::validation(&format!("domains[{i}]"), e.to_string()))?;
        }
    }
    let types = oasf::LocatorType::ALL.map(|t| t.as_str());
    if c.locators.len() > types.len() {
        return Err(ApiError::validation(
            "locators",
            "at most one locator of each type",
        ));
    }
    for (i, l) in c.locators.iter().enumerate() {
        let field = format!("locators[{i}]");
        check_one_of(&format!("{field}.type"), &l.kind, &types)?;
        if c.locators[..i].iter().any(|o| o.kind == l.kind) {
            return Err(ApiError::validation(
                &field,
                format!("a second locator of type {}; give each type once", l.kind),
            ));
        }
        if l.urls.is_empty() || l.urls.len() > 10 {
            return Err(ApiError::validation(
                &format!("{field}.urls"),
                "give 1 to 10 URLs",
            ));
        }
        // Container images and Helm charts live in OCI registries (`oci://`); everything else
        // is fetched over https. No other scheme is ever published.
        let schemes: &[&str] = match l.kind.as_str() {
            "container_image" | "helm_chart" => &["https", "oci"],
            _ => &["https"],
        };
        for (j, u) in l.urls.iter().enumerate() {
            crate::app::text::check_public_url(u, schemes)
                .map_err(|e| ApiError::validation(&format!("{field}.urls[{j}]"), e.to_string()))?;
        }
    }
    if c.endpoints.len() > 20 {
        return Err(ApiError::validation("endpoints", "at most 20 entries"));
    }
    for (i, e) in c.endpoints.iter().enumerate() {
        crate::app::text::check_public_url(e, &["https"])
            .map_err(|err| ApiError::validation(&format!("endpoints[{i}]"), err.to_string()))?;
    }
    Ok(())
}

/// OASF `{id, name}` entries: at most 100, ids positive, names `segment/segment…` of lowercase
/// letters, digits and `_`, no repeats.
fn check_taxonomy_refs(field: &str, v: &[SkillView]) -> Result<(), ApiError> {
    if v.len() > 100 {
        return Err(ApiError::validation(field, "at most 100 entries"));
    }
    for (i, s) in v.iter().enumerate() {
        let f = format!("{field}[{i}]");
        check_len(&format!("{f}.name"), &s.name, 1, 256)?;
        let name_ok = s.name.split('/').all(|seg| {
            !seg.is_empty()
                && seg
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        });
        if !name_ok {
            return Err(ApiError::validation(
                &format!("{f}.name"),
                "must be an OASF taxonomy name like natural_language_processing/summarization",
            ));
        }
        if s.id == 0 {
            return Err(ApiError::validation(
                &format!("{f}.id"),
                "must be a positive OASF id",
            ));
        }
        if v[..i].iter().any(|o| o.id == s.id) {
            return Err(ApiError::validation(
                &f,
                format!("id {} is listed twice", s.id),
            ));
        }
    }
    Ok(())
}

pub(crate) fn check_text(field: &str, v: &str) -> Result<(), ApiError> {
    check_len(field, v, 1, 256)
}

pub(crate) fn views_of(v: &[Skill]) -> Vec<SkillView> {
    v.iter()
        .map(|s| SkillView {
            id: s.id,
            name: s.name.clone(),
        })
        .collect()
}

pub(crate) fn locators_of(v: &[LocatorView]) -> Vec<Locator> {
    v.iter()
        .map(|l| Locator {
            kind: l.kind.clone(),
            urls: l.urls.clone(),
        })
        .collect()
}

pub(crate) fn skills_of(v: &[SkillView]) -> Vec<Skill> {
    v.iter()
        .map(|s| Skill {
            id: s.id,
            name: s.name.clone(),
        })
        .collect()
}

// ---------- credentials ----------

/// A credential, without its secret.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CredentialView {
    pub(crate) credential_id: Uuid,
    /// The OAuth client_id: the agent's id.
    pub(crate) client_id: String,
    pub(crate) agent_id: Uuid,
    /// `active`, `expired` or `revoked`.
    pub(crate) status: String,
    pub(crate) created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) revoked_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rotated_from: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) replaced_by: Option<Uuid>,
}

impl CredentialView {
    pub(crate) fn new(c: &Credential, now_ms: i64) -> Self {
        let status = match c.status {
            CredentialStatus::Revoked => "revoked",
            CredentialStatus::Active if c.expires_at.is_some_and(|e| e <= now_ms) => "expired",
            CredentialStatus::Active => "active",
        };
        CredentialView {
            credential_id: c.id,
            client_id: c.agent_id.to_string(),
            agent_id: c.agent_id,
            status: status.to_string(),
            created_at: rfc3339(c.created_at),
            expires_at: c.expires_at.map(rfc3339),
            revoked_at: c.revoked_at.map(rfc3339),
            rotated_from: c.rotated_from,
            replaced_by: c.replaced_by,
        }
    }
}

/// A new credential with its secret: shown once, never again.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct IssuedCredential {
    #[serde(flatten)]
    pub(crate) credential: CredentialView,
    /// The client secret. Store it now: the node keeps only its hash.
    pub(crate) client_secret: String,
}

/// A list of credentials.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CredentialList {
    pub(crate) data: Vec<CredentialView>,
}

/// Body of `POST /api/v1/agents/{agentId}/credentials` (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CreateCredentialRequest {
    /// RFC 3339 expiry; none means no expiry.
    pub(crate) expires_at: Option<String>,
}

/// Body of `POST .../credentials/{credentialId}/rotate` (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RotateCredentialRequest {
    /// Seconds the old secret keeps working (0 to 2,592,000). Default 0: revoked at once.
    pub(crate) grace_seconds: Option<u64>,
}

// ---------- organizations ----------

/// An organization (tenant).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OrgView {
    pub(crate) organization_id: Uuid,
    pub(crate) name: String,
    pub(crate) slug: String,
    /// free, pro or enterprise.
    pub(crate) plan_tier: String,
    pub(crate) max_agents: u64,
    pub(crate) max_tokens_per_month: u64,
    /// active, suspended or deleted.
    pub(crate) status: String,
    pub(crate) created_at: String,
    pub(crate) updated_at: String,
}

impl OrgView {
    pub(crate) fn new(o: &Organization) -> Self {
        OrgView {
            organization_id: o.id,
            name: o.name.clone(),
            slug: o.slug.clone(),
            plan_tier: o.plan_tier.as_str().to_string(),
            max_agents: o.max_agents,
            max_tokens_per_month: o.max_tokens_per_month,
            status: o.status.as_str().to_string(),
            created_at: rfc3339(o.created_at),
            updated_at: rfc3339(o.updated_at),
        }
    }
}

/// Body of `POST /api/v1/organizations`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CreateOrgRequest {
    pub(crate) name: String,
    /// Lowercase letters, digits and hyphens; unique; immutable.
    pub(crate) slug: String,
    /// free (default), pro or enterprise.
    pub(crate) plan_tier: Option<String>,
    pub(crate) max_agents: Option<u64>,
    pub(crate) max_tokens_per_month: Option<u64>,
    /// Email of the organization's first admin agent; default `admin@<slug>.agentidp.local`.
    pub(crate) admin_email: Option<String>,
}

/// Body of `PATCH /api/v1/organizations/{orgId}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct UpdateOrgRequest {
    pub(crate) name: Option<String>,
    pub(crate) plan_tier: Option<String>,
    pub(crate) max_agents: Option<u64>,
    pub(crate) max_tokens_per_month: Option<u64>,
    /// active or suspended (deletion is DELETE).
    pub(crate) status: Option<String>,
}

/// The first admin agent of a new organization, with its credential (shown once).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OrgAdmin {
    pub(crate) agent: AgentView,
    pub(crate) credential: IssuedCredential,
}

/// Response of `POST /api/v1/organizations`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreatedOrg {
    #[serde(flatten)]
    pub(crate) organization: OrgView,
    pub(crate) admin: OrgAdmin,
}

/// A page of organizations.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OrgPage {
    pub(crate) data: Vec<OrgView>,
    pub(crate) total: usize,
    pub(crate) page: usize,
    pub(crate) limit: usize,
}

// ---------- audit ----------

/// An audit entry.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AuditView {
    pub(crate) seq: u64,
    pub(crate) time: String,
    pub(crate) organization_id: Uuid,
    pub(crate) actor: String,
    pub(crate) action: String,
    pub(crate) target: String,
    /// success or failure.
    pub(crate) outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) client_address: Option<String>,
    #[schema(value_type = Object)]
    pub(crate) details: serde_json::Value,
    pub(crate) prev_hash: String,
    pub(crate) hash: String,
}

impl AuditView {
    pub(crate) fn new(e: &storage::AuditEntry) -> Self {
        AuditView {
            seq: e.seq,
            time: rfc3339(e.body.time),
            organization_id: e.body.org_id,
            actor: e.body.actor.clone(),
            action: e.body.action.clone(),
            target: e.body.target.clone(),
            outcome: match e.body.outcome {
                storage::Outcome::Success => "success".into(),
                storage::Outcome::Failure => "failure".into(),
            },
            client_address: e.body.client.clone(),
            details: e.body.details.clone(),
            prev_hash: e.prev_hash.clone(),
            hash: e.hash.clone(),
        }
    }
}

/// A page of audit entries, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AuditPage {
    pub(crate) data: Vec<AuditView>,
    /// Pass as `cursor` for the next (older) page; absent at the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) next_cursor: Option<String>,
}

/// Result of recomputing the audit chain.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AuditVerifyView {
    pub(crate) valid: bool,
    pub(crate) entries: u64,
    /// Hash of the last intact entry; record it elsewhere to detect a rewritten chain later.
    pub(crate) head_hash: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) first_broken_seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
}

// ---------- trust policies ----------

/// Body of `POST /api/v1/oidc/trust-policies`: `issuer` + `subject`, or the predecessor's
/// `provider: github` + `repository` (+ `branch`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CreateTrustPolicyRequest {
    /// `github` (the predecessor's shape).
    pub(crate) provider: Option<String>,
    /// `org/repo` (with `provider: github`).
    pub(crate) repository: Option<String>,
    /// A branch name (with `provider: github`); without it any ref of the repository.
    pub(crate) branch: Option<String>,
    pub(crate) issuer: Option<String>,
    /// `sub` pattern, e.g. `repo:acme/app:ref:refs/heads/main` or `repo:acme/app:*`.
    pub(crate) subject: Option<String>,
    pub(crate) audience: Option<String>,
    #[serde(default)]
    pub(crate) claims: std::collections::BTreeMap<String, String>,
    /// An agent of the caller's organization.
    pub(crate) agent_id: Uuid,
    /// Defaults to the agent's scopes; must be a subset of them.
    pub(crate) scopes: Option<Vec<String>>,
}

// ---------- tokens ----------

/// RFC 6749 §5.1 access token response.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TokenResponse {
    pub(crate) access_token: String,
    /// Always `Bearer`.
    pub(crate) token_type: &'static str,
    pub(crate) expires_in: i64,
    pub(crate) scope: String,
}

/// The error envelope of every non-OAuth route.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    /// Stable machine-readable code, e.g. `AGENT_NOT_FOUND`.
    pub(crate) code: String,
    pub(crate) message: String,
    #[schema(value_type = Option<Object>)]
    pub(crate) details: Option<serde_json::Value>,
}

/// RFC 6749 §5.2 error body of the token endpoint.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OAuthErrorBody {
    pub(crate) error: String,
    pub(crate) error_description: String,
}
