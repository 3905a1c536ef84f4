//! DID resolution (DID Core §7.1, W3C DID Resolution) for anyone: this node's own DIDs (the
//! node's and its agents') straight from the store and the artifact cache, with no network
//! round trip; `did:key` and `did:jwk` computed locally; any other `did:web` fetched through
//! the guarded outbound client ([`federation::Fetcher`]: https, size and time caps, SSRF
//! guard) and kept in a bounded cache for as long as its `Cache-Control` says, within
//! [`MIN_TTL_SECS`]..[`MAX_TTL_SECS`]. Cache misses that would fetch are throttled per client
//! address ([`FETCHES_PER_SEC`]).
//!
//! The outcome is a [`Resolved`] document or a [`ResolveError`] whose [`ResolveError::code`] is
//! the DID Core §7.1.2 `error` value; [`result_body`] renders either as a DID Resolution result
//! (the `resolve` function: no `contentType`). Dereferencing a fragment or a `service`
//! (DID Core §7.2) works on the resolved document ([`fragment`], [`service_endpoint`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::RwLock;

use bytes::Bytes;
use did_method::{DidDocument, DidUrl, DidWeb, DocumentMetadata, DID_CONTEXT};
use serde_json::{json, Value};
use uuid::Uuid;

use super::artifacts::{AgentArtifacts, Standing};
use super::AppState;
use crate::clock::rfc3339;
use crate::ratelimit::RateLimiter;

/// Remote documents kept at most this many (the cache is cleared of expired entries, then
/// emptied, when full).
const MAX_CACHED: usize = 10_000;
/// The shortest a remote document is kept, even under `no-store` (bounds what one DID can make
/// the node fetch).
pub(crate) const MIN_TTL_SECS: u64 = 30;
/// The longest a remote document is kept, whatever `max-age` says (a removed key must stop
/// resolving within the hour).
pub(crate) const MAX_TTL_SECS: u64 = 3600;
/// Kept this long when the answer has no `max-age`.
const DEFAULT_TTL_SECS: u64 = 300;
/// Outbound resolutions (cache misses) per second per client address; bursts of twice that.
pub(crate) const FETCHES_PER_SEC: u32 = 10;
/// What a did:web resolver asks for (did:web §3.3 Read).
const DID_ACCEPT: &str = "application/did+json, application/did+ld+json, application/json";
/// The JSON-LD context of DID Resolution results.
pub(crate) const RESOLUTION_CONTEXT: &str = "https://w3id.org/did-resolution/v1";

/// Where a resolution was answered from (the `source` label of the resolution metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// One of this node's DIDs, from the store.
    Local,
    /// `did:key` / `did:jwk`, computed.
    Key,
    /// A remote did:web already in the cache.
    Cache,
    /// A remote did:web fetched now.
    Fetch,
    /// Refused before any method ran (syntax, method).
    None,
}

impl Source {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Source::Local => "local",
            Source::Key => "key",
            Source::Cache => "remote_cache",
            Source::Fetch => "remote_fetch",
            Source::None => "none",
        }
    }
}

/// A resolved DID: its document (compact JSON) and the document metadata.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub(crate) document: Bytes,
    pub(crate) metadata: DocumentMetadata,
    pub(crate) source: Source,
    /// The resolution result rendered up to the value of `retrieved` ([`result_head`]), when
    /// it was rendered ahead (an agent's, once per artifact generation; a cached remote
    /// document's, once per fetch); otherwise [`result_body`] renders it.
    pub(crate) head: Option<Bytes>,
}

/// Why a DID does not resolve: the DID Core §7.1.2 error values, and a throttle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ResolveError {
    /// Not a conformant DID (DID Core §3.1).
    InvalidDid(String),
    /// Not a conformant DID URL (DID Core §3.2), or a DID URL part this resolver does not serve.
    InvalidDidUrl(String),
    /// No document for this DID.
    NotFound(String),
    /// A method this node does not resolve.
    MethodNotSupported(String),
    /// The client asked for a representation this node does not produce.
    RepresentationNotSupported,
    /// Too many outbound resolutions from this address; retry after this many seconds.
    Throttled(u64),
    /// Something broke here (logged).
    Internal,
}

impl ResolveError {
    /// The DID Core §7.1.2 `error` value.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            ResolveError::InvalidDid(_) => "invalidDid",
            ResolveError::InvalidDidUrl(_) => "invalidDidUrl",
            ResolveError::NotFound(_) => "notFound",
            ResolveError::MethodNotSupported(_) => "methodNotSupported",
            ResolveError::RepresentationNotSupported => "representationNotSupported",
            // Not a DID Core value: an HTTP-level condition, reported in the same shape.
            ResolveError::Throttled(_) => "rateLimited",
            ResolveError::Internal => "internalError",
        }
    }

    /// A human explanation.
    pub(crate) fn message(&self) -> String {
        match self {
            ResolveError::InvalidDid(m)
            | ResolveError::InvalidDidUrl(m)
            | ResolveError::NotFound(m)
            | ResolveError::MethodNotSupported(m) => m.clone(),
            ResolveError::RepresentationNotSupported => "Accept one of application/did-resolution, application/ld+json;profile=\"https://w3id.org/did-resolution\", application/did+json, application/did+ld+json.".to_string(),
            ResolveError::Throttled(s) => format!("Too many resolutions that need a fetch from this address; retry in {s} s."),
            ResolveError::Internal => "The resolver failed; the node's log has the reason.".to_string(),
        }
    }
}

/// RFC 3339 / XML Schema `dateTime` in UTC without sub-second precision (DID Core §7.1.3).
pub(crate) fn xml_datetime(ms: i64) -> String {
    let s = rfc3339(ms.div_euclid(1000) * 1000);
    s.strip_suffix(".000Z")
        .map_or(s.clone(), |p| format!("{p}Z"))
}

thread_local! {
    /// The last second [`retrieved`] formatted on this thread, and its text.
    static RETRIEVED: std::cell::RefCell<(i64, String)> = const { std::cell::RefCell::new((i64::MIN, String::new())) };
}

/// Appends [`xml_datetime`] of `now_ms` to `out`, formatting at most once per second per thread
/// (every result carries `retrieved`; formatting a datetime per request is measurable).
fn push_retrieved(out: &mut Vec<u8>, now_ms: i64) {
    let sec = now_ms.div_euclid(1000);
    RETRIEVED.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != sec {
            *c = (sec, xml_datetime(now_ms));
        }
        out.extend_from_slice(c.1.as_bytes());
    });
}

/// One remote document in the cache.
#[derive(Clone)]
struct Cached {
    resolved: Resolved,
    expires_ms: i64,
}

/// The bounded cache of remote did:web documents, and the throttle of the fetches that fill it.
pub(crate) struct RemoteCache {
    entries: RwLock<HashMap<String, Cached>>,
    throttle: RateLimiter,
}

impl Default for RemoteCache {
    fn default() -> Self {
        RemoteCache {
            entries: RwLock::new(HashMap::new()),
            throttle: RateLimiter::new(FETCHES_PER_SEC),
        }
    }
}

impl RemoteCache {
    fn get(&self, did: &str, now_ms: i64) -> Option<Resolved> {
        let map = self.entries.read().ok()?;
        let e = map.get(did).filter(|e| e.expires_ms > now_ms)?;
        let mut r = e.resolved.clone();
        r.source = Source::Cache;
        Some(r)
    }

    fn put(&self, did: &str, resolved: &Resolved, ttl_secs: u64, now_ms: i64) {
        let Ok(mut map) = self.entries.write() else {
            return;
        };
        if map.len() >= MAX_CACHED && !map.contains_key(did) {
            map.retain(|_, e| e.expires_ms > now_ms);
            if map.len() >= MAX_CACHED {
                map.clear();
            }
        }
        let ttl_ms = i64::try_from(ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        map.insert(
            did.to_string(),
            Cached {
                resolved: resolved.clone(),
                expires_ms: now_ms.saturating_add(ttl_ms),
            },
        );
    }
}

/// How long to keep a document answered with `max_age` (`Some(0)` for `no-store`/`no-cache`).
pub(crate) fn ttl_secs(max_age: Option<u64>) -> u64 {
    max_age
        .unwrap_or(DEFAULT_TTL_SECS)
        .clamp(MIN_TTL_SECS, MAX_TTL_SECS)
}

/// Resolves `did` (a DID, not a DID URL): see the module documentation for where from.
/// `client` keys the throttle of fetches.
pub(crate) async fn resolve(
    state: &AppState,
    did: &DidUrl,
    client: Option<IpAddr>,
) -> Result<Resolved, ResolveError> {
    let out = resolve_inner(state, did, client).await;
    let (source, outcome) = match &out {
        Ok(r) if r.metadata.deactivated => (r.source, "deactivated"),
        Ok(r) => (r.source, "found"),
        Err(e) => (Source::None, e.code()),
    };
    state.metrics.did_resolution(source.label(), outcome);
    out
}

async fn resolve_inner(
    state: &AppState,
    did: &DidUrl,
    client: Option<IpAddr>,
) -> Result<Resolved, ResolveError> {
    match did.method.as_str() {
        "key" => key_method(&did.did, did_method::did_key_document),
        "jwk" => key_method(&did.did, did_method::did_jwk_document),
        "web" => {
            let web: DidWeb = did
                .did
                .parse()
                .map_err(|e: did_method::DidError| ResolveError::InvalidDid(e.to_string()))?;
            match local(state, &web)? {
                Some(r) => Ok(r),
                None => remote(state, &web, client).await,
            }
        }
        m => Err(ResolveError::MethodNotSupported(format!(
            "This resolver supports did:web, did:key and did:jwk, not did:{m}."
        ))),
    }
}

fn key_method(
    did: &str,
    make: fn(&str) -> Result<Value, did_method::KeyDidError>,
) -> Result<Resolved, ResolveError> {
    let doc = make(did).map_err(|e| ResolveError::InvalidDid(e.to_string()))?;
    Ok(Resolved {
        document: Bytes::from(serde_json::to_vec(&doc).map_err(|_| ResolveError::Internal)?),
        metadata: DocumentMetadata::default(),
        source: Source::Key,
        head: None,
    })
}

/// This node's DIDs: `Ok(None)` when `did` is not under this node's host and path.
fn local(state: &AppState, did: &DidWeb) -> Result<Option<Resolved>, ResolveError> {
    let node = &state.settings.node_did;
    if did.host() != node.host() || did.port() != node.port() {
        return Ok(None);
    }
    let Some(rest) = did.path().strip_prefix(node.path()) else {
        return Ok(None);
    };
    let not_found = || ResolveError::NotFound(format!("{did} is not a DID of this node."));
    match rest {
        [] => {
            let r = super::dids::node_document(state);
            Ok(Some(Resolved {
                document: r.body,
                metadata: DocumentMetadata::default(),
                source: Source::Local,
                head: None,
            }))
        }
        [agents, raw] if agents == "agents" => {
            let id: Uuid = raw.parse().map_err(|_| not_found())?;
            // One spelling per agent: the canonical hyphenated lowercase form.
            if id.hyphenated().encode_lower(&mut Uuid::encode_buffer()) != raw.as_str() {
                return Err(not_found());
            }
            let x = state
                .artifacts
                .get(&id, &state.keys())
                .map_err(|e| {
                    tracing::error!(error = %e, "resolving an agent DID");
                    ResolveError::Internal
                })?
                .ok_or_else(not_found)?;
            Ok(Some(agent_resolution(state, &x)?))
        }
        _ => Err(not_found()),
    }
}

/// An agent's resolution: its document, or its bare identity with `deactivated: true` once it
/// was decommissioned (the same rule as the `did.json` route's 410). Rendered once per artifact
/// generation, result head included, so resolving an agent costs what serving its `did.json`
/// costs plus the `retrieved` time.
pub(crate) fn agent_resolution(
    state: &AppState,
    x: &AgentArtifacts,
) -> Result<Resolved, ResolveError> {
    x.resolution
        .get_or_init(|| {
            let deactivated = x.standing == Standing::Deactivated;
            let document = if deactivated {
                let doc = DidDocument::new(&x.did, Some(&state.settings.node_did));
                Bytes::from(serde_json::to_vec(&doc).map_err(|_| ResolveError::Internal)?)
            } else {
                x.document.body.clone()
            };
            let keys_changed = x.keys.iter().map(|k| k.created_at).max().unwrap_or(0);
            let mut r = Resolved {
                document,
                metadata: DocumentMetadata {
                    created: Some(xml_datetime(x.agent.created_at)),
                    updated: Some(xml_datetime(x.agent.updated_at.max(keys_changed))),
                    deactivated,
                },
                source: Source::Local,
                head: None,
            };
            r.head = Some(result_head(&r, &state.settings));
            Ok(r)
        })
        .clone()
}

/// Another host's did:web: from the cache, or fetched (did:web §3.3 Read) and checked.
async fn remote(
    state: &AppState,
    did: &DidWeb,
    client: Option<IpAddr>,
) -> Result<Resolved, ResolveError> {
    let key = did.to_string();
    let now = state.clock.now_ms();
    if let Some(r) = state.did_cache.get(&key, now) {
        return Ok(r);
    }
    let who = client.map_or_else(|| "unknown".to_string(), |a| a.to_string());
    state
        .did_cache
        .throttle
        .check(&who, now)
        .map_err(ResolveError::Throttled)?;
    let url = did.document_url("https");
    let fetched = match state.fetcher.get(&url, DID_ACCEPT).await {
        Ok(f) => f,
        // did:web §3.5 (Deactivate): the document is gone.
        Err(federation::FetchError::BadStatus { status: 410 }) => {
            let resolved = Resolved {
                document: Bytes::from(
                    serde_json::to_vec(&json!({"@context": [DID_CONTEXT], "id": key}))
                        .map_err(|_| ResolveError::Internal)?,
                ),
                metadata: DocumentMetadata {
                    deactivated: true,
                    ..DocumentMetadata::default()
                },
                source: Source::Fetch,
                head: None,
            };
            state
                .did_cache
                .put(&key, &resolved, MIN_TTL_SECS, state.clock.now_ms());
            return Ok(resolved);
        }
        Err(e) => {
            return Err(ResolveError::NotFound(format!(
                "The DID document at {url} could not be fetched: {e}."
            )))
        }
    };
    let doc: Value = serde_json::from_slice(&fetched.body)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| {
            ResolveError::NotFound(format!("{url} did not answer with a JSON DID document."))
        })?;
    // did:web §3.3: the document's id must be the DID resolved.
    if doc.get("id").and_then(Value::as_str) != Some(key.as_str()) {
        return Err(ResolveError::NotFound(format!(
            "The document at {url} is not about {key} (its id differs)."
        )));
    }
    let mut resolved = Resolved {
        document: Bytes::from(serde_json::to_vec(&doc).map_err(|_| ResolveError::Internal)?),
        metadata: DocumentMetadata::default(),
        source: Source::Fetch,
        head: None,
    };
    // Rendered once per fetch: every cache hit answers with it.
    resolved.head = Some(result_head(&resolved, &state.settings));
    state.did_cache.put(
        &key,
        &resolved,
        ttl_secs(fetched.max_age),
        state.clock.now_ms(),
    );
    Ok(resolved)
}

/// Who resolved: the node's DID and its JWKS, so a client can tell which resolver answered
/// and check what it signs (a DID Resolution metadata extension, `resolver`).
pub(crate) fn resolver_link(s: &super::Settings) -> Value {
    json!({"id": s.node_did.to_string(), "jwksUri": format!("{}/.well-known/jwks.json", s.issuer)})
}

/// The start of a successful resolution result, up to the value of
/// `didResolutionMetadata.retrieved` (which [`result_body`] appends, then closes the object):
/// the document embedded as is, its metadata, and `resolver` ([`resolver_link`]).
pub(crate) fn result_head(r: &Resolved, settings: &super::Settings) -> Bytes {
    let meta = serde_json::to_string(&r.metadata).unwrap_or_else(|_| "{}".into());
    let link = resolver_link(settings).to_string();
    let mut b = Vec::with_capacity(r.document.len() + meta.len() + link.len() + 160);
    b.extend_from_slice(b"{\"@context\":\"");
    b.extend_from_slice(RESOLUTION_CONTEXT.as_bytes());
    b.extend_from_slice(b"\",\"didDocument\":");
    b.extend_from_slice(&r.document);
    b.extend_from_slice(b",\"didDocumentMetadata\":");
    b.extend_from_slice(meta.as_bytes());
    b.extend_from_slice(b",\"didResolutionMetadata\":{\"resolver\":");
    b.extend_from_slice(link.as_bytes());
    b.extend_from_slice(b",\"retrieved\":\"");
    Bytes::from(b)
}

/// A DID Resolution result (the `resolve` function: no `contentType`, DID Core §7.1.2), as
/// JSON bytes: [`result_head`] (rendered ahead when the resolution carries it), then the
/// `retrieved` time.
pub(crate) fn result_body(
    out: &Result<Resolved, ResolveError>,
    now_ms: i64,
    settings: &super::Settings,
) -> Vec<u8> {
    match out {
        Ok(r) => {
            let head = r.head.clone().unwrap_or_else(|| result_head(r, settings));
            let mut b = Vec::with_capacity(head.len() + 32);
            b.extend_from_slice(&head);
            push_retrieved(&mut b, now_ms);
            b.extend_from_slice(b"\"}}");
            b
        }
        Err(e) => serde_json::to_vec(&json!({
            "@context": RESOLUTION_CONTEXT,
            "didDocument": null,
            "didResolutionMetadata": {"error": e.code(), "errorMessage": e.message(), "retrieved": xml_datetime(now_ms), "resolver": resolver_link(settings)},
            "didDocumentMetadata": {},
        }))
        .unwrap_or_default(),
    }
}

/// A DID URL dereferencing result (DID Resolution §4): `contentStream` and its metadata.
pub(crate) fn dereferencing_body(
    out: &Result<(Value, &Resolved), ResolveError>,
    content_type: &str,
) -> Vec<u8> {
    let v = match out {
        Ok((content, r)) => json!({
            "@context": RESOLUTION_CONTEXT,
            "contentStream": content,
            "dereferencingMetadata": {"contentType": content_type},
            "contentMetadata": r.metadata,
        }),
        Err(e) => json!({
            "@context": RESOLUTION_CONTEXT,
            "contentStream": null,
            "dereferencingMetadata": {"error": e.code(), "errorMessage": e.message()},
            "contentMetadata": {},
        }),
    };
    serde_json::to_vec(&v).unwrap_or_default()
}

/// The verification method or service whose id is `<did>#<fragment>` (or the relative
/// `#<fragment>`) in the resolved document (DID Core §7.2.2, secondary resource).
pub(crate) fn fragment(r: &Resolved, did: &str, frag: &str) -> Result<Value, ResolveError> {
    let doc: Value = serde_json::from_slice(&r.document).map_err(|_| ResolveError::Internal)?;
    let absolute = format!("{did}#{frag}");
    let relative = format!("#{frag}");
    ["verificationMethod", "service"]
        .iter()
        .filter_map(|k| doc.get(*k).and_then(Value::as_array))
        .flatten()
        .find(|m| {
            m.get("id")
                .and_then(Value::as_str)
                .is_some_and(|id| id == absolute || id == relative)
        })
        .cloned()
        .ok_or_else(|| {
            ResolveError::NotFound(format!(
                "{did} has no verification method or service #{frag}."
            ))
        })
}

/// The endpoint URL of service `service` (its id's fragment) in the resolved document, with
/// `relative_ref` appended (DID Core §7.2.1 `service` and `relativeRef` parameters).
pub(crate) fn service_endpoint(
    r: &Resolved,
    did: &str,
    service: &str,
    relative_ref: Option<&str>,
) -> Result<String, ResolveError> {
    let s = fragment(r, did, service)?;
    let endpoint = s
        .get("serviceEndpoint")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ResolveError::NotFound(format!(
                "{did} has no service {service} with a URL endpoint."
            ))
        })?;
    Ok(match relative_ref {
        Some(rel) => format!("{}{rel}", endpoint.trim_end_matches('/')),
        None => endpoint.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // DID Core §7.1.3: "normalized to UTC 00:00:00 and without sub-second decimal precision".
    #[test]
    fn datetimes_have_no_sub_second_precision() {
        assert_eq!(xml_datetime(1_772_352_000_123), "2026-03-01T08:00:00Z");
        assert_eq!(xml_datetime(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn ttl_is_bounded() {
        assert_eq!(ttl_secs(None), DEFAULT_TTL_SECS);
        assert_eq!(ttl_secs(Some(0)), MIN_TTL_SECS);
        assert_eq!(ttl_secs(Some(120)), 120);
        assert_eq!(ttl_secs(Some(86_400 * 30)), MAX_TTL_SECS);
    }

    fn resolved(doc: Value) -> Resolved {
        Resolved {
            document: Bytes::from(serde_json::to_vec(&doc).unwrap()),
            metadata: DocumentMetadata {
                created: Some("2026-03-01T08:00:00Z".into()),
                ..DocumentMetadata::default()
            },
            source: Source::Local,
            head: None,
        }
    }

    // DID Core §7.1: a result is a JSON object with the three members; no contentType from
    // `resolve`; errors carry `error` and no document.
    #[tokio::test]
    async fn results_have_the_did_core_shape() {
        let dir = tempfile::tempdir().unwrap();
        let state = crate::app::testing::state(dir.path()).await;
        let node = state.settings.node_did.to_string();
        for rendered_ahead in [false, true] {
            let mut r = resolved(json!({"@context": [DID_CONTEXT], "id": "did:web:a.example"}));
            if rendered_ahead {
                r.head = Some(result_head(&r, &state.settings));
            }
            let v: Value =
                serde_json::from_slice(&result_body(&Ok(r), 1_772_352_000_999, &state.settings))
                    .unwrap();
            assert_eq!(v["didResolutionMetadata"]["resolver"]["id"], node.as_str());
            assert_eq!(v["didDocument"]["id"], "did:web:a.example");
            assert!(v["didResolutionMetadata"].get("contentType").is_none());
            assert_eq!(
                v["didResolutionMetadata"]["retrieved"],
                "2026-03-01T08:00:00Z"
            );
            assert_eq!(v["didDocumentMetadata"]["created"], "2026-03-01T08:00:00Z");
            assert_eq!(v["didDocumentMetadata"]["deactivated"], false);
            // The per-thread `retrieved` text follows the clock.
            let later: Value = serde_json::from_slice(&result_body(
                &Ok(resolved(json!({"id": "did:web:a.example"}))),
                1_772_352_061_000,
                &state.settings,
            ))
            .unwrap();
            assert_eq!(
                later["didResolutionMetadata"]["retrieved"],
                "2026-03-01T08:01:01Z"
            );
        }
        let e = Err(ResolveError::NotFound("x".into()));
        let v: Value = serde_json::from_slice(&result_body(&e, 0, &state.settings)).unwrap();
        assert_eq!(v["didResolutionMetadata"]["error"], "notFound");
        assert!(v["didDocument"].is_null());
    }

    fn parse(did: &str) -> DidUrl {
        DidUrl::parse(did).unwrap()
    }

    fn fetches(state: &AppState) -> u64 {
        state
            .fetcher
            .stats()
            .snapshot()
            .iter()
            .map(|(_, n)| n)
            .sum()
    }

    #[tokio::test]
    async fn local_dids_resolve_without_a_fetch_and_remote_misses_are_guarded_and_throttled() {
        use crate::app::artifacts::fixtures;
        use std::net::Ipv4Addr;
        let dir = tempfile::tempdir().unwrap();
        let clock = crate::app::testing::ManualClock::now();
        let state = crate::app::testing::state_at(
            dir.path(),
            storage::EngineKind::Redb,
            clock.clone(),
            |_| {},
        )
        .await;
        let org = fixtures::org(&state).await;
        let (agent, _) = fixtures::agent(&state, &org.id, true).await;
        let me = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));

        let node = state.settings.node_did.to_string();
        let r = resolve(&state, &parse(&node), me).await.unwrap();
        assert_eq!(r.source, Source::Local);
        let did = state.agent_did(&agent.id);
        let r = resolve(&state, &parse(&did), me).await.unwrap();
        assert_eq!((r.source, r.metadata.deactivated), (Source::Local, false));
        let doc: Value = serde_json::from_slice(&r.document).unwrap();
        assert_eq!(doc["id"], did);
        let unknown = format!("{node}:agents:{}", Uuid::new_v4());
        assert!(matches!(
            resolve(&state, &parse(&unknown), me).await,
            Err(ResolveError::NotFound(_))
        ));
        // A UUID in another spelling is another DID, and not one of ours.
        let upper = format!("{node}:agents:{}", agent.id.to_string().to_uppercase());
        assert!(matches!(
            resolve(&state, &parse(&upper), me).await,
            Err(ResolveError::NotFound(_))
        ));
        let key = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp";
        assert_eq!(
            resolve(&state, &parse(key), me).await.unwrap().source,
            Source::Key
        );
        assert!(matches!(
            resolve(&state, &parse("did:example:1"), me).await,
            Err(ResolveError::MethodNotSupported(_))
        ));
        assert_eq!(fetches(&state), 0, "no outbound request for local DIDs");

        // Another host's DID on a loopback address: refused by the guard (no private targets
        // here), not found; each miss is a fetch attempt, 20 in a burst per address.
        let remote = parse("did:web:127.0.0.1%3A9");
        for _ in 0..20 {
            assert!(matches!(
                resolve(&state, &remote, me).await,
                Err(ResolveError::NotFound(_))
            ));
        }
        assert_eq!(state.fetcher.stats().count("PRIVATE_ADDRESS"), 20);
        assert!(matches!(
            resolve(&state, &remote, me).await,
            Err(ResolveError::Throttled(_))
        ));
        // Local DIDs are never throttled; another address is not; time refills the bucket.
        assert!(resolve(&state, &parse(&did), me).await.is_ok());
        let other = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)));
        assert!(matches!(
            resolve(&state, &remote, other).await,
            Err(ResolveError::NotFound(_))
        ));
        clock.advance(std::time::Duration::from_secs(1));
        assert!(matches!(
            resolve(&state, &remote, me).await,
            Err(ResolveError::NotFound(_))
        ));
    }

    #[test]
    fn fragments_and_services_dereference() {
        let did = "did:web:a.example";
        let r = resolved(json!({"id": did,
            "verificationMethod": [{"id": format!("{did}#k1"), "type": "JsonWebKey2020"}],
            "service": [{"id": "#a2a", "type": "A2AAgentCard", "serviceEndpoint": "https://a.example/card/"}]}));
        assert_eq!(fragment(&r, did, "k1").unwrap()["type"], "JsonWebKey2020");
        assert_eq!(
            service_endpoint(&r, did, "a2a", Some("/x.json")).unwrap(),
            "https://a.example/card/x.json"
        );
        assert_eq!(
            service_endpoint(&r, did, "a2a", None).unwrap(),
            "https://a.example/card/"
        );
        assert!(matches!(
            fragment(&r, did, "nope"),
            Err(ResolveError::NotFound(_))
        ));
        assert!(service_endpoint(&r, did, "k1", None).is_err());
    }
}
