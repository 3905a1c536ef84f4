//! HTTP: the warp filters of every route, the shared filters (state, JSON bodies, bearer auth),
//! the route table, and request metrics.

pub(crate) mod agents;
mod audit;
mod auth;
mod client_auth;
mod did;
mod exchange;
mod federation;
mod health;
mod keys;
mod openapi;
mod orgs;
mod tokens;
mod wellknown;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use crate::error::ApiError;
use crate::state::AppState;

pub(crate) use auth::Caller;
#[cfg(feature = "gossip")]
pub(crate) use federation::key_source as partner_key_source;
pub(crate) use federation::PartnerCache;

/// `201 Created` with a JSON body.
pub(crate) fn created<T: serde::Serialize>(body: &T) -> warp::reply::Response {
    warp::reply::with_status(warp::reply::json(body), warp::http::StatusCode::CREATED)
        .into_response()
}

/// Largest request body any route accepts.
pub(crate) const MAX_BODY: u64 = 64 * 1024;

/// Every route the node serves: method and path template as in `/openapi.json`. Request metrics
/// are labelled with these templates, and tests check that this table, the router and the
/// OpenAPI document agree.
pub(crate) const ROUTES: &[(&str, &str)] = &[
    ("GET", "/health"),
    ("GET", "/health/detailed"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/.well-known/jwks.json"),
    ("GET", "/.well-known/openid-configuration"),
    ("GET", "/.well-known/oauth-authorization-server"),
    ("GET", "/.well-known/did.json"),
    ("GET", "/did.json"),
    ("GET", "/agents/{agentId}/did.json"),
    ("GET", "/agents/{agentId}/.well-known/agent-card.json"),
    ("GET", "/agents/{agentId}/oasf.json"),
    ("GET", "/agents/{agentId}/badge"),
    ("GET", "/agent-info"),
    ("GET", "/oauth2/authorize"),
    ("POST", "/api/v1/token"),
    ("POST", "/oauth2/token"),
    ("POST", "/api/v1/token/introspect"),
    ("POST", "/api/v1/token/revoke"),
    ("GET", "/api/v1/keys"),
    ("POST", "/api/v1/keys/rotate"),
    ("POST", "/api/v1/organizations"),
    ("GET", "/api/v1/organizations"),
    ("GET", "/api/v1/organizations/{orgId}"),
    ("PATCH", "/api/v1/organizations/{orgId}"),
    ("DELETE", "/api/v1/organizations/{orgId}"),
    ("POST", "/api/v1/agents"),
    ("GET", "/api/v1/agents"),
    ("GET", "/api/v1/agents/{agentId}"),
    ("PATCH", "/api/v1/agents/{agentId}"),
    ("DELETE", "/api/v1/agents/{agentId}"),
    ("POST", "/api/v1/agents/{agentId}/credentials"),
    ("GET", "/api/v1/agents/{agentId}/credentials"),
    (
        "POST",
        "/api/v1/agents/{agentId}/credentials/{credentialId}/rotate",
    ),
    (
        "DELETE",
        "/api/v1/agents/{agentId}/credentials/{credentialId}",
    ),
    ("POST", "/api/v1/agents/{agentId}/keys"),
    ("GET", "/api/v1/agents/{agentId}/keys"),
    ("DELETE", "/api/v1/agents/{agentId}/keys/{kid}"),
    ("GET", "/api/v1/agents/{agentId}/did"),
    ("GET", "/api/v1/agents/{agentId}/did/resolve"),
    ("GET", "/api/v1/agents/{agentId}/did/card"),
    ("POST", "/api/v1/badges/verify"),
    ("POST", "/api/v1/federation/trust"),
    ("GET", "/api/v1/federation/partners"),
    ("GET", "/api/v1/federation/partners/{id}"),
    ("PATCH", "/api/v1/federation/partners/{id}"),
    ("DELETE", "/api/v1/federation/partners/{id}"),
    ("POST", "/api/v1/federation/verify"),
    ("GET", "/api/v1/federation/gossip"),
    ("POST", "/api/v1/oidc/trust-policies"),
    ("GET", "/api/v1/oidc/trust-policies"),
    ("GET", "/api/v1/oidc/trust-policies/{id}"),
    ("DELETE", "/api/v1/oidc/trust-policies/{id}"),
    ("POST", "/api/v1/oidc/token"),
    ("GET", "/api/v1/audit"),
    ("GET", "/api/v1/audit/verify"),
];

/// The route template a request path falls under, for metrics labels (bounded cardinality).
pub(crate) fn route_label(method: &str, path: &str) -> &'static str {
    // Runs on every request: compare segment by segment without allocating.
    let path = path.trim_end_matches('/');
    let matches = |template: &str| {
        let (mut t, mut p) = (template.split('/'), path.split('/'));
        loop {
            match (t.next(), p.next()) {
                (None, None) => return true,
                (Some(t), Some(p)) if t.starts_with('{') || t == p => {}
                _ => return false,
            }
        }
    };
    ROUTES
        .iter()
        .find(|(m, template)| *m == method && matches(template))
        .map_or("unmatched", |(_, template)| template)
}

/// The peer address of a connection, put on each of its requests by the node's accept loop
/// (`crate::accept`), because warp's own remote-address extension is private to warp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientAddr(pub(crate) SocketAddr);

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

/// How long a request body may take to arrive once a handler starts reading it
/// (`--body-timeout`), put on each request by the node's accept loop (`crate::accept`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BodyTimeout(pub(crate) Duration);

/// The body timeout of requests that carry no [`BodyTimeout`] (`warp::test` requests), and the
/// default of `--body-timeout`.
pub(crate) const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

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
        parse_json(ct.as_deref(), &bytes).map_err(Rejection::from)
    })
}

/// The content type and the body, refused from the headers alone — before a byte of the body is
/// read — when it is declared larger than [`MAX_BODY`] (413) or streamed without a length (411).
/// A request with neither `Content-Length` nor `Transfer-Encoding` has an empty body.
///
/// The body must arrive completely within the request's [`BodyTimeout`], else 408: this is the
/// only place the node reads request bodies, so a client dripping one byte at a time holds a
/// handler (and its connection, which the accept loop does not evict while a handler runs) for
/// that long at most. A body the client abandons halfway gets 400.
pub(crate) fn bounded_body(
) -> impl Filter<Extract = (Option<String>, Bytes), Error = Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and(warp::header::optional::<String>("transfer-encoding"))
        .and_then(|len: Option<u64>, te: Option<String>| async move {
            match (len, te) {
                (Some(l), _) if l > MAX_BODY => Err(Rejection::from(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "PAYLOAD_TOO_LARGE",
                    format!(
                        "The request body is larger than the {MAX_BODY} bytes this route accepts."
                    ),
                ))),
                (None, Some(_)) => Err(Rejection::from(ApiError::new(
                    StatusCode::LENGTH_REQUIRED,
                    "LENGTH_REQUIRED",
                    "Send a Content-Length header with the request body.",
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
                        "REQUEST_TIMEOUT",
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
                "BODY_INCOMPLETE",
                "The request body ended before it was complete.",
            )
        })?;
        if (out.len() + chunk.remaining()) as u64 > MAX_BODY {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
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
            "UNSUPPORTED_MEDIA_TYPE",
            "Send the body as JSON with Content-Type: application/json.",
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        let msg = e.to_string();
        match e.classify() {
            Category::Data if msg.starts_with("unknown field") => {
                let field = msg.split('`').nth(1).unwrap_or("").to_string();
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "UNKNOWN_FIELD",
                    format!("Unknown field `{field}` in the request body."),
                )
                .with_details(serde_json::json!({ "field": field }))
            }
            Category::Data => ApiError::new(
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
                format!("The request body does not match the expected shape: {msg}."),
            ),
            _ => ApiError::new(
                StatusCode::BAD_REQUEST,
                "MALFORMED_JSON",
                format!("The request body is not valid JSON: {msg}."),
            ),
        }
    })
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

/// Every route, with the rejection handler and request metrics.
pub(crate) fn routes(
    state: AppState,
) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    let metrics = state.metrics.clone();
    // Public documents first: they are the most requested routes.
    // Each module's routes are boxed: one dynamic call per module instead of a filter type so
    // deep that the compiler's recursion limit (and build time) suffer.
    fn boxed<F, R>(f: F) -> BoxedFilter<(warp::reply::Response,)>
    where
        F: Filter<Extract = (R,), Error = Rejection> + Clone + Send + Sync + 'static,
        R: Reply,
    {
        f.map(|r: R| r.into_response()).boxed()
    }
    let api = boxed(did::routes(state.clone()))
        .or(boxed(health::routes(state.clone())))
        .unify()
        .or(boxed(wellknown::routes(state.clone())))
        .unify()
        .or(boxed(tokens::routes(state.clone())))
        .unify()
        .or(boxed(orgs::routes(state.clone())))
        .unify()
        .or(boxed(agents::routes(state.clone())))
        .unify()
        .or(boxed(keys::routes(state.clone())))
        .unify()
        .or(boxed(audit::routes(state.clone())))
        .unify()
        .or(boxed(federation::routes(state.clone())))
        .unify()
        .or(boxed(exchange::routes(state.clone())))
        .unify()
        .or(boxed(openapi::routes()))
        .unify();
    api.recover(crate::error::handle_rejection)
        .with(warp::log::custom(move |info| {
            let route = route_label(info.method().as_str(), info.path());
            metrics.observe(
                info.method().as_str(),
                route,
                info.status().as_u16(),
                info.elapsed(),
            );
            tracing::debug!(
                method = %info.method(),
                path = info.path(),
                status = info.status().as_u16(),
                micros = info.elapsed().as_micros() as u64,
                "request"
            );
        }))
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
    fn route_labels_use_templates() {
        assert_eq!(
            route_label("GET", "/api/v1/agents/0b0d1c5e-58f4-4a5e-9a34-8d2f0c1b2a3d"),
            "/api/v1/agents/{agentId}"
        );
        assert_eq!(route_label("GET", "/nope"), "unmatched");
        assert_eq!(route_label("PUT", "/api/v1/agents"), "unmatched");
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A real state over a redb store in a temporary directory, for filter tests.

    use std::sync::Arc;

    use crate::server::{open_state, ServeConfig};
    use crate::state::AppState;

    pub(crate) const ISSUER: &str = "http://127.0.0.1:8080";

    pub(crate) async fn state(dir: &std::path::Path) -> AppState {
        let cfg = ServeConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            public_url: Some(ISSUER.into()),
            tls: None,
            data_dir: dir.to_path_buf(),
            store: storage::EngineKind::Redb,
            token_ttl_secs: 3600,
            signing_alg: "ES256".into(),
            key_grace_secs: None,
            token_rate_limit: 0,
            oasf_schema: None,
            allow_private_fetch: false,
            allow_http_fetch: false,
            gossip: Default::default(),
            connections: Default::default(),
        };
        let did = did_method::DidWeb::from_base_url(ISSUER, &[]).unwrap();
        open_state(
            &cfg,
            ISSUER.into(),
            did,
            Arc::new(crate::SystemClock),
            std::time::Instant::now(),
        )
        .await
        .unwrap()
    }
}

#[cfg(test)]
mod route_tests {
    use super::*;

    /// The router serves exactly what ROUTES (and so the OpenAPI document) lists.
    #[tokio::test]
    async fn every_listed_route_is_routed() {
        let dir = tempfile::tempdir().unwrap();
        let filter = routes(testing::state(dir.path()).await);
        let id = "0b0d1c5e-58f4-4a5e-9a34-8d2f0c1b2a3d";
        for (method, template) in ROUTES {
            let path: String = template
                .split('/')
                .map(|s| if s.starts_with('{') { id } else { s })
                .collect::<Vec<_>>()
                .join("/");
            let resp = warp::test::request()
                .method(method)
                .path(&path)
                .reply(&filter)
                .await;
            let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap_or_default();
            assert_ne!(
                body["code"], "ROUTE_NOT_FOUND",
                "{method} {path} is listed but not routed"
            );
            assert_ne!(
                resp.status(),
                405,
                "{method} {path} is listed but not routed"
            );
        }
        for (method, path) in [
            ("GET", "/api/v1/nope"),
            ("PUT", "/api/v1/agents"),
            ("GET", "/"),
        ] {
            let resp = warp::test::request()
                .method(method)
                .path(path)
                .reply(&filter)
                .await;
            assert!(
                resp.status() == 404 || resp.status() == 405,
                "{method} {path}: {}",
                resp.status()
            );
        }
    }
}
