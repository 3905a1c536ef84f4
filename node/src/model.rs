//! Wire types of the REST API (camelCase, as the predecessor's API): request bodies and queries
//! (which the domain layer takes as its input and validates, see [`crate::app::validate`]) and
//! the views the handlers render.
//!
//! Request bodies deny unknown fields, so a typo is a 400 naming the field instead of a silently
//! ignored setting.

use serde::{Deserialize, Deserializer, Serialize};
use storage::{Agent, Credential, CredentialStatus, Organization, Skill};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::clock::rfc3339;

/// For a field where `null` means something (e.g. "unlimited") and absence means "unchanged":
/// `Some(None)` for `null`, `None` (with `#[serde(default)]`) when absent.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

// ---------- closed lists (for the OpenAPI document) ----------

/// The closed lists the domain checks (`app::validate`), as schemas, so clients can validate
/// before sending; a test keeps each equal to the list the server enforces.
pub(crate) mod wire {
    #![allow(dead_code)]
    use utoipa::ToSchema;

    /// An agent's type.
    #[derive(ToSchema)]
    #[schema(rename_all = "lowercase")]
    pub(crate) enum AgentType {
        Screener,
        Classifier,
        Orchestrator,
        Extractor,
        Summarizer,
        Router,
        Monitor,
        Custom,
    }

    /// Where an agent runs.
    #[derive(ToSchema)]
    #[schema(rename_all = "lowercase")]
    pub(crate) enum DeploymentEnv {
        Development,
        Staging,
        Production,
    }

    /// An agent's status.
    #[derive(ToSchema)]
    #[schema(rename_all = "lowercase")]
    pub(crate) enum AgentStatus {
        Active,
        Suspended,
        Decommissioned,
    }

    /// An organization's status.
    #[derive(ToSchema)]
    #[schema(rename_all = "lowercase")]
    pub(crate) enum OrgStatus {
        Active,
        Suspended,
        Deleted,
    }

    /// The status an organization can be set to (deletion is `DELETE`).
    #[derive(ToSchema)]
    #[schema(rename_all = "lowercase")]
    pub(crate) enum OrgStatusChange {
        Active,
        Suspended,
    }

    /// An organization's plan.
    #[derive(ToSchema)]
    #[schema(rename_all = "lowercase")]
    pub(crate) enum PlanTier {
        Free,
        Pro,
        Enterprise,
    }

    /// An OAuth scope of this node.
    #[derive(ToSchema)]
    pub(crate) enum Scope {
        #[schema(rename = "agents:read")]
        AgentsRead,
        #[schema(rename = "agents:write")]
        AgentsWrite,
        #[schema(rename = "audit:read")]
        AuditRead,
        #[schema(rename = "admin:orgs")]
        AdminOrgs,
        #[schema(rename = "webhooks:read")]
        WebhooksRead,
        #[schema(rename = "webhooks:write")]
        WebhooksWrite,
    }
}
use wire::{
    AgentStatus as AgentStatusWire, AgentType, DeploymentEnv, OrgStatus as OrgStatusWire,
    OrgStatusChange, PlanTier, Scope as ScopeWire,
};

// ---------- agents ----------

/// A capability, `resource:action` (each part of letters, digits, `_`, `.`, `*` and `-`).
#[derive(ToSchema)]
#[schema(value_type = String, pattern = r"^(?=.{3,128}$)[A-Za-z0-9_.*-]+:[A-Za-z0-9_.*-]+$")]
#[allow(dead_code)]
pub(crate) struct Capability(String);

/// A skill in OASF shape.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SkillView {
    /// OASF taxonomy id.
    #[schema(minimum = 1)]
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
    #[schema(min_length = 3, max_length = 254, pattern = r"^[^@\s]+@[^@\s]+$")]
    pub(crate) email: String,
    /// Defaults to the email.
    #[schema(min_length = 1, max_length = 256)]
    pub(crate) name: Option<String>,
    /// One of screener, classifier, orchestrator, extractor, summarizer, router, monitor, custom.
    #[schema(value_type = AgentType)]
    pub(crate) agent_type: String,
    /// Semantic version, e.g. `1.4.2`.
    #[schema(
        max_length = 64,
        pattern = r"^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.+-]*)?$"
    )]
    pub(crate) version: String,
    #[serde(default)]
    #[schema(max_items = 100, value_type = Vec<Capability>)]
    pub(crate) capabilities: Vec<String>,
    #[schema(min_length = 1, max_length = 256)]
    pub(crate) owner: String,
    /// development, staging or production.
    #[schema(value_type = DeploymentEnv)]
    pub(crate) deployment_env: String,
    /// Scopes the agent may request; a subset of the caller's. Defaults to `agents:read`.
    #[schema(value_type = Option<Vec<ScopeWire>>)]
    pub(crate) scopes: Option<Vec<String>>,
    #[schema(value_type = Option<Object>)]
    pub(crate) metadata: Option<serde_json::Value>,
    /// Listed in the public directory (`GET /api/v1/marketplace/agents`); `isPublic` (the
    /// predecessor's spelling) is accepted too.
    #[serde(default, alias = "isPublic")]
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
    /// Accepted and ignored (any value): the organization comes only from the caller's token.
    #[schema(value_type = Option<Value>)]
    #[allow(dead_code)]
    pub(crate) organization_id: Option<serde::de::IgnoredAny>,
}

/// Body of `PATCH /api/v1/agents/{agentId}`: only the fields given change.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(min_properties = 1)]
pub(crate) struct UpdateAgentRequest {
    #[schema(min_length = 3, max_length = 254, pattern = r"^[^@\s]+@[^@\s]+$")]
    pub(crate) email: Option<String>,
    #[schema(min_length = 1, max_length = 256)]
    pub(crate) name: Option<String>,
    #[schema(value_type = Option<AgentType>)]
    pub(crate) agent_type: Option<String>,
    #[schema(
        max_length = 64,
        pattern = r"^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.+-]*)?$"
    )]
    pub(crate) version: Option<String>,
    #[schema(max_items = 100, value_type = Option<Vec<Capability>>)]
    pub(crate) capabilities: Option<Vec<String>>,
    #[schema(min_length = 1, max_length = 256)]
    pub(crate) owner: Option<String>,
    #[schema(value_type = Option<DeploymentEnv>)]
    pub(crate) deployment_env: Option<String>,
    /// active, suspended, or decommissioned (one-way).
    #[schema(value_type = Option<AgentStatusWire>)]
    pub(crate) status: Option<String>,
    #[schema(value_type = Option<Vec<ScopeWire>>)]
    pub(crate) scopes: Option<Vec<String>>,
    #[schema(value_type = Option<Object>)]
    pub(crate) metadata: Option<serde_json::Value>,
    /// Publish in (or withdraw from) the public directory; `isPublic` is accepted too.
    #[serde(alias = "isPublic")]
    pub(crate) public: Option<bool>,
    pub(crate) description: Option<String>,
    pub(crate) skills: Option<Vec<SkillView>>,
    pub(crate) endpoints: Option<Vec<String>>,
    pub(crate) domains: Option<Vec<SkillView>>,
    pub(crate) locators: Option<Vec<LocatorView>>,
}

/// Query of the agent listing.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct AgentListQuery {
    /// Page number, from 1.
    #[param(minimum = 1)]
    pub(crate) page: Option<usize>,
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub(crate) limit: Option<usize>,
    pub(crate) owner: Option<String>,
    #[param(value_type = Option<AgentType>)]
    pub(crate) agent_type: Option<String>,
    /// active, suspended or decommissioned.
    #[param(value_type = Option<AgentStatusWire>)]
    pub(crate) status: Option<String>,
}

/// A page of agents.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AgentPage {
    pub(crate) data: Vec<AgentView>,
    pub(crate) total: usize,
    pub(crate) page: usize,
    pub(crate) limit: usize,
}

pub(crate) fn views_of(v: &[Skill]) -> Vec<SkillView> {
    v.iter()
        .map(|s| SkillView {
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
    #[schema(format = DateTime)]
    pub(crate) expires_at: Option<String>,
}

/// Body of `POST .../credentials/{credentialId}/rotate` (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RotateCredentialRequest {
    /// Seconds the old secret keeps working (0 to 2,592,000). Default 0: revoked at once.
    #[schema(minimum = 0, maximum = 2592000)]
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
    /// Most agents that are not decommissioned; `null`: unlimited.
    #[schema(required = true, minimum = 1, maximum = 9007199254740991_u64)]
    pub(crate) max_agents: Option<u64>,
    /// Tokens its agents may obtain per calendar month (enforced with `--tier-enforcement`);
    /// `null`: unlimited.
    #[schema(required = true, minimum = 1, maximum = 9007199254740991_u64)]
    pub(crate) max_tokens_per_month: Option<u64>,
    /// Authenticated API requests a minute (the tier's default unless set); `null`: unlimited.
    #[schema(required = true, minimum = 1, maximum = 9007199254740991_u64)]
    pub(crate) rate_limit_per_minute: Option<u64>,
    /// active, suspended or deleted.
    pub(crate) status: String,
    /// Whether its public agents appear in the directory.
    pub(crate) directory_listed: bool,
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
            max_agents: crate::app::orgs::limit_on_wire(o.max_agents),
            max_tokens_per_month: crate::app::orgs::limit_on_wire(o.max_tokens_per_month),
            rate_limit_per_minute: crate::app::orgs::limit_on_wire(
                crate::app::usage::OrgLimits::of(o).requests_per_minute,
            ),
            status: o.status.as_str().to_string(),
            directory_listed: o.directory_listed,
            created_at: rfc3339(o.created_at),
            updated_at: rfc3339(o.updated_at),
        }
    }
}

/// Body of `POST /api/v1/organizations`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CreateOrgRequest {
    #[schema(min_length = 1, max_length = 256)]
    pub(crate) name: String,
    /// Lowercase letters, digits and hyphens; unique; immutable.
    #[schema(pattern = r"^[a-z0-9-]{1,64}$")]
    pub(crate) slug: String,
    /// free (default), pro or enterprise.
    #[schema(value_type = Option<PlanTier>)]
    pub(crate) plan_tier: Option<String>,
    /// 1 to 2^53 − 1; absent or `null`: the plan's default (free 100, pro 1,000, enterprise
    /// unlimited).
    #[schema(minimum = 1, maximum = 9007199254740991_u64)]
    pub(crate) max_agents: Option<u64>,
    /// 1 to 2^53 − 1; absent or `null`: the plan's default (free 10,000, pro 100,000,
    /// enterprise unlimited).
    #[schema(minimum = 1, maximum = 9007199254740991_u64)]
    pub(crate) max_tokens_per_month: Option<u64>,
    /// Email of the organization's first admin agent; default `admin@<slug>.agentidp.local`.
    #[schema(min_length = 3, max_length = 254, pattern = r"^[^@\s]+@[^@\s]+$")]
    pub(crate) admin_email: Option<String>,
}

/// Body of `PATCH /api/v1/organizations/{orgId}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(min_properties = 1)]
pub(crate) struct UpdateOrgRequest {
    #[schema(min_length = 1, max_length = 256)]
    pub(crate) name: Option<String>,
    #[schema(value_type = Option<PlanTier>)]
    pub(crate) plan_tier: Option<String>,
    /// 1 to 2^53 − 1, or `null`: unlimited. Absent: unchanged.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u64>, minimum = 1, maximum = 9007199254740991_u64)]
    pub(crate) max_agents: Option<Option<u64>>,
    /// 1 to 2^53 − 1, or `null`: unlimited. Absent: unchanged.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u64>, minimum = 1, maximum = 9007199254740991_u64)]
    pub(crate) max_tokens_per_month: Option<Option<u64>>,
    /// Authenticated API requests a minute, 1 to 2^53 − 1, or `null`: unlimited. Absent:
    /// unchanged.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u64>, minimum = 1, maximum = 9007199254740991_u64)]
    pub(crate) rate_limit_per_minute: Option<Option<u64>>,
    /// active or suspended (deletion is DELETE).
    #[schema(value_type = Option<OrgStatusChange>)]
    pub(crate) status: Option<String>,
    /// `false` takes every agent of the organization out of the public directory.
    pub(crate) directory_listed: Option<bool>,
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

/// Query of the organization listing.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct OrgListQuery {
    /// Page number, from 1.
    #[param(minimum = 1)]
    pub(crate) page: Option<usize>,
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub(crate) limit: Option<usize>,
    /// active, suspended or deleted.
    #[param(value_type = Option<OrgStatusWire>)]
    pub(crate) status: Option<String>,
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
