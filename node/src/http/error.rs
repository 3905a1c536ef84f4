//! Every HTTP error is made here: [`ApiError`] (the `{"code","message","details"}` envelope),
//! [`OAuthError`] (RFC 6749 §5.2 shape, for the OAuth endpoints), [`http_of`] — the one place
//! that chooses the status and the OAuth error name of a [`DomainError`] — and
//! [`handle_rejection`], the one rejection handler that turns everything else warp can reject
//! with into a stable 4xx code.

use std::convert::Infallible;

use serde::Serialize;
use serde_json::Value;
use storage::StoreError;

use crate::app::{DomainError, ErrorCode, OAuthKind};
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Rejection, Reply};

/// An API error: status, stable code, human message, optional details.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
    pub(crate) details: Option<Box<Value>>,
    /// Seconds to wait, sent as `Retry-After` (rate limiting).
    pub(crate) retry_after: Option<u64>,
    /// `X-RateLimit-*` headers (tier limits).
    pub(crate) rate: Option<crate::app::usage::RateInfo>,
}

impl warp::reject::Reject for ApiError {}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
            retry_after: None,
            rate: None,
        }
    }

    pub(crate) fn with_details(mut self, details: Value) -> Self {
        self.details = Some(Box::new(details));
        self
    }

    pub(crate) fn invalid_id(name: &str) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidId,
            format!("{name} must be a UUID (like 0b0d1c5e-58f4-4a5e-9a34-8d2f0c1b2a3d)."),
        )
    }

    pub(crate) fn internal() -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::InternalServerError,
            "An unexpected error occurred. Please try again later.",
        )
    }

    pub(crate) fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Envelope<'a> {
            code: &'a str,
            message: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            details: Option<&'a Value>,
        }
        let body = Envelope {
            code: self.code.as_str(),
            message: &self.message,
            details: self.details.as_deref(),
        };
        let mut resp =
            warp::reply::with_status(warp::reply::json(&body), self.status).into_response();
        if let Some(v) = self
            .retry_after
            .and_then(|s| HeaderValue::from_str(&s.to_string()).ok())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if let Some(r) = self.rate {
            rate_headers(resp.headers_mut(), &r);
        }
        resp
    }
}

/// How a [`DomainError`] is answered over HTTP: its status, its code, and the RFC 6749 error
/// name an OAuth endpoint answers it with. The only place that maps domain errors to statuses.
pub(crate) struct HttpOf {
    /// The status at an OAuth endpoint (RFC 6749 §5.2).
    pub(crate) status: StatusCode,
    pub(crate) oauth: OAuthKind,
    /// The status of the error envelope (`ApiError`), where it differs: a refused grant at the
    /// predecessor's JSON exchange route (`POST /api/v1/oidc/token`) is `401`.
    pub(crate) api_status: StatusCode,
}

/// See [`HttpOf`].
pub(crate) fn http_of(e: &DomainError) -> HttpOf {
    let (status, oauth) = match e {
        DomainError::Invalid { .. } => (StatusCode::BAD_REQUEST, OAuthKind::InvalidRequest),
        DomainError::Unauthenticated { .. } => (StatusCode::UNAUTHORIZED, OAuthKind::InvalidClient),
        DomainError::Forbidden { .. } => (StatusCode::FORBIDDEN, OAuthKind::UnauthorizedClient),
        DomainError::NotFound { .. } => (StatusCode::NOT_FOUND, OAuthKind::InvalidRequest),
        DomainError::Conflict { .. } => (StatusCode::CONFLICT, OAuthKind::InvalidRequest),
        DomainError::Gone { .. } => (StatusCode::GONE, OAuthKind::InvalidRequest),
        DomainError::Unprocessable { .. } => {
            (StatusCode::UNPROCESSABLE_ENTITY, OAuthKind::InvalidRequest)
        }
        DomainError::RateLimited { .. } | DomainError::Limited { .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            OAuthKind::TemporarilyUnavailable,
        ),
        DomainError::OAuth {
            kind, retry_after, ..
        } => {
            let status = match kind {
                _ if retry_after.is_some() => StatusCode::TOO_MANY_REQUESTS,
                OAuthKind::InvalidClient => StatusCode::UNAUTHORIZED,
                OAuthKind::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
                OAuthKind::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::BAD_REQUEST,
            };
            (status, *kind)
        }
        DomainError::Unavailable { .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            OAuthKind::TemporarilyUnavailable,
        ),
        DomainError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, OAuthKind::ServerError),
    };
    let api_status = match e {
        DomainError::OAuth {
            kind: OAuthKind::InvalidGrant,
            retry_after: None,
            ..
        } => StatusCode::UNAUTHORIZED,
        _ => status,
    };
    HttpOf {
        status,
        oauth,
        api_status,
    }
}

fn retry_after_of(e: &DomainError) -> Option<u64> {
    match e {
        DomainError::RateLimited { retry_after, .. } | DomainError::Limited { retry_after, .. } => {
            Some(*retry_after)
        }
        DomainError::OAuth { retry_after, .. } => *retry_after,
        _ => None,
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        let h = http_of(&e);
        ApiError {
            status: h.api_status,
            code: e.code(),
            message: e.to_string(),
            details: e.details().cloned().map(Box::new),
            retry_after: retry_after_of(&e),
            rate: match &e {
                DomainError::Limited { rate, .. } => *rate,
                _ => None,
            },
        }
    }
}

/// Sets `X-RateLimit-Limit`, `-Remaining` and `-Reset` (seconds since the epoch).
pub(crate) fn rate_headers(h: &mut warp::http::HeaderMap, r: &crate::app::usage::RateInfo) {
    for (name, v) in [
        ("x-ratelimit-limit", r.limit.to_string()),
        ("x-ratelimit-remaining", r.remaining.to_string()),
        ("x-ratelimit-reset", r.reset.to_string()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(header::HeaderName::from_static(name), v);
        }
    }
}

impl From<DomainError> for OAuthError {
    fn from(e: DomainError) -> Self {
        let h = http_of(&e);
        OAuthError {
            status: h.status,
            error: h.oauth,
            description: e.to_string(),
            basic_challenge: matches!(e, DomainError::OAuth { basic: true, .. }),
            retry_after: retry_after_of(&e),
        }
    }
}

impl From<DomainError> for Rejection {
    fn from(e: DomainError) -> Self {
        Rejection::from(ApiError::from(e))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        // Internals are logged, never sent.
        tracing::error!(error = %e, "store error");
        match e {
            StoreError::Closed => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::ShuttingDown,
                "The node is shutting down; retry against another node or after restart.",
            ),
            _ => ApiError::internal(),
        }
    }
}

/// An RFC 6749 §5.2 error of the token endpoint.
#[derive(Debug, Clone)]
pub(crate) struct OAuthError {
    pub(crate) status: StatusCode,
    pub(crate) error: OAuthKind,
    pub(crate) description: String,
    /// Set when the client tried HTTP Basic: RFC 6749 asks for a matching WWW-Authenticate.
    pub(crate) basic_challenge: bool,
    /// Seconds to wait, sent as `Retry-After` (rate limiting).
    pub(crate) retry_after: Option<u64>,
}

impl warp::reject::Reject for OAuthError {}

impl OAuthError {
    pub(crate) fn new(error: OAuthKind, description: impl Into<String>) -> Self {
        let status = match error {
            OAuthKind::InvalidClient => StatusCode::UNAUTHORIZED,
            OAuthKind::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            OAuthKind::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        OAuthError {
            status,
            error,
            description: description.into(),
            basic_challenge: false,
            retry_after: None,
        }
    }

    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.error.as_str(), "error_description": self.description });
        let mut resp =
            warp::reply::with_status(warp::reply::json(&body), self.status).into_response();
        let h = resp.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                h.insert(header::RETRY_AFTER, v);
            }
        }
        if self.basic_challenge && self.status == StatusCode::UNAUTHORIZED {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"agentidp\""),
            );
        }
        resp
    }
}

impl From<StoreError> for OAuthError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store error at the token endpoint");
        OAuthError::new(
            OAuthKind::ServerError,
            "The token could not be issued; try again.",
        )
    }
}

/// The one rejection handler.
///
/// `find` looks through every rejection warp combined, not only the one it prefers, so specific
/// rejections (size, length, query, headers) are checked before "wrong method": otherwise a
/// sibling route with another method on the same path would mask a 413 as a 405.
pub(crate) async fn handle_rejection(err: Rejection) -> Result<Response, Infallible> {
    use warp::reject as r;
    let resp = if let Some(e) = err.find::<ApiError>() {
        if e.status == StatusCode::UNAUTHORIZED {
            let mut resp = e.clone().into_response();
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"agentidp\""),
            );
            resp
        } else {
            e.clone().into_response()
        }
    } else if let Some(e) = err.find::<OAuthError>() {
        e.clone().into_response()
    } else if err.find::<r::PayloadTooLarge>().is_some() {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            format!(
                "The request body is larger than the {} bytes this route accepts.",
                crate::http::MAX_BODY
            ),
        )
        .into_response()
    } else if err.find::<r::LengthRequired>().is_some() {
        ApiError::new(
            StatusCode::LENGTH_REQUIRED,
            ErrorCode::LengthRequired,
            "Send a Content-Length header with the request body.",
        )
        .into_response()
    } else if let Some(e) = err.find::<r::InvalidQuery>() {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidQuery,
            format!("Invalid query string: {e}."),
        )
        .into_response()
    } else if let Some(e) = err.find::<r::InvalidHeader>() {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidHeader,
            format!("Invalid header {}.", e.name()),
        )
        .into_response()
    } else if let Some(e) = err.find::<r::MissingHeader>() {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::MissingHeader,
            format!("Missing header {}.", e.name()),
        )
        .into_response()
    } else if err.find::<r::UnsupportedMediaType>().is_some() {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            "Send the body as application/json.",
        )
        .into_response()
    } else if err.find::<r::MethodNotAllowed>().is_some() {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::MethodNotAllowed,
            "This route does not accept that HTTP method; see /openapi.json.",
        )
        .into_response()
    } else if err.is_not_found() {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::RouteNotFound,
            "No such route; see /openapi.json for the API.",
        )
        .into_response()
    } else {
        tracing::error!(rejection = ?err, "unhandled rejection");
        ApiError::internal().into_response()
    };
    Ok(resp)
}
