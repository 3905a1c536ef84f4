//! Federation partners (`/api/v1/federation/trust`, `/partners`, `/partners/{id}`; scope
//! `admin:orgs`) and verification of partner tokens (`/api/v1/federation/verify`, any
//! authenticated caller), with the predecessor's fields (snake_case) and error codes.
//!
//! A partner is an issuer whose keys come from a JWKS URL, from the issuer's discovery document
//! (OpenID Connect Discovery, falling back to RFC 8414), or from a `did:web` document. The key
//! source is probed before the partner is stored, through the one guarded outbound client
//! (`federation::Fetcher`), so a partner whose keys cannot be read — or whose URLs point at
//! loopback, private or metadata addresses — is refused with `422` and the precise reason.

use serde::{Deserialize, Deserializer, Serialize};
use storage::{KeySourceKind, Outcome, Partner, PartnerStatus};
use utoipa::ToSchema;
use uuid::Uuid;
use warp::http::StatusCode;
use warp::{Rejection, Reply};

use crate::app::AppState;
use crate::clock::{parse_rfc3339, rfc3339};
use crate::http::error::ApiError;
use crate::http::extract::{created, parse_id, Params};
use crate::http::Caller;
use crate::model::ErrorBody;

/// Most partners a node keeps.
const MAX_PARTNERS: usize = 1000;
/// Longest partner token accepted.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// A trusted partner identity provider.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PartnerView {
    id: Uuid,
    name: String,
    /// Exactly the `iss` of its tokens.
    issuer: String,
    /// `jwks`, `discovery` or `did`.
    key_source: &'static str,
    /// The JWKS URL (given, or found by discovery); absent for a did:web issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    jwks_uri: Option<String>,
    /// The `aud` its tokens must carry, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    audience: Option<String>,
    /// `organization_id` values accepted from it; empty: all.
    allowed_organizations: Vec<String>,
    /// `active`, `suspended` or `expired`.
    status: &'static str,
    /// `local`: registered by an operator of this node; `gossip`: applied from a trust anchor
    /// of `origin`.
    source: &'static str,
    /// The DID of the node whose signed anchor created this partner (gossip only).
    #[serde(skip_serializing_if = "Option::is_none")]
    origin: Option<String>,
    /// The sequence number of that anchor (gossip only).
    #[serde(skip_serializing_if = "Option::is_none")]
    anchor_sequence: Option<u64>,
    /// RFC 7638 thumbprints of the keys the origin saw when it signed the anchor (gossip only).
    #[serde(skip_serializing_if = "Option::is_none")]
    key_thumbprints: Option<Vec<String>>,
    created_at: String,
    updated_at: String,
    expires_at: Option<String>,
}

/// `expired` once `expires_at` has passed, else the operator's status.
fn effective_status(p: &Partner, now: i64) -> &'static str {
    if p.expires_at.is_some_and(|t| t <= now) {
        "expired"
    } else {
        p.status.as_str()
    }
}

impl PartnerView {
    fn new(p: &Partner, now: i64) -> Self {
        PartnerView {
            id: p.id,
            name: p.name.clone(),
            issuer: p.issuer.clone(),
            key_source: p.source.as_str(),
            jwks_uri: p.jwks_uri.clone(),
            audience: p.audience.clone(),
            allowed_organizations: p.allowed_organizations.clone(),
            status: effective_status(p, now),
            source: if p.gossip.is_some() {
                "gossip"
            } else {
                "local"
            },
            origin: p.gossip.as_ref().map(|g| g.origin.clone()),
            anchor_sequence: p.gossip.as_ref().map(|g| g.seq),
            key_thumbprints: p.gossip.as_ref().map(|g| g.key_thumbprints.clone()),
            created_at: rfc3339(p.created_at),
            updated_at: rfc3339(p.updated_at),
            expires_at: p.expires_at.map(rfc3339),
        }
    }
}

/// Body of `POST /api/v1/federation/trust`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreatePartnerRequest {
    /// 1 to 256 characters.
    name: String,
    /// An https URL (exactly the `iss` of its tokens), or a `did:web` DID.
    issuer: String,
    /// The JWKS URL. Without it, an URL issuer's discovery document gives it; a did:web issuer
    /// needs none.
    jwks_uri: Option<String>,
    /// The `aud` its tokens must carry (e.g. this node's issuer).
    audience: Option<String>,
    #[serde(default)]
    allowed_organizations: Vec<String>,
    /// RFC 3339; after it the partner is `expired`.
    expires_at: Option<String>,
}

/// `null` and absent told apart: `Some(None)` is an explicit `null`.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Body of `PATCH /api/v1/federation/partners/{id}`: only the fields given change.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdatePartnerRequest {
    name: Option<String>,
    /// A new JWKS URL: probed before it is stored; the key cache is dropped.
    jwks_uri: Option<String>,
    /// `null` removes the audience requirement.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    audience: Option<Option<String>>,
    allowed_organizations: Option<Vec<String>>,
    /// `active` or `suspended`.
    status: Option<String>,
    /// RFC 3339, or `null` to remove the expiry.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    expires_at: Option<Option<String>>,
}

/// Body of `POST /api/v1/federation/verify`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct VerifyRequest {
    /// The partner-issued JWT.
    token: String,
    /// When given, the token's `iss` must be exactly this.
    expected_issuer: Option<String>,
}

/// A partner token that verified.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct VerifyResult {
    valid: bool,
    issuer: String,
    subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    organization_id: Option<String>,
    /// Every claim of the token.
    #[schema(value_type = Object)]
    claims: serde_json::Map<String, serde_json::Value>,
}

fn unprocessable(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
}

fn partner_not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "FEDERATION_PARTNER_NOT_FOUND",
        "Federation partner with the specified ID was not found.",
    )
}

fn check_name(v: &str) -> Result<(), ApiError> {
    if v.trim().is_empty() {
        return Err(ApiError::validation("name", "must not be blank"));
    }
    crate::app::text::check_text(v, 1, 256).map_err(|e| ApiError::validation("name", e.to_string()))
}

/// An absolute URL the guarded client may fetch: https, or http when the operator allows it.
fn check_url(state: &AppState, field: &str, v: &str) -> Result<url::Url, ApiError> {
    let u =
        url::Url::parse(v).map_err(|e| ApiError::validation(field, format!("not a URL: {e}")))?;
    let http_ok = state.settings.allow_http_fetch;
    let scheme_ok = u.scheme() == "https" || (http_ok && u.scheme() == "http");
    if !scheme_ok {
        let want = if http_ok {
            "an http(s) URL"
        } else {
            "an https URL (plain http is allowed only with --allow-http-fetch)"
        };
        return Err(ApiError::validation(field, format!("must be {want}")));
    }
    if !u.username().is_empty()
        || u.password().is_some()
        || u.host_str().is_none()
        || v.len() > 2048
    {
        return Err(ApiError::validation(
            field,
            "must be an absolute URL with a host and no credentials, at most 2048 characters",
        ));
    }
    Ok(u)
}

fn check_orgs(v: &[String]) -> Result<(), ApiError> {
    if v.len() > 1000 {
        return Err(ApiError::validation(
            "allowed_organizations",
            "at most 1000 values",
        ));
    }
    for o in v {
        crate::app::text::check_text(o, 1, 256)
            .map_err(|e| ApiError::validation("allowed_organizations", e.to_string()))?;
    }
    Ok(())
}

fn parse_time(field: &str, v: &str) -> Result<i64, ApiError> {
    parse_rfc3339(v).ok_or_else(|| ApiError::validation(field, "must be an RFC 3339 date-time"))
}

/// Partners by issuer, read once per identity generation (which every partner change bumps
/// before it is acknowledged): a verification does not read the store for its partner.
pub(crate) struct PartnerCache {
    map: std::sync::RwLock<PartnerMap>,
}

type PartnerMap = (
    u64,
    std::collections::HashMap<String, Option<std::sync::Arc<Partner>>>,
);

impl PartnerCache {
    pub(crate) fn new() -> Self {
        PartnerCache {
            map: std::sync::RwLock::new((u64::MAX, std::collections::HashMap::new())),
        }
    }

    fn by_issuer(
        &self,
        store: &storage::Store,
        issuer: &str,
    ) -> Result<Option<std::sync::Arc<Partner>>, storage::StoreError> {
        let generation = store.identity_generation();
        if let Ok(m) = self.map.read() {
            if m.0 == generation {
                if let Some(p) = m.1.get(issuer) {
                    return Ok(p.clone());
                }
            }
        }
        // Read after taking the generation: a change landing meanwhile leaves the entry under
        // the older generation, and it is read again next time.
        let p = store.partner_by_issuer(issuer)?.map(std::sync::Arc::new);
        if let Ok(mut m) = self.map.write() {
            if m.0 != generation || m.1.len() >= 1024 {
                *m = (generation, std::collections::HashMap::new());
            }
            m.1.insert(issuer.to_string(), p.clone());
        }
        Ok(p)
    }
}

/// The key source of a partner record.
pub(crate) fn key_source(p: &Partner) -> Result<federation::KeySource, ApiError> {
    let bad = || {
        tracing::error!(partner = %p.id, "a stored partner has an unusable key source");
        ApiError::internal()
    };
    Ok(match p.source {
        KeySourceKind::Did => federation::KeySource::DidWeb(p.issuer.parse().map_err(|_| bad())?),
        KeySourceKind::Discovery => federation::KeySource::Discovery(p.issuer.clone()),
        KeySourceKind::Jwks => federation::KeySource::Jwks(
            url::Url::parse(p.jwks_uri.as_deref().unwrap_or("")).map_err(|_| bad())?,
        ),
    })
}

/// Reads the keys of `source` through the guarded client: 422 with the precise reason if they
/// cannot be read.
async fn probe(
    state: &AppState,
    source: &federation::KeySource,
) -> Result<federation::FetchedKeys, ApiError> {
    source.fetch(&state.fetcher).await.map_err(|e| {
        tracing::warn!(%source, error = %e, code = e.code(), "partner key source refused");
        unprocessable(
            "JWKS_UNREACHABLE",
            format!("The partner's keys could not be read: {e}. Check the URL, and that it is a public https address."),
        )
        .with_details(serde_json::json!({ "reason": e.code(), "source": source.to_string() }))
    })
}

/// Register a trusted federation partner: its key source is probed first.
#[utoipa::path(post, path = "/api/v1/federation/trust", tag = "Federation", security(("bearer" = ["admin:orgs"])),
    request_body = CreatePartnerRequest,
    responses((status = 201, body = PartnerView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "FEDERATION_PARTNER_CONFLICT", body = ErrorBody),
        (status = 422, description = "JWKS_UNREACHABLE (details.reason: PRIVATE_ADDRESS, HTTP_NOT_ALLOWED, TIMEOUT, RESPONSE_TOO_LARGE, REDIRECT_TO_OTHER_HOST, DISCOVERY_ISSUER_MISMATCH, NO_USABLE_KEYS, ...)", body = ErrorBody)))]
pub(crate) async fn create(
    _p: Params,
    caller: Caller,
    req: CreatePartnerRequest,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    caller.require(crate::app::Scope::AdminOrgs)?;
    check_name(&req.name)?;
    check_orgs(&req.allowed_organizations)?;
    if let Some(a) = &req.audience {
        crate::app::text::check_text(a, 1, 2048)
            .map_err(|e| ApiError::validation("audience", e.to_string()))?;
    }
    let expires_at = req
        .expires_at
        .as_deref()
        .map(|v| parse_time("expires_at", v))
        .transpose()?;
    let (kind, source) = if req.issuer.starts_with("did:") {
        let did: did_method::DidWeb = req
            .issuer
            .parse()
            .map_err(|e| ApiError::validation("issuer", format!("not a usable did:web: {e}")))?;
        if req.jwks_uri.is_some() {
            return Err(ApiError::validation(
                "jwks_uri",
                "a did:web issuer's keys come from its DID document; give no jwks_uri",
            )
            .into());
        }
        (KeySourceKind::Did, federation::KeySource::DidWeb(did))
    } else {
        check_url(&state, "issuer", &req.issuer)?;
        match &req.jwks_uri {
            Some(u) => (
                KeySourceKind::Jwks,
                federation::KeySource::Jwks(check_url(&state, "jwks_uri", u)?),
            ),
            None => (
                KeySourceKind::Discovery,
                federation::KeySource::Discovery(req.issuer.clone()),
            ),
        }
    };
    if state
        .store
        .partner_by_issuer(&req.issuer)
        .map_err(ApiError::from)?
        .is_some()
    {
        return Err(conflict().into());
    }
    if state.store.list_partners().map_err(ApiError::from)?.len() >= MAX_PARTNERS {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "FEDERATION_PARTNER_LIMIT",
            format!("This node keeps at most {MAX_PARTNERS} partners; remove one first."),
        )
        .into());
    }
    let fetched = probe(&state, &source).await?;
    let now = state.clock.now_ms();
    let partner = Partner {
        id: Uuid::new_v4(),
        name: req.name,
        jwks_uri: match kind {
            KeySourceKind::Did => None,
            _ => Some(fetched.keys_url.clone()),
        },
        issuer: req.issuer,
        source: kind,
        audience: req.audience,
        allowed_organizations: req.allowed_organizations,
        status: PartnerStatus::Active,
        created_at: now,
        updated_at: now,
        expires_at,
        gossip: None,
    };
    let entry = state.audit_entry(
        &caller.actor,
        "federation.partner.create",
        partner.id.to_string(),
        Outcome::Success,
        serde_json::json!({ "issuer": partner.issuer, "keySource": kind.as_str(), "keysUrl": fetched.keys_url, "keys": fetched.keys.len() }),
    );
    let stored = partner.clone();
    state
        .write_audited_api(entry, move |tx| {
            if tx.partner_id_by_issuer(&stored.issuer)?.is_some() {
                return Err(conflict());
            }
            tx.put_partner(&stored);
            Ok(())
        })
        .await?;
    state
        .key_cache
        .seed(&partner.id.to_string(), &source, fetched);
    state.gossip.local_partner_changed(&partner.issuer);
    Ok(created(&PartnerView::new(&partner, now)))
}

fn conflict() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "FEDERATION_PARTNER_CONFLICT",
        "A federation partner with this issuer is already registered.",
    )
}

/// List every federation partner (expired ones say so).
#[utoipa::path(get, path = "/api/v1/federation/partners", tag = "Federation", security(("bearer" = ["admin:orgs"])),
    responses((status = 200, body = [PartnerView]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn list(
    _p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    caller.require(crate::app::Scope::AdminOrgs)?;
    let now = state.clock.now_ms();
    let mut partners = state.store.list_partners().map_err(ApiError::from)?;
    partners.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
    let views: Vec<PartnerView> = partners.iter().map(|p| PartnerView::new(p, now)).collect();
    Ok(warp::reply::json(&views).into_response())
}

fn read_partner(state: &AppState, id: &str) -> Result<Partner, ApiError> {
    let id = parse_id("id", id)?;
    state.store.get_partner(&id)?.ok_or_else(partner_not_found)
}

/// Get one federation partner.
#[utoipa::path(get, path = "/api/v1/federation/partners/{id}", tag = "Federation", security(("bearer" = ["admin:orgs"])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = PartnerView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn get(
    p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    caller.require(crate::app::Scope::AdminOrgs)?;
    let p = read_partner(&state, p.raw("id"))?;
    Ok(warp::reply::json(&PartnerView::new(&p, state.clock.now_ms())).into_response())
}

/// Update a federation partner (only the fields given). A new `jwks_uri` is probed first. A
/// partner that came from gossip becomes this node's own (`source: local`): an operator's
/// decision always wins over gossip.
#[utoipa::path(patch, path = "/api/v1/federation/partners/{id}", tag = "Federation", security(("bearer" = ["admin:orgs"])),
    params(("id" = Uuid, Path)), request_body = UpdatePartnerRequest,
    responses((status = 200, body = PartnerView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn update(
    p: Params,
    caller: Caller,
    req: UpdatePartnerRequest,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    caller.require(crate::app::Scope::AdminOrgs)?;
    let current = read_partner(&state, p.raw("id"))?;
    let mut changed: Vec<&'static str> = Vec::new();
    if let Some(n) = &req.name {
        check_name(n)?;
        changed.push("name");
    }
    if let Some(o) = &req.allowed_organizations {
        check_orgs(o)?;
        changed.push("allowed_organizations");
    }
    let status = match req.status.as_deref() {
        None => None,
        Some("active") => Some(PartnerStatus::Active),
        Some("suspended") => Some(PartnerStatus::Suspended),
        Some(_) => {
            return Err(ApiError::validation("status", "must be active or suspended").into())
        }
    };
    if status.is_some() {
        changed.push("status");
    }
    let expires_at = match &req.expires_at {
        None => None,
        Some(None) => Some(None),
        Some(Some(v)) => Some(Some(parse_time("expires_at", v)?)),
    };
    if expires_at.is_some() {
        changed.push("expires_at");
    }
    if let Some(a) = &req.audience {
        if let Some(a) = a {
            crate::app::text::check_text(a, 1, 2048)
                .map_err(|e| ApiError::validation("audience", e.to_string()))?;
        }
        changed.push("audience");
    }
    let mut new_source = None;
    if let Some(u) = &req.jwks_uri {
        if current.source == KeySourceKind::Did {
            return Err(ApiError::validation(
                "jwks_uri",
                "a did:web partner's keys come from its DID document",
            )
            .into());
        }
        let source = federation::KeySource::Jwks(check_url(&state, "jwks_uri", u)?);
        let fetched = probe(&state, &source).await?;
        new_source = Some((source, fetched));
        changed.push("jwks_uri");
    }
    if changed.is_empty() {
        return Err(ApiError::validation("body", "give at least one field to change").into());
    }
    let now = state.clock.now_ms();
    let pid = current.id;
    let entry = state.audit_entry(
        &caller.actor,
        "federation.partner.update",
        pid.to_string(),
        Outcome::Success,
        serde_json::json!({ "fields": changed, "status": req.status, "from_gossip": current.gossip.as_ref().map(|g| g.origin.clone()) }),
    );
    let jwks_uri = new_source.as_ref().map(|(_, f)| f.keys_url.clone());
    let p = state
        .write_audited_api(entry, move |tx| {
            let mut p = tx.get_partner(&pid)?.ok_or_else(partner_not_found)?;
            if let Some(n) = req.name {
                p.name = n;
            }
            if let Some(o) = req.allowed_organizations {
                p.allowed_organizations = o;
            }
            if let Some(s) = status {
                p.status = s;
            }
            if let Some(e) = expires_at {
                p.expires_at = e;
            } else if let Some(g) = &p.gossip {
                // Taken over from gossip: the origin's expiry for the partner, not the
                // anchor's (which gossip would have renewed).
                p.expires_at = g.partner_expires_at;
            }
            if let Some(a) = req.audience {
                p.audience = a;
            }
            if let Some(u) = jwks_uri {
                p.jwks_uri = Some(u);
                p.source = KeySourceKind::Jwks;
            }
            p.gossip = None;
            p.updated_at = now;
            tx.put_partner(&p);
            Ok(p)
        })
        .await?;
    let key = p.id.to_string();
    state.key_cache.invalidate(&key);
    if let Some((source, fetched)) = new_source {
        state.key_cache.seed(&key, &source, fetched);
    }
    state.gossip.local_partner_changed(&p.issuer);
    Ok(warp::reply::json(&PartnerView::new(&p, now)).into_response())
}

/// Remove a federation partner: its tokens are refused at once. Gossip does not bring it back
/// until a trusted origin signs a different statement about the issuer (to keep it out for
/// good, suspend it instead: a suspension is a local decision, which gossip never overrides).
#[utoipa::path(delete, path = "/api/v1/federation/partners/{id}", tag = "Federation", security(("bearer" = ["admin:orgs"])),
    params(("id" = Uuid, Path)),
    responses((status = 204, description = "Removed"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn delete(
    p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    caller.require(crate::app::Scope::AdminOrgs)?;
    let current = read_partner(&state, p.raw("id"))?;
    let pid = current.id;
    let entry = state.audit_entry(
        &caller.actor,
        "federation.partner.delete",
        pid.to_string(),
        Outcome::Success,
        serde_json::json!({ "issuer": current.issuer, "from_gossip": current.gossip.as_ref().map(|g| g.origin.clone()) }),
    );
    // Every other node's anchor about this issuer is dismissed with it: gossip does not bring
    // back what an operator removed until an origin says something new about it.
    let own = state.settings.node_did.to_string();
    let origins: Vec<String> = state
        .store
        .list_trust_anchors()
        .map_err(ApiError::from)?
        .into_iter()
        .filter(|a| a.issuer == current.issuer && a.origin != own)
        .map(|a| a.origin)
        .collect();
    state
        .write_audited_api(entry, move |tx| {
            let p = tx.get_partner(&pid)?.ok_or_else(partner_not_found)?;
            for origin in &origins {
                if let Some(mut a) = tx.get_trust_anchor(origin, &p.issuer)? {
                    a.dismissed = true;
                    tx.put_trust_anchor(&a);
                }
            }
            tx.delete_partner(&p);
            Ok(())
        })
        .await?;
    state.key_cache.invalidate(&pid.to_string());
    state.gossip.local_partner_changed(&current.issuer);
    Ok(warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response())
}

/// The unverified `iss` of a compact JWS, to find its partner; nothing else is trusted before
/// the signature verifies.
fn unverified_issuer(token: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get("iss")?.as_str().map(str::to_string)
}

/// Verifies a partner-issued token: the partner is found by the token's exact `iss`, must be
/// active and unexpired, and the token must verify strictly with the partner's keys and pass
/// `allowed_organizations`.
pub(crate) async fn verify_partner_token(
    state: &AppState,
    token: &str,
    expected_issuer: Option<&str>,
) -> Result<(std::sync::Arc<Partner>, federation::VerifiedToken), ApiError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(unprocessable(
            "TOKEN_MALFORMED",
            format!("The token is longer than {MAX_TOKEN_LEN} bytes."),
        ));
    }
    let iss = unverified_issuer(token).ok_or_else(|| {
        unprocessable(
            "TOKEN_MALFORMED",
            "The token is not a JWT with a string iss claim.",
        )
    })?;
    if expected_issuer.is_some_and(|e| e != iss) {
        return Err(unprocessable(
            "ISSUER_MISMATCH",
            "The token's iss is not the expected issuer.",
        ));
    }
    let partner = state
        .partners
        .by_issuer(&state.store, &iss)
        .map_err(ApiError::from)?
        .ok_or_else(|| {
            unprocessable(
                "UNKNOWN_FEDERATION_ISSUER",
                "The token's issuer is not a federation partner of this node.",
            )
        })?;
    let now = state.clock.now_ms();
    match effective_status(&partner, now) {
        "suspended" => {
            return Err(unprocessable(
                "FEDERATION_PARTNER_SUSPENDED",
                "The token's issuer is a suspended federation partner.",
            ))
        }
        "expired" => {
            return Err(unprocessable(
                "FEDERATION_PARTNER_EXPIRED",
                "The token's issuer is an expired federation partner.",
            ))
        }
        _ => {}
    }
    let source = key_source(&partner)?;
    let mut expected = federation::Expectations::new(&partner.issuer, now.div_euclid(1000));
    if let Some(a) = partner.audience.as_deref() {
        expected = expected.with_audience(a);
    }
    let verified = state
        .key_cache
        .verify(&partner.id.to_string(), &source, token, &expected)
        .await
        .map_err(|e| unprocessable(e.code(), format!("The token does not verify: {e}.")))?;
    // Explicit typing (RFC 8725 §3.11): a trust anchor a node gossips is signed with the same
    // key as its tokens, but is never one.
    if verified.header.get("typ").and_then(|t| t.as_str()) == Some(crate::gossip::ANCHOR_TYP) {
        return Err(unprocessable(
            "WRONG_TOKEN_TYPE",
            "This is a gossiped trust anchor, not a token.",
        ));
    }
    if !partner.allowed_organizations.is_empty() {
        let org = verified
            .claims
            .get("organization_id")
            .and_then(|v| v.as_str());
        if !org.is_some_and(|o| partner.allowed_organizations.iter().any(|a| a == o)) {
            return Err(unprocessable(
                "FEDERATION_ORG_NOT_ALLOWED",
                "The token's organization_id is not one this partner may speak for here.",
            ));
        }
    }
    Ok((partner, verified))
}

/// Verify a token issued by a federation partner.
#[utoipa::path(post, path = "/api/v1/federation/verify", tag = "Federation", security(("bearer" = [])),
    request_body = VerifyRequest,
    responses((status = 200, body = VerifyResult), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 422, description = "UNKNOWN_FEDERATION_ISSUER, FEDERATION_PARTNER_SUSPENDED, FEDERATION_PARTNER_EXPIRED, FEDERATION_ORG_NOT_ALLOWED, ISSUER_MISMATCH, TOKEN_MALFORMED, ALG_NOT_ALLOWED, UNKNOWN_KID, SIGNATURE_INVALID, TOKEN_EXPIRED, TOKEN_NOT_YET_VALID, AUDIENCE_MISMATCH, CRIT_UNSUPPORTED, KEYS_UNAVAILABLE, ...", body = ErrorBody)))]
pub(crate) async fn verify(
    _p: Params,
    caller: Caller,
    req: VerifyRequest,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let result = verify_partner_token(&state, &req.token, req.expected_issuer.as_deref()).await;
    let (outcome, details) = match &result {
        Ok((p, v)) => (
            Outcome::Success,
            serde_json::json!({ "partner": p.id, "issuer": p.issuer, "subject": v.claims.get("sub") }),
        ),
        Err(e) => (Outcome::Failure, serde_json::json!({ "reason": e.code })),
    };
    state.metrics.federation_verify(result.is_ok());
    let entry = state.audit_entry(&caller.actor, "federation.verify", "-", outcome, details);
    state.audit_detached(entry).await;
    let (partner, v) = result?;
    let subject = v
        .claims
        .get("sub")
        .and_then(|s| s.as_str())
        .unwrap_or_default()
        .to_string();
    let organization_id = v
        .claims
        .get("organization_id")
        .and_then(|s| s.as_str())
        .map(str::to_string);
    Ok(warp::reply::json(&VerifyResult {
        valid: true,
        issuer: partner.issuer.clone(),
        subject,
        organization_id,
        claims: v.claims,
    })
    .into_response())
}

/// The gossip network as this node sees it: peers, anchors by origin with the last sequence
/// of each, refused payloads by reason, and the transport's counters. `{"enabled": false}`
/// when gossip does not run.
#[utoipa::path(get, path = "/api/v1/federation/gossip", tag = "Federation", security(("bearer" = ["admin:orgs"])),
    responses((status = 200, body = crate::gossip::GossipView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn gossip(
    _p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    caller.require(crate::app::Scope::AdminOrgs)?;
    let view = state.gossip.view(&state).await?;
    Ok(warp::reply::json(&view).into_response())
}
