//! The shared extractors of the route table: path parameters of a template, the application
//! state, bearer authentication, bounded JSON and form bodies, query strings, the client's
//! address, conditional-request headers; and the small reply helpers every handler uses.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use crate::app::{AppState, ErrorCode};
use crate::http::error::ApiError;

pub(crate) use super::auth::bearer;
// What the accept loop puts on each request: the client's address and the body timeout.
pub(crate) use crate::server::accept::{BodyTimeout, ClientAddr, DEFAULT_BODY_TIMEOUT};

/// The path parameters of a matched route template (`{agentId}` ...), by name.
#[derive(Debug, Clone, Default)]
pub(crate) struct Params(Vec<(&'static str, String)>);

impl Params {
    /// Matches `path` against `template` segment by segment (`{name}` matches one non-empty
    /// segment); the parameters when it matches. A trailing slash is ignored.
    pub(crate) fn of(template: &'static str, path: &str) -> Option<Params> {
        let path = path
            .strip_suffix('/')
            .filter(|p| !p.is_empty())
            .unwrap_or(path);
        let (mut t, mut p) = (template.split('/'), path.split('/'));
        let mut out = Vec::new();
        loop {
            match (t.next(), p.next()) {
                (None, None) => return Some(Params(out)),
                (Some(t), Some(p)) => {
                    if let Some(name) = t.strip_prefix('{').and_then(|n| n.strip_suffix('}')) {
                        if p.is_empty() {
                            return None;
                        }
                        out.push((name, percent_decode(p)));
                    } else if t != p {
                        return None;
                    }
                }
                _ => return None,
            }
        }
    }

    /// The raw value of parameter `name` (empty if the template has none by that name).
    pub(crate) fn raw(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// Parameter `name` as a UUID (`400 INVALID_ID` otherwise).
    pub(crate) fn id(&self, name: &str) -> Result<uuid::Uuid, ApiError> {
        parse_id(name, self.raw(name))
    }
}

/// `%XX` escapes of a path segment decoded (an invalid escape is kept as it is).
fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Matches requests whose path fits `template` (else not found) and whose method is `method`
/// (else method not allowed); extracts the path parameters.
pub(crate) fn template(
    template: &'static str,
    method: &'static str,
) -> impl Filter<Extract = (Params,), Error = Rejection> + Clone {
    let method_filter = match method {
        // HEAD is GET without the body (RFC 9110 §9.3.2); `routes` drops the body.
        "GET" => warp::get().or(warp::head()).unify().boxed(),
        "POST" => warp::post().boxed(),
        "PATCH" => warp::patch().boxed(),
        "DELETE" => warp::delete().boxed(),
        "PUT" => warp::put().boxed(),
        _ => warp::head().boxed(),
    };
    warp::path::full()
        .and_then(move |full: warp::path::FullPath| {
            std::future::ready(
                Params::of(template, full.as_str()).ok_or_else(warp::reject::not_found),
            )
        })
        .and(method_filter)
}

/// `201 Created` with a JSON body.
pub(crate) fn created<T: serde::Serialize>(body: &T) -> warp::reply::Response {
    warp::reply::with_status(warp::reply::json(body), warp::http::StatusCode::CREATED)
        .into_response()
}

/// Largest request body any route accepts.
pub(crate) const MAX_BODY: u64 = 64 * 1024;

/// The client's socket address, for per-address throttling and the audit log: warp's
/// `remote()` when warp set it (`warp::test` requests), else the [`ClientAddr`] of our accept
/// loop. Routes use this, never `warp::addr::remote()` alone, which is `None` in our loop.
pub(crate) fn client_addr(
) -> impl Filter<Extract = (Option<SocketAddr>,), Error = Infallible> + Clone {
    warp::addr::remote()
        .and(warp::ext::optional::<ClientAddr>())
        .map(|warp_addr: Option<SocketAddr>, ours: Option<ClientAddr>| {
            warp_addr.or(ours.map(|ClientAddr(a)| a))
        })
}

/// Injects the application state.
pub(crate) fn with_state(
    state: AppState,
) -> impl Filter<Extract = (AppState,), Error = Infallible> + Clone {
    warp::any().map(move || state.clone())
}

/// A JSON request body: size-limited, `application/json`, unknown fields named in the error.
pub(crate) fn json_body<T: DeserializeOwned + Send>(
) -> impl Filter<Extract = (T,), Error = Rejection> + Clone {
    bounded_body().and_then(|ct: Option<String>, bytes: Bytes| async move {
        parse_json(ct.as_deref(), &bytes).map_err(Rejection::from)
    })
}

/// Like [`json_body`], but an empty body means `T::default()`.
pub(crate) fn optional_json_body<T: DeserializeOwned + Send + Default>(
) -> impl Filter<Extract = (T,), Error = Rejection> + Clone {
    bounded_body().and_then(|ct: Option<String>, bytes: Bytes| async move {
        if bytes.is_empty() {
            return Ok(T::default());
        }
        // `null` is the documented "no body" too.
        parse_json::<Option<T>>(ct.as_deref(), &bytes)
            .map(Option::unwrap_or_default)
            .map_err(Rejection::from)
    })
}

/// The content type and the body, refused from the headers alone — before a byte of the body is
/// read — when it is declared larger than [`MAX_BODY`] (413). A chunked body (no length) is
/// read up to the same cap and refused with 413 at the first byte beyond it. A request with
/// neither `Content-Length` nor `Transfer-Encoding` has an empty body.
///
/// The body must arrive completely within the request's [`BodyTimeout`], else 408: this is the
/// only place the node reads request bodies, so a client dripping one byte at a time holds a
/// handler (and its connection, which the accept loop does not evict while a handler runs) for
/// that long at most. A body the client abandons halfway gets 400.
pub(crate) fn bounded_body(
) -> impl Filter<Extract = (Option<String>, Bytes), Error = Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and_then(|len: Option<u64>| async move {
            match len {
                Some(l) if l > MAX_BODY => Err(Rejection::from(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    ErrorCode::PayloadTooLarge,
                    format!(
                        "The request body is larger than the {MAX_BODY} bytes this route accepts."
                    ),
                ))),
                _ => Ok(()),
            }
        })
        .untuple_one()
        .and(warp::header::optional::<String>("content-type"))
        .and(warp::ext::optional::<BodyTimeout>())
        .and(warp::body::stream())
        .and_then(
            |ct: Option<String>, timeout: Option<BodyTimeout>, body| async move {
                let limit = timeout.map_or(DEFAULT_BODY_TIMEOUT, |BodyTimeout(d)| d);
                match tokio::time::timeout(limit, collect_body(body)).await {
                    Ok(Ok(bytes)) => Ok((ct, bytes)),
                    Ok(Err(e)) => Err(Rejection::from(e)),
                    Err(_) => Err(Rejection::from(ApiError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        ErrorCode::RequestTimeout,
                        format!(
                            "The request body did not arrive within {} s; send it at once after the headers.",
                            limit.as_secs_f64()
                        ),
                    ))),
                }
            },
        )
        .untuple_one()
}

/// Reads a whole body, at most [`MAX_BODY`] bytes of it (the declared length was checked, but a
/// body with both `Content-Length` and `Transfer-Encoding` follows the latter).
async fn collect_body<S, B>(body: S) -> Result<Bytes, ApiError>
where
    S: warp::Stream<Item = Result<B, warp::Error>>,
    B: bytes::Buf,
{
    let mut body = std::pin::pin!(body);
    let mut out = bytes::BytesMut::new();
    while let Some(chunk) = std::future::poll_fn(|cx| body.as_mut().poll_next(cx)).await {
        let mut chunk = chunk.map_err(|e| {
            // The client hung up or broke the framing: it will hardly read the answer.
            tracing::debug!(error = %e, "reading a request body failed");
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::BodyIncomplete,
                "The request body ended before it was complete.",
            )
        })?;
        if (out.len() + chunk.remaining()) as u64 > MAX_BODY {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::PayloadTooLarge,
                format!("The request body is larger than the {MAX_BODY} bytes this route accepts."),
            ));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            out.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(out.freeze())
}

pub(crate) fn parse_json<T: DeserializeOwned>(
    ct: Option<&str>,
    bytes: &[u8],
) -> Result<T, ApiError> {
    let is_json = ct
        .and_then(|c| c.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            "Send the body as JSON with Content-Type: application/json.",
        ));
    }
    serde_json::from_slice(bytes)
        .or_else(|e| {
            // JSON Schema counts 61500.0 as an integer: retry with integer-valued numbers made
            // integers (only after a failure, so the common body is parsed once).
            if e.classify() == serde_json::error::Category::Data
                && bytes.iter().any(|b| matches!(b, b'.' | b'e' | b'E'))
            {
                let mut v: serde_json::Value = serde_json::from_slice(bytes).map_err(|_| e)?;
                integral_numbers(&mut v);
                serde_json::from_value(v)
            } else {
                Err(e)
            }
        })
        .map_err(|e| {
            use serde_json::error::Category;
            let msg = e.to_string();
            match e.classify() {
                Category::Data if msg.starts_with("unknown field") => {
                    let field = msg.split('`').nth(1).unwrap_or("").to_string();
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        ErrorCode::UnknownField,
                        format!("Unknown field `{field}` in the request body."),
                    )
                    .with_details(serde_json::json!({ "field": field }))
                }
                Category::Data => ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::ValidationError,
                    format!("The request body does not match the expected shape: {msg}."),
                ),
                _ => ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::MalformedJson,
                    format!("The request body is not valid JSON: {msg}."),
                ),
            }
        })
}

/// Every number of `v` that is a float with an integer value (and exact as an `f64`) becomes
/// that integer.
fn integral_numbers(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64() {
                const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
                if f.fract() == 0.0 && f.abs() <= EXACT {
                    *v = if f < 0.0 {
                        Value::from(f as i64)
                    } else {
                        Value::from(f as u64)
                    };
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(integral_numbers),
        Value::Object(m) => m.values_mut().for_each(integral_numbers),
        _ => {}
    }
}

/// A cacheable representation: `ETag`, `Cache-Control: public, max-age`, and `304 Not Modified`
/// when `If-None-Match` names the ETag (weak comparison, RFC 9110 §13.1.2).
pub(crate) fn conditional(
    body: Bytes,
    etag: &str,
    content_type: &'static str,
    if_none_match: Option<&str>,
    max_age_secs: u64,
) -> warp::reply::Response {
    let matches = |t: &str| {
        let t = t.trim();
        t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag
    };
    let mut resp = if if_none_match.is_some_and(|v| v.split(',').any(matches)) {
        let mut r = warp::reply::Response::new(Bytes::new().into());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let mut r = warp::reply::Response::new(body.into());
        r.headers_mut().insert(
            warp::http::header::CONTENT_TYPE,
            warp::http::HeaderValue::from_static(content_type),
        );
        r
    };
    let h = resp.headers_mut();
    if let Ok(v) = warp::http::HeaderValue::from_str(etag) {
        h.insert(warp::http::header::ETAG, v);
    }
    if let Ok(v) = warp::http::HeaderValue::from_str(&format!("public, max-age={max_age_secs}")) {
        h.insert(warp::http::header::CACHE_CONTROL, v);
    }
    resp
}

/// Parses a path id.
pub(crate) fn parse_id(name: &str, raw: &str) -> Result<uuid::Uuid, ApiError> {
    // Only the canonical hyphenated form: one spelling per id keeps ETags and logs consistent.
    if raw.len() != 36 {
        return Err(ApiError::invalid_id(name));
    }
    raw.parse().map_err(|_| ApiError::invalid_id(name))
}

/// The state, as an extractor of the route table.
pub(crate) fn state(
    s: &AppState,
) -> impl Filter<Extract = (AppState,), Error = Infallible> + Clone {
    with_state(s.clone())
}

/// Bearer authentication, as an extractor of the route table.
pub(crate) fn auth(
    s: &AppState,
) -> impl Filter<Extract = (crate::app::Caller,), Error = Rejection> + Clone {
    bearer(s.clone())
}

/// The active bearer token itself (`auth::bearer_token`), as an extractor of the route table.
pub(crate) fn token_auth(
    s: &AppState,
) -> impl Filter<Extract = (crate::http::auth::TokenAuth,), Error = Rejection> + Clone {
    crate::http::auth::bearer_token(s.clone())
}

/// A JSON body, as an extractor of the route table.
pub(crate) fn json<T: DeserializeOwned + Send>(
    _: &AppState,
) -> impl Filter<Extract = (T,), Error = Rejection> + Clone {
    json_body()
}

/// An optional JSON body (empty: `T::default()`), as an extractor of the route table.
pub(crate) fn opt_json<T: DeserializeOwned + Send + Default>(
    _: &AppState,
) -> impl Filter<Extract = (T,), Error = Rejection> + Clone {
    optional_json_body()
}

/// The query string, as an extractor of the route table.
pub(crate) fn query<T: DeserializeOwned + Send + 'static>(
    _: &AppState,
) -> impl Filter<Extract = (T,), Error = Rejection> + Clone {
    warp::query::<T>()
}

/// The client's address, as an extractor of the route table.
pub(crate) fn addr(
    _: &AppState,
) -> impl Filter<Extract = (Option<SocketAddr>,), Error = Infallible> + Clone {
    client_addr()
}

/// `If-None-Match`, as an extractor of the route table.
pub(crate) fn inm(
    _: &AppState,
) -> impl Filter<Extract = (Option<String>,), Error = Rejection> + Clone {
    warp::header::optional::<String>("if-none-match")
}

/// `Accept`, as an extractor of the route table.
pub(crate) fn accept(
    _: &AppState,
) -> impl Filter<Extract = (Option<String>,), Error = Rejection> + Clone {
    warp::header::optional::<String>("accept")
}

/// The request path as sent, escapes and all (for a parameter whose escapes matter, such as a
/// DID whose `%3A` is part of it), as an extractor of the route table.
pub(crate) fn raw_path(
    _: &AppState,
) -> impl Filter<Extract = (warp::path::FullPath,), Error = Infallible> + Clone {
    warp::path::full()
}

/// `Authorization` (any scheme), as an extractor of the route table.
pub(crate) fn authorization(
    _: &AppState,
) -> impl Filter<Extract = (Option<String>,), Error = Rejection> + Clone {
    warp::header::optional::<String>("authorization")
}

/// `Stripe-Signature`, as an extractor of the route table (the billing webhook).
pub(crate) fn stripe_signature(
    _: &AppState,
) -> impl Filter<Extract = (Option<String>,), Error = Rejection> + Clone {
    warp::header::optional::<String>("stripe-signature")
}

/// The content type and the raw body, as an extractor of the route table.
pub(crate) fn body(
    _: &AppState,
) -> impl Filter<Extract = (Option<String>, Bytes), Error = Rejection> + Clone {
    bounded_body()
}

/// The content type and the raw body of a request that is not an OAuth form (the Stripe
/// webhook, which is authenticated by its signature over these exact bytes): the same bounds as
/// [`body`], documented with the API's own error shape.
pub(crate) fn raw_body(
    _: &AppState,
) -> impl Filter<Extract = (Option<String>, Bytes), Error = Rejection> + Clone {
    bounded_body()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn client_addr_comes_from_warp_or_from_our_accept_loop() {
        let filter = client_addr();
        let warp_set: SocketAddr = "192.0.2.1:1000".parse().unwrap();
        let ours: SocketAddr = "198.51.100.2:2000".parse().unwrap();
        let mut req = warp::test::request().remote_addr(warp_set);
        req = req.extension(ClientAddr(ours));
        assert_eq!(req.filter(&filter).await.unwrap(), Some(warp_set));
        let req = warp::test::request().extension(ClientAddr(ours));
        assert_eq!(req.filter(&filter).await.unwrap(), Some(ours));
        assert_eq!(warp::test::request().filter(&filter).await.unwrap(), None);
    }

    #[test]
    fn templates_match_segment_by_segment() {
        let p = Params::of(
            "/api/v1/agents/{agentId}/keys/{kid}",
            "/api/v1/agents/a-1/keys/k%2B1",
        )
        .unwrap();
        assert_eq!(p.raw("agentId"), "a-1");
        assert_eq!(p.raw("kid"), "k+1");
        assert!(Params::of("/api/v1/agents/{agentId}", "/api/v1/agents/").is_none());
        assert!(Params::of("/api/v1/agents/{agentId}", "/api/v1/agents/x/y").is_none());
        assert!(Params::of("/health", "/health/").is_some());
        assert!(Params::of("/health", "/healthz").is_none());
        assert!(Params::of("/", "/").is_some());
    }
}
