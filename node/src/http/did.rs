//! DIDs and cards: the node's and every agent's did:web document, the A2A agent card, the OASF
//! record and the Agent Badge (all public, CORS-open, with ETag and Cache-Control), the
//! predecessor's `/api/v1/agents/{id}/did`, `/did/resolve` (authenticated, tenant-scoped) and
//! `/did/card`, and badge verification.
//!
//! Status rules: a decommissioned agent's DID is deactivated, so every public artifact answers
//! `410 AGENT_DECOMMISSIONED` and its resolution metadata says `deactivated: true`. A suspended
//! agent, or an agent of a suspended organization, keeps its DID document (the keys that signed
//! its past statements stay resolvable), but its card, OASF record and badge — statements that
//! it is in good standing — answer `403 AGENT_NOT_ACTIVE` until it is reactivated.

use did_method::{
    DocumentMetadata, ResolutionMetadata, ResolutionResult, DID_JSON_CONTENT_TYPE,
    RESOLUTION_CONTENT_TYPE,
};
use serde::{Deserialize, Serialize};
use storage::{AgentStatus, OrgStatus};
use utoipa::ToSchema;
use uuid::Uuid;
use warp::http::{header, HeaderValue, StatusCode};
use warp::{Rejection, Reply};

use crate::app::AppState;
use crate::artifacts::{self, AgentArtifacts, Rendered, VC_CONTEXT};
use crate::clock::{parse_rfc3339, rfc3339};
use crate::http::error::ApiError;
use crate::http::extract::{conditional, parse_id, Params};
use crate::http::Caller;
use crate::model::ErrorBody;
use crate::token::Compact;

/// How long resolvers and caches may keep a document or card. Short, because removing a
/// compromised key must take effect quickly; ETags make revalidation cheap.
const MAX_AGE_SECS: u64 = 60;
/// Largest badge accepted for verification.
const MAX_BADGE_LEN: usize = 32 * 1024;
/// Clock skew tolerated on a badge's validity window.
const LEEWAY_MS: i64 = 60_000;
/// JSON-LD media type of a DID document (DID Core §6.3).
const DID_LD_JSON: &str = "application/did+ld+json";

/// Adds `Access-Control-Allow-Origin: *`: documents and cards are public, read by browsers too.
fn cors(mut resp: warp::reply::Response) -> warp::reply::Response {
    resp.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    resp
}

fn public(r: &Rendered, content_type: &'static str, inm: Option<&str>) -> warp::reply::Response {
    cors(conditional(
        r.body.clone(),
        &r.etag,
        content_type,
        inm,
        MAX_AGE_SECS,
    ))
}

fn public_error(e: ApiError) -> warp::reply::Response {
    cors(e.into_response())
}

fn decommissioned() -> ApiError {
    ApiError::new(
        StatusCode::GONE,
        "AGENT_DECOMMISSIONED",
        "Agent has been decommissioned — DID Document is no longer active",
    )
}

fn not_active() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "AGENT_NOT_ACTIVE",
        "The agent is suspended; its card, OASF record and badge are withheld until it is reactivated.",
    )
}

/// The content type a client asked for: JSON-LD when `Accept` names it, else plain DID JSON.
fn document_type(accept: Option<&str>) -> &'static str {
    let wants_ld = accept.is_some_and(|a| {
        a.split(',').any(|m| {
            let m = m.split(';').next().unwrap_or("").trim();
            m.eq_ignore_ascii_case(DID_LD_JSON) || m.eq_ignore_ascii_case("application/ld+json")
        })
    });
    if wants_ld {
        DID_LD_JSON
    } else {
        DID_JSON_CONTENT_TYPE
    }
}

/// Looks an agent up for a public route: 400 for a malformed id, 404 if unknown, 410 if
/// decommissioned.
fn lookup(state: &AppState, raw_id: &str) -> Result<std::sync::Arc<AgentArtifacts>, ApiError> {
    let id = parse_id("agentId", raw_id)?;
    let x = state
        .artifacts
        .get(&id, &state.keys())
        .map_err(artifact_error)?
        .ok_or_else(ApiError::agent_not_found)?;
    if x.agent.status == AgentStatus::Decommissioned {
        return Err(decommissioned());
    }
    Ok(x)
}

fn artifact_error(e: artifacts::ArtifactError) -> ApiError {
    match e {
        artifacts::ArtifactError::Store(e) => ApiError::from(e),
        other => {
            tracing::error!(error = %other, "rendering a public artifact failed");
            ApiError::internal()
        }
    }
}

/// The node's DID document (`did:web:<host>`): its signing keys in force and its services.
#[utoipa::path(get, path = "/.well-known/did.json", tag = "DIDs",
    responses((status = 200, description = "DID document (application/did+json; application/did+ld+json when asked)", body = Object),
        (status = 304, description = "Not modified")))]
pub(crate) async fn node_document(
    _p: Params,
    accept: Option<String>,
    inm: Option<String>,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    Ok({
        let doc = artifacts::node_document(&state.settings, &state.keys(), state.clock.now_ms());
        let mut resp = public(&doc, document_type(accept.as_deref()), inm.as_deref());
        resp.headers_mut()
            .insert(header::VARY, HeaderValue::from_static("Accept"));
        resp
    })
}

/// The node's DID document where did:web puts it when `--public-url` has a path
/// (`https://h/base` is `did:web:h:base`, whose document is `https://h/base/did.json`; the proxy
/// in front of the node strips `/base`). Without a path the DID's document is at
/// `/.well-known/did.json` only, and this answers 404.
#[utoipa::path(get, path = "/did.json", tag = "DIDs",
    responses((status = 200, description = "DID document of the node, when its public URL has a path", body = Object),
        (status = 304, description = "Not modified"), (status = 404, description = "DID_DOCUMENT_NOT_HERE", body = ErrorBody)))]
pub(crate) async fn node_document_at_path(
    _p: Params,
    accept: Option<String>,
    inm: Option<String>,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    Ok({
        if state.settings.node_did.path().is_empty() {
            return Ok(public_error(ApiError::new(
                StatusCode::NOT_FOUND,
                "DID_DOCUMENT_NOT_HERE",
                "This node's DID has no path: its document is at /.well-known/did.json.",
            )));
        }
        node_document(_p, accept, inm, state).await?
    })
}

/// An agent's DID document (`did:web:<host>:agents:<uuid>`).
#[utoipa::path(get, path = "/agents/{agentId}/did.json", tag = "DIDs",
    params(("agentId" = Uuid, Path)),
    responses((status = 200, description = "DID document", body = Object), (status = 304, description = "Not modified"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 410, description = "AGENT_DECOMMISSIONED: the DID is deactivated", body = ErrorBody)))]
pub(crate) async fn agent_document(
    p: Params,
    accept: Option<String>,
    inm: Option<String>,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    Ok({
        match lookup(&state, p.raw("agentId")) {
            Ok(x) => {
                let mut resp = public(
                    &x.document,
                    document_type(accept.as_deref()),
                    inm.as_deref(),
                );
                resp.headers_mut()
                    .insert(header::VARY, HeaderValue::from_static("Accept"));
                resp
            }
            Err(e) => public_error(e),
        }
    })
}

/// An active agent's artifacts, or the public error.
fn active(state: &AppState, id: &str) -> Result<std::sync::Arc<AgentArtifacts>, ApiError> {
    let x = lookup(state, id)?;
    if !x.active {
        return Err(not_active());
    }
    Ok(x)
}

/// An agent's A2A agent card (v1.0), signed with a detached JWS over its JCS form.
#[utoipa::path(get, path = "/agents/{agentId}/.well-known/agent-card.json", tag = "DIDs",
    params(("agentId" = Uuid, Path)),
    responses((status = 200, description = "A2A AgentCard with `signatures`", body = Object), (status = 304, description = "Not modified"),
        (status = 403, description = "AGENT_NOT_ACTIVE", body = ErrorBody), (status = 404, body = ErrorBody), (status = 410, body = ErrorBody)))]
pub(crate) async fn agent_card(
    p: Params,
    inm: Option<String>,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    Ok({
        let r = active(&state, p.raw("agentId")).and_then(|x| {
            x.card(&state.settings)
                .map(|(_, r)| r.clone())
                .map_err(artifact_error)
        });
        match r {
            Ok(r) => public(&r, "application/json", inm.as_deref()),
            Err(e) => public_error(e),
        }
    })
}

/// An agent's OASF record (schema 1.0.0) with its A2A card in module `integration/a2a`.
#[utoipa::path(get, path = "/agents/{agentId}/oasf.json", tag = "DIDs",
    params(("agentId" = Uuid, Path)),
    responses((status = 200, description = "OASF record", body = Object), (status = 304, description = "Not modified"),
        (status = 403, body = ErrorBody),
        (status = 404, description = "AGENT_NOT_FOUND, OASF_RECORD_UNAVAILABLE (the agent lists no skills)", body = ErrorBody),
        (status = 410, body = ErrorBody)))]
pub(crate) async fn oasf_record(
    p: Params,
    inm: Option<String>,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    Ok({
        let r = active(&state, p.raw("agentId")).and_then(|x| {
        match x.oasf(&state.settings).map_err(artifact_error)? {
            Some(r) => Ok(r.clone()),
            None => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "OASF_RECORD_UNAVAILABLE",
                "The agent lists no skills, and an OASF record needs at least one; add skills with PATCH /api/v1/agents/{agentId}.",
            )),
        }
    });
        match r {
            Ok(r) => public(&r, "application/json", inm.as_deref()),
            Err(e) => public_error(e),
        }
    })
}

/// An agent's Agent Badge: a VCDM 2.0 credential (`AgentBadge`, subject = the agent's DID,
/// `badge` = its signed A2A card as a JSON string) as a compact JWS (`typ: vc+jwt`) signed by
/// the node, whose `kid` is a verification method of the node's DID document. Valid 24 hours.
#[utoipa::path(get, path = "/agents/{agentId}/badge", tag = "DIDs",
    params(("agentId" = Uuid, Path)),
    responses((status = 200, description = "Compact JWS (application/vc+jwt)", body = String),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 410, body = ErrorBody)))]
pub(crate) async fn agent_badge(
    p: Params,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    Ok({
        let r = active(&state, p.raw("agentId")).and_then(|x| {
            x.badge(&state.settings, state.clock.now_ms())
                .map_err(artifact_error)
        });
        match r {
            Ok(r) => {
                let mut resp = warp::reply::Response::new(r.body.into());
                let h = resp.headers_mut();
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/vc+jwt"),
                );
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                cors(resp)
            }
            Err(e) => public_error(e),
        }
    })
}

/// The predecessor's per-agent DID document: the DID document with its `agntcy` extension.
#[utoipa::path(get, path = "/api/v1/agents/{agentId}/did", tag = "DIDs",
    params(("agentId" = Uuid, Path)),
    responses((status = 200, description = "DID document with the `agntcy` extension", body = Object),
        (status = 404, body = ErrorBody), (status = 410, body = ErrorBody)))]
pub(crate) async fn legacy_document(
    p: Params,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    Ok({
        match lookup(&state, p.raw("agentId")) {
            Ok(x) => cors(warp::reply::json(&artifacts::predecessor_document(&x)).into_response()),
            Err(e) => public_error(e),
        }
    })
}

/// The predecessor's AGNTCY agent card.
#[utoipa::path(get, path = "/api/v1/agents/{agentId}/did/card", tag = "DIDs",
    params(("agentId" = Uuid, Path)),
    responses((status = 200, description = "AGNTCY card (predecessor shape)", body = Object),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 410, body = ErrorBody)))]
pub(crate) async fn legacy_card(
    p: Params,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    Ok({
        match active(&state, p.raw("agentId")) {
            Ok(x) => cors(
                warp::reply::json(&artifacts::predecessor_card(
                    &state.settings,
                    &x.agent,
                    &x.did,
                    state.clock.now_ms(),
                ))
                .into_response(),
            ),
            Err(e) => public_error(e),
        }
    })
}

/// W3C DID Resolution of one of the caller's organization's agents.
#[utoipa::path(get, path = "/api/v1/agents/{agentId}/did/resolve", tag = "DIDs", security(("bearer" = ["agents:read"])),
    params(("agentId" = Uuid, Path)),
    responses((status = 200, description = "DID Resolution result (application/ld+json;profile=\"https://w3id.org/did-resolution\")", body = Object),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn resolve(
    p: Params,
    caller: Caller,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    caller.require(crate::app::Scope::AgentsRead)?;
    let id = p.id("agentId")?;
    let x = state
        .artifacts
        .get(&id, &state.keys())
        .map_err(artifact_error)?
        .filter(|x| x.agent.org_id == caller.org_id)
        .ok_or_else(ApiError::agent_not_found)?;
    let deactivated = x.agent.status == AgentStatus::Decommissioned;
    let document = if deactivated {
        // A deactivated DID keeps its identity but no keys or services.
        did_method::DidDocument::new(&x.did, Some(&state.settings.node_did))
    } else {
        serde_json::from_slice(&x.document.body).map_err(|e| {
            tracing::error!(error = %e, "a rendered DID document does not parse");
            ApiError::internal()
        })?
    };
    let result = ResolutionResult {
        did_document: Some(document),
        did_document_metadata: DocumentMetadata {
            created: rfc3339(x.agent.created_at),
            updated: rfc3339(
                x.agent
                    .updated_at
                    .max(x.keys.iter().map(|k| k.created_at).max().unwrap_or(0)),
            ),
            deactivated,
        },
        did_resolution_metadata: ResolutionMetadata {
            content_type: DID_LD_JSON.to_string(),
            retrieved: Some(rfc3339(state.clock.now_ms())),
            error: None,
        },
    };
    let mut resp = warp::reply::json(&result).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(RESOLUTION_CONTENT_TYPE),
    );
    Ok(resp)
}

/// Body of `POST /api/v1/badges/verify`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct VerifyBadgeRequest {
    /// The compact JWS, as served at `/agents/{agentId}/badge`.
    badge: String,
}

/// A badge that verified.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct VerifiedBadge {
    valid: bool,
    agent_id: Uuid,
    /// The agent's DID (the credential subject).
    did: String,
    /// The node's DID.
    issuer: String,
    valid_from: String,
    valid_until: String,
    /// The A2A card the badge carries.
    #[schema(value_type = Object)]
    card: serde_json::Value,
}

fn badge_error(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
}

/// The VC members a badge check reads.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BadgeClaims {
    #[serde(rename = "@context")]
    context: Vec<String>,
    #[serde(rename = "type")]
    kind: Vec<String>,
    issuer: String,
    valid_from: String,
    valid_until: String,
    credential_subject: BadgeSubject,
}

#[derive(Deserialize)]
struct BadgeSubject {
    id: String,
    badge: String,
}

/// Verify an Agent Badge issued by this node: signature by a key of the node's DID document,
/// issuer, type, validity window, and that the subject agent still exists and is active.
#[utoipa::path(post, path = "/api/v1/badges/verify", tag = "DIDs", security(("bearer" = [])),
    request_body = VerifyBadgeRequest,
    responses((status = 200, body = VerifiedBadge), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 422, description = "BADGE_MALFORMED, BADGE_UNSUPPORTED_TYPE, BADGE_ISSUER_UNKNOWN, BADGE_KEY_UNKNOWN, BADGE_SIGNATURE_INVALID, BADGE_NOT_YET_VALID, BADGE_EXPIRED, BADGE_SUBJECT_UNKNOWN, BADGE_SUBJECT_DEACTIVATED, BADGE_SUBJECT_NOT_ACTIVE", body = ErrorBody)))]
pub(crate) async fn verify_badge(
    _p: Params,
    _caller: Caller,
    req: VerifyBadgeRequest,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let now = state.clock.now_ms();
    let jws = Compact::parse(req.badge.trim(), MAX_BADGE_LEN).ok_or_else(|| {
        badge_error(
            "BADGE_MALFORMED",
            "The badge is not a compact JWS (three base64url parts, JSON header).",
        )
    })?;
    let h = &jws.header;
    if !h
        .typ
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case("vc+jwt"))
        || h.crit.is_some()
    {
        return Err(badge_error(
            "BADGE_UNSUPPORTED_TYPE",
            "The JWS header must say typ vc+jwt and carry no crit.",
        )
        .into());
    }
    let node_did = state.settings.node_did.to_string();
    let kid = h
        .kid
        .as_deref()
        .and_then(|k| k.strip_prefix(node_did.as_str()))
        .and_then(|k| k.strip_prefix('#'))
        .ok_or_else(|| {
            badge_error(
                "BADGE_ISSUER_UNKNOWN",
                format!("The badge's kid is not a verification method of {node_did}."),
            )
        })?;
    let ring = state.keys();
    let (alg, verifier) = ring.verifier(kid, now).ok_or_else(|| {
        badge_error(
            "BADGE_KEY_UNKNOWN",
            "The badge was signed with a key this node no longer publishes.",
        )
    })?;
    if h.alg.as_deref() != Some(alg)
        || verifier
            .verify(jws.signing_input.as_bytes(), &jws.signature)
            .is_err()
    {
        return Err(badge_error(
            "BADGE_SIGNATURE_INVALID",
            "The badge's signature does not verify.",
        )
        .into());
    }
    let c: BadgeClaims = jws.payload_json().ok_or_else(|| {
        badge_error(
            "BADGE_MALFORMED",
            "The badge payload is not an Agent Badge credential.",
        )
    })?;
    if c.context.first().map(String::as_str) != Some(VC_CONTEXT)
        || !c.kind.iter().any(|t| t == "VerifiableCredential")
        || !c.kind.iter().any(|t| t == "AgentBadge")
    {
        return Err(badge_error(
            "BADGE_MALFORMED",
            "The credential is not a VCDM 2.0 AgentBadge.",
        )
        .into());
    }
    if c.issuer != node_did {
        return Err(badge_error(
            "BADGE_ISSUER_UNKNOWN",
            "The badge's issuer is not this node.",
        )
        .into());
    }
    let (Some(from), Some(until)) = (parse_rfc3339(&c.valid_from), parse_rfc3339(&c.valid_until))
    else {
        return Err(badge_error(
            "BADGE_MALFORMED",
            "validFrom and validUntil must be RFC 3339 times.",
        )
        .into());
    };
    if from > now + LEEWAY_MS {
        return Err(badge_error("BADGE_NOT_YET_VALID", "The badge is not valid yet.").into());
    }
    if until + LEEWAY_MS <= now {
        return Err(
            badge_error("BADGE_EXPIRED", "The badge has expired; fetch a fresh one.").into(),
        );
    }
    let agent_id = c
        .credential_subject
        .id
        .strip_prefix(&format!("{node_did}:agents:"))
        .and_then(|id| id.parse::<Uuid>().ok())
        .ok_or_else(|| {
            badge_error(
                "BADGE_SUBJECT_UNKNOWN",
                "The badge's subject is not an agent DID of this node.",
            )
        })?;
    let agent = state
        .store
        .get_agent(&agent_id)
        .map_err(ApiError::from)?
        .ok_or_else(|| {
            badge_error(
                "BADGE_SUBJECT_UNKNOWN",
                "The badge's subject agent does not exist.",
            )
        })?;
    if agent.status == AgentStatus::Decommissioned {
        return Err(badge_error(
            "BADGE_SUBJECT_DEACTIVATED",
            "The badge's subject agent was decommissioned; its DID is deactivated.",
        )
        .into());
    }
    let org_active = state
        .store
        .get_org(&agent.org_id)
        .map_err(ApiError::from)?
        .is_some_and(|o| o.status == OrgStatus::Active);
    if agent.status != AgentStatus::Active || !org_active {
        return Err(badge_error(
            "BADGE_SUBJECT_NOT_ACTIVE",
            "The badge's subject agent is suspended.",
        )
        .into());
    }
    let card: serde_json::Value = serde_json::from_str(&c.credential_subject.badge)
        .ok()
        .filter(serde_json::Value::is_object)
        .ok_or_else(|| {
            badge_error(
                "BADGE_MALFORMED",
                "credentialSubject.badge is not a JSON card.",
            )
        })?;
    Ok(warp::reply::json(&VerifiedBadge {
        valid: true,
        agent_id,
        did: c.credential_subject.id,
        issuer: c.issuer,
        valid_from: c.valid_from,
        valid_until: c.valid_until,
        card,
    })
    .into_response())
}
