//! `/agents/{agentId}/...`: what the node publishes about each agent, for anyone to fetch
//! without credentials — its did:web document, its A2A agent card, its OASF record and its
//! Agent Badge. All CORS-open; documents, cards and records with ETag and `Cache-Control`.
//! What is shown of whom is decided in [`crate::app::dids`]; this module renders it, and holds
//! the reply helpers the node's own public documents share ([`crate::http::wellknown`],
//! [`crate::http::agent_did`]).

use did_method::DID_JSON_CONTENT_TYPE;
use uuid::Uuid;
use warp::http::{header, HeaderValue, StatusCode};
use warp::Rejection;

use crate::app::artifacts::Rendered;
use crate::app::dids::{self, DID_LD_JSON};
use crate::app::{AppState, ErrorCode, Outcome};
use crate::http::error::ApiError;
use crate::http::extract::{conditional, parse_id, Params};
use crate::model::ErrorBody;

/// How long resolvers and caches may keep a document or card. Short, because removing a
/// compromised key must take effect quickly; ETags make revalidation cheap.
const MAX_AGE_SECS: u64 = 60;

/// Adds `Access-Control-Allow-Origin: *`: documents and cards are public, read by browsers too.
pub(super) fn cors(mut resp: warp::reply::Response) -> warp::reply::Response {
    resp.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    resp
}

/// A public, cacheable representation (ETag, `Cache-Control`, 304), CORS-open.
fn public(r: &Rendered, content_type: &'static str, inm: Option<&str>) -> warp::reply::Response {
    cors(conditional(
        r.body.clone(),
        &r.etag,
        content_type,
        inm,
        MAX_AGE_SECS,
    ))
}

/// A DID document in the media type the client asked for, varying on `Accept`.
pub(super) fn document(
    r: &Rendered,
    accept: Option<&str>,
    inm: Option<&str>,
) -> warp::reply::Response {
    let mut resp = public(r, document_type(accept), inm);
    resp.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept"));
    resp
}

/// The reply of a public route: `ok` rendered, or the error's envelope — CORS-open either way,
/// so a browser can read why.
pub(super) fn public_reply<T>(
    out: Outcome<T>,
    ok: impl FnOnce(T) -> warp::reply::Response,
) -> warp::reply::Response {
    match out {
        Ok(v) => ok(v),
        Err(e) => cors(ApiError::from(e).into_response()),
    }
}

/// The reply of a public route about agent `{agentId}`: what `serve` gives for it, rendered by
/// `ok` — or the error (`400 INVALID_ID` for a malformed id), CORS-open.
pub(super) fn about_agent<T>(
    p: &Params,
    serve: impl FnOnce(&Uuid) -> Outcome<T>,
    ok: impl FnOnce(T) -> warp::reply::Response,
) -> warp::reply::Response {
    match parse_id("agentId", p.raw("agentId")) {
        Ok(id) => public_reply(serve(&id), ok),
        Err(e) => cors(e.into_response()),
    }
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

/// An agent's DID document (`did:web:<host>:agents:<uuid>`).
#[utoipa::path(get, operation_id = "getAgentDidDocument", path = "/agents/{agentId}/did.json", tag = "DIDs",
    params(("agentId" = Uuid, Path)),
    responses((status = 200, description = "DID document (application/did+ld+json when the Accept header asks for it)", content((Object = "application/did+json"), (Object = "application/did+ld+json"))), (status = 304, description = "Not modified"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 410, description = "AGENT_DECOMMISSIONED: the DID is deactivated", body = ErrorBody)))]
pub(crate) async fn agent_document(
    p: Params,
    accept: Option<String>,
    inm: Option<String>,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    Ok(about_agent(
        &p,
        |id| dids::agent_document(&state, id),
        |r| document(&r, accept.as_deref(), inm.as_deref()),
    ))
}

/// An agent's A2A agent card (v1.0), signed with a detached JWS over its A2A canonical form
/// (A2A §8.4.1: members at default values left out, then JCS). Only agents with at least one
/// endpoint and one skill have one (A2A requires both collections non-empty).
#[utoipa::path(get, operation_id = "getAgentCard", path = "/agents/{agentId}/.well-known/agent-card.json", tag = "DIDs",
    params(("agentId" = Uuid, Path)),
    responses((status = 200, description = "A2A AgentCard with `signatures`", body = Object), (status = 304, description = "Not modified"),
        (status = 403, description = "AGENT_NOT_ACTIVE", body = ErrorBody),
        (status = 404, description = "AGENT_NOT_FOUND, AGENT_CARD_UNAVAILABLE (no endpoint or no skill)", body = ErrorBody),
        (status = 410, body = ErrorBody)))]
pub(crate) async fn agent_card(
    p: Params,
    inm: Option<String>,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    Ok(about_agent(
        &p,
        |id| dids::agent_card(&state, id),
        |r| public(&r, "application/json", inm.as_deref()),
    ))
}

/// An agent's OASF record (schema 1.0.0) with its A2A card in module `integration/a2a`.
#[utoipa::path(get, operation_id = "getAgentOasfRecord", path = "/agents/{agentId}/oasf.json", tag = "DIDs",
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
    Ok(about_agent(
        &p,
        |id| dids::oasf_record(&state, id),
        |r| public(&r, "application/json", inm.as_deref()),
    ))
}

/// An agent's Agent Badge: a VCDM 2.0 credential (`AgentBadge`, subject = the agent's DID,
/// `badge` = its signed A2A card as a JSON string) as a compact JWS (`typ: vc+jwt`) signed by
/// the node, whose `kid` is a verification method of the node's DID document. Valid 24 hours.
/// The JWT claims `iss`/`sub`/`nbf`/`exp`/`jti` mirror the credential; `credentialStatus` names
/// the agent's bit of one of the node's status lists (`/status/{list}`).
#[utoipa::path(get, operation_id = "getAgentBadge", path = "/agents/{agentId}/badge", tag = "DIDs",
    params(("agentId" = Uuid, Path)),
    responses((status = 200, description = "Compact JWS", body = String, content_type = "application/vc+jwt"),
        (status = 403, body = ErrorBody),
        (status = 404, description = "AGENT_NOT_FOUND, AGENT_CARD_UNAVAILABLE (the badge carries the card)", body = ErrorBody),
        (status = 410, body = ErrorBody)))]
pub(crate) async fn agent_badge(
    p: Params,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    Ok(about_agent(&p, |id| dids::agent_badge(&state, id), vc_jwt))
}

/// The node's W3C Bitstring Status List credential number `{list}` (purpose `suspension`) as a
/// compact JWS (`typ: vc+jwt`) signed like the badges. Every badge's `credentialStatus` names a
/// list and a bit in it; the bit is set while that agent or its organization is suspended or the
/// agent is decommissioned, clear while it is active. One list covers 131072 agents, so fetching
/// it reveals nothing about which agent a verifier checks.
#[utoipa::path(get, path = "/status/{list}", tag = "DIDs", operation_id = "getStatusList",
    params(("list" = u64, Path, description = "List number (the agent's position divided by 131072)", minimum = 0)),
    responses((status = 200, description = "BitstringStatusListCredential, compact JWS", body = String, content_type = "application/vc+jwt"),
        (status = 400, description = "INVALID_ID: the list number is not a non-negative integer", body = ErrorBody),
        (status = 404, description = "STATUS_LIST_NOT_FOUND", body = ErrorBody)))]
pub(crate) async fn status_list(
    p: Params,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let raw = p.raw("list");
    // Decimal digits only, one spelling per list (no sign, no leading zeros).
    let list = match raw.parse::<u64>() {
        Ok(n)
            if raw.bytes().all(|b| b.is_ascii_digit()) && (raw == "0" || !raw.starts_with('0')) =>
        {
            n
        }
        _ => {
            return Ok(cors(
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::InvalidId,
                    "list must be a non-negative decimal integer without leading zeros, like 0.",
                )
                .into_response(),
            ))
        }
    };
    Ok(public_reply(dids::status_list(&state, list), vc_jwt))
}

/// A credential as `application/vc+jwt`, CORS-open. Badges are re-issued hourly and status
/// lists flip with the agents' standing: `no-cache`, always revalidate.
fn vc_jwt(r: Rendered) -> warp::reply::Response {
    let mut resp = warp::reply::Response::new(r.body.into());
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vc+jwt"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    cors(resp)
}

#[cfg(test)]
mod tests {
    use storage::AgentStatus;
    use warp::http::StatusCode;

    use crate::app::artifacts::fixtures;
    use crate::app::testing;

    async fn get<F>(
        filter: &F,
        path: &str,
        headers: &[(&str, &str)],
    ) -> warp::http::Response<bytes::Bytes>
    where
        F: warp::Filter + 'static,
        F::Extract: warp::Reply + Send,
    {
        let mut r = warp::test::request().method("GET").path(path);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.reply(filter).await
    }

    fn h<'a>(r: &'a warp::http::Response<bytes::Bytes>, name: &str) -> &'a str {
        r.headers()
            .get(name)
            .map_or("", |v| v.to_str().unwrap_or(""))
    }

    /// The public routes' HTTP contract: content types, CORS, ETag, `Cache-Control`, 304,
    /// `Vary`, and CORS-open errors.
    #[tokio::test]
    async fn public_routes_are_cors_open_cacheable_and_negotiated() {
        let dir = tempfile::tempdir().unwrap();
        let state = testing::state(dir.path()).await;
        let org = fixtures::org(&state).await;
        let (agent, _) = fixtures::agent(&state, &org.id, true).await;
        let filter = crate::http::routes(state.clone());
        let base = format!("/agents/{}", agent.id);

        let doc = get(&filter, &format!("{base}/did.json"), &[]).await;
        assert_eq!(doc.status(), StatusCode::OK);
        assert_eq!(h(&doc, "content-type"), "application/did+json");
        assert_eq!(h(&doc, "access-control-allow-origin"), "*");
        assert_eq!(h(&doc, "cache-control"), "public, max-age=60");
        assert_eq!(h(&doc, "vary"), "Accept");
        let etag = h(&doc, "etag").to_string();
        assert!(etag.starts_with('"'));
        let ld = get(
            &filter,
            &format!("{base}/did.json"),
            &[("accept", "application/did+ld+json;q=1, */*")],
        )
        .await;
        assert_eq!(h(&ld, "content-type"), "application/did+ld+json");
        let again = get(
            &filter,
            &format!("{base}/did.json"),
            &[("if-none-match", &etag)],
        )
        .await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert!(again.body().is_empty());
        assert_eq!(h(&again, "etag"), etag);

        for route in [".well-known/agent-card.json", "oasf.json"] {
            let r = get(&filter, &format!("{base}/{route}"), &[]).await;
            assert_eq!(r.status(), StatusCode::OK, "{route}");
            assert_eq!(h(&r, "content-type"), "application/json", "{route}");
            assert_eq!(h(&r, "access-control-allow-origin"), "*", "{route}");
            assert!(!h(&r, "etag").is_empty(), "{route}");
        }
        let badge = get(&filter, &format!("{base}/badge"), &[]).await;
        assert_eq!(badge.status(), StatusCode::OK);
        assert_eq!(h(&badge, "content-type"), "application/vc+jwt");
        assert_eq!(h(&badge, "cache-control"), "no-cache");
        assert_eq!(h(&badge, "access-control-allow-origin"), "*");

        // Errors are CORS-open too, so a browser can read why.
        let bad = get(&filter, "/agents/not-a-uuid/did.json", &[]).await;
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
        assert_eq!(h(&bad, "access-control-allow-origin"), "*");
        fixtures::set_agent_status(&state, &agent.id, AgentStatus::Suspended).await;
        let withheld = get(&filter, &format!("{base}/badge"), &[]).await;
        assert_eq!(withheld.status(), StatusCode::FORBIDDEN);
        assert_eq!(h(&withheld, "access-control-allow-origin"), "*");
        fixtures::set_agent_status(&state, &agent.id, AgentStatus::Decommissioned).await;
        let gone = get(&filter, &format!("{base}/did.json"), &[]).await;
        assert_eq!(gone.status(), StatusCode::GONE);
        assert_eq!(h(&gone, "access-control-allow-origin"), "*");
        let body: serde_json::Value = serde_json::from_slice(gone.body()).unwrap();
        assert_eq!(body["code"], "AGENT_DECOMMISSIONED");
        let legacy = get(&filter, &format!("/api/v1/agents/{}/did", agent.id), &[]).await;
        assert_eq!(legacy.status(), StatusCode::GONE);
        assert_eq!(h(&legacy, "access-control-allow-origin"), "*");

        // The node's own document.
        let node = get(&filter, "/.well-known/did.json", &[]).await;
        assert_eq!(node.status(), StatusCode::OK);
        assert_eq!(h(&node, "content-type"), "application/did+json");
        assert_eq!(h(&node, "vary"), "Accept");
        let not_here = get(&filter, "/did.json", &[]).await;
        assert_eq!(not_here.status(), StatusCode::NOT_FOUND);
        assert_eq!(h(&not_here, "access-control-allow-origin"), "*");
    }
}
