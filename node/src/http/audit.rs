//! `/api/v1/audit...`: the audit log (`GET /api/v1/audit`: tenant-scoped, filtered,
//! cursor-paginated) and `GET /api/v1/audit/verify` (recomputes the hash chain), over
//! `app::audit`. No route changes or deletes an entry.

use serde::Deserialize;
use warp::{Rejection, Reply};

use crate::app::AppState;
use crate::http::extract::Params;
use crate::http::Caller;
use crate::model::{AuditPage, AuditVerifyView, AuditView, ErrorBody};

/// Query of the audit listing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    /// Exact action, e.g. `agent.register`, `token.issue`, `auth.bearer`.
    action: Option<String>,
    /// Exact actor (agent id, client id or `anonymous`).
    actor: Option<String>,
    /// Exact target.
    target: Option<String>,
    /// RFC 3339 lower bound (inclusive).
    #[param(format = DateTime)]
    from: Option<String>,
    /// RFC 3339 upper bound (inclusive).
    #[param(format = DateTime)]
    to: Option<String>,
    /// Page size, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// The caller's organization's audit entries, newest first.
#[utoipa::path(get, operation_id = "listAuditEntries", path = "/api/v1/audit", tag = "Audit", security(("bearer" = ["audit:read"])), params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn list(
    _p: Params,
    caller: Caller,
    q: AuditQuery,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let query = crate::app::audit::AuditQuery {
        action: q.action,
        actor: q.actor,
        target: q.target,
        from: q.from,
        to: q.to,
        limit: q.limit,
        cursor: q.cursor,
    };
    let (entries, next) = crate::app::audit::list(&state, &caller, query)?;
    Ok(warp::reply::json(&AuditPage {
        data: entries.iter().map(AuditView::new).collect(),
        next_cursor: next.map(|n| n.to_string()),
    })
    .into_response())
}

/// Query of the chain verification.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct VerifyQuery {
    /// `true`: re-hash the whole chain instead of only what was appended since the last
    /// verification (instance admin only, once a minute).
    full: Option<bool>,
}

/// Verify the hash chain: incrementally, from the last verified checkpoint (the first call
/// after a start re-hashes the whole chain); report the first broken sequence number.
/// Rate-limited per organization.
#[utoipa::path(get, operation_id = "verifyAuditChain", path = "/api/v1/audit/verify", tag = "Audit", security(("bearer" = ["audit:read"])),
    params(VerifyQuery),
    responses((status = 200, body = AuditVerifyView), (status = 403, body = ErrorBody),
        (status = 429, description = "RATE_LIMITED", body = ErrorBody)))]
pub(crate) async fn verify(
    _p: Params,
    caller: Caller,
    q: VerifyQuery,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let report = crate::app::audit::verify(&state, &caller, q.full.unwrap_or(false)).await?;
    Ok(warp::reply::json(&AuditVerifyView {
        valid: report.first_broken_seq.is_none(),
        entries: report.entries,
        head_hash: report.head_hash,
        first_broken_seq: report.first_broken_seq,
        reason: report.reason,
    })
    .into_response())
}
