//! `/api/v1/federation/...`: federation partners (`/trust`, `/partners`, `/partners/{id}`;
//! scope `admin:orgs`), verification of partner tokens (`/verify`, any authenticated caller)
//! and the gossip view (`/gossip`), with the predecessor's fields (snake_case) and error codes.
//! The rules, the key-source probe and the writes are `app::partners`'.

use serde::{Deserialize, Deserializer, Serialize};
use storage::Partner;
use utoipa::ToSchema;
use uuid::Uuid;
use warp::http::StatusCode;
use warp::{Rejection, Reply};

use crate::app::partners::{self, effective_status, NewPartner, PartnerUpdate};
use crate::app::AppState;
use crate::clock::rfc3339;
use crate::http::extract::{created, Params};
use crate::http::Caller;
use crate::model::ErrorBody;

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
            status: effective_status(p, now).as_str(),
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
    #[schema(pattern = r"^https?://[^\s/?#]+")]
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
#[schema(min_properties = 1)]
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
    #[schema(value_type = Option<crate::model::wire::OrgStatusChange>)]
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

/// Register a trusted federation partner: its key source is probed first.
#[utoipa::path(post, operation_id = "createFederationPartner", path = "/api/v1/federation/trust", tag = "Federation", security(("bearer" = ["admin:orgs"])),
    request_body = CreatePartnerRequest,
    responses((status = 201, body = PartnerView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "FEDERATION_PARTNER_CONFLICT, FEDERATION_PARTNER_LIMIT", body = ErrorBody),
        (status = 422, description = "JWKS_UNREACHABLE (details.reason: PRIVATE_ADDRESS, HTTP_NOT_ALLOWED, TIMEOUT, RESPONSE_TOO_LARGE, REDIRECT_TO_OTHER_HOST, DISCOVERY_ISSUER_MISMATCH, NO_USABLE_KEYS, ...)", body = ErrorBody)))]
pub(crate) async fn create(
    _p: Params,
    caller: Caller,
    req: CreatePartnerRequest,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let new = NewPartner {
        name: req.name,
        issuer: req.issuer,
        jwks_uri: req.jwks_uri,
        audience: req.audience,
        allowed_organizations: req.allowed_organizations,
        expires_at: req.expires_at,
    };
    let p = partners::create(&state, &caller, new).await?;
    Ok(created(&PartnerView::new(&p, state.clock.now_ms())))
}

/// List every federation partner (expired ones say so).
#[utoipa::path(get, operation_id = "listFederationPartners", path = "/api/v1/federation/partners", tag = "Federation", security(("bearer" = ["admin:orgs"])),
    responses((status = 200, body = [PartnerView]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn list(
    _p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let partners = partners::list(&state, &caller)?;
    let now = state.clock.now_ms();
    let views: Vec<PartnerView> = partners.iter().map(|p| PartnerView::new(p, now)).collect();
    Ok(warp::reply::json(&views).into_response())
}

/// Get one federation partner.
#[utoipa::path(get, operation_id = "getFederationPartner", path = "/api/v1/federation/partners/{id}", tag = "Federation", security(("bearer" = ["admin:orgs"])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = PartnerView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn get(
    p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let p = partners::get(&state, &caller, &p.id("id")?)?;
    Ok(warp::reply::json(&PartnerView::new(&p, state.clock.now_ms())).into_response())
}

/// Update a federation partner (only the fields given). A new `jwks_uri` is probed first. A
/// partner that came from gossip becomes this node's own (`source: local`): an operator's
/// decision always wins over gossip.
#[utoipa::path(patch, operation_id = "updateFederationPartner", path = "/api/v1/federation/partners/{id}", tag = "Federation", security(("bearer" = ["admin:orgs"])),
    params(("id" = Uuid, Path)), request_body = UpdatePartnerRequest,
    responses((status = 200, body = PartnerView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn update(
    p: Params,
    caller: Caller,
    req: UpdatePartnerRequest,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let id = p.id("id")?;
    let change = PartnerUpdate {
        name: req.name,
        jwks_uri: req.jwks_uri,
        audience: req.audience,
        allowed_organizations: req.allowed_organizations,
        status: req
            .status
            .as_deref()
            .map(partners::parse_status)
            .transpose()?,
        expires_at: req.expires_at,
    };
    let p = partners::update(&state, &caller, &id, change).await?;
    Ok(warp::reply::json(&PartnerView::new(&p, state.clock.now_ms())).into_response())
}

/// Remove a federation partner: its tokens are refused at once. Gossip does not bring it back
/// until a trusted origin signs a different statement about the issuer (to keep it out for
/// good, suspend it instead: a suspension is a local decision, which gossip never overrides).
#[utoipa::path(delete, operation_id = "deleteFederationPartner", path = "/api/v1/federation/partners/{id}", tag = "Federation", security(("bearer" = ["admin:orgs"])),
    params(("id" = Uuid, Path)),
    responses((status = 204, description = "Removed"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn delete(
    p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    partners::delete(&state, &caller, &p.id("id")?).await?;
    Ok(warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response())
}

/// Verify a token issued by a federation partner.
#[utoipa::path(post, operation_id = "verifyFederatedToken", path = "/api/v1/federation/verify", tag = "Federation", security(("bearer" = [])),
    request_body = VerifyRequest,
    responses((status = 200, body = VerifyResult), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 422, description = "UNKNOWN_FEDERATION_ISSUER, FEDERATION_PARTNER_SUSPENDED, FEDERATION_PARTNER_EXPIRED, FEDERATION_ORG_NOT_ALLOWED, ISSUER_MISMATCH, TOKEN_MALFORMED, ALG_NOT_ALLOWED, UNKNOWN_KID, SIGNATURE_INVALID, TOKEN_EXPIRED, TOKEN_NOT_YET_VALID, AUDIENCE_MISMATCH, CRIT_UNSUPPORTED, KEYS_UNAVAILABLE, ...", body = ErrorBody)))]
pub(crate) async fn verify(
    _p: Params,
    caller: Caller,
    req: VerifyRequest,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let (partner, v) =
        partners::verify(&state, &caller, &req.token, req.expected_issuer.as_deref()).await?;
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
#[utoipa::path(get, operation_id = "getGossipStatus", path = "/api/v1/federation/gossip", tag = "Federation", security(("bearer" = ["admin:orgs"])),
    responses((status = 200, body = crate::gossip::GossipView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn gossip(
    _p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let view = crate::app::anchors::gossip_view(&state, &caller).await?;
    Ok(warp::reply::json(&view).into_response())
}
