//! Token buckets: `--token-rate-limit N` allows N requests a second per key, in bursts of up to
//! 2N; more get `429` with `Retry-After`. Keys are client ids (successful token requests), source
//! addresses (failed authentications, see `app::failures`) and organizations (audit chain
//! verifications).
//!
//! The table of buckets is bounded: past `MAX_CLIENTS` entries, buckets that have refilled
//! completely (idle clients) are dropped; if none has, the request is limited rather than the
//! table allowed to grow, so a flood of invented client ids cannot exhaust memory.

use std::collections::HashMap;
use std::sync::Mutex;

const MAX_CLIENTS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at_ms: i64,
}

/// The limiter (shared by all requests).
#[derive(Debug)]
pub(crate) struct RateLimiter {
    per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// `per_sec = 0` disables limiting.
    pub(crate) fn new(per_sec: u32) -> Self {
        RateLimiter {
            per_sec: f64::from(per_sec),
            burst: 2.0 * f64::from(per_sec),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The configured rate (0: unlimited).
    pub(crate) fn per_sec(&self) -> f64 {
        self.per_sec
    }

    /// Takes one request for `key` at `now_ms`; `Err(seconds)` to wait when over the limit.
    pub(crate) fn check(&self, key: &str, now_ms: i64) -> Result<(), u64> {
        self.take(key, now_ms)
    }

    fn take(&self, client: &str, now_ms: i64) -> Result<(), u64> {
        if self.per_sec <= 0.0 {
            return Ok(());
        }
        let mut map = match self.buckets.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        if !map.contains_key(client) && map.len() >= MAX_CLIENTS {
            let (per_sec, burst) = (self.per_sec, self.burst);
            map.retain(|_, b| b.tokens + (now_ms - b.at_ms) as f64 / 1000.0 * per_sec < burst);
            if map.len() >= MAX_CLIENTS {
                return Err(1);
            }
        }
        let b = map.entry(client.to_string()).or_insert(Bucket {
            tokens: self.burst,
            at_ms: now_ms,
        });
        let elapsed = (now_ms - b.at_ms).max(0) as f64 / 1000.0;
        b.tokens = (b.tokens + elapsed * self.per_sec).min(self.burst);
        b.at_ms = now_ms;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / self.per_sec).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_limits_then_refills() {
        let l = RateLimiter::new(5);
        for _ in 0..10 {
            assert!(l.check("a", 0).is_ok());
        }
        assert_eq!(l.check("a", 0), Err(1));
        assert!(l.check("b", 0).is_ok(), "clients are limited separately");
        assert!(
            l.check("a", 200).is_ok(),
            "one token back after 200 ms at 5/s"
        );
        assert!(l.check("a", 200).is_err());
        assert!(RateLimiter::new(0).check("a", 0).is_ok());
    }
}
