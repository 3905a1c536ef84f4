//! The audit log: `GET /api/v1/audit` (tenant-scoped, filtered, cursor-paginated) and
//! `GET /api/v1/audit/verify` (recomputes the hash chain). No route changes or deletes an entry.

use serde::Deserialize;
use storage::AuditFilter;
use warp::{Rejection, Reply};

use crate::app::AppState;
use crate::clock::parse_rfc3339;
use crate::http::error::ApiError;
use crate::http::extract::Params;
use crate::http::Caller;
use crate::model::{AuditPage, AuditVerifyView, AuditView, ErrorBody};

/// Query of the audit listing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct AuditQuery {
    /// Exact action, e.g. `agent.register`, `token.issue`, `auth.bearer`.
    action: Option<String>,
    /// Exact actor (agent id, client id or `anonymous`).
    actor: Option<String>,
    /// Exact target.
    target: Option<String>,
    /// RFC 3339 lower bound (inclusive).
    from: Option<String>,
    /// RFC 3339 upper bound (inclusive).
    to: Option<String>,
    /// Page size, 1 to 500 (default 100).
    limit: Option<usize>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

fn time_param(name: &str, v: Option<&str>) -> Result<Option<i64>, ApiError> {
    v.map(|s| {
        parse_rfc3339(s).ok_or_else(|| ApiError::validation(name, "must be an RFC 3339 time"))
    })
    .transpose()
}

/// The caller's organization's audit entries, newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "Audit", security(("bearer" = ["audit:read"])), params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn list(
    _p: Params,
    caller: Caller,
    q: AuditQuery,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    caller.require(crate::app::Scope::AuditRead)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::validation("limit", "must be between 1 and 500").into());
    }
    let before = q
        .cursor
        .as_deref()
        .map(|c| {
            c.parse::<u64>()
                .map_err(|_| ApiError::validation("cursor", "must be a nextCursor value"))
        })
        .transpose()?;
    let filter = AuditFilter {
        action: q.action,
        actor: q.actor,
        target: q.target,
        from: time_param("from", q.from.as_deref())?,
        to: time_param("to", q.to.as_deref())?,
    };
    let (entries, next) = state
        .store
        .list_audit(&caller.org_id, &filter, before, limit)
        .map_err(ApiError::from)?;
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

/// Time between two full verifications requested over the API.
const FULL_VERIFY_INTERVAL_MS: i64 = 60_000;

/// Verify the hash chain: incrementally, from the last verified checkpoint (the first call
/// after a start re-hashes the whole chain); report the first broken sequence number.
/// Rate-limited per organization.
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "Audit", security(("bearer" = ["audit:read"])),
    params(VerifyQuery),
    responses((status = 200, body = AuditVerifyView), (status = 403, body = ErrorBody),
        (status = 429, description = "RATE_LIMITED", body = ErrorBody)))]
pub(crate) async fn verify(
    _p: Params,
    caller: Caller,
    q: VerifyQuery,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    caller.require(crate::app::Scope::AuditRead)?;
    let now = state.clock.now_ms();
    if let Err(wait) = state
        .rate_limiter_audit
        .check(&caller.org_id.to_string(), now)
    {
        return Err(
            ApiError::too_many("audit chain verifications for this organization", wait).into(),
        );
    }
    let full = q.full.unwrap_or(false);
    if full {
        caller.require(crate::app::Scope::AdminOrgs)?;
        let mut last = match state.audit_full_verified_at.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(at) = *last {
            if now - at < FULL_VERIFY_INTERVAL_MS {
                let wait = ((FULL_VERIFY_INTERVAL_MS - (now - at)) / 1000).max(1) as u64;
                return Err(ApiError::too_many(
                    "full audit chain verifications (one a minute)",
                    wait,
                )
                .into());
            }
        }
        *last = Some(now);
    }
    let checkpoint = if full {
        None
    } else {
        match state.audit_checkpoint.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    };
    let store = state.store.clone();
    // Verification reads the log: keep it off the async workers.
    let report = tokio::task::spawn_blocking(move || store.verify_audit_from(checkpoint.as_ref()))
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(ApiError::from)?;
    if let Ok(mut cp) = state.audit_checkpoint.lock() {
        // Only ever forward: a concurrent verification may already have gone further, and a
        // broken chain forgets the checkpoint so that the next call re-hashes everything.
        match report.checkpoint() {
            Some(new) if cp.as_ref().is_none_or(|old| new.seq >= old.seq) => *cp = Some(new),
            Some(_) => {}
            None => *cp = None,
        }
    }
    Ok(warp::reply::json(&AuditVerifyView {
        valid: report.first_broken_seq.is_none(),
        entries: report.entries,
        head_hash: report.head_hash,
        first_broken_seq: report.first_broken_seq,
        reason: report.reason,
    })
    .into_response())
}
