//! Prometheus text exposition (v0.0.4) of the node's counters, kept without a metrics library:
//! a few atomics and one small map of request counts.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use storage::Store;

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Why the node closed a connection (`agentidp_connections_closed_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// No request began within the idle timeout (or a new connection sent nothing).
    Idle,
    /// A request began but its headers did not complete within the header timeout.
    HeaderTimeout,
    /// A request body did not arrive within the body timeout (answered 408).
    BodyTimeout,
    /// Dropped at the connection cap to make room for a new connection.
    Evicted,
    /// A new connection turned away at the cap because every connection was busy.
    Refused,
}

impl CloseReason {
    const ALL: [CloseReason; 5] = [
        CloseReason::Idle,
        CloseReason::HeaderTimeout,
        CloseReason::BodyTimeout,
        CloseReason::Evicted,
        CloseReason::Refused,
    ];

    fn as_str(self) -> &'static str {
        match self {
            CloseReason::Idle => "idle",
            CloseReason::HeaderTimeout => "header_timeout",
            CloseReason::BodyTimeout => "body_timeout",
            CloseReason::Evicted => "evicted",
            CloseReason::Refused => "refused",
        }
    }
}

const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Debug, Default)]
struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    sum_micros: AtomicU64,
    total: AtomicU64,
}

/// The node's metrics.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    requests: Mutex<HashMap<(&'static str, &'static str, u16), u64>>,
    latency: Histogram,
    pub(crate) tokens_issued: Counter,
    pub(crate) introspections: Counter,
    pub(crate) agents_registered: Counter,
    pub(crate) audit_appends: Counter,
    pub(crate) auth_failures: Counter,
    pub(crate) auth_throttled: Counter,
    pub(crate) tls_handshake_failures: Counter,
    /// HTTP connections open now (accepted and not yet closed).
    pub(crate) connections_open: AtomicU64,
    connections_closed: [Counter; CloseReason::ALL.len()],
    federation_verified: Counter,
    federation_refused: Counter,
}

impl Metrics {
    /// Counts one partner token verification by its outcome.
    pub(crate) fn federation_verify(&self, ok: bool) {
        if ok {
            self.federation_verified.inc();
        } else {
            self.federation_refused.inc();
        }
    }

    /// Counts one connection the node closed, by why.
    pub(crate) fn connection_closed(&self, reason: CloseReason) {
        self.connections_closed[reason as usize].inc();
    }

    /// The federation part: verifications by outcome, outbound fetches by result code, and the
    /// partner key cache's counters.
    pub(crate) fn render_federation(
        &self,
        fetches: &[(&'static str, u64)],
        cache: &federation::CacheCounters,
    ) -> String {
        let mut out = String::new();
        out.push_str("# HELP agentidp_federation_verifications_total Partner token verifications by outcome.\n# TYPE agentidp_federation_verifications_total counter\n");
        let _ = writeln!(
            out,
            "agentidp_federation_verifications_total{{outcome=\"valid\"}} {}\nagentidp_federation_verifications_total{{outcome=\"refused\"}} {}",
            self.federation_verified.get(),
            self.federation_refused.get()
        );
        out.push_str("# HELP agentidp_outbound_fetches_total Outbound fetches (partner keys, discovery, DID documents) by result; every code but OK is a refusal or failure.\n# TYPE agentidp_outbound_fetches_total counter\n");
        for (code, n) in fetches {
            let _ = writeln!(
                out,
                "agentidp_outbound_fetches_total{{result=\"{code}\"}} {n}"
            );
        }
        out.push_str("# HELP agentidp_partner_key_cache_total Partner key cache events.\n# TYPE agentidp_partner_key_cache_total counter\n");
        for (event, n) in [
            ("hit", cache.hits),
            ("miss", cache.misses),
            ("fetch", cache.fetches),
            ("refetch", cache.refetches),
            ("refetch_suppressed", cache.refetches_suppressed),
            ("fetch_failure", cache.fetch_failures),
            ("stale_serve", cache.stale_serves),
            ("key_skipped", cache.keys_skipped),
        ] {
            let _ = writeln!(
                out,
                "agentidp_partner_key_cache_total{{event=\"{event}\"}} {n}"
            );
        }
        out
    }

    /// Records one finished request under its route template.
    pub(crate) fn observe(
        &self,
        method: &str,
        route: &'static str,
        status: u16,
        elapsed: Duration,
    ) {
        let method = match method {
            "GET" => "GET",
            "POST" => "POST",
            "PATCH" => "PATCH",
            "DELETE" => "DELETE",
            "PUT" => "PUT",
            "HEAD" => "HEAD",
            "OPTIONS" => "OPTIONS",
            _ => "other",
        };
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((method, route, status)).or_insert(0) += 1;
        }
        let secs = elapsed.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.latency.counts[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency
            .sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        self.latency.total.fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition text.
    pub(crate) fn render(&self, store: &Store) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
            );
        };
        counter(
            "agentidp_tokens_issued_total",
            "Access tokens issued.",
            self.tokens_issued.get(),
        );
        counter(
            "agentidp_agents_registered_total",
            "Agents registered.",
            self.agents_registered.get(),
        );
        counter(
            "agentidp_audit_appends_total",
            "Audit entries appended by this process.",
            self.audit_appends.get(),
        );
        counter(
            "agentidp_auth_failures_total",
            "Failed authentications.",
            self.auth_failures.get(),
        );
        counter(
            "agentidp_auth_throttled_total",
            "Requests refused with 429 after too many failed bearer authentications from their address.",
            self.auth_throttled.get(),
        );
        counter(
            "agentidp_tls_handshake_failures_total",
            "TLS handshakes that failed or timed out (plain HTTP on the HTTPS port, untrusted certificate, silent client).",
            self.tls_handshake_failures.get(),
        );
        let s = store.stats();
        counter(
            "agentidp_store_commits_total",
            "Group commits of the store.",
            s.batches.load(Ordering::Relaxed),
        );
        counter(
            "agentidp_store_jobs_total",
            "Write jobs run by the store committer.",
            s.jobs.load(Ordering::Relaxed),
        );
        counter(
            "agentidp_store_commit_failures_total",
            "Failed store commits.",
            s.failures.load(Ordering::Relaxed),
        );
        let _ = write!(
            out,
            "# HELP agentidp_store_commit_seconds_total Time spent committing.\n# TYPE agentidp_store_commit_seconds_total counter\nagentidp_store_commit_seconds_total {}\n",
            s.commit_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = write!(
            out,
            "# HELP agentidp_store_commit_max_seconds Slowest group commit so far.\n# TYPE agentidp_store_commit_max_seconds gauge\nagentidp_store_commit_max_seconds {}\n",
            s.max_commit_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = write!(
            out,
            "# HELP agentidp_store_max_batch Largest group commit so far.\n# TYPE agentidp_store_max_batch gauge\nagentidp_store_max_batch {}\n",
            s.max_batch.load(Ordering::Relaxed)
        );
        let _ = write!(
            out,
            "# HELP agentidp_connections_open HTTP connections open now.\n# TYPE agentidp_connections_open gauge\nagentidp_connections_open {}\n",
            self.connections_open.load(Ordering::Relaxed)
        );
        out.push_str("# HELP agentidp_connections_closed_total Connections the node closed, by reason (timeouts, eviction at the connection cap, refusal when every connection is busy).\n# TYPE agentidp_connections_closed_total counter\n");
        for reason in CloseReason::ALL {
            let _ = writeln!(
                out,
                "agentidp_connections_closed_total{{reason=\"{}\"}} {}",
                reason.as_str(),
                self.connections_closed[reason as usize].get()
            );
        }
        out.push_str("# HELP http_requests_total HTTP requests by method, route and status.\n# TYPE http_requests_total counter\n");
        if let Ok(m) = self.requests.lock() {
            let mut rows: Vec<_> = m.iter().collect();
            rows.sort();
            for ((method, route, status), n) in rows {
                let _ = writeln!(
                    out,
                    "http_requests_total{{method=\"{method}\",route=\"{route}\",status_code=\"{status}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP http_request_duration_seconds HTTP request latency.\n# TYPE http_request_duration_seconds histogram\n");
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "http_request_duration_seconds_bucket{{le=\"{b}\"}} {}",
                self.latency.counts[i].load(Ordering::Relaxed)
            );
        }
        let total = self.latency.total.load(Ordering::Relaxed);
        let _ = write!(
            out,
            "http_request_duration_seconds_bucket{{le=\"+Inf\"}} {total}\nhttp_request_duration_seconds_sum {}\nhttp_request_duration_seconds_count {total}\n",
            self.latency.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        out
    }
}
