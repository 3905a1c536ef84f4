//! The node's metrics: a `prometheus_client` [`Registry`] built once when the state is made,
//! encoded as OpenMetrics text on `GET /metrics`.
//!
//! What the node counts itself lives in the registry: plain counters, label families whose
//! fixed label sets are created up front (their handles are kept, so counting them touches one
//! atomic), the request counter family, and a lock-free latency histogram. What other parts of
//! the node own (the store's commit statistics, the outbound fetcher, the partner key cache,
//! gossip) is read when `/metrics` is scraped, into a [`Sampled`] collector.
//!
//! Counters are registered without their `_total` suffix: the OpenMetrics encoder appends it
//! to the samples (`agentidp_tokens_issued_total 3`), while the `# HELP`/`# TYPE` lines name
//! the family (`agentidp_tokens_issued`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeLabelSet, EncodeLabelValue,
    EncodeMetric, LabelValueEncoder, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use storage::Store;

/// The content type of [`Metrics::render`]'s text.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Why the node closed a connection (`agentidp_connections_closed_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

impl EncodeLabelValue for CloseReason {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CloseLabels {
    reason: CloseReason,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// `http_requests_total{method, route, status_code}`. Every value is bounded: a known method
/// or `other`, a route template of the table or `unmatched`, a status code.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: &'static str,
    status_code: u16,
}

/// Upper bounds of `http_request_duration_seconds`, in seconds (`+Inf` is implied).
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The request latency histogram. `prometheus_client`'s `Histogram` takes a mutex on every
/// observation; this one counts with atomics (one bucket, the sum, per request) and hands the
/// library's encoder the same `(upper bound, count)` pairs at scrape time.
#[derive(Debug, Default, Clone)]
struct LatencyHistogram(Arc<LatencyInner>);

#[derive(Debug, Default)]
struct LatencyInner {
    /// Observations per bucket, not cumulative; the last one is `+Inf`.
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl LatencyHistogram {
    fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.0.counts[i].fetch_add(1, Ordering::Relaxed);
        self.0.sum_micros.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = BUCKETS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(&self.0.counts)
            .map(|(le, n)| (le, n.load(Ordering::Relaxed)))
            .collect();
        // The count is the buckets' sum, so that `_count` equals the `+Inf` bucket even while
        // requests finish during the scrape.
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.0.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// The node's metrics.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) tokens_issued: Counter,
    /// Tokens refused by the monthly quota (tier enforcement).
    pub(crate) tier_quota_refusals: Counter,
    /// API requests refused by an organization's per-minute limit.
    pub(crate) tier_rate_limited: Counter,
    pub(crate) agents_registered: Counter,
    pub(crate) audit_appends: Counter,
    pub(crate) auth_failures: Counter,
    pub(crate) auth_throttled: Counter,
    pub(crate) tls_handshake_failures: Counter,
    /// Delegation links granted, redemptions, refusals (grants, redemptions, verifications)
    /// and revocations (`app::delegation`).
    pub(crate) delegations_granted: Counter,
    pub(crate) delegations_redeemed: Counter,
    pub(crate) delegations_refused: Counter,
    pub(crate) delegations_revoked: Counter,
    /// The public directory (`app::directory`): searches and lookups answered, refused by the
    /// per-address limit, index commits, documents in the index, and the last rebuild's time.
    pub(crate) directory_queries: Counter,
    pub(crate) directory_throttled: Counter,
    pub(crate) directory_cache_hits: Counter,
    pub(crate) directory_commits: Counter,
    pub(crate) directory_documents: Gauge,
    pub(crate) directory_rebuild_ms: Gauge,
    /// HTTP connections open now (accepted and not yet closed).
    pub(crate) connections_open: Gauge,
    /// One handle per [`CloseReason`], in [`CloseReason::ALL`]'s order.
    connections_closed: [Counter; CloseReason::ALL.len()],
    federation_verified: Counter,
    federation_refused: Counter,
    requests: Family<RequestLabels, Counter>,
    resolutions: Family<ResolutionLabels, Counter>,
    latency: LatencyHistogram,
}

/// Labels of a DID resolution: where it was answered from and how it ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResolutionLabels {
    source: &'static str,
    outcome: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric registered, every fixed label set created (so it is reported at 0).
    pub(crate) fn new() -> Self {
        let mut registry = Registry::default();
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        // `register` appends the full stop to each help text.
        let tokens_issued = counter(
            &mut registry,
            "agentidp_tokens_issued",
            "Access tokens issued",
        );
        let tier_quota_refusals = counter(
            &mut registry,
            "agentidp_tier_token_quota_refusals",
            "Token requests refused because the organization used its monthly token quota",
        );
        let tier_rate_limited = counter(
            &mut registry,
            "agentidp_tier_rate_limited",
            "API requests refused by their organization's requests-a-minute limit",
        );
        let agents_registered = counter(
            &mut registry,
            "agentidp_agents_registered",
            "Agents registered",
        );
        let audit_appends = counter(
            &mut registry,
            "agentidp_audit_appends",
            "Audit entries appended by this process",
        );
        let auth_failures = counter(
            &mut registry,
            "agentidp_auth_failures",
            "Failed authentications",
        );
        let auth_throttled = counter(
            &mut registry,
            "agentidp_auth_throttled",
            "Requests refused with 429 after too many failed bearer authentications from their address",
        );
        let tls_handshake_failures = counter(
            &mut registry,
            "agentidp_tls_handshake_failures",
            "TLS handshakes that failed or timed out (plain HTTP on the HTTPS port, untrusted certificate, silent client)",
        );
        let delegations_granted = counter(
            &mut registry,
            "agentidp_delegations_granted",
            "Delegation links granted",
        );
        let delegations_redeemed = counter(
            &mut registry,
            "agentidp_delegations_redeemed",
            "Delegation tokens redeemed for delegated access tokens",
        );
        let delegations_refused = counter(
            &mut registry,
            "agentidp_delegations_refused",
            "Delegation grants, redemptions and verifications refused",
        );
        let delegations_revoked = counter(
            &mut registry,
            "agentidp_delegations_revoked",
            "Delegation links revoked (each link of a cascade counts)",
        );
        let directory_queries = counter(
            &mut registry,
            "agentidp_directory_queries",
            "Public directory searches and lookups answered",
        );
        let directory_throttled = counter(
            &mut registry,
            "agentidp_directory_throttled",
            "Public directory requests refused with 429 by the per-address limit",
        );
        let directory_cache_hits = counter(
            &mut registry,
            "agentidp_directory_cache_hits",
            "Public directory searches answered from the result cache (same query since the index last changed)",
        );
        let directory_commits = counter(
            &mut registry,
            "agentidp_directory_index_commits",
            "Commits of the directory's search index (each a batch of agent and organization changes)",
        );
        let directory_documents = Gauge::default();
        registry.register(
            "agentidp_directory_index_documents",
            "Agents in the directory's search index",
            directory_documents.clone(),
        );
        let directory_rebuild_ms = Gauge::default();
        registry.register(
            "agentidp_directory_index_rebuild_milliseconds",
            "How long the directory's search index took to build from the store at start-up",
            directory_rebuild_ms.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "agentidp_connections_open",
            "HTTP connections open now",
            connections_open.clone(),
        );
        let closed = Family::<CloseLabels, Counter>::default();
        registry.register(
            "agentidp_connections_closed",
            "Connections the node closed, by reason (timeouts, eviction at the connection cap, refusal when every connection is busy)",
            closed.clone(),
        );
        let connections_closed =
            CloseReason::ALL.map(|reason| closed.get_or_create_owned(&CloseLabels { reason }));
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by method, route and status",
            requests.clone(),
        );
        let latency = LatencyHistogram::default();
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            latency.clone(),
        );
        let verifications = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "agentidp_federation_verifications",
            "Partner token verifications by outcome",
            verifications.clone(),
        );
        let resolutions = Family::<ResolutionLabels, Counter>::default();
        registry.register(
            "agentidp_did_resolutions",
            "DID resolutions at /1.0/identifiers/ and /did/resolve, by source (local, key, remote_cache, remote_fetch, none) and outcome (found, deactivated, or the DID Core error)",
            resolutions.clone(),
        );
        let outcome = |outcome| verifications.get_or_create_owned(&OutcomeLabels { outcome });
        let (federation_verified, federation_refused) = (outcome("valid"), outcome("refused"));
        Metrics {
            registry,
            tokens_issued,
            tier_quota_refusals,
            tier_rate_limited,
            agents_registered,
            audit_appends,
            auth_failures,
            auth_throttled,
            tls_handshake_failures,
            delegations_granted,
            delegations_redeemed,
            delegations_refused,
            delegations_revoked,
            directory_queries,
            directory_throttled,
            directory_commits,
            directory_documents,
            directory_rebuild_ms,
            directory_cache_hits,
            connections_open,
            connections_closed,
            federation_verified,
            federation_refused,
            requests,
            resolutions,
            latency,
        }
    }

    /// Counts one partner token verification by its outcome.
    pub(crate) fn federation_verify(&self, ok: bool) {
        if ok {
            self.federation_verified.inc();
        } else {
            self.federation_refused.inc();
        }
    }

    /// Counts one DID resolution by where it was answered from and how it ended.
    pub(crate) fn did_resolution(&self, source: &'static str, outcome: &'static str) {
        self.resolutions
            .get_or_create(&ResolutionLabels { source, outcome })
            .inc();
    }

    /// Counts one connection the node closed, by why.
    pub(crate) fn connection_closed(&self, reason: CloseReason) {
        self.connections_closed[reason as usize].inc();
    }

    /// Records one finished request under its route template. Takes no lock but the request
    /// family's read lock (a write lock only the first time a method, route and status meet).
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
        self.requests
            .get_or_create(&RequestLabels {
                method,
                route,
                status_code: status,
            })
            .inc();
        self.latency.observe(elapsed);
    }

    /// The OpenMetrics exposition ([`CONTENT_TYPE`]): the registry, then `sampled`, then
    /// `# EOF`.
    pub(crate) fn render(&self, sampled: Sampled) -> String {
        let mut scrape = Registry::default();
        scrape.register_collector(Box::new(sampled));
        let mut out = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail; an encoder error would be a bug in a metric's
        // encoding, and the part written so far is still worth serving.
        let encoded = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry)
            .and_then(|()| prometheus_client::encoding::text::encode(&mut out, &scrape));
        if let Err(e) = encoded {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        out
    }
}

/// The store's commit statistics at scrape time.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct StoreSample {
    commits: u64,
    jobs: u64,
    failures: u64,
    commit_micros: u64,
    max_commit_micros: u64,
    max_batch: u64,
}

impl StoreSample {
    pub(crate) fn of(store: &Store) -> Self {
        let s = store.stats();
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StoreSample {
            commits: get(&s.batches),
            jobs: get(&s.jobs),
            failures: get(&s.failures),
            commit_micros: get(&s.commit_micros),
            max_commit_micros: get(&s.max_commit_micros),
            max_batch: get(&s.max_batch),
        }
    }
}

/// Gossip's counters at scrape time (only when gossip runs).
#[derive(Debug, Default, Clone)]
#[cfg_attr(not(feature = "gossip"), allow(dead_code))]
pub(crate) struct GossipSample {
    pub(crate) peers: u64,
    pub(crate) accepted: u64,
    pub(crate) duplicates: u64,
    pub(crate) sync_skipped: u64,
    pub(crate) rejected: BTreeMap<&'static str, u64>,
    pub(crate) published: u64,
    pub(crate) applied: u64,
    pub(crate) removed: u64,
    pub(crate) shadowed_by_local: u64,
}

/// What other parts of the node own, read when `/metrics` is scraped.
#[derive(Debug)]
pub(crate) struct Sampled {
    pub(crate) store: StoreSample,
    /// Outbound fetches by result code (`OK` and every refusal or failure code).
    pub(crate) fetches: Vec<(&'static str, u64)>,
    pub(crate) key_cache: federation::CacheCounters,
    pub(crate) gossip: Option<GossipSample>,
    pub(crate) webhooks: crate::app::webhooks::Sample,
}

/// A counter or gauge without labels.
fn encode_one<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: M,
) -> Result<(), std::fmt::Error> {
    let m = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
    metric.encode(m)
}

/// A counter family with one label, one sample per value.
fn encode_labelled<V: EncodeCounterValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: impl IntoIterator<Item = (&'static str, V)>,
) -> Result<(), std::fmt::Error> {
    let mut m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, n) in values {
        let labels = [(label, value)];
        ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauge<V: EncodeGaugeValue>(v: V) -> ConstGauge<V> {
    ConstGauge::new(v)
}

impl Collector for Sampled {
    // A collector writes its help texts as given: they carry their full stop here.
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        let s = &self.store;
        encode_one(
            e,
            "agentidp_store_commits",
            "Group commits of the store.",
            ConstCounter::new(s.commits),
        )?;
        encode_one(
            e,
            "agentidp_store_jobs",
            "Write jobs run by the store committer.",
            ConstCounter::new(s.jobs),
        )?;
        encode_one(
            e,
            "agentidp_store_commit_failures",
            "Failed store commits.",
            ConstCounter::new(s.failures),
        )?;
        encode_one(
            e,
            "agentidp_store_commit_seconds",
            "Time spent committing.",
            ConstCounter::new(s.commit_micros as f64 / 1e6),
        )?;
        encode_one(
            e,
            "agentidp_store_commit_max_seconds",
            "Slowest group commit so far.",
            gauge(s.max_commit_micros as f64 / 1e6),
        )?;
        encode_one(
            e,
            "agentidp_store_max_batch",
            "Largest group commit so far.",
            gauge(s.max_batch),
        )?;
        let w = &self.webhooks;
        encode_labelled(
            e,
            "agentidp_webhook_deliveries",
            "Webhook delivery attempts by outcome (failed: a retry is scheduled), and deliveries queued.",
            "outcome",
            [
                ("delivered", w.delivered),
                ("failed", w.failed),
                ("dead_letter", w.dead_letter),
                ("enqueued", w.enqueued),
            ],
        )?;
        encode_one(
            e,
            "agentidp_webhook_queue_depth",
            "Webhook deliveries pending or awaiting a retry.",
            gauge(w.queue_depth),
        )?;
        encode_one(
            e,
            "agentidp_webhook_oldest_pending_seconds",
            "How long the most overdue queued webhook delivery has been due.",
            gauge(w.oldest_due_seconds),
        )?;
        encode_labelled(
            e,
            "agentidp_outbound_fetches",
            "Outbound fetches (partner keys, discovery, DID documents) by result; every code but OK is a refusal or failure.",
            "result",
            self.fetches.iter().copied(),
        )?;
        let c = &self.key_cache;
        encode_labelled(
            e,
            "agentidp_partner_key_cache",
            "Partner key cache events.",
            "event",
            [
                ("hit", c.hits),
                ("miss", c.misses),
                ("fetch", c.fetches),
                ("refetch", c.refetches),
                ("refetch_suppressed", c.refetches_suppressed),
                ("fetch_failure", c.fetch_failures),
                ("stale_serve", c.stale_serves),
                ("key_skipped", c.keys_skipped),
            ],
        )?;
        if let Some(g) = &self.gossip {
            encode_one(
                e,
                "agentidp_gossip_peers",
                "Connected gossip peers.",
                gauge(g.peers),
            )?;
            encode_labelled(
                e,
                "agentidp_gossip_anchors",
                "Trust anchors received and applied, or already held.",
                "result",
                [
                    ("accepted", g.accepted),
                    ("duplicate", g.duplicates),
                    ("sync_skipped", g.sync_skipped),
                ],
            )?;
            encode_labelled(
                e,
                "agentidp_gossip_rejected",
                "Gossip payloads refused, by reason.",
                "reason",
                g.rejected.iter().map(|(r, n)| (*r, *n)),
            )?;
            encode_one(
                e,
                "agentidp_gossip_published",
                "Own trust anchors signed and published.",
                ConstCounter::new(g.published),
            )?;
            encode_labelled(
                e,
                "agentidp_gossip_partner_changes",
                "Partners created, updated or removed by gossip.",
                "change",
                [
                    ("applied", g.applied),
                    ("removed", g.removed),
                    ("shadowed_by_local", g.shadowed_by_local),
                ],
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampled() -> Sampled {
        Sampled {
            webhooks: Default::default(),
            store: StoreSample {
                commits: 7,
                jobs: 9,
                failures: 0,
                commit_micros: 1_500_000,
                max_commit_micros: 250_000,
                max_batch: 4,
            },
            fetches: vec![("OK", 3), ("PRIVATE_ADDRESS", 1)],
            key_cache: federation::CacheCounters {
                hits: 5,
                misses: 2,
                ..Default::default()
            },
            gossip: None,
        }
    }

    /// The sample lines of `text` (no `#` lines), as `name{labels} value`.
    fn samples(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map(|v| v.parse().unwrap())
    }

    #[test]
    fn counters_keep_their_names_and_count() {
        let m = Metrics::new();
        m.tokens_issued.inc();
        m.tokens_issued.inc();
        m.auth_throttled.inc();
        m.connections_open.inc();
        m.connections_open.inc();
        m.connections_open.dec();
        m.connection_closed(CloseReason::HeaderTimeout);
        m.federation_verify(true);
        m.federation_verify(false);
        m.federation_verify(false);
        let text = m.render(sampled());
        assert_eq!(value(&text, "agentidp_tokens_issued_total"), Some(2.0));
        assert_eq!(value(&text, "agentidp_agents_registered_total"), Some(0.0));
        assert_eq!(value(&text, "agentidp_auth_throttled_total"), Some(1.0));
        assert_eq!(value(&text, "agentidp_connections_open"), Some(1.0));
        assert!(text.contains("# TYPE agentidp_connections_open gauge\n"));
        assert!(text.contains(
            "# HELP agentidp_tokens_issued Access tokens issued.\n# TYPE agentidp_tokens_issued counter\n"
        ));
        // Every close reason is reported, at 0 until it happens.
        for (reason, n) in [
            ("idle", 0.0),
            ("header_timeout", 1.0),
            ("body_timeout", 0.0),
            ("evicted", 0.0),
            ("refused", 0.0),
        ] {
            let series = format!("agentidp_connections_closed_total{{reason=\"{reason}\"}}");
            assert_eq!(value(&text, &series), Some(n), "{series}\n{text}");
        }
        assert_eq!(
            value(
                &text,
                "agentidp_federation_verifications_total{outcome=\"valid\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &text,
                "agentidp_federation_verifications_total{outcome=\"refused\"}"
            ),
            Some(2.0)
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1);
        // No name gets the suffix twice.
        assert!(!text.contains("_total_total"), "{text}");
    }

    #[test]
    fn requests_are_counted_by_method_route_and_status() {
        let m = Metrics::new();
        let ms = Duration::from_millis;
        m.observe("POST", "/api/v1/token", 200, ms(2));
        m.observe("POST", "/api/v1/token", 200, ms(3));
        m.observe("POST", "/api/v1/token", 401, Duration::from_micros(300));
        m.observe("BREW", "unmatched", 404, ms(0));
        m.observe("GET", "/health", 200, Duration::from_secs(3));
        let text = m.render(sampled());
        let series = |method: &str, route: &str, status: u16| {
            format!("http_requests_total{{method=\"{method}\",route=\"{route}\",status_code=\"{status}\"}}")
        };
        assert_eq!(
            value(&text, &series("POST", "/api/v1/token", 200)),
            Some(2.0)
        );
        assert_eq!(
            value(&text, &series("POST", "/api/v1/token", 401)),
            Some(1.0)
        );
        assert_eq!(value(&text, &series("other", "unmatched", 404)), Some(1.0));
        assert_eq!(value(&text, &series("GET", "/health", 200)), Some(1.0));
        assert_eq!(
            samples(&text)
                .iter()
                .filter(|l| l.starts_with("http_requests_total{"))
                .count(),
            4
        );
        assert!(text.contains("# TYPE http_requests counter\n"));
        // Buckets are cumulative: 0 s and 0.3 ms fall in the first, 2 and 3 ms by 5 ms, 3 s
        // only in +Inf.
        let bucket = |le: &str| {
            value(
                &text,
                &format!("http_request_duration_seconds_bucket{{le=\"{le}\"}}"),
            )
        };
        assert_eq!(bucket("0.0005"), Some(2.0));
        assert_eq!(bucket("0.0025"), Some(3.0));
        assert_eq!(bucket("0.005"), Some(4.0));
        assert_eq!(bucket("2.5"), Some(4.0));
        assert_eq!(bucket("+Inf"), Some(5.0));
        assert_eq!(
            value(&text, "http_request_duration_seconds_count"),
            Some(5.0)
        );
        let sum = value(&text, "http_request_duration_seconds_sum").unwrap();
        assert!((sum - 3.0053).abs() < 1e-9, "{sum}");
        assert!(text.contains("# TYPE http_request_duration_seconds histogram\n"));
    }

    #[test]
    fn sampled_values_are_rendered() {
        let m = Metrics::new();
        let mut s = sampled();
        let text = m.render(sampled());
        assert_eq!(value(&text, "agentidp_store_commits_total"), Some(7.0));
        assert_eq!(value(&text, "agentidp_store_jobs_total"), Some(9.0));
        assert_eq!(
            value(&text, "agentidp_store_commit_failures_total"),
            Some(0.0)
        );
        assert_eq!(
            value(&text, "agentidp_store_commit_seconds_total"),
            Some(1.5)
        );
        assert_eq!(
            value(&text, "agentidp_store_commit_max_seconds"),
            Some(0.25)
        );
        assert_eq!(value(&text, "agentidp_store_max_batch"), Some(4.0));
        assert!(text.contains("# TYPE agentidp_store_max_batch gauge\n"));
        assert_eq!(
            value(
                &text,
                "agentidp_outbound_fetches_total{result=\"PRIVATE_ADDRESS\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            value(&text, "agentidp_partner_key_cache_total{event=\"hit\"}"),
            Some(5.0)
        );
        assert_eq!(
            value(
                &text,
                "agentidp_partner_key_cache_total{event=\"key_skipped\"}"
            ),
            Some(0.0)
        );
        assert!(text.contains("# HELP agentidp_partner_key_cache Partner key cache events.\n"));
        // Without gossip there is no gossip family at all.
        assert!(!text.contains("agentidp_gossip"), "{text}");

        s.gossip = Some(GossipSample {
            peers: 2,
            accepted: 3,
            rejected: [("bad_signature", 4), ("oversized", 1)]
                .into_iter()
                .collect(),
            shadowed_by_local: 1,
            ..GossipSample::default()
        });
        let text = m.render(s);
        assert_eq!(value(&text, "agentidp_gossip_peers"), Some(2.0));
        assert_eq!(
            value(&text, "agentidp_gossip_anchors_total{result=\"accepted\"}"),
            Some(3.0)
        );
        assert_eq!(
            value(&text, "agentidp_gossip_anchors_total{result=\"duplicate\"}"),
            Some(0.0)
        );
        assert_eq!(
            value(
                &text,
                "agentidp_gossip_rejected_total{reason=\"bad_signature\"}"
            ),
            Some(4.0)
        );
        assert_eq!(value(&text, "agentidp_gossip_published_total"), Some(0.0));
        assert_eq!(
            value(
                &text,
                "agentidp_gossip_partner_changes_total{change=\"shadowed_by_local\"}"
            ),
            Some(1.0)
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
