//! Tier status and upgrades, analytics, billing usage and organization members (issue 18).
//! Metering and enforcement are in [`super::usage`], Stripe in [`super::billing`].

use std::collections::HashMap;

use storage::{keys, Member, Organization, Outcome as AuditOutcome, PlanTier, Usage};
use uuid::Uuid;

use super::billing::rank;
use super::error::DomainError;
use super::usage::{self, OrgLimits};
use super::vocab::{ErrorCode, Scope};
use super::{AppState, Caller};

/// Refuses unless the caller is an admin of its organization (holds every tenant scope).
pub(crate) fn require_org_admin(caller: &Caller) -> Result<(), DomainError> {
    if Scope::TENANT.iter().all(|s| caller.has(*s)) {
        Ok(())
    } else {
        Err(DomainError::forbidden(
            ErrorCode::AuthorizationError,
            "Only an organization admin (holding agents:read, agents:write and audit:read) may do this.",
        ))
    }
}

fn own_org(state: &AppState, caller: &Caller) -> Result<Organization, DomainError> {
    state
        .store
        .get_org(&caller.org_id)?
        .ok_or_else(DomainError::org_not_found)
}

/// The tier status of the caller's organization.
pub(crate) struct TierStatus {
    pub(crate) org: Organization,
    pub(crate) limits: OrgLimits,
    pub(crate) agents: u64,
    pub(crate) tokens_this_month: u64,
    pub(crate) requests_this_minute: u64,
    pub(crate) period: (String, String),
}

pub(crate) fn tier_status(state: &AppState, caller: &Caller) -> Result<TierStatus, DomainError> {
    let org = own_org(state, caller)?;
    let now = state.clock.now_ms();
    let (tokens, calls) = state.usage.live(&org.id, now)?;
    let month = usage::month_of_day(usage::day_of(now));
    Ok(TierStatus {
        limits: OrgLimits::of(&org),
        agents: state.store.org_agent_count(&org.id)?,
        tokens_this_month: tokens,
        requests_this_minute: calls,
        period: (
            usage::date_of_day(usage::first_day_of_month(month)),
            usage::date_of_day(usage::first_day_of_month(month + 1) - 1),
        ),
        org,
    })
}

/// Parses a target tier of an upgrade.
pub(crate) fn parse_target(s: &str) -> Result<PlanTier, DomainError> {
    match s {
        "pro" => Ok(PlanTier::Pro),
        "enterprise" => Ok(PlanTier::Enterprise),
        "free" => Err(DomainError::Invalid {
            code: ErrorCode::DowngradeNotPermitted,
            message: "Downgrading tiers is not supported via this endpoint.".into(),
            details: None,
        }),
        _ => Err(DomainError::validation(
            "targetTier",
            "must be one of: pro, enterprise",
        )),
    }
}

/// Starts an upgrade of the caller's organization to `target` (organization admins only):
/// a Stripe Checkout Session whose completion (webhook) applies it.
pub(crate) async fn upgrade(
    state: &AppState,
    caller: &Caller,
    target: Option<&str>,
    success_url: Option<&str>,
    cancel_url: Option<&str>,
) -> Result<(super::billing::Checkout, PlanTier), DomainError> {
    require_org_admin(caller)?;
    let target = match target {
        Some(t) => parse_target(t)?,
        // `POST /billing/checkout` without a tier: the next tier up.
        None => match own_org(state, caller)?.plan_tier {
            PlanTier::Free => PlanTier::Pro,
            _ => PlanTier::Enterprise,
        },
    };
    for (name, u) in [("successUrl", success_url), ("cancelUrl", cancel_url)] {
        if let Some(u) = u {
            let ok = url::Url::parse(u)
                .map(|x| matches!(x.scheme(), "http" | "https"))
                .unwrap_or(false);
            if !ok || u.len() > 2048 {
                return Err(DomainError::validation(
                    name,
                    "must be an absolute http(s) URL",
                ));
            }
        }
    }
    let org = own_org(state, caller)?;
    if org.plan_tier == target {
        return Err(DomainError::Invalid {
            code: ErrorCode::AlreadyOnTier,
            message: format!(
                "Your organization is already on the '{}' tier.",
                target.as_str()
            ),
            details: None,
        });
    }
    if rank(target) < rank(org.plan_tier) {
        return Err(DomainError::Invalid {
            code: ErrorCode::DowngradeNotPermitted,
            message: "Downgrading tiers is not supported via this endpoint.".into(),
            details: None,
        });
    }
    let session = state
        .billing
        .checkout(
            org.id,
            target,
            success_url,
            cancel_url,
            &state.settings.issuer,
        )
        .await?;
    state
        .audit_detached(state.audit_entry(
            &caller.actor,
            "billing.checkout",
            org.id.to_string(),
            AuditOutcome::Success,
            serde_json::json!({ "targetTier": target.as_str(), "sessionId": session.id }),
        ))
        .await;
    Ok((session, target))
}

/// Parses `days` (1 to 90, default 30).
pub(crate) fn parse_days(days: Option<&str>) -> Result<i64, DomainError> {
    let Some(d) = days else { return Ok(30) };
    let n: i64 = d.trim().parse().map_err(|_| DomainError::Invalid {
        code: ErrorCode::ValidationError,
        message: "Query parameter `days` must be a positive integer.".into(),
        details: Some(serde_json::json!({ "field": "days" })),
    })?;
    if n < 1 {
        return Err(DomainError::Invalid {
            code: ErrorCode::ValidationError,
            message: "Query parameter `days` must be a positive integer.".into(),
            details: Some(serde_json::json!({ "field": "days" })),
        });
    }
    if n > 90 {
        return Err(DomainError::Invalid {
            code: ErrorCode::ValidationError,
            message: "Query parameter `days` must not exceed 90.".into(),
            details: Some(serde_json::json!({ "field": "days", "max": 90, "provided": n })),
        });
    }
    Ok(n)
}

async fn flushed(state: &AppState) -> Result<(), DomainError> {
    state.usage.flush().await?;
    Ok(())
}

/// Tokens issued per UTC day, the last `days` days (today included), oldest first.
pub(crate) async fn token_trend(
    state: &AppState,
    caller: &Caller,
    days: i64,
) -> Result<Vec<(String, u64)>, DomainError> {
    caller.require(Scope::AgentsRead)?;
    flushed(state).await?;
    let today = usage::day_of(state.clock.now_ms());
    let first = (today - days + 1).max(0);
    let org = caller.org_id;
    let rows = state.store.usage_range(
        keys::usage_org_day(&org, first as u64),
        keys::usage_org_day(&org, today as u64 + 1),
    )?;
    let by_day: HashMap<Vec<u8>, Usage> = rows.into_iter().collect();
    Ok((first..=today)
        .map(|d| {
            let n = by_day
                .get(&keys::usage_org_day(&org, d as u64))
                .map_or(0, |u| u.tokens);
            (usage::date_of_day(d), n)
        })
        .collect())
}

/// Activity (tokens + API calls) by day of week (0 = Sunday) and UTC hour over the last 90
/// days; cells with a count only.
pub(crate) async fn activity(
    state: &AppState,
    caller: &Caller,
) -> Result<Vec<(u8, u8, u64)>, DomainError> {
    caller.require(Scope::AgentsRead)?;
    flushed(state).await?;
    let now = state.clock.now_ms();
    let org = caller.org_id;
    let first_hour = ((usage::day_of(now) - 89) * 24).max(0) as u64;
    let rows = state.store.usage_range(
        keys::usage_org_hour(&org, first_hour),
        keys::prefix_range(&keys::usage_org_hour_prefix(&org)).1,
    )?;
    let mut cells = [[0u64; 24]; 7];
    let prefix_len = keys::usage_org_hour_prefix(&org).len();
    for (k, u) in rows {
        let mut h = [0u8; 8];
        if k.len() != prefix_len + 8 {
            continue;
        }
        h.copy_from_slice(&k[prefix_len..]);
        let hour = u64::from_be_bytes(h) as i64;
        let day = hour.div_euclid(24);
        // 1970-01-01 was a Thursday (4).
        let dow = (day + 4).rem_euclid(7) as usize;
        cells[dow][hour.rem_euclid(24) as usize] += u.tokens + u.api_calls;
    }
    let mut out = Vec::new();
    for (d, row) in cells.iter().enumerate() {
        for (h, n) in row.iter().enumerate() {
            if *n > 0 {
                out.push((d as u8, h as u8, *n));
            }
        }
    }
    Ok(out)
}

/// One agent's usage this month.
pub(crate) struct AgentUsage {
    pub(crate) agent_id: Uuid,
    pub(crate) email: Option<String>,
    pub(crate) usage: Usage,
}

/// Per-agent tokens and API calls this calendar month, most tokens first (agents without
/// activity included with zeros).
pub(crate) async fn agent_summary(
    state: &AppState,
    caller: &Caller,
) -> Result<(String, Vec<AgentUsage>), DomainError> {
    caller.require(Scope::AgentsRead)?;
    flushed(state).await?;
    let month = usage::month_of_day(usage::day_of(state.clock.now_ms()));
    let org = caller.org_id;
    let (start, end) = keys::prefix_range(&keys::usage_agent_month_prefix(&org, month));
    let prefix_len = start.len();
    let mut by_agent: HashMap<Uuid, Usage> = HashMap::new();
    for (k, u) in state.store.usage_range(start, end)? {
        if let Ok(id) = Uuid::from_slice(&k[prefix_len..]) {
            by_agent.insert(id, u);
        }
    }
    let mut out: Vec<AgentUsage> = state
        .store
        .org_agents(&org)?
        .into_iter()
        .map(|a| AgentUsage {
            usage: by_agent.get(&a.id).copied().unwrap_or_default(),
            agent_id: a.id,
            email: Some(a.email),
        })
        .collect();
    out.sort_by(|a, b| {
        b.usage
            .tokens
            .cmp(&a.usage.tokens)
            .then(b.usage.api_calls.cmp(&a.usage.api_calls))
            .then(a.agent_id.cmp(&b.agent_id))
    });
    Ok((usage::month_name(month), out))
}

/// Today's usage of the caller's organization (`/billing/usage`).
pub(crate) async fn usage_today(
    state: &AppState,
    caller: &Caller,
) -> Result<(String, Usage), DomainError> {
    caller.require(Scope::AgentsRead)?;
    flushed(state).await?;
    let day = usage::day_of(state.clock.now_ms());
    let u = state
        .store
        .get_usage(&keys::usage_org_day(&caller.org_id, day.max(0) as u64))?;
    Ok((usage::date_of_day(day), u))
}

// ---------- members ----------

fn parse_role(r: &str) -> Result<&'static str, DomainError> {
    match r {
        "member" => Ok("member"),
        "admin" => Ok("admin"),
        _ => Err(DomainError::validation(
            "role",
            "role must be one of: member, admin.",
        )),
    }
}

/// The organization `org_id` as the caller may manage its members: its own (as an admin) or
/// any (instance admin). Another organization is "not found".
pub(crate) fn managed_org(caller: &Caller, org_id: Uuid, write: bool) -> Result<(), DomainError> {
    if caller.has(Scope::AdminOrgs) {
        return Ok(());
    }
    if caller.org_id != org_id {
        return Err(DomainError::org_not_found());
    }
    if write {
        require_org_admin(caller)
    } else {
        caller.require(Scope::AgentsRead)
    }
}

/// Adds an agent of the organization as a member (`member`: no extra scopes; `admin`: the
/// organization-admin scopes, i.e. every tenant scope).
pub(crate) async fn add_member(
    state: &AppState,
    caller: &Caller,
    org_id: Uuid,
    agent_id: Uuid,
    role: &str,
) -> Result<Member, DomainError> {
    managed_org(caller, org_id, true)?;
    let role = parse_role(role)?;
    let now = state.clock.now_ms();
    let entry = state.audit_entry(
        &caller.actor,
        "organization.member.add",
        agent_id.to_string(),
        AuditOutcome::Success,
        serde_json::json!({ "organizationId": org_id, "role": role }),
    );
    let m = state
        .write_audited(entry, move |tx| {
            tx.get_org(&org_id)?
                .ok_or_else(DomainError::org_not_found)?;
            // Another organization's agent is "not found" here, like everywhere else.
            let mut agent = tx
                .get_agent(&agent_id)?
                .filter(|a| a.org_id == org_id)
                .ok_or_else(DomainError::agent_not_found)?;
            if tx.get_member(&org_id, &agent_id)?.is_some() {
                return Err(DomainError::conflict(
                    ErrorCode::AlreadyMember,
                    "The agent is already a member of this organization.",
                ));
            }
            if role == "admin" {
                for s in Scope::TENANT {
                    if !agent.scopes.iter().any(|x| x == s.as_str()) {
                        agent.scopes.push(s.as_str().to_string());
                    }
                }
                agent.updated_at = now;
                tx.put_agent(&agent)?;
            }
            let m = Member {
                id: Uuid::new_v4(),
                org_id,
                agent_id,
                role: role.to_string(),
                joined_at: now,
            };
            tx.put_member(&m);
            Ok(m)
        })
        .await?;
    Ok(m)
}

/// The organization's members.
pub(crate) fn list_members(
    state: &AppState,
    caller: &Caller,
    org_id: Uuid,
) -> Result<Vec<Member>, DomainError> {
    managed_org(caller, org_id, false)?;
    state
        .store
        .get_org(&org_id)?
        .ok_or_else(DomainError::org_not_found)?;
    Ok(state.store.list_members(&org_id)?)
}

/// Removes a membership; an `admin` member loses the organization-admin scopes it was given
/// except `agents:read` (refused when it is the last admin).
pub(crate) async fn remove_member(
    state: &AppState,
    caller: &Caller,
    org_id: Uuid,
    agent_id: Uuid,
) -> Result<(), DomainError> {
    managed_org(caller, org_id, true)?;
    let now = state.clock.now_ms();
    let entry = state.audit_entry(
        &caller.actor,
        "organization.member.remove",
        agent_id.to_string(),
        AuditOutcome::Success,
        serde_json::json!({ "organizationId": org_id }),
    );
    let system = state.settings.system_org == org_id;
    state
        .write_audited(entry, move |tx| {
            let m = tx.get_member(&org_id, &agent_id)?.ok_or_else(|| {
                DomainError::not_found(
                    ErrorCode::MemberNotFound,
                    "The agent is not a member of this organization.",
                )
            })?;
            if m.role == "admin" {
                if let Some(before) = tx.get_agent(&agent_id)? {
                    let mut after = before.clone();
                    after.scopes.retain(|s| {
                        s == Scope::AgentsRead.as_str() || s == Scope::AdminOrgs.as_str()
                    });
                    after.updated_at = now;
                    super::authz::keep_an_admin(tx, &before, &after, system)?;
                    tx.put_agent(&after)?;
                }
            }
            tx.delete_member(&org_id, &agent_id);
            Ok(())
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_bounds() {
        assert_eq!(parse_days(None).unwrap(), 30);
        assert_eq!(parse_days(Some("90")).unwrap(), 90);
        for bad in ["0", "91", "x", "-1", ""] {
            assert_eq!(
                parse_days(Some(bad)).unwrap_err().code(),
                ErrorCode::ValidationError,
                "{bad}"
            );
        }
    }
}
