//! What the node publishes about itself and each agent, for anyone to fetch without credentials:
//! DID documents (W3C DID Core 1.0, did:web), the A2A agent card (v1.0, JCS-canonicalized and
//! signed with a detached JWS), the OASF record (schema 1.0.0) and the Agent Badge (a VCDM 2.0
//! credential as a compact JWS).
//!
//! Only public-by-design fields appear: the agent's name, description, version, type,
//! capabilities, owner, deployment environment, skills, domains, locators, endpoints and public
//! keys. Never its email, metadata, scopes, credentials, organization id or last use.
//!
//! Rendering is cached per agent. An entry is used only while the store's identity generation
//! (bumped by every committed change to an organization, agent or agent key, before the change
//! is acknowledged) and the signing key ring are the ones it was rendered with, so a key added or
//! removed, or an agent decommissioned, shows in the very next request. A DID document GET is
//! then one map lookup and a copy of a reference-counted buffer.
//!
//! What may be shown of whom ([`Standing`]) is decided here, once; [`super::dids`] applies it to
//! the routes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use did_method::{DidDocument, DidWeb};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use storage::{Agent, AgentKey, AgentStatus, OrgStatus, Organization, Store, StoreError};
use uuid::Uuid;

use crate::app::{DomainError, Scope, Settings};
use crate::clock::rfc3339;
use crate::keys::KeyRing;

/// Entries kept at most; past it the cache starts over (it refills from the store).
const MAX_ENTRIES: usize = 10_000;
/// A2A protocol version our cards declare for the agents' interfaces.
pub(crate) const A2A_PROTOCOL_VERSION: &str = "1.0";
/// OASF record schema version we emit: the one every OASF tool accepts (0.7.0 to 1.0.0).
pub(crate) const OASF_SCHEMA_VERSION: &str = "1.0.0";
/// The OASF module that carries an A2A card, and its id in the OASF 1.0 module taxonomy
/// (`integration` 2, `a2a` 3).
const OASF_A2A_MODULE: (&str, u64) = ("integration/a2a", 203);
/// VCDM 2.0 base context.
pub(crate) const VC_CONTEXT: &str = "https://www.w3.org/ns/credentials/v2";
/// How long a badge is valid.
pub(crate) const BADGE_VALIDITY_MS: i64 = 24 * 3600 * 1000;
/// A cached badge is re-issued once it is this old, so a served badge has at least 23 hours left.
const BADGE_REISSUE_MS: i64 = 3600 * 1000;

/// A rendered body and its strong ETag.
#[derive(Debug, Clone)]
pub(crate) struct Rendered {
    pub(crate) body: Bytes,
    pub(crate) etag: String,
}

impl Rendered {
    pub(crate) fn new(body: Vec<u8>) -> Rendered {
        let etag = etag_of(&body);
        Rendered {
            body: Bytes::from(body),
            etag,
        }
    }
}

/// The strong ETag of a body: the first 16 bytes of its SHA-256, hex, quoted.
pub(crate) fn etag_of(body: &[u8]) -> String {
    format!("\"{}\"", hex::encode(&Sha256::digest(body)[..16]))
}

/// Why an artifact cannot be served.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ArtifactError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("signing failed")]
    Sign,
    #[error("canonicalization failed: {0}")]
    Jcs(String),
    /// A failure remembered by the card or record cache, as its message.
    #[error("rendering failed earlier: {0}")]
    Cached(String),
    #[error("the agent has no status-list position")]
    NoStatusIndex,
}

impl From<ArtifactError> for DomainError {
    fn from(e: ArtifactError) -> Self {
        match e {
            ArtifactError::Store(e) => DomainError::from(e),
            other => {
                // Not the caller's doing: logged here, answered without internals.
                tracing::error!(error = %other, "rendering a public artifact failed");
                DomainError::Internal
            }
        }
    }
}

/// Where an agent stands for the public, which decides what the node says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Standing {
    /// The agent and its organization are active: everything is published.
    Active,
    /// The agent, or its organization, is suspended (or the organization deleted): its DID
    /// document stays (the keys that signed its past statements stay resolvable), but its
    /// statements of good standing — card, OASF record, badge — are withheld.
    Withheld,
    /// The agent was decommissioned: its DID is deactivated, nothing is published.
    Deactivated,
}

impl Standing {
    /// The standing of `agent`, whose organization is `org` (`None`: not found).
    pub(crate) fn of(agent: &Agent, org: Option<&Organization>) -> Standing {
        let org_active = org.is_some_and(|o| o.status == OrgStatus::Active);
        match agent.status {
            AgentStatus::Decommissioned => Standing::Deactivated,
            AgentStatus::Active if org_active => Standing::Active,
            AgentStatus::Active | AgentStatus::Suspended => Standing::Withheld,
        }
    }
}

/// Everything published about one agent, rendered for one identity generation and key ring.
pub(crate) struct AgentArtifacts {
    generation: u64,
    ring: Arc<KeyRing>,
    pub(crate) agent: Agent,
    /// What the node may publish about the agent.
    pub(crate) standing: Standing,
    pub(crate) keys: Vec<AgentKey>,
    org_name: String,
    pub(crate) did: DidWeb,
    /// The DID document (DID Core JSON).
    pub(crate) document: Rendered,
    card: OnceLock<Result<(Value, Rendered), String>>,
    oasf: OnceLock<Result<Rendered, String>>,
    badge: Mutex<Option<(i64, Rendered)>>,
    /// The agent's position in the node's status list (`None`: not assigned yet).
    status_index: Option<u64>,
    /// Its DID resolution, result head rendered (see [`super::resolver::agent_resolution`]).
    pub(crate) resolution:
        OnceLock<Result<super::resolver::Resolved, super::resolver::ResolveError>>,
}

/// The per-agent cache.
pub(crate) struct ArtifactCache {
    store: Arc<Store>,
    settings: Arc<Settings>,
    entries: RwLock<HashMap<Uuid, Arc<AgentArtifacts>>>,
    /// Rendered status lists by list number: (identity generation, key ring, issued at, list).
    status_lists: Mutex<HashMap<u64, CachedList>>,
}

/// A rendered status list and what it was rendered from.
struct CachedList {
    generation: u64,
    ring: Arc<KeyRing>,
    issued_ms: i64,
    list: Rendered,
}

impl ArtifactCache {
    pub(crate) fn new(store: Arc<Store>, settings: Arc<Settings>) -> Self {
        ArtifactCache {
            store,
            settings,
            entries: RwLock::new(HashMap::new()),
            status_lists: Mutex::new(HashMap::new()),
        }
    }

    /// The artifacts of agent `id` under `ring`, or `None` if there is no such agent.
    pub(crate) fn get(
        &self,
        id: &Uuid,
        ring: &Arc<KeyRing>,
    ) -> Result<Option<Arc<AgentArtifacts>>, ArtifactError> {
        let generation = self.store.identity_generation();
        if let Ok(map) = self.entries.read() {
            if let Some(e) = map
                .get(id)
                .filter(|e| e.generation == generation && Arc::ptr_eq(&e.ring, ring))
            {
                return Ok(Some(e.clone()));
            }
        }
        // Read after taking the generation: a commit landing meanwhile leaves the entry labelled
        // with the older generation, and it is read again next time.
        let Some(agent) = self.store.get_agent(id)? else {
            return Ok(None);
        };
        let org = self.store.get_org(&agent.org_id)?;
        let keys = self.store.list_agent_keys(id)?;
        let status_index = self.store.status_index(id)?;
        let entry = Arc::new(self.render(generation, ring.clone(), agent, org, keys, status_index));
        if let Ok(mut map) = self.entries.write() {
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
            map.insert(*id, entry.clone());
        }
        Ok(Some(entry))
    }

    /// Status list number `list` of the node (W3C Bitstring Status List, purpose
    /// `suspension`) as a compact JWS signed like the badges, or `None` if no agent has a
    /// position in it. Bit `i` stands for the agent at position `list * STATUS_LIST_BITS + i`
    /// and is set while that agent is not in good standing. Re-rendered after any committed
    /// identity change (so a suspension shows on the next request) and hourly.
    pub(crate) fn status_list(
        &self,
        list: u64,
        ring: &Arc<KeyRing>,
        now_ms: i64,
    ) -> Result<Option<Rendered>, ArtifactError> {
        let generation = self.store.identity_generation();
        let mut lists = match self.status_lists.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(c) = lists.get(&list) {
            if c.generation == generation
                && Arc::ptr_eq(&c.ring, ring)
                && now_ms >= c.issued_ms
                && now_ms - c.issued_ms < BADGE_REISSUE_MS
            {
                return Ok(Some(c.list.clone()));
            }
        }
        let Some(from) = list.checked_mul(STATUS_LIST_BITS as u64) else {
            return Ok(None);
        };
        let members = self
            .store
            .status_index_range(from, from.saturating_add(STATUS_LIST_BITS as u64))?;
        if members.is_empty() {
            return Ok(None);
        }
        let mut bits = vec![0u8; STATUS_LIST_BITS / 8];
        let mut orgs: HashMap<Uuid, Option<Organization>> = HashMap::new();
        for (index, id) in members {
            let Some(agent) = self.store.get_agent(&id)? else {
                continue;
            };
            let org = match orgs.get(&agent.org_id) {
                Some(o) => o.clone(),
                None => {
                    let o = self.store.get_org(&agent.org_id)?;
                    orgs.insert(agent.org_id, o.clone());
                    o
                }
            };
            if Standing::of(&agent, org.as_ref()) != Standing::Active {
                let bit = (index - from) as usize;
                bits[bit / 8] |= 0x80 >> (bit % 8);
            }
        }
        let rendered = sign_status_list(&self.settings, ring, list, &bits, now_ms)?;
        if lists.len() >= MAX_ENTRIES {
            lists.clear();
        }
        lists.insert(
            list,
            CachedList {
                generation,
                ring: ring.clone(),
                issued_ms: now_ms,
                list: rendered.clone(),
            },
        );
        Ok(Some(rendered))
    }

    fn render(
        &self,
        generation: u64,
        ring: Arc<KeyRing>,
        agent: Agent,
        org: Option<Organization>,
        keys: Vec<AgentKey>,
        status_index: Option<u64>,
    ) -> AgentArtifacts {
        let s = &self.settings;
        let did = agent_did(s, &agent.id);
        let standing = Standing::of(&agent, org.as_ref());
        let active = standing == Standing::Active;
        let mut doc = DidDocument::new(&did, Some(&s.node_did));
        for k in &keys {
            doc.add_jwk(&k.kid, k.jwk.clone());
        }
        if active {
            let base = agent_base_url(s, &agent.id);
            if has_card(&agent) {
                doc.add_service(
                    "a2a",
                    "A2AAgentCard",
                    &format!("{base}/.well-known/agent-card.json"),
                );
            }
            if !agent.skills.is_empty() {
                doc.add_service("oasf", "OASFRecord", &format!("{base}/oasf.json"));
            }
            if has_card(&agent) {
                doc.add_service("badge", "AgentBadge", &format!("{base}/badge"));
            }
        }
        doc.add_service(
            "agentIdP",
            "AgentIdP",
            &format!("{}/api/v1/agents/{}", s.issuer, agent.id),
        );
        let document = Rendered::new(serde_json::to_vec(&doc).unwrap_or_default());
        AgentArtifacts {
            generation,
            ring,
            standing,
            keys,
            org_name: org.map(|o| o.name).unwrap_or_default(),
            did,
            document,
            agent,
            card: OnceLock::new(),
            oasf: OnceLock::new(),
            badge: Mutex::new(None),
            status_index,
            resolution: OnceLock::new(),
        }
    }
}

/// The did:web of agent `id`.
pub(crate) fn agent_did(s: &Settings, id: &Uuid) -> DidWeb {
    // A UUID is always a valid did:web path segment.
    s.node_did
        .child(&["agents", &id.to_string()])
        .unwrap_or_else(|_| s.node_did.clone())
}

/// The public name of an agent registered without one: never its email (which the node does not
/// publish), but a name derived from its id.
pub(crate) fn default_public_name(id: &Uuid) -> String {
    let hex = id.simple().to_string();
    format!("Agent {}", &hex[..8])
}

/// The name published for `a`. Records written before registrations stopped defaulting the name
/// to the email may still carry it; it is replaced here, so no public document shows it.
fn public_name(a: &Agent) -> String {
    let email = a.email.to_lowercase();
    if a.name.trim().is_empty() || (!email.is_empty() && a.name.to_lowercase().contains(&email)) {
        default_public_name(&a.id)
    } else {
        a.name.clone()
    }
}

/// Whether `a` has an A2A card: A2A 1.0 requires `supportedInterfaces` and `skills` to be
/// non-empty (§5.7 field presence), so an agent needs at least one endpoint and one skill. Without
/// them it has no card, no badge (which carries the card) and no such services in its DID
/// document.
pub(crate) fn has_card(a: &Agent) -> bool {
    !a.endpoints.is_empty() && !a.skills.is_empty()
}

/// The A2A canonical form of a card (A2A 1.0 §8.4.1): the card without `signatures`, with every
/// member at its default value left out — empty strings, empty lists and empty objects,
/// recursively (an object or list emptied that way goes too) — then JCS (RFC 8785). This is
/// what the official SDK (`a2a.utils.signing`) computes from its protobuf model before it
/// verifies, so it is what the node signs.
pub(crate) fn a2a_canonical_form(card: &Value) -> Result<String, ArtifactError> {
    fn clean(v: &Value) -> Option<Value> {
        match v {
            Value::String(s) if s.is_empty() => None,
            Value::Array(a) => {
                let out: Vec<Value> = a.iter().filter_map(clean).collect();
                (!out.is_empty()).then_some(Value::Array(out))
            }
            Value::Object(o) => {
                let out: serde_json::Map<String, Value> = o
                    .iter()
                    .filter_map(|(k, v)| clean(v).map(|v| (k.clone(), v)))
                    .collect();
                (!out.is_empty()).then_some(Value::Object(out))
            }
            other => Some(other.clone()),
        }
    }
    // `signatures` is dropped at the top level only; nested members of that name are content.
    let mut top = card.clone();
    if let Some(o) = top.as_object_mut() {
        o.remove("signatures");
    }
    let cleaned = match &top {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter_map(|(k, v)| clean(v).map(|v| (k.clone(), v)))
                .collect(),
        ),
        other => clean(other).unwrap_or(Value::Null),
    };
    did_method::jcs::canonicalize(&cleaned).map_err(|e| ArtifactError::Jcs(e.to_string()))
}

/// Bits in one status list: the W3C Bitstring Status List minimum (16 KiB uncompressed), so
/// that fetching a list tells its publisher nothing about which of up to 131072 agents a
/// verifier is checking (herd privacy, §6.4). Agent `n` is bit `n % BITS` of list `n / BITS`.
pub(crate) const STATUS_LIST_BITS: usize = 131_072;
/// The purpose of the status entry in every badge: `suspension`, a reversible status.
pub(crate) const STATUS_PURPOSE: &str = "suspension";
/// How long a verifier may cache a status list (its `ttl`, ms).
const STATUS_TTL_MS: i64 = 5 * 60 * 1000;

/// `{issuer}/status/{list}`: the node's status list number `list`.
pub(crate) fn status_list_url(s: &Settings, list: u64) -> String {
    format!("{}/status/{list}", s.issuer)
}

/// `u` + base64url (no padding) of the GZIP of `bits` (W3C Bitstring Status List §3.2: bit 0 is
/// the most significant bit of the first byte).
fn encoded_list(bits: &[u8]) -> Result<String, ArtifactError> {
    use std::io::Write as _;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bits)
        .map_err(|e| ArtifactError::Jcs(e.to_string()))?;
    let zipped = gz.finish().map_err(|e| ArtifactError::Jcs(e.to_string()))?;
    Ok(format!("u{}", URL_SAFE_NO_PAD.encode(zipped)))
}

/// The `BitstringStatusListCredential` of list `list` over `bits`, as a compact JWS signed by
/// the ring's active key like the badges (`typ: vc+jwt`), valid as long as a badge.
fn sign_status_list(
    s: &Settings,
    ring: &KeyRing,
    list: u64,
    bits: &[u8],
    now_ms: i64,
) -> Result<Rendered, ArtifactError> {
    let url = status_list_url(s, list);
    let from = now_ms.div_euclid(1000);
    let until = (now_ms + BADGE_VALIDITY_MS).div_euclid(1000);
    let vc = json!({
        "@context": [VC_CONTEXT],
        "id": url,
        "type": ["VerifiableCredential", "BitstringStatusListCredential"],
        "issuer": s.node_did.to_string(),
        "validFrom": rfc3339_secs(now_ms),
        "validUntil": rfc3339_secs(now_ms + BADGE_VALIDITY_MS),
        "credentialSubject": {
            "id": format!("{url}#list"),
            "type": "BitstringStatusList",
            "statusPurpose": STATUS_PURPOSE,
            "encodedList": encoded_list(bits)?,
            "ttl": STATUS_TTL_MS,
        },
        "iss": s.node_did.to_string(),
        "sub": format!("{url}#list"),
        "jti": format!("urn:uuid:{}", Uuid::new_v4()),
        "nbf": from,
        "iat": from,
        "exp": until,
    });
    sign_vc_jwt(s, ring, &vc)
}

/// `vc` as a compact JWS (`typ: vc+jwt`, `cty: vc`) signed by the ring's active key, whose `kid`
/// is a verification method of the node's DID document.
fn sign_vc_jwt(s: &Settings, ring: &KeyRing, vc: &Value) -> Result<Rendered, ArtifactError> {
    let header = json!({
        "alg": ring.active.alg,
        "kid": format!("{}#{}", s.node_did, ring.active.kid),
        "typ": "vc+jwt",
        "cty": "vc",
    });
    let payload = serde_json::to_vec(vc).unwrap_or_default();
    let jws = ring
        .active
        .sign_with_header(&header, &payload)
        .map_err(|_| ArtifactError::Sign)?;
    Ok(Rendered::new(jws.into_bytes()))
}

/// `{issuer}/agents/{id}`: where the agent's public artifacts live.
pub(crate) fn agent_base_url(s: &Settings, id: &Uuid) -> String {
    format!("{}/agents/{id}", s.issuer)
}

/// The node's own DID document: its signing keys in force and its services.
pub(crate) fn node_document(s: &Settings, ring: &KeyRing, now_ms: i64) -> Rendered {
    let mut doc = DidDocument::new(&s.node_did, Some(&s.node_did));
    for (kid, jwk) in ring.public_keys(now_ms) {
        doc.add_jwk(kid, jwk.clone());
    }
    doc.add_service("agentIdP", "AgentIdP", &format!("{}/api/v1", s.issuer));
    doc.add_service(
        "oauth",
        "OAuth2AuthorizationServer",
        &format!("{}/.well-known/oauth-authorization-server", s.issuer),
    );
    Rendered::new(serde_json::to_vec(&doc).unwrap_or_default())
}

impl AgentArtifacts {
    /// The A2A card (v1.0), signed: the card's A2A canonical form ([`a2a_canonical_form`]:
    /// without `signatures` and members at default values, JCS) is signed as a detached JWS (RFC 7515 Appendix F) by the node's active key;
    /// the protected header carries `alg`, `kid` (in the node's JWKS), `typ: JOSE` and `jku`.
    pub(crate) fn card(&self, s: &Settings) -> Result<&(Value, Rendered), ArtifactError> {
        self.card
            .get_or_init(|| self.sign_card(s).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| ArtifactError::Cached(e.clone()))
    }

    fn sign_card(&self, s: &Settings) -> Result<(Value, Rendered), ArtifactError> {
        let mut card = card_value(s, &self.agent, &self.org_name);
        let canonical = a2a_canonical_form(&card)?;
        let header = json!({
            "alg": self.ring.active.alg,
            "kid": self.ring.active.kid,
            "typ": "JOSE",
            "jku": format!("{}/.well-known/jwks.json", s.issuer),
        });
        let protected = URL_SAFE_NO_PAD.encode(header.to_string());
        let signing_input = format!("{protected}.{}", URL_SAFE_NO_PAD.encode(canonical));
        let sig = self
            .ring
            .active
            .sign(signing_input.as_bytes())
            .map_err(|_| ArtifactError::Sign)?;
        if let Some(o) = card.as_object_mut() {
            o.insert(
                "signatures".into(),
                json!([{ "protected": protected, "signature": URL_SAFE_NO_PAD.encode(sig) }]),
            );
        }
        let rendered = Rendered::new(serde_json::to_vec(&card).unwrap_or_default());
        Ok((card, rendered))
    }

    /// The OASF record, or `None` when the agent lists no skills (OASF requires at least one).
    pub(crate) fn oasf(&self, s: &Settings) -> Result<Option<&Rendered>, ArtifactError> {
        if self.agent.skills.is_empty() {
            return Ok(None);
        }
        let r = self.oasf.get_or_init(|| {
            let card = if has_card(&self.agent) {
                Some(&self.card(s).map_err(|e| e.to_string())?.0)
            } else {
                None
            };
            let record = oasf_value(s, &self.agent, &self.did, card);
            Ok(Rendered::new(
                serde_json::to_vec(&record).unwrap_or_default(),
            ))
        });
        r.as_ref()
            .map(Some)
            .map_err(|e| ArtifactError::Cached(e.clone()))
    }

    /// The Agent Badge as a compact JWS, re-issued when the cached one is an hour old.
    pub(crate) fn badge(&self, s: &Settings, now_ms: i64) -> Result<Rendered, ArtifactError> {
        let mut slot = match self.badge.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some((issued, r)) = slot.as_ref() {
            if now_ms - *issued < BADGE_REISSUE_MS && now_ms >= *issued {
                return Ok(r.clone());
            }
        }
        let (_, card) = self.card(s)?;
        let card_json = String::from_utf8_lossy(&card.body).into_owned();
        let id = format!("urn:uuid:{}", Uuid::new_v4());
        // Every agent gets its position when it is first written (or by the boot pass for
        // older stores), so a missing one is a broken invariant, not a client error.
        let index = self.status_index.ok_or(ArtifactError::NoStatusIndex)?;
        let bits = STATUS_LIST_BITS as u64;
        let status = status_list_url(s, index / bits);
        let (from, until) = (
            now_ms.div_euclid(1000),
            (now_ms + BADGE_VALIDITY_MS).div_euclid(1000),
        );
        // The JWT registered claims mirror the credential (VC-JOSE-COSE §3.1.2), so verifiers
        // that find the issuer's key through `iss` (DID-JWT style) and check `nbf`/`exp` work.
        let vc = json!({
            "@context": [VC_CONTEXT],
            "id": id,
            "type": ["VerifiableCredential", "AgentBadge"],
            "issuer": s.node_did.to_string(),
            "validFrom": rfc3339_secs(now_ms),
            "validUntil": rfc3339_secs(now_ms + BADGE_VALIDITY_MS),
            "credentialSubject": { "id": self.did.to_string(), "badge": card_json },
            "credentialStatus": {
                "id": format!("{status}#{}", index % bits),
                "type": "BitstringStatusListEntry",
                "statusPurpose": STATUS_PURPOSE,
                "statusListIndex": (index % bits).to_string(),
                "statusListCredential": status,
            },
            "iss": s.node_did.to_string(),
            "sub": self.did.to_string(),
            "jti": id,
            "nbf": from,
            "iat": from,
            "exp": until,
        });
        let r = sign_vc_jwt(s, &self.ring, &vc)?;
        *slot = Some((now_ms, r.clone()));
        Ok(r)
    }
}

/// RFC 3339 at second precision (VCDM 2.0 `dateTimeStamp`).
fn rfc3339_secs(ms: i64) -> String {
    rfc3339(ms.div_euclid(1000) * 1000).replace(".000Z", "Z")
}

fn description(s: &Settings, a: &Agent) -> String {
    a.description.clone().unwrap_or_else(|| {
        format!(
            "{} ({} agent) registered at {}",
            public_name(a),
            a.agent_type,
            s.issuer
        )
    })
}

/// `natural_language_processing/text_summarization` -> `Text Summarization`.
fn title_of(taxonomy_name: &str) -> String {
    let last = taxonomy_name.rsplit('/').next().unwrap_or(taxonomy_name);
    last.split('_')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The unsigned A2A v1.0 card of an agent (`specification/a2a.proto`, `AgentCard`, in its
/// proto3 JSON form).
pub(crate) fn card_value(s: &Settings, a: &Agent, org_name: &str) -> Value {
    let interfaces: Vec<Value> = a
        .endpoints
        .iter()
        .map(|u| json!({ "url": u, "protocolBinding": "JSONRPC", "protocolVersion": A2A_PROTOCOL_VERSION }))
        .collect();
    let skills: Vec<Value> = a
        .skills
        .iter()
        .map(|sk| {
            json!({
                "id": sk.name,
                "name": title_of(&sk.name),
                "description": format!("OASF skill {} ({})", sk.id, sk.name),
                "tags": sk.name.split('/').collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut provider = json!({ "url": s.issuer });
    if !org_name.is_empty() {
        provider["organization"] = org_name.into();
    }
    let scopes: serde_json::Map<String, Value> = Scope::TENANT
        .iter()
        .map(|sc| (sc.as_str().to_string(), scope_description(*sc).into()))
        .collect();
    json!({
        "name": public_name(a),
        "description": description(s, a),
        "supportedInterfaces": interfaces,
        "provider": provider,
        "version": a.version,
        "capabilities": { "streaming": false, "pushNotifications": false, "extendedAgentCard": false },
        "securitySchemes": {
            "agentidp": {
                "oauth2SecurityScheme": {
                    "description": "Access tokens (RFC 9068) from this agent's identity provider, client credentials grant.",
                    "flows": { "clientCredentials": { "tokenUrl": format!("{}/api/v1/token", s.issuer), "scopes": scopes } },
                    "oauth2MetadataUrl": format!("{}/.well-known/oauth-authorization-server", s.issuer),
                }
            }
        },
        "securityRequirements": [ { "schemes": { "agentidp": { "list": [] } } } ],
        "defaultInputModes": ["text/plain", "application/json"],
        "defaultOutputModes": ["text/plain", "application/json"],
        "skills": skills,
    })
}

/// What a scope a client may request at the token endpoint lets it do (the card's OAuth 2.0
/// flow lists them; A2A 1.0 requires the map to be non-empty).
fn scope_description(sc: Scope) -> &'static str {
    match sc {
        Scope::AgentsRead => "Read the organization's agents, their credentials' metadata and keys, and trust policies.",
        Scope::AgentsWrite => "Register, change and decommission the organization's agents, their credentials, keys and trust policies.",
        Scope::AuditRead => "Read the organization's audit log and verify its chain.",
        Scope::AdminOrgs => "Administer the node: organizations, federation partners, signing keys.",
        Scope::WebhooksRead => "Read the organization's webhook subscriptions and their delivery logs.",
        Scope::WebhooksWrite => "Create, change, test and delete the organization's webhook subscriptions; rotate their secrets; retry deliveries.",
    }
}

/// The OASF 1.0.0 record of an agent, with its signed A2A card, when it has one, in module
/// `integration/a2a`.
pub(crate) fn oasf_value(
    s: &Settings,
    a: &Agent,
    did: &DidWeb,
    signed_card: Option<&Value>,
) -> Value {
    let modules: Vec<Value> = signed_card
        .map(|card| {
            json!({
                "name": OASF_A2A_MODULE.0,
                "id": OASF_A2A_MODULE.1,
                "data": { "card_data": card, "card_schema_version": format!("v{A2A_PROTOCOL_VERSION}.0") },
            })
        })
        .into_iter()
        .collect();
    let refs = |v: &[storage::Skill]| -> Vec<Value> {
        v.iter()
            .map(|x| json!({ "id": x.id, "name": x.name }))
            .collect()
    };
    let mut record = json!({
        "name": public_name(a),
        "version": a.version,
        "schema_version": OASF_SCHEMA_VERSION,
        "description": description(s, a),
        "authors": [a.owner],
        "created_at": rfc3339_secs(a.created_at),
        "skills": refs(&a.skills),
        "domains": refs(&a.domains),
        "modules": modules,
        "annotations": { "agentidp.did": did.to_string(), "agentidp.agent_id": a.id.to_string() },
    });
    if !a.locators.is_empty() {
        record["locators"] = a
            .locators
            .iter()
            .map(|l| json!({ "type": l.kind, "urls": l.urls }))
            .collect::<Vec<_>>()
            .into();
    }
    record
}

/// The predecessor's AGNTCY card (`GET /api/v1/agents/{id}/did/card`).
pub(crate) fn predecessor_card(s: &Settings, a: &Agent, did: &DidWeb, now_ms: i64) -> Value {
    json!({
        "did": did.to_string(),
        "name": public_name(a),
        "agentType": a.agent_type,
        "capabilities": a.capabilities,
        "owner": a.owner,
        "version": a.version,
        "deploymentEnv": a.deployment_env,
        "identityProvider": s.issuer,
        "issuedAt": rfc3339(now_ms),
    })
}

/// The predecessor's per-agent DID document (`GET /api/v1/agents/{id}/did`): the DID document
/// plus its `agntcy` extension.
pub(crate) fn predecessor_document(x: &AgentArtifacts) -> Value {
    let mut doc: Value = serde_json::from_slice(&x.document.body).unwrap_or(Value::Null);
    let a = &x.agent;
    if let Some(o) = doc.as_object_mut() {
        o.insert(
            "agntcy".into(),
            json!({
                "agentId": a.id, "agentType": a.agent_type, "capabilities": a.capabilities,
                "deploymentEnv": a.deployment_env, "owner": a.owner, "version": a.version,
            }),
        );
    }
    doc
}

/// Records for the domain layer's unit tests of this area, written straight to a real store
/// (what the registry's operations would write).
#[cfg(test)]
pub(crate) mod fixtures {
    use storage::{
        Agent, AgentKey, AgentStatus, OrgStatus, Organization, PlanTier, Skill, StoreError,
    };
    use uuid::Uuid;

    use crate::app::AppState;

    async fn write(state: &AppState, f: impl FnOnce(&mut storage::Tx<'_>) + Send + 'static) {
        state
            .store
            .write(move |tx| {
                f(tx);
                Ok::<_, StoreError>(())
            })
            .await
            .unwrap();
    }

    /// A new active organization.
    pub(crate) async fn org(state: &AppState) -> Organization {
        let org = org_record(state.clock.now_ms());
        let o = org.clone();
        write(state, move |tx| tx.put_org(&o)).await;
        org
    }

    /// An active organization's record.
    pub(crate) fn org_record(now: i64) -> Organization {
        let id = Uuid::new_v4();
        Organization {
            id,
            name: "Acme Screening".into(),
            slug: format!("acme-{}", id.simple()),
            plan_tier: PlanTier::Free,
            max_agents: 10,
            max_tokens_per_month: 1000,
            status: OrgStatus::Active,
            system: false,
            created_at: now,
            updated_at: now,
            token_epoch: 0,
            rate_limit_per_minute: None,
            directory_listed: true,
        }
    }

    /// A new active agent of `org` with one generated P-256 key; with an OASF skill and an A2A
    /// endpoint when `skills`.
    pub(crate) async fn agent(state: &AppState, org: &Uuid, skills: bool) -> (Agent, AgentKey) {
        let now = state.clock.now_ms();
        let agent = agent_record(org, skills, now);
        let key = new_key(&agent, now);
        let (a, k) = (agent.clone(), key.clone());
        write(state, move |tx| {
            tx.put_agent(&a).unwrap();
            tx.put_agent_key(&k);
        })
        .await;
        (agent, key)
    }

    /// An active agent's record (see [`agent`]).
    pub(crate) fn agent_record(org: &Uuid, skills: bool, now: i64) -> Agent {
        let id = Uuid::new_v4();
        Agent {
            id,
            org_id: *org,
            email: format!("{}@agents.example", id.simple()),
            name: "Resume Screener".into(),
            agent_type: "custom".into(),
            version: "1.2.0".into(),
            capabilities: vec!["resumes:read".into()],
            owner: "talent-team".into(),
            deployment_env: "production".into(),
            status: AgentStatus::Active,
            scopes: vec!["agents:read".into()],
            metadata: serde_json::json!({ "secret-ish": "never published" }),
            public: false,
            description: Some("Screens resumes.".into()),
            skills: if skills {
                vec![Skill {
                    id: 101,
                    name: "natural_language_processing/natural_language_understanding".into(),
                }]
            } else {
                vec![]
            },
            endpoints: if skills {
                vec!["https://agents.example/screener/a2a".into()]
            } else {
                vec![]
            },
            domains: vec![],
            locators: vec![],
            created_at: now,
            updated_at: now,
            last_auth_at: None,
            token_epoch: 0,
            published_at: None,
        }
    }

    /// A fresh P-256 public key of `agent`, not yet stored.
    pub(crate) fn new_key(agent: &Agent, now: i64) -> AgentKey {
        let (public, _private) = crate::jwk::generate_p256().unwrap();
        AgentKey {
            kid: public.kid,
            agent_id: agent.id,
            org_id: agent.org_id,
            alg: public.alg.into(),
            jwk: public.jwk,
            created_at: now,
            generated: true,
        }
    }

    /// Adds a key to an agent (one committed write).
    pub(crate) async fn add_key(state: &AppState, agent: &Agent) -> AgentKey {
        let key = new_key(agent, state.clock.now_ms());
        let k = key.clone();
        write(state, move |tx| tx.put_agent_key(&k)).await;
        key
    }

    /// Sets an agent's status (one committed write).
    pub(crate) async fn set_agent_status(state: &AppState, id: &Uuid, status: AgentStatus) {
        let id = *id;
        write(state, move |tx| {
            let mut a = tx.get_agent(&id).unwrap().unwrap();
            a.status = status;
            tx.put_agent(&a).unwrap();
        })
        .await;
    }

    /// Sets an organization's status (one committed write).
    pub(crate) async fn set_org_status(state: &AppState, id: &Uuid, status: OrgStatus) {
        let id = *id;
        write(state, move |tx| {
            let mut o = tx.get_org(&id).unwrap().unwrap();
            o.status = status;
            tx.put_org(&o);
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_come_from_the_last_taxonomy_segment() {
        assert_eq!(
            title_of("natural_language_processing/text_summarization"),
            "Text Summarization"
        );
        assert_eq!(title_of("x"), "X");
    }

    /// A2A §8.4.1 as the SDK computes it: empty strings, lists and objects go, recursively;
    /// `false` and `0` stay; `signatures` goes at the top only.
    #[test]
    fn the_a2a_canonical_form_leaves_out_default_values() {
        let card = json!({"name": "a", "documentationUrl": "", "capabilities": {"streaming": false},
            "securityRequirements": [{"schemes": {"x": {"list": []}}}], "n": 0,
            "skills": [{"id": "s", "tags": [], "ext": {"signatures": [1]}}], "signatures": [{"p": 1}]});
        assert_eq!(
            a2a_canonical_form(&card).unwrap(),
            r#"{"capabilities":{"streaming":false},"n":0,"name":"a","skills":[{"ext":{"signatures":[1]},"id":"s"}]}"#
        );
    }

    /// Bitstring Status List §3.2: GZIP, multibase base64url, bit 0 = MSB of byte 0.
    #[test]
    fn the_status_list_encodes_bit_zero_msb_first() {
        use std::io::Read as _;
        let mut bits = vec![0u8; STATUS_LIST_BITS / 8];
        bits[0] = 0x80;
        bits[1] = 0x01;
        let enc = encoded_list(&bits).unwrap();
        let zipped = URL_SAFE_NO_PAD
            .decode(enc.strip_prefix('u').unwrap())
            .unwrap();
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&zipped[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, bits);
    }

    #[test]
    fn rendered_etags_follow_the_body() {
        let a = Rendered::new(b"{\"a\":1}".to_vec());
        let b = Rendered::new(b"{\"a\":2}".to_vec());
        assert_ne!(a.etag, b.etag);
        assert_eq!(a.etag, Rendered::new(b"{\"a\":1}".to_vec()).etag);
        assert!(a.etag.starts_with('"') && a.etag.ends_with('"'));
    }

    use super::fixtures;
    use crate::app::testing;
    use storage::EngineKind;

    const ENGINES: [EngineKind; 2] = [EngineKind::Redb, EngineKind::Sled];

    /// The key ids of a rendered DID document's verification methods.
    fn kids(doc: &Rendered) -> Vec<String> {
        let v: Value = serde_json::from_slice(&doc.body).unwrap();
        v["verificationMethod"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                m["id"]
                    .as_str()
                    .unwrap()
                    .rsplit('#')
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    /// The fragments of a rendered DID document's service ids.
    fn services(doc: &Rendered) -> Vec<String> {
        let v: Value = serde_json::from_slice(&doc.body).unwrap();
        v["service"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|m| {
                        m["id"]
                            .as_str()
                            .unwrap()
                            .rsplit('#')
                            .next()
                            .unwrap()
                            .to_string()
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn standing_follows_the_agent_and_its_organization() {
        use storage::{AgentStatus as A, OrgStatus as O};
        let org = fixtures::org_record(0);
        let agent = fixtures::agent_record(&org.id, true, 0);
        let cases = [
            (A::Active, Some(O::Active), Standing::Active),
            (A::Suspended, Some(O::Active), Standing::Withheld),
            (A::Active, Some(O::Suspended), Standing::Withheld),
            (A::Active, Some(O::Deleted), Standing::Withheld),
            (A::Suspended, Some(O::Suspended), Standing::Withheld),
            (A::Active, None, Standing::Withheld),
            (A::Decommissioned, Some(O::Active), Standing::Deactivated),
            (A::Decommissioned, Some(O::Suspended), Standing::Deactivated),
            (A::Decommissioned, None, Standing::Deactivated),
        ];
        for (a, o, want) in cases {
            let agent = Agent {
                status: a,
                ..agent.clone()
            };
            let org = o.map(|status| Organization {
                status,
                ..org.clone()
            });
            assert_eq!(Standing::of(&agent, org.as_ref()), want, "{a:?} in {o:?}");
        }
    }

    /// A cached entry is served while nothing changed, and re-rendered after any committed
    /// change to the agent, its keys or its organization, and after a new key ring.
    #[tokio::test]
    async fn a_committed_change_invalidates_the_cached_artifacts() {
        for engine in ENGINES {
            let dir = tempfile::tempdir().unwrap();
            let state = testing::state_on(dir.path(), engine).await;
            let cache = &state.artifacts;
            let org = fixtures::org(&state).await;
            let (agent, key) = fixtures::agent(&state, &org.id, true).await;
            let ring = state.keys();

            let first = cache.get(&agent.id, &ring).unwrap().unwrap();
            assert_eq!(kids(&first.document), vec![key.kid.clone()]);
            assert_eq!(first.standing, Standing::Active);
            assert_eq!(
                services(&first.document),
                ["a2a", "oasf", "badge", "agentIdP"]
            );
            let again = cache.get(&agent.id, &ring).unwrap().unwrap();
            assert!(
                Arc::ptr_eq(&first, &again),
                "{engine:?}: nothing changed, same entry"
            );

            // A key added shows in the very next lookup.
            let added = fixtures::add_key(&state, &agent).await;
            let after = cache.get(&agent.id, &ring).unwrap().unwrap();
            assert!(
                !Arc::ptr_eq(&first, &after),
                "{engine:?}: stale entry served"
            );
            let mut want = vec![key.kid.clone(), added.kid.clone()];
            want.sort();
            let mut have = kids(&after.document);
            have.sort();
            assert_eq!(have, want, "{engine:?}");
            assert_ne!(first.document.etag, after.document.etag);

            // Suspension withholds the services that vouch for the agent, keeps the keys.
            fixtures::set_agent_status(&state, &agent.id, AgentStatus::Suspended).await;
            let x = cache.get(&agent.id, &ring).unwrap().unwrap();
            assert_eq!(x.standing, Standing::Withheld, "{engine:?}");
            assert_eq!(services(&x.document), ["agentIdP"]);
            assert_eq!(kids(&x.document).len(), 2);

            // So does the organization's suspension.
            fixtures::set_agent_status(&state, &agent.id, AgentStatus::Active).await;
            assert_eq!(
                cache.get(&agent.id, &ring).unwrap().unwrap().standing,
                Standing::Active
            );
            fixtures::set_org_status(&state, &org.id, OrgStatus::Suspended).await;
            let x = cache.get(&agent.id, &ring).unwrap().unwrap();
            assert_eq!(x.standing, Standing::Withheld, "{engine:?}");

            // Decommissioning deactivates.
            fixtures::set_agent_status(&state, &agent.id, AgentStatus::Decommissioned).await;
            let x = cache.get(&agent.id, &ring).unwrap().unwrap();
            assert_eq!(x.standing, Standing::Deactivated, "{engine:?}");

            // A new key ring (a rotation, a reload) re-renders: cards are signed by its key.
            let reloaded = state.reload_keys().await.unwrap();
            assert!(!Arc::ptr_eq(&ring, &reloaded));
            let y = cache.get(&agent.id, &reloaded).unwrap().unwrap();
            assert!(
                !Arc::ptr_eq(&x, &y),
                "{engine:?}: entry of the old ring served"
            );
            assert!(Arc::ptr_eq(
                &y,
                &cache.get(&agent.id, &reloaded).unwrap().unwrap()
            ));

            // Unknown agents are not cached as anything.
            assert!(cache.get(&Uuid::new_v4(), &reloaded).unwrap().is_none());
        }
    }

    /// Readers racing key additions: once a key's write is acknowledged, no lookup that starts
    /// afterwards serves a document without it (the cache is keyed by the identity generation,
    /// which the commit bumps before it answers). Both engines.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn no_lookup_after_an_acknowledged_key_misses_it() {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        const WRITES: usize = 60;
        const READERS: usize = 6;
        for engine in ENGINES {
            let dir = tempfile::tempdir().unwrap();
            let state = testing::state_on(dir.path(), engine).await;
            let org = fixtures::org(&state).await;
            let (agent, key) = fixtures::agent(&state, &org.id, false).await;
            let acked = Arc::new(Mutex::new(vec![key.kid.clone()]));
            let stop = Arc::new(AtomicBool::new(false));
            let reads = Arc::new(AtomicUsize::new(0));
            let readers: Vec<_> = (0..READERS)
                .map(|_| {
                    let (state, acked, stop, reads) =
                        (state.clone(), acked.clone(), stop.clone(), reads.clone());
                    let id = agent.id;
                    tokio::spawn(async move {
                        while !stop.load(Ordering::Acquire) {
                            let must: Vec<String> = acked.lock().unwrap().clone();
                            let x = state.artifacts.get(&id, &state.keys()).unwrap().unwrap();
                            let have = kids(&x.document);
                            for k in &must {
                                assert!(have.contains(k), "acknowledged key {k} missing");
                            }
                            reads.fetch_add(1, Ordering::Relaxed);
                            tokio::task::yield_now().await;
                        }
                    })
                })
                .collect();
            for _ in 0..WRITES {
                let k = fixtures::add_key(&state, &agent).await;
                acked.lock().unwrap().push(k.kid);
            }
            stop.store(true, Ordering::Release);
            for r in readers {
                r.await.unwrap();
            }
            assert!(
                reads.load(Ordering::Relaxed) >= READERS,
                "{engine:?}: readers ran"
            );
            let x = state
                .artifacts
                .get(&agent.id, &state.keys())
                .unwrap()
                .unwrap();
            assert_eq!(kids(&x.document).len(), WRITES + 1, "{engine:?}");
        }
    }
}
