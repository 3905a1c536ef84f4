//! Time is passed in, so that lifetimes can be tested at any instant.
//!
//! [`Clock`] is the one clock trait of the workspace: the node's application state holds an
//! `Arc<dyn Clock>` and hands the same clock to the partner [`KeyCache`](crate::KeyCache) and
//! the gossip transport, so that a test that moves it moves every wall-clock rule at once
//! (token lifetimes, grace periods, rate-limit windows, cache lifetimes, anchor expiry).
//! Timers that measure real durations (connection timeouts, gossip heartbeats) use tokio's
//! monotonic `Instant` instead and are not moved.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of the current wall-clock time (Unix time).
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
    /// Seconds since the Unix epoch.
    fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }
}

impl fmt::Debug for dyn Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Clock(now_ms: {})", self.now_ms())
    }
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}
