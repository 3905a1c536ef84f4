//! The audit log as its readers see it (scope `audit:read`): the caller's organization's
//! entries, filtered and paginated by cursor; and the verification of the hash chain,
//! incremental from the last verified checkpoint, rate-limited per organization. Nothing here
//! changes or deletes an entry (entries are appended by the writes they record).

use storage::{AuditEntry, AuditFilter, ChainReport};

use crate::app::{AppState, Caller, DomainError, Scope};
use crate::clock::parse_rfc3339;

/// Default page size of the listing.
const DEFAULT_LIMIT: usize = 100;
/// Largest page size of the listing.
const MAX_LIMIT: usize = 500;
/// Time between two full verifications requested over the API.
const FULL_VERIFY_INTERVAL_MS: i64 = 60_000;

/// The listing's parameters, as the caller gave them.
#[derive(Debug, Clone, Default)]
pub(crate) struct AuditQuery {
    /// Exact action.
    pub(crate) action: Option<String>,
    /// Exact actor.
    pub(crate) actor: Option<String>,
    /// Exact target.
    pub(crate) target: Option<String>,
    /// RFC 3339 lower bound (inclusive).
    pub(crate) from: Option<String>,
    /// RFC 3339 upper bound (inclusive).
    pub(crate) to: Option<String>,
    /// Page size, 1 to 500 (default 100).
    pub(crate) limit: Option<usize>,
    /// `nextCursor` of the previous page.
    pub(crate) cursor: Option<String>,
}

/// A listing request, checked.
#[derive(Debug, Clone)]
pub(crate) struct Listing {
    pub(crate) filter: AuditFilter,
    /// Entries before this sequence number (the cursor).
    pub(crate) before: Option<u64>,
    pub(crate) limit: usize,
}

fn time_param(name: &str, v: Option<&str>) -> Result<Option<i64>, DomainError> {
    v.map(|s| {
        parse_rfc3339(s).ok_or_else(|| DomainError::validation(name, "must be an RFC 3339 time"))
    })
    .transpose()
}

impl AuditQuery {
    /// Checks the parameters: the page size, the cursor, the times.
    pub(crate) fn check(self) -> Result<Listing, DomainError> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(DomainError::validation(
                "limit",
                "must be between 1 and 500",
            ));
        }
        let before = self
            .cursor
            .as_deref()
            .map(|c| {
                c.parse::<u64>()
                    .map_err(|_| DomainError::validation("cursor", "must be a nextCursor value"))
            })
            .transpose()?;
        let from = time_param("from", self.from.as_deref())?;
        let to = time_param("to", self.to.as_deref())?;
        Ok(Listing {
            filter: AuditFilter {
                action: self.action,
                actor: self.actor,
                target: self.target,
                from,
                to,
            },
            before,
            limit,
        })
    }
}

/// The caller's organization's entries, newest first, and the cursor of the next page.
pub(crate) fn list(
    state: &AppState,
    caller: &Caller,
    query: AuditQuery,
) -> Result<(Vec<AuditEntry>, Option<u64>), DomainError> {
    caller.require(Scope::AuditRead)?;
    let l = query.check()?;
    Ok(state
        .store
        .list_audit(&caller.org_id, &l.filter, l.before, l.limit)?)
}

/// Verifies the hash chain: from the last checkpoint verified intact (the first call after a
/// start re-hashes the whole chain), or the whole chain when `full` (instance admin only, once
/// a minute). Rate-limited per organization.
pub(crate) async fn verify(
    state: &AppState,
    caller: &Caller,
    full: bool,
) -> Result<ChainReport, DomainError> {
    caller.require(Scope::AuditRead)?;
    let now = state.clock.now_ms();
    if let Err(wait) = state
        .rate_limiter_audit
        .check(&caller.org_id.to_string(), now)
    {
        return Err(DomainError::rate_limited(
            "audit chain verifications for this organization",
            wait,
        ));
    }
    if full {
        caller.require(Scope::AdminOrgs)?;
        let mut last = match state.audit_full_verified_at.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(at) = *last {
            if now - at < FULL_VERIFY_INTERVAL_MS {
                let wait = ((FULL_VERIFY_INTERVAL_MS - (now - at)) / 1000).max(1) as u64;
                return Err(DomainError::rate_limited(
                    "full audit chain verifications (one a minute)",
                    wait,
                ));
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
        .map_err(|_| DomainError::Internal)??;
    if let Ok(mut cp) = state.audit_checkpoint.lock() {
        // Only ever forward: a concurrent verification may already have gone further, and a
        // broken chain forgets the checkpoint so that the next call re-hashes everything.
        match report.checkpoint() {
            Some(new) if cp.as_ref().is_none_or(|old| new.seq >= old.seq) => *cp = Some(new),
            Some(_) => {}
            None => *cp = None,
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{testing, ErrorCode};

    fn field_of(e: DomainError) -> String {
        assert_eq!(e.code(), ErrorCode::ValidationError, "{e}");
        e.details().unwrap()["field"].as_str().unwrap().to_string()
    }

    #[test]
    fn query_parameters_are_checked() {
        let l = AuditQuery::default().check().unwrap();
        assert_eq!((l.limit, l.before), (100, None));
        assert!(l.filter.action.is_none() && l.filter.from.is_none());

        let l = AuditQuery {
            action: Some("agent.register".into()),
            from: Some("2026-03-01T08:00:00Z".into()),
            to: Some("2026-03-01T09:00:00.500+01:00".into()),
            limit: Some(500),
            cursor: Some("42".into()),
            ..AuditQuery::default()
        }
        .check()
        .unwrap();
        assert_eq!(l.limit, 500);
        assert_eq!(l.before, Some(42));
        assert_eq!(l.filter.action.as_deref(), Some("agent.register"));
        assert_eq!(l.filter.from, Some(1_772_352_000_000));
        assert_eq!(l.filter.to, Some(1_772_352_000_500));

        for (q, field) in [
            (
                AuditQuery {
                    limit: Some(0),
                    ..AuditQuery::default()
                },
                "limit",
            ),
            (
                AuditQuery {
                    limit: Some(501),
                    ..AuditQuery::default()
                },
                "limit",
            ),
            (
                AuditQuery {
                    cursor: Some("-1".into()),
                    ..AuditQuery::default()
                },
                "cursor",
            ),
            (
                AuditQuery {
                    cursor: Some("next".into()),
                    ..AuditQuery::default()
                },
                "cursor",
            ),
            (
                AuditQuery {
                    from: Some("yesterday".into()),
                    ..AuditQuery::default()
                },
                "from",
            ),
            (
                AuditQuery {
                    to: Some("2026-03-01".into()),
                    ..AuditQuery::default()
                },
                "to",
            ),
        ] {
            assert_eq!(field_of(q.check().unwrap_err()), field);
        }
    }

    /// The listing is the caller's organization's, newest first, paged by cursor, filtered.
    #[tokio::test]
    async fn listing_pages_and_filters_the_callers_organization() {
        let dir = tempfile::tempdir().unwrap();
        let state = testing::state(dir.path()).await;
        let admin = testing::instance_admin(&state);
        for i in 0..5 {
            let entry = state.audit_entry(
                &admin.actor,
                "test.event",
                format!("t{i}"),
                storage::Outcome::Success,
                serde_json::json!({}),
            );
            state.write_audited(entry, |_| Ok(())).await.unwrap();
        }
        let page = |cursor: Option<String>| {
            list(
                &state,
                &admin,
                AuditQuery {
                    action: Some("test.event".into()),
                    limit: Some(2),
                    cursor,
                    ..AuditQuery::default()
                },
            )
            .unwrap()
        };
        let (first, next) = page(None);
        let targets: Vec<&str> = first.iter().map(|e| e.body.target.as_str()).collect();
        assert_eq!(targets, ["t4", "t3"]);
        let (second, _) = page(next.map(|n| n.to_string()));
        let targets: Vec<&str> = second.iter().map(|e| e.body.target.as_str()).collect();
        assert_eq!(targets, ["t2", "t1"]);
        // Another organization's caller sees none of them; a caller without audit:read is refused.
        let mut other = testing::caller_with(&state, &[Scope::AuditRead]);
        other.org_id = uuid::Uuid::new_v4();
        let (theirs, _) = list(&state, &other, AuditQuery::default()).unwrap();
        assert!(theirs.is_empty());
        let reader = testing::caller_with(&state, &[Scope::AgentsRead]);
        assert_eq!(
            list(&state, &reader, AuditQuery::default())
                .unwrap_err()
                .code(),
            ErrorCode::AuthorizationError
        );
    }

    /// Verification: intact chain, rate limit per organization, full verification for the
    /// instance admin once a minute.
    #[tokio::test]
    async fn verification_is_rate_limited_and_full_runs_once_a_minute() {
        let dir = tempfile::tempdir().unwrap();
        let state = testing::state(dir.path()).await;
        let admin = testing::instance_admin(&state);
        let r = verify(&state, &admin, false).await.unwrap();
        assert!(r.first_broken_seq.is_none());
        assert!(r.entries >= 1);
        let full = verify(&state, &admin, true).await.unwrap();
        assert_eq!(full.entries, r.entries);
        let again = verify(&state, &admin, true).await.unwrap_err();
        assert!(
            matches!(again, DomainError::RateLimited { retry_after, .. } if (1..=60).contains(&retry_after)),
            "{again:?}"
        );
        let auditor = testing::caller_with(&state, &[Scope::AuditRead]);
        assert_eq!(
            verify(&state, &auditor, true).await.unwrap_err().code(),
            ErrorCode::AuthorizationError
        );
        // Bursts of ten per organization, then 429.
        let mut limited = 0;
        for _ in 0..20 {
            if let Err(DomainError::RateLimited { .. }) = verify(&state, &admin, false).await {
                limited += 1;
            }
        }
        assert!(limited > 0, "twenty verifications at once were all allowed");
    }
}
