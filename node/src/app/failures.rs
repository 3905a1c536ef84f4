//! Failed authentications of unauthenticated callers (bad bearer tokens, bad client
//! credentials, refused token exchanges): throttled per source address, and audited with a
//! bound that no flood can exceed.
//!
//! - **Throttle.** Failures are charged to their source address (IPv4 address, or the /64 of an
//!   IPv6 address, since one host holds a whole /64): `--token-rate-limit` failures a second in
//!   bursts of twice that. A failure beyond the budget is answered `429` with `Retry-After`
//!   instead of `401`. A request whose credentials are *valid* is never refused by this
//!   throttle: credentials are checked first, so an attacker who floods from a shared address
//!   (a NAT, or a reverse proxy without `--trusted-proxy`) cannot lock anyone else out.
//! - **Bounded audit.** Within a window of [`WINDOW_MS`] per (address, organization), the first
//!   [`AUDITED_PER_WINDOW`] failures are audited one entry each; the rest are counted, and when
//!   the window closes one `auth.failure_summary` entry records how many failures there were,
//!   of which actions and reasons. The number of windows is capped ([`MAX_WINDOWS`]); beyond it,
//!   failures of new addresses are counted in one overflow window. So a flood of any length adds
//!   at most `AUDITED_PER_WINDOW + 1` entries a minute per address and organization, and at most
//!   `MAX_WINDOWS` summaries a minute in all.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;

use uuid::Uuid;

use crate::ratelimit::RateLimiter;

/// Length of an audit window.
pub(crate) const WINDOW_MS: i64 = 60_000;
/// Failures audited one by one per window, address and organization.
pub(crate) const AUDITED_PER_WINDOW: u32 = 10;
/// Windows tracked at once; beyond, new addresses share the overflow window.
pub(crate) const MAX_WINDOWS: usize = 4096;
/// The address of the overflow window.
const OVERFLOW: &str = "*";

/// The throttling and audit key of a client address: an IPv4 address as is, an IPv6 address
/// by its /64 prefix (`2001:db8:1:2::/64`), `-` when unknown.
pub(crate) fn address_key(addr: Option<&str>) -> String {
    match addr.and_then(|a| a.parse::<IpAddr>().ok()) {
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                let prefix = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                format!("{prefix}/64")
            }
        },
        Some(IpAddr::V4(v4)) => v4.to_string(),
        None => addr.unwrap_or("-").to_string(),
    }
}

/// Whether one failure is audited on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disposition {
    /// Write its own audit entry.
    Audit,
    /// Counted in its window's summary.
    Summarized,
}

/// A closed window with failures that were not audited one by one.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Summary {
    pub(crate) address: String,
    pub(crate) org: Uuid,
    pub(crate) from_ms: i64,
    pub(crate) to_ms: i64,
    /// Failures audited one by one in the window.
    pub(crate) audited: u32,
    /// Failures only counted here.
    pub(crate) summarized: u64,
    pub(crate) actions: BTreeMap<String, u64>,
    pub(crate) reasons: BTreeMap<String, u64>,
}

#[derive(Debug)]
struct Window {
    started_ms: i64,
    last_ms: i64,
    audited: u32,
    summarized: u64,
    actions: BTreeMap<String, u64>,
    reasons: BTreeMap<String, u64>,
}

impl Window {
    fn new(now: i64) -> Window {
        Window {
            started_ms: now,
            last_ms: now,
            audited: 0,
            summarized: 0,
            actions: BTreeMap::new(),
            reasons: BTreeMap::new(),
        }
    }

    fn summary(self, (address, org): (String, Uuid)) -> Summary {
        Summary {
            address,
            org,
            from_ms: self.started_ms,
            to_ms: self.last_ms,
            audited: self.audited,
            summarized: self.summarized,
            actions: self.actions,
            reasons: self.reasons,
        }
    }
}

/// Distinct reasons kept per window (reasons are our own fixed strings; this only bounds memory).
const MAX_REASONS: usize = 32;

/// The failure ledger (one per node).
pub(crate) struct Failures {
    throttle: RateLimiter,
    windows: Mutex<HashMap<(String, Uuid), Window>>,
}

impl Failures {
    /// `per_sec` failures a second per address, bursts of twice that; 0: no throttle (the audit
    /// bound stays).
    pub(crate) fn new(per_sec: u32) -> Failures {
        Failures {
            throttle: RateLimiter::new(per_sec),
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Charges one failure to `address` at `now`: `Err(seconds)` when the address is over its
    /// budget (answer 429 with that `Retry-After`).
    pub(crate) fn charge(&self, address: &str, now_ms: i64) -> Result<(), u64> {
        self.throttle.check(&format!("fail|{address}"), now_ms)
    }

    /// Notes one failure of `action` for `reason`, from `address`, against organization `org`:
    /// whether it gets its own audit entry. Closed windows are returned by [`Failures::closed`].
    pub(crate) fn note(
        &self,
        address: &str,
        org: Uuid,
        action: &str,
        reason: &str,
        now_ms: i64,
    ) -> (Disposition, Vec<Summary>) {
        let mut map = match self.windows.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut closed = Vec::new();
        let mut key = (address.to_string(), org);
        if let Some(w) = map.get(&key) {
            if now_ms - w.started_ms >= WINDOW_MS {
                if let Some(w) = map.remove(&key) {
                    if w.summarized > 0 {
                        closed.push(w.summary(key.clone()));
                    }
                }
            }
        }
        if !map.contains_key(&key) && map.len() >= MAX_WINDOWS {
            key = (OVERFLOW.to_string(), org);
            if !map.contains_key(&key) && map.len() > MAX_WINDOWS {
                // Even the overflow windows are full (a flood across many organizations):
                // count into the node-wide overflow window, which always exists past this point.
                key = (OVERFLOW.to_string(), Uuid::nil());
            }
        }
        let w = map.entry(key).or_insert_with(|| Window::new(now_ms));
        w.last_ms = now_ms;
        *w.actions.entry(action.to_string()).or_insert(0) += 1;
        if w.reasons.len() < MAX_REASONS || w.reasons.contains_key(reason) {
            *w.reasons.entry(reason.to_string()).or_insert(0) += 1;
        }
        let disposition = if w.audited < AUDITED_PER_WINDOW {
            w.audited += 1;
            Disposition::Audit
        } else {
            w.summarized += 1;
            Disposition::Summarized
        };
        (disposition, closed)
    }

    /// Takes the windows that closed by `now` (all of them when `all`, at shutdown): the
    /// summaries of those that counted failures beyond the ones audited one by one.
    pub(crate) fn closed(&self, now_ms: i64, all: bool) -> Vec<Summary> {
        let mut map = match self.windows.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        let ended: Vec<(String, Uuid)> = map
            .iter()
            .filter(|(_, w)| all || now_ms - w.started_ms >= WINDOW_MS)
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for k in ended {
            if let Some(w) = map.remove(&k) {
                if w.summarized > 0 {
                    out.push(w.summary(k));
                }
            }
        }
        out.sort_by(|a, b| a.from_ms.cmp(&b.from_ms).then(a.address.cmp(&b.address)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_addresses_are_grouped_by_their_64() {
        assert_eq!(address_key(Some("192.0.2.7")), "192.0.2.7");
        assert_eq!(
            address_key(Some("2001:db8:1:2:aaaa::1")),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            address_key(Some("2001:db8:1:2:bbbb::9")),
            address_key(Some("2001:db8:1:2::1"))
        );
        assert_ne!(
            address_key(Some("2001:db8:1:3::1")),
            address_key(Some("2001:db8:1:2::1"))
        );
        assert_eq!(address_key(Some("::ffff:192.0.2.7")), "192.0.2.7");
        assert_eq!(address_key(None), "-");
    }

    #[test]
    fn a_flood_is_audited_a_bounded_number_of_times_per_window() {
        let f = Failures::new(0);
        let org = Uuid::from_u128(1);
        let mut audited = 0;
        let mut summaries = Vec::new();
        // Ten minutes of flood at 100 failures a second.
        for i in 0..60_000i64 {
            let now = i * 10;
            let (d, closed) = f.note("192.0.2.1", org, "auth.bearer", "token is malformed", now);
            if d == Disposition::Audit {
                audited += 1;
            }
            summaries.extend(closed);
        }
        summaries.extend(f.closed(600_000, true));
        assert_eq!(audited, 10 * AUDITED_PER_WINDOW as usize);
        assert_eq!(summaries.len(), 10);
        let counted: u64 = summaries.iter().map(|s| s.summarized).sum();
        assert_eq!(
            counted as usize + audited,
            60_000,
            "every failure is counted"
        );
        assert_eq!(summaries[0].actions["auth.bearer"], 6000);
        assert_eq!(summaries[0].reasons["token is malformed"], 6000);
    }

    #[test]
    fn windows_close_on_time_and_quiet_ones_leave_no_summary() {
        let f = Failures::new(0);
        let org = Uuid::from_u128(1);
        for i in 0..3 {
            f.note(
                "192.0.2.2",
                org,
                "token.issue",
                "client authentication failed",
                i,
            );
        }
        assert!(f.closed(WINDOW_MS - 1, false).is_empty());
        assert!(
            f.closed(WINDOW_MS, false).is_empty(),
            "three failures were all audited: nothing to summarize"
        );
        for i in 0..(AUDITED_PER_WINDOW as i64 + 2) {
            f.note("192.0.2.2", org, "token.issue", "x", 100_000 + i);
        }
        let s = f.closed(100_000 + WINDOW_MS, false);
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].audited, s[0].summarized), (AUDITED_PER_WINDOW, 2));
    }

    #[test]
    fn many_addresses_share_an_overflow_window() {
        let f = Failures::new(0);
        let org = Uuid::from_u128(1);
        for i in 0..(MAX_WINDOWS as u32 + 1000) {
            let a = std::net::Ipv4Addr::from(0x0A00_0000 + i).to_string();
            for _ in 0..(AUDITED_PER_WINDOW + 1) {
                f.note(&a, org, "auth.bearer", "x", 0);
            }
        }
        let s = f.closed(0, true);
        assert!(s.len() <= MAX_WINDOWS + 2, "{} summaries", s.len());
        assert!(s.iter().any(|s| s.address == OVERFLOW));
    }

    #[test]
    fn the_throttle_charges_per_address() {
        let f = Failures::new(1);
        assert!(f.charge("a", 0).is_ok() && f.charge("a", 0).is_ok());
        assert!(f.charge("a", 0).is_err());
        assert!(f.charge("b", 0).is_ok());
    }
}
