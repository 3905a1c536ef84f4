//! The record types the store persists, and their versioned encoding.
//!
//! Every value is stored as one version byte followed by the record's JSON. Decoding checks the
//! version, so a later schema can migrate old values instead of misreading them. Enums are stored
//! by name (never by position), so adding a variant never changes what old bytes mean.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::StoreError;

/// A type the store persists.
pub trait Record: Serialize + DeserializeOwned {
    /// The version byte written in front of this record's JSON.
    const VERSION: u8;
}

/// Encodes a record: version byte, then JSON.
pub fn encode<R: Record>(record: &R) -> Vec<u8> {
    let mut out = vec![R::VERSION];
    // Serializing our own plain structs to a Vec cannot fail (no maps with non-string keys).
    if serde_json::to_writer(&mut out, record).is_err() {
        out.truncate(1);
        out.extend_from_slice(b"null");
    }
    out
}

/// Decodes a record stored under `key`.
pub fn decode<R: Record>(key: &[u8], bytes: &[u8]) -> Result<R, StoreError> {
    let err = |reason: String| StoreError::Decode {
        key: hex::encode(key),
        reason,
    };
    match bytes.split_first() {
        Some((v, body)) if *v == R::VERSION => {
            serde_json::from_slice(body).map_err(|e| err(e.to_string()))
        }
        Some((v, _)) => Err(err(format!("record version {v}, expected {}", R::VERSION))),
        None => Err(err("empty value".into())),
    }
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// Plan tier of an organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlanTier {
    /// Free: 100 agents, 10,000 tokens a month by default.
    Free,
    /// Pro: 1,000 agents, 100,000 tokens a month by default.
    Pro,
    /// Enterprise: no limits by default.
    Enterprise,
}

impl PlanTier {
    /// The stored (and wire) name.
    pub fn as_str(self) -> &'static str {
        match self {
            PlanTier::Free => "free",
            PlanTier::Pro => "pro",
            PlanTier::Enterprise => "enterprise",
        }
    }
}

/// Lifecycle of an organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrgStatus {
    /// Working normally.
    Active,
    /// Disabled: its agents get no tokens; can be reactivated.
    Suspended,
    /// Soft-deleted: irreversible; kept for audit.
    Deleted,
}

impl OrgStatus {
    /// The stored (and wire) name.
    pub fn as_str(self) -> &'static str {
        match self {
            OrgStatus::Active => "active",
            OrgStatus::Suspended => "suspended",
            OrgStatus::Deleted => "deleted",
        }
    }
}

/// An organization (tenant).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Organization {
    /// Immutable id.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// Unique, immutable URL-friendly name.
    pub slug: String,
    /// Plan tier.
    pub plan_tier: PlanTier,
    /// Maximum number of non-decommissioned agents.
    pub max_agents: u64,
    /// Token budget per calendar month (informational for now).
    pub max_tokens_per_month: u64,
    /// Lifecycle status.
    pub status: OrgStatus,
    /// The node's own organization, which holds the instance admin.
    pub system: bool,
    /// Creation time, milliseconds since the epoch.
    pub created_at: i64,
    /// Last update, milliseconds since the epoch.
    pub updated_at: i64,
    /// The organization's token epoch: every access token carries the epoch it was issued
    /// in, and only tokens of the current epoch are active. Suspending the organization starts a
    /// new epoch, so reactivating it does not revive the tokens issued before. 0 (and absent in
    /// records written before it existed) is the first epoch.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub token_epoch: u32,
    /// Requests a minute its agents may make on the API; `None`: the tier's default
    /// (`u64::MAX`: unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_minute: Option<u64>,
    /// Whether the organization's published agents appear in the public directory (#17). True
    /// in records written before it existed.
    #[serde(default = "listed")]
    pub directory_listed: bool,
}

fn listed() -> bool {
    true
}

impl Record for Organization {
    const VERSION: u8 = 1;
}

/// Lifecycle of an agent. `Decommissioned` is one-way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentStatus {
    /// Can authenticate.
    Active,
    /// Temporarily blocked; can be reactivated.
    Suspended,
    /// Permanently retired.
    Decommissioned,
}

impl AgentStatus {
    /// The stored (and wire) name.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Active => "active",
            AgentStatus::Suspended => "suspended",
            AgentStatus::Decommissioned => "decommissioned",
        }
    }
}

/// A skill the agent advertises (OASF shape: id and name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skill {
    /// Taxonomy id.
    pub id: u64,
    /// Taxonomy name.
    pub name: String,
}

/// Where an agent's artifacts can be fetched (OASF locator: a type and its URLs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Locator {
    /// OASF locator type: `unspecified`, `helm_chart`, `container_image`, `package`,
    /// `source_code`, `binary` or `url`.
    pub kind: String,
    /// Where to fetch it.
    pub urls: Vec<String>,
}

/// An agent identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    /// Immutable id.
    pub id: Uuid,
    /// Owning organization.
    pub org_id: Uuid,
    /// Unique email-style name.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Functional classification.
    pub agent_type: String,
    /// Semantic version of the agent software.
    pub version: String,
    /// Capability strings (`resource:action`).
    pub capabilities: Vec<String>,
    /// Owning team.
    pub owner: String,
    /// `development`, `staging` or `production`.
    pub deployment_env: String,
    /// Lifecycle status.
    pub status: AgentStatus,
    /// OAuth scopes this agent may request.
    pub scopes: Vec<String>,
    /// Free-form metadata object.
    pub metadata: serde_json::Value,
    /// Listed publicly (marketplace).
    pub public: bool,
    /// Card description.
    pub description: Option<String>,
    /// Card skills.
    pub skills: Vec<Skill>,
    /// Card endpoints (absolute URLs).
    pub endpoints: Vec<String>,
    /// OASF domains (taxonomy id and name); absent in records written before they existed.
    #[serde(default)]
    pub domains: Vec<Skill>,
    /// OASF locators; absent in records written before they existed.
    #[serde(default)]
    pub locators: Vec<Locator>,
    /// Creation time, ms since the epoch.
    pub created_at: i64,
    /// Last update, ms since the epoch.
    pub updated_at: i64,
    /// Last successful token issuance, ms since the epoch.
    pub last_auth_at: Option<i64>,
    /// The agent's token epoch: every access token carries the epoch it was issued in, and only
    /// tokens of the current epoch are active. Suspending (or decommissioning) the agent starts
    /// a new epoch, so reactivating it does not revive the tokens issued before. 0 (and absent
    /// in records written before it existed) is the first epoch.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub token_epoch: u32,
    /// When the agent was last made public (`public` turned on), ms since the epoch; kept while
    /// it stays public, cleared when it is unpublished. Absent in records written before the
    /// directory existed (those use `updated_at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_at: Option<i64>,
}

impl Record for Agent {
    const VERSION: u8 = 1;
}

/// Lifecycle of a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CredentialStatus {
    /// Usable until `expires_at`, if any.
    Active,
    /// Revoked; never usable again.
    Revoked,
}

/// A client secret credential. Only the SHA-256 of the secret is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Credential {
    /// Credential id.
    pub id: Uuid,
    /// The agent it authenticates.
    pub agent_id: Uuid,
    /// The agent's organization.
    pub org_id: Uuid,
    /// Hex SHA-256 of the secret.
    pub secret_hash: String,
    /// Status.
    pub status: CredentialStatus,
    /// Creation time, ms.
    pub created_at: i64,
    /// Expiry, ms (rotation grace or caller-chosen).
    pub expires_at: Option<i64>,
    /// Revocation time, ms.
    pub revoked_at: Option<i64>,
    /// The credential this one replaced by rotation.
    pub rotated_from: Option<Uuid>,
    /// The credential that replaced this one.
    pub replaced_by: Option<Uuid>,
}

impl Record for Credential {
    const VERSION: u8 = 1;
}

/// A node signing key (private key in PKCS#8 PEM).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SigningKey {
    /// RFC 7638 thumbprint.
    pub kid: String,
    /// JWS algorithm (`ES256`, `RS256`).
    pub alg: String,
    /// PKCS#8 PEM of the private key.
    pub private_pem: String,
    /// Public JWK as published.
    pub public_jwk: serde_json::Value,
    /// Creation time, ms.
    pub created_at: i64,
    /// When it stopped signing, ms; it stays published for a grace period.
    pub retired_at: Option<i64>,
}

impl Record for SigningKey {
    const VERSION: u8 = 1;
}

/// A public key an agent registered (its DID verification methods; `private_key_jwt`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentKey {
    /// RFC 7638 thumbprint.
    pub kid: String,
    /// The agent.
    pub agent_id: Uuid,
    /// The agent's organization.
    pub org_id: Uuid,
    /// The JWS algorithm the key verifies (`ES256`, `EdDSA`, `RS256`).
    pub alg: String,
    /// The public JWK, without private members.
    pub jwk: serde_json::Value,
    /// Registration time, ms.
    pub created_at: i64,
    /// Generated by the node (private key returned once) rather than supplied by the agent.
    pub generated: bool,
}

impl Record for AgentKey {
    const VERSION: u8 = 1;
}

/// Something that stays on record until a time (a revoked token, a used assertion id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expiring {
    /// Until when it matters, seconds since the epoch; afterwards it may be purged.
    pub until: i64,
}

impl Record for Expiring {
    const VERSION: u8 = 1;
}

/// Outcome of an audited action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It happened.
    Success,
    /// It was refused or failed.
    Failure,
}

/// An audit entry as the caller describes it; the store assigns `seq` and the hashes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewAuditEntry {
    /// Time, ms.
    pub time: i64,
    /// Organization the entry belongs to.
    pub org_id: Uuid,
    /// Who acted (agent id or `anonymous`).
    pub actor: String,
    /// What was done (`agent.register`, `token.issue`, ...).
    pub action: String,
    /// What it was done to.
    pub target: String,
    /// Success or failure.
    pub outcome: Outcome,
    /// Client network address.
    pub client: Option<String>,
    /// Action-specific details.
    pub details: serde_json::Value,
}

/// A stored audit entry: hash-chained to its predecessor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Sequence number, from 1, without gaps.
    pub seq: u64,
    /// The entry's content. Nested, not flattened: serde's flatten buffers numbers in a way that
    /// breaks under serde_json's `arbitrary_precision`, which other crates of the build turn on.
    pub body: NewAuditEntry,
    /// Hash of the previous entry (64 zeros for the first).
    pub prev_hash: String,
    /// SHA-256 over `prev_hash` and the canonical JSON of `seq` and `body`.
    pub hash: String,
}

impl Record for AuditEntry {
    const VERSION: u8 = 1;
}

/// The last entry of the audit chain, kept in `meta` to detect truncation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    /// Sequence number of the last entry (0 when empty).
    pub seq: u64,
    /// Its hash.
    pub hash: String,
}

impl Record for AuditHead {
    const VERSION: u8 = 1;
}

impl Record for u64 {
    const VERSION: u8 = 1;
}

impl Record for u32 {
    const VERSION: u8 = 1;
}

impl Record for String {
    const VERSION: u8 = 1;
}

impl Record for Uuid {
    const VERSION: u8 = 1;
}

impl Record for serde_json::Value {
    const VERSION: u8 = 1;
}

/// A federation partner's status as an operator set it (expiry is computed from `expires_at`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PartnerStatus {
    /// Its tokens are verified.
    Active,
    /// Its tokens are refused; can be reactivated.
    Suspended,
}

impl PartnerStatus {
    /// The stored (and wire) name.
    pub fn as_str(self) -> &'static str {
        match self {
            PartnerStatus::Active => "active",
            PartnerStatus::Suspended => "suspended",
        }
    }
}

/// Where a partner's keys come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeySourceKind {
    /// A JWKS URL given at registration.
    Jwks,
    /// The `jwks_uri` of the issuer's OpenID / RFC 8414 discovery document.
    Discovery,
    /// The verification methods of the issuer's did:web document.
    Did,
}

impl KeySourceKind {
    /// The stored (and wire) name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeySourceKind::Jwks => "jwks",
            KeySourceKind::Discovery => "discovery",
            KeySourceKind::Did => "did",
        }
    }
}

/// A partner identity provider whose tokens this node verifies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partner {
    /// Immutable id.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// Exactly the `iss` of its tokens; unique and immutable.
    pub issuer: String,
    /// Where its keys come from.
    pub source: KeySourceKind,
    /// The JWKS URL (given, or found by discovery); `None` for a did:web issuer.
    pub jwks_uri: Option<String>,
    /// The `aud` its tokens must carry, when set.
    pub audience: Option<String>,
    /// `organization_id` values accepted from it; empty: all.
    pub allowed_organizations: Vec<String>,
    /// Operator status.
    pub status: PartnerStatus,
    /// Creation time, ms.
    pub created_at: i64,
    /// Last change, ms.
    pub updated_at: i64,
    /// After this time (ms) the partner is expired and verifies nothing.
    pub expires_at: Option<i64>,
    /// `None`: an operator of this node registered it. `Some`: applied from a gossiped trust
    /// anchor of that origin node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gossip: Option<GossipSource>,
}

/// Where a gossip-applied partner came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipSource {
    /// The DID of the node that signed the anchor.
    pub origin: String,
    /// The anchor's per-origin sequence number.
    pub seq: u64,
    /// RFC 7638 thumbprints of the keys the origin saw at its key source.
    #[serde(default)]
    pub key_thumbprints: Vec<String>,
    /// The expiry the origin's operator gave the partner (ms), when set: what the partner keeps
    /// if an operator of this node takes it over.
    #[serde(default)]
    pub partner_expires_at: Option<i64>,
}

impl Record for Partner {
    const VERSION: u8 = 1;
}

/// The status a trust anchor gives its issuer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnchorStatus {
    /// Trust the issuer.
    Active,
    /// Keep it, but verify nothing from it.
    Suspended,
    /// The origin no longer vouches for the issuer.
    Revoked,
}

impl AnchorStatus {
    /// The stored (and wire) name.
    pub fn as_str(self) -> &'static str {
        match self {
            AnchorStatus::Active => "active",
            AnchorStatus::Suspended => "suspended",
            AnchorStatus::Revoked => "revoked",
        }
    }

    /// The status named `s`.
    pub fn parse(s: &str) -> Option<AnchorStatus> {
        match s {
            "active" => Some(AnchorStatus::Active),
            "suspended" => Some(AnchorStatus::Suspended),
            "revoked" => Some(AnchorStatus::Revoked),
            _ => None,
        }
    }
}

/// The latest trust anchor this node holds for one (origin node, issuer): its own (published
/// with `--gossip-publish`) or one received from a trusted origin. Kept after revocation, as a
/// tombstone that an older sequence number cannot undo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustAnchor {
    /// The DID of the node that signed it.
    pub origin: String,
    /// The issuer it is about.
    pub issuer: String,
    /// The origin's sequence number (per origin, increasing).
    pub seq: u64,
    /// Its status.
    pub status: AnchorStatus,
    /// Not valid after this time, ms.
    pub expires_at: i64,
    /// The signed anchor itself (compact JWS), exactly as the origin signed it.
    pub jws: String,
    /// When this node stored it, ms.
    pub received_at: i64,
    /// An operator of this node deleted the partner it produced: not applied again until the
    /// origin signs a newer anchor for the issuer.
    #[serde(default)]
    pub dismissed: bool,
}

impl Record for TrustAnchor {
    const VERSION: u8 = 1;
}

/// A tenant's trust policy: which external subjects (tokens of a federation partner or workload
/// issuer) may be exchanged for access tokens of which of its agents (RFC 8693).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustPolicy {
    /// Immutable id.
    pub id: Uuid,
    /// The organization whose agent it grants.
    pub org_id: Uuid,
    /// Exactly the `iss` of the subject tokens.
    pub issuer: String,
    /// `sub` pattern: exact, or with `*` matching any run of characters.
    pub subject: String,
    /// An `aud` the subject token must carry, when set.
    pub audience: Option<String>,
    /// Further claims that must equal these strings.
    pub claims: std::collections::BTreeMap<String, String>,
    /// The agent whose token is issued.
    pub agent_id: Uuid,
    /// Scopes the issued token may carry (a subset of the agent's).
    pub scopes: Vec<String>,
    /// Creation time, ms.
    pub created_at: i64,
}

impl Record for TrustPolicy {
    const VERSION: u8 = 1;
}

/// One link of an agent-to-agent delegation chain: `delegator` lets `delegatee` act, within
/// `scopes`, for `principal` (the chain's first delegator). Immutable but for `revoked_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delegation {
    /// The chain id (the delegation token's `jti`).
    pub id: Uuid,
    /// The organization of every agent of the chain.
    pub org_id: Uuid,
    /// The agent that granted this link.
    pub delegator: Uuid,
    /// The agent the chain acts for (the delegator of its first link).
    pub principal: Uuid,
    /// The agent allowed to redeem it.
    pub delegatee: Uuid,
    /// The links above this one, first link first (empty for a first link).
    pub ancestors: Vec<Uuid>,
    /// Scopes delegated.
    pub scopes: Vec<String>,
    /// Issued at, ms.
    pub issued_at: i64,
    /// Expires at, ms.
    pub expires_at: i64,
    /// When it was revoked (ms), if it was.
    pub revoked_at: Option<i64>,
    /// The credential of the token the delegator granted with (secret methods).
    pub delegator_credential: Option<Uuid>,
    /// The agent key (RFC 7638 thumbprint) of the token it granted with (`private_key_jwt`).
    pub delegator_key: Option<String>,
    /// The delegator's and the delegatee's token epochs `[agent, organization]` at the grant.
    pub epochs: [[u32; 2]; 2],
}

impl Record for Delegation {
    const VERSION: u8 = 1;
}

/// A webhook subscription: an organization's HTTPS endpoint and the events it receives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookSubscription {
    /// Id.
    pub id: Uuid,
    /// Owning organization.
    pub org_id: Uuid,
    /// Label.
    pub name: String,
    /// Where deliveries are POSTed.
    pub url: String,
    /// Event types subscribed to.
    pub events: Vec<String>,
    /// Deliveries are made only while active (re-enabled by PATCH after an automatic disable).
    pub active: bool,
    /// Consecutive failed attempts since the last success.
    pub failure_count: u32,
    /// Why the node disabled it, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// The signing secret (`whsec_` + base64 of 32 bytes). Stored recoverable, as it must be to
    /// sign, like the node's signing keys.
    pub secret: String,
    /// The secret before the last rotation: it keeps signing alongside until `previous_until`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret: Option<String>,
    /// End of the rotation grace period, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_until: Option<i64>,
    /// Creation time, ms.
    pub created_at: i64,
    /// Last change, ms.
    pub updated_at: i64,
}

impl Record for WebhookSubscription {
    const VERSION: u8 = 1;
}

/// Where a webhook delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Queued, never attempted.
    Pending,
    /// A receiver answered 2xx.
    Delivered,
    /// The last attempt failed; another is scheduled.
    Failed,
    /// Every attempt failed; no more are made (retry by hand).
    DeadLetter,
}

impl DeliveryStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::DeadLetter => "dead_letter",
        }
    }
}

/// One event for one subscription: the exact body sent (so every attempt signs the same
/// bytes) and the state of its attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookDelivery {
    /// Id.
    pub id: Uuid,
    /// The subscription.
    pub subscription_id: Uuid,
    /// The organization.
    pub org_id: Uuid,
    /// The event's id (`webhook-id`; the same for every subscription and attempt).
    pub event_id: Uuid,
    /// Event type.
    pub event_type: String,
    /// The JSON body, exactly as sent.
    pub payload: String,
    /// State.
    pub status: DeliveryStatus,
    /// Status code of the last attempt, if one answered.
    #[serde(default)]
    pub http_status_code: Option<u16>,
    /// Attempts made.
    pub attempt_count: u32,
    /// When the next attempt is due, ms (pending and failed only).
    #[serde(default)]
    pub next_retry_at: Option<i64>,
    /// When a receiver acknowledged it, ms.
    #[serde(default)]
    pub delivered_at: Option<i64>,
    /// The last attempt's error, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Creation time (the event's time), ms.
    pub created_at: i64,
    /// Last change, ms.
    pub updated_at: i64,
}

impl Record for WebhookDelivery {
    const VERSION: u8 = 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Agents stored before OASF domains and locators existed still decode, with both empty.
    #[test]
    fn agents_written_before_domains_and_locators_decode() {
        let old = br#"{"id":"0b0d1c5e-58f4-4a5e-9a34-8d2f0c1b2a3d","org_id":"0b0d1c5e-58f4-4a5e-9a34-8d2f0c1b2a3e",
            "email":"a@b.c","name":"a","agent_type":"custom","version":"1.0.0","capabilities":[],"owner":"o",
            "deployment_env":"production","status":"active","scopes":[],"metadata":{},"public":false,
            "description":null,"skills":[],"endpoints":[],"created_at":1,"updated_at":1,"last_auth_at":null}"#;
        let mut bytes = vec![Agent::VERSION];
        bytes.extend_from_slice(old);
        let a: Agent = decode(b"k", &bytes).unwrap();
        assert!(a.domains.is_empty() && a.locators.is_empty());
        assert_eq!(a.token_epoch, 0);
        let back: Agent = decode(b"k", &encode(&a)).unwrap();
        assert_eq!(back, a);
    }

    /// Agents and organizations stored before `token_epoch` existed decode in the first epoch;
    /// the field is written only when set, and survives a round trip when it is.
    #[test]
    fn records_written_before_token_epochs_decode() {
        let old_agent = br#"{"id":"0b0d1c5e-58f4-4a5e-9a34-8d2f0c1b2a3d","org_id":"0b0d1c5e-58f4-4a5e-9a34-8d2f0c1b2a3e",
            "email":"a@b.c","name":"a","agent_type":"custom","version":"1.0.0","capabilities":[],"owner":"o",
            "deployment_env":"production","status":"suspended","scopes":[],"metadata":{},"public":false,
            "description":null,"skills":[],"endpoints":[],"domains":[],"locators":[],"created_at":1,
            "updated_at":1,"last_auth_at":null}"#;
        let mut bytes = vec![Agent::VERSION];
        bytes.extend_from_slice(old_agent);
        let mut a: Agent = decode(b"k", &bytes).unwrap();
        assert_eq!(a.token_epoch, 0);
        assert!(!String::from_utf8_lossy(&encode(&a)).contains("token_epoch"));
        a.token_epoch = 3;
        assert_eq!(decode::<Agent>(b"k", &encode(&a)).unwrap(), a);

        let old_org = br#"{"id":"0b0d1c5e-58f4-4a5e-9a34-8d2f0c1b2a3e","name":"Acme","slug":"acme",
            "plan_tier":"pro","max_agents":10,"max_tokens_per_month":100,"status":"suspended",
            "system":false,"created_at":1,"updated_at":2}"#;
        let mut bytes = vec![Organization::VERSION];
        bytes.extend_from_slice(old_org);
        let mut o: Organization = decode(b"k", &bytes).unwrap();
        assert_eq!(o.token_epoch, 0);
        assert_eq!(o.status, OrgStatus::Suspended);
        assert!(!String::from_utf8_lossy(&encode(&o)).contains("token_epoch"));
        o.token_epoch = 4;
        let back: Organization = decode(b"k", &encode(&o)).unwrap();
        assert_eq!(back, o);
    }

    /// Partners stored before gossip existed decode as local partners, and a local partner is
    /// stored without a `gossip` member.
    #[test]
    fn partners_written_before_gossip_decode_as_local() {
        let old = br#"{"id":"0b0d1c5e-58f4-4a5e-9a34-8d2f0c1b2a3d","name":"p","issuer":"https://i",
            "source":"jwks","jwks_uri":"https://i/jwks","audience":null,"allowed_organizations":[],
            "status":"active","created_at":1,"updated_at":1,"expires_at":null}"#;
        let mut bytes = vec![Partner::VERSION];
        bytes.extend_from_slice(old);
        let p: Partner = decode(b"k", &bytes).unwrap();
        assert!(p.gossip.is_none());
        assert!(!String::from_utf8_lossy(&encode(&p)).contains("gossip"));
    }
}
