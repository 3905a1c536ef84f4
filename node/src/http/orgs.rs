//! Organizations (`/api/v1/organizations`, scope `admin:orgs`), following the predecessor's
//! `organizations.txt`. Creating an organization also creates its first admin agent and returns
//! that agent's credential once, so a new tenant can start work with one call.

use serde::Deserialize;
use storage::{OrgStatus, Organization, Outcome, PlanTier};
use uuid::Uuid;
use warp::http::StatusCode;
use warp::{Rejection, Reply};

use crate::app::AppState;
use crate::http::agents::{admin_agent, insert_agent, new_credential, page_params};
use crate::http::error::ApiError;
use crate::http::extract::{created, Params};
use crate::http::Caller;
use crate::model::*;

/// Query of the organization listing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct OrgListQuery {
    /// Page number, from 1.
    page: Option<usize>,
    /// Page size, 1 to 100 (default 20).
    limit: Option<usize>,
    /// active, suspended or deleted.
    status: Option<String>,
}

fn parse_plan(v: &str) -> Result<PlanTier, ApiError> {
    match v {
        "free" => Ok(PlanTier::Free),
        "pro" => Ok(PlanTier::Pro),
        "enterprise" => Ok(PlanTier::Enterprise),
        _ => Err(ApiError::validation(
            "planTier",
            "must be one of: free, pro, enterprise",
        )),
    }
}

/// Default limits of a plan tier: (max agents, max tokens per month).
fn plan_defaults(p: PlanTier) -> (u64, u64) {
    match p {
        PlanTier::Free => (100, 10_000),
        PlanTier::Pro => (1_000, 100_000),
        PlanTier::Enterprise => (u64::MAX, u64::MAX),
    }
}

fn check_positive(field: &str, v: Option<u64>) -> Result<(), ApiError> {
    if v == Some(0) {
        return Err(ApiError::validation(field, "must be at least 1"));
    }
    Ok(())
}

fn check_slug(slug: &str) -> Result<(), ApiError> {
    let ok = (1..=64).contains(&slug.len())
        && slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::validation(
            "slug",
            "must be 1 to 64 lowercase letters, digits and hyphens",
        ))
    }
}

/// Create an organization and its first admin agent (whose credential is returned once).
#[utoipa::path(post, path = "/api/v1/organizations", tag = "Organizations", security(("bearer" = ["admin:orgs"])),
    request_body = CreateOrgRequest,
    responses((status = 201, body = CreatedOrg), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, description = "ORG_SLUG_CONFLICT, AGENT_ALREADY_EXISTS", body = ErrorBody)))]
pub(crate) async fn create(
    _p: Params,
    caller: Caller,
    req: CreateOrgRequest,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    caller.require(crate::app::Scope::AdminOrgs)?;
    check_text("name", &req.name)?;
    check_slug(&req.slug)?;
    let plan = req
        .plan_tier
        .as_deref()
        .map(parse_plan)
        .transpose()?
        .unwrap_or(PlanTier::Free);
    check_positive("maxAgents", req.max_agents)?;
    check_positive("maxTokensPerMonth", req.max_tokens_per_month)?;
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
    };
    let agent = admin_agent(
        org.id,
        req.admin_email
            .unwrap_or_else(|| format!("admin@{}.agentidp.local", req.slug)),
        format!("{} admin", org.name),
        org.slug.clone(),
        TENANT_SCOPES,
        "organization-admin",
        now,
    )?;
    let (cred, secret) = new_credential(&agent, now, None, None)?;
    let st = state.clone();
    let actor = caller.actor.clone();
    let (org, agent, cred) = state
        .store
        .write(move |tx| {
            if tx.org_id_by_slug(&org.slug)?.is_some() {
                return Err(ApiError::new(StatusCode::CONFLICT, "ORG_SLUG_CONFLICT", "An organization with this slug already exists.")
                    .with_details(serde_json::json!({ "slug": org.slug })));
            }
            tx.put_org(&org);
            insert_agent(tx, &agent)?;
            tx.put_credential(&cred);
            tx.audit(st.audit_entry(&actor, "organization.create", org.id.to_string(), Outcome::Success,
                serde_json::json!({ "slug": org.slug, "adminAgentId": agent.id })))?;
            // The new tenant's own log starts with the creation of its admin.
            let tenant_actor = crate::app::Actor { id: actor.id.clone(), org: org.id, client: actor.client.clone() };
            tx.audit(st.audit_entry(&tenant_actor, "agent.register", agent.id.to_string(), Outcome::Success,
                serde_json::json!({ "email": agent.email, "role": "organization-admin", "credentialId": cred.id })))?;
            Ok::<_, ApiError>((org, agent, cred))
        })
        .await?;
    state.metrics.agents_registered.inc();
    state.metrics.audit_appends.inc();
    state.metrics.audit_appends.inc();
    let body = CreatedOrg {
        organization: OrgView::new(&org),
        admin: OrgAdmin {
            agent: AgentView::new(&agent, state.agent_did(&agent.id)),
            credential: IssuedCredential {
                credential: CredentialView::new(&cred, now),
                client_secret: secret,
            },
        },
    };
    Ok(created(&body))
}

/// List organizations, newest first.
#[utoipa::path(get, path = "/api/v1/organizations", tag = "Organizations", security(("bearer" = ["admin:orgs"])),
    params(OrgListQuery), responses((status = 200, body = OrgPage), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn list(
    _p: Params,
    caller: Caller,
    q: OrgListQuery,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    caller.require(crate::app::Scope::AdminOrgs)?;
    let (page, limit) = page_params(q.page, q.limit)?;
    let status = match q.status.as_deref() {
        None => None,
        Some("active") => Some(OrgStatus::Active),
        Some("suspended") => Some(OrgStatus::Suspended),
        Some("deleted") => Some(OrgStatus::Deleted),
        Some(_) => {
            return Err(ApiError::validation(
                "status",
                "must be one of: active, suspended, deleted",
            )
            .into())
        }
    };
    let (orgs, total) = state
        .store
        .list_orgs(status, page, limit)
        .map_err(ApiError::from)?;
    let data = orgs.iter().map(OrgView::new).collect();
    Ok(warp::reply::json(&OrgPage {
        data,
        total,
        page,
        limit,
    })
    .into_response())
}

/// Get an organization.
#[utoipa::path(get, path = "/api/v1/organizations/{orgId}", tag = "Organizations", security(("bearer" = ["admin:orgs"])),
    params(("orgId" = Uuid, Path)), responses((status = 200, body = OrgView), (status = 404, body = ErrorBody)))]
pub(crate) async fn get(
    p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    caller.require(crate::app::Scope::AdminOrgs)?;
    let id = p.id("orgId")?;
    let org = state
        .store
        .get_org(&id)
        .map_err(ApiError::from)?
        .ok_or_else(ApiError::org_not_found)?;
    Ok(warp::reply::json(&OrgView::new(&org)).into_response())
}

fn protected() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "ORG_PROTECTED",
        "The node's own organization cannot be suspended or deleted.",
    )
}

/// Update an organization (name, plan, limits, active/suspended).
#[utoipa::path(patch, path = "/api/v1/organizations/{orgId}", tag = "Organizations", security(("bearer" = ["admin:orgs"])),
    params(("orgId" = Uuid, Path)), request_body = UpdateOrgRequest,
    responses((status = 200, body = OrgView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn update(
    p: Params,
    caller: Caller,
    req: UpdateOrgRequest,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    caller.require(crate::app::Scope::AdminOrgs)?;
    let id = p.id("orgId")?;
    if let Some(n) = &req.name {
        check_text("name", n)?;
    }
    let plan = req.plan_tier.as_deref().map(parse_plan).transpose()?;
    check_positive("maxAgents", req.max_agents)?;
    check_positive("maxTokensPerMonth", req.max_tokens_per_month)?;
    let status = match req.status.as_deref() {
        None => None,
        Some("active") => Some(OrgStatus::Active),
        Some("suspended") => Some(OrgStatus::Suspended),
        Some(_) => {
            return Err(ApiError::validation(
                "status",
                "must be active or suspended (use DELETE to delete)",
            )
            .into())
        }
    };
    if req.name.is_none()
        && plan.is_none()
        && req.max_agents.is_none()
        && req.max_tokens_per_month.is_none()
        && status.is_none()
    {
        return Err(ApiError::validation("body", "give at least one field to change").into());
    }
    let now = state.clock.now_ms();
    let entry = state.audit_entry(
        &caller.actor,
        "organization.update",
        id.to_string(),
        Outcome::Success,
        serde_json::json!({ "status": req.status, "planTier": req.plan_tier, "name": req.name }),
    );
    let org = state
        .write_audited_api(entry, move |tx| {
            let mut o = tx.get_org(&id)?.ok_or_else(ApiError::org_not_found)?;
            if o.status == OrgStatus::Deleted {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "ORG_ALREADY_DELETED",
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
                o.max_agents = v;
            }
            if let Some(v) = req.max_tokens_per_month {
                o.max_tokens_per_month = v;
            }
            if let Some(s) = status {
                if s == OrgStatus::Suspended && o.status == OrgStatus::Active {
                    // A new token epoch: tokens issued until now stay dead after a reactivation.
                    o.token_epoch = o.token_epoch.wrapping_add(1);
                }
                o.status = s;
            }
            o.updated_at = now;
            tx.put_org(&o);
            Ok(o)
        })
        .await?;
    Ok(warp::reply::json(&OrgView::new(&org)).into_response())
}

/// Soft-delete an organization: irreversible; its agents can get and use no token.
#[utoipa::path(delete, path = "/api/v1/organizations/{orgId}", tag = "Organizations", security(("bearer" = ["admin:orgs"])),
    params(("orgId" = Uuid, Path)),
    responses((status = 204, description = "Deleted"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "ORG_ALREADY_DELETED", body = ErrorBody)))]
pub(crate) async fn delete(
    p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    caller.require(crate::app::Scope::AdminOrgs)?;
    let id = p.id("orgId")?;
    let now = state.clock.now_ms();
    let entry = state.audit_entry(
        &caller.actor,
        "organization.delete",
        id.to_string(),
        Outcome::Success,
        serde_json::json!({}),
    );
    state
        .write_audited_api(entry, move |tx| {
            let mut o = tx.get_org(&id)?.ok_or_else(ApiError::org_not_found)?;
            if o.system {
                return Err(protected());
            }
            if o.status == OrgStatus::Deleted {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "ORG_ALREADY_DELETED",
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
    Ok(warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response())
}
