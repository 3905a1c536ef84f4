//! Federation partners: issuers whose tokens this node verifies (scope `admin:orgs` to manage
//! them), and the verification of their tokens.
//!
//! A partner's keys come from a JWKS URL, from the issuer's discovery document (OpenID Connect
//! Discovery, falling back to RFC 8414), or from a `did:web` document. The key source is probed
//! before a partner is stored or its JWKS URL changed, through the one guarded outbound client
//! (`federation::Fetcher`): a partner whose keys cannot be read — or whose URLs point at
//! loopback, private or metadata addresses — is refused with the precise reason. The node
//! keeps at most [`MAX_PARTNERS`], checked by the write that adds one (gossip's partners
//! count too).

use std::sync::Arc;

use storage::{KeySourceKind, Partner, PartnerStatus};
use uuid::Uuid;

use crate::app::{AppState, Caller, DomainError, ErrorCode, Scope};
use crate::clock::parse_rfc3339;

/// Most partners a node keeps (local and from gossip).
pub(crate) const MAX_PARTNERS: usize = 1000;
/// Longest partner token accepted.
const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Most `allowed_organizations` of one partner.
const MAX_ALLOWED_ORGS: usize = 1000;

/// A partner's status as its tokens meet it: the operator's status, or `Expired` once its
/// expiry has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EffectiveStatus {
    Active,
    Suspended,
    Expired,
}

impl EffectiveStatus {
    /// The wire name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EffectiveStatus::Active => "active",
            EffectiveStatus::Suspended => "suspended",
            EffectiveStatus::Expired => "expired",
        }
    }
}

/// `Expired` once `expires_at` has passed (at `now` exactly too), else the operator's status.
pub(crate) fn effective_status(p: &Partner, now_ms: i64) -> EffectiveStatus {
    if p.expires_at.is_some_and(|t| t <= now_ms) {
        return EffectiveStatus::Expired;
    }
    match p.status {
        PartnerStatus::Active => EffectiveStatus::Active,
        PartnerStatus::Suspended => EffectiveStatus::Suspended,
    }
}

/// The status an operator may set: `active` or `suspended`.
pub(crate) fn parse_status(v: &str) -> Result<PartnerStatus, DomainError> {
    match v {
        "active" => Ok(PartnerStatus::Active),
        "suspended" => Ok(PartnerStatus::Suspended),
        _ => Err(DomainError::validation(
            "status",
            "must be active or suspended",
        )),
    }
}

/// A partner to register, as the operator gave it.
#[derive(Debug, Clone)]
pub(crate) struct NewPartner {
    pub(crate) name: String,
    /// An https URL (exactly the `iss` of its tokens), or a `did:web` DID.
    pub(crate) issuer: String,
    pub(crate) jwks_uri: Option<String>,
    pub(crate) audience: Option<String>,
    pub(crate) allowed_organizations: Vec<String>,
    /// RFC 3339.
    pub(crate) expires_at: Option<String>,
}

/// The changes to a partner; `None` leaves a field as it is, `Some(None)` removes an optional
/// one.
#[derive(Debug, Clone, Default)]
pub(crate) struct PartnerUpdate {
    pub(crate) name: Option<String>,
    pub(crate) jwks_uri: Option<String>,
    pub(crate) audience: Option<Option<String>>,
    pub(crate) allowed_organizations: Option<Vec<String>>,
    pub(crate) status: Option<PartnerStatus>,
    /// RFC 3339, or `Some(None)` to remove the expiry.
    pub(crate) expires_at: Option<Option<String>>,
}

pub(crate) fn partner_not_found() -> DomainError {
    DomainError::not_found(
        ErrorCode::FederationPartnerNotFound,
        "Federation partner with the specified ID was not found.",
    )
}

fn partner_conflict() -> DomainError {
    DomainError::conflict(
        ErrorCode::FederationPartnerConflict,
        "A federation partner with this issuer is already registered.",
    )
}

fn partner_limit(max: usize) -> DomainError {
    DomainError::conflict(
        ErrorCode::FederationPartnerLimit,
        format!("This node keeps at most {max} partners; remove one first."),
    )
}

/// A display name: 1 to 256 printable characters, not blank.
pub(crate) fn check_name(v: &str) -> Result<(), DomainError> {
    if v.trim().is_empty() {
        return Err(DomainError::validation("name", "must not be blank"));
    }
    crate::app::text::check_text(v, 1, 256)
        .map_err(|e| DomainError::validation("name", e.to_string()))
}

/// An absolute URL the guarded client may fetch: https, or http when the operator allows it
/// (`--allow-http-fetch`); a host, no credentials, at most 2048 characters.
pub(crate) fn check_url(allow_http: bool, field: &str, v: &str) -> Result<url::Url, DomainError> {
    let u = url::Url::parse(v)
        .map_err(|e| DomainError::validation(field, format!("not a URL: {e}")))?;
    let scheme_ok = u.scheme() == "https" || (allow_http && u.scheme() == "http");
    if !scheme_ok {
        let want = if allow_http {
            "an http(s) URL"
        } else {
            "an https URL (plain http is allowed only with --allow-http-fetch)"
        };
        return Err(DomainError::validation(field, format!("must be {want}")));
    }
    if !u.username().is_empty()
        || u.password().is_some()
        || u.host_str().is_none()
        || v.len() > 2048
    {
        return Err(DomainError::validation(
            field,
            "must be an absolute URL with a host and no credentials, at most 2048 characters",
        ));
    }
    Ok(u)
}

/// `allowed_organizations`: at most 1000 values of 1 to 256 printable characters.
pub(crate) fn check_orgs(v: &[String]) -> Result<(), DomainError> {
    if v.len() > MAX_ALLOWED_ORGS {
        return Err(DomainError::validation(
            "allowed_organizations",
            "at most 1000 values",
        ));
    }
    for o in v {
        crate::app::text::check_text(o, 1, 256)
            .map_err(|e| DomainError::validation("allowed_organizations", e.to_string()))?;
    }
    Ok(())
}

/// The `aud` a partner's tokens must carry: 1 to 2048 printable characters.
pub(crate) fn check_audience(v: &str) -> Result<(), DomainError> {
    crate::app::text::check_text(v, 1, 2048)
        .map_err(|e| DomainError::validation("audience", e.to_string()))
}

/// An RFC 3339 date-time, in ms since the epoch.
pub(crate) fn parse_time(field: &str, v: &str) -> Result<i64, DomainError> {
    parse_rfc3339(v).ok_or_else(|| DomainError::validation(field, "must be an RFC 3339 date-time"))
}

/// The kind and the key source of a new partner, from its issuer and optional JWKS URL.
pub(crate) fn source_of(
    allow_http: bool,
    issuer: &str,
    jwks_uri: Option<&str>,
) -> Result<(KeySourceKind, federation::KeySource), DomainError> {
    if issuer.starts_with("did:") {
        let did: did_method::DidWeb = issuer
            .parse()
            .map_err(|e| DomainError::validation("issuer", format!("not a usable did:web: {e}")))?;
        if jwks_uri.is_some() {
            return Err(DomainError::validation(
                "jwks_uri",
                "a did:web issuer's keys come from its DID document; give no jwks_uri",
            ));
        }
        return Ok((KeySourceKind::Did, federation::KeySource::DidWeb(did)));
    }
    check_url(allow_http, "issuer", issuer)?;
    Ok(match jwks_uri {
        Some(u) => (
            KeySourceKind::Jwks,
            federation::KeySource::Jwks(check_url(allow_http, "jwks_uri", u)?),
        ),
        None => (
            KeySourceKind::Discovery,
            federation::KeySource::Discovery(issuer.to_string()),
        ),
    })
}

/// Partners by issuer, read once per identity generation (which every partner change bumps
/// before it is acknowledged): a verification does not read the store for its partner.
pub(crate) struct PartnerCache {
    map: std::sync::RwLock<PartnerMap>,
}

type PartnerMap = (u64, std::collections::HashMap<String, Option<Arc<Partner>>>);

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
    ) -> Result<Option<Arc<Partner>>, storage::StoreError> {
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
        let p = store.partner_by_issuer(issuer)?.map(Arc::new);
        if let Ok(mut m) = self.map.write() {
            if m.0 != generation || m.1.len() >= 1024 {
                *m = (generation, std::collections::HashMap::new());
            }
            m.1.insert(issuer.to_string(), p.clone());
        }
        Ok(p)
    }
}

/// The key source of a stored partner.
pub(crate) fn key_source(p: &Partner) -> Result<federation::KeySource, DomainError> {
    let bad = || {
        tracing::error!(partner = %p.id, "a stored partner has an unusable key source");
        DomainError::Internal
    };
    Ok(match p.source {
        KeySourceKind::Did => federation::KeySource::DidWeb(p.issuer.parse().map_err(|_| bad())?),
        KeySourceKind::Discovery => federation::KeySource::Discovery(p.issuer.clone()),
        KeySourceKind::Jwks => federation::KeySource::Jwks(
            url::Url::parse(p.jwks_uri.as_deref().unwrap_or("")).map_err(|_| bad())?,
        ),
    })
}

/// Reads the keys of `source` through the guarded client: `JWKS_UNREACHABLE` with the precise
/// reason if they cannot be read.
async fn probe(
    state: &AppState,
    source: &federation::KeySource,
) -> Result<federation::FetchedKeys, DomainError> {
    source.fetch(&state.fetcher).await.map_err(|e| {
        tracing::warn!(%source, error = %e, code = e.code(), "partner key source refused");
        DomainError::unprocessable(
            ErrorCode::JwksUnreachable,
            format!("The partner's keys could not be read: {e}. Check the URL, and that it is a public https address."),
        )
        .with_details(serde_json::json!({ "reason": e.code(), "source": source.to_string() }))
    })
}

/// Registers a partner after probing its key source.
pub(crate) async fn create(
    state: &AppState,
    caller: &Caller,
    new: NewPartner,
) -> Result<Partner, DomainError> {
    create_limited(state, caller, new, MAX_PARTNERS).await
}

/// [`create`] with the partner limit given (tests lower it).
pub(crate) async fn create_limited(
    state: &AppState,
    caller: &Caller,
    new: NewPartner,
    max_partners: usize,
) -> Result<Partner, DomainError> {
    caller.require(Scope::AdminOrgs)?;
    check_name(&new.name)?;
    check_orgs(&new.allowed_organizations)?;
    if let Some(a) = &new.audience {
        check_audience(a)?;
    }
    let expires_at = new
        .expires_at
        .as_deref()
        .map(|v| parse_time("expires_at", v))
        .transpose()?;
    let allow_http = state.settings.allow_http_fetch;
    let (kind, source) = source_of(allow_http, &new.issuer, new.jwks_uri.as_deref())?;
    // Fail fast, before probing someone's server: a taken issuer or a full node. The write
    // below checks both again, against what it reads; only that decides.
    if state.store.partner_by_issuer(&new.issuer)?.is_some() {
        return Err(partner_conflict());
    }
    if state.store.list_partners()?.len() >= max_partners {
        return Err(partner_limit(max_partners));
    }
    let fetched = probe(state, &source).await?;
    let now = state.clock.now_ms();
    let partner = Partner {
        id: Uuid::new_v4(),
        name: new.name,
        jwks_uri: match kind {
            KeySourceKind::Did => None,
            _ => Some(fetched.keys_url.clone()),
        },
        issuer: new.issuer,
        source: kind,
        audience: new.audience,
        allowed_organizations: new.allowed_organizations,
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
        storage::Outcome::Success,
        serde_json::json!({ "issuer": partner.issuer, "keySource": kind.as_str(), "keysUrl": fetched.keys_url, "keys": fetched.keys.len() }),
    );
    let stored = partner.clone();
    state
        .write_audited(entry, move |tx| {
            if tx.partner_id_by_issuer(&stored.issuer)?.is_some() {
                return Err(partner_conflict());
            }
            if tx.count_partners()? >= max_partners {
                return Err(partner_limit(max_partners));
            }
            tx.put_partner(&stored);
            Ok(())
        })
        .await?;
    state
        .key_cache
        .seed(&partner.id.to_string(), &source, fetched);
    state.gossip.local_partner_changed(&partner.issuer);
    Ok(partner)
}

/// Every partner, newest first.
pub(crate) fn list(state: &AppState, caller: &Caller) -> Result<Vec<Partner>, DomainError> {
    caller.require(Scope::AdminOrgs)?;
    let mut partners = state.store.list_partners()?;
    partners.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
    Ok(partners)
}

/// One partner.
pub(crate) fn get(state: &AppState, caller: &Caller, id: &Uuid) -> Result<Partner, DomainError> {
    caller.require(Scope::AdminOrgs)?;
    state.store.get_partner(id)?.ok_or_else(partner_not_found)
}

/// Changes a partner (only the fields given). A new `jwks_uri` is probed first, and the
/// partner's cached keys are replaced by the probed ones. A partner that came from gossip
/// becomes this node's own: an operator's decision always wins over gossip.
pub(crate) async fn update(
    state: &AppState,
    caller: &Caller,
    id: &Uuid,
    change: PartnerUpdate,
) -> Result<Partner, DomainError> {
    caller.require(Scope::AdminOrgs)?;
    let current = state.store.get_partner(id)?.ok_or_else(partner_not_found)?;
    let mut changed: Vec<&'static str> = Vec::new();
    if let Some(n) = &change.name {
        check_name(n)?;
        changed.push("name");
    }
    if let Some(o) = &change.allowed_organizations {
        check_orgs(o)?;
        changed.push("allowed_organizations");
    }
    if change.status.is_some() {
        changed.push("status");
    }
    let expires_at = match &change.expires_at {
        None => None,
        Some(None) => Some(None),
        Some(Some(v)) => Some(Some(parse_time("expires_at", v)?)),
    };
    if expires_at.is_some() {
        changed.push("expires_at");
    }
    if let Some(a) = &change.audience {
        if let Some(a) = a {
            check_audience(a)?;
        }
        changed.push("audience");
    }
    let did_keys = || {
        DomainError::validation(
            "jwks_uri",
            "a did:web partner's keys come from its DID document",
        )
    };
    let mut new_source = None;
    if let Some(u) = &change.jwks_uri {
        if current.source == KeySourceKind::Did {
            return Err(did_keys());
        }
        let source =
            federation::KeySource::Jwks(check_url(state.settings.allow_http_fetch, "jwks_uri", u)?);
        let fetched = probe(state, &source).await?;
        new_source = Some((source, fetched));
        changed.push("jwks_uri");
    }
    if changed.is_empty() {
        return Err(DomainError::validation(
            "body",
            "give at least one field to change",
        ));
    }
    let now = state.clock.now_ms();
    let pid = current.id;
    let entry = state.audit_entry(
        &caller.actor,
        "federation.partner.update",
        pid.to_string(),
        storage::Outcome::Success,
        serde_json::json!({
            "fields": changed,
            "status": change.status.map(|s| s.as_str()),
            "from_gossip": current.gossip.as_ref().map(|g| g.origin.clone()),
        }),
    );
    let jwks_uri = new_source.as_ref().map(|(_, f)| f.keys_url.clone());
    let p = state
        .write_audited(entry, move |tx| {
            let mut p = tx.get_partner(&pid)?.ok_or_else(partner_not_found)?;
            if let Some(n) = change.name {
                p.name = n;
            }
            if let Some(o) = change.allowed_organizations {
                p.allowed_organizations = o;
            }
            if let Some(s) = change.status {
                p.status = s;
            }
            if let Some(e) = expires_at {
                p.expires_at = e;
            } else if let Some(g) = &p.gossip {
                // Taken over from gossip: the origin's expiry for the partner, not the
                // anchor's (which gossip would have renewed).
                p.expires_at = g.partner_expires_at;
            }
            if let Some(a) = change.audience {
                p.audience = a;
            }
            if let Some(u) = jwks_uri {
                // Gossip may have changed the partner since it was read.
                if p.source == KeySourceKind::Did {
                    return Err(did_keys());
                }
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
    Ok(p)
}

/// Removes a partner: its tokens are refused at once. Every other node's trust anchor about
/// its issuer is dismissed in the same write, so that gossip does not bring it back until a
/// trusted origin signs a different statement about the issuer (to keep it out for good,
/// suspend it instead: a suspension is a local decision, which gossip never overrides).
pub(crate) async fn delete(
    state: &AppState,
    caller: &Caller,
    id: &Uuid,
) -> Result<(), DomainError> {
    caller.require(Scope::AdminOrgs)?;
    let current = state.store.get_partner(id)?.ok_or_else(partner_not_found)?;
    let pid = current.id;
    let entry = state.audit_entry(
        &caller.actor,
        "federation.partner.delete",
        pid.to_string(),
        storage::Outcome::Success,
        serde_json::json!({ "issuer": current.issuer, "from_gossip": current.gossip.as_ref().map(|g| g.origin.clone()) }),
    );
    let own = state.settings.node_did.to_string();
    state
        .write_audited(entry, move |tx| {
            let p = tx.get_partner(&pid)?.ok_or_else(partner_not_found)?;
            crate::app::anchors::dismiss_others(tx, &p.issuer, &own)?;
            tx.delete_partner(&p);
            Ok(())
        })
        .await?;
    state.key_cache.invalidate(&pid.to_string());
    state.gossip.local_partner_changed(&current.issuer);
    Ok(())
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

fn refused(code: ErrorCode, message: impl Into<String>) -> DomainError {
    DomainError::unprocessable(code, message)
}

/// The stable code of a verification failure: the federation crate's own code, which
/// [`ErrorCode`] lists (a test holds every variant to it).
fn code_of(e: &federation::VerifyError) -> ErrorCode {
    let name = e.code();
    ErrorCode::parse(name).unwrap_or_else(|| {
        tracing::error!(code = name, "a partner token failure without an ErrorCode");
        ErrorCode::TokenMalformed
    })
}

/// Verifies a partner-issued token: the partner is found by the token's exact `iss`, must be
/// active and unexpired, and the token must verify strictly with the partner's keys and pass
/// `allowed_organizations`. Every refusal is `Unprocessable` with a stable code.
pub(crate) async fn verify_partner_token(
    state: &AppState,
    token: &str,
    expected_issuer: Option<&str>,
) -> Result<(Arc<Partner>, federation::VerifiedToken), DomainError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(refused(
            ErrorCode::TokenMalformed,
            format!("The token is longer than {MAX_TOKEN_LEN} bytes."),
        ));
    }
    let iss = unverified_issuer(token).ok_or_else(|| {
        refused(
            ErrorCode::TokenMalformed,
            "The token is not a JWT with a string iss claim.",
        )
    })?;
    if expected_issuer.is_some_and(|e| e != iss) {
        return Err(refused(
            ErrorCode::IssuerMismatch,
            "The token's iss is not the expected issuer.",
        ));
    }
    let partner = state
        .partners
        .by_issuer(&state.store, &iss)?
        .ok_or_else(|| {
            refused(
                ErrorCode::UnknownFederationIssuer,
                "The token's issuer is not a federation partner of this node.",
            )
        })?;
    let now = state.clock.now_ms();
    match effective_status(&partner, now) {
        EffectiveStatus::Suspended => {
            return Err(refused(
                ErrorCode::FederationPartnerSuspended,
                "The token's issuer is a suspended federation partner.",
            ))
        }
        EffectiveStatus::Expired => {
            return Err(refused(
                ErrorCode::FederationPartnerExpired,
                "The token's issuer is an expired federation partner.",
            ))
        }
        EffectiveStatus::Active => {}
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
        .map_err(|e| refused(code_of(&e), format!("The token does not verify: {e}.")))?;
    // Explicit typing (RFC 8725 §3.11): a trust anchor a node gossips is signed with the same
    // key as its tokens, but is never one.
    if verified.header.get("typ").and_then(|t| t.as_str()) == Some(crate::app::anchors::TYP) {
        return Err(refused(
            ErrorCode::WrongTokenType,
            "This is a gossiped trust anchor, not a token.",
        ));
    }
    if !partner.allowed_organizations.is_empty() {
        let org = verified
            .claims
            .get("organization_id")
            .and_then(|v| v.as_str());
        if !org.is_some_and(|o| partner.allowed_organizations.iter().any(|a| a == o)) {
            return Err(refused(
                ErrorCode::FederationOrgNotAllowed,
                "The token's organization_id is not one this partner may speak for here.",
            ));
        }
    }
    Ok((partner, verified))
}

/// `POST /api/v1/federation/verify`: [`verify_partner_token`] for any authenticated caller,
/// counted and audited (success or failure, without holding the answer).
pub(crate) async fn verify(
    state: &AppState,
    caller: &Caller,
    token: &str,
    expected_issuer: Option<&str>,
) -> Result<(Arc<Partner>, federation::VerifiedToken), DomainError> {
    let result = verify_partner_token(state, token, expected_issuer).await;
    let (outcome, details) = match &result {
        Ok((p, v)) => (
            storage::Outcome::Success,
            serde_json::json!({ "partner": p.id, "issuer": p.issuer, "subject": v.claims.get("sub") }),
        ),
        Err(e) => (
            storage::Outcome::Failure,
            serde_json::json!({ "reason": e.code().as_str() }),
        ),
    };
    state.metrics.federation_verify(result.is_ok());
    let entry = state.audit_entry(&caller.actor, "federation.verify", "-", outcome, details);
    state.audit_detached(entry).await;
    result
}

#[cfg(test)]
mod tests;
