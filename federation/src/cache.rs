//! Per-partner key cache: fetch once, serve from memory, survive key rotation and outages.
//!
//! - A fetched key set is fresh for `Cache-Control: max-age` (RFC 9111 §5.2.2.1), clamped to
//!   [`CacheConfig::min_ttl_secs`, `CacheConfig::max_ttl_secs`], or
//!   [`CacheConfig::default_ttl_secs`] when the partner says nothing.
//! - A token whose `kid` the fresh set lacks (the partner rotated its keys) triggers one
//!   refetch, at most one fetch per partner per [`CacheConfig::refetch_interval_secs`]: a flood
//!   of tokens with random `kid`s causes one fetch, not a flood of them.
//! - A token whose signature fails with a cached key (the partner replaced a key but kept its
//!   `kid`) triggers one refetch too, under the same rate limit, and is verified once more with
//!   the keys refetched: a flood of forged signatures costs one fetch per interval, and a
//!   partner's in-place key replacement is picked up at once instead of after the cached set's
//!   `max-age`.
//! - When a fetch fails, the last good keys are served for up to
//!   [`CacheConfig::stale_limit_secs`] after they went stale, and the next attempt waits
//!   [`CacheConfig::refetch_interval_secs`]; past that limit the partner's tokens fail with the
//!   fetch error.
//! - Concurrent misses for one partner share one fetch (single flight): one task fetches, the
//!   others wait for it and then read its result. Hits never wait for a fetch.
//! - [`KeyCache::invalidate`] drops a partner's entry, e.g. when its key source changes; a call
//!   with another source than the cached one also starts afresh.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use crate::clock::Clock;
use crate::guard::Fetcher;
use crate::keys::KeySet;
use crate::source::{FetchedKeys, KeySource, SourceError};
use crate::verify::{self, Expectations, VerifiedToken, VerifyError};

/// Lifetimes and limits of the cache, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Freshness when the key document has no `max-age` (5 min).
    pub default_ttl_secs: i64,
    /// Shortest freshness, whatever `max-age` says (60 s): a partner cannot make us fetch on
    /// every token.
    pub min_ttl_secs: i64,
    /// Longest freshness, whatever `max-age` says (24 h): rotations are seen within a day.
    pub max_ttl_secs: i64,
    /// Least time between two fetches for one partner when a `kid` is unknown, and between a
    /// failed fetch and the next attempt (10 s).
    pub refetch_interval_secs: i64,
    /// How long after going stale the last good keys are still served while fetches fail
    /// (24 h).
    pub stale_limit_secs: i64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            default_ttl_secs: 300,
            min_ttl_secs: 60,
            max_ttl_secs: 86_400,
            refetch_interval_secs: 10,
            stale_limit_secs: 86_400,
        }
    }
}

impl CacheConfig {
    /// How long a key set with this `max-age` stays fresh.
    pub fn ttl(&self, max_age: Option<u64>) -> i64 {
        match max_age {
            None => self.default_ttl_secs,
            Some(s) => i64::try_from(s)
                .unwrap_or(i64::MAX)
                .clamp(self.min_ttl_secs, self.max_ttl_secs),
        }
    }
}

/// Counter values, for the node's metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheCounters {
    /// Lookups answered from a fresh set that had the `kid`.
    pub hits: u64,
    /// Lookups that were not hits.
    pub misses: u64,
    /// Fetch attempts of any kind.
    pub fetches: u64,
    /// Fetch attempts caused by an unknown `kid` in a fresh set, or by a signature that failed
    /// with cached keys.
    pub refetches: u64,
    /// Refetches (unknown `kid`, failed signature) not made because of the rate limit.
    pub refetches_suppressed: u64,
    /// Fetch attempts that failed.
    pub fetch_failures: u64,
    /// Lookups answered with stale keys because fetching failed.
    pub stale_serves: u64,
    /// Key entries skipped while parsing fetched key sets.
    pub keys_skipped: u64,
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    fetches: AtomicU64,
    refetches: AtomicU64,
    refetches_suppressed: AtomicU64,
    fetch_failures: AtomicU64,
    stale_serves: AtomicU64,
    keys_skipped: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// One partner's cached keys.
#[derive(Default)]
struct State {
    source: Option<KeySource>,
    keys: Option<Arc<KeySet>>,
    fresh_until: i64,
    stale_until: i64,
    last_attempt: Option<i64>,
    retry_at: i64,
    last_error: Option<SourceError>,
}

#[derive(Default)]
struct Slot {
    state: Mutex<State>,
    // Held across the fetch, so concurrent misses wait for one fetch instead of making their own.
    flight: tokio::sync::Mutex<()>,
}

impl Slot {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What to do with a lookup.
enum Step {
    Hit(Arc<KeySet>),
    /// The fresh set lacks the `kid`, but the last fetch was too recent to fetch again.
    Suppressed(Arc<KeySet>),
    Stale(Arc<KeySet>),
    Fetch {
        refetch: bool,
    },
    Fail(SourceError),
}

fn decide(st: &State, source: &KeySource, kid: Option<&str>, now: i64, cfg: &CacheConfig) -> Step {
    if st.source.as_ref() != Some(source) {
        return Step::Fetch { refetch: false };
    }
    if let Some(keys) = &st.keys {
        if now < st.fresh_until {
            if kid.is_none_or(|kid| keys.contains_kid(kid)) {
                return Step::Hit(Arc::clone(keys));
            }
            let may_fetch = st
                .last_attempt
                .is_none_or(|t| now >= t.saturating_add(cfg.refetch_interval_secs));
            return if may_fetch {
                Step::Fetch { refetch: true }
            } else {
                Step::Suppressed(Arc::clone(keys))
            };
        }
    }
    if now < st.retry_at {
        return match (&st.keys, &st.last_error) {
            (Some(keys), _) if now < st.stale_until => Step::Stale(Arc::clone(keys)),
            (_, Some(e)) => Step::Fail(e.clone()),
            (_, None) => Step::Fetch { refetch: false },
        };
    }
    Step::Fetch { refetch: false }
}

/// The key cache of all partners. One per node, shared (`Arc`).
pub struct KeyCache {
    fetcher: Arc<Fetcher>,
    clock: Arc<dyn Clock>,
    config: CacheConfig,
    slots: RwLock<HashMap<String, Arc<Slot>>>,
    counters: Counters,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("config", &self.config)
            .field("counters", &self.counters())
            .finish_non_exhaustive()
    }
}

impl KeyCache {
    /// A cache fetching through `fetcher`, timing with `clock`.
    pub fn new(fetcher: Arc<Fetcher>, clock: Arc<dyn Clock>, config: CacheConfig) -> KeyCache {
        KeyCache {
            fetcher,
            clock,
            config,
            slots: RwLock::default(),
            counters: Counters::default(),
        }
    }

    /// The current counter values.
    pub fn counters(&self) -> CacheCounters {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CacheCounters {
            hits: get(&c.hits),
            misses: get(&c.misses),
            fetches: get(&c.fetches),
            refetches: get(&c.refetches),
            refetches_suppressed: get(&c.refetches_suppressed),
            fetch_failures: get(&c.fetch_failures),
            stale_serves: get(&c.stale_serves),
            keys_skipped: get(&c.keys_skipped),
        }
    }

    fn slot(&self, partner: &str) -> Arc<Slot> {
        if let Some(s) = self
            .slots
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(partner)
        {
            return Arc::clone(s);
        }
        let mut slots = self.slots.write().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(slots.entry(partner.to_string()).or_default())
    }

    /// Forgets `partner`'s keys; the next lookup fetches.
    pub fn invalidate(&self, partner: &str) {
        self.slots
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(partner);
    }

    /// Stores keys fetched elsewhere (the probe made when a partner is registered), so that the
    /// first token does not fetch them again.
    pub fn seed(&self, partner: &str, source: &KeySource, fetched: FetchedKeys) {
        let now = self.clock.now_secs();
        let slot = self.slot(partner);
        let mut st = slot.state();
        self.store(&mut st, source, fetched, now);
    }

    fn store(
        &self,
        st: &mut State,
        source: &KeySource,
        fetched: FetchedKeys,
        now: i64,
    ) -> Arc<KeySet> {
        self.counters
            .keys_skipped
            .fetch_add(fetched.skipped.len() as u64, Ordering::Relaxed);
        let ttl = self.config.ttl(fetched.max_age);
        let keys = Arc::new(fetched.keys);
        *st = State {
            source: Some(source.clone()),
            keys: Some(Arc::clone(&keys)),
            fresh_until: now.saturating_add(ttl),
            stale_until: now
                .saturating_add(ttl)
                .saturating_add(self.config.stale_limit_secs),
            last_attempt: st.last_attempt.or(Some(now)),
            retry_at: 0,
            last_error: None,
        };
        keys
    }

    /// `partner`'s keys from `source`, fetched when missing, stale, or lacking `kid` (see the
    /// module docs for the rules).
    pub async fn keys(
        &self,
        partner: &str,
        source: &KeySource,
        kid: Option<&str>,
    ) -> Result<Arc<KeySet>, SourceError> {
        self.lookup(partner, source, kid)
            .await
            .map(|(keys, _)| keys)
    }

    /// [`KeyCache::keys`], and whether this call fetched them (then they are as fresh as they
    /// can be: a signature they fail is not worth a refetch).
    async fn lookup(
        &self,
        partner: &str,
        source: &KeySource,
        kid: Option<&str>,
    ) -> Result<(Arc<KeySet>, bool), SourceError> {
        let slot = self.slot(partner);
        let now = self.clock.now_secs();
        if let Step::Hit(keys) = decide(&slot.state(), source, kid, now, &self.config) {
            bump(&self.counters.hits);
            return Ok((keys, false));
        }
        bump(&self.counters.misses);
        let _flight = slot.flight.lock().await;
        // Whoever held the flight before us may have fetched what we need.
        let now = self.clock.now_secs();
        let step = decide(&slot.state(), source, kid, now, &self.config);
        let refetch = match step {
            Step::Hit(keys) => return Ok((keys, false)),
            Step::Suppressed(keys) => {
                bump(&self.counters.refetches_suppressed);
                return Ok((keys, false));
            }
            Step::Stale(keys) => {
                bump(&self.counters.stale_serves);
                return Ok((keys, false));
            }
            Step::Fail(e) => return Err(e),
            Step::Fetch { refetch } => refetch,
        };
        bump(&self.counters.fetches);
        if refetch {
            bump(&self.counters.refetches);
            tracing::info!(partner, kid, "unknown kid: refetching the partner's keys");
        }
        let result = source.fetch(&self.fetcher).await;
        let now = self.clock.now_secs();
        let mut st = slot.state();
        if st.source.as_ref() != Some(source) {
            *st = State {
                source: Some(source.clone()),
                ..State::default()
            };
        }
        st.last_attempt = Some(now);
        match result {
            Ok(fetched) => Ok((self.store(&mut st, source, fetched, now), true)),
            Err(e) => {
                bump(&self.counters.fetch_failures);
                tracing::warn!(partner, code = e.code(), error = %e, "fetching a partner's keys failed");
                st.retry_at = now.saturating_add(self.config.refetch_interval_secs);
                st.last_error = Some(e.clone());
                match st.keys.clone() {
                    Some(keys) if now < st.fresh_until => Ok((keys, false)),
                    Some(keys) if now < st.stale_until => {
                        bump(&self.counters.stale_serves);
                        Ok((keys, false))
                    }
                    _ => {
                        st.keys = None;
                        Err(e)
                    }
                }
            }
        }
    }

    /// The signature of a token failed with `used`, keys this call did not fetch: the partner
    /// may have replaced a key and kept its `kid`. Refetches once, under the rate limit of the
    /// unknown-`kid` refetch (the two share one budget), and returns the keys to try again
    /// with; `None` when there is nothing new to try (rate-limited, the fetch failed, or the
    /// partner's entry was dropped or changed meanwhile).
    async fn refetch_after_failure(
        &self,
        partner: &str,
        source: &KeySource,
        used: &Arc<KeySet>,
    ) -> Option<Arc<KeySet>> {
        let slot = self.slot(partner);
        let _flight = slot.flight.lock().await;
        let now = self.clock.now_secs();
        {
            let st = slot.state();
            if st.source.as_ref() != Some(source) {
                return None;
            }
            // Another task refetched while we verified or waited: try its keys, fetch nothing.
            if let Some(keys) = st.keys.as_ref().filter(|k| !Arc::ptr_eq(k, used)) {
                return Some(Arc::clone(keys));
            }
            let may_fetch = st
                .last_attempt
                .is_none_or(|t| now >= t.saturating_add(self.config.refetch_interval_secs));
            if !may_fetch {
                bump(&self.counters.refetches_suppressed);
                return None;
            }
        }
        bump(&self.counters.fetches);
        bump(&self.counters.refetches);
        tracing::info!(
            partner,
            "signature failed with a cached key: refetching the partner's keys"
        );
        let result = source.fetch(&self.fetcher).await;
        let now = self.clock.now_secs();
        let mut st = slot.state();
        if st.source.as_ref() != Some(source) {
            return None;
        }
        st.last_attempt = Some(now);
        match result {
            Ok(fetched) => Some(self.store(&mut st, source, fetched, now)),
            Err(e) => {
                // The keys held stay in use (fresh or stale, as before); the failure waits
                // out the retry interval like any other.
                bump(&self.counters.fetch_failures);
                tracing::warn!(partner, code = e.code(), error = %e, "refetching a partner's keys failed");
                st.retry_at = now.saturating_add(self.config.refetch_interval_secs);
                st.last_error = Some(e);
                None
            }
        }
    }

    /// Verifies a token of `partner` with its cached keys: the header is checked first (so
    /// junk tokens cause no fetch), then the keys are looked up by the token's `kid` (an
    /// unknown one refetches, rate-limited), then [`verify::verify_jwt`] decides. When the
    /// signature fails with keys that came from the cache (or the key named by `kid` no longer
    /// fits the token's algorithm), the keys are refetched once, rate-limited likewise, and
    /// the token is verified again with them.
    pub async fn verify(
        &self,
        partner: &str,
        source: &KeySource,
        token: &str,
        expected: &Expectations<'_>,
    ) -> Result<VerifiedToken, VerifyError> {
        let kid = verify::precheck(token)?;
        let (keys, fetched) = self
            .lookup(partner, source, kid.as_deref())
            .await
            .map_err(VerifyError::KeysUnavailable)?;
        match verify::verify_jwt(token, &keys, expected) {
            Err(e) if !fetched && key_may_have_changed(&e) => {
                match self.refetch_after_failure(partner, source, &keys).await {
                    Some(newer) => verify::verify_jwt(token, &newer, expected),
                    None => Err(e),
                }
            }
            result => result,
        }
    }
}

/// Failures that a key replaced under the same `kid` (or a key set changed in place) explains,
/// and that newer keys may therefore cure.
fn key_may_have_changed(e: &VerifyError) -> bool {
    matches!(
        e,
        VerifyError::Token(
            jose::VerifyError::SignatureInvalid
                | jose::VerifyError::KeyAlgMismatch { .. }
                | jose::VerifyError::NoSuitableKey(_)
        )
    )
}

#[cfg(test)]
mod tests;
