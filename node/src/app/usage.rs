//! Usage metering and tier enforcement (issue 18).
//!
//! **Metering.** Every counted event (a token issued, an authenticated API call, an agent
//! registered, a credential generated) adds one to an in-memory *pending* delta keyed by
//! (organization, agent, UTC hour), in one of [`SHARDS`] mutex-guarded maps chosen by the
//! organization (no lock shared by all organizations). The deltas reach the store inside write
//! jobs the committer runs anyway: [`Tenancy::drain_into`] is called by the detached job that
//! appends a token's audit record (and by every other detached audit append), by a flush job every
//! [`FLUSH_INTERVAL`], before the analytics read, and at shutdown. A token is counted before its
//! audit job is queued, so its count is committed in the same batch as its audit record or an
//! earlier one: a `kill -9` loses a token's count only together with its audit record (the
//! committer's detached-write window: at most two batch commits). API calls made while no token
//! is issued wait at most [`FLUSH_INTERVAL`] (1 s) for the flush job. Durable rows (keys
//! 0xA0–0xA3): per organization and hour, day and calendar month; per agent and calendar month.
//!
//! **Enforcement** (`--tier-enforcement`, on by default). Each organization has a small counter
//! state behind its own mutex: tokens issued this calendar month (seeded from the durable month
//! row the first time the organization issues a token after a start) and requests in the current
//! minute. A token is *reserved* against the monthly quota (check and increment under that mutex,
//! so 16 concurrent clients can never get more than the quota) before it is signed, and released
//! if issuance fails. The per-minute limit is a fixed window per organization.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use storage::{keys, PlanTier, Store, StoreError, Tx, Usage};
use uuid::Uuid;

use super::error::DomainError;
use super::orgs::UNLIMITED;
use super::vocab::ErrorCode;
use crate::clients::ClientEntry;

/// Number of shards of the pending deltas and of the organization counters.
const SHARDS: usize = 64;
/// How often pending deltas are written when nothing else writes them.
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;
const MINUTE_MS: i64 = 60_000;

/// The default requests-per-minute limit of a tier.
pub(crate) fn default_rpm(p: PlanTier) -> u64 {
    match p {
        PlanTier::Free => 100,
        PlanTier::Pro => 1_000,
        PlanTier::Enterprise => UNLIMITED,
    }
}

/// An organization's limits as the hot path needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OrgLimits {
    pub(crate) tokens_per_month: u64,
    pub(crate) requests_per_minute: u64,
}

impl OrgLimits {
    /// The limits stored on `org` (the tier's per-minute default unless set).
    pub(crate) fn of(org: &storage::Organization) -> OrgLimits {
        OrgLimits {
            tokens_per_month: org.max_tokens_per_month,
            requests_per_minute: org
                .rate_limit_per_minute
                .unwrap_or_else(|| default_rpm(org.plan_tier)),
        }
    }

    /// No limits (an organization that does not exist any more; its tokens fail elsewhere).
    pub(crate) const NONE: OrgLimits = OrgLimits {
        tokens_per_month: UNLIMITED,
        requests_per_minute: UNLIMITED,
    };
}

/// What a request that passed the per-minute limit may tell its client (`X-RateLimit-*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateInfo {
    pub(crate) limit: u64,
    pub(crate) remaining: u64,
    /// End of the window, seconds since the epoch.
    pub(crate) reset: i64,
}

/// Calendar month index (year × 12 + month − 1) of a UTC day number.
pub(crate) fn month_of_day(day: i64) -> u64 {
    let (y, m, _) = civil(day);
    (y * 12 + i64::from(m) - 1).max(0) as u64
}

/// (year, month 1–12, day 1–31) of a day number (days since 1970-01-01), proleptic Gregorian.
pub(crate) fn civil(day: i64) -> (i64, u32, u32) {
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Day number of (year, month, 1).
pub(crate) fn first_day_of_month(month: u64) -> i64 {
    let (y, m) = ((month / 12) as i64, (month % 12) as i64 + 1);
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD` of a day number.
pub(crate) fn date_of_day(day: i64) -> String {
    let (y, m, d) = civil(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM` of a month index.
pub(crate) fn month_name(month: u64) -> String {
    format!("{:04}-{:02}", month / 12, month % 12 + 1)
}

/// UTC day number of `ms`.
pub(crate) fn day_of(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS)
}

#[derive(Debug, Default)]
struct OrgWindow {
    month: u64,
    tokens: u64,
    minute: i64,
    calls: u64,
}

type PendingKey = (Uuid, Option<Uuid>, i64);
type OrgWindows = HashMap<Uuid, Arc<Mutex<OrgWindow>>>;

/// Metering and enforcement state (one per node).
pub(crate) struct Tenancy {
    enforce: bool,
    store: Arc<Store>,
    pending: Box<[Mutex<HashMap<PendingKey, Usage>>]>,
    dirty: AtomicBool,
    orgs: Box<[RwLock<OrgWindows>]>,
    flushing: tokio::sync::Mutex<()>,
}

fn shard_of(org: &Uuid) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    org.hash(&mut h);
    (h.finish() as usize) % SHARDS
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// A token reserved against its organization's monthly quota: [`Reservation::issued`] counts
/// it; dropped without that, the reservation is released.
pub(crate) struct Reservation<'a> {
    tenancy: &'a Tenancy,
    window: Arc<Mutex<OrgWindow>>,
    month: u64,
    org: Uuid,
    agent: Uuid,
    done: bool,
}

impl Reservation<'_> {
    /// The token was issued at `now_ms`: meter it.
    pub(crate) fn issued(mut self, now_ms: i64) {
        self.done = true;
        self.tenancy.count(
            self.org,
            Some(self.agent),
            now_ms,
            Usage {
                tokens: 1,
                ..Usage::default()
            },
        );
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.done {
            let mut w = lock(&self.window);
            if w.month == self.month {
                w.tokens = w.tokens.saturating_sub(1);
            }
        }
    }
}

impl Tenancy {
    pub(crate) fn new(store: Arc<Store>, enforce: bool) -> Tenancy {
        Tenancy {
            enforce,
            store,
            pending: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            dirty: AtomicBool::new(false),
            orgs: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            flushing: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether limits are enforced (`--tier-enforcement`).
    pub(crate) fn enforcing(&self) -> bool {
        self.enforce
    }

    /// Adds `delta` to the pending counts of (`org`, `agent`) in the hour of `now_ms`.
    pub(crate) fn count(&self, org: Uuid, agent: Option<Uuid>, now_ms: i64, mut delta: Usage) {
        delta.last_active_ms = now_ms.max(0) as u64;
        let key = (org, agent, now_ms.div_euclid(HOUR_MS));
        lock(&self.pending[shard_of(&org)])
            .entry(key)
            .or_default()
            .add(&delta);
        self.dirty.store(true, Ordering::Release);
    }

    fn window(&self, org: &Uuid, month: u64) -> Result<Arc<Mutex<OrgWindow>>, StoreError> {
        let shard = &self.orgs[shard_of(org)];
        if let Some(w) = shard.read().ok().and_then(|m| m.get(org).cloned()) {
            return Ok(w);
        }
        // First use since the start: the durable month count holds every token of this month
        // (tokens counted by this process all went through an existing window).
        let seeded = self
            .store
            .get_usage(&keys::usage_org_month(org, month))?
            .tokens;
        let mut map = match shard.write() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        Ok(map
            .entry(*org)
            .or_insert_with(|| {
                Arc::new(Mutex::new(OrgWindow {
                    month,
                    tokens: seeded,
                    ..OrgWindow::default()
                }))
            })
            .clone())
    }

    /// Reserves one token of `entry`'s organization's monthly quota at `now_ms`, or refuses
    /// with `TOKEN_QUOTA_EXCEEDED` (429, `Retry-After` until the next month) when enforcing.
    pub(crate) fn reserve_token(
        &self,
        entry: &ClientEntry,
        now_ms: i64,
    ) -> Result<Reservation<'_>, DomainError> {
        let org = entry.agent.org_id;
        let month = month_of_day(day_of(now_ms));
        let window = self.window(&org, month)?;
        {
            let mut w = lock(&window);
            if w.month != month {
                w.month = month;
                w.tokens = 0;
            }
            let limit = entry.org_limits.tokens_per_month;
            if self.enforce && limit != UNLIMITED && w.tokens >= limit {
                let reset_ms = first_day_of_month(month + 1) * DAY_MS;
                let retry = ((reset_ms - now_ms) as u64).div_ceil(1000).max(1);
                return Err(DomainError::Limited {
                    code: ErrorCode::TokenQuotaExceeded,
                    message: format!(
                        "The organization has used its {limit} tokens for this month; the quota resets at {}.",
                        crate::clock::rfc3339(reset_ms)
                    ),
                    retry_after: retry,
                    rate: Some(RateInfo {
                        limit,
                        remaining: 0,
                        reset: reset_ms / 1000,
                    }),
                });
            }
            w.tokens += 1;
        }
        Ok(Reservation {
            tenancy: self,
            window,
            month,
            org,
            agent: entry.agent.id,
            done: false,
        })
    }

    /// One authenticated API call of `agent` at `now_ms`: checks the organization's
    /// per-minute limit (when enforcing) and meters the call.
    pub(crate) fn api_call(
        &self,
        org: Uuid,
        agent: Uuid,
        limits: OrgLimits,
        now_ms: i64,
    ) -> Result<RateInfo, DomainError> {
        let month = month_of_day(day_of(now_ms));
        let window = self.window(&org, month)?;
        let minute = now_ms.div_euclid(MINUTE_MS);
        let limit = limits.requests_per_minute;
        let reset = (minute + 1) * 60;
        let calls = {
            let mut w = lock(&window);
            if w.minute != minute {
                w.minute = minute;
                w.calls = 0;
            }
            if self.enforce && limit != UNLIMITED && w.calls >= limit {
                let retry = ((reset * 1000 - now_ms) as u64).div_ceil(1000).max(1);
                return Err(DomainError::Limited {
                    code: ErrorCode::RateLimitExceeded,
                    message: format!(
                        "The organization's limit of {limit} requests a minute is reached; retry in {retry} s."
                    ),
                    retry_after: retry,
                    rate: Some(RateInfo {
                        limit,
                        remaining: 0,
                        reset,
                    }),
                });
            }
            w.calls += 1;
            w.calls
        };
        self.count(
            org,
            Some(agent),
            now_ms,
            Usage {
                api_calls: 1,
                ..Usage::default()
            },
        );
        Ok(RateInfo {
            limit,
            remaining: limit.saturating_sub(calls),
            reset,
        })
    }

    /// Live counters of an organization: (tokens this month, requests this minute).
    pub(crate) fn live(&self, org: &Uuid, now_ms: i64) -> Result<(u64, u64), StoreError> {
        let month = month_of_day(day_of(now_ms));
        let window = self.window(org, month)?;
        let w = lock(&window);
        let tokens = if w.month == month { w.tokens } else { 0 };
        let calls = if w.minute == now_ms.div_euclid(MINUTE_MS) {
            w.calls
        } else {
            0
        };
        Ok((tokens, calls))
    }

    /// Takes every pending delta, summed per durable row.
    fn take_pending(&self) -> HashMap<Vec<u8>, Usage> {
        let mut rows: HashMap<Vec<u8>, Usage> = HashMap::new();
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return rows;
        }
        for shard in self.pending.iter() {
            let taken = std::mem::take(&mut *lock(shard));
            for ((org, agent, hour), u) in taken {
                let day = (hour * HOUR_MS).div_euclid(DAY_MS);
                let month = month_of_day(day);
                let hour = hour.max(0) as u64;
                rows.entry(keys::usage_org_hour(&org, hour))
                    .or_default()
                    .add(&u);
                rows.entry(keys::usage_org_day(&org, day.max(0) as u64))
                    .or_default()
                    .add(&u);
                rows.entry(keys::usage_org_month(&org, month))
                    .or_default()
                    .add(&u);
                if let Some(a) = agent {
                    rows.entry(keys::usage_agent_month(&org, month, &a))
                        .or_default()
                        .add(&u);
                }
            }
        }
        rows
    }

    /// Adds every pending delta to the store inside the write job `tx` (runs on the committer).
    /// Never fails the job it joins (a token's audit record): a row that cannot be read is
    /// logged and its delta dropped.
    pub(crate) fn drain_into(&self, tx: &mut Tx<'_>) {
        for (k, u) in self.take_pending() {
            if let Err(e) = tx.add_usage(k, &u) {
                tracing::error!(error = %e, "a usage row could not be updated");
            }
        }
    }

    /// Writes the pending deltas now and returns once they are durable (with everything queued
    /// before).
    pub(crate) async fn flush(self: &Arc<Self>) -> Result<(), StoreError> {
        let _one = self.flushing.lock().await;
        let me = self.clone();
        self.store
            .write(move |tx| {
                me.drain_into(tx);
                Ok::<_, StoreError>(())
            })
            .await
    }
}

/// [`Tenancy::reserve_token`] on the node's state, counting refusals in `/metrics`.
pub(crate) fn reserve<'a>(
    state: &'a super::AppState,
    entry: &ClientEntry,
    now_ms: i64,
) -> Result<Reservation<'a>, DomainError> {
    state.usage.reserve_token(entry, now_ms).inspect_err(|_| {
        state.metrics.tier_quota_refusals.inc();
    })
}

/// Every [`FLUSH_INTERVAL`], writes the pending deltas (API calls made while no token is
/// issued).
pub(crate) async fn flush_periodically(t: Arc<Tenancy>) {
    let mut tick = tokio::time::interval(FLUSH_INTERVAL);
    loop {
        tick.tick().await;
        if t.dirty.load(Ordering::Acquire) {
            if let Err(e) = t.flush().await {
                tracing::warn!(error = %e, "writing usage counters failed; will retry");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_arithmetic() {
        assert_eq!(date_of_day(0), "1970-01-01");
        let d = day_of(1_772_323_200_000); // 2026-03-01
        assert_eq!(date_of_day(d), "2026-03-01");
        assert_eq!(month_name(month_of_day(d)), "2026-03");
        assert_eq!(first_day_of_month(month_of_day(d)), d);
        assert_eq!(
            date_of_day(first_day_of_month(month_of_day(d) + 10)),
            "2027-01-01"
        );
        assert_eq!(date_of_day(d - 1), "2026-02-28");
    }
}
