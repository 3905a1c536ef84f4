//! The application state every handler gets (one `Clone` value, `Arc` fields).

use std::sync::{Arc, RwLock};
use std::time::Instant;

use storage::{NewAuditEntry, Outcome, Store};
use uuid::Uuid;

use crate::clock::Clock;
use crate::keys::KeyRing;
use crate::metrics::Metrics;

/// Settings fixed at start-up that handlers need.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Issuer and base of every absolute URL we publish (no trailing slash).
    pub(crate) issuer: String,
    /// `did:web` of the node.
    pub(crate) node_did: did_method::DidWeb,
    /// Access token lifetime, seconds.
    pub(crate) token_ttl_secs: i64,
    /// How long a retired signing key stays published, ms.
    pub(crate) key_grace_ms: i64,
    /// The node's own organization (instance admin; owner of anonymous audit entries).
    pub(crate) system_org: Uuid,
    /// Partner URLs may be plain http (`--allow-http-fetch`).
    pub(crate) allow_http_fetch: bool,
}

/// Who did something, for the audit log.
#[derive(Debug, Clone)]
pub(crate) struct Actor {
    /// Agent id, or a client id as presented, or `anonymous`.
    pub(crate) id: String,
    /// The organization the entry belongs to.
    pub(crate) org: Uuid,
    /// Client network address.
    pub(crate) client: Option<String>,
}

/// The authenticated caller of an API request: its agent, its organization (the only source of
/// the organization of any request), and its scopes.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) agent_id: Uuid,
    pub(crate) org_id: Uuid,
    /// Effective scopes: the token's scopes that the agent still holds (see
    /// [`crate::app::authz`]).
    pub(crate) scopes: Vec<crate::app::Scope>,
    /// The scopes the token carries, for the checks inside write jobs, which intersect them
    /// with the agent's record as the job reads it.
    pub(crate) token_scopes: Vec<crate::app::Scope>,
    pub(crate) actor: Actor,
}

impl Caller {
    /// Whether the caller holds `scope`.
    pub(crate) fn has(&self, scope: crate::app::Scope) -> bool {
        self.scopes.contains(&scope)
    }

    /// Refuses unless the caller holds `scope`.
    pub(crate) fn require(&self, scope: crate::app::Scope) -> Result<(), crate::app::DomainError> {
        if self.has(scope) {
            Ok(())
        } else {
            Err(crate::app::DomainError::missing_scope(scope))
        }
    }

    /// The caller as the write jobs' authorization checks see it.
    pub(crate) fn acting(&self) -> crate::app::authz::Acting {
        crate::app::authz::Acting {
            agent_id: self.agent_id,
            org_id: self.org_id,
            token_scopes: self.token_scopes.clone(),
        }
    }
}

/// The application state: one `Arc`, so that the many copies the HTTP layer's filters hold cost one
/// reference count each, not one per field.
#[derive(Clone)]
pub(crate) struct AppState(pub(crate) Arc<StateInner>);

impl std::ops::Deref for AppState {
    type Target = StateInner;
    fn deref(&self) -> &StateInner {
        &self.0
    }
}

pub(crate) struct StateInner {
    pub(crate) store: Arc<Store>,
    pub(crate) keys: Arc<RwLock<Arc<KeyRing>>>,
    /// Held across each key-ring reload's read and install, so that reloads install in the order
    /// they read: one that read the store before a rotation committed never replaces the ring
    /// another reload read after it (on a shared store the generation watcher reloads too).
    pub(crate) key_reload: tokio::sync::Mutex<()>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) settings: Arc<Settings>,
    pub(crate) rate_limiter: Arc<crate::ratelimit::RateLimiter>,
    /// Audit chain verifications per organization.
    pub(crate) rate_limiter_audit: Arc<crate::ratelimit::RateLimiter>,
    /// The head of the audit chain as last verified intact (in memory only: after a restart
    /// the first verification re-hashes the whole chain, which finds edits made meanwhile).
    pub(crate) audit_checkpoint: std::sync::Mutex<Option<storage::AuditHead>>,
    /// When a full verification was last requested over the API.
    pub(crate) audit_full_verified_at: std::sync::Mutex<Option<i64>>,
    /// Failed authentications: per-address throttle and bounded audit.
    pub(crate) failures: Arc<crate::app::failures::Failures>,
    pub(crate) clients: Arc<crate::clients::ClientCache>,
    /// Access tokens whose signature already verified.
    pub(crate) verified_tokens: Arc<crate::token::VerifiedTokens>,
    /// Delegation links in force or revoked (loaded at boot, updated by the writes that change
    /// them): the chain check of delegated tokens reads only this.
    pub(crate) delegations: Arc<crate::app::delegation::Registry>,
    /// Rendered DID documents and cards.
    pub(crate) artifacts: Arc<crate::app::artifacts::ArtifactCache>,
    /// Remote did:web documents, and the throttle of the fetches that fill the cache.
    pub(crate) did_cache: Arc<crate::app::resolver::RemoteCache>,
    /// The one guarded outbound HTTP client.
    pub(crate) fetcher: Arc<federation::Fetcher>,
    /// Partners by issuer.
    pub(crate) partners: Arc<crate::app::partners::PartnerCache>,
    /// The last verdict on the store's health (`/health`).
    pub(crate) health: crate::app::health::HealthMonitor,
    /// Partner keys.
    pub(crate) key_cache: Arc<federation::KeyCache>,
    /// The OASF skill and domain taxonomy (`--oasf-schema`), when given.
    pub(crate) taxonomy: Option<Arc<oasf::Taxonomy>>,
    /// The public directory and its search index (`--no-directory`: off).
    pub(crate) directory: Arc<crate::app::directory::Directory>,
    /// Trust-anchor gossip, when it runs.
    pub(crate) gossip: crate::gossip::GossipHub,
    /// Webhook subscriptions in memory, the delivery worker's in-flight set and counters.
    pub(crate) webhooks: Arc<crate::app::webhooks::Hub>,
    /// Usage metering and tier enforcement.
    pub(crate) usage: Arc<crate::app::usage::Tenancy>,
    /// Stripe billing and the analytics/billing switches.
    pub(crate) billing: Arc<crate::app::billing::Billing>,
    pub(crate) started: Instant,
}

impl AppState {
    /// The keys in force (cheap: clones an `Arc`).
    pub(crate) fn keys(&self) -> Arc<KeyRing> {
        match self.keys.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the key ring with the keys now in the store.
    pub(crate) async fn reload_keys(&self) -> Result<Arc<KeyRing>, crate::server::StartError> {
        let _one_at_a_time = self.key_reload.lock().await;
        let ring =
            crate::app::signing_keys::load_ring(&self.store, self.settings.key_grace_ms).await?;
        match self.keys.write() {
            Ok(mut k) => *k = ring.clone(),
            Err(poisoned) => *poisoned.into_inner() = ring.clone(),
        }
        Ok(ring)
    }

    /// The did:web of an agent.
    pub(crate) fn agent_did(&self, id: &Uuid) -> String {
        self.settings
            .node_did
            .child(&["agents", &id.to_string()])
            .map(|d| d.to_string())
            .unwrap_or_default()
    }

    /// An audit entry stamped now.
    pub(crate) fn audit_entry(
        &self,
        actor: &Actor,
        action: &str,
        target: impl Into<String>,
        outcome: Outcome,
        details: serde_json::Value,
    ) -> NewAuditEntry {
        NewAuditEntry {
            time: self.clock.now_ms(),
            org_id: actor.org,
            actor: actor.id.clone(),
            action: action.to_string(),
            target: target.into(),
            outcome,
            client: actor.client.clone(),
            details,
        }
    }

    /// Runs the state change `f` and appends `entry` to the audit log in the same durable write
    /// (both or neither), and counts the append. Returns once the write is on disk.
    pub(crate) async fn write_audited<T, F>(
        &self,
        entry: NewAuditEntry,
        f: F,
    ) -> Result<T, crate::app::DomainError>
    where
        T: Send + 'static,
        F: FnOnce(&mut storage::Tx<'_>) -> Result<T, crate::app::DomainError> + Send + 'static,
    {
        let st = self.clone();
        let out = self
            .store
            .write(move |tx| {
                let out = f(tx)?;
                crate::app::webhooks::audit(tx, &st, entry)?;
                Ok::<_, crate::app::DomainError>(out)
            })
            .await?;
        self.metrics.audit_appends.inc();
        // Deliveries this write queued are committed now.
        self.webhooks.wake();
        Ok(out)
    }

    /// Records a failed authentication of an unauthenticated caller: charged to its source
    /// address, and audited within the bound of [`crate::app::failures`] (never holding the
    /// response: group-committed within the committer's bounded window). `Err(seconds)` when the
    /// address is over its failure budget: answer 429 with that `Retry-After` instead of 401.
    pub(crate) async fn auth_failure(
        &self,
        actor: &Actor,
        action: &str,
        reason: &str,
    ) -> Result<(), u64> {
        use crate::app::failures::{address_key, Disposition};
        self.metrics.auth_failures.inc();
        let now = self.clock.now_ms();
        let address = address_key(actor.client.as_deref());
        let charged = self.failures.charge(&address, now);
        if charged.is_err() {
            self.metrics.auth_throttled.inc();
        }
        let (disposition, closed) = self.failures.note(&address, actor.org, action, reason, now);
        if disposition == Disposition::Audit {
            let entry = self.audit_entry(
                actor,
                action,
                "-",
                Outcome::Failure,
                serde_json::json!({ "reason": reason }),
            );
            self.audit_detached(entry).await;
        }
        self.audit_failure_summaries(closed).await;
        charged
    }

    /// Appends one `auth.failure_summary` entry per closed window of failures.
    pub(crate) async fn audit_failure_summaries(
        &self,
        summaries: Vec<crate::app::failures::Summary>,
    ) {
        for s in summaries {
            let org = if s.org.is_nil() {
                self.settings.system_org
            } else {
                s.org
            };
            let entry = NewAuditEntry {
                time: self.clock.now_ms(),
                org_id: org,
                actor: "anonymous".into(),
                action: "auth.failure_summary".into(),
                target: "-".into(),
                outcome: Outcome::Failure,
                client: Some(s.address.clone()),
                details: serde_json::json!({
                    "failures": s.summarized,
                    "auditedSeparately": s.audited,
                    "from": crate::clock::rfc3339(s.from_ms),
                    "to": crate::clock::rfc3339(s.to_ms),
                    "actions": s.actions,
                    "reasons": s.reasons,
                }),
            };
            self.audit_detached(entry).await;
        }
    }

    /// Appends an audit entry without holding the response: group-committed within the
    /// committer's bounded window (token issuance, verifications, failures).
    pub(crate) async fn audit_detached(&self, entry: NewAuditEntry) {
        self.metrics.audit_appends.inc();
        let usage = self.usage.clone();
        self.store
            .write_detached({
                let st = self.clone();
                move |tx| {
                    crate::app::webhooks::audit(tx, &st, entry)?;
                    usage.drain_into(tx);
                    Ok(())
                }
            })
            .await;
    }
}
