//! `GET /1.0/identifiers/{did}`: the W3C DID Resolution HTTP(S) binding (also the Universal
//! Resolver's driver interface), public and CORS-open. The DID (or DID URL) is the last path
//! segment, as written or percent-encoded whole (`did%3Aweb%3A...`); a fragment travels as
//! `%23`, DID parameters (`service`, `relativeRef`) as the query.
//!
//! `Accept` picks the function: `application/did-resolution` (the default, also `*/*`) or
//! `application/ld+json;profile="https://w3id.org/did-resolution"` → `resolve`, the resolution
//! result; `application/did+json` or `application/did+ld+json` → `resolveRepresentation`, the
//! document itself in that media type. Errors are resolution results whatever was asked, with
//! the binding's statuses ([`status_of`]). What is resolved, and how, is
//! [`crate::app::resolver`]'s.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use did_method::{
    DidUrl, DidUrlError, DID_JSON_CONTENT_TYPE, DID_LD_JSON_CONTENT_TYPE, DID_RESOLUTION,
    RESOLUTION_CONTENT_TYPE,
};
use serde::Deserialize;
use warp::http::{header, HeaderValue, StatusCode};
use warp::Rejection;

use crate::app::resolver::{self, ResolveError, Resolved};
use crate::app::AppState;
use crate::http::extract::Params;

/// How long a client may keep a successful answer (as the `did.json` routes).
const MAX_AGE: &str = "public, max-age=60";

/// DID parameters this resolver understands (DID Core §3.2.1).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub(crate) struct DidParameters {
    /// Dereference to this service's endpoint (the fragment of its id): `303 See Other`.
    service: Option<String>,
    /// With `service`: a relative reference appended to the endpoint URL.
    relative_ref: Option<String>,
}

/// What the client asked for: the resolution result in one of its two media types, or the
/// document's representation in one of the two DID document types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wanted {
    Result(&'static str),
    Representation(&'static str),
}

/// Picks from `Accept` (RFC 9110 §12.5.1: by `q`, then order); `None` when nothing fits.
fn negotiate(accept: Option<&str>) -> Option<Wanted> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Some(Wanted::Result(DID_RESOLUTION));
    };
    let mut ranges: Vec<(f32, Wanted)> = Vec::new();
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let essence = parts.next().unwrap_or_default().to_ascii_lowercase();
        let (mut q, mut profile) = (1.0f32, None);
        for p in parts {
            if let Some((k, v)) = p.split_once('=') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "q" => q = v.trim().parse().unwrap_or(0.0),
                    "profile" => profile = Some(v.trim().trim_matches('"').to_string()),
                    _ => {}
                }
            }
        }
        let wanted = match essence.as_str() {
            "application/did-resolution" | "*/*" | "application/*" => {
                Wanted::Result(DID_RESOLUTION)
            }
            "application/ld+json"
                if profile.as_deref().is_some_and(|p| {
                    p.split(' ').any(|p| p == "https://w3id.org/did-resolution")
                }) =>
            {
                Wanted::Result(RESOLUTION_CONTENT_TYPE)
            }
            "application/did+json" => Wanted::Representation(DID_JSON_CONTENT_TYPE),
            "application/did+ld+json" => Wanted::Representation(DID_LD_JSON_CONTENT_TYPE),
            _ => continue,
        };
        if q > 0.0 {
            ranges.push((q, wanted));
        }
    }
    // Stable: equal weights keep the client's order.
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0));
    ranges.first().map(|(_, w)| *w)
}

/// The HTTP(S) binding's status for each error (DID Resolution, HTTP(S) binding).
fn status_of(e: &ResolveError) -> StatusCode {
    match e {
        ResolveError::InvalidDid(_) | ResolveError::InvalidDidUrl(_) => StatusCode::BAD_REQUEST,
        ResolveError::NotFound(_) => StatusCode::NOT_FOUND,
        ResolveError::RepresentationNotSupported => StatusCode::NOT_ACCEPTABLE,
        ResolveError::MethodNotSupported(_) => StatusCode::NOT_IMPLEMENTED,
        ResolveError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
        ResolveError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> warp::reply::Response {
    let mut resp = warp::reply::Response::new(body.into());
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    if status == StatusCode::OK {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static(MAX_AGE));
    }
    resp
}

/// An error as a resolution result, in the result media type the client asked for (or
/// `application/did-resolution`).
fn error_reply(state: &AppState, wanted: Option<Wanted>, e: ResolveError) -> warp::reply::Response {
    let ct = match wanted {
        Some(Wanted::Result(ct)) => ct,
        _ => DID_RESOLUTION,
    };
    let mut resp = reply(
        status_of(&e),
        ct,
        resolver::result_body(&Err(e.clone()), state.clock.now_ms(), &state.settings),
    );
    if let ResolveError::Throttled(secs) = e {
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    resp
}

/// The DID URL in the path segment: as written (`did:web:h%3A8443#k` arrives with `%23`), or
/// percent-encoded whole (`did%3Aweb%3Ah%253A8443`).
fn did_url_of(raw: &str) -> Result<DidUrl, ResolveError> {
    let text = if raw.len() > 6 && raw[..6].eq_ignore_ascii_case("did%3a") {
        percent_decode(raw).map(std::borrow::Cow::Owned)
    } else if raw.contains("%23") {
        Some(std::borrow::Cow::Owned(raw.replace("%23", "#")))
    } else {
        Some(std::borrow::Cow::Borrowed(raw))
    };
    let text = text.ok_or_else(|| ResolveError::InvalidDid("Bad percent-encoding.".into()))?;
    DidUrl::parse(&text).map_err(|e| match e {
        DidUrlError::InvalidDidUrl(m) => {
            ResolveError::InvalidDidUrl(format!("{text:?} is not a DID URL: {m}."))
        }
        e => ResolveError::InvalidDid(format!("{text:?} is {e}.")),
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// W3C DID Resolution and DID URL dereferencing (HTTP(S) binding).
#[utoipa::path(get, path = "/1.0/identifiers/{did}", tag = "DIDs", operation_id = "resolveIdentifier",
    params(("did" = String, Path, description = "A DID or DID URL (did:web, did:key, did:jwk), as written or percent-encoded whole; a fragment as %23"),
        DidParameters),
    responses(
        (status = 200, description = "The resolution result (resolve), the DID document (resolveRepresentation) or, for a DID URL with a fragment, the dereferenced resource",
            content((Object = "application/did-resolution"), (Object = "application/ld+json;profile=\"https://w3id.org/did-resolution\""), (Object = "application/did+json"), (Object = "application/did+ld+json"))),
        (status = 303, description = "`?service=`: the service endpoint, in Location"),
        (status = 400, description = "invalidDid / invalidDidUrl", content((Object = "application/did-resolution"))),
        (status = 404, description = "notFound", content((Object = "application/did-resolution"))),
        (status = 406, description = "representationNotSupported", content((Object = "application/did-resolution"))),
        (status = 410, description = "The DID is deactivated: the result has didDocumentMetadata.deactivated true", content((Object = "application/did-resolution"))),
        (status = 429, description = "Too many resolutions needing a fetch from this address (Retry-After)", content((Object = "application/did-resolution"))),
        (status = 500, description = "internalError", content((Object = "application/did-resolution"))),
        (status = 501, description = "methodNotSupported", content((Object = "application/did-resolution")))))]
pub(crate) async fn resolve(
    _: Params,
    path: warp::path::FullPath,
    accept: Option<String>,
    query: BTreeMap<String, String>,
    addr: Option<SocketAddr>,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let wanted = negotiate(accept.as_deref());
    let Some(wanted) = wanted else {
        return Ok(error_reply(
            &state,
            None,
            ResolveError::RepresentationNotSupported,
        ));
    };
    // The segment as sent: the router's parameters are decoded once, which would turn
    // `did:web:h%3A8443` (the DID as written) into another DID.
    let raw = path.as_str().rsplit('/').next().unwrap_or_default();
    let url = match did_url_of(raw) {
        Ok(u) => u,
        Err(e) => return Ok(error_reply(&state, Some(wanted), e)),
    };
    if !url.path.is_empty() || url.query.is_some() {
        return Ok(error_reply(&state, Some(wanted), ResolveError::InvalidDidUrl(
            "This resolver dereferences a DID, a fragment (as %23) or ?service=; not DID URL paths or queries inside the path segment.".into(),
        )));
    }
    if let Some(k) = query
        .keys()
        .find(|k| !matches!(k.as_str(), "service" | "relativeRef"))
    {
        return Ok(error_reply(
            &state,
            Some(wanted),
            ResolveError::InvalidDidUrl(format!(
                "DID parameter {k:?} is not supported here (supported: service, relativeRef)."
            )),
        ));
    }
    let out = resolver::resolve(&state, &url, addr.map(|a| a.ip())).await;
    let r = match out {
        Ok(r) => r,
        Err(e) => return Ok(error_reply(&state, Some(wanted), e)),
    };
    if let Some(service) = query.get("service") {
        return Ok(
            match resolver::service_endpoint(
                &r,
                &url.did,
                service,
                query.get("relativeRef").map(String::as_str),
            ) {
                Ok(location) => see_other(&location),
                Err(e) => error_reply(&state, Some(wanted), e),
            },
        );
    }
    if let Some(frag) = &url.fragment {
        return Ok(dereference(&state, wanted, &r, &url.did, frag));
    }
    let status = if r.metadata.deactivated {
        StatusCode::GONE
    } else {
        StatusCode::OK
    };
    Ok(match wanted {
        Wanted::Result(ct) => reply(
            status,
            ct,
            resolver::result_body(&Ok(r), state.clock.now_ms(), &state.settings),
        ),
        // resolveRepresentation: the representation, its media type in Content-Type (DID Core
        // §7.1.2 contentType). A deactivated DID answers its result, which says so.
        // JSON-LD needs an `@context` (DID Core §6.3.1); a remote document without one has
        // only its plain JSON representation.
        Wanted::Representation(DID_LD_JSON_CONTENT_TYPE)
            if !r.document.windows(10).any(|w| w == b"\"@context\"") =>
        {
            error_reply(&state, None, ResolveError::RepresentationNotSupported)
        }
        Wanted::Representation(ct) if status == StatusCode::OK => {
            reply(status, ct, r.document.to_vec())
        }
        Wanted::Representation(_) => reply(
            status,
            DID_RESOLUTION,
            resolver::result_body(&Ok(r), state.clock.now_ms(), &state.settings),
        ),
    })
}

fn see_other(location: &str) -> warp::reply::Response {
    let mut resp = warp::reply::Response::new(Vec::new().into());
    *resp.status_mut() = StatusCode::SEE_OTHER;
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    resp
}

/// A fragment: the verification method or service (DID Core §7.2.2), bare for a
/// representation, wrapped in a dereferencing result otherwise.
fn dereference(
    state: &AppState,
    wanted: Wanted,
    r: &Resolved,
    did: &str,
    frag: &str,
) -> warp::reply::Response {
    let out = resolver::fragment(r, did, frag);
    match (out, wanted) {
        (Err(e), w) => error_reply(state, Some(w), e),
        (Ok(v), Wanted::Representation(ct)) => reply(
            StatusCode::OK,
            ct,
            serde_json::to_vec(&v).unwrap_or_default(),
        ),
        (Ok(v), Wanted::Result(ct)) => reply(
            StatusCode::OK,
            ct,
            resolver::dereferencing_body(&Ok((v, r)), DID_JSON_CONTENT_TYPE),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_picks_the_function_and_media_type() {
        use Wanted::*;
        assert_eq!(negotiate(None), Some(Result(DID_RESOLUTION)));
        assert_eq!(negotiate(Some("*/*")), Some(Result(DID_RESOLUTION)));
        assert_eq!(
            negotiate(Some(
                "application/ld+json;profile=\"https://w3id.org/did-resolution\""
            )),
            Some(Result(RESOLUTION_CONTENT_TYPE))
        );
        assert_eq!(
            negotiate(Some("application/did+json")),
            Some(Representation(DID_JSON_CONTENT_TYPE))
        );
        assert_eq!(
            negotiate(Some("application/did+json;q=0.5, application/did+ld+json")),
            Some(Representation(DID_LD_JSON_CONTENT_TYPE))
        );
        assert_eq!(
            negotiate(Some("application/ld+json")),
            None,
            "JSON-LD without the profile"
        );
        assert_eq!(negotiate(Some("text/html")), None);
        assert_eq!(negotiate(Some("application/did+json;q=0")), None);
    }

    #[test]
    fn the_did_may_be_written_or_encoded_whole() {
        let u = did_url_of("did:web:localhost%3A8443:agents:x%23k1").unwrap();
        assert_eq!(u.did, "did:web:localhost%3A8443:agents:x");
        assert_eq!(u.fragment.as_deref(), Some("k1"));
        let u = did_url_of("did%3Aweb%3Alocalhost%253A8443").unwrap();
        assert_eq!(u.did, "did:web:localhost%3A8443");
        assert!(matches!(
            did_url_of("not-a-did"),
            Err(ResolveError::InvalidDid(_))
        ));
        assert!(matches!(
            did_url_of("did%3Aweb%3Ax%zz"),
            Err(ResolveError::InvalidDid(_))
        ));
    }
}
