//! Organizations (tenants), managed by the instance admin (scope `admin:orgs`). Creating an
//! organization also creates its first admin agent and that agent's credential, so that a new
//! tenant can start work with one call.
//!
//! Rules, each checked by the write that commits the change, against what that write reads:
//! - slugs are unique and immutable;
//! - the node's own organization can be neither suspended nor deleted;
//! - deletion is one-way; suspending (and deleting) starts a new token epoch, so that tokens
//!   issued before stay dead after a reactivation.
//!
//! Plan limits are stored as numbers; [`UNLIMITED`] (the enterprise plan's default, the node's
//! own organization) is `null` on the wire.

use storage::{Credential, OrgStatus, Organization, Outcome, PlanTier};
use uuid::Uuid;

use super::agents::{admin_agent, insert_agent, Page};
use super::credentials::new_credential;
use super::error::DomainError;
use super::validate::{
    check_limit, check_slug, check_text, page_params, parse_org_status, parse_org_status_change,
    parse_plan,
};
use super::vocab::{ErrorCode, Scope};
use super::{Actor, AppState, Caller};
use crate::model::{CreateOrgRequest, OrgListQuery, UpdateOrgRequest};

/// A plan limit that does not limit.
pub(crate) const UNLIMITED: u64 = u64::MAX;

/// Default limits of a plan tier: (max agents, max tokens per month).
pub(crate) fn plan_defaults(p: PlanTier) -> (u64, u64) {
    match p {
        PlanTier::Free => (100, 10_000),
        PlanTier::Pro => (1_000, 100_000),
        PlanTier::Enterprise => (UNLIMITED, UNLIMITED),
    }
}

/// A plan limit as the API shows it: `None` (JSON `null`) for unlimited. A limit beyond
/// [`super::validate::MAX_LIMIT`] (2^53 − 1) cannot be reached and is not one a JavaScript
/// client could read back exactly: it shows as unlimited too.
pub(crate) fn limit_on_wire(v: u64) -> Option<u64> {
    (v <= super::validate::MAX_LIMIT).then_some(v)
}

fn protected() -> DomainError {
    DomainError::forbidden(
        ErrorCode::OrgProtected,
        "The node's own organization cannot be suspended or deleted.",
    )
}

/// A new organization with its first admin agent and that agent's credential.
#[derive(Debug)]
pub(crate) struct Created {
    pub(crate) org: Organization,
    pub(crate) admin: storage::Agent,
    pub(crate) credential: Credential,
    /// The admin's client secret, shown once.
    pub(crate) secret: String,
}

/// Creates an organization and its first admin agent (holding every tenant scope), whose
/// credential is returned once.
pub(crate) async fn create(
    state: &AppState,
    caller: &Caller,
    req: CreateOrgRequest,
) -> Result<Created, DomainError> {
    caller.require(Scope::AdminOrgs)?;
    check_text("name", &req.name)?;
    check_slug(&req.slug)?;
    let plan = req
        .plan_tier
        .as_deref()
        .map(parse_plan)
        .transpose()?
        .unwrap_or(PlanTier::Free);
    check_limit("maxAgents", req.max_agents)?;
    check_limit("maxTokensPerMonth", req.max_tokens_per_month)?;
    let (def_agents, def_tokens) = plan_defaults(plan);
    let now = state.clock.now_ms();
    let org = Organization {
        id: Uuid::new_v4(),
        name: req.name,
        slug: req.slug.clone(),
        plan_tier: plan,
        max_agents: req.max_agents.unwrap_or(def_agents),
        max_tokens_per_month: req.max_tokens_per_month.unwrap_or(def_tokens),
        status: OrgStatus::Active,
        system: false,
        created_at: now,
        updated_at: now,
        token_epoch: 0,
        rate_limit_per_minute: None,
        directory_listed: true,
    };
    let admin = admin_agent(
        org.id,
        req.admin_email
            .unwrap_or_else(|| format!("admin@{}.agentidp.local", req.slug)),
        format!("{} admin", org.name),
        org.slug.clone(),
        &Scope::TENANT,
        "organization-admin",
        now,
    )?;
    let (credential, secret) = new_credential(&admin, now, None, None)?;
    let st = state.clone();
    let actor = caller.actor.clone();
    let acting = caller.acting();
    let created = state
        .store
        .write(move |tx| {
            acting.require_now(tx, Scope::AdminOrgs)?;
            if tx.org_id_by_slug(&org.slug)?.is_some() {
                return Err(DomainError::conflict(
                    ErrorCode::OrgSlugConflict,
                    "An organization with this slug already exists.",
                )
                .with_details(serde_json::json!({ "slug": org.slug })));
            }
            tx.put_org(&org);
            insert_agent(tx, &admin)?;
            tx.put_credential(&credential);
            tx.audit(st.audit_entry(
                &actor,
                "organization.create",
                org.id.to_string(),
                Outcome::Success,
                serde_json::json!({ "slug": org.slug, "adminAgentId": admin.id }),
            ))?;
            // The new tenant's own log starts with the creation of its admin.
            let tenant_actor = Actor {
                id: actor.id.clone(),
                org: org.id,
                client: actor.client.clone(),
            };
            tx.audit(st.audit_entry(
                &tenant_actor,
                "agent.register",
                admin.id.to_string(),
                Outcome::Success,
                serde_json::json!({
                    "email": admin.email, "role": "organization-admin", "credentialId": credential.id,
                }),
            ))?;
            Ok::<_, DomainError>(Created {
                org,
                admin,
                credential,
                secret,
            })
        })
        .await?;
    state.metrics.agents_registered.inc();
    state.metrics.audit_appends.inc();
    state.metrics.audit_appends.inc();
    Ok(created)
}

/// A page of organizations, newest first, optionally of one status.
pub(crate) fn list(
    state: &AppState,
    caller: &Caller,
    q: OrgListQuery,
) -> Result<Page<Organization>, DomainError> {
    caller.require(Scope::AdminOrgs)?;
    let (page, limit) = page_params(q.page, q.limit)?;
    let status = q.status.as_deref().map(parse_org_status).transpose()?;
    let (items, total) = state.store.list_orgs(status, page, limit)?;
    Ok(Page {
        items,
        total,
        page,
        limit,
    })
}

/// One organization.
pub(crate) fn get(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
) -> Result<Organization, DomainError> {
    // The instance admin reads any organization; an organization's own agents (agents:read)
    // read theirs; another organization is "not found".
    super::tenancy::managed_org(caller, id, false)?;
    state
        .store
        .get_org(&id)?
        .ok_or_else(DomainError::org_not_found)
}

/// Changes an organization's name, plan, limits (`null`: unlimited) or status (active or
/// suspended) — the instance admin (`admin:orgs`). An organization's own admins may change
/// one thing themselves: `directoryListed`, whether its published agents appear in the public
/// directory.
pub(crate) async fn update(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    req: UpdateOrgRequest,
) -> Result<Organization, DomainError> {
    let self_service = !caller.has(Scope::AdminOrgs);
    if self_service {
        super::tenancy::managed_org(caller, id, true)?;
        if req.name.is_some()
            || req.plan_tier.is_some()
            || req.max_agents.is_some()
            || req.max_tokens_per_month.is_some()
            || req.rate_limit_per_minute.is_some()
            || req.status.is_some()
        {
            return Err(DomainError::Forbidden {
                code: ErrorCode::AuthorizationError,
                message: "An organization admin may change only `directoryListed` of its own organization; the other fields need the `admin:orgs` scope.".into(),
                details: Some(serde_json::json!({ "requiredScope": Scope::AdminOrgs.as_str() })),
            });
        }
    }
    if let Some(n) = &req.name {
        check_text("name", n)?;
    }
    let plan = req.plan_tier.as_deref().map(parse_plan).transpose()?;
    check_limit("maxAgents", req.max_agents.flatten())?;
    check_limit("maxTokensPerMonth", req.max_tokens_per_month.flatten())?;
    check_limit("rateLimitPerMinute", req.rate_limit_per_minute.flatten())?;
    let status = req
        .status
        .as_deref()
        .map(parse_org_status_change)
        .transpose()?;
    if req.name.is_none()
        && plan.is_none()
        && req.max_agents.is_none()
        && req.max_tokens_per_month.is_none()
        && req.rate_limit_per_minute.is_none()
        && status.is_none()
        && req.directory_listed.is_none()
    {
        return Err(DomainError::validation(
            "body",
            "give at least one field to change",
        ));
    }
    let now = state.clock.now_ms();
    let entry = state.audit_entry(
        &caller.actor,
        "organization.update",
        id.to_string(),
        Outcome::Success,
        serde_json::json!({ "status": req.status, "planTier": req.plan_tier, "name": req.name, "maxAgents": req.max_agents, "maxTokensPerMonth": req.max_tokens_per_month, "rateLimitPerMinute": req.rate_limit_per_minute, "directoryListed": req.directory_listed }),
    );
    let acting = caller.acting();
    state
        .write_audited(entry, move |tx| {
            let scopes = acting.scopes_now(tx)?;
            let allowed = if self_service {
                // Still an admin of this very organization as this write commits.
                acting.org_id == id && Scope::TENANT.iter().all(|s| scopes.contains(s))
            } else {
                scopes.contains(&Scope::AdminOrgs)
            };
            if !allowed {
                return Err(DomainError::missing_scope(Scope::AdminOrgs));
            }
            let mut o = tx.get_org(&id)?.ok_or_else(DomainError::org_not_found)?;
            if o.status == OrgStatus::Deleted {
                return Err(DomainError::conflict(
                    ErrorCode::OrgAlreadyDeleted,
                    "This organization has been deleted.",
                ));
            }
            if o.system && status == Some(OrgStatus::Suspended) {
                return Err(protected());
            }
            if let Some(v) = req.name {
                o.name = v;
            }
            if let Some(p) = plan {
                o.plan_tier = p;
            }
            if let Some(v) = req.max_agents {
                o.max_agents = v.unwrap_or(UNLIMITED);
            }
            if let Some(v) = req.max_tokens_per_month {
                o.max_tokens_per_month = v.unwrap_or(UNLIMITED);
            }
            if let Some(v) = req.rate_limit_per_minute {
                o.rate_limit_per_minute = Some(v.unwrap_or(UNLIMITED));
            }
            if let Some(s) = status {
                if s == OrgStatus::Suspended && o.status == OrgStatus::Active {
                    // A new token epoch: tokens issued until now stay dead after a reactivation.
                    o.token_epoch = o.token_epoch.wrapping_add(1);
                }
                o.status = s;
            }
            if let Some(v) = req.directory_listed {
                o.directory_listed = v;
            }
            o.updated_at = now;
            tx.put_org(&o);
            Ok(o)
        })
        .await
        .inspect(|o| state.directory.org_changed(o.id))
}

/// Soft-deletes an organization: irreversible; its agents can get and use no token.
pub(crate) async fn delete(state: &AppState, caller: &Caller, id: Uuid) -> Result<(), DomainError> {
    caller.require(Scope::AdminOrgs)?;
    let now = state.clock.now_ms();
    let entry = state.audit_entry(
        &caller.actor,
        "organization.delete",
        id.to_string(),
        Outcome::Success,
        serde_json::json!({}),
    );
    let acting = caller.acting();
    state
        .write_audited(entry, move |tx| {
            acting.require_now(tx, Scope::AdminOrgs)?;
            let mut o = tx.get_org(&id)?.ok_or_else(DomainError::org_not_found)?;
            if o.system {
                return Err(protected());
            }
            if o.status == OrgStatus::Deleted {
                return Err(DomainError::conflict(
                    ErrorCode::OrgAlreadyDeleted,
                    "This organization has already been deleted.",
                ));
            }
            o.status = OrgStatus::Deleted;
            o.token_epoch = o.token_epoch.wrapping_add(1);
            o.updated_at = now;
            tx.put_org(&o);
            Ok(())
        })
        .await?;
    state.directory.org_changed(id);
    Ok(())
}
