//! Webhooks: subscriptions, the transactional outbox and the delivery worker.
//!
//! **Outbox.** Every audited change passes its audit entry through [`audit`], which, in the same
//! write job, maps the entry to events ([`events_of`]) and writes one delivery row per matching
//! active subscription of the organization (fan-out at write time: the rows are the outbox). An
//! acknowledged change therefore always has its deliveries, and a change whose write failed has
//! none, on every engine and across `kill -9`. `token.issued` is written by the batched
//! token-issuance audit write the same way, but only looked at when some active subscription of
//! the node asks for it (an in-memory count kept by the subscription writes), so a node without
//! one pays one atomic load per token.
//!
//! **Delivery.** One worker task ([`run`]) reads each active subscription's due deliveries from
//! the store's pending queue (a page at a time, never all of them: the working set is at most
//! [`PER_SUBSCRIPTION`] deliveries per subscription and [`MAX_IN_FLIGHT`] in all), POSTs them
//! through the node's guarded outbound client (no redirects, timeouts, body discarded past a
//! cap), and hands the outcomes to [`apply_results`], which commits a batch of them in one store
//! write. A delivery counts as delivered only once that write is durable; a crash between the
//! receiver's 2xx and that commit sends it again after the restart (the at-least-once window,
//! at most one batch of outcomes).
//!
//! **Signatures.** Standard Webhooks (<https://www.standardwebhooks.com/>): `webhook-id` (the
//! event id), `webhook-timestamp` (Unix seconds of the wall clock at the attempt) and
//! `webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>` where the key is
//! the base64-decoded part of the `whsec_` secret; during a rotation's grace period the old
//! secret's signature follows, space-separated. Also the predecessor's
//! `X-SentryAgent-Signature: sha256=<hex HMAC-SHA256(the secret string, body)>` (no timestamp:
//! replayable; kept for receivers written against the predecessor).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use storage::{
    DeliveryStatus, NewAuditEntry, Outcome, StoreError, Tx, WebhookDelivery, WebhookSubscription,
};
use uuid::Uuid;

use crate::app::{AppState, Caller, DomainError, ErrorCode, Scope};

/// Every event type a subscription may ask for.
pub(crate) const EVENTS: &[&str] = &[
    "agent.created",
    "agent.updated",
    "agent.suspended",
    "agent.reactivated",
    "agent.decommissioned",
    "credential.generated",
    "credential.rotated",
    "credential.revoked",
    "token.issued",
    "token.revoked",
    "agent.key.added",
    "agent.key.removed",
    "delegation.granted",
    "delegation.revoked",
    "federation.partner.created",
    "federation.partner.updated",
    "federation.partner.deleted",
    "webhook.test",
];

/// Most subscriptions per organization.
const MAX_PER_ORG: usize = 25;
/// Longest subscriber URL.
const MAX_URL: usize = 2048;
/// Deliveries of one subscription in flight at once (one slow receiver holds only these).
pub(crate) const PER_SUBSCRIPTION: usize = 16;
/// Deliveries in flight in all.
pub(crate) const MAX_IN_FLIGHT: usize = 512;
/// Outcomes committed per store write.
const RESULT_BATCH: usize = 512;
/// Attempts before a delivery is dead-lettered.
const MAX_ATTEMPTS: u32 = 10;
/// Waits after the 1st, 2nd, ... 9th failed attempt (about a day in all), ± 10% jitter.
const BACKOFF_SECS: [i64; 9] = [60, 300, 900, 1800, 3600, 7200, 14400, 21600, 36000];
/// Consecutive failed attempts after which a subscription is disabled.
const DISABLE_AFTER: u32 = 50;
/// How long a rotated-out secret keeps signing.
const ROTATION_GRACE_MS: i64 = 24 * 3600 * 1000;
/// Connect timeout, whole-attempt timeout and body bytes read per attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_RESPONSE_BODY: u64 = 64 * 1024;
/// How often the worker looks at the queue when nothing wakes it.
const TICK: Duration = Duration::from_millis(500);

/// What the delivery side keeps in memory: which organizations have subscriptions (kept by the
/// subscription writes, inside their write jobs, so a change committed after a subscription
/// always sees it), the in-flight set, counters, and the worker's wake-up.
#[derive(Default)]
pub(crate) struct Hub {
    /// Organization -> its subscriptions (id -> wants `token.issued` while active).
    orgs: RwLock<HashMap<Uuid, HashMap<Uuid, bool>>>,
    /// Active subscriptions asking for `token.issued`, node-wide.
    token_issued: AtomicUsize,
    /// Deliveries being attempted or whose outcome is not yet committed, per subscription.
    in_flight: Mutex<HashMap<Uuid, HashSet<Uuid>>>,
    wake: tokio::sync::Notify,
    /// Deliveries by outcome: delivered, failed (retry scheduled), dead_letter.
    delivered: AtomicU64,
    failed: AtomicU64,
    dead_lettered: AtomicU64,
    enqueued: AtomicU64,
}

impl Hub {
    /// Loads the subscriptions of the store.
    pub(crate) fn load(store: &storage::Store) -> Result<Hub, StoreError> {
        let hub = Hub::default();
        for s in store.list_webhooks()? {
            hub.note(&s.org_id, &s.id, Some(&s));
        }
        Ok(hub)
    }

    /// Records a subscription's current state (`None`: deleted).
    fn note(&self, org: &Uuid, id: &Uuid, sub: Option<&WebhookSubscription>) {
        let mut orgs = match self.orgs.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let subs = orgs.entry(*org).or_default();
        let before = subs.get(id).copied().unwrap_or(false);
        let after = sub.is_some_and(|s| s.active && s.events.iter().any(|e| e == "token.issued"));
        match sub {
            Some(_) => {
                subs.insert(*id, after);
            }
            None => {
                subs.remove(id);
            }
        }
        if subs.is_empty() {
            orgs.remove(org);
        }
        match (before, after) {
            (false, true) => {
                self.token_issued.fetch_add(1, Ordering::AcqRel);
            }
            (true, false) => {
                self.token_issued.fetch_sub(1, Ordering::AcqRel);
            }
            _ => {}
        }
    }

    fn org_has_subscriptions(&self, org: &Uuid) -> bool {
        match self.orgs.read() {
            Ok(g) => g.contains_key(org),
            Err(p) => p.into_inner().contains_key(org),
        }
    }

    /// Wakes the worker (new deliveries committed, or slots freed).
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, HashSet<Uuid>>> {
        match self.in_flight.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Counters for `/metrics`.
    pub(crate) fn sample(&self, store: &storage::Store, now_ms: i64) -> Sample {
        let (depth, earliest) = store.webhook_queue_stats(1_000_000).unwrap_or((0, None));
        Sample {
            delivered: self.delivered.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dead_letter: self.dead_lettered.load(Ordering::Relaxed),
            enqueued: self.enqueued.load(Ordering::Relaxed),
            queue_depth: depth as u64,
            oldest_due_seconds: earliest.map_or(0.0, |e| ((now_ms - e).max(0) as f64) / 1000.0),
        }
    }
}

/// The webhook counters at scrape time.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Sample {
    pub(crate) delivered: u64,
    pub(crate) failed: u64,
    pub(crate) dead_letter: u64,
    pub(crate) enqueued: u64,
    pub(crate) queue_depth: u64,
    pub(crate) oldest_due_seconds: f64,
}

// ---------------------------------------------------------------------------------------------
// The outbox

/// Appends `entry` to the audit log and, in the same write job, writes the deliveries of the
/// events it stands for. Every audited change of the node goes through here.
pub(crate) fn audit(
    tx: &mut Tx<'_>,
    state: &AppState,
    entry: NewAuditEntry,
) -> Result<u64, StoreError> {
    emit(tx, state, &entry)?;
    tx.audit(entry)
}

fn emit(tx: &mut Tx<'_>, state: &AppState, entry: &NewAuditEntry) -> Result<(), StoreError> {
    let hub = &state.webhooks;
    if entry.outcome != Outcome::Success {
        return Ok(());
    }
    // The token hot path: one atomic load when no subscription anywhere wants tokens.
    if entry.action == "token.issue" && hub.token_issued.load(Ordering::Acquire) == 0 {
        return Ok(());
    }
    if !hub.org_has_subscriptions(&entry.org_id) {
        return Ok(());
    }
    let events = events_of(tx, state, entry)?;
    if events.is_empty() {
        return Ok(());
    }
    let subs = tx.list_org_webhooks(&entry.org_id)?;
    for (event, data) in events {
        for sub in subs
            .iter()
            .filter(|s| s.active && s.events.iter().any(|e| e == event))
        {
            enqueue(tx, hub, sub, event, entry.time, data.clone());
        }
    }
    Ok(())
}

/// Writes one delivery of `event` to `sub`, due now.
fn enqueue(
    tx: &mut Tx<'_>,
    hub: &Hub,
    sub: &WebhookSubscription,
    event: &str,
    time: i64,
    data: Value,
) -> WebhookDelivery {
    let event_id = Uuid::new_v4();
    let payload = json!({
        "id": event_id,
        "event": event,
        "timestamp": crate::clock::rfc3339(time),
        "organization_id": sub.org_id,
        "data": data,
    });
    let d = WebhookDelivery {
        id: Uuid::new_v4(),
        subscription_id: sub.id,
        org_id: sub.org_id,
        event_id,
        event_type: event.to_string(),
        payload: payload.to_string(),
        status: DeliveryStatus::Pending,
        http_status_code: None,
        attempt_count: 0,
        next_retry_at: Some(time),
        delivered_at: None,
        last_error: None,
        created_at: time,
        updated_at: time,
    };
    tx.insert_webhook_delivery(&d);
    hub.enqueued.fetch_add(1, Ordering::Relaxed);
    // The worker reads committed rows only: a wake-up before the commit finds nothing new and
    // the next tick (or the awaited write's own wake-up) picks them up.
    hub.wake();
    d
}

/// The events an audit entry stands for, with their `data`: the public view of the object as
/// this write leaves it (never a secret).
fn events_of(
    tx: &Tx<'_>,
    state: &AppState,
    e: &NewAuditEntry,
) -> Result<Vec<(&'static str, Value)>, StoreError> {
    let target: Option<Uuid> = e.target.parse().ok();
    let agent = |tx: &Tx<'_>| -> Result<Option<Value>, StoreError> {
        Ok(match target {
            Some(id) => tx.get_agent(&id)?.map(|a| {
                serde_json::to_value(crate::model::AgentView::new(&a, state.agent_did(&a.id)))
                    .unwrap_or(Value::Null)
            }),
            None => None,
        })
    };
    let credential = |tx: &Tx<'_>| -> Result<Option<Value>, StoreError> {
        let id = e.details["credentialId"]
            .as_str()
            .and_then(|s| s.parse::<Uuid>().ok());
        Ok(match id {
            Some(id) => tx.get_credential(&id)?.map(|c| {
                serde_json::to_value(crate::model::CredentialView::new(&c, e.time))
                    .unwrap_or(Value::Null)
            }),
            None => None,
        })
    };
    let with_target = || {
        let mut v = e.details.clone();
        if let Some(o) = v.as_object_mut() {
            o.insert("id".into(), json!(e.target));
        }
        v
    };
    let out = match e.action.as_str() {
        "agent.register" => agent(tx)?.map(|v| vec![("agent.created", v)]),
        "agent.decommission" => agent(tx)?.map(|v| vec![("agent.decommissioned", v)]),
        "agent.update" => agent(tx)?.map(|v| {
            let fields: Vec<&str> = e.details["fields"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let mut evs = Vec::new();
            if fields.contains(&"status") {
                match v["status"].as_str() {
                    Some("suspended") => evs.push(("agent.suspended", v.clone())),
                    Some("active") => evs.push(("agent.reactivated", v.clone())),
                    _ => {}
                }
            }
            if fields.iter().any(|f| *f != "status") {
                evs.push(("agent.updated", v));
            }
            evs
        }),
        "credential.generate" => credential(tx)?.map(|v| vec![("credential.generated", v)]),
        "credential.rotate" => credential(tx)?.map(|v| vec![("credential.rotated", v)]),
        "credential.revoke" => credential(tx)?.map(|v| vec![("credential.revoked", v)]),
        "token.issue" => Some(vec![(
            "token.issued",
            json!({
                "agentId": e.target, "jti": e.details["jti"], "scope": e.details["scope"],
                "clientId": e.details["clientId"], "expiresAt": e.details["exp"],
            }),
        )]),
        "token.revoke" => Some(vec![(
            "token.revoked",
            json!({ "agentId": e.target, "jti": e.details["jti"] }),
        )]),
        "agent.key.add" => Some(vec![("agent.key.added", with_target())]),
        "agent.key.remove" => Some(vec![("agent.key.removed", with_target())]),
        "delegation.grant" => Some(vec![("delegation.granted", with_target())]),
        "delegation.revoke" => Some(vec![("delegation.revoked", with_target())]),
        "federation.partner.create" => Some(vec![("federation.partner.created", with_target())]),
        "federation.partner.update" => Some(vec![("federation.partner.updated", with_target())]),
        "federation.partner.delete" => Some(vec![("federation.partner.deleted", with_target())]),
        _ => None,
    };
    Ok(out.unwrap_or_default())
}

// ---------------------------------------------------------------------------------------------
// Subscriptions

/// A subscription request, validated.
#[derive(Debug, Default)]
pub(crate) struct SubscriptionInput {
    pub(crate) name: Option<String>,
    pub(crate) url: Option<String>,
    pub(crate) events: Option<Vec<String>>,
    pub(crate) active: Option<bool>,
}

/// A new secret: `whsec_` and the base64 of 32 random bytes.
fn new_secret() -> Result<String, DomainError> {
    let bytes = crate::secrets::random_bytes::<32>().map_err(|e| {
        tracing::error!(error = %e, "no randomness for a webhook secret");
        DomainError::Internal
    })?;
    Ok(format!("whsec_{}", STANDARD.encode(bytes)))
}

async fn check_input(
    state: &AppState,
    input: &SubscriptionInput,
    creating: bool,
) -> Result<(), DomainError> {
    if let Some(name) = &input.name {
        let n = name.trim().chars().count();
        if n == 0 || n > 256 {
            return Err(DomainError::validation("name", "1 to 256 characters"));
        }
    } else if creating {
        return Err(DomainError::validation("name", "required"));
    }
    if let Some(events) = &input.events {
        if events.is_empty() {
            return Err(DomainError::invalid(
                ErrorCode::WebhookEventsEmpty,
                "events: subscribe to at least one event type",
            ));
        }
        if events.len() > EVENTS.len() {
            return Err(DomainError::validation("events", "too many entries"));
        }
        if let Some(bad) = events.iter().find(|e| !EVENTS.contains(&e.as_str())) {
            return Err(DomainError::invalid(
                ErrorCode::WebhookUnknownEvent,
                format!("events: unknown event type {bad:?}"),
            )
            .with_details(json!({ "field": "events", "known": EVENTS })));
        }
    } else if creating {
        return Err(DomainError::invalid(
            ErrorCode::WebhookEventsEmpty,
            "events: subscribe to at least one event type",
        ));
    }
    if let Some(url) = &input.url {
        if url.len() > MAX_URL {
            return Err(DomainError::invalid(
                ErrorCode::WebhookUrlInvalid,
                format!("url: at most {MAX_URL} characters"),
            ));
        }
        state.fetcher.check_target(url).await.map_err(|e| {
            let code = match e.code() {
                "HTTP_NOT_ALLOWED" => ErrorCode::WebhookUrlNotHttps,
                "PRIVATE_ADDRESS" => ErrorCode::WebhookUrlForbidden,
                "CREDENTIALS_IN_URL" => ErrorCode::WebhookUrlCredentials,
                "UNRESOLVABLE" => ErrorCode::WebhookUrlUnresolvable,
                _ => ErrorCode::WebhookUrlInvalid,
            };
            DomainError::invalid(code, format!("url: {e}"))
                .with_details(json!({ "field": "url", "reason": e.code() }))
        })?;
    } else if creating {
        return Err(DomainError::invalid(
            ErrorCode::WebhookUrlInvalid,
            "url: required",
        ));
    }
    Ok(())
}

fn dedup(events: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(events.len());
    for e in events {
        if !out.contains(&e) {
            out.push(e);
        }
    }
    out
}

fn not_found() -> DomainError {
    DomainError::not_found(
        ErrorCode::WebhookNotFound,
        "Webhook subscription with the specified ID was not found.",
    )
}

/// The caller's subscription `id`, as the job sees it.
fn own(tx: &Tx<'_>, id: &Uuid, org: &Uuid) -> Result<WebhookSubscription, DomainError> {
    tx.get_webhook(id)?
        .filter(|s| &s.org_id == org)
        .ok_or_else(not_found)
}

fn entry(
    state: &AppState,
    caller: &Caller,
    action: &str,
    id: &Uuid,
    details: Value,
) -> NewAuditEntry {
    state.audit_entry(
        &caller.actor,
        action,
        id.to_string(),
        Outcome::Success,
        details,
    )
}

/// Creates a subscription; returns it with its secret (shown once).
pub(crate) async fn create(
    state: &AppState,
    caller: &Caller,
    input: SubscriptionInput,
) -> Result<(WebhookSubscription, String), DomainError> {
    caller.require(Scope::WebhooksWrite)?;
    check_input(state, &input, true).await?;
    let now = state.clock.now_ms();
    let secret = new_secret()?;
    let sub = WebhookSubscription {
        id: Uuid::new_v4(),
        org_id: caller.org_id,
        name: input.name.unwrap_or_default().trim().to_string(),
        url: input.url.unwrap_or_default(),
        events: dedup(input.events.unwrap_or_default()),
        active: input.active.unwrap_or(true),
        failure_count: 0,
        disabled_reason: None,
        secret: secret.clone(),
        previous_secret: None,
        previous_until: None,
        created_at: now,
        updated_at: now,
    };
    let audit = entry(
        state,
        caller,
        "webhook.create",
        &sub.id,
        json!({ "url": sub.url, "events": sub.events }),
    );
    let acting = caller.acting();
    let st = state.clone();
    let sub = state
        .write_audited(audit, move |tx| {
            acting.require_now(tx, Scope::WebhooksWrite)?;
            if tx.list_org_webhooks(&sub.org_id)?.len() >= MAX_PER_ORG {
                return Err(DomainError::conflict(
                    ErrorCode::WebhookLimitExceeded,
                    format!("an organization has at most {MAX_PER_ORG} webhook subscriptions"),
                ));
            }
            tx.put_webhook(&sub);
            st.webhooks.note(&sub.org_id, &sub.id, Some(&sub));
            Ok(sub)
        })
        .await?;
    Ok((sub, secret))
}

/// The caller's subscriptions.
pub(crate) fn list(
    state: &AppState,
    caller: &Caller,
) -> Result<Vec<WebhookSubscription>, DomainError> {
    caller.require(Scope::WebhooksRead)?;
    Ok(state.store.list_org_webhooks(&caller.org_id)?)
}

/// One of the caller's subscriptions.
pub(crate) fn get(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
) -> Result<WebhookSubscription, DomainError> {
    caller.require(Scope::WebhooksRead)?;
    state
        .store
        .get_webhook(&id)?
        .filter(|s| s.org_id == caller.org_id)
        .ok_or_else(not_found)
}

/// Changes a subscription. `active: true` re-enables one the node disabled (and resets its
/// failure count).
pub(crate) async fn update(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    input: SubscriptionInput,
) -> Result<WebhookSubscription, DomainError> {
    caller.require(Scope::WebhooksWrite)?;
    if input.name.is_none()
        && input.url.is_none()
        && input.events.is_none()
        && input.active.is_none()
    {
        return Err(DomainError::validation("body", "give at least one field"));
    }
    check_input(state, &input, false).await?;
    let now = state.clock.now_ms();
    let audit = entry(
        state,
        caller,
        "webhook.update",
        &id,
        json!({ "url": input.url, "events": input.events, "active": input.active, "name": input.name }),
    );
    let acting = caller.acting();
    let org = caller.org_id;
    let st = state.clone();
    let sub = state
        .write_audited(audit, move |tx| {
            acting.require_now(tx, Scope::WebhooksWrite)?;
            let mut s = own(tx, &id, &org)?;
            if let Some(n) = input.name {
                s.name = n.trim().to_string();
            }
            if let Some(u) = input.url {
                s.url = u;
            }
            if let Some(e) = input.events {
                s.events = dedup(e);
            }
            if let Some(a) = input.active {
                if a && !s.active {
                    s.failure_count = 0;
                    s.disabled_reason = None;
                }
                s.active = a;
            }
            s.updated_at = now;
            tx.put_webhook(&s);
            st.webhooks.note(&s.org_id, &s.id, Some(&s));
            Ok(s)
        })
        .await?;
    state.webhooks.wake();
    Ok(sub)
}

/// Deletes a subscription, its queue and its log.
pub(crate) async fn delete(state: &AppState, caller: &Caller, id: Uuid) -> Result<(), DomainError> {
    caller.require(Scope::WebhooksWrite)?;
    let audit = entry(state, caller, "webhook.delete", &id, json!({}));
    let acting = caller.acting();
    let org = caller.org_id;
    let st = state.clone();
    state
        .write_audited(audit, move |tx| {
            acting.require_now(tx, Scope::WebhooksWrite)?;
            let s = own(tx, &id, &org)?;
            tx.delete_webhook(&s)?;
            st.webhooks.note(&s.org_id, &s.id, None);
            Ok(())
        })
        .await
}

/// Replaces the secret; the old one keeps signing (second signature) for a grace period.
pub(crate) async fn rotate_secret(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
) -> Result<(WebhookSubscription, String), DomainError> {
    caller.require(Scope::WebhooksWrite)?;
    let now = state.clock.now_ms();
    let secret = new_secret()?;
    let audit = entry(
        state,
        caller,
        "webhook.rotate_secret",
        &id,
        json!({ "previousValidUntil": crate::clock::rfc3339(now + ROTATION_GRACE_MS) }),
    );
    let acting = caller.acting();
    let org = caller.org_id;
    let new = secret.clone();
    let sub = state
        .write_audited(audit, move |tx| {
            acting.require_now(tx, Scope::WebhooksWrite)?;
            let mut s = own(tx, &id, &org)?;
            s.previous_secret = Some(std::mem::replace(&mut s.secret, new));
            s.previous_until = Some(now + ROTATION_GRACE_MS);
            s.updated_at = now;
            tx.put_webhook(&s);
            Ok(s)
        })
        .await?;
    Ok((sub, secret))
}

/// Schedules another attempt of a delivery, now.
pub(crate) async fn retry(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    delivery: Uuid,
) -> Result<WebhookDelivery, DomainError> {
    caller.require(Scope::WebhooksWrite)?;
    let now = state.clock.now_ms();
    let audit = entry(
        state,
        caller,
        "webhook.retry",
        &id,
        json!({ "deliveryId": delivery }),
    );
    let acting = caller.acting();
    let org = caller.org_id;
    let d = state
        .write_audited(audit, move |tx| {
            acting.require_now(tx, Scope::WebhooksWrite)?;
            own(tx, &id, &org)?;
            let mut d = tx
                .get_webhook_delivery(&delivery)?
                .filter(|d| d.subscription_id == id)
                .ok_or_else(|| {
                    DomainError::not_found(
                        ErrorCode::WebhookDeliveryNotFound,
                        "no such delivery of this subscription",
                    )
                })?;
            let old_due = match d.status {
                DeliveryStatus::Pending | DeliveryStatus::Failed => d.next_retry_at,
                _ => None,
            };
            if d.status == DeliveryStatus::DeadLetter || d.status == DeliveryStatus::Delivered {
                // A manual retry gets one more attempt (and, if it fails, the last backoff).
                d.attempt_count = d.attempt_count.min(MAX_ATTEMPTS - 1);
            }
            d.status = DeliveryStatus::Pending;
            d.next_retry_at = Some(now);
            d.updated_at = now;
            tx.update_webhook_delivery(old_due, &d);
            Ok(d)
        })
        .await?;
    state.webhooks.wake();
    Ok(d)
}

/// Sends a `webhook.test` event to this subscription only.
pub(crate) async fn send_test(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
) -> Result<WebhookDelivery, DomainError> {
    caller.require(Scope::WebhooksWrite)?;
    let now = state.clock.now_ms();
    let audit = entry(state, caller, "webhook.test", &id, json!({}));
    let acting = caller.acting();
    let org = caller.org_id;
    let st = state.clone();
    let d = state
        .write_audited(audit, move |tx| {
            acting.require_now(tx, Scope::WebhooksWrite)?;
            let s = own(tx, &id, &org)?;
            Ok(enqueue(
                tx,
                &st.webhooks,
                &s,
                "webhook.test",
                now,
                json!({ "subscriptionId": s.id, "message": "This is a test event from agentidp." }),
            ))
        })
        .await?;
    state.webhooks.wake();
    Ok(d)
}

/// The most deliveries one page of the log holds.
pub(crate) const MAX_DELIVERY_PAGE: usize = 100;

/// A page of a subscription's deliveries, newest first (`limit` 1..=[`MAX_DELIVERY_PAGE`]).
pub(crate) fn deliveries(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    status: Option<&str>,
    offset: usize,
    limit: usize,
) -> Result<storage::DeliveryPage, DomainError> {
    if !(1..=MAX_DELIVERY_PAGE).contains(&limit) {
        return Err(DomainError::validation("limit", "1 to 100"));
    }
    get(state, caller, id)?;
    let status = match status {
        None => None,
        Some("pending") => Some(DeliveryStatus::Pending),
        Some("delivered") => Some(DeliveryStatus::Delivered),
        Some("failed") => Some(DeliveryStatus::Failed),
        Some("dead_letter") => Some(DeliveryStatus::DeadLetter),
        Some(other) => {
            return Err(DomainError::invalid(
                ErrorCode::InvalidQuery,
                format!("status: {other:?} is not one of pending, delivered, failed, dead_letter"),
            ))
        }
    };
    Ok(state
        .store
        .list_webhook_deliveries(&id, status, offset, limit)?)
}

// ---------------------------------------------------------------------------------------------
// Signing

type HmacSha256 = Hmac<Sha256>;

/// The key of a `whsec_` secret: the base64 after the prefix (as the standardwebhooks
/// libraries decode it).
fn secret_key(secret: &str) -> Vec<u8> {
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    STANDARD
        .decode(b64)
        .unwrap_or_else(|_| b64.as_bytes().to_vec())
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC takes keys of any length; the error case cannot occur.
    let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
        return Vec::new();
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

/// `v1,<base64>` for one secret.
pub(crate) fn sign_v1(secret: &str, id: &str, timestamp: i64, body: &str) -> String {
    let ts = timestamp.to_string();
    let sig = hmac(
        &secret_key(secret),
        &[id.as_bytes(), b".", ts.as_bytes(), b".", body.as_bytes()],
    );
    format!("v1,{}", STANDARD.encode(sig))
}

/// The headers of one attempt.
fn headers(
    sub: &WebhookSubscription,
    d: &WebhookDelivery,
    now_ms: i64,
    wall_secs: i64,
) -> Vec<(&'static str, String)> {
    let id = d.event_id.to_string();
    let mut sig = sign_v1(&sub.secret, &id, wall_secs, &d.payload);
    if let (Some(prev), Some(until)) = (&sub.previous_secret, sub.previous_until) {
        if now_ms < until {
            sig.push(' ');
            sig.push_str(&sign_v1(prev, &id, wall_secs, &d.payload));
        }
    }
    let legacy = hex::encode(hmac(sub.secret.as_bytes(), &[d.payload.as_bytes()]));
    vec![
        ("content-type", "application/json".to_string()),
        ("webhook-id", id),
        ("webhook-timestamp", wall_secs.to_string()),
        ("webhook-signature", sig),
        ("x-sentryagent-signature", format!("sha256={legacy}")),
        ("x-sentryagent-event", d.event_type.clone()),
    ]
}

// ---------------------------------------------------------------------------------------------
// The worker

/// The outcome of one attempt.
struct Attempt {
    delivery: Uuid,
    subscription: Uuid,
    due: i64,
    result: Result<u16, String>,
}

/// Runs the delivery worker until the node stops.
pub(crate) async fn run(state: AppState) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Attempt>(MAX_IN_FLIGHT);
    tokio::spawn(apply_loop(state.clone(), rx));
    let total = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    loop {
        if let Err(e) = pass(&state, &tx, &total) {
            tracing::warn!(error = %e, "webhook worker pass failed");
        }
        let _ = tokio::time::timeout(TICK, state.webhooks.wake.notified()).await;
    }
}

/// One look at every active subscription's due deliveries: starts what the bounds allow.
fn pass(
    state: &AppState,
    results: &tokio::sync::mpsc::Sender<Attempt>,
    total: &Arc<tokio::sync::Semaphore>,
) -> Result<(), StoreError> {
    let now = state.clock.now_ms();
    let subs = state.store.list_webhooks()?;
    for sub in subs.into_iter().filter(|s| s.active) {
        let busy = state
            .webhooks
            .in_flight()
            .get(&sub.id)
            .map_or(0, HashSet::len);
        let room = PER_SUBSCRIPTION
            .saturating_sub(busy)
            .min(total.available_permits());
        if room == 0 {
            continue;
        }
        let due = {
            let flight = state.webhooks.in_flight();
            let taken = flight.get(&sub.id);
            state
                .store
                .due_webhook_deliveries(&sub.id, now, room, |id| {
                    taken.is_some_and(|t| t.contains(id))
                })?
        };
        if due.is_empty() {
            continue;
        }
        let sub = Arc::new(sub);
        for (due_at, id) in due {
            let Ok(permit) = Arc::clone(total).try_acquire_owned() else {
                return Ok(());
            };
            state
                .webhooks
                .in_flight()
                .entry(sub.id)
                .or_default()
                .insert(id);
            let (state, sub, results) = (state.clone(), Arc::clone(&sub), results.clone());
            tokio::spawn(async move {
                let result = attempt(&state, &sub, &id).await;
                let _ = results
                    .send(Attempt {
                        delivery: id,
                        subscription: sub.id,
                        due: due_at,
                        result,
                    })
                    .await;
                drop(permit);
            });
        }
    }
    Ok(())
}

/// POSTs one delivery; `Ok(status)` when the receiver answered.
async fn attempt(state: &AppState, sub: &WebhookSubscription, id: &Uuid) -> Result<u16, String> {
    let d = match state.store.get_webhook_delivery(id) {
        Ok(Some(d)) => d,
        Ok(None) => return Err("delivery vanished".into()),
        Err(e) => return Err(e.to_string()),
    };
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let h = headers(sub, &d, state.clock.now_ms(), wall);
    state
        .fetcher
        .post(
            &sub.url,
            &h,
            bytes::Bytes::from(d.payload.into_bytes()),
            ATTEMPT_TIMEOUT,
            MAX_RESPONSE_BODY,
        )
        .await
        .map_err(|e| format!("{}: {e}", e.code()))
}

/// Commits outcomes in batches; only then are they out of the in-flight set.
async fn apply_loop(state: AppState, mut rx: tokio::sync::mpsc::Receiver<Attempt>) {
    let mut buf = Vec::with_capacity(RESULT_BATCH);
    while rx.recv_many(&mut buf, RESULT_BATCH).await > 0 {
        let batch = std::mem::take(&mut buf);
        let keys: Vec<(Uuid, Uuid)> = batch.iter().map(|a| (a.subscription, a.delivery)).collect();
        match apply_results(&state, batch).await {
            Ok(counts) => {
                let h = &state.webhooks;
                h.delivered.fetch_add(counts[0], Ordering::Relaxed);
                h.failed.fetch_add(counts[1], Ordering::Relaxed);
                h.dead_lettered.fetch_add(counts[2], Ordering::Relaxed);
            }
            Err(e) => {
                tracing::error!(error = %e, "webhook delivery outcomes not recorded; they will be attempted again")
            }
        }
        {
            let mut flight = state.webhooks.in_flight();
            for (sub, d) in keys {
                if let Some(set) = flight.get_mut(&sub) {
                    set.remove(&d);
                    if set.is_empty() {
                        flight.remove(&sub);
                    }
                }
            }
        }
        state.webhooks.wake();
    }
}

fn backoff_ms(failed_attempts: u32) -> i64 {
    let i = (failed_attempts.max(1) as usize - 1).min(BACKOFF_SECS.len() - 1);
    let base = BACKOFF_SECS[i] * 1000;
    let jitter = crate::secrets::random_bytes::<2>()
        .map(|b| i64::from(u16::from_le_bytes(b)))
        .unwrap_or(32768);
    // ±10%.
    base + base * (jitter - 32768) / 327_680
}

/// One durable write for a batch of outcomes: delivery states, queue entries, failure counts
/// and automatic disabling. Returns (delivered, failed, dead-lettered).
async fn apply_results(state: &AppState, batch: Vec<Attempt>) -> Result<[u64; 3], StoreError> {
    let now = state.clock.now_ms();
    let st = state.clone();
    state
        .store
        .write(move |tx| {
            let mut counts = [0u64; 3];
            let mut subs: HashMap<Uuid, Option<WebhookSubscription>> = HashMap::new();
            for a in batch {
                let Some(mut d) = tx.get_webhook_delivery(&a.delivery)? else {
                    continue;
                };
                // Retried by hand or otherwise moved meanwhile: the queue entry we took is gone.
                if d.next_retry_at != Some(a.due)
                    || !matches!(d.status, DeliveryStatus::Pending | DeliveryStatus::Failed)
                {
                    continue;
                }
                let sub = match subs.entry(a.subscription) {
                    std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::hash_map::Entry::Vacant(v) => v.insert(tx.get_webhook(&a.subscription)?),
                };
                d.attempt_count += 1;
                d.updated_at = now;
                let ok = matches!(a.result, Ok(s) if (200..300).contains(&s));
                d.http_status_code = a.result.as_ref().ok().copied();
                if ok {
                    d.status = DeliveryStatus::Delivered;
                    d.delivered_at = Some(now);
                    d.next_retry_at = None;
                    d.last_error = None;
                    counts[0] += 1;
                    if let Some(s) = sub.as_mut() {
                        s.failure_count = 0;
                    }
                } else {
                    d.last_error = Some(match &a.result {
                        Ok(s) => format!("HTTP {s}"),
                        Err(e) => e.chars().take(300).collect(),
                    });
                    if d.attempt_count >= MAX_ATTEMPTS {
                        d.status = DeliveryStatus::DeadLetter;
                        d.next_retry_at = None;
                        counts[2] += 1;
                    } else {
                        d.status = DeliveryStatus::Failed;
                        d.next_retry_at = Some(now + backoff_ms(d.attempt_count));
                        counts[1] += 1;
                    }
                    if let Some(s) = sub.as_mut() {
                        s.failure_count = s.failure_count.saturating_add(1);
                        if s.active && s.failure_count >= DISABLE_AFTER {
                            s.active = false;
                            s.disabled_reason = Some(format!(
                                "disabled after {DISABLE_AFTER} consecutive failed deliveries"
                            ));
                            tracing::warn!(subscription = %s.id, "webhook subscription disabled after consecutive failures");
                        }
                    }
                }
                tx.update_webhook_delivery(Some(a.due), &d);
            }
            for s in subs.into_values().flatten() {
                tx.put_webhook(&s);
                st.webhooks.note(&s.org_id, &s.id, Some(&s));
            }
            Ok::<_, StoreError>(counts)
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks specification's example: secret, id, timestamp, payload and the
    /// signature it gives (<https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md>,
    /// as the reference libraries' tests use it).
    #[test]
    fn signs_like_the_reference_libraries() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let sig = sign_v1(
            secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn secrets_are_whsec_and_32_bytes() {
        let s = new_secret().unwrap();
        assert!(s.starts_with("whsec_"));
        assert_eq!(secret_key(&s).len(), 32);
        assert_ne!(s, new_secret().unwrap());
    }

    #[test]
    fn backoff_spans_about_a_day() {
        let total: i64 = BACKOFF_SECS.iter().sum();
        assert!((20 * 3600..=26 * 3600).contains(&total), "{total}");
        for n in 1..=9 {
            let b = backoff_ms(n);
            let base = BACKOFF_SECS[n as usize - 1] * 1000;
            assert!(b >= base * 9 / 10 && b <= base * 11 / 10, "{n}: {b}");
        }
    }
}
