//! Tiers, analytics, billing (Stripe) and organization members — the predecessor's
//! `tiers.txt`, `analytics.txt`, `billing.txt` and the members part of `organizations.txt`.
//! The handlers call [`crate::app::tenancy`] and [`crate::app::billing`].

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
use warp::http::StatusCode;
use warp::{Rejection, Reply};

use crate::app::{billing, tenancy, AppState, ErrorCode};
use crate::clock::rfc3339;
use crate::http::error::ApiError;
use crate::http::extract::{created, Params};
use crate::http::Caller;
use crate::model::ErrorBody;

fn disabled(what: &str) -> Rejection {
    Rejection::from(ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::RouteNotFound,
        format!("{what} is not enabled on this instance."),
    ))
}

fn analytics_on(state: &AppState) -> Result<(), Rejection> {
    if state.billing.analytics_enabled {
        Ok(())
    } else {
        Err(disabled("Analytics"))
    }
}

fn billing_on(state: &AppState) -> Result<(), Rejection> {
    if state.billing.enabled {
        Ok(())
    } else {
        Err(disabled("Billing"))
    }
}

fn json<T: Serialize>(v: &T) -> warp::reply::Response {
    warp::reply::json(v).into_response()
}

// ---------- tiers ----------

/// Hard limits of the organization; `null`: unlimited.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TierLimits {
    #[schema(required = true, maximum = 9007199254740991_u64)]
    pub(crate) max_agents: Option<u64>,
    #[schema(required = true, maximum = 9007199254740991_u64)]
    pub(crate) max_tokens_per_month: Option<u64>,
    #[schema(required = true, maximum = 9007199254740991_u64)]
    pub(crate) rate_limit_per_minute: Option<u64>,
}

/// Live usage counters.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TierUsage {
    pub(crate) agents_registered: u64,
    pub(crate) tokens_this_month: u64,
    pub(crate) requests_this_minute: u64,
}

/// Tier, limits and live usage of the caller's organization.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TierStatus {
    pub(crate) organization_id: Uuid,
    /// free, pro or enterprise.
    pub(crate) tier: String,
    pub(crate) limits: TierLimits,
    pub(crate) usage: TierUsage,
    /// Whether the node enforces the limits (`--tier-enforcement`).
    pub(crate) enforced: bool,
    pub(crate) billing_period_start: String,
    pub(crate) billing_period_end: String,
}

/// Tier status of the caller's organization.
#[utoipa::path(get, operation_id = "getTierStatus", path = "/api/v1/tiers/status", tag = "Tiers", security(("bearer" = [])),
    responses((status = 200, body = TierStatus)))]
pub(crate) async fn tier_status(
    _p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let s = tenancy::tier_status(&state, &caller)?;
    let w = crate::app::orgs::limit_on_wire;
    Ok(json(&TierStatus {
        organization_id: s.org.id,
        tier: s.org.plan_tier.as_str().into(),
        limits: TierLimits {
            max_agents: w(s.org.max_agents),
            max_tokens_per_month: w(s.limits.tokens_per_month),
            rate_limit_per_minute: w(s.limits.requests_per_minute),
        },
        usage: TierUsage {
            agents_registered: s.agents,
            tokens_this_month: s.tokens_this_month,
            requests_this_minute: s.requests_this_minute,
        },
        enforced: state.usage.enforcing(),
        billing_period_start: s.period.0,
        billing_period_end: s.period.1,
    }))
}

/// Body of `POST /api/v1/tiers/upgrade`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct TierUpgradeRequest {
    /// pro or enterprise (never lower than the current tier).
    #[schema(max_length = 32)]
    pub(crate) target_tier: String,
    #[schema(max_length = 2048)]
    pub(crate) success_url: Option<String>,
    #[schema(max_length = 2048)]
    pub(crate) cancel_url: Option<String>,
}

/// A Stripe Checkout Session to pay for an upgrade.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CheckoutResponse {
    /// Stripe-hosted payment page.
    pub(crate) checkout_url: String,
    pub(crate) session_id: String,
    pub(crate) target_tier: String,
}

/// Start an upgrade (organization admins only): a Stripe Checkout Session; the tier changes
/// when Stripe's signed webhook reports the payment.
#[utoipa::path(post, operation_id = "initiateTierUpgrade", path = "/api/v1/tiers/upgrade", tag = "Tiers", security(("bearer" = [])),
    request_body = TierUpgradeRequest,
    responses((status = 201, body = CheckoutResponse),
        (status = 400, description = "ALREADY_ON_TIER, DOWNGRADE_NOT_PERMITTED, VALIDATION_ERROR", body = ErrorBody),
        (status = 404, description = "Billing is disabled (--no-billing), or BILLING_NOT_CONFIGURED (no Stripe settings)", body = ErrorBody),
        (status = 503, description = "STRIPE_ERROR", body = ErrorBody)))]
pub(crate) async fn tier_upgrade(
    _p: Params,
    caller: Caller,
    req: TierUpgradeRequest,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    checkout(
        &state,
        &caller,
        Some(&req.target_tier),
        req.success_url.as_deref(),
        req.cancel_url.as_deref(),
    )
    .await
}

/// A Checkout Session for the caller's organization, as `201` (both routes into an upgrade).
async fn checkout(
    state: &AppState,
    caller: &Caller,
    target_tier: Option<&str>,
    success_url: Option<&str>,
    cancel_url: Option<&str>,
) -> Result<warp::reply::Response, Rejection> {
    billing_on(state)?;
    let (s, tier) = tenancy::upgrade(state, caller, target_tier, success_url, cancel_url).await?;
    Ok(created(&CheckoutResponse {
        checkout_url: s.url,
        session_id: s.id,
        target_tier: tier.as_str().into(),
    }))
}

// ---------- billing ----------

/// Body of `POST /api/v1/billing/checkout` (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CheckoutRequest {
    /// pro or enterprise; default: the next tier up.
    #[schema(max_length = 32)]
    pub(crate) target_tier: Option<String>,
    #[schema(max_length = 2048)]
    pub(crate) success_url: Option<String>,
    #[schema(max_length = 2048)]
    pub(crate) cancel_url: Option<String>,
}

/// Create a Stripe Checkout Session for the caller's organization (organization admins only).
#[utoipa::path(post, operation_id = "createBillingCheckoutSession", path = "/api/v1/billing/checkout", tag = "Billing", security(("bearer" = [])),
    request_body(content = CheckoutRequest, description = "Optional"),
    responses((status = 201, body = CheckoutResponse),
        (status = 400, description = "ALREADY_ON_TIER, DOWNGRADE_NOT_PERMITTED, VALIDATION_ERROR", body = ErrorBody),
        (status = 404, description = "Billing is disabled (--no-billing), or BILLING_NOT_CONFIGURED (no Stripe settings)", body = ErrorBody),
        (status = 503, description = "STRIPE_ERROR", body = ErrorBody)))]
pub(crate) async fn billing_checkout(
    _p: Params,
    caller: Caller,
    req: CheckoutRequest,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    checkout(
        &state,
        &caller,
        req.target_tier.as_deref(),
        req.success_url.as_deref(),
        req.cancel_url.as_deref(),
    )
    .await
}

/// Acknowledgement of a webhook event.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WebhookAck {
    pub(crate) received: bool,
    /// applied, replayed (already processed: nothing changed) or ignored (an event type the
    /// node does not act on).
    pub(crate) outcome: String,
}

/// Stripe's webhook (no bearer token: authenticated by its `Stripe-Signature`).
#[utoipa::path(post, operation_id = "handleStripeWebhook", path = "/api/v1/billing/webhook", tag = "Billing",
    params(("Stripe-Signature" = String, Header, description = "t=<unix seconds>,v1=<hex HMAC-SHA256>[,v1=…]")),
    request_body(content = Object, description = "A Stripe event, as Stripe sends it"),
    responses((status = 200, body = WebhookAck),
        (status = 400, description = "STRIPE_SIGNATURE_INVALID, MISSING_HEADER, MALFORMED_JSON, VALIDATION_ERROR", body = ErrorBody),
        (status = 404, description = "Billing is disabled (--no-billing), BILLING_NOT_CONFIGURED (no Stripe settings), or the event's organization does not exist", body = ErrorBody)))]
pub(crate) async fn billing_webhook(
    _p: Params,
    signature: Option<String>,
    _content_type: Option<String>,
    body: Bytes,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    billing_on(&state)?;
    state.billing.verify(
        signature.as_deref(),
        &body,
        state.clock.now_ms().div_euclid(1000),
    )?;
    let outcome = match billing::handle_event(&state, &body).await? {
        billing::Handled::Applied => "applied",
        billing::Handled::Replayed => "replayed",
        billing::Handled::Ignored => "ignored",
    };
    Ok(json(&WebhookAck {
        received: true,
        outcome: outcome.into(),
    }))
}

/// Today's usage of the caller's organization.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UsageSummary {
    pub(crate) organization_id: Uuid,
    /// UTC date, YYYY-MM-DD.
    pub(crate) date: String,
    pub(crate) tokens_issued: u64,
    pub(crate) agents_registered: u64,
    pub(crate) credentials_generated: u64,
    pub(crate) api_calls_total: u64,
}

/// Today's metered usage of the caller's organization.
#[utoipa::path(get, operation_id = "getBillingUsage", path = "/api/v1/billing/usage", tag = "Billing", security(("bearer" = ["agents:read"])),
    responses((status = 200, body = UsageSummary), (status = 404, description = "Billing is disabled (--no-billing)", body = ErrorBody)))]
pub(crate) async fn billing_usage(
    _p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    billing_on(&state)?;
    let (date, u) = tenancy::usage_today(&state, &caller).await?;
    Ok(json(&UsageSummary {
        organization_id: caller.org_id,
        date,
        tokens_issued: u.tokens,
        agents_registered: u.agents,
        credentials_generated: u.credentials,
        api_calls_total: u.api_calls,
    }))
}

// ---------- analytics ----------

/// Query of the token trend.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct TrendQuery {
    /// Days in the window, 1 to 90 (default 30).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 90)]
    pub(crate) days: Option<String>,
}

/// Tokens issued on one UTC day.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TrendPoint {
    pub(crate) date: String,
    pub(crate) count: u64,
}

/// Daily token issuance, oldest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TokenTrend {
    pub(crate) organization_id: Uuid,
    pub(crate) days: i64,
    pub(crate) data: Vec<TrendPoint>,
}

/// Daily token issuance of the caller's organization over the last `days` days.
#[utoipa::path(get, operation_id = "getTokenTrend", path = "/api/v1/analytics/tokens", tag = "Analytics", security(("bearer" = ["agents:read"])),
    params(TrendQuery),
    responses((status = 200, body = TokenTrend), (status = 400, description = "VALIDATION_ERROR (days)", body = ErrorBody),
        (status = 404, description = "Analytics is disabled (--no-analytics)", body = ErrorBody)))]
pub(crate) async fn analytics_tokens(
    _p: Params,
    caller: Caller,
    q: TrendQuery,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    analytics_on(&state)?;
    let days = tenancy::parse_days(q.days.as_deref())?;
    let data = tenancy::token_trend(&state, &caller, days).await?;
    Ok(json(&TokenTrend {
        organization_id: caller.org_id,
        days,
        data: data
            .into_iter()
            .map(|(date, count)| TrendPoint { date, count })
            .collect(),
    }))
}

/// A heatmap cell.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HeatCell {
    /// 0 = Sunday.
    #[schema(maximum = 6)]
    pub(crate) day_of_week: u8,
    /// UTC hour.
    #[schema(maximum = 23)]
    pub(crate) hour: u8,
    pub(crate) count: u64,
}

/// Activity heatmap.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Activity {
    pub(crate) organization_id: Uuid,
    pub(crate) data: Vec<HeatCell>,
}

/// Activity (tokens and API calls) by day of week and UTC hour over the last 90 days.
#[utoipa::path(get, operation_id = "getAgentActivity", path = "/api/v1/analytics/agents/activity", tag = "Analytics", security(("bearer" = ["agents:read"])),
    responses((status = 200, body = Activity), (status = 404, description = "Analytics is disabled (--no-analytics)", body = ErrorBody)))]
pub(crate) async fn analytics_activity(
    _p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    analytics_on(&state)?;
    let cells = tenancy::activity(&state, &caller).await?;
    Ok(json(&Activity {
        organization_id: caller.org_id,
        data: cells
            .into_iter()
            .map(|(d, h, count)| HeatCell {
                day_of_week: d,
                hour: h,
                count,
            })
            .collect(),
    }))
}

/// One agent's usage this month.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AgentUsageView {
    pub(crate) agent_id: Uuid,
    pub(crate) agent_email: Option<String>,
    pub(crate) tokens_issued: u64,
    pub(crate) api_calls: u64,
    #[schema(required = true)]
    pub(crate) last_active_at: Option<String>,
}

/// Per-agent usage this month.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AgentSummary {
    pub(crate) organization_id: Uuid,
    /// YYYY-MM.
    pub(crate) month: String,
    pub(crate) data: Vec<AgentUsageView>,
}

/// Per-agent tokens and API calls this calendar month, most tokens first.
#[utoipa::path(get, operation_id = "getAgentSummary", path = "/api/v1/analytics/agents", tag = "Analytics", security(("bearer" = ["agents:read"])),
    responses((status = 200, body = AgentSummary), (status = 404, description = "Analytics is disabled (--no-analytics)", body = ErrorBody)))]
pub(crate) async fn analytics_agents(
    _p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    analytics_on(&state)?;
    let (month, rows) = tenancy::agent_summary(&state, &caller).await?;
    Ok(json(&AgentSummary {
        organization_id: caller.org_id,
        month,
        data: rows
            .into_iter()
            .map(|r| AgentUsageView {
                agent_id: r.agent_id,
                agent_email: r.email,
                tokens_issued: r.usage.tokens,
                api_calls: r.usage.api_calls,
                last_active_at: (r.usage.last_active_ms > 0)
                    .then(|| rfc3339(r.usage.last_active_ms as i64)),
            })
            .collect(),
    }))
}

// ---------- members ----------

/// Body of `POST /api/v1/organizations/{orgId}/members`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct AddMemberRequest {
    pub(crate) agent_id: Uuid,
    /// member (no extra scopes) or admin (the organization-admin scopes).
    #[schema(max_length = 16)]
    pub(crate) role: String,
}

/// A membership.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MemberView {
    pub(crate) member_id: Uuid,
    pub(crate) organization_id: Uuid,
    pub(crate) agent_id: Uuid,
    pub(crate) role: String,
    pub(crate) joined_at: String,
}

/// The members of an organization.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MemberList {
    pub(crate) data: Vec<MemberView>,
}

fn member_view(m: &storage::Member) -> MemberView {
    MemberView {
        member_id: m.id,
        organization_id: m.org_id,
        agent_id: m.agent_id,
        role: m.role.clone(),
        joined_at: rfc3339(m.joined_at),
    }
}

/// Add an agent of the organization as a member (`admin` grants the organization-admin
/// scopes). Organization admins of that organization, or the instance admin.
#[utoipa::path(post, operation_id = "addOrganizationMember", path = "/api/v1/organizations/{orgId}/members", tag = "Organizations", security(("bearer" = [])),
    params(("orgId" = Uuid, Path)), request_body = AddMemberRequest,
    responses((status = 201, body = MemberView), (status = 400, body = ErrorBody),
        (status = 404, description = "ORG_NOT_FOUND, AGENT_NOT_FOUND (also an agent of another organization)", body = ErrorBody),
        (status = 409, description = "ALREADY_MEMBER", body = ErrorBody)))]
pub(crate) async fn add_member(
    p: Params,
    caller: Caller,
    req: AddMemberRequest,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let m = tenancy::add_member(&state, &caller, p.id("orgId")?, req.agent_id, &req.role).await?;
    Ok(created(&member_view(&m)))
}

/// List an organization's members.
#[utoipa::path(get, operation_id = "listOrganizationMembers", path = "/api/v1/organizations/{orgId}/members", tag = "Organizations", security(("bearer" = [])),
    params(("orgId" = Uuid, Path)),
    responses((status = 200, body = MemberList), (status = 404, body = ErrorBody)))]
pub(crate) async fn list_members(
    p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let ms = tenancy::list_members(&state, &caller, p.id("orgId")?)?;
    Ok(json(&MemberList {
        data: ms.iter().map(member_view).collect(),
    }))
}

/// Remove a member (an admin member keeps only `agents:read`; the last admin cannot be removed).
#[utoipa::path(delete, operation_id = "removeOrganizationMember", path = "/api/v1/organizations/{orgId}/members/{agentId}", tag = "Organizations", security(("bearer" = [])),
    params(("orgId" = Uuid, Path), ("agentId" = Uuid, Path)),
    responses((status = 204, description = "Removed"), (status = 404, description = "ORG_NOT_FOUND, MEMBER_NOT_FOUND", body = ErrorBody),
        (status = 409, description = "LAST_ADMIN", body = ErrorBody)))]
pub(crate) async fn remove_member(
    p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    tenancy::remove_member(&state, &caller, p.id("orgId")?, p.id("agentId")?).await?;
    Ok(warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response())
}
