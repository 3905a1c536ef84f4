//! Billing through Stripe's HTTP API: Checkout Sessions for tier upgrades, and the signed
//! webhook that applies them.
//!
//! - Checkout: `POST {api_base}/v1/checkout/sessions`, form-encoded, `Authorization: Bearer
//!   <secret key>`, `mode=subscription`, one line item (the tier's price), the organization and
//!   target tier in `metadata` (and in the subscription's metadata, so that its deletion names the
//!   organization). The Stripe base URL is operator configuration (`--stripe-api-base`), not
//!   tenant input, so it is called with a plain client rather than the partner-fetch guard.
//! - Webhook: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=…]`, HMAC-SHA256 with the webhook secret
//!   over `"<t>.<raw body>"`, any `v1` may match (secret rotation), compared in constant time;
//!   `t` within 5 minutes of the node's clock. The event id is stored in the same durable write
//!   as the tier change it causes, so a replayed event changes nothing.
//!
//! Secrets are never logged (the options' `Debug` hides them; errors never include them).

use ring::hmac;
use serde_json::Value;
use storage::{BillingEvent, OrgStatus, Outcome as AuditOutcome, PlanTier};
use uuid::Uuid;

use super::error::DomainError;
use super::orgs::plan_defaults;
use super::vocab::ErrorCode;
use super::{Actor, AppState};
use crate::StripeOptions;

/// Seconds a webhook signature's timestamp may differ from the node's clock.
pub(crate) const TOLERANCE_SECS: i64 = 300;

/// The billing client (one per node).
pub(crate) struct Billing {
    opts: StripeOptions,
    client: reqwest::Client,
    /// The billing routes are served (`--no-billing` turns them off).
    pub(crate) enabled: bool,
    /// The analytics routes are served (`--no-analytics` turns them off).
    pub(crate) analytics_enabled: bool,
}

/// A node without Stripe settings has no billing to offer: `404` with its own code (as
/// `--no-billing`, which answers a plain route-not-found), never a server error.
fn not_configured(what: &str) -> DomainError {
    DomainError::NotFound {
        code: ErrorCode::BillingNotConfigured,
        message: format!("Billing is not configured on this node ({what} is not set)."),
    }
}

fn sig_invalid(message: &str) -> DomainError {
    DomainError::Invalid {
        code: ErrorCode::StripeSignatureInvalid,
        message: message.to_string(),
        details: None,
    }
}

/// Tier rank (upgrades only go up).
pub(crate) fn rank(p: PlanTier) -> u8 {
    match p {
        PlanTier::Free => 0,
        PlanTier::Pro => 1,
        PlanTier::Enterprise => 2,
    }
}

/// A created Checkout Session.
#[derive(Debug)]
pub(crate) struct Checkout {
    pub(crate) id: String,
    pub(crate) url: String,
}

impl Billing {
    pub(crate) fn new(t: &crate::TenancyOptions) -> Billing {
        let opts = t.stripe.clone();
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(15))
            .build()
            .unwrap_or_default();
        Billing {
            opts,
            client,
            enabled: t.billing,
            analytics_enabled: t.analytics,
        }
    }

    /// Creates a Checkout Session for `org` to move to `tier`.
    pub(crate) async fn checkout(
        &self,
        org: Uuid,
        tier: PlanTier,
        success_url: Option<&str>,
        cancel_url: Option<&str>,
        issuer: &str,
    ) -> Result<Checkout, DomainError> {
        let key = self
            .opts
            .secret_key
            .as_deref()
            .ok_or_else(|| not_configured("--stripe-secret-key"))?;
        let price = match tier {
            PlanTier::Pro => self.opts.price_pro.as_deref(),
            PlanTier::Enterprise => self.opts.price_enterprise.as_deref(),
            PlanTier::Free => None,
        }
        .ok_or_else(|| not_configured(&format!("the price of the {} tier", tier.as_str())))?;
        let (org_s, tier_s) = (org.to_string(), tier.as_str());
        let success =
            success_url.map_or_else(|| format!("{issuer}/?billing=success"), String::from);
        let cancel = cancel_url.map_or_else(|| format!("{issuer}/?billing=cancel"), String::from);
        let form: Vec<(&str, &str)> = vec![
            ("mode", "subscription"),
            ("line_items[0][price]", price),
            ("line_items[0][quantity]", "1"),
            ("success_url", &success),
            ("cancel_url", &cancel),
            ("client_reference_id", &org_s),
            ("metadata[organizationId]", &org_s),
            ("metadata[targetTier]", tier_s),
            ("subscription_data[metadata][organizationId]", &org_s),
            ("subscription_data[metadata][targetTier]", tier_s),
        ];
        let url = format!(
            "{}/v1/checkout/sessions",
            self.opts.api_base.trim_end_matches('/')
        );
        let stripe_err = |m: String| DomainError::Unavailable {
            code: ErrorCode::StripeError,
            message: m,
        };
        let resp = self
            .client
            .post(&url)
            .bearer_auth(key)
            .form(&form)
            .send()
            .await
            .map_err(|e| {
                tracing::warn!(error = %e.without_url(), "Stripe checkout request failed");
                stripe_err("Stripe could not be reached; try again later.".into())
            })?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let msg = body["error"]["message"].as_str().unwrap_or("unknown error");
            tracing::warn!(%status, stripe_message = msg, "Stripe refused the checkout session");
            return Err(stripe_err(format!(
                "Stripe refused the checkout session ({status}): {msg}"
            )));
        }
        match (body["id"].as_str(), body["url"].as_str()) {
            (Some(id), Some(u)) => Ok(Checkout {
                id: id.to_string(),
                url: u.to_string(),
            }),
            _ => Err(stripe_err(
                "Stripe answered without a session id and url.".into(),
            )),
        }
    }

    /// Verifies a `Stripe-Signature` header over `body` at `now_secs`.
    pub(crate) fn verify(
        &self,
        header: Option<&str>,
        body: &[u8],
        now_secs: i64,
    ) -> Result<(), DomainError> {
        // A request without the header is malformed whatever this node's settings are.
        let header = required_signature(header)?;
        let secret = self
            .opts
            .webhook_secret
            .as_deref()
            .ok_or_else(|| not_configured("--stripe-webhook-secret"))?;
        verify_signature(secret, Some(header), body, now_secs)
    }
}

fn required_signature(header: Option<&str>) -> Result<&str, DomainError> {
    header.ok_or_else(|| DomainError::Invalid {
        code: ErrorCode::MissingHeader,
        message: "The Stripe-Signature header is required.".into(),
        details: None,
    })
}

/// The signature check itself (see the module documentation).
pub(crate) fn verify_signature(
    secret: &str,
    header: Option<&str>,
    body: &[u8],
    now_secs: i64,
) -> Result<(), DomainError> {
    let header = required_signature(header)?;
    let mut t: Option<i64> = None;
    let mut sigs: Vec<Vec<u8>> = Vec::new();
    for part in header.split(',') {
        let Some((k, v)) = part.trim().split_once('=') else {
            return Err(sig_invalid(
                "Stripe-Signature is malformed (expected t=…,v1=…).",
            ));
        };
        match k {
            "t" => {
                t = Some(v.parse().map_err(|_| {
                    sig_invalid("Stripe-Signature has a timestamp that is not a number.")
                })?)
            }
            "v1" => sigs
                .push(hex::decode(v).map_err(|_| {
                    sig_invalid("Stripe-Signature has a v1 value that is not hex.")
                })?),
            _ => {} // v0 and future schemes are ignored, as Stripe's libraries do.
        }
    }
    let t = t.ok_or_else(|| sig_invalid("Stripe-Signature has no timestamp (t=…)."))?;
    if sigs.is_empty() {
        return Err(sig_invalid("Stripe-Signature has no v1 signature."));
    }
    if (now_secs - t).abs() > TOLERANCE_SECS {
        return Err(sig_invalid(
            "Stripe-Signature's timestamp is outside the 5-minute tolerance.",
        ));
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut signed = t.to_string().into_bytes();
    signed.push(b'.');
    signed.extend_from_slice(body);
    // hmac::verify compares in constant time.
    if sigs.iter().any(|s| hmac::verify(&key, &signed, s).is_ok()) {
        Ok(())
    } else {
        Err(sig_invalid(
            "No Stripe-Signature v1 value matches this payload.",
        ))
    }
}

/// What a webhook did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Handled {
    Applied,
    Replayed,
    Ignored,
}

fn parse_tier(s: Option<&str>) -> Option<PlanTier> {
    match s? {
        "pro" => Some(PlanTier::Pro),
        "enterprise" => Some(PlanTier::Enterprise),
        "free" => Some(PlanTier::Free),
        _ => None,
    }
}

/// Handles a verified event: upgrades, downgrades and failed payments change or note the
/// organization's tier in the same durable, audited write that records the event id.
pub(crate) async fn handle_event(state: &AppState, body: &[u8]) -> Result<Handled, DomainError> {
    let ev: Value = serde_json::from_slice(body).map_err(|_| DomainError::Invalid {
        code: ErrorCode::MalformedJson,
        message: "The webhook payload is not a JSON event.".into(),
        details: None,
    })?;
    let (Some(id), Some(kind)) = (ev["id"].as_str(), ev["type"].as_str()) else {
        return Err(DomainError::validation(
            "body",
            "an event needs an id and a type",
        ));
    };
    if id.is_empty() || id.len() > 255 {
        return Err(DomainError::validation(
            "id",
            "an event id has 1 to 255 characters",
        ));
    }
    let obj = &ev["data"]["object"];
    let meta = &obj["metadata"];
    let org_of = || {
        meta["organizationId"]
            .as_str()
            .or(obj["client_reference_id"].as_str())
            .and_then(|s| Uuid::parse_str(s).ok())
    };
    // (new tier or None for "record only", action)
    let (org, change, action) = match kind {
        "checkout.session.completed" => (
            org_of(),
            parse_tier(meta["targetTier"].as_str()),
            "billing.upgrade",
        ),
        "customer.subscription.deleted" => (org_of(), Some(PlanTier::Free), "billing.downgrade"),
        "invoice.payment_failed" => {
            let org = obj["subscription_details"]["metadata"]["organizationId"]
                .as_str()
                .or(meta["organizationId"].as_str())
                .and_then(|s| Uuid::parse_str(s).ok());
            (org, None, "billing.payment_failed")
        }
        _ => return Ok(Handled::Ignored),
    };
    let Some(org) = org else {
        return Err(DomainError::validation(
            "data.object.metadata.organizationId",
            "the event names no organization",
        ));
    };
    if kind == "checkout.session.completed" && change.is_none() {
        return Err(DomainError::validation(
            "data.object.metadata.targetTier",
            "the session names no target tier (pro or enterprise)",
        ));
    }
    let now = state.clock.now_ms();
    let actor = Actor {
        id: "stripe".into(),
        org,
        client: None,
    };
    let entry = state.audit_entry(
        &actor,
        action,
        org.to_string(),
        AuditOutcome::Success,
        serde_json::json!({ "eventId": id, "eventType": kind, "tier": change.map(|t| t.as_str()) }),
    );
    let (id, kind) = (id.to_string(), kind.to_string());
    state
        .write_audited(entry, move |tx| {
            if tx.billing_event_seen(&id)? {
                return Ok(Handled::Replayed);
            }
            let mut o = tx.get_org(&org)?.ok_or_else(DomainError::org_not_found)?;
            if let Some(tier) = change {
                if o.status != OrgStatus::Deleted && !o.system {
                    let (agents, tokens) = plan_defaults(tier);
                    o.plan_tier = tier;
                    o.max_agents = agents;
                    o.max_tokens_per_month = tokens;
                    o.rate_limit_per_minute = None;
                    o.updated_at = now;
                    tx.put_org(&o);
                }
            }
            tx.put_billing_event(
                &id,
                &BillingEvent {
                    kind,
                    processed_at: now,
                },
            );
            Ok(Handled::Applied)
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, t: i64, body: &[u8]) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
        let mut m = t.to_string().into_bytes();
        m.push(b'.');
        m.extend_from_slice(body);
        hex::encode(hmac::sign(&key, &m).as_ref())
    }

    #[test]
    fn signatures() {
        let body = br#"{"id":"evt_1"}"#;
        let good = sign("whsec_a", 1000, body);
        let ok = |h: &str, now| verify_signature("whsec_a", Some(h), body, now);
        assert!(ok(&format!("t=1000,v1={good}"), 1000).is_ok());
        assert!(ok(&format!("t=1000,v1=00ff,v1={good}"), 1200).is_ok());
        assert!(ok(&format!("t=1000,v1={good}"), 1301).is_err());
        assert!(ok(&format!("t=1000,v1={}", sign("other", 1000, body)), 1000).is_err());
        assert!(ok("garbage", 1000).is_err());
        assert!(ok(&format!("t=x,v1={good}"), 1000).is_err());
        assert!(ok("t=1000", 1000).is_err());
        assert!(verify_signature("whsec_a", None, body, 1000).is_err());
    }
}
