//! Where a partner's keys come from: a JWKS URL, an issuer's discovery document, or a
//! `did:web` DID document. Every fetch goes through the [`Fetcher`].
//!
//! - [`KeySource::Jwks`]: the JWKS at the URL (RFC 7517 §5).
//! - [`KeySource::Discovery`]: `{issuer}/.well-known/openid-configuration` (OpenID Connect
//!   Discovery 1.0 §4), parsed as `openidconnect`'s `CoreProviderMetadata`; when that is
//!   missing or unusable, the RFC 8414 authorization server metadata
//!   (`/.well-known/oauth-authorization-server` inserted before the issuer's path, RFC 8414
//!   §3.1, and for issuers with a path also appended to it, as many servers do). The
//!   document's `issuer` must equal the configured issuer exactly (OIDC Discovery §4.3,
//!   RFC 8414 §3.3); its `jwks_uri` is then fetched.
//! - [`KeySource::DidWeb`]: the DID document at the did:web URL (did:web §3.3 Read); its `id`
//!   must be the DID (DID Core §5.1.1), and its keys are the `publicKeyJwk`s of its
//!   verification methods (DID Core §5.2), with `kid` the method id's fragment when the JWK
//!   has none. A token may name such a key by fragment or by full DID URL.

use std::fmt;

use did_method::DidWeb;
use openidconnect::core::CoreProviderMetadata;
use openidconnect::{IssuerUrl, JsonWebKeySetUrl};
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use crate::guard::{FetchError, Fetcher};
use crate::keys::{JwksError, KeySet, Skipped};

const JWKS_ACCEPT: &str = "application/jwk-set+json, application/json";
const JSON_ACCEPT: &str = "application/json";
const DID_ACCEPT: &str = "application/did+json, application/json";

/// Where a partner's keys come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeySource {
    /// A JWKS URL (`jwks_uri`).
    Jwks(Url),
    /// An issuer whose discovery document names its `jwks_uri`; the exact issuer string.
    Discovery(String),
    /// A `did:web` DID whose document holds the keys.
    DidWeb(DidWeb),
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Jwks(u) => write!(f, "jwks {u}"),
            KeySource::Discovery(i) => write!(f, "discovery of {i}"),
            KeySource::DidWeb(d) => write!(f, "{d}"),
        }
    }
}

/// Keys as fetched from a source.
#[derive(Debug)]
pub struct FetchedKeys {
    /// The usable keys (never empty).
    pub keys: KeySet,
    /// Entries that were left out, with reasons.
    pub skipped: Vec<Skipped>,
    /// `Cache-Control: max-age` of the key document, if it had one.
    pub max_age: Option<u64>,
    /// The URL the keys were read from (the JWKS URL, the discovered `jwks_uri`, or the DID
    /// document URL).
    pub keys_url: String,
}

/// Why a key source could not be read. [`SourceError::code`] is stable; for fetch failures it
/// is the [`FetchError::code`] (`PRIVATE_ADDRESS`, `TIMEOUT`, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The source itself is unusable (an issuer that is not an http(s) URL, ...).
    #[error("unusable key source: {0}")]
    BadSource(String),
    /// Fetching a document failed or was refused.
    #[error("fetching {url}: {error}")]
    Fetch {
        /// The URL.
        url: String,
        /// Why.
        error: FetchError,
    },
    /// The JWKS could not be read.
    #[error("{url}: {error}")]
    Jwks {
        /// The JWKS URL.
        url: String,
        /// Why.
        error: JwksError,
    },
    /// The discovery document is not valid provider metadata.
    #[error("{url} is not valid provider metadata: {reason}")]
    Discovery {
        /// The document URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The discovery document names another issuer.
    #[error("the discovery document names issuer {found:?}, expected {expected:?}")]
    IssuerMismatch {
        /// The configured issuer.
        expected: String,
        /// What the document says.
        found: String,
    },
    /// The DID document is not a usable DID document.
    #[error("{url} is not a usable DID document: {reason}")]
    DidDocument {
        /// The document URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The DID document describes another DID.
    #[error("the DID document is for {found:?}, expected {expected:?}")]
    DidMismatch {
        /// The configured DID.
        expected: String,
        /// The document's `id`.
        found: String,
    },
    /// The document was read, but none of its keys is usable.
    #[error("no usable key ({skipped} skipped)")]
    NoUsableKeys {
        /// How many entries were skipped.
        skipped: usize,
    },
}

impl SourceError {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            SourceError::BadSource(_) => "BAD_KEY_SOURCE",
            SourceError::Fetch { error, .. } => error.code(),
            SourceError::Jwks { .. } => "JWKS_INVALID",
            SourceError::Discovery { .. } => "DISCOVERY_INVALID",
            SourceError::IssuerMismatch { .. } => "DISCOVERY_ISSUER_MISMATCH",
            SourceError::DidDocument { .. } => "DID_DOCUMENT_INVALID",
            SourceError::DidMismatch { .. } => "DID_MISMATCH",
            SourceError::NoUsableKeys { .. } => "NO_USABLE_KEYS",
        }
    }
}

impl KeySource {
    /// Reads the keys (see the module docs).
    pub async fn fetch(&self, fetcher: &Fetcher) -> Result<FetchedKeys, SourceError> {
        match self {
            KeySource::Jwks(url) => fetch_jwks(fetcher, url.as_str()).await,
            KeySource::Discovery(issuer) => {
                let jwks_uri = discover(fetcher, issuer).await?;
                fetch_jwks(fetcher, &jwks_uri).await
            }
            KeySource::DidWeb(did) => fetch_did_keys(fetcher, did).await,
        }
    }
}

async fn get(fetcher: &Fetcher, url: &str, accept: &str) -> Result<crate::Fetched, SourceError> {
    fetcher
        .get(url, accept)
        .await
        .map_err(|error| SourceError::Fetch {
            url: url.to_string(),
            error,
        })
}

fn usable(
    keys: KeySet,
    skipped: Vec<Skipped>,
    max_age: Option<u64>,
    keys_url: &str,
) -> Result<FetchedKeys, SourceError> {
    if keys.is_empty() {
        return Err(SourceError::NoUsableKeys {
            skipped: skipped.len(),
        });
    }
    Ok(FetchedKeys {
        keys,
        skipped,
        max_age,
        keys_url: keys_url.to_string(),
    })
}

async fn fetch_jwks(fetcher: &Fetcher, url: &str) -> Result<FetchedKeys, SourceError> {
    let got = get(fetcher, url, JWKS_ACCEPT).await?;
    let (keys, skipped) = KeySet::from_jwks(&got.body).map_err(|error| SourceError::Jwks {
        url: url.to_string(),
        error,
    })?;
    usable(keys, skipped, got.max_age, url)
}

/// The metadata documents to try for `issuer`, in order, and whether each is OIDC Discovery
/// (else RFC 8414).
fn discovery_urls(issuer: &str) -> Result<Vec<(String, bool)>, SourceError> {
    let url = Url::parse(issuer)
        .map_err(|e| SourceError::BadSource(format!("issuer {issuer:?} is not a URL: {e}")))?;
    // OIDC Discovery §2 / RFC 8414 §2: https, no query, no fragment.
    if !matches!(url.scheme(), "https" | "http")
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(SourceError::BadSource(format!(
            "issuer {issuer:?} must be an https URL without query or fragment"
        )));
    }
    let trimmed = issuer.trim_end_matches('/');
    let mut urls = vec![(format!("{trimmed}/.well-known/openid-configuration"), true)];
    let path = url.path().trim_end_matches('/');
    let mut origin = url.clone();
    origin.set_path("");
    let inserted = format!(
        "{}/.well-known/oauth-authorization-server{path}",
        origin.as_str().trim_end_matches('/')
    );
    let appended = format!("{trimmed}/.well-known/oauth-authorization-server");
    urls.push((inserted.clone(), false));
    if appended != inserted {
        urls.push((appended, false));
    }
    Ok(urls)
}

/// RFC 8414 metadata: only what we need, typed with openidconnect's URL types. (Its
/// `CoreProviderMetadata` requires OIDC-only members that plain OAuth servers omit.)
#[derive(Deserialize)]
struct AuthorizationServerMetadata {
    issuer: IssuerUrl,
    jwks_uri: Option<JsonWebKeySetUrl>,
}

/// The issuer and `jwks_uri` a metadata document states.
fn parse_metadata(body: &[u8], oidc: bool) -> Result<(String, Option<String>), String> {
    if oidc {
        let m: CoreProviderMetadata = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        Ok((m.issuer().to_string(), Some(m.jwks_uri().to_string())))
    } else {
        let m: AuthorizationServerMetadata =
            serde_json::from_slice(body).map_err(|e| e.to_string())?;
        Ok((m.issuer.to_string(), m.jwks_uri.map(|u| u.to_string())))
    }
}

async fn discover_one(
    fetcher: &Fetcher,
    issuer: &str,
    url: &str,
    oidc: bool,
) -> Result<String, SourceError> {
    let got = get(fetcher, url, JSON_ACCEPT).await?;
    let bad = |reason: String| SourceError::Discovery {
        url: url.to_string(),
        reason,
    };
    let (found, jwks_uri) = parse_metadata(&got.body, oidc).map_err(bad)?;
    // Exact string comparison: no trailing-slash or case normalization (OIDC Discovery §4.3).
    if found != issuer {
        return Err(SourceError::IssuerMismatch {
            expected: issuer.to_string(),
            found,
        });
    }
    jwks_uri.ok_or_else(|| bad("it has no jwks_uri".to_string()))
}

/// Whether the next metadata location is worth trying after `e`: only when this one was
/// missing or not valid metadata. Refusals, timeouts and an issuer mismatch end discovery.
fn try_next(e: &SourceError) -> bool {
    matches!(
        e,
        SourceError::Fetch {
            error: FetchError::BadStatus { .. },
            ..
        } | SourceError::Discovery { .. }
    )
}

/// The `jwks_uri` of `issuer`, from its metadata.
async fn discover(fetcher: &Fetcher, issuer: &str) -> Result<String, SourceError> {
    let mut errors = Vec::new();
    for (url, oidc) in discovery_urls(issuer)? {
        match discover_one(fetcher, issuer, &url, oidc).await {
            Ok(jwks_uri) => return Ok(jwks_uri),
            Err(e) if try_next(&e) => errors.push(e),
            Err(e) => return Err(e),
        }
    }
    // The most telling failure: a document that exists but is wrong beats a 404.
    let missing = |e: &SourceError| {
        matches!(
            e,
            SourceError::Fetch {
                error: FetchError::BadStatus { status: 404 },
                ..
            }
        )
    };
    let pick = errors.iter().position(|e| !missing(e)).unwrap_or(0);
    Err(errors
        .into_iter()
        .nth(pick)
        .unwrap_or_else(|| SourceError::BadSource(format!("no metadata location for {issuer}"))))
}

async fn fetch_did_keys(fetcher: &Fetcher, did: &DidWeb) -> Result<FetchedKeys, SourceError> {
    let scheme = if fetcher.policy().allow_http {
        "http"
    } else {
        "https"
    };
    let url = did.document_url(scheme);
    let got = get(fetcher, &url, DID_ACCEPT).await?;
    let bad = |reason: &str| SourceError::DidDocument {
        url: url.clone(),
        reason: reason.to_string(),
    };
    let doc: Value = serde_json::from_slice(&got.body).map_err(|_| bad("not JSON"))?;
    let did_str = did.to_string();
    let id = doc
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("no id"))?;
    if id != did_str {
        return Err(SourceError::DidMismatch {
            expected: did_str,
            found: id.to_string(),
        });
    }
    let methods = match doc.get("verificationMethod") {
        None => &[][..],
        Some(Value::Array(a)) => a.as_slice(),
        Some(_) => return Err(bad("verificationMethod is not an array")),
    };
    let prefix = format!("{did_str}#");
    let mut skipped = Vec::new();
    let mut entries = Vec::new();
    let mut positions = Vec::new();
    for (index, m) in methods.iter().enumerate() {
        let id = m.get("id").and_then(Value::as_str).unwrap_or("");
        // DID Core §5.2: a method id is a DID URL; relative `#frag` is relative to the DID.
        let fragment = id
            .strip_prefix(&prefix)
            .or_else(|| id.strip_prefix('#'))
            .filter(|f| !f.is_empty());
        let skip = |reason: &str| Skipped {
            index,
            kid: None,
            reason: reason.to_string(),
        };
        let Some(fragment) = fragment else {
            skipped.push(skip("the method id is not a DID URL of this DID"));
            continue;
        };
        let Some(jwk) = m.get("publicKeyJwk") else {
            skipped.push(skip("the method has no publicKeyJwk"));
            continue;
        };
        positions.push(index);
        entries.push((
            jwk.clone(),
            Some(fragment.to_string()),
            Some(format!("{prefix}{fragment}")),
        ));
    }
    let (keys, more) = KeySet::from_entries(entries, &crate::keys::Alg::ALL);
    skipped.extend(more.into_iter().map(|mut s| {
        s.index = positions.get(s.index).copied().unwrap_or(s.index);
        s
    }));
    usable(keys, skipped, got.max_age, &url)
}

#[cfg(test)]
mod tests;
