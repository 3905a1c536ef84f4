//! Strict verification of partner-issued JWTs against a partner's [`KeySet`].
//!
//! The steps, in order (RFC 7519 §7.2 "Validating a JWT", hardened per RFC 8725 "JWT Best
//! Current Practices"):
//! 1. at most [`MAX_TOKEN_BYTES`], exactly three base64url parts: compact JWS only, no JWE,
//!    no JSON serialization (RFC 7515 §7.1); the header is a JSON object (RFC 7515 §4);
//! 2. `alg` is one of [`Alg::ALL`]: `none` and every `HS*` are refused outright, so a token
//!    "signed" with a public key as HMAC secret never reaches a key (RFC 8725 §2.1, §3.1);
//! 3. `crit` is refused: we implement no header extension (RFC 7515 §4.1.11);
//! 4. the key: by `kid` (a key's `kid`, or the DID URL of a DID document's method); without
//!    `kid`, only when exactly one key of the set can verify `alg`. The key must fit `alg`
//!    (EC P-256 for ES256, RSA for RS*/PS*, ...) and, when its JWK names an `alg`, that one
//!    (RFC 8725 §3.1). Header members that carry keys (`jwk`, `jku`, `x5u`, `x5c`) are ignored:
//!    a token never chooses its own key;
//! 5. the signature (RFC 7515 §5.2);
//! 6. the claims are a JSON object; `iss` equals the expected issuer exactly (RFC 7519 §4.1.1,
//!    no normalization); `exp` is required and in the future, `nbf` and `iat` are not in the
//!    future, each within the leeway (RFC 7519 §4.1.4-6); `aud`, when an audience is expected,
//!    is that string or an array containing it (RFC 7519 §4.1.3).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

use crate::keys::{Alg, KeySet, PartnerKey};
use crate::source::SourceError;

/// Largest token looked at, in bytes.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Clock skew tolerated on `exp`, `nbf` and `iat` unless the caller says otherwise.
pub const DEFAULT_LEEWAY_SECS: i64 = 60;

/// What a token must satisfy besides its signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expectations<'a> {
    /// The partner's issuer; `iss` must equal it byte for byte.
    pub issuer: &'a str,
    /// When set, `aud` must be this string or an array containing it.
    pub audience: Option<&'a str>,
    /// Clock skew tolerated on time claims, in seconds.
    pub leeway_secs: i64,
    /// The current time, seconds since the Unix epoch.
    pub now: i64,
}

impl<'a> Expectations<'a> {
    /// Expect `issuer` at time `now`, any audience, the default leeway.
    pub fn new(issuer: &'a str, now: i64) -> Expectations<'a> {
        Expectations {
            issuer,
            audience: None,
            leeway_secs: DEFAULT_LEEWAY_SECS,
            now,
        }
    }

    /// Also require `aud` to name `audience`.
    pub fn with_audience(mut self, audience: &'a str) -> Expectations<'a> {
        self.audience = Some(audience);
        self
    }
}

/// A token that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    /// The JOSE header.
    pub header: Map<String, Value>,
    /// The claims.
    pub claims: Map<String, Value>,
    /// The algorithm it was verified with.
    pub alg: Alg,
    /// The `kid` of the key that verified it, if that key has one.
    pub kid: Option<String>,
}

/// Why a token was refused. Messages are safe to return to the caller; [`VerifyError::code`]
/// is stable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// Longer than [`MAX_TOKEN_BYTES`].
    #[error("token is larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// Not a compact JWS with a JSON object header and claims.
    #[error("token is malformed: {0}")]
    Malformed(&'static str),
    /// `alg` is missing or not in the allowlist (`none`, `HS256`, ...).
    #[error("token algorithm {0:?} is not accepted")]
    AlgNotAllowed(String),
    /// The header has `crit`.
    #[error("token uses critical header extensions, which are not supported")]
    CritUnsupported,
    /// No key of the partner has the token's `kid`.
    #[error("no key of the issuer has kid {0:?}")]
    UnknownKid(String),
    /// The key named by `kid` cannot verify the token's `alg`.
    #[error("key {kid:?} cannot be used with {alg}")]
    KeyAlgMismatch {
        /// The `kid`.
        kid: String,
        /// The token's algorithm.
        alg: Alg,
    },
    /// No `kid`, and no key of the partner can verify `alg`.
    #[error("no key of the issuer can verify {0}")]
    NoSuitableKey(Alg),
    /// No `kid`, and several keys could verify `alg`.
    #[error("token has no kid and the issuer has several {0} keys")]
    KidRequired(Alg),
    /// The signature does not verify.
    #[error("token signature is invalid")]
    SignatureInvalid,
    /// `iss` is missing or not the expected issuer.
    #[error("token issuer is not the expected issuer")]
    IssuerMismatch,
    /// `exp` is missing.
    #[error("token has no expiry (exp)")]
    ExpirationMissing,
    /// A time claim is not a number.
    #[error("token claim {0} is not a NumericDate")]
    ClaimInvalid(&'static str),
    /// `exp` has passed.
    #[error("token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token is not valid yet (nbf)")]
    NotYetValid,
    /// `iat` is in the future.
    #[error("token was issued in the future (iat)")]
    IssuedInFuture,
    /// `aud` does not name the expected audience.
    #[error("token audience does not include the expected audience")]
    AudienceMismatch,
    /// The partner's keys could not be obtained (only from [`crate::KeyCache::verify`]).
    #[error("the issuer's keys are unavailable: {0}")]
    KeysUnavailable(SourceError),
}

impl VerifyError {
    /// The stable code of this refusal.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::TooLarge { .. } => "TOKEN_TOO_LARGE",
            VerifyError::Malformed(_) => "TOKEN_MALFORMED",
            VerifyError::AlgNotAllowed(_) => "ALG_NOT_ALLOWED",
            VerifyError::CritUnsupported => "CRIT_UNSUPPORTED",
            VerifyError::UnknownKid(_) => "UNKNOWN_KID",
            VerifyError::KeyAlgMismatch { .. } => "KEY_ALG_MISMATCH",
            VerifyError::NoSuitableKey(_) => "NO_SUITABLE_KEY",
            VerifyError::KidRequired(_) => "KID_REQUIRED",
            VerifyError::SignatureInvalid => "SIGNATURE_INVALID",
            VerifyError::IssuerMismatch => "ISSUER_MISMATCH",
            VerifyError::ExpirationMissing => "EXPIRATION_MISSING",
            VerifyError::ClaimInvalid(_) => "CLAIM_INVALID",
            VerifyError::Expired => "TOKEN_EXPIRED",
            VerifyError::NotYetValid => "TOKEN_NOT_YET_VALID",
            VerifyError::IssuedInFuture => "TOKEN_ISSUED_IN_FUTURE",
            VerifyError::AudienceMismatch => "AUDIENCE_MISMATCH",
            VerifyError::KeysUnavailable(_) => "KEYS_UNAVAILABLE",
        }
    }
}

/// A compact JWS split into its parts, header decoded, nothing verified.
pub(crate) struct Parts<'a> {
    pub(crate) header: Map<String, Value>,
    signing_input: &'a str,
    payload: &'a str,
    signature: &'a str,
}

/// Step 1.
pub(crate) fn split(token: &str) -> Result<Parts<'_>, VerifyError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(VerifyError::TooLarge {
            limit: MAX_TOKEN_BYTES,
        });
    }
    let mut it = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(VerifyError::Malformed(
            "a compact JWS has exactly three parts",
        ));
    };
    let header = b64_object(h).ok_or(VerifyError::Malformed(
        "the header is not a base64url JSON object",
    ))?;
    Ok(Parts {
        header,
        signing_input: &token[..h.len() + 1 + p.len()],
        payload: p,
        signature: s,
    })
}

/// Steps 1-3 alone, before any key is looked up: the token's `kid`, or why the token is
/// refused on its form alone. [`crate::KeyCache::verify`] calls this first, so that malformed
/// tokens and refused algorithms never cause a key fetch.
pub fn precheck(token: &str) -> Result<Option<String>, VerifyError> {
    let parts = split(token)?;
    let (_, kid) = check_header(&parts.header)?;
    Ok(kid.map(str::to_string))
}

/// Steps 2 and 3, and the `kid`.
fn check_header(header: &Map<String, Value>) -> Result<(Alg, Option<&str>), VerifyError> {
    // 2.
    let alg = match header.get("alg") {
        Some(Value::String(name)) => {
            Alg::from_name(name).ok_or_else(|| VerifyError::AlgNotAllowed(name.clone()))?
        }
        Some(other) => return Err(VerifyError::AlgNotAllowed(other.to_string())),
        None => return Err(VerifyError::AlgNotAllowed(String::new())),
    };
    // 3.
    if header.contains_key("crit") {
        return Err(VerifyError::CritUnsupported);
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.as_str()),
        Some(_) => return Err(VerifyError::Malformed("kid is not a string")),
    };
    Ok((alg, kid))
}

fn b64_object(part: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// Verifies `token` against `keys` and `expected` (see the module docs for the steps).
pub fn verify_jwt(
    token: &str,
    keys: &KeySet,
    expected: &Expectations<'_>,
) -> Result<VerifiedToken, VerifyError> {
    // 1.
    let parts = split(token)?;
    // 2, 3.
    let (alg, kid) = check_header(&parts.header)?;
    // 4.
    let candidates = select(keys, kid, alg)?;
    // 5.
    let signature = URL_SAFE_NO_PAD
        .decode(parts.signature)
        .map_err(|_| VerifyError::Malformed("the signature is not base64url"))?;
    let key = candidates
        .into_iter()
        .find(|k| {
            k.verifier(alg)
                .is_some_and(|v| v.verify(parts.signing_input.as_bytes(), &signature).is_ok())
        })
        .ok_or(VerifyError::SignatureInvalid)?;
    // 6.
    let claims = b64_object(parts.payload).ok_or(VerifyError::Malformed(
        "the claims are not a base64url JSON object",
    ))?;
    check_claims(&claims, expected)?;
    Ok(VerifiedToken {
        header: parts.header,
        claims,
        alg,
        kid: key.kid().map(str::to_string),
    })
}

/// Step 4: the keys that may verify this token (several only for duplicate `kid`s).
fn select<'k>(
    keys: &'k KeySet,
    kid: Option<&str>,
    alg: Alg,
) -> Result<Vec<&'k PartnerKey>, VerifyError> {
    let fits = |k: &&PartnerKey| k.verifier(alg).is_some();
    match kid {
        Some(kid) => {
            let named: Vec<&PartnerKey> = keys.iter().filter(|k| k.has_kid(kid)).collect();
            if named.is_empty() {
                return Err(VerifyError::UnknownKid(kid.to_string()));
            }
            let usable: Vec<&PartnerKey> = named.into_iter().filter(fits).collect();
            if usable.is_empty() {
                return Err(VerifyError::KeyAlgMismatch {
                    kid: kid.to_string(),
                    alg,
                });
            }
            Ok(usable)
        }
        None => {
            let usable: Vec<&PartnerKey> = keys.iter().filter(fits).collect();
            match usable.len() {
                0 => Err(VerifyError::NoSuitableKey(alg)),
                1 => Ok(usable),
                _ => Err(VerifyError::KidRequired(alg)),
            }
        }
    }
}

/// A NumericDate (RFC 7519 §2): seconds, possibly fractional; fractions are truncated.
fn numeric_date(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<i64>, VerifyError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => {
            if let Some(i) = v.as_i64() {
                return Ok(Some(i));
            }
            match v.as_f64() {
                Some(f) if f.is_finite() && f.abs() < 1e15 => Ok(Some(f.trunc() as i64)),
                _ => Err(VerifyError::ClaimInvalid(name)),
            }
        }
    }
}

fn check_claims(
    claims: &Map<String, Value>,
    expected: &Expectations<'_>,
) -> Result<(), VerifyError> {
    if claims.get("iss").and_then(Value::as_str) != Some(expected.issuer) {
        return Err(VerifyError::IssuerMismatch);
    }
    let now = expected.now;
    let leeway = expected.leeway_secs.max(0);
    let exp = numeric_date(claims, "exp")?.ok_or(VerifyError::ExpirationMissing)?;
    if now >= exp.saturating_add(leeway) {
        return Err(VerifyError::Expired);
    }
    if numeric_date(claims, "nbf")?.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
        return Err(VerifyError::NotYetValid);
    }
    if numeric_date(claims, "iat")?.is_some_and(|iat| iat > now.saturating_add(leeway)) {
        return Err(VerifyError::IssuedInFuture);
    }
    if let Some(want) = expected.audience {
        let ok = match claims.get("aud") {
            Some(Value::String(a)) => a == want,
            Some(Value::Array(v)) => v.iter().any(|a| a.as_str() == Some(want)),
            _ => false,
        };
        if !ok {
            return Err(VerifyError::AudienceMismatch);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
