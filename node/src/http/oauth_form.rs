//! The shape of OAuth requests (token, introspection, revocation): the parameters, form-encoded
//! as the RFCs require or JSON for the predecessor's clients; HTTP Basic client credentials
//! (RFC 6749 §2.3.1); and the `no-store` headers of every OAuth answer. Whether the credentials
//! authenticate anyone is `app::client_auth`'s decision.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Deserialize;
use warp::http::{header, HeaderValue};

use crate::app::client_auth::ClientCredentials;
use crate::app::OAuthKind;
use crate::http::error::OAuthError;

/// The parameters of the OAuth endpoints (form-encoded per the RFCs, or JSON).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub(crate) struct OAuthForm {
    pub(crate) grant_type: Option<String>,
    pub(crate) client_id: Option<String>,
    pub(crate) client_secret: Option<String>,
    pub(crate) client_assertion_type: Option<String>,
    pub(crate) client_assertion: Option<String>,
    pub(crate) scope: Option<String>,
    /// Introspection and revocation: the token in question. (`token_type_hint` may be sent and
    /// is ignored: this node issues one type of token.)
    pub(crate) token: Option<String>,
    /// Introspection and revocation: a string when given, and ignored.
    #[allow(dead_code)]
    #[schema(ignore)]
    pub(crate) token_type_hint: Option<String>,
    /// Token exchange (RFC 8693 §2.1): the partner-issued token and its type.
    pub(crate) subject_token: Option<String>,
    pub(crate) subject_token_type: Option<String>,
    /// Token exchange of a delegation token (RFC 8693 §2.1): the delegatee's own access token,
    /// and its type (`urn:ietf:params:oauth:token-type:access_token`).
    pub(crate) actor_token: Option<String>,
    pub(crate) actor_token_type: Option<String>,
    /// Token exchange: must be the access token type when given.
    pub(crate) requested_token_type: Option<String>,
    /// Token exchange: the agent to act as (id or DID), when several trust policies match.
    pub(crate) audience: Option<String>,
}

impl OAuthForm {
    /// Parses a form-encoded or JSON body.
    pub(crate) fn parse(content_type: Option<&str>, body: &[u8]) -> Result<OAuthForm, OAuthError> {
        let mime = content_type
            .and_then(|c| c.split(';').next())
            .map(|m| m.trim().to_ascii_lowercase());
        match mime.as_deref() {
            Some("application/x-www-form-urlencoded") => serde_urlencoded::from_bytes(body)
                .map_err(|e| {
                    OAuthError::new(
                        OAuthKind::InvalidRequest,
                        format!("malformed form body: {e}"),
                    )
                }),
            Some("application/json") => serde_json::from_slice(body).map_err(|e| {
                OAuthError::new(
                    OAuthKind::InvalidRequest,
                    format!("malformed JSON body: {e}"),
                )
            }),
            _ => Err(OAuthError::new(
                OAuthKind::InvalidRequest,
                "send the request as application/x-www-form-urlencoded (or application/json)",
            )),
        }
    }

    /// The client credentials the request presented: the `Authorization` header (which must be
    /// HTTP Basic, when present) and the form's client parameters.
    pub(crate) fn client_credentials(
        &self,
        authorization: Option<&str>,
    ) -> Result<ClientCredentials, OAuthError> {
        Ok(ClientCredentials {
            basic: authorization.map(parse_basic).transpose()?,
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            client_assertion_type: self.client_assertion_type.clone(),
            client_assertion: self.client_assertion.clone(),
        })
    }
}

/// The token of an `Authorization: Bearer` header, if that is what it is.
pub(crate) fn bearer_token(authorization: Option<&str>) -> Option<&str> {
    authorization.and_then(|h| {
        h.split_once(' ')
            .filter(|(s, _)| s.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
    })
}

/// RFC 6749 §2.3.1: `Basic base64(urlencode(client_id) ":" urlencode(client_secret))`.
fn parse_basic(header: &str) -> Result<(String, String), OAuthError> {
    let bad = || {
        let mut e = OAuthError::new(OAuthKind::InvalidClient, "malformed HTTP Basic credentials");
        e.basic_challenge = true;
        e
    };
    let (scheme, value) = header.split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::new(
            OAuthKind::InvalidRequest,
            "this endpoint takes HTTP Basic client authentication, not a bearer token",
        ));
    }
    let decoded = STANDARD.decode(value.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = text.split_once(':').ok_or_else(bad)?;
    Ok((
        form_decode(id).ok_or_else(bad)?,
        form_decode(secret).ok_or_else(bad)?,
    ))
}

fn form_decode(s: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&format!("v={s}")).ok()?;
    match pairs.as_slice() {
        [(_, v)] => Some(v.clone()),
        _ => None,
    }
}

/// An OAuth answer: never cached (RFC 6749 §5.1).
pub(crate) fn no_store(mut resp: warp::reply::Response) -> warp::reply::Response {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let h = format!("Basic {}", STANDARD.encode("my%20id:se%3Acret+x"));
        assert_eq!(
            parse_basic(&h).unwrap(),
            ("my id".to_string(), "se:cret x".to_string())
        );
        assert!(parse_basic("Basic !!!").unwrap_err().basic_challenge);
        assert_eq!(
            parse_basic("Bearer abc").unwrap_err().error,
            OAuthKind::InvalidRequest
        );
        assert_eq!(bearer_token(Some("bearer  t1 ")), Some("t1"));
        assert_eq!(bearer_token(Some("Basic x")), None);
        assert_eq!(bearer_token(None), None);
    }
}
